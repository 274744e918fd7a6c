"""Tool-calling examples in OpenAI's fine-tuning format: what the validator accepts, each rule it
enforces (with line, message and field), and scrub, split and stats on such examples."""

from __future__ import annotations

import copy
import json

import pytest
from chatlines import SYSTEM, good_lines, jsonl, line

from tunery.data import validate_bytes

TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather_forecast", "description": "Forecast for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"},
                                                        "date": {"type": "string", "pattern": "^\\d{4}-\\d{2}-\\d{2}$"}},
                       "required": ["city"], "additionalProperties": False}}},
    {"type": "function", "function": {
        "name": "convert_currency", "description": "Convert money",
        "parameters": {"type": "object", "properties": {"amount": {"type": "number"}, "from": {"type": "string"},
                                                        "to": {"type": "string"}},
                       "required": ["amount", "from", "to"]}}},
]
USER = {"role": "user", "content": "Weather in Oslo and 20 EUR in NOK?"}


def call(cid: str, name: str, args: dict | str) -> dict:
    return {"id": cid, "type": "function",
            "function": {"name": name, "arguments": args if isinstance(args, str) else json.dumps(args)}}


def deep_schema(depth: int) -> dict:
    """An array of arrays ... ``depth`` deep: a schema past what jsonschema can walk."""
    schema: dict = {"type": "string"}
    for _ in range(depth):
        schema = {"type": "array", "items": schema}
    return schema


def tool_example(**extra) -> dict:
    """A valid example: parallel calls, both answered, then the final answer."""
    return {"messages": [SYSTEM, USER,
                         {"role": "assistant", "content": None,
                          "tool_calls": [call("c1", "get_weather_forecast", {"city": "Oslo"}),
                                         call("c2", "convert_currency", {"amount": 20, "from": "EUR", "to": "NOK"})]},
                         {"role": "tool", "tool_call_id": "c1", "content": '{"summary": "snow"}'},
                         {"role": "tool", "tool_call_id": "c2", "content": '{"result": 231.4}'},
                         {"role": "assistant", "content": "Snow in Oslo; 20 EUR is 231.40 NOK."}],
            "tools": TOOLS, **extra}


def report_of(obj: dict | str):
    """Ten good plain examples, then ``obj`` on line 11."""
    return validate_bytes(jsonl([*good_lines(10), obj if isinstance(obj, str) else line(obj)]))


def errors_on_11(obj) -> list[tuple[str | None, str]]:
    report = report_of(obj)
    assert all(i.line == 11 for i in report.errors), report.format()
    return [(i.field, i.message) for i in report.errors]


def test_a_tool_calling_example_is_valid_and_keeps_its_tools():
    report = report_of(tool_example(parallel_tool_calls=True))
    assert report.ok and not report.issues, report.format()
    conv = report.examples[-1][1]
    assert conv.tools == tuple(TOOLS)
    assert [len(m.tool_calls or ()) for m in conv.messages] == [0, 0, 2, 0, 0, 0]
    assert conv.messages[3].tool_call_id == "c1"


def test_a_call_may_end_the_example_and_carry_a_weight():
    ex = tool_example()
    ex["messages"] = ex["messages"][:3]
    ex["messages"][2]["weight"] = 1
    assert report_of(ex).ok
    ex["messages"][2]["content"] = "Let me check both."  # text beside the calls is fine too
    assert report_of(ex).ok


def test_an_empty_tools_list_declares_none():
    """As OpenAI's examples write it: valid, the same as no tools, and a call then names nothing."""
    plain = {"messages": [SYSTEM, USER, {"role": "assistant", "content": "Snow."}], "tools": []}
    report = report_of(plain)
    assert report.ok and report.examples[-1][1].tools is None, report.format()
    calling = mutate("tools", [])
    assert ("messages[2].tool_calls[0].function.name", "calls 'get_weather_forecast', but the example declares no "
            'tools: list the functions in "tools"') in errors_on_11(calling)


def test_messages_dumped_from_api_responses_are_taken_as_written_without_their_empty_fields():
    """The openai SDK's ``message.model_dump()`` writes refusal, audio, function_call and
    tool_calls as null and annotations as []: those are absent, whatever else is checked (an empty
    tool_calls list is still an error: a dump never writes one)."""
    unset = {"refusal": None, "audio": None, "function_call": None, "annotations": []}
    ex = tool_example()
    ex["messages"][2].update(unset)
    ex["messages"][5].update(unset, tool_calls=None)
    report = report_of(ex)
    assert report.ok and not report.issues, report.format()
    assert report.examples[-1][1].messages[5].tool_calls is None
    pair = {"input": {"messages": [USER]},
            "preferred_output": [{"role": "assistant", "content": "Yes.", **unset, "tool_calls": None}],
            "non_preferred_output": [{"role": "assistant", "content": "No.", **unset}]}
    assert report_of(pair).ok, report_of(pair).format()
    # only empty ones: a refusal's text or a call of null content is still a problem
    said = copy.deepcopy(ex)
    said["messages"][5]["refusal"] = "I can't help with that."
    assert [f for f, _ in errors_on_11(said)] == ["messages[5].refusal"]
    nothing = copy.deepcopy(ex)
    nothing["messages"][5]["content"] = None  # with tool_calls null: neither text nor calls
    assert errors_on_11(nothing) == [("messages[5].content", "content is null: every message needs text")]


def mutate(path: str, value, *, delete: bool = False) -> dict:
    """tool_example() with the field at ``path`` (dots and [i]) set to ``value`` or deleted."""
    ex = copy.deepcopy(tool_example())
    keys = [int(k) if k.isdigit() else k for k in path.replace("[", ".").replace("]", "").split(".")]
    holder = ex
    for k in keys[:-1]:
        holder = holder[k]
    if delete:
        del holder[keys[-1]]
    else:
        holder[keys[-1]] = value
    return ex


CALL = "messages[2].tool_calls[0]"
CASES = [
    # the tools
    ("tools-not-list", mutate("tools", {"a": 1}), "tools", "tools must be a list of tools, got an object"),
    ("tool-type", mutate("tools[0].type", "retrieval"), "tools[0].type", 'type must be "function"'),
    ("tool-name-pattern", mutate("tools[0].function.name", "get weather"), "tools[0].function.name",
     "name must be 1-64 letters, digits, _ or -"),
    ("tool-name-twice", mutate("tools[1].function.name", "get_weather_forecast"), "tools[1].function.name",
     "declared twice"),
    ("tool-description", mutate("tools[0].function.description", 3), "tools[0].function.description",
     "description must be a string"),
    ("parameters-not-object", mutate("tools[0].function.parameters", {"type": "string"}),
     "tools[0].function.parameters", 'JSON schema of type "object"'),
    ("parameters-bad-schema", mutate("tools[0].function.parameters.properties.city.type", "text"),
     "tools[0].function.parameters.properties.city.type", "not a valid JSON schema"),
    ("parameters-too-deep", mutate("tools[0].function.parameters.properties.city", deep_schema(150)),
     "tools[0].function.parameters", "nested too deeply: a schema may nest at most 64 levels"),
    ("function-unknown-key", mutate("tools[0].function.params", {}), "tools[0].function.params", "unknown key"),
    # the calls
    ("call-unknown-function", mutate(f"{CALL}.function.name", "book_hotel"), f"{CALL}.function.name",
     "'book_hotel', which is not among the example's tools (get_weather_forecast, convert_currency)"),
    ("call-without-tools", mutate("tools", None, delete=True), f"{CALL}.function.name",
     "declares no tools"),
    ("arguments-not-string", mutate(f"{CALL}.function.arguments", {"city": "Oslo"}), f"{CALL}.function.arguments",
     "arguments must be a JSON string"),
    ("arguments-not-json", mutate(f"{CALL}.function.arguments", "{city: Oslo}"), f"{CALL}.function.arguments",
     "arguments are not valid JSON"),
    ("arguments-too-deep", mutate(f"{CALL}.function.arguments", "[" * 100_000 + "]" * 100_000),
     f"{CALL}.function.arguments", "arguments are not valid JSON: nested too deeply"),
    ("schema-value-as-json", mutate("tools[0].function.parameters.properties.city.type", ["string", {"a": 1}]),
     "tools[0].function.parameters.properties.city.type",
     'not a valid JSON schema: ["string", {"a": 1}] is not valid under any of the given schemas'),
    ("arguments-missing-required", mutate(f"{CALL}.function.arguments", "{}"), f"{CALL}.function.arguments",
     "'city' is a required property"),
    ("arguments-wrong-type", mutate("messages[2].tool_calls[1].function.arguments",
                                    '{"amount": "20", "from": "EUR", "to": "NOK"}'),
     "messages[2].tool_calls[1].function.arguments", "arguments.amount do not match"),
    ("arguments-pattern", mutate(f"{CALL}.function.arguments", '{"city": "Oslo", "date": "tomorrow"}'),
     f"{CALL}.function.arguments", "arguments.date do not match the function's parameters"),
    ("arguments-extra", mutate(f"{CALL}.function.arguments", '{"city": "Oslo", "units": "C"}'),
     f"{CALL}.function.arguments", "Additional properties are not allowed"),
    ("call-id-missing", mutate(f"{CALL}.id", None, delete=True), f"{CALL}.id", "id must be a non-empty string"),
    ("call-id-twice", mutate("messages[2].tool_calls[1].id", "c1"), "messages[2].tool_calls[1].id",
     "used twice"),
    ("call-type", mutate(f"{CALL}.type", "fn"), f"{CALL}.type", 'type must be "function"'),
    ("calls-on-user", mutate("messages[1].tool_calls", []), "messages[1].tool_calls",
     "only allowed on assistant messages"),
    ("not-parallel", tool_example(parallel_tool_calls=False), "messages[2].tool_calls",
     "2 calls in one message, but parallel_tool_calls is false"),
    # the results
    ("result-unknown-id", mutate("messages[3].tool_call_id", "c9"), "messages[3].tool_call_id",
     "'c9' answers no earlier tool call"),
    ("result-twice", mutate("messages[4].tool_call_id", "c1"), "messages[4].tool_call_id", "already answered"),
    ("result-without-id", mutate("messages[3].tool_call_id", None, delete=True), "messages[3].tool_call_id",
     "missing tool_call_id"),
    ("call-unanswered", mutate("messages[4]", {"role": "user", "content": "And?"}), "messages[4].role",
     "not answered"),
    ("result-id-on-user", mutate("messages[1].tool_call_id", "c1"), "messages[1].tool_call_id",
     "only allowed on tool messages"),
    # the legacy shape
    ("legacy-functions", {**tool_example(), "functions": []}, "functions", 'declare functions in "tools"'),
    ("legacy-function-call", mutate("messages[2].function_call", {"name": "x"}), "messages[2].function_call",
     "legacy function-calling shape"),
]


@pytest.mark.parametrize(("obj", "field", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_tool_rule_names_line_field_and_problem(obj, field, message):
    errors = errors_on_11(obj)
    assert any(f == field and message in m for f, m in errors), errors


def test_a_call_answered_after_the_next_turn_is_named_late_not_already_answered():
    """Once a call left unanswered at the next turn, then answered, was said to be "already answered"."""
    ex = tool_example()
    m = ex["messages"]
    ex["messages"] = [*m[:4], {"role": "user", "content": "And the money?"}, m[4], m[5]]
    errors = errors_on_11(ex)
    assert ("messages[4].role", "tool call 'c2' of messages[2] not answered: give each call a tool message before "
                                "the next turn") in errors
    assert ("messages[5].tool_call_id", "call 'c2' is answered too late: answer each call right after the assistant "
                                        "message that makes it, before the next turn") in errors
    assert not any("already answered" in message for _, message in errors), errors


def test_a_legacy_example_gets_one_readable_error_per_legacy_part():
    legacy = {"functions": [{"name": "f", "parameters": {"type": "object"}}],
              "messages": [USER, {"role": "assistant", "function_call": {"name": "f", "arguments": "{}"}},
                           {"role": "function", "name": "f", "content": "r"}, {"role": "assistant", "content": "ok"}]}
    errors = errors_on_11(legacy)
    assert [f for f, _ in errors] == ["functions", "messages[1].function_call", "messages[2].role"], errors
    assert errors[0][1].startswith("'functions' is the legacy function-calling shape, which tunery does not take: "
                                   'declare functions in "tools"')


def test_content_is_still_required_without_calls():
    ex = tool_example()
    ex["messages"][5]["content"] = None
    assert ("messages[5].content", "content is null: every message needs text") in errors_on_11(ex)


# --- the other data tools ---------------------------------------------------------------------------

def test_scrub_keeps_arguments_and_results_valid_json(tmp_path):
    from tunery.data.scrub import scrub_file

    ex = tool_example()
    ex["messages"][2]["tool_calls"][0]["function"]["arguments"] = json.dumps({"city": "Oslo, ana.silva@example.com"})
    ex["messages"][3]["content"] = json.dumps({"summary": "snow", "contact": "+44 20 7946 0958"})
    src = tmp_path / "d.jsonl"
    src.write_bytes(jsonl([*good_lines(10), line(ex)]))
    report = scrub_file(src, tmp_path / "out.jsonl")
    out = json.loads((tmp_path / "out.jsonl").read_text().splitlines()[-1])
    assert json.loads(out["messages"][2]["tool_calls"][0]["function"]["arguments"]) == {"city": "Oslo, [EMAIL]"}
    assert json.loads(out["messages"][3]["content"]) == {"summary": "snow", "contact": "[PHONE]"}
    assert {f.field for f in report.findings} == {"messages[2].tool_calls[0].function.arguments", "messages[3].content"}
    assert validate_bytes((tmp_path / "out.jsonl").read_bytes()).ok


def test_scrub_changes_nothing_in_arguments_and_results_but_the_personal_data(tmp_path):
    """Numbers, keys, escapes and layout of the JSON text stay as written: re-serialised, 19.90 became
    19.9 in the text the model learns from, and a valid 1e400 became the invalid Infinity."""
    from tunery.data.scrub import scrub_file

    args = '{"amount": 19.90, "from": "EUR", "to": "NOK", "note": "for ana.silva@example.com", "x": 1e400}'
    result = '{\n  "rate": 11.570,\n  "ana@example.com": "caf\\u00e9",\n  "by": "+44 20 7946 0958"\n}'
    ex = tool_example()
    ex["messages"][2]["tool_calls"][1]["function"]["arguments"] = args
    ex["messages"][4]["content"] = result
    src = tmp_path / "d.jsonl"
    src.write_bytes(jsonl([*good_lines(10), line(ex)]))
    scrub_file(src, tmp_path / "out.jsonl")
    out = json.loads((tmp_path / "out.jsonl").read_text().splitlines()[-1])
    assert out["messages"][2]["tool_calls"][1]["function"]["arguments"] == args.replace("ana.silva@example.com",
                                                                                          "[EMAIL]")
    assert out["messages"][4]["content"] == result.replace("+44 20 7946 0958", "[PHONE]")  # a key is shape, kept
    assert validate_bytes((tmp_path / "out.jsonl").read_bytes()).ok


def test_scrub_finds_a_card_number_written_as_a_json_number(tmp_path):
    """A tool's result (and a call's arguments) may hold a card number as a JSON number: once it was
    left in, as only the document's strings were scanned."""
    from tunery.data.scrub import scrub_file

    ex = tool_example()
    ex["messages"][4]["content"] = '{"result": 231.4, "card": 4111111111111111, "year": 2024}'
    src = tmp_path / "d.jsonl"
    src.write_bytes(jsonl([*good_lines(10), line(ex)]))
    report = scrub_file(src, tmp_path / "out.jsonl")
    out = json.loads((tmp_path / "out.jsonl").read_text().splitlines()[-1])
    assert out["messages"][4]["content"] == '{"result": 231.4, "card": "[CARD]", "year": 2024}'
    assert [(f.field, f.match.kind) for f in report.findings] == [("messages[4].content", "CARD")]


def test_split_keeps_tool_examples_whole(tmp_path):
    from tunery.data.split import split_file

    src = tmp_path / "d.jsonl"
    src.write_bytes(jsonl([line(tool_example()) for _ in range(4)] + good_lines(6)))
    result = split_file(src, validation_fraction=0.3, seed=1)
    lines = result.train_path.read_text().splitlines() + result.valid_path.read_text().splitlines()
    assert sum(1 for x in lines if json.loads(x).get("tools") == TOOLS) == 4


def test_stats_count_the_tools_and_calls(tiny_model):
    from tunery.data import token_stats
    from tunery.models.loading import load_tokenizer

    tok = load_tokenizer(tiny_model)
    report = report_of(tool_example())
    conv = report.examples[-1][1]
    bare = type(conv)(conv.messages[:2] + conv.messages[5:])  # no tools, no calls
    with_tools = token_stats([conv], tok, context_length=1024)
    without = token_stats([bare], tok, context_length=1024)
    # the tool definitions and the calls are counted; the calls are trained
    assert with_tools.total_tokens > without.total_tokens + 100
    assert with_tools.trained_tokens > without.trained_tokens + 20
