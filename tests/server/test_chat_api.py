"""Chat completions and models through the official openai SDK."""

from __future__ import annotations

import pytest

MSG = [{"role": "user", "content": "Hello! Where should I travel in spring?"}]


def test_plain_chat_completion(client, tiny_model):
    from tunery.chat import ChatMessage, Role
    from tunery.serving.local import LocalChatModel

    r = client.chat.completions.create(model="tiny-random", messages=MSG, max_tokens=7, seed=1)
    assert r.object == "chat.completion" and r.model == "tiny-random" and r.id.startswith("chatcmpl-")
    choice = r.choices[0]
    assert choice.message.role == "assistant" and isinstance(choice.message.content, str)
    assert choice.finish_reason in ("stop", "length")
    assert r.usage.prompt_tokens == LocalChatModel("tiny-random").count_tokens([ChatMessage(Role.USER, MSG[0]["content"])])
    assert 1 <= r.usage.completion_tokens <= 7
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_streamed_chat_matches_plain_and_reports_usage(client, tiny_model):
    kw = dict(model="tiny-random", messages=MSG, max_completion_tokens=8, seed=5, temperature=0.8)
    plain = client.chat.completions.create(**kw)
    chunks = list(client.chat.completions.create(**kw, stream=True, stream_options={"include_usage": True}))
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert text == plain.choices[0].message.content
    assert finishes == [plain.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.model_dump() == plain.usage.model_dump()


def test_stream_without_include_usage_has_no_usage_chunk(client, tiny_model):
    chunks = list(client.chat.completions.create(model="tiny-random", messages=MSG, max_tokens=3, stream=True))
    assert all(c.choices for c in chunks) and all(c.usage is None for c in chunks)


def test_seed_reproduces_and_n_gives_several_choices(client, tiny_model):
    kw = dict(model="tiny-random", messages=MSG, max_tokens=6, seed=42, extra_body={"ignore_eos": True})
    a = client.chat.completions.create(**kw)
    b = client.chat.completions.create(**kw)
    assert a.choices[0].message.content == b.choices[0].message.content
    many = client.chat.completions.create(**{**kw, "n": 3})
    assert [c.index for c in many.choices] == [0, 1, 2]
    assert many.choices[0].message.content == a.choices[0].message.content
    assert len({c.message.content for c in many.choices}) > 1
    assert many.usage.completion_tokens == 18 and many.usage.prompt_tokens == a.usage.prompt_tokens


def test_text_parts_stop_and_length(client, tiny_model):
    parts = [{"role": "user", "content": [{"type": "text", "text": "Hello! Where should I "},
                                          {"type": "text", "text": "travel in spring?"}]}]
    a = client.chat.completions.create(model="tiny-random", messages=parts, max_tokens=5, seed=2,
                                       extra_body={"ignore_eos": True})
    b = client.chat.completions.create(model="tiny-random", messages=MSG, max_tokens=5, seed=2,
                                       extra_body={"ignore_eos": True})
    assert a.choices[0].message.content == b.choices[0].message.content
    assert a.choices[0].finish_reason == "length" and a.usage.completion_tokens == 5
    full = client.chat.completions.create(model="tiny-random", messages=MSG, max_tokens=16, seed=2,
                                          extra_body={"ignore_eos": True}).choices[0].message.content
    stop = next(ch for ch in full if ch.isalnum())
    cut = client.chat.completions.create(model="tiny-random", messages=MSG, max_tokens=16, seed=2, stop=[stop],
                                         extra_body={"ignore_eos": True})
    assert cut.choices[0].finish_reason == "stop"
    assert cut.choices[0].message.content == full[:full.index(stop)]


def test_models_list_and_retrieve(client, tiny_model):
    import openai

    from tunery.models import ModelRecord, register
    from tunery.serving import deployments

    register(ModelRecord(id="tiny-ft", kind="fine-tuned", path=tiny_model.path, source="test", parent="tiny-random",
                         method="full"))
    deployments.create("travel-bot", "tiny-ft", tpm=1000)
    models = {m.id: m for m in client.models.list()}
    assert {"tiny-random", "tiny-ft", "travel-bot"} <= set(models)
    assert models["tiny-ft"].model_extra["parent"] == "tiny-random"
    assert models["travel-bot"].owned_by == "deployment" and models["travel-bot"].model_extra["parent"] == "tiny-ft"
    assert client.models.retrieve("tiny-random").owned_by == "tunery"
    assert client.models.retrieve("travel-bot").owned_by == "deployment"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope")


def test_a_client_that_hangs_up_stops_its_generation(server, tiny_model):
    import time

    import httpx

    from tunery.serving.manager import manager

    engine = manager().target("tiny-random").engine
    before = engine.tokens_generated
    body = {"model": "tiny-random", "messages": MSG, "max_tokens": 900, "stream": True, "ignore_eos": True}
    with httpx.stream("POST", f"{server.base_url}/chat/completions", json=body, timeout=60) as r:
        lines = r.iter_lines()
        for _ in range(3):
            next(lines)
    deadline = time.monotonic() + 60
    while engine.busy() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not engine.busy()
    assert engine.tokens_generated - before < 900  # cancelled, not run to max_tokens


def test_tunerys_own_remote_client_talks_to_the_server(server, tiny_model):
    """flows and evals reach a running server as ``MODEL@http://host:port/v1``."""
    from tunery.chat import ChatMessage, Role
    from tunery.serving import GenerationParams
    from tunery.serving.local import LocalChatModel
    from tunery.serving.resolve import get_chat_model

    remote = get_chat_model(f"tiny-random@{server.base_url}")
    params = GenerationParams(max_tokens=5, seed=8)
    messages = [ChatMessage(Role.USER, MSG[0]["content"])]
    local = LocalChatModel("tiny-random").generate(messages, params)
    done = remote.generate(messages, params)
    assert (done.text, done.usage) == (local.text, local.usage)
    chunks = list(remote.stream(messages, params))
    assert "".join(c.text for c in chunks) == local.text
    assert [c.usage for c in chunks if c.usage] == [local.usage]
