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


def test_what_a_completion_cannot_carry_back_is_refused_not_dropped(monkeypatch):
    sent = _answering(monkeypatch)
    with pytest.raises(InvalidInput) as e:
        OpenAIChatModel("m", "http://127.0.0.1:9/v1").generate(ASK, GenerationParams(logprobs=True))
    assert e.value.param == "logprobs" and not sent


TOOL = {"type": "function", "function": {"name": "weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}}}}
CALL = {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Oslo"}'}}


def test_tools_and_a_tool_loop_are_sent_as_openai_takes_them(monkeypatch):
    sent = _answering(monkeypatch)
    history = [ChatMessage(Role.USER, "Weather in Oslo?"),
               ChatMessage(Role.ASSISTANT, "", weight=0, tool_calls=(CALL,)),
               ChatMessage(Role.TOOL, "sunny", tool_call_id="call_1")]
    params = GenerationParams(tools=(TOOL,), tool_choice="required", parallel_tool_calls=False)
    OpenAIChatModel("m", "http://127.0.0.1:9/v1").generate(history, params)
    OpenAIChatModel("m", "http://127.0.0.1:9/v1").generate(ASK, GenerationParams())
    assert (sent[0]["tools"], sent[0]["tool_choice"], sent[0]["parallel_tool_calls"]) == ([TOOL], "required", False)
    assert sent[0]["messages"] == [{"role": "user", "content": "Weather in Oslo?"},
                                   {"role": "assistant", "content": None, "tool_calls": [CALL]},
                                   {"role": "tool", "content": "sunny", "tool_call_id": "call_1"}]
    assert not {"tools", "tool_choice", "parallel_tool_calls"} & set(sent[1])


def test_the_calls_that_come_back_are_written_as_tunerys_models_write_them(monkeypatch):
    """Every reader of a Completion (the server's tool_calls, the tool_calls evaluator) parses
    `<tool_call>` blocks: a remote model's calls come back in that form."""
    from tunery.chat_template import parse_tool_calls

    def post(url, **kw):
        return httpx.Response(200, request=httpx.Request("POST", url), content=json.dumps({
            "model": "m", "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": "Checking.", "tool_calls": [CALL, {**CALL, "id": "call_2", "function": {
                    "name": "weather", "arguments": '{"city": "Lima"}'}}]}}]}))

    monkeypatch.setattr(httpx, "post", post)
    done = OpenAIChatModel("m", "http://127.0.0.1:9/v1").generate(ASK, GenerationParams(tools=(TOOL,)))
    content, calls = parse_tool_calls(done.text)
    assert content == "Checking." and done.finish_reason == "stop"
    assert [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls] == [
        ("weather", {"city": "Oslo"}), ("weather", {"city": "Lima"})]


def test_streamed_calls_are_joined_from_their_pieces(monkeypatch):
    from tunery.chat_template import parse_tool_calls

    def chunk(delta, finish=None):
        return "data: " + json.dumps({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

    lines = [chunk({"role": "assistant", "content": "On it."}),
             chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                    "function": {"name": "weather", "arguments": ""}}]}),
             chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}),
             chunk({"tool_calls": [{"index": 1, "id": "call_2", "function": {"name": "weather",
                                                                             "arguments": '{"city": "Lima"}'}}]}),
             chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Oslo"}'}}]}),
             chunk({}, "tool_calls"), "data: [DONE]"]

    class Stream:
        status_code = 200

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def iter_lines(self):
            return iter(lines)

    monkeypatch.setattr(httpx, "stream", lambda *a, **kw: Stream())
    chunks = list(OpenAIChatModel("m", "http://127.0.0.1:9/v1").stream(ASK, GenerationParams(tools=(TOOL,))))
    content, calls = parse_tool_calls("".join(c.text for c in chunks))
    assert content == "On it." and chunks[-1].finish_reason == "stop"
    assert [json.loads(c["function"]["arguments"]) for c in calls] == [{"city": "Oslo"}, {"city": "Lima"}]
