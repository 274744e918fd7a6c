"""One malformed line per rule of the validator: each is reported with its line and field."""

from __future__ import annotations

import json

import pytest
from chatlines import SYSTEM, example, good_lines, jsonl, line

from tunery.data import validate_bytes

USER = {"role": "user", "content": "Hello"}
ASSISTANT = {"role": "assistant", "content": "Hi there"}


def issues_on_line_11(bad: str | bytes, purpose: str = "training"):
    """Validate ten good examples with ``bad`` as line 11; the issues of line 11."""
    data = jsonl(good_lines(10)) + (bad if isinstance(bad, bytes) else bad.encode()) + b"\n"
    report = validate_bytes(data, purpose=purpose)
    assert report.n_lines == 11
    assert all(i.line == 11 for i in report.issues), report.format()
    return report


def msgs(*messages, **extra) -> str:
    return line({"messages": list(messages), **extra})


ERROR_CASES = [
    # line-level: encoding, JSON, shape
    ("not-utf8", b'{"messages": "caf\xe9"}', None, "not valid UTF-8 (byte 0xe9 at column 18)"),
    ("not-json", '{"messages": [', None, "not valid JSON"),
    ("nan", '{"messages": NaN}', None, "not valid JSON: NaN is not valid JSON"),
    ("nul-byte", '{"messages": "a\x00b"}', None, "not valid JSON: Invalid control character at column 16"),
    ("huge-number", '{"messages": ' + "9" * 5000 + "}", None,
     "not valid JSON: a number is too long (more than 4300 digits)"),
    ("not-object", "[1, 2]", None, "expected a JSON object"),
    ("string-line", '"hello"', None, "expected a JSON object"),
    ("missing-messages", "{}", "messages", 'missing "messages"'),
    ("prompt-completion", line({"prompt": "Rome?", "completion": "The Forum."}), None,
     "legacy prompt/completion format, which chat models do not train on: write {\"messages\": [{\"role\": \"user\""),
    ("messages-not-list", '{"messages": "hi"}', "messages", "messages must be a list of messages, got a string"),
    ("messages-empty", '{"messages": []}', "messages", "messages is empty"),
    ("unknown-top-key", msgs(SYSTEM, USER, ASSISTANT, meta=1), "meta", 'unknown key "meta"'),
    ("tools-null", msgs(SYSTEM, USER, ASSISTANT, tools=None), "tools", "tools must be a list of tools, got null"),
    ("functions", msgs(SYSTEM, USER, ASSISTANT, functions=[]), "functions", "legacy function-calling shape"),
    ("parallel-tool-calls", msgs(SYSTEM, USER, ASSISTANT, parallel_tool_calls="yes"), "parallel_tool_calls",
     "must be true or false"),
    # messages
    ("message-not-object", msgs(SYSTEM, "hello", ASSISTANT), "messages[1]", "a message must be an object"),
    ("missing-role", msgs(SYSTEM, {"content": "hi"}, ASSISTANT), "messages[1].role", "missing role"),
    ("role-not-string", msgs(SYSTEM, {"role": 3, "content": "hi"}, ASSISTANT), "messages[1].role",
     "role must be a string, got a number"),
    ("unknown-role", msgs(SYSTEM, USER, {"role": "assistent", "content": "x"}), "messages[2].role",
     'unknown role "assistent": use system, user, assistant or tool'),
    ("tool-role-without-call", msgs(SYSTEM, USER, {"role": "tool", "content": "x", "tool_call_id": "c1"}),
     "messages[2].role", "a tool message must follow the assistant message whose call it answers"),
    ("function-role", msgs(SYSTEM, USER, {"role": "function", "content": "x"}), "messages[2].role",
     "legacy function-calling shape"),
    ("developer-role", msgs({"role": "developer", "content": "x"}, USER, ASSISTANT), "messages[0].role",
     "use 'system'"),
    ("capital-role", msgs(SYSTEM, {"role": "User", "content": "x"}, ASSISTANT), "messages[1].role",
     "roles are lowercase, use 'user'"),
    ("missing-content", msgs(SYSTEM, {"role": "user"}, ASSISTANT), "messages[1].content", "missing content"),
    ("content-number", msgs(SYSTEM, {"role": "user", "content": 5}, ASSISTANT), "messages[1].content",
     "content must be a string, got a number"),
    ("content-null", msgs(SYSTEM, USER, {"role": "assistant", "content": None}), "messages[2].content",
     "content is null"),
    ("content-image-part", msgs(SYSTEM, {"role": "user", "content": [{"type": "image_url", "image_url": {}}]},
                                ASSISTANT), "messages[1].content[0].type", "only text content parts are supported"),
    ("content-part-not-object", msgs(SYSTEM, {"role": "user", "content": ["hi"]}, ASSISTANT),
     "messages[1].content[0]", "a content part must be an object"),
    ("content-part-text-not-string", msgs(SYSTEM, {"role": "user", "content": [{"type": "text", "text": 1}]},
                                          ASSISTANT), "messages[1].content[0].text", "text must be a string"),
    ("content-empty", msgs(SYSTEM, {"role": "user", "content": "  \n\t"}, ASSISTANT), "messages[1].content",
     "content is empty"),
    ("content-empty-list", msgs(SYSTEM, {"role": "user", "content": []}, ASSISTANT), "messages[1].content",
     "content is an empty list"),
    ("content-empty-parts", msgs(SYSTEM, {"role": "user", "content": [{"type": "text", "text": " "}]}, ASSISTANT),
     "messages[1].content", "content is empty"),
    ("unknown-message-key", msgs(SYSTEM, {**USER, "lang": "en"}, ASSISTANT), "messages[1].lang",
     'unknown key "lang"'),
    ("tool-calls-empty", msgs(SYSTEM, USER, {**ASSISTANT, "tool_calls": []}), "messages[2].tool_calls",
     "tool_calls must be a non-empty list"),
    ("name-not-string", msgs(SYSTEM, {**USER, "name": 7}, ASSISTANT), "messages[1].name",
     "name must be a non-empty string"),
    # weights
    ("weight-half", msgs(SYSTEM, USER, {**ASSISTANT, "weight": 0.5}), "messages[2].weight",
     "weight must be 0 or 1, got 0.5"),
    ("weight-float-one", msgs(SYSTEM, USER, {**ASSISTANT, "weight": 1.0}), "messages[2].weight",
     "weight must be 0 or 1, got 1.0"),
    ("weight-bool", msgs(SYSTEM, USER, {**ASSISTANT, "weight": True}), "messages[2].weight",
     "weight must be 0 or 1, got true (a boolean)"),
    ("weight-string", msgs(SYSTEM, USER, {**ASSISTANT, "weight": "1"}), "messages[2].weight",
     'weight must be 0 or 1, got "1" (a string)'),
    ("weight-two", msgs(SYSTEM, USER, {**ASSISTANT, "weight": 2}), "messages[2].weight",
     "weight must be 0 or 1, got 2"),
    ("weight-on-user", msgs(SYSTEM, {**USER, "weight": 1}, ASSISTANT), "messages[1].weight",
     "weight is only allowed on assistant messages"),
    ("weight-on-system", msgs({**SYSTEM, "weight": 0}, USER, ASSISTANT), "messages[0].weight",
     "weight is only allowed on assistant messages"),
    # conversation shape
    ("no-assistant", msgs(SYSTEM, USER), "messages", "no assistant message to learn from"),
    ("all-weights-zero", msgs(SYSTEM, USER, {**ASSISTANT, "weight": 0}, USER, {**ASSISTANT, "weight": 0}),
     "messages", "every assistant message has weight 0"),
    ("two-users", msgs(SYSTEM, USER, USER, ASSISTANT), "messages[2].role", "two consecutive user messages"),
    ("two-assistants", msgs(SYSTEM, USER, ASSISTANT, ASSISTANT), "messages[3].role",
     "two consecutive assistant messages"),
    ("system-later", msgs(USER, ASSISTANT, SYSTEM, USER, ASSISTANT), "messages[2].role",
     "a system message is only allowed once, as the first message"),
    ("two-systems", msgs(SYSTEM, SYSTEM, USER, ASSISTANT), "messages[1].role", "only allowed once"),
]


@pytest.mark.parametrize(("bad", "field", "message"), [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES])
def test_each_rule_is_an_error_with_line_and_field(bad, field, message):
    report = issues_on_line_11(bad)
    assert not report.ok
    matching = [i for i in report.errors if i.field == field and message in i.message]
    assert matching, report.format()
    assert [line for line, _ in report.examples] == list(range(1, 11))  # the bad line is not an example


def test_every_problem_of_a_line_is_collected():
    bad = msgs({"role": "tool", "content": ""}, {**USER, "weight": 0.5, "x": 1}, USER, meta=1)
    report = issues_on_line_11(bad)
    fields = {i.field for i in report.errors}
    assert {"meta", "messages[0].role", "messages[0].content", "messages[1].weight", "messages[1].x",
            "messages[2].role"} <= fields


def test_text_parts_are_accepted_and_flattened():
    parts = [{"type": "text", "text": "Hello "}, {"type": "text", "text": "Rome"}]
    report = issues_on_line_11(msgs(SYSTEM, {"role": "user", "content": parts}, ASSISTANT))
    assert report.ok and not report.issues
    line_no, conv = report.examples[-1]
    assert line_no == 11 and conv.messages[1].content == "Hello Rome"


def test_name_and_valid_weights_are_accepted():
    report = issues_on_line_11(msgs(SYSTEM, {**USER, "name": "ana"}, {**ASSISTANT, "weight": 0}, USER,
                                    {**ASSISTANT, "weight": 1}))
    assert report.ok and not report.issues
    conv = report.examples[-1][1]
    assert [m.weight for m in conv.messages] == [None, None, 0, None, 1]
    assert [m.trainable for m in conv.messages] == [False, False, False, False, True]


def test_trailing_user_turn_is_a_warning():
    report = issues_on_line_11(msgs(SYSTEM, USER, ASSISTANT, USER))
    assert report.ok
    assert [(i.field, i.severity) for i in report.issues] == [("messages[3].role", "warning")]
    assert "ends with a user message" in report.issues[0].message


def test_duplicate_is_a_warning_naming_both_lines():
    report = validate_bytes(jsonl(good_lines(10) + [line(example(3))]))
    assert report.ok
    assert [i.format() for i in report.warnings] == ["line 11: duplicate of line 4"]


def test_missing_system_is_one_warning_listing_the_lines():
    lines = good_lines(10) + [line(example(20, system=False)), line(example(21, system=False))]
    report = validate_bytes(jsonl(lines))
    assert report.ok
    [warning] = report.warnings
    assert warning.line is None and "2 examples without a system message (lines 11, 12)" in warning.message


def test_blank_lines_are_skipped_with_one_warning():
    lines = good_lines(10)
    data = jsonl(lines[:3] + ["", "   "] + lines[3:] + [""])
    report = validate_bytes(data)
    assert report.ok and len(report.examples) == 10
    assert [i.message for i in report.warnings] == ["blank lines 4, 5, 13 skipped"]
    assert [n for n, _ in report.examples][3] == 6  # line numbers count the blank lines


@pytest.mark.parametrize("purpose", ["training", "validation"])
def test_fewer_than_ten_examples(purpose):
    report = validate_bytes(jsonl(good_lines(9)), purpose=purpose)
    [issue] = report.issues
    assert "only 9 examples" in issue.message and "at least 10" in issue.message
    assert issue.severity == ("error" if purpose == "training" else "warning")
    assert report.ok is (purpose == "validation")


def test_unknown_purpose_is_refused():
    from tunery.errors import InvalidInput

    with pytest.raises(InvalidInput, match="purpose"):
        validate_bytes(jsonl(good_lines()), purpose="fine-tune")


def test_issue_format_and_report_to_dict():
    report = issues_on_line_11(msgs(SYSTEM, USER, USER, ASSISTANT))
    assert report.errors[0].format() == ("line 11, messages[2].role: two consecutive user messages: alternate "
                                         "user and assistant turns (merge the two into one message)")
    d = json.loads(json.dumps(report.to_dict()))
    assert d["ok"] is False and d["n_errors"] == 1 and d["n_examples"] == 10 and d["n_lines"] == 11
    assert d["issues"][0] == {"line": 11, "field": "messages[2].role", "severity": "error",
                              "message": report.errors[0].message}
