"""``logprobs`` and ``top_logprobs`` on chat completions through the official openai SDK, on both
engines: the values are transformers' own log-softmax of the same model's logits (float32 on the
PyTorch engine, within the int8 copy's error on the ONNX one), for sampled and grammar-held tokens
too; the top tokens are sorted and hold the greedy choice; the tokens' bytes join to the content;
streamed chunks list the same tokens; requests that do not ask are unchanged."""

from __future__ import annotations

import json

import pytest
from test_tools_api import ASK, WEATHER

MSG = [{"role": "user", "content": "Hello! Where should I travel in spring?"}]
ENGINES = {"fp32": 1e-4, "int8": 0.02}  # precision -> how close the values are to float32 transformers


@pytest.fixture(params=list(ENGINES))
def engine(request, monkeypatch, tiny_model) -> float:
    """Serve ``tiny-random`` on the PyTorch engine (fp32) or the ONNX Runtime one (int8); the value
    is the tolerance of its log-probs against transformers."""
    monkeypatch.setenv("TUNERY_PRECISION", request.param)
    return ENGINES[request.param]


def joined(entries) -> bytes:
    return b"".join(bytes(e.bytes) for e in entries)


def token_ids(entries, tokenizer) -> list[int]:
    """The ids of the listed tokens: byte-level BPE gives each token its own bytes, special tokens
    (no bytes) their name."""
    from tunery.serving.logprobs import vocab

    v = vocab(tokenizer)
    by_bytes = {v.piece(i)[1]: i for i in range(len(tokenizer)) if v.piece(i)[1]}
    return [by_bytes[bytes(e.bytes)] if e.bytes else tokenizer.convert_tokens_to_ids(e.token) for e in entries]


def reference(model_dir, messages, ids: list[int], top: int) -> tuple[list[float], list[list[float]]]:
    """transformers' log-softmax for each of ``ids`` after the chat prompt, and the ``top`` best."""
    import torch
    from transformers import AutoModelForCausalLM

    from tunery.chat import ChatMessage
    from tunery.serving.local import LocalChatModel

    target = LocalChatModel("tiny-random").target()
    prompt = target.encode([ChatMessage.from_dict(m) for m in messages])
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([prompt + ids])).logits[0, len(prompt) - 1:-1].float()
    lp = torch.log_softmax(logits, dim=-1)
    return ([float(lp[k, t]) for k, t in enumerate(ids)],
            [[float(x) for x in lp[k].topk(top).values] for k in range(len(ids))])


@pytest.mark.parametrize("how", ["sampled", "json_schema"])
def test_logprobs_are_transformers_log_softmax_of_the_raw_logits(client, engine, tiny_model_dir, how):
    """Sampled at temperature 1.4 and top-p 0.9, or held to a JSON schema, every listed value is
    still the raw distribution's: the token's and the top 5 ones."""
    from tunery.models.loading import load_tokenizer
    from tunery.models.registry import get

    fmt = {"type": "json_schema", "json_schema": {"name": "trip", "strict": True, "schema": {
        "type": "object", "properties": {"city": {"enum": ["Rome", "Oslo"]}}, "required": ["city"],
        "additionalProperties": False}}}
    extra = {"response_format": fmt} if how == "json_schema" else {"top_p": 0.9}
    r = client.chat.completions.create(model="tiny-random", messages=MSG, max_tokens=16, seed=3, temperature=1.4,
                                       logprobs=True, top_logprobs=5, **extra)
    choice = r.choices[0]
    entries = choice.logprobs.content
    assert entries and len(entries) == r.usage.completion_tokens - (choice.finish_reason == "stop")
    ids = token_ids(entries, load_tokenizer(get("tiny-random")))
    want, want_top = reference(tiny_model_dir, MSG, ids, 5)
    for e, w, wt in zip(entries, want, want_top, strict=True):
        assert abs(e.logprob - w) < engine
        assert [t.logprob for t in e.top_logprobs] == sorted((t.logprob for t in e.top_logprobs), reverse=True)
        assert all(abs(t.logprob - v) < engine for t, v in zip(e.top_logprobs, wt, strict=True))
    if how == "json_schema":
        assert json.loads(choice.message.content)["city"] in ("Rome", "Oslo")
        # the grammar forced the opening brace: under the masked distribution it would be certain
        assert entries[0].token.startswith("{") and entries[0].logprob < -1


def test_greedy_tokens_are_the_top_one_and_bytes_join_to_the_content(client, engine):
    r = client.chat.completions.create(model="tiny-random", messages=MSG, max_tokens=12, temperature=0,
                                       logprobs=True, top_logprobs=3)
    choice = r.choices[0]
    for e in choice.logprobs.content:
        assert len(e.top_logprobs) == 3
        assert (e.token, e.bytes) == (e.top_logprobs[0].token, e.top_logprobs[0].bytes)
        assert e.logprob == e.top_logprobs[0].logprob <= 0
    assert joined(choice.logprobs.content) == choice.message.content.encode()
    assert choice.logprobs.refusal is None


def test_streamed_chunks_list_the_tokens_of_their_text(client, engine):
    kw = dict(model="tiny-random", messages=MSG, max_tokens=14, seed=7, temperature=1.0, n=2, logprobs=True,
              top_logprobs=2, extra_body={"ignore_eos": True})
    plain = client.chat.completions.create(**kw)
    chunks = list(client.chat.completions.create(**kw, stream=True))
    for i, choice in enumerate(plain.choices):
        mine = [c.choices[0] for c in chunks if c.choices[0].index == i]
        listed = [e for c in mine if c.logprobs is not None for e in c.logprobs.content]
        assert [(e.token, e.bytes) for e in listed] == [(e.token, e.bytes) for e in choice.logprobs.content]
        assert all(abs(a.logprob - b.logprob) < 1e-5 for a, b in zip(listed, choice.logprobs.content, strict=True))
        assert len(listed) == 14  # ignore_eos: every token is the answer's
        text = "".join(c.delta.content or "" for c in mine)
        assert text == choice.message.content
        # a character the model wrote invalid bytes for reads U+FFFD in the content
        assert joined(listed).decode("utf-8", errors="replace") == text
        assert all(c.delta.content is not None for c in mine if c.logprobs is not None)
        assert mine[0].logprobs is None and mine[-1].finish_reason and mine[-1].logprobs is None
    assert plain.choices[0].logprobs.content != plain.choices[1].logprobs.content


def test_requests_that_do_not_ask_get_null_logprobs(client, http, tiny_model):
    kw = dict(model="tiny-random", messages=MSG, max_tokens=5, seed=1)
    assert client.chat.completions.create(**kw).choices[0].logprobs is None
    assert all(c.choices[0].logprobs is None for c in client.chat.completions.create(**kw, stream=True))
    raw = http.post("/v1/chat/completions", json={**kw, "logprobs": False}).json()
    assert raw["choices"][0]["logprobs"] is None


def test_top_logprobs_needs_logprobs(http, tiny_model):
    for extra in ({"top_logprobs": 2}, {"top_logprobs": 2, "logprobs": False}, {"logprobs": True, "top_logprobs": 21}):
        r = http.post("/v1/chat/completions", json={"model": "tiny-random", "messages": MSG, **extra})
        assert r.status_code == 400, r.text
        assert r.json()["error"]["param"] == "top_logprobs"
    assert "requires logprobs to be true" in http.post("/v1/chat/completions", json={
        "model": "tiny-random", "messages": MSG, "top_logprobs": 2}).json()["error"]["message"]


def test_a_tool_call_lists_no_tokens(client, tiny_model):
    kw = dict(model="tiny-random", messages=ASK, tools=[WEATHER], tool_choice="required", max_tokens=80, seed=2,
              logprobs=True)
    choice = client.chat.completions.create(**kw).choices[0]
    assert choice.message.tool_calls and choice.message.content is None
    assert choice.logprobs.content is None
    chunks = list(client.chat.completions.create(**kw, stream=True))
    assert all(c.choices[0].logprobs is None for c in chunks)


def test_a_text_answer_under_tools_lists_its_tokens(client, tiny_model):
    """Under ``auto`` the answer is text: streamed through the call parser, its tokens still go with
    the content chunks that send their text."""
    kw = dict(model="tiny-random", messages=ASK, tools=[WEATHER], max_tokens=12, seed=4, temperature=0.6,
              logprobs=True, top_logprobs=1, extra_body={"ignore_eos": True})
    choice = client.chat.completions.create(**kw).choices[0]
    assert choice.message.tool_calls is None and len(choice.logprobs.content) == 12
    assert joined(choice.logprobs.content).decode("utf-8", errors="replace") == choice.message.content
    chunks = [c.choices[0] for c in client.chat.completions.create(**kw, stream=True)]
    listed = [e for c in chunks if c.logprobs is not None for e in c.logprobs.content]
    assert [(e.token, e.bytes) for e in listed] == [(e.token, e.bytes) for e in choice.logprobs.content]
    assert all(c.delta.content is not None for c in chunks if c.logprobs is not None)


def test_a_stop_string_lists_the_tokens_of_the_returned_text(client, tiny_model):
    kw = dict(model="tiny-random", messages=MSG, max_tokens=16, seed=4, temperature=0.6, logprobs=True,
              extra_body={"ignore_eos": True})
    full = client.chat.completions.create(**kw).choices[0]
    stop = next(ch for ch in full.message.content[2:] if ch.isalnum())
    cut = client.chat.completions.create(**kw, stop=[stop]).choices[0]
    assert cut.finish_reason == "stop" and "\ufffd" not in cut.message.content
    # the tokens with any text before the cut: the one the stop string starts in too, none after it
    at, start, want = len(cut.message.content.encode()), 0, []
    for e in full.logprobs.content:
        end = start + len(e.bytes)
        if start < at or end <= at:
            want.append(e)
        start = end
    assert cut.logprobs.content == want
    assert joined(want).startswith(cut.message.content.encode())


def test_a_deployments_content_filter_keeps_the_tokens_with_their_text(client, tiny_model):
    from tunery.serving import deployments

    deployments.create("bot", "tiny-random")
    r = client.chat.completions.create(model="bot", messages=MSG, max_tokens=10, seed=5, logprobs=True,
                                       extra_body={"ignore_eos": True})
    entries = r.choices[0].logprobs.content
    assert len(entries) == 10
    assert joined(entries).decode("utf-8", errors="replace") == r.choices[0].message.content


@pytest.mark.slow
def test_smollm2_bytes_of_multibyte_characters_join_to_the_content(client, smollm2):
    from tunery.serving.local import LocalChatModel

    LocalChatModel("smollm2-135m-instruct").load()  # its compiled copy is built here, not within a request
    r = client.chat.completions.create(
        model="smollm2-135m-instruct", max_tokens=60, temperature=0, logprobs=True, top_logprobs=2,
        messages=[{"role": "user", "content": "Repeat exactly: café, naïve, 東京 🚀"}])
    choice = r.choices[0]
    assert choice.finish_reason == "stop"
    assert joined(choice.logprobs.content) == choice.message.content.encode()
    assert any(ord(ch) > 127 for ch in choice.message.content)
