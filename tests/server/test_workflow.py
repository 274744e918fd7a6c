"""The whole OpenAI fine-tuning workflow against a running tunery server, with the official SDK
and nothing but ``base_url`` changed: upload, fine-tune, follow, then chat with the result, plain,
streamed, and through a rate-limited deployment until a 429."""

from __future__ import annotations

import openai
import pytest


@pytest.fixture
def worker_server(tunery_home):
    from tunery.server import ServerThread

    with ServerThread(worker=True) as s:
        yield s


def test_fine_tune_then_chat_with_the_openai_sdk(worker_server, tiny_model, training_file, follow):
    client = openai.OpenAI(base_url=worker_server.base_url, api_key="local", max_retries=0, timeout=120)

    f = client.files.create(file=training_file.open("rb"), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model="tiny-random", training_file=f.id, suffix="travel", seed=7,
                                         hyperparameters={"n_epochs": 1})
    assert job.status in ("validating_files", "queued") and job.model == "tiny-random"

    job = follow(client, job)
    assert job.fine_tuned_model and "travel" in job.fine_tuned_model

    events = client.fine_tuning.jobs.list_events(job.id, limit=100).data
    assert events and all(e.object == "fine_tuning.job.event" for e in events)
    checkpoints = client.fine_tuning.jobs.checkpoints.list(job.id).data
    assert checkpoints and all(c.fine_tuned_model_checkpoint for c in checkpoints)
    assert job.id in [j.id for j in client.fine_tuning.jobs.list()]

    # the new model is served at once, no restart
    models = {m.id: m for m in client.models.list()}
    assert models[job.fine_tuned_model].model_extra["parent"] == "tiny-random"
    msg = [{"role": "user", "content": "What should I see in Rome?"}]
    plain = client.chat.completions.create(model=job.fine_tuned_model, messages=msg, max_tokens=8, seed=1)
    assert plain.choices[0].finish_reason in ("stop", "length") and plain.usage.completion_tokens >= 1
    chunks = list(client.chat.completions.create(model=job.fine_tuned_model, messages=msg, max_tokens=8, seed=1,
                                                 stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == plain.choices[0].message.content

    # a checkpoint is a model too
    ckpt = client.chat.completions.create(model=checkpoints[0].fine_tuned_model_checkpoint, messages=msg,
                                          max_tokens=3)
    assert ckpt.choices[0].message.content is not None

    # a deployment with a tokens-per-minute limit: chat until the 429
    import httpx

    r = httpx.post(f"{worker_server.base_url}/deployments",
                   json={"name": "travel-prod", "model": job.fine_tuned_model, "tpm": 150})
    assert r.status_code == 200, r.text
    with pytest.raises(openai.RateLimitError) as e:
        for _ in range(20):
            client.chat.completions.create(model="travel-prod", messages=msg, max_tokens=5)
    assert int(e.value.response.headers["retry-after"]) >= 1
