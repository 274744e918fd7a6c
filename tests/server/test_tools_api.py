"""Tools and response_format over HTTP with the official openai SDK: a complete tool loop (call ->
tool result -> final answer), streamed and not, on the tiny random model and a LoRA fine-tune of
it; json_schema answers; OpenAI-style errors for bad specs."""

from __future__ import annotations

import json

import jsonschema
import pytest

WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Forecast for a city.",
                                            "parameters": {"type": "object", "properties": {
                                                "city": {"type": "string", "maxLength": 8},
                                                "days": {"type": "integer", "minimum": 1, "maximum": 7}},
                                                "required": ["city", "days"], "additionalProperties": False}}}
ASK = [{"role": "user", "content": "What is the weather in Rome this week?"}]
ARGS = WEATHER["function"]["parameters"]
CHAT = "/v1/chat/completions"


@pytest.fixture(params=["tiny-random", "ft"])
def model(request, tiny_model, tiny_model_dir, tmp_path):
    if request.param == "tiny-random":
        return "tiny-random"
    from support_adapters import FT_ID, make_adapter, register_ft

    register_ft(make_adapter(tiny_model_dir, tmp_path / "ft", seed=1))
    return FT_ID


def finish_loop(client, model, messages, **kw):
    """Answer the call with a tool result and ask again: the final answer is plain content."""
    final = client.chat.completions.create(model=model, messages=messages, tools=[WEATHER], max_tokens=20, seed=4,
                                           **kw)
    choice = final.choices[0]
    assert choice.message.tool_calls is None and isinstance(choice.message.content, str)
    assert choice.finish_reason in ("stop", "length")
    return final


def test_tool_loop_not_streamed(client, model):
    first = client.chat.completions.create(model=model, messages=ASK, tools=[WEATHER], tool_choice="required",
                                           parallel_tool_calls=False, max_tokens=80, seed=1, temperature=1.2)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.id.startswith("call_") and call.type == "function" and call.function.name == "get_weather"
    jsonschema.validate(json.loads(call.function.arguments), ARGS)
    messages = [*ASK, choice.message.model_dump(exclude_none=True),
                {"role": "tool", "tool_call_id": call.id, "content": '{"forecast": "sunny", "high_c": 24}'}]
    finish_loop(client, model, messages, tool_choice="none")
    finish_loop(client, model, messages)  # auto: the random model writes text, which stays text


def test_tool_loop_streamed_with_the_sdk_helper(client, model):
    with client.chat.completions.stream(model=model, messages=ASK, tools=[WEATHER], max_tokens=80, seed=2,
                                        tool_choice={"type": "function", "function": {"name": "get_weather"}},
                                        temperature=1.2) as stream:
        events = list(stream)
        first = stream.get_final_completion()
    assert "tool_calls.function.arguments.done" in [e.type for e in events]
    assert not any(e.delta for e in events if e.type == "content.delta")
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.id.startswith("call_") and call.function.name == "get_weather"
    jsonschema.validate(json.loads(call.function.arguments), ARGS)
    messages = [*ASK, {"role": "assistant", "content": None, "tool_calls": [
                    {"id": call.id, "type": "function",
                     "function": {"name": call.function.name, "arguments": call.function.arguments}}]},
                {"role": "tool", "tool_call_id": call.id, "content": "sunny, 24 C"}]
    # the SDK's helper refuses a "length" finish: stop strings end the random model's text early
    with client.chat.completions.stream(model=model, messages=messages, tools=[WEATHER], max_tokens=200,
                                        seed=3, stop=[" ", "e", "a", "o"]) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.tool_calls in (None, []) and final.choices[0].message.content


def test_streamed_calls_match_plain_and_come_in_openai_deltas(client, tiny_model):
    kw = dict(model="tiny-random", messages=ASK, tools=[WEATHER], tool_choice="required", max_tokens=120, seed=7,
              temperature=1.0)
    plain = client.chat.completions.create(**kw).choices[0]
    chunks = list(client.chat.completions.create(**kw, stream=True))
    deltas = [c.choices[0].delta.tool_calls[0] for c in chunks if c.choices and c.choices[0].delta.tool_calls]
    heads = [d for d in deltas if d.id is not None]
    assert heads and all(d.function.name and d.function.arguments == "" and d.type == "function" for d in heads)
    assert [d.index for d in heads] == list(range(len(heads)))
    args: dict[int, str] = {}
    for d in deltas:
        args[d.index] = args.get(d.index, "") + (d.function.arguments or "")
    assert [h.function.name for h in heads] == [c.function.name for c in plain.message.tool_calls]
    assert list(args.values()) == [c.function.arguments for c in plain.message.tool_calls]
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [plain.finish_reason]


def test_json_schema_answers_always_validate(client, tiny_model):
    schema = {"type": "object", "properties": {"city": {"enum": ["Rome", "Oslo", "Lima"]},
                                               "nights": {"type": "integer", "minimum": 1, "maximum": 14}},
              "required": ["city", "nights"], "additionalProperties": False}
    fmt = {"type": "json_schema", "json_schema": {"name": "trip", "schema": schema, "strict": True}}
    r = client.chat.completions.create(model="tiny-random", messages=ASK, response_format=fmt, n=5, max_tokens=60,
                                       temperature=1.3, seed=11)
    for c in r.choices:
        assert c.finish_reason == "stop"
        jsonschema.validate(json.loads(c.message.content), schema)
    obj = client.chat.completions.create(model="tiny-random", messages=ASK, max_tokens=60, seed=1,
                                         response_format={"type": "json_object"}, temperature=0)
    if obj.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(obj.choices[0].message.content), dict)
    else:  # cut by max_tokens: still the start of an object
        assert obj.choices[0].message.content.startswith("{")


@pytest.mark.parametrize("extra,param", [
    ({"tools": [{"type": "function", "function": {"name": "bad name!"}}]}, "tools[0].function.name"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"functions": [WEATHER["function"]]}, "functions"),
    ({"function_call": "auto"}, "function_call"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "objekt"}}}},
     "response_format.json_schema.schema"),
    ({"messages": [*ASK, {"role": "assistant", "content": None,
                          "tool_calls": [{"id": "c1", "type": "function",
                                          "function": {"name": "get_weather", "arguments": "{not json"}}]}]},
     "messages[1].tool_calls[0].function.arguments"),
    ({"messages": [*ASK, {"role": "assistant", "content": None,
                          "tool_calls": [{"id": "c1", "type": "function",
                                          "function": {"name": "get_weather", "arguments": "{}"}}]},
                   {"role": "tool", "tool_call_id": "c2", "content": "x"}]}, "messages[2].tool_call_id"),
    ({"messages": [{"role": "function", "name": "f", "content": "x"}]}, "messages[0].role"),
])
def test_bad_tool_requests_are_400_naming_the_param(http, tiny_model, extra, param):
    r = http.post(CHAT, json={"model": "tiny-random", "messages": ASK, **extra})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param and err["type"] == "invalid_request_error" and err["message"]
    assert "tools" in err["message"] or param != "functions"


def deep_schema(depth: int) -> dict:
    schema: dict = {"type": "string"}
    for _ in range(depth):
        schema = {"type": "array", "items": schema}
    return schema


@pytest.mark.parametrize("extra,param", [
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": deep_schema(150)}}},
     "response_format.json_schema.schema"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": deep_schema(150)}}],
      "tool_choice": "none"},  # "none": checked, but kept out of the tiny model's short prompt
     "tools[0].function.parameters"),
])
def test_a_schema_nested_too_deeply_is_400_not_500(http, tiny_model, extra, param):
    r = http.post(CHAT, json={"model": "tiny-random", "messages": ASK, "max_tokens": 1, **extra})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param and "nested too deeply" in err["message"] and "64 levels" in err["message"]
    # a schema just under the limit is served
    extra = json.loads(json.dumps(extra).replace(json.dumps(deep_schema(150)), json.dumps(deep_schema(62))))
    assert http.post(CHAT, json={"model": "tiny-random", "messages": ASK, "max_tokens": 1, **extra}).status_code == 200


def test_tool_call_arguments_nested_too_deeply_are_400_not_500(http, tiny_model):
    deep = "[" * 2000 + "]" * 2000
    msgs = [*ASK, {"role": "assistant", "tool_calls": [{"id": "a", "type": "function",
                                                         "function": {"name": "f", "arguments": deep}}]}]
    r = http.post(CHAT, json={"model": "tiny-random", "messages": msgs})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == "messages[1].tool_calls[0].function.arguments"
    assert "not valid JSON: nested too deeply" in err["message"]


def test_text_that_is_not_a_valid_call_stays_content(tiny_model):
    from tunery.chat import GenerationParams
    from tunery.server.api.chat import _CallStream, _split_calls

    p = GenerationParams(tools=(WEATHER,))
    bad = 'Hmm <tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome", "days": 40}}\n</tool_call>'
    assert _split_calls(bad, p) == (bad, [])
    assert _split_calls("<tool_call>\nnot json\n</tool_call>", p)[1] == []
    stream = _CallStream(p)
    sent = [d for piece in (bad[:9], bad[9:30], bad[30:]) for d in stream.push(piece)] + stream.flush()
    assert "".join(d["content"] for d in sent) == bad and stream.calls == 0


@pytest.mark.parametrize("tool_choice", ["required", {"type": "function", "function": {"name": "get_weather"}}])
def test_a_call_cut_by_max_tokens_shows_no_markup_streamed_or_not(client, tiny_model, tool_choice):
    """The grammar makes the model open a block at once; 8 tokens cut it inside the arguments."""
    kw = dict(model="tiny-random", messages=ASK, tools=[WEATHER], tool_choice=tool_choice, max_tokens=8, seed=1)
    plain = client.chat.completions.create(**kw).choices[0]
    assert plain.finish_reason == "length"
    assert plain.message.content is None and plain.message.tool_calls is None
    chunks = list(client.chat.completions.create(**kw, stream=True))
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert "".join(d.content or "" for d in deltas) == "" and not any(d.tool_calls for d in deltas)
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["length"]


@pytest.mark.parametrize(("text", "content", "n_calls"), [
    ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Ro', "", 0),
    ('Let me look.\n<tool_call>\n{"name": "get_weather", "arg', "Let me look.\n", 0),
    ("Let me look.\n<tool_", "Let me look.\n", 0),
    ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome", "days": 2}}\n</tool_call>\n'
     '<tool_call>\n{"name": "get_weather", "arguments": {"ci', "", 1),  # the whole call is kept
    ('Hmm <tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome", "days": 40}}\n</tool_call> and <tool',
     'Hmm <tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome", "days": 40}}\n</tool_call> and ', 0),
])
def test_a_block_cut_by_max_tokens_is_left_out_streamed_as_plain(tiny_model, text, content, n_calls):
    from tunery.chat import GenerationParams
    from tunery.server.api.chat import _CallStream, _split_calls

    p = GenerationParams(tools=(WEATHER,))
    got, calls = _split_calls(text, p, cut=True)
    assert (got, len(calls)) == (content, n_calls)
    assert _split_calls(text, p)[0] != content or n_calls  # without the cut, the markup would stay
    for step in (1, 7, len(text)):
        stream = _CallStream(p)
        sent = [d for i in range(0, len(text), step) for d in stream.push(text[i:i + step])] + stream.flush(cut=True)
        assert "".join(d.get("content", "") for d in sent) == content and stream.calls == n_calls


def test_tunerys_client_of_a_remote_endpoint_runs_a_tool_loop(server, tiny_model):
    """`MODEL@URL` (tunery's client of any OpenAI-compatible endpoint, here a tunery server) sends
    the tools and the loop's messages, and gets the calls back as `<tool_call>` blocks, streamed
    and not, which parse to schema-valid calls."""
    from tunery.chat import ChatMessage, GenerationParams, Role
    from tunery.chat_template import parse_tool_calls
    from tunery.serving import OpenAIChatModel

    remote = OpenAIChatModel("tiny-random", server.base_url)
    ask = [ChatMessage(Role.USER, ASK[0]["content"])]
    params = GenerationParams(tools=(WEATHER,), tool_choice="required", parallel_tool_calls=False, max_tokens=80,
                              seed=1, temperature=1.2)
    for answer in (remote.generate(ask, params).text, "".join(c.text for c in remote.stream(ask, params))):
        _, (call,) = parse_tool_calls(answer)
        assert call["function"]["name"] == "get_weather"
        jsonschema.validate(json.loads(call["function"]["arguments"]), ARGS)
    loop = [*ask, ChatMessage(Role.ASSISTANT, "", tool_calls=(call,)),
            ChatMessage(Role.TOOL, '{"forecast": "sunny"}', tool_call_id=call["id"])]
    final = remote.generate(loop, GenerationParams(tools=(WEATHER,), tool_choice="none", max_tokens=10, seed=4))
    assert parse_tool_calls(final.text)[1] == [] and final.finish_reason in ("stop", "length")


def test_tool_call_threshold_is_taken_from_extra_body_and_checked(client, tiny_model, call_gates):
    """tunery's extension (issue 17), sent as the SDK sends extra fields; out of 0-1, a 400 naming it."""
    import openai

    client.chat.completions.create(model="tiny-random", messages=ASK, tools=[WEATHER], max_tokens=2,
                                   extra_body={"tool_call_threshold": 0.9})
    assert [g["threshold"] for g in call_gates] == [0.9]
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="tiny-random", messages=ASK, tools=[WEATHER], max_tokens=2,
                                       extra_body={"tool_call_threshold": 2})
    assert e.value.body["param"] == "tool_call_threshold"
