"""The tool-call evaluator: right function, arguments equal after normalisation, no call where none
is needed; calls read from the answer's <tool_call> blocks or from a tool_calls column."""

from __future__ import annotations

import json

import pytest

from tunery.chat_template import tool_call_text
from tunery.errors import InvalidInput
from tunery.evals import parse_evaluator
from tunery.evals.tool_calls import ToolCalls, normalise

EXPECT_FX = {"tool_calls": [{"name": "convert_currency", "arguments": {"amount": 100, "from": "EUR", "to": "JPY"}}]}


def answer(*calls: tuple[str, dict | str], text: str = "") -> str:
    openai = [{"id": f"c{i}", "type": "function",
               "function": {"name": n, "arguments": a if isinstance(a, str) else json.dumps(a)}}
              for i, (n, a) in enumerate(calls)]
    return (text + "\n" + tool_call_text(openai)).strip()


def score(expect, reply: str, **row):
    return ToolCalls().score_row({"question": "q", "expect": expect, "answer": reply, **row})


@pytest.mark.parametrize("args", [
    {"amount": 100, "from": "EUR", "to": "JPY"},
    {"to": "JPY", "amount": 100.0, "from": "EUR"},  # key order, 100 == 100.0
    {"amount": 100, "from": " eur ", "to": "jpy"},  # case and surrounding spaces of strings
])
def test_equal_arguments_after_normalisation_pass(args):
    s = score(EXPECT_FX, answer(("convert_currency", args)))
    assert s.passed is True and s.score == 1.0, s.reason


@pytest.mark.parametrize(("reply", "reason"), [
    (answer(("convert_currency", {"amount": 10, "from": "EUR", "to": "JPY"})), "wrong arguments"),
    (answer(("convert_currency", {"amount": 100, "from": "EUR"})), "wrong arguments"),
    (answer(("get_local_time", {"city": "Tokyo"})), "wrong function"),
    (answer(("convert_currency", "{not json")), "no call"),  # a malformed block is text, not a call
    ("100 EUR is about 16,000 JPY.", "no call; expected convert_currency"),
    (answer(("convert_currency", {"amount": 100, "from": "EUR", "to": "JPY"}),
            ("convert_currency", {"amount": 100, "from": "EUR", "to": "JPY"})), "2 calls, expected 1"),
    (answer(("convert_currency", {"amount": True, "from": "EUR", "to": "JPY"})), "wrong arguments"),
])
def test_wrong_or_missing_calls_fail_with_why(reply, reason):
    s = score(EXPECT_FX, reply)
    assert s.passed is False and s.score == 0.0 and reason in s.reason, s.reason


def test_parallel_calls_match_in_any_order():
    expect = {"tool_calls": [{"name": "get_local_time", "arguments": {"city": "Lima"}},
                             {"name": "get_local_time", "arguments": {"city": "Seoul"}}]}
    assert score(expect, answer(("get_local_time", {"city": "Seoul"}), ("get_local_time", {"city": "Lima"}))).passed
    assert not score(expect, answer(("get_local_time", {"city": "Seoul"}))).passed


def test_no_tool_passes_only_without_a_call():
    assert score("no_tool", "Say obrigado.").passed is True
    s = score("no_tool", answer(("get_local_time", {"city": "Lisbon"}), text="Let me check."))
    assert s.passed is False and "where no tool is needed" in s.reason


def test_a_tool_calls_column_wins_over_the_text():
    calls = [{"id": "x", "type": "function",
              "function": {"name": "convert_currency", "arguments": '{"amount": 100, "from": "EUR", "to": "JPY"}'}}]
    assert score(EXPECT_FX, "", tool_calls=calls).passed
    assert not score("no_tool", "", tool_calls=calls).passed


def test_an_expectation_in_neither_form_is_unscored():
    s = score({"calls": []}, "hi")
    assert s.score is None and s.passed is None and "neither" in s.reason
    # JSON text in the column works too (a CSV or a flow passes strings)
    assert score(json.dumps(EXPECT_FX), answer(("convert_currency", {"amount": 100, "from": "EUR", "to": "JPY"}))).passed


def test_registered_with_ref_option_and_subset():
    e = parse_evaluator("tool_calls:ref=gold[kind=x]")
    assert isinstance(e, ToolCalls) and e.ref == "gold" and e.required_columns == ("gold",)
    assert e.name == "tool_calls:ref=gold[kind=x]"
    with pytest.raises(InvalidInput):
        parse_evaluator("tool_calls:extra")
    result = ToolCalls().evaluate([{"expect": "no_tool", "answer": "hi"}, {"expect": EXPECT_FX, "answer": "hi"}])
    assert result.aggregate["pass_rate"] == 0.5


def test_normalise():
    assert normalise({"a": "  New   York ", "n": 3, "b": [True, None, 2.0]}) == {"a": "new york", "n": 3.0,
                                                                                 "b": [True, None, 2.0]}


VISA = {"tool_calls": [{"name": "get_visa_requirements", "arguments": {"nationality": "Haiti", "destination": "Bahamas"}}]}


def test_aliases_read_both_sides_through_the_tools_own_table(tmp_path):
    table = tmp_path / "aliases.json"
    table.write_text(json.dumps({"Haiti": ["Haitian"], "Bahamas": ["The Bahamas"], "United Kingdom": ["UK"],
                                 "Ivory Coast": ["Côte d'Ivoire"]}), encoding="utf-8")
    e = parse_evaluator(f"tool_calls:aliases={table}")
    assert isinstance(e, ToolCalls) and e.name == "tool_calls:aliases=aliases.json"

    def passes(args: dict, expect: dict = VISA, evaluator: ToolCalls = e) -> bool:
        return bool(evaluator.score_row({"expect": expect, "gold": expect,
                                         "answer": answer(("get_visa_requirements", args))}).passed)

    assert passes({"nationality": "Haitian", "destination": "the  bahamas"})
    assert passes({"nationality": "haiti", "destination": "Bahamas"})
    assert not passes({"nationality": "Haitina", "destination": "Bahamas"})  # a slip is still a miss
    assert not score(VISA, answer(("get_visa_requirements", {"nationality": "Haitian", "destination": "Bahamas"}))).passed
    # the expected side is read through the table too
    said = {"tool_calls": [{"name": "get_visa_requirements", "arguments": {"nationality": "Haitian", "destination": "UK"}}]}
    assert passes({"nationality": "Haiti", "destination": "the United Kingdom"}, said)
    # a leading "the" and a typographic apostrophe, only where the table knows the rest
    assert passes({"nationality": "Côte d’Ivoire", "destination": "the UK"},
                  {"tool_calls": [{"name": "get_visa_requirements",
                                   "arguments": {"nationality": "Ivory Coast", "destination": "United Kingdom"}}]})
    assert not passes({"nationality": "the Haiti Republic", "destination": "Bahamas"})
    both = parse_evaluator(f"tool_calls:ref=gold,aliases={table}")
    assert both.name == "tool_calls:ref=gold,aliases=aliases.json" and both.required_columns == ("gold",)
    assert passes({"nationality": "Haiti", "destination": "UK"}, said, both)


def test_several_tables_join_with_a_plus_and_must_agree(tmp_path):
    (tmp_path / "people.json").write_text(json.dumps({"Haiti": ["Haitian"]}), encoding="utf-8")
    (tmp_path / "money.json").write_text(json.dumps({"JPY": ["yen", "¥"]}), encoding="utf-8")
    e = parse_evaluator(f"tool_calls:aliases={tmp_path / 'people.json'}+{tmp_path / 'money.json'}")
    assert e.name == "tool_calls:aliases=people.json+money.json"
    swap = {"tool_calls": [{"name": "convert_currency", "arguments": {"amount": 5, "from": "JPY", "to": "Haiti"}}]}
    assert e.score_row({"expect": swap, "answer": answer(("convert_currency",
                                                          {"amount": 5, "from": "¥", "to": "haitian"}))}).passed
    assert not e.score_row({"expect": swap, "answer": answer(("convert_currency",
                                                              {"amount": 5, "from": "yen", "to": "Haitians"}))}).passed
    (tmp_path / "clash.json").write_text(json.dumps({"CNY": ["¥"]}), encoding="utf-8")
    with pytest.raises(InvalidInput, match=r"clash.json.*'¥' is given to both 'JPY' \(in '.*money.json'\) and 'CNY'"):
        parse_evaluator(f"tool_calls:aliases={tmp_path / 'money.json'} + {tmp_path / 'clash.json'}")
    with pytest.raises(InvalidInput, match="missing.json' does not exist"):
        parse_evaluator(f"tool_calls:aliases={tmp_path / 'money.json'}+{tmp_path / 'missing.json'}")
    with pytest.raises(InvalidInput, match="an empty file name"):
        parse_evaluator(f"tool_calls:aliases={tmp_path / 'money.json'}+")
    # a path with a + in it that is a file is that file; a Path and a list are taken as they are
    odd = tmp_path / "a+b"
    odd.mkdir()
    (odd / "m.json").write_text(json.dumps({"JPY": ["yen"]}), encoding="utf-8")
    assert parse_evaluator(f"tool_calls:aliases={odd / 'm.json'}").name == "tool_calls:aliases=m.json"
    assert ToolCalls(aliases=odd / "m.json").aliases == {"yen": "jpy", "jpy": "jpy"}
    assert ToolCalls(aliases=[odd / "m.json", tmp_path / "people.json"]).name == "tool_calls:aliases=m.json+people.json"


@pytest.mark.parametrize(("content", "message"), [
    (None, "does not exist"),
    ("{not json", "is not valid JSON"),
    ('{"Haiti": ["A"], "Haiti": ["B"]}', "'Haiti' is a key twice"),
    ("{}", "canonical string -> list of strings"),
    ('{"Haiti": "Haitian"}', "the entry 'Haiti' must be"),
    ('{"Haiti": ["Haitian", " "]}', "the entry 'Haiti' must be"),
    ('{"Niger": ["Nigerien"], "Nigeria": ["nigerien"]}', "'nigerien' is given to both 'Niger' and 'Nigeria'"),
])
def test_a_bad_aliases_file_is_named(tmp_path, content, message):
    table = tmp_path / "a.json"
    if content is not None:
        table.write_text(content, encoding="utf-8")
    with pytest.raises(InvalidInput, match=message) as e:
        parse_evaluator(f"tool_calls:aliases={table}")
    assert "a.json" in str(e.value)


def test_aliases_needs_a_file(tmp_path):
    with pytest.raises(InvalidInput, match="aliases= needs a file"):
        parse_evaluator("tool_calls:aliases=")
    with pytest.raises(InvalidInput, match="cannot be read"):
        parse_evaluator(f"tool_calls:aliases={tmp_path}")
