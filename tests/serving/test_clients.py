"""The client of remote OpenAI-compatible endpoints: what it sends, and what it refuses to drop."""

from __future__ import annotations

import json

import httpx
import pytest

from tunery.chat import ChatMessage, GenerationParams, Role
from tunery.errors import InvalidInput
from tunery.serving import OpenAIChatModel

ASK = [ChatMessage(Role.USER, "hi")]


def _answering(monkeypatch) -> list[dict]:
    """Requests the client posts, each answered with a plain completion."""
    sent: list[dict] = []

    def post(url, **kw):
        sent.append(kw["json"])
        return httpx.Response(200, request=httpx.Request("POST", url), content=json.dumps({
            "model": "m", "choices": [{"index": 0, "message": {"role": "assistant", "content": "{}"},
                                       "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1}}))

    monkeypatch.setattr(httpx, "post", post)
    return sent


def test_response_format_is_sent(monkeypatch):
    sent = _answering(monkeypatch)
    fmt = {"type": "json_object"}
    OpenAIChatModel("m", "http://127.0.0.1:9/v1").generate(ASK, GenerationParams(response_format=fmt))
    OpenAIChatModel("m", "http://127.0.0.1:9/v1").generate(ASK, GenerationParams())
    assert sent[0]["response_format"] == fmt and "response_format" not in sent[1]


def test_logit_bias_and_penalties_are_sent(monkeypatch):
    sent = _answering(monkeypatch)
    params = GenerationParams(logit_bias={"5": -100}, presence_penalty=0.5, frequency_penalty=-1)
    OpenAIChatModel("m", "http://127.0.0.1:9/v1").generate(ASK, params)
    OpenAIChatModel("m", "http://127.0.0.1:9/v1").generate(ASK, GenerationParams())
    assert (sent[0]["logit_bias"], sent[0]["presence_penalty"], sent[0]["frequency_penalty"]) == ({"5": -100}, 0.5, -1)
    assert not {"logit_bias", "presence_penalty", "frequency_penalty"} & set(sent[1])


@pytest.mark.parametrize("params, param", [
    (GenerationParams(tools=({"type": "function", "function": {"name": "f", "parameters": {}}},)), "tools"),
    (GenerationParams(logprobs=True), "logprobs"),
])
def test_what_a_completion_cannot_carry_back_is_refused_not_dropped(monkeypatch, params, param):
    sent = _answering(monkeypatch)
    with pytest.raises(InvalidInput) as e:
        OpenAIChatModel("m", "http://127.0.0.1:9/v1").generate(ASK, params)
    assert e.value.param == param and not sent
