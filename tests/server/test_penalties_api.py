"""``logit_bias``, ``presence_penalty`` and ``frequency_penalty`` on chat completions through the
official openai SDK, on both engines: a -100 bias bans a token, +100 forces one, a penalty stops a
greedy answer repeating itself, a grammar still holds, and requests without them answer as before.
(The tiny random model's greedy answer to ``MSG`` is one token repeated.)"""

from __future__ import annotations

import json

import pytest
from test_logprobs_api import MSG, token_ids


@pytest.fixture(params=["fp32", "int8"])
def engine(request, monkeypatch, tiny_model) -> str:
    """Serve ``tiny-random`` on the PyTorch engine (fp32) or the ONNX Runtime one (int8)."""
    monkeypatch.setenv("TUNERY_PRECISION", request.param)
    return request.param


@pytest.fixture
def tokenizer(tiny_model):
    from tunery.models.loading import load_tokenizer
    from tunery.models.registry import get

    return load_tokenizer(get("tiny-random"))


def answer(client, tokenizer, max_tokens: int = 12, **kw) -> list[int]:
    """The token ids of a greedy answer that runs its whole budget."""
    r = client.chat.completions.create(model="tiny-random", messages=MSG, max_tokens=max_tokens, temperature=0,
                                       logprobs=True, extra_body={"ignore_eos": True, **kw.pop("extra", {})}, **kw)
    ids = token_ids(r.choices[0].logprobs.content, tokenizer)
    assert len(ids) == max_tokens
    return ids


def plain_token(tokenizer, avoid: set[int]) -> int:
    """A token of letters only, not one of ``avoid``."""
    from tunery.serving.logprobs import vocab

    v = vocab(tokenizer)
    return next(i for i in range(len(tokenizer)) if i not in avoid and v.piece(i)[0].isalpha())


def test_a_minus_100_bias_bans_a_token_the_greedy_answer_writes(client, engine, tokenizer):
    plain = answer(client, tokenizer)
    banned = plain[0]
    biased = answer(client, tokenizer, logit_bias={str(banned): -100})
    assert banned not in biased and biased != plain


@pytest.mark.parametrize("temperature", [0, 1.0])
def test_a_plus_100_bias_makes_the_answer_that_token_repeated(client, engine, tokenizer, temperature):
    token = plain_token(tokenizer, set(answer(client, tokenizer)))
    r = client.chat.completions.create(model="tiny-random", messages=MSG, max_tokens=6, temperature=temperature,
                                       seed=4, logit_bias={str(token): 100}, extra_body={"ignore_eos": True})
    from tunery.serving.logprobs import vocab

    assert r.choices[0].message.content == vocab(tokenizer).piece(token)[0] * 6


@pytest.mark.parametrize("penalty", ["frequency_penalty", "presence_penalty"])
def test_a_penalty_stops_a_greedy_answer_repeating_a_token(client, engine, tokenizer, penalty):
    plain = answer(client, tokenizer)
    assert len(set(plain)) < len(plain)  # the unpenalised answer repeats itself
    penalised = answer(client, tokenizer, **{penalty: 2})
    assert penalised[0] == plain[0]  # nothing is written yet: only the answer's own tokens count
    assert len(set(penalised)) == len(penalised)


def test_a_mild_frequency_penalty_grows_with_the_count(client, engine, tokenizer):
    """0.5 a time lets a token repeat once or twice before another overtakes it; presence (once) at 0.5
    does not grow, and lets the first token run on."""
    freq = answer(client, tokenizer, frequency_penalty=0.5)
    assert 1 < max(freq.count(t) for t in freq) < 4
    pres = answer(client, tokenizer, presence_penalty=0.5)
    assert pres != freq


def test_requests_without_them_answer_as_before(client, engine, tokenizer):
    plain = answer(client, tokenizer)
    assert answer(client, tokenizer, logit_bias={}, presence_penalty=0, frequency_penalty=0) == plain
    # a zero bias takes the path that adjusts the logits and chooses the token itself: the same answer
    assert answer(client, tokenizer, logit_bias={str(plain_token(tokenizer, set(plain))): 0}) == plain


def test_a_grammar_still_holds_under_a_bias(client, engine, tokenizer):
    token = plain_token(tokenizer, set())
    fmt = {"type": "json_schema", "json_schema": {"name": "trip", "strict": True, "schema": {
        "type": "object", "properties": {"city": {"enum": ["Rome", "Oslo"]}}, "required": ["city"],
        "additionalProperties": False}}}
    r = client.chat.completions.create(model="tiny-random", messages=MSG, max_tokens=30, temperature=0,
                                       response_format=fmt, logit_bias={str(token): 100})
    assert json.loads(r.choices[0].message.content)["city"] in ("Rome", "Oslo")


def test_penalties_apply_openai_s_formula():
    import numpy as np

    from tunery.serving.engine import EngineRequest
    from tunery.serving.penalties import penalties

    req = EngineRequest(prompt_ids=[1], max_tokens=1, emit=print)
    assert penalties(req) is None
    req.logit_bias, req.presence_penalty, req.frequency_penalty = {0: 5.0, 9: -100.0}, 0.5, 0.25
    p = penalties(req)
    for t in (2, 2, 2, 3):
        p.add(t)
    row = np.zeros(4, dtype=np.float32)
    p.apply(row)  # id 9 is past this row: left alone
    assert row.tolist() == [5.0, 0.0, -(0.5 + 0.25 * 3), -(0.5 + 0.25)]
