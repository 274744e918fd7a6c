"""Validate chat fine-tuning data in the OpenAI/Azure JSONL format, one example per line:

    {"messages": [{"role": "system"|"user"|"assistant", "content": "...", "weight": 0|1}]}

Every problem is collected (never only the first), each with its line and field, into a
:class:`ValidationReport`. Nothing here raises for bad data; :func:`load_examples`, used by the
trainer, is the one place that turns an invalid report into an :class:`InvalidInput`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tunery.chat import Conversation, Role
from tunery.errors import InvalidInput, TuneryError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

Severity = Literal["error", "warning"]
PURPOSES = ("training", "validation")
MIN_TRAINING_EXAMPLES = 10
"""The OpenAI fine-tuning service refuses training files with fewer examples; so do we."""

_BOM = b"\xef\xbb\xbf"
_ROLES = frozenset(r.value for r in Role)
_MESSAGE_KEYS = frozenset({"role", "content", "weight", "name"})
_TOOL_KEYS = frozenset({"tools", "functions", "parallel_tool_calls"})
_TOOL_MESSAGE_KEYS = frozenset({"tool_calls", "function_call", "tool_call_id"})


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
    line numbers; ``token_counts`` (line -> tokens) is filled when a tokenizer was given."""

    purpose: str = "training"
    n_lines: int = 0
    issues: list[Issue] = field(default_factory=list)
    examples: list[tuple[int, Conversation]] = field(default_factory=list)
    context_length: int | None = None
    max_seq_length: int | None = None
    token_counts: dict[int, int] = field(default_factory=dict)

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "error"]

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def conversations(self) -> list[Conversation]:
        return [c for _, c in self.examples]

    def summary(self) -> str:
        n_err, n_warn = len(self.errors), len(self.warnings)
        verdict = "valid" if self.ok else "invalid"
        return (f"{verdict}: {len(self.examples)} valid example{_s(len(self.examples))} in {self.n_lines} "
                f"line{_s(self.n_lines)}, {n_err} error{_s(n_err)}, {n_warn} warning{_s(n_warn)}")

    def format(self, limit: int | None = None, *, severity: Severity | None = None) -> str:
        """One issue per line (errors first), at most ``limit`` of them, and a count of the rest."""
        chosen = [i for i in self.issues if severity is None or i.severity == severity]
        chosen.sort(key=lambda i: i.severity != "error")  # stable: keeps line order within each kind
        shown = chosen if limit is None else chosen[:limit]
        lines = [f"{i.severity}: {i.format()}" for i in shown]
        if len(chosen) > len(shown):
            lines.append(f"... and {len(chosen) - len(shown)} more")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "purpose": self.purpose, "n_lines": self.n_lines,
                "n_examples": len(self.examples), "n_errors": len(self.errors),
                "n_warnings": len(self.warnings), "context_length": self.context_length,
                "max_seq_length": self.max_seq_length,
                "issues": [i.to_dict() for i in self.issues]}


def _s(n: int) -> str:
    return "" if n == 1 else "s"


def _kind(value: Any) -> str:
    """A JSON-ish name for a value's type, as the user wrote it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return {dict: "an object", list: "a list", str: "a string", int: "a number", float: "a number"
            }.get(type(value), type(value).__name__)


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, float) or value == value else "NaN"
    return text if len(text) <= 40 else text[:37] + "..."


def _line_list(lines: list[int], limit: int = 10) -> str:
    shown = ", ".join(str(n) for n in lines[:limit])
    return shown + (f" and {len(lines) - limit} more" if len(lines) > limit else "")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_Add = Callable[..., None]


def _check_content(add: _Add, fld: str, content: Any) -> bool:
    if isinstance(content, str):
        text = content
    elif isinstance(content, list):
        if not content:
            add(fld, "content is an empty list: every message needs text")
            return False
        parts, ok = [], True
        for j, part in enumerate(content):
            pf = f"{fld}[{j}]"
            if not isinstance(part, dict):
                add(pf, f'a content part must be an object like {{"type": "text", "text": "..."}}, got {_kind(part)}')
                ok = False
            elif part.get("type") != "text":
                add(f"{pf}.type", f"only text content parts are supported, got type {_show(part.get('type'))}")
                ok = False
            elif not isinstance(part.get("text"), str):
                add(f"{pf}.text", f"text must be a string, got {_kind(part.get('text'))}")
                ok = False
            else:
                parts.append(part["text"])
        if not ok:
            return False
        text = "".join(parts)
    elif content is None:
        add(fld, "content is null: every message needs text")
        return False
    else:
        add(fld, f"content must be a string, got {_kind(content)}")
        return False
    if not text.strip():
        add(fld, "content is empty")
        return False
    return True


def _check_role(add: _Add, fld: str, m: dict) -> str | None:
    """The message's role if it is valid, else None (after reporting why)."""
    if "role" not in m:
        add(fld, "missing role")
        return None
    role = m["role"]
    if not isinstance(role, str):
        add(fld, f"role must be a string, got {_kind(role)}")
    elif role in _ROLES:
        return role
    elif role in ("tool", "function"):
        add(fld, f"role {role!r} is not supported by tunery: tool-calling conversations cannot be trained on; "
                 "use system, user or assistant")
    elif role == "developer":
        add(fld, "role 'developer' is not supported by tunery: use 'system'")
    elif role.strip().lower() in _ROLES:
        add(fld, f"unknown role {role!r}: roles are lowercase, use {role.strip().lower()!r}")
    else:
        add(fld, f"unknown role {_show(role)}: use system, user or assistant")
    return None


def _check_message(add: _Add, i: int, m: Any) -> tuple[bool, str | None]:
    f = f"messages[{i}]"
    if not isinstance(m, dict):
        add(f, f"a message must be an object with role and content, got {_kind(m)}")
        return False, None
    role = _check_role(add, f"{f}.role", m)
    ok = role is not None
    if "content" not in m:
        add(f"{f}.content", "missing content")
        ok = False
    else:
        ok = _check_content(add, f"{f}.content", m["content"]) and ok
    for key in m:
        if key in _TOOL_MESSAGE_KEYS:
            add(f"{f}.{key}", f"{key!r} is not supported by tunery: tool-calling conversations cannot be trained on")
            ok = False
        elif key not in _MESSAGE_KEYS:
            add(f"{f}.{key}", f"unknown key {_show(key)}: a message has role, content and optionally weight, name")
            ok = False
    if "name" in m and not (isinstance(m["name"], str) and m["name"].strip()):
        add(f"{f}.name", f"name must be a non-empty string, got {_show(m['name'])}")
        ok = False
    if "weight" in m:
        w = m["weight"]
        if role is not None and role != Role.ASSISTANT:
            add(f"{f}.weight", "weight is only allowed on assistant messages")
            ok = False
        if isinstance(w, bool) or not isinstance(w, int) or w not in (0, 1):
            add(f"{f}.weight", f"weight must be 0 or 1, got {_show(w)}"
                + (" (a boolean)" if isinstance(w, bool) else " (a string)" if isinstance(w, str) else ""))
            ok = False
    return ok, role


def _check_turns(add: _Add, warn: _Add, messages: list, roles: list[str | None]) -> bool:
    """Conversation shape: system first and once, alternating turns, something to learn from."""
    ok = True
    for i, role in enumerate(roles):
        if role == Role.SYSTEM and i > 0:
            add(f"messages[{i}].role", "a system message is only allowed once, as the first message")
            ok = False
        elif role is not None and i > 0 and roles[i - 1] == role:
            add(f"messages[{i}].role", f"two consecutive {role} messages: alternate user and assistant turns "
                                       "(merge the two into one message)")
            ok = False
    if None in roles:
        return False  # the shape of a conversation with unknown roles says nothing more
    assistants = [i for i, r in enumerate(roles) if r == Role.ASSISTANT]
    if not assistants:
        add("messages", "no assistant message to learn from")
        return False
    if all(type(messages[i].get("weight")) is int and messages[i]["weight"] == 0 for i in assistants):
        add("messages", "every assistant message has weight 0: nothing to learn from")
        ok = False
    if roles[-1] != Role.ASSISTANT:
        warn(f"messages[{len(roles) - 1}].role",
             f"the conversation ends with a {roles[-1]} message: turns after the last assistant message "
             "are not trained on")
    return ok


def _check_line(add: _Add, warn: _Add, raw: bytes) -> list[dict] | None:
    """The example's messages when the line is a valid example, else None (problems reported)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        add(None, f"not valid UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1}): save the file as UTF-8")
        return None
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as e:
        add(None, f"not valid JSON: {e.msg} at column {e.colno}")
        return None
    except ValueError as e:
        add(None, f"not valid JSON: {e}")
        return None
    except RecursionError:
        add(None, "not valid JSON: nested too deeply")
        return None
    if not isinstance(obj, dict):
        add(None, f'expected a JSON object like {{"messages": [...]}}, got {_kind(obj)}')
        return None
    ok = True
    for key in obj:
        if key in _TOOL_KEYS:
            add(key, f"{key!r} is not supported by tunery: tool-calling fine-tuning is not available; remove it")
            ok = False
        elif key != "messages":
            add(key, f'unknown key {_show(key)}: an example holds only "messages"')
            ok = False
    if "messages" not in obj:
        add("messages", 'missing "messages"')
        return None
    messages = obj["messages"]
    if not isinstance(messages, list):
        add("messages", f"messages must be a list of messages, got {_kind(messages)}")
        return None
    if not messages:
        add("messages", "messages is empty")
        return None
    roles: list[str | None] = []
    for i, m in enumerate(messages):
        msg_ok, role = _check_message(add, i, m)
        ok = msg_ok and ok
        roles.append(role)
    ok = _check_turns(add, warn, messages, roles) and ok
    return messages if ok else None


def _whole_document_hint(data: bytes) -> str | None:
    """Name the usual mistake of a pretty-printed JSON document saved as .jsonl."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError):
        return None
    if isinstance(doc, list | dict):
        return (f"the file is one JSON document ({_kind(doc)}), not JSON Lines: write one "
                '{"messages": [...]} object per line')
    return None


def _check_lengths(report: ValidationReport, tokenizer: PreTrainedTokenizerBase, context_length: int | None,
                   max_seq_length: int | None) -> None:
    from tunery.data.stats import count_tokens, render, render_all

    try:
        texts = render_all(tokenizer, [c.to_dicts() for c in report.conversations])
        rendered = [(line, conv, text) for (line, conv), text in zip(report.examples, texts, strict=True)]
    except TuneryError:  # name the examples the chat template rejects; the others are still measured
        rendered = []
        for line, conv in report.examples:
            try:
                rendered.append((line, conv, render(tokenizer, conv.to_dicts())))
            except TuneryError as e:
                report.issues.append(Issue(line, None, e.message))
    report.examples = [(line, conv) for line, conv, _ in rendered]
    counts = count_tokens(tokenizer, [text for _, _, text in rendered])
    report.token_counts = {line: n for (line, _, _), n in zip(rendered, counts, strict=True)}
    for line, n in report.token_counts.items():
        if context_length and n > context_length:
            report.issues.append(Issue(line, None, f"example is {n} tokens, longer than the model's context of "
                                                   f"{context_length}: it will be truncated", "warning"))
    if max_seq_length:
        over = [line for line, n in report.token_counts.items() if n > max_seq_length]
        if over:
            report.issues.append(Issue(None, None, f"{len(over)} example{_s(len(over))} longer than the training "
                                                   f"max_seq_length of {max_seq_length} tokens will be truncated "
                                                   f"in training (line{_s(len(over))} {_line_list(over)})",
                                       "warning"))


def validate_bytes(data: bytes, *, purpose: str = "training", tokenizer: PreTrainedTokenizerBase | None = None,
                   context_length: int | None = None, max_seq_length: int | None = None) -> ValidationReport:
    """Validate the bytes of a chat JSONL file. With a tokenizer, examples are also measured against
    ``context_length`` (the model's) and ``max_seq_length`` (the training setting)."""
    if purpose not in PURPOSES:
        raise InvalidInput(f"purpose must be training or validation, not {purpose!r}", param="purpose")
    report = ValidationReport(purpose=purpose, context_length=context_length, max_seq_length=max_seq_length)
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        report.issues.append(Issue(None, None, "the file is UTF-16 encoded: save it as UTF-8"))
        return report
    data = data.removeprefix(_BOM)
    raw_lines = data.split(b"\n")
    if raw_lines[-1] == b"":
        raw_lines.pop()  # the newline that ends the last line does not start another
    report.n_lines = len(raw_lines)
    blank: list[int] = []
    no_system: list[int] = []
    seen: dict[bytes, int] = {}
    n_nonblank = 0
    first_line = first_bad = None
    for lineno, raw in enumerate(raw_lines, 1):
        if not raw.strip():
            blank.append(lineno)
            continue
        n_nonblank += 1
        first_line = first_line or lineno

        def add(fld: str | None, message: str, _line: int = lineno) -> None:
            report.issues.append(Issue(_line, fld, message))

        def warn(fld: str | None, message: str, _line: int = lineno) -> None:
            report.issues.append(Issue(_line, fld, message, "warning"))

        n_before = len(report.issues)
        messages = _check_line(add, warn, raw.removesuffix(b"\r"))
        if messages is None:
            if first_bad is None and len(report.issues) > n_before:
                first_bad = lineno
            continue
        key = hashlib.blake2b(json.dumps(messages, sort_keys=True, ensure_ascii=False).encode(),
                              digest_size=16).digest()
        if key in seen:
            warn(None, f"duplicate of line {seen[key]}")
        else:
            seen[key] = lineno
        if messages[0]["role"] != Role.SYSTEM:
            no_system.append(lineno)
        report.examples.append((lineno, Conversation.from_dicts(messages)))

    file_issues: list[Issue] = []
    if n_nonblank == 0:
        file_issues.append(Issue(None, None, "the file is empty: write one chat example per line"))
    elif n_nonblank < MIN_TRAINING_EXAMPLES:
        severity: Severity = "error" if purpose == "training" else "warning"
        file_issues.append(Issue(None, None, f"only {n_nonblank} example{_s(n_nonblank)}: the OpenAI fine-tuning "
                                             f"service requires at least {MIN_TRAINING_EXAMPLES} (50-100 usually "
                                             "work better)", severity))
    if first_bad is not None and first_bad == first_line:
        hint = _whole_document_hint(data)
        if hint:
            file_issues.insert(0, Issue(None, None, hint))
    if blank:
        file_issues.append(Issue(None, None, f"blank line{_s(len(blank))} {_line_list(blank)} skipped", "warning"))
    if no_system:
        file_issues.append(Issue(None, None, f"{len(no_system)} example{_s(len(no_system))} without a system "
                                             f"message (line{_s(len(no_system))} {_line_list(no_system)}): "
                                             "give the system message you will use at inference", "warning"))
    report.issues[:0] = file_issues
    if tokenizer is not None and report.examples:
        _check_lengths(report, tokenizer, context_length, max_seq_length)
    return report


def read_data(path: str | Path) -> bytes:
    """A data file's bytes, or an InvalidInput that says why it cannot be read."""
    path = Path(path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InvalidInput(f"file not found: {path}", param="file") from None
    except IsADirectoryError:
        raise InvalidInput(f"{path} is a folder, not a JSONL file", param="file") from None
    except OSError as e:
        raise InvalidInput(f"cannot read {path}: {e.strerror or e}", param="file") from None


def validate_file(path: str | Path, *, model: str | None = None, purpose: str = "training") -> ValidationReport:
    """Validate a chat JSONL file; with ``model``, also measure examples with its tokenizer against its
    context length and its catalog training ``max_seq_length``."""
    data = read_data(path)
    if model is None:
        return validate_bytes(data, purpose=purpose)
    from tunery.models import registry
    from tunery.models.loading import load_tokenizer

    rec = registry.get(model)
    spec = rec.spec
    return validate_bytes(data, purpose=purpose, tokenizer=load_tokenizer(rec), context_length=rec.context_length,
                          max_seq_length=spec.training.max_seq_length if spec else None)


MAX_REPORTED_ERRORS = 20


def load_examples(source: str | Path | bytes, *, purpose: str = "training") -> list[Conversation]:
    """The conversations of a valid chat JSONL file (a path or its bytes), for the trainer. An invalid
    file raises InvalidInput listing the first errors and how many there are."""
    data = source if isinstance(source, bytes) else read_data(source)
    report = validate_bytes(data, purpose=purpose)
    if not report.ok:
        n = len(report.errors)
        raise InvalidInput(f"invalid {purpose} file ({n} error{_s(n)}):\n"
                           + report.format(MAX_REPORTED_ERRORS, severity="error"),
                           param=f"{purpose}_file", code=f"invalid_{purpose}_file",
                           hint="run `tunery data validate FILE` for the full report")
    return report.conversations
