"""DPO through the official openai SDK, unmodified: supervised first, then DPO from the supervised
model (as OpenAI recommends), followed through events, checkpoints and the results file, then
chatted with."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import openai
import pytest


@pytest.fixture
def worker_server(tunery_home):
    from tunery.server import ServerThread

    with ServerThread(worker=True) as s:
        yield s


def _pairs(n: int) -> str:
    cities = ["Rome", "Paris", "Lisbon", "Kyoto", "Cairo", "Lima", "Oslo", "Quito", "Riga", "Perth", "Hanoi"]
    rows = [{"input": {"messages": [{"role": "system", "content": "You are a helpful travel assistant."},
                                    {"role": "user", "content": f"Where should I stay in {c}?"}]},
             "preferred_output": [{"role": "assistant", "content": f"The old town of {c} is central. When do you go?"}],
             "non_preferred_output": [{"role": "assistant", "content": f"Book the Grand {c} Hotel."}]}
            for c in cities[:n]]
    return "".join(json.dumps(r) + "\n" for r in rows)




def test_supervised_then_dpo_with_the_openai_sdk(worker_server, tiny_model, training_file, tmp_path: Path, follow):
    client = openai.OpenAI(base_url=worker_server.base_url, api_key="local", max_retries=0, timeout=120)
    chat = client.files.create(file=training_file.open("rb"), purpose="fine-tune")
    sft = follow(client, client.fine_tuning.jobs.create(model="tiny-random", training_file=chat.id, seed=7,
                                                         hyperparameters={"n_epochs": 1}))

    (tmp_path / "pairs.jsonl").write_text(_pairs(11))
    (tmp_path / "valid.jsonl").write_text(_pairs(3))
    pairs = client.files.create(file=(tmp_path / "pairs.jsonl").open("rb"), purpose="fine-tune")
    valid = client.files.create(file=(tmp_path / "valid.jsonl").open("rb"), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(
        model=sft.fine_tuned_model, training_file=pairs.id, validation_file=valid.id, seed=3, suffix="dpo",
        method={"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.2, "n_epochs": 2, "batch_size": 2}}})
    assert job.method.type == "dpo" and job.model == sft.fine_tuned_model
    job = follow(client, job)
    assert job.method.dpo.hyperparameters.beta == 0.2
    assert job.fine_tuned_model.startswith("ft:tiny-random:dpo:")  # named after its base, as OpenAI does

    events = client.fine_tuning.jobs.list_events(job.id, limit=200).data
    steps = [e.data for e in events if e.type == "metrics"]
    assert len(steps) == 12 and all("rewards/accuracies" in s and "rewards/margins" in s for s in steps)
    assert any("full_valid_rewards/accuracies" in s for s in steps)
    assert client.fine_tuning.jobs.checkpoints.list(job.id).data
    results = client.files.content(job.result_files[0]).text
    header = next(csv.reader(io.StringIO(results)))
    assert header[:6] == ["step", "train_loss", "rewards/chosen", "rewards/rejected", "rewards/margins",
                          "rewards/accuracies"]

    # one adapter on the base that holds both fine-tunes: served like any other
    models = {m.id: m for m in client.models.list()}
    assert models[job.fine_tuned_model].model_extra["parent"] == "tiny-random"
    reply = client.chat.completions.create(model=job.fine_tuned_model, max_tokens=6, seed=1,
                                           messages=[{"role": "user", "content": "Where should I stay in Rome?"}])
    assert reply.choices[0].message.content is not None and reply.usage.completion_tokens >= 1

    # a preference file given to supervised fine-tuning is refused at once, with the method to use
    with pytest.raises(openai.BadRequestError) as e:
        client.fine_tuning.jobs.create(model="tiny-random", training_file=pairs.id)
    assert "preference pairs" in e.value.message and e.value.body["param"] == "training_file"
    assert '"dpo"' in e.value.message

