from __future__ import annotations

import pytest

from tunery.errors import InvalidInput
from tunery.evals import EndsWithQuestion, JsonKeys, MaxChars, MaxWords, MinWords, Regex, parse_evaluator


def verdict(evaluator, answer: str) -> bool:
    return evaluator.evaluate([{"answer": answer}]).per_row[0].passed


@pytest.mark.parametrize(("answer", "ok"), [
    ("Rome is lovely. Have you been before?", True),
    ("What do you think? 😊", True),
    ('She asked, "ready to go?"', True),
    ("(Shall we plan it?)  \n", True),
    ("東京はどうですか？", True),            # full-width question mark
    ("هل تحب السفر؟", True),                # Arabic question mark
    ("Ready?!", False),                     # ends with "!", not a question mark
    ("Is it? Yes it is.", False),           # a question, but not at the end
    ("Rome is lovely.", False),
    ("", False),
    ("   ", False),
    ("🙂", False),
    ("Wait;", False),                       # an ASCII semicolon is no Greek question mark
])
def test_ends_with_question(answer, ok):
    assert verdict(EndsWithQuestion(), answer) is ok


def test_ends_with_question_reason_names_the_last_character():
    row = EndsWithQuestion().evaluate([{"answer": "Enjoy Rome!"}]).per_row[0]
    assert row.score == 0.0 and "'!'" in row.reason


def test_length_limits_count_words_and_characters():
    assert verdict(MaxWords(3), "one two three") is True
    assert verdict(MaxWords(3), "one two three four") is False
    assert verdict(MaxWords(0), "") is True
    assert verdict(MinWords(1), "") is False
    assert verdict(MinWords(2), "naïve café") is True
    assert verdict(MaxChars(4), "café") is True       # code points, not bytes
    assert verdict(MaxChars(3), "café") is False
    assert parse_evaluator("max_words:80").limit == 80
    with pytest.raises(InvalidInput, match="whole number"):
        parse_evaluator("max_words:eighty")


def test_regex_must_and_must_not():
    assert verdict(parse_evaluator(r"regex:must=\?$"), "Where to?") is True
    assert verdict(parse_evaluator(r"regex:must=\?$"), "There.") is False
    forbid = parse_evaluator("regex:must_not=(?i)hilton|marriott")
    assert verdict(forbid, "Try the MARRIOTT.") is False
    assert verdict(forbid, "Stay in Trastevere.") is True
    assert verdict(Regex("a,b"), "x a,b y") is True  # commas belong to the pattern
    with pytest.raises(InvalidInput, match="not a valid regular expression"):
        parse_evaluator("regex:must=(unclosed")
    with pytest.raises(InvalidInput, match="must=PATTERN"):
        parse_evaluator("regex:foo")


@pytest.mark.parametrize(("answer", "ok", "why"), [
    ('{"city": "Rome", "days": 3}', True, "keys city, days"),
    ('```json\n{"city": "Rome", "days": 3}\n```', True, "code fence"),
    ('{"city": "Rome"}', False, "lacks key(s) days"),
    ('["city", "days"]', False, "not an object"),
    ("{city: Rome}", False, "not valid JSON"),
    ("", False, "empty"),
    ('{"city": "Zürich", "days": 2, "note": "ünïcode ✓"}', True, "keys"),
])
def test_json_keys(answer, ok, why):
    row = parse_evaluator("json_keys:city,days").evaluate([{"answer": answer}]).per_row[0]
    assert row.passed is ok
    assert why in row.reason


def test_json_without_keys_accepts_any_json():
    assert verdict(JsonKeys(), "[1, 2]") is True
    assert verdict(JsonKeys(), "42") is True
    assert verdict(JsonKeys(), "forty-two") is False


def test_rule_aggregates_are_pass_rates():
    res = EndsWithQuestion().evaluate([{"answer": "a?"}, {"answer": "b."}, {"answer": "c?"}, {"answer": "d?"}])
    assert res.aggregate["pass_rate"] == res.aggregate["mean"] == 0.75
    assert res.aggregate["ci_low"] <= 0.75 <= res.aggregate["ci_high"]
