"""What the validator reports: one :class:`Issue` per problem (where and what) and the
:class:`ValidationReport` of a file, with the helpers that name a user's value in a message
(:func:`kind`, :func:`show`). Shared by the chat-line checks (:mod:`tunery.data.validate`) and the
tool-calling checks (:mod:`tunery.data.tools`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from tunery.chat import Conversation
from tunery.errors import json_problem

Severity = Literal["error", "warning"]

Add = Callable[..., None]
"""How a check reports a problem: ``add(field, message)`` (the line is the caller's)."""


def reject_constant(name: str) -> Any:
    """``json.loads``'s ``parse_constant``: NaN and Infinity are not JSON."""
    raise ValueError(f"{name} is not valid JSON")


def parse_json(text: str) -> tuple[Any, None] | tuple[None, str]:
    """``text`` parsed as JSON, or why it is not JSON in a user's words (after "not valid JSON: "):
    one wording for a line, a call's arguments and a file being split."""
    try:
        return json.loads(text, parse_constant=reject_constant), None
    except (ValueError, RecursionError) as e:
        return None, json_problem(e)


@dataclass(frozen=True, slots=True)
class Issue:
    """One problem: where (line, field such as ``messages[3].content``) and what."""

    line: int | None
    field: str | None
    message: str
    severity: Severity = "error"

    def format(self) -> str:
        where = ", ".join(p for p in (f"line {self.line}" if self.line is not None else None, self.field) if p)
        return f"{where}: {self.message}" if where else self.message

    def to_dict(self) -> dict[str, Any]:
        return {"line": self.line, "field": self.field, "message": self.message, "severity": self.severity}


@dataclass
class ValidationReport:
    """The outcome of validating one file. ``examples`` holds the valid examples only, with their
    line numbers; ``token_counts`` (line -> tokens) is filled when a tokenizer was given. Both stay
    empty when the validator was told not to keep examples (the file report); ``n_examples``
    counts them either way. ``issues`` may stop at a cap: ``n_errors`` and ``n_warnings`` count all."""

    purpose: str = "training"
    n_lines: int = 0
    issues: list[Issue] = field(default_factory=list)
    examples: list[tuple[int, Conversation]] = field(default_factory=list)
    pairs: list[tuple[int, Any]] = field(default_factory=list)
    """The valid preference pairs (``PreferencePair``) with their line numbers, kept when the
    validator reads a file of pairs (``pairs_only``); ``examples`` holds each one's prompt and
    preferred answer when examples are kept."""
    context_length: int | None = None
    max_seq_length: int | None = None
    token_counts: dict[int, int] = field(default_factory=dict)
    keep_examples: bool = True
    n_unkept: int = field(default=0, repr=False)  # examples counted, not kept
    dropped: dict[str, int] = field(default_factory=dict, repr=False)  # severity -> issues past the cap

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "error"]

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "warning"]

    @property
    def n_examples(self) -> int:
        return len(self.examples) + self.n_unkept

    @property
    def n_errors(self) -> int:
        return len(self.errors) + self.dropped.get("error", 0)

    @property
    def n_warnings(self) -> int:
        return len(self.warnings) + self.dropped.get("warning", 0)

    @property
    def ok(self) -> bool:
        return self.n_errors == 0

    @property
    def conversations(self) -> list[Conversation]:
        return [c for _, c in self.examples]

    def summary(self) -> str:
        n_err, n_warn, n_ex = self.n_errors, self.n_warnings, self.n_examples
        verdict = "valid" if self.ok else "invalid"
        return (f"{verdict}: {n_ex} valid example{plural(n_ex)} in {self.n_lines} "
                f"line{plural(self.n_lines)}, {n_err} error{plural(n_err)}, {n_warn} warning{plural(n_warn)}")

    def format(self, limit: int | None = None, *, severity: Severity | None = None) -> str:
        """One issue per line (errors first), at most ``limit`` of them, and a count of the rest."""
        chosen = [i for i in self.issues if severity is None or i.severity == severity]
        chosen.sort(key=lambda i: i.severity != "error")  # stable: keeps line order within each kind
        shown = chosen if limit is None else chosen[:limit]
        lines = [f"{i.severity}: {i.format()}" for i in shown]
        more = len(chosen) - len(shown) + sum(n for sev, n in self.dropped.items() if severity in (None, sev))
        if more:
            lines.append(f"... and {more} more")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "purpose": self.purpose, "n_lines": self.n_lines,
                "n_examples": self.n_examples, "n_errors": self.n_errors,
                "n_warnings": self.n_warnings, "context_length": self.context_length,
                "max_seq_length": self.max_seq_length,
                "issues": [i.to_dict() for i in self.issues]}


def plural(n: int) -> str:
    """The plural ending for ``n`` things."""
    return "" if n == 1 else "s"


def show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, float) or value == value else "NaN"
    return text if len(text) <= 40 else text[:37] + "..."
