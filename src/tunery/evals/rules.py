"""Rule checks for behaviour: does the answer end with a question, stay within a length, match
(or avoid) a pattern, parse as JSON with the expected keys. Each scores 1 (pass) or 0 (fail)."""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Any, ClassVar

from tunery.errors import InvalidInput
from tunery.evals.base import Evaluator, Row, RowScore, parse_options, text_of

# Question marks across scripts: ASCII, full-width (CJK), Arabic, Greek, Armenian, Ethiopic,
# interrobang, small/vertical forms.
QUESTION_MARKS = frozenset("?\uff1f\u061f\u037e\u055e\u1367\u203d\ufe56\ufe16\u2047\u2048\u2049")


def _tail(text: str, n: int = 40) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else "…" + text[-(n - 1):]


def _pass(ok: bool, reason: str) -> RowScore:
    return RowScore(float(ok), ok, reason)


class EndsWithQuestion(Evaluator):
    kind = "ends_with_question"
    binary = True
    description = ("The answer ends with a question (a question mark in any script), ignoring trailing "
                   "spaces, closing quotes and brackets, and emoji.")

    def score_row(self, row: Row) -> RowScore:
        text = text_of(row, "answer")
        end = len(text)
        # walk back over what may follow the question mark: "…next?" 😊, "(really?)"
        while end > 0:
            ch = text[end - 1]
            cat = unicodedata.category(ch)
            if ch.isspace() or cat in ("Pe", "Pf", "So", "Sk", "Cf", "Mn", "Me") or ch in "\"'":
                end -= 1
                continue
            break
        if end == 0:
            return _pass(False, "empty answer" if not text.strip() else "no text before the trailing symbols")
        last = text[end - 1]
        if last in QUESTION_MARKS:
            return _pass(True, f"ends with a question: {_tail(text[:end])!r}")
        return _pass(False, f"ends with {last!r}, not a question mark: {_tail(text[:end])!r}")


class _LengthRule(Evaluator):
    binary = True
    unit: ClassVar[str] = "words"
    bound: ClassVar[str] = "max"

    def __init__(self, limit: int, *, name: str | None = None) -> None:
        super().__init__(name or f"{self.kind}:{limit}")
        if limit < 0:
            raise InvalidInput(f"evaluator {self.kind!r}: the limit must be 0 or more, got {limit}", param="evaluator")
        self.limit = limit

    @classmethod
    def from_spec(cls, options: str) -> Evaluator:
        try:
            return cls(int(options.strip()))
        except ValueError:
            raise InvalidInput(f"evaluator {cls.kind!r} needs a whole number, e.g. {cls.kind}:80 (got {options!r})",
                               param="evaluator") from None

    def measure(self, text: str) -> int:
        return len(text.split()) if self.unit == "words" else len(text)

    def score_row(self, row: Row) -> RowScore:
        n = self.measure(text_of(row, "answer"))
        ok = n <= self.limit if self.bound == "max" else n >= self.limit
        sign = "≤" if self.bound == "max" else "≥"
        return _pass(ok, f"{n} {self.unit} ({'within' if ok else 'breaks'} the limit {sign} {self.limit})")


class MaxWords(_LengthRule):
    kind = "max_words"
    description = "At most N words (runs of non-space characters), e.g. max_words:80."


class MinWords(_LengthRule):
    kind = "min_words"
    bound = "min"
    description = "At least N words, e.g. min_words:5 (min_words:1 catches empty answers)."


class MaxChars(_LengthRule):
    kind = "max_chars"
    unit = "characters"
    description = "At most N characters (Unicode code points), e.g. max_chars:500."


class Regex(Evaluator):
    kind = "regex"
    binary = True
    description = ("regex:must=PATTERN passes when the pattern is found in the answer; "
                   "regex:must_not=PATTERN when it is not. Python syntax; inline flags like (?i) work.")

    def __init__(self, pattern: str, *, must: bool = True, name: str | None = None) -> None:
        super().__init__(name or f"regex:{'must' if must else 'must_not'}={pattern}")
        try:
            self.pattern = re.compile(pattern)
        except re.error as e:
            raise InvalidInput(f"evaluator 'regex': {pattern!r} is not a valid regular expression ({e})",
                               param="evaluator") from None
        self.must = must

    @classmethod
    def from_spec(cls, options: str) -> Evaluator:
        # the pattern is everything after '=', commas included
        key, eq, pattern = options.partition("=")
        if not eq or key.strip() not in ("must", "must_not"):
            raise InvalidInput(f"evaluator 'regex' needs must=PATTERN or must_not=PATTERN (got {options!r})",
                               param="evaluator", hint=r"e.g. regex:must=\?$")
        return cls(pattern, must=key.strip() == "must")

    def score_row(self, row: Row) -> RowScore:
        m = self.pattern.search(text_of(row, "answer"))
        found = f"found {m.group(0)[:40]!r}" if m else f"no match for /{self.pattern.pattern}/"
        return _pass(bool(m) == self.must, found)


_FENCE = re.compile(r"^\s*```[\w-]*\s*\n(.*?)\n?```\s*$", re.DOTALL)


def _parse_json(text: str) -> tuple[Any, str]:
    """Parse the answer as JSON; a single fenced code block around it is accepted, since chat
    models wrap JSON that way even when told not to. Returns (value, how)."""
    m = _FENCE.match(text)
    body, how = (m.group(1), "inside a code fence") if m else (text, "")
    return json.loads(body), how


class JsonKeys(Evaluator):
    kind = "json_keys"
    binary = True
    description = ("The answer is valid JSON (a lone ```json fence around it is allowed); with json_keys:a,b "
                   "it must be an object holding at least keys a and b.")

    def __init__(self, keys: tuple[str, ...] = (), *, name: str | None = None) -> None:
        super().__init__(name or (f"json_keys:{','.join(keys)}" if keys else "json_keys"))
        self.keys = keys

    @classmethod
    def from_spec(cls, options: str) -> Evaluator:
        keys, _ = parse_options(options, evaluator=cls.kind)
        return cls(tuple(keys))

    def score_row(self, row: Row) -> RowScore:
        text = text_of(row, "answer")
        if not text.strip():
            return _pass(False, "empty answer, not JSON")
        try:
            value, how = _parse_json(text)
        except ValueError as e:
            return _pass(False, f"not valid JSON: {e}")
        where = f" ({how})" if how else ""
        if not self.keys:
            return _pass(True, f"valid JSON {type(value).__name__}{where}")
        if not isinstance(value, dict):
            return _pass(False, f"JSON {type(value).__name__}{where}, not an object with keys {', '.join(self.keys)}")
        missing = [k for k in self.keys if k not in value]
        if missing:
            return _pass(False, f"JSON object{where} lacks key(s) {', '.join(missing)}")
        return _pass(True, f"JSON object{where} with keys {', '.join(self.keys)}")


RULE_EVALUATORS: tuple[type[Evaluator], ...] = (EndsWithQuestion, MaxWords, MinWords, MaxChars, Regex, JsonKeys)
