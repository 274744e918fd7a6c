"""Constrained decoding: the grammars built from tools, tool_choice and response_format, and the
tiny random model held to them on both engines (a random model is the strongest test: left to
itself it never writes a valid call or document)."""

from __future__ import annotations

import json

import pytest

from tunery.chat import ChatMessage, GenerationParams, Role
from tunery.errors import InvalidInput

WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Forecast for a city.",
                                            "parameters": {"type": "object", "properties": {
                                                "city": {"type": "string", "maxLength": 8},
                                                "days": {"type": "integer", "minimum": 1, "maximum": 7}},
                                                "required": ["city", "days"], "additionalProperties": False}}}
RATE = {"type": "function", "function": {"name": "convert", "parameters": {"type": "object", "properties": {
    "currency": {"enum": ["EUR", "USD", "JPY"]}, "exact": {"type": "boolean"}},
    "required": ["currency", "exact"], "additionalProperties": False}}}
SCHEMA = {"type": "object", "properties": {"ok": {"type": "boolean"}, "stars": {"enum": [1, 2, 3]},
                                           "tag": {"type": "string", "maxLength": 5}},
          "required": ["ok", "stars", "tag"], "additionalProperties": False}
ASK = [ChatMessage(Role.USER, "What is the weather in Rome this week?")]


def params(**kw) -> GenerationParams:
    return GenerationParams(**{"max_tokens": 120, "seed": 3, **kw})


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def guide_walk(tok, grammar: str, text: str) -> bool:
    """Whether ``text``, tokenized, is accepted step by step by a matcher of ``grammar``."""
    from tunery.serving.constrained import Guide

    guide = Guide(grammar, tok, [tok.eos_token_id])
    for t in tok.encode(text, add_special_tokens=False):
        if not guide.allowed(len(tok))[t]:
            return False
        guide.consume(t)
    return bool(guide.allowed(len(tok))[tok.eos_token_id])


def call(name: str, **args) -> str:
    from tunery.chat_template import tool_call_text

    return tool_call_text([{"function": {"name": name, "arguments": json.dumps(args)}}])


# -- grammars ----------------------------------------------------------------------------------------

def test_no_tools_and_no_format_means_no_constraint():
    from tunery.serving.constrained import grammar, prompt_tools

    assert grammar(GenerationParams()) is None
    assert grammar(params(tools=(WEATHER,), tool_choice="none")) is None
    assert prompt_tools(params(tools=(WEATHER,), tool_choice="none")) is None
    assert prompt_tools(params(tools=(WEATHER,))) == [WEATHER]


def test_auto_allows_text_or_valid_calls_only(tok):
    from tunery.serving.constrained import grammar

    g = grammar(params(tools=(WEATHER, RATE)))
    assert guide_walk(tok, g, "It is sunny in Rome.")
    assert guide_walk(tok, g, call("get_weather", city="Rome", days=3))
    assert guide_walk(tok, g, "Let me look.\n" + call("get_weather", city="Rome", days=3) + "\n"
                      + call("convert", currency="EUR", exact=True))
    assert not guide_walk(tok, g, call("get_weather", city="Rome", days=9))  # over the maximum
    assert not guide_walk(tok, g, call("get_weather", city="Rome"))  # a required argument missing
    assert not guide_walk(tok, g, call("book_hotel", city="Rome"))  # no such function
    assert not guide_walk(tok, g, "<tool_call>\nnot json\n</tool_call>")


def test_arguments_hold_only_declared_parameters_unless_the_schema_says_otherwise(tok):
    from tunery.chat_template import parse_tool_calls
    from tunery.serving.constrained import check, grammar, invalid_calls

    city = {"city": {"type": "string"}}

    def walk(schema, **args):
        p = params(tools=({"type": "function", "function": {"name": "get_time", "parameters": schema}},))
        check(p)  # compiles, as sent
        text = call("get_time", **args)
        allowed = guide_walk(tok, grammar(p), text)
        # the grammar and the server's own check of a call agree
        assert allowed == (not invalid_calls(parse_tool_calls(text)[1], p))
        return allowed

    listed = {"type": "object", "properties": city, "required": ["city"]}
    assert walk(listed, city="Rome")
    assert not walk(listed, city="Rome", date="2026-01-01")  # not declared
    assert not walk({"properties": city, "required": ["city"]}, city="Rome", date="2026-01-01")  # no "type"
    assert walk({**listed, "additionalProperties": True}, city="Rome", date="2026-01-01")  # it says so
    assert walk({**listed, "additionalProperties": {"type": "string"}}, city="Rome", date="2026-01-01")
    assert not walk({**listed, "additionalProperties": {"type": "integer"}}, city="Rome", date="2026-01-01")
    # properties composed elsewhere stay reachable: closing the top level would refuse them
    assert walk({"type": "object", "allOf": [{"properties": city, "required": ["city"]}]}, city="Rome")
    assert walk({"type": "object", "$ref": "#/$defs/a", "$defs": {"a": {"properties": city, "required": ["city"]}}},
                city="Rome")
    assert walk({"type": "object"}, city="Rome")  # a free-form object
    # a string held to its pattern: a date cannot be written in words, or be a town (issue 17's round 14)
    dated = {**listed, "properties": {**city, "date": {"type": "string", "pattern": r"^20[0-9]{2}-(0[1-9]|1[0-2])-[0-3][0-9]$"}}}
    assert walk(dated, city="Rome", date="2027-05-15")
    assert not walk(dated, city="Rome", date="15 July 2027")
    assert not walk(dated, city="Rome", date="Trebinje")


def test_required_named_and_single_calls(tok):
    from tunery.serving.constrained import grammar

    both = call("get_weather", city="Rome", days=3) + "\n" + call("convert", currency="USD", exact=False)
    required = grammar(params(tools=(WEATHER, RATE), tool_choice="required"))
    assert not guide_walk(tok, required, "It is sunny.") and guide_walk(tok, required, both)
    assert not guide_walk(tok, grammar(params(tools=(WEATHER, RATE), tool_choice="required", parallel_tool_calls=False)),
                          both)
    named = grammar(params(tools=(WEATHER, RATE), tool_choice={"type": "function", "function": {"name": "convert"}}))
    assert guide_walk(tok, named, call("convert", currency="JPY", exact=True))
    assert not guide_walk(tok, named, call("get_weather", city="Rome", days=3))


def test_response_formats(tok):
    from tunery.serving.constrained import grammar

    obj = grammar(params(response_format={"type": "json_object"}))
    assert guide_walk(tok, obj, '{"a": [1, 2]}') and not guide_walk(tok, obj, "[1, 2]") and not guide_walk(tok, obj, "hello")
    sch = grammar(params(response_format={"type": "json_schema", "json_schema": {"name": "r", "schema": SCHEMA,
                                                                                  "strict": True}}))
    assert guide_walk(tok, sch, '{"ok": true, "stars": 2, "tag": "nice"}')
    assert not guide_walk(tok, sch, '{"ok": true, "stars": 4, "tag": "nice"}')
    assert grammar(params(response_format={"type": "text"})) is None


@pytest.mark.parametrize("kw,param", [
    ({"tools": ({"type": "function"},)}, "tools"),
    ({"tools": ({"type": "function", "function": {"name": "has space"}},)}, "tools[0].function.name"),
    ({"tools": ({"type": "function", "function": {"name": "f", "parameters": {"type": "objekt"}}},)},
     "tools[0].function.parameters"),
    ({"tools": (WEATHER, WEATHER)}, "tools"),
    ({"tool_choice": "required"}, "tool_choice"),
    ({"tools": (WEATHER,), "tool_choice": "always"}, "tool_choice"),
    ({"tools": (WEATHER,), "tool_choice": {"type": "function", "function": {"name": "convert"}}}, "tool_choice"),
    ({"response_format": {"type": "yaml"}}, "response_format.type"),
    ({"response_format": {"type": "json_schema"}}, "response_format.json_schema"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": 5}}}},
     "response_format.json_schema.schema"),
])
def test_bad_specs_name_the_param(kw, param):
    from tunery.serving.constrained import check

    with pytest.raises(InvalidInput) as e:
        check(params(**kw))
    assert e.value.param == param


@pytest.mark.parametrize("where", ["response_format", "tools"])
@pytest.mark.parametrize("strict", [None, False, True])
def test_a_schema_that_cannot_be_enforced_offers_strict_false_only_when_strict_was_sent(where, strict):
    from tunery.serving.constrained import check

    schema = {"type": "object", "properties": {"a": {"type": "string", "pattern": "(?=a)"}}}  # look-ahead
    spec = {"name": "x", "schema": schema} | ({} if strict is None else {"strict": strict})
    kw = ({"response_format": {"type": "json_schema", "json_schema": spec}} if where == "response_format" else
          {"tools": ({"type": "function", "function": {"name": "x", "parameters": schema}
                      | ({} if strict is None else {"strict": strict})},), "tool_choice": "required"})
    with pytest.raises(InvalidInput) as e:
        check(params(**kw))
    assert e.value.param == ("response_format.json_schema.schema" if where == "response_format"
                             else "tools[0].function.parameters")
    assert "cannot be enforced" in str(e.value)
    assert ("set strict to false" in str(e.value)) == (strict is True)


def test_invalid_calls_names_each_problem():
    from tunery.serving.constrained import invalid_calls

    def c(name, args):
        return {"id": "call_1", "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}

    p = params(tools=(WEATHER,))
    assert invalid_calls([c("get_weather", {"city": "Rome", "days": 2})], p) == []
    problems = invalid_calls([c("get_weather", {"city": "Rome", "days": 12}), c("nope", {})], p)
    assert len(problems) == 2 and "get_weather" in problems[0] and "nope" in problems[1]


# -- the engines -------------------------------------------------------------------------------------

def validate(doc, schema) -> None:
    import jsonschema

    jsonschema.validate(doc, schema)


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_random_model_calls_always_validate_on_both_engines(tiny_model, precision):
    from tunery.chat_template import parse_tool_calls
    from tunery.serving.local import LocalChatModel

    model = LocalChatModel("tiny-random", precision=precision)
    specs = {t["function"]["name"]: t["function"]["parameters"] for t in (WEATHER, RATE)}
    # sampled at temperature 1.2, a choice per seed, different constraints batched together
    runs = [model.start(ASK, params(tools=(WEATHER, RATE), tool_choice=choice, n=4, temperature=1.2,
                                    parallel_tool_calls=False, seed=seed))
            for seed, choice in enumerate(["required", {"type": "function", "function": {"name": "convert"}}])]
    runs.append(model.start(ASK, params(n=2, temperature=1.2)))  # unconstrained, in the same batches
    answers = [(run, run.collect()) for run in runs]
    for run, done in answers[:2]:
        assert run.finish_reasons == ["stop"] * 4
        for text in done.choices:
            content, calls = parse_tool_calls(text)
            assert content == "" and len(calls) == 1, text
            fn = calls[0]["function"]
            validate(json.loads(fn["arguments"]), specs[fn["name"]])
    assert {parse_tool_calls(t)[1][0]["function"]["name"] for t in answers[1][1].choices} == {"convert"}
    assert not any(parse_tool_calls(t)[1] for t in answers[2][1].choices)


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_random_model_json_schema_always_validates(tiny_model, precision):
    from tunery.serving.local import LocalChatModel

    fmt = {"type": "json_schema", "json_schema": {"name": "review", "schema": SCHEMA, "strict": True}}
    run = LocalChatModel("tiny-random", precision=precision).start(
        ASK, params(response_format=fmt, n=6, temperature=1.5, max_tokens=200))
    done = run.collect()
    assert run.finish_reasons == ["stop"] * 6
    for text in done.choices:
        validate(json.loads(text), SCHEMA)
    assert len(set(done.choices)) > 1  # sampled, not one forced document


def test_constraint_keeps_greedy_choice_where_allowed(tiny_model):
    """A constraint only masks: where the model's own greedy answer is allowed, it is unchanged."""
    from tunery.serving.local import LocalChatModel

    model = LocalChatModel("tiny-random", precision="fp32")
    free = model.generate(ASK, params(temperature=0, max_tokens=12)).text
    auto = model.generate(ASK, params(temperature=0, max_tokens=12, tools=(WEATHER,))).text
    plain = model.generate(ASK, params(temperature=0, max_tokens=12, tools=(WEATHER,), tool_choice="none")).text
    assert free and TOOL_OPEN not in free
    # the tools change the prompt (so the answer), not whether free text may be written
    assert TOOL_OPEN not in auto and plain == free


TOOL_OPEN = "<tool_call>"
