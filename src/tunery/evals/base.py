"""The evaluator contract: rows in, per-row scores with reasons and one aggregate out.

A row is a plain dict: ``answer`` (the text under evaluation), usually ``question``, and whatever
other columns the data has (``ground_truth``, ``context``...). Evaluators never generate answers;
the runner (``tunery.evals.runner``) does that and hands them the rows.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from tunery.errors import InvalidInput
from tunery.evals.stats import aggregate

Row = Mapping[str, Any]

# Columns that may hold the reference answer, in the order they are looked for when an evaluator
# is not told which one to use (Prompt flow's samples say "groundtruth", Azure's "ground_truth").
REFERENCE_KEYS = ("ground_truth", "groundtruth", "reference", "expected")


@dataclass(frozen=True, slots=True)
class RowScore:
    """The verdict on one row. ``score`` is None when the row could not be scored (e.g. the judge
    gave no rating); such rows are left out of the aggregate and counted as ``unscored``."""

    score: float | None
    passed: bool | None
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"score": self.score, "passed": self.passed, "reason": self.reason}


@dataclass(frozen=True)
class EvalResult:
    """Per-row scores (in row order) and their aggregate: mean, pass_rate, ci_low, ci_high, n,
    unscored. ``meta`` records how the scores were made (e.g. the judge model)."""

    per_row: list[RowScore]
    aggregate: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)


class Evaluator:
    """Scores answers. Subclasses implement ``score_row`` (or ``evaluate`` for batch work) and
    ``from_spec`` for the ``NAME[:options]`` string form used by the CLI.

    ``scale`` is the range of a score (for charts and for reading a number); ``bootstrap`` says
    whether a confidence interval for the mean is meaningful for this metric; ``binary`` that
    the score is just the verdict (1 pass, 0 fail).
    """

    kind: ClassVar[str] = ""  # the registry name
    description: ClassVar[str] = ""
    scale: ClassVar[tuple[float, float]] = (0.0, 1.0)
    bootstrap: ClassVar[bool] = True
    binary: ClassVar[bool] = False  # scores are only 1 (pass) or 0 (fail)

    def __init__(self, name: str | None = None) -> None:
        self.name = name or self.kind
        self.where: tuple[str, str] | None = None

    def only_where(self, column: str, value: str) -> Evaluator:
        """Score only the rows whose ``column`` holds ``value`` (e.g. ``expect`` = ``answer``): a
        metric that means something on part of the data, such as over-refusal on the questions a
        model should answer. The name gains ``[column=value]``, so the subset shows in every table."""
        if not column.strip() or not value.strip():
            raise InvalidInput(f"evaluator {self.name!r}: a subset needs a column and a value, e.g. [expect=answer]",
                               param="evaluator")
        self.where = (column.strip(), value.strip())
        self.name = f"{self.name}[{self.where[0]}={self.where[1]}]"
        return self

    def applies_to(self, row: Row) -> bool:
        """Whether the row is in this evaluator's subset (every row when it has none)."""
        return self.where is None or text_of(row, self.where[0]) == self.where[1]

    @property
    def required_columns(self) -> tuple[str, ...]:
        """Row columns (besides ``answer``) this evaluator reads; checked before any generation."""
        return ()

    @property
    def meta(self) -> dict[str, Any]:
        return {}

    @property
    def hint(self) -> str:
        """What a pass means, in a few words, where the metric's name alone could mislead."""
        return ""

    @classmethod
    def from_spec(cls, options: str) -> Evaluator:
        """Build from the text after ``NAME:`` (empty when there is none)."""
        if options:
            raise InvalidInput(f"evaluator {cls.kind!r} takes no options (got {options!r})", param="evaluator")
        return cls()

    def score_row(self, row: Row) -> RowScore:
        raise NotImplementedError

    def evaluate(self, rows: Sequence[Row]) -> EvalResult:
        self.check_columns(rows)
        return self.result([self.score_row(r) for r in rows])

    def result(self, per_row: list[RowScore]) -> EvalResult:
        return EvalResult(per_row=per_row, aggregate=aggregate(per_row, bootstrap=self.bootstrap),
                          meta=self.meta)

    def check_columns(self, rows: Sequence[Row]) -> None:
        """Raise InvalidInput naming the first row that lacks a column this evaluator needs."""
        for i, row in enumerate(rows):
            for col in self.required_columns:
                if col not in row or row[col] is None:
                    raise InvalidInput(f"row {i + 1} has no {col!r} column, which evaluator {self.name!r} needs",
                                       param="evaluator",
                                       hint=f"add it to the data or point the evaluator at another column "
                                            f"with {self.kind}:ref=COLUMN" if self._has_ref_option else None)

    _has_ref_option: ClassVar[bool] = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


_SENTENCE_END = re.compile(r"(?<=[.!?])(?<!\bSt\.)(?<!\bMt\.)(?<!\bDr\.)(?<!\bMr\.)\s+|\n+")


def sentences(text: str) -> list[str]:
    """The text's sentences, split after . ! ? and at line breaks ("St." and "Mt." do not end one)."""
    return [s for s in (part.strip() for part in _SENTENCE_END.split(text)) if s]


def text_of(row: Row, key: str) -> str:
    """A row's column as text: None becomes "", numbers and booleans their str()."""
    value = row.get(key)
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def reference_key(rows: Sequence[Row], explicit: str | None) -> str:
    """The column holding the reference: ``explicit`` if given, else the first of REFERENCE_KEYS
    the first row has (``ground_truth`` when none has, so the error names the usual one)."""
    if explicit:
        return explicit
    first = rows[0] if rows else {}
    return next((k for k in REFERENCE_KEYS if k in first), REFERENCE_KEYS[0])


def parse_options(text: str, *, allowed: Sequence[str] = (), evaluator: str = "") -> tuple[list[str], dict[str, str]]:
    """Split ``a,b,key=value`` into positional items and keyword options, rejecting unknown keys."""
    positional: list[str] = []
    keywords: dict[str, str] = {}
    for item in (p.strip() for p in text.split(",")) if text else ():
        if not item:
            continue
        key, eq, value = item.partition("=")
        if eq:
            key = key.strip()
            if key not in allowed:
                raise InvalidInput(f"evaluator {evaluator!r} has no option {key!r}", param="evaluator",
                                   hint=f"options: {', '.join(allowed)}" if allowed else "it takes no key=value options")
            keywords[key] = value.strip()
        else:
            positional.append(item)
    return positional, keywords


def parse_number(value: str, *, option: str, evaluator: str, integer: bool = False) -> float:
    try:
        number = int(value) if integer else float(value)
    except ValueError:
        kind = "a whole number" if integer else "a number"
        raise InvalidInput(f"evaluator {evaluator!r}: {option} must be {kind}, got {value!r}",
                           param="evaluator") from None
    return number
