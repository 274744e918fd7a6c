"""Validate chat fine-tuning data in the OpenAI/Azure JSONL format, one example per line:

    {"messages": [{"role": "system"|"user"|"assistant", "content": "...", "weight": 0|1}]}

and OpenAI's tool-calling examples: ``tools`` (function specs with a JSON-schema ``parameters``) and
``parallel_tool_calls`` beside ``messages``, assistant messages with ``tool_calls`` (arguments a JSON
string that must parse and validate against the function's schema, checked with ``jsonschema``),
``tool`` messages whose ``tool_call_id`` answers an earlier call. The legacy ``functions`` /
``function_call`` / role ``function`` shape is refused with the new shape named.

Every problem is collected (never only the first), each with its line and field, into a
:class:`ValidationReport`. Nothing here raises for bad data; :func:`load_examples`, used by the
trainer, is the one place that turns an invalid report into an :class:`InvalidInput`.

A file is read once, line by line (:class:`Validator`): each line is checked, measured and
forgotten, so a report takes memory for its problems (up to a cap when one is given) and a few
numbers per example, never for the file's text. Limits a user meets: a line holds at most
:data:`MAX_LINE_BYTES`; with a model, an example holds at most as many messages as the model's
context has tokens. Lines are read and decoded by :mod:`tunery.data.text`, as every user text
file is.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from tunery.chat import Conversation, Role
from tunery.data.pairs import check_pair, is_pair
from tunery.data.text import MAX_LINE_BYTES, byte_lines, decode_line, file_lines, open_data, small_file
from tunery.errors import InvalidInput, TuneryError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

Severity = Literal["error", "warning"]
PURPOSES = ("training", "validation")
MIN_TRAINING_EXAMPLES = 10
"""The OpenAI fine-tuning service refuses training files with fewer examples; so do we."""

_BOM = b"\xef\xbb\xbf"
_ROLES = frozenset(r.value for r in Role)
_MESSAGE_KEYS = frozenset({"role", "content", "weight", "name", "tool_calls", "tool_call_id"})
_EXAMPLE_KEYS = frozenset({"messages", "tools", "parallel_tool_calls"})
_LEGACY = ("the legacy function-calling shape is not supported: declare functions in \"tools\" "
           '([{"type": "function", "function": {...}}]), call them with an assistant message\'s "tool_calls" '
           'and answer each call with a {"role": "tool", "tool_call_id": ..., "content": ...} message')
_TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")


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
        return (f"{verdict}: {n_ex} valid example{_s(n_ex)} in {self.n_lines} "
                f"line{_s(self.n_lines)}, {n_err} error{_s(n_err)}, {n_warn} warning{_s(n_warn)}")

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


class _LineList:
    """Line numbers as a message names them: how many, and the first ten (not all: a file of a
    million lines would keep a million numbers)."""

    SHOWN = 10

    def __init__(self) -> None:
        self.n = 0
        self.first: list[int] = []

    def add(self, line: int) -> None:
        self.n += 1
        if len(self.first) < self.SHOWN:
            self.first.append(line)

    def __bool__(self) -> bool:
        return self.n > 0

    def __str__(self) -> str:
        shown = ", ".join(str(n) for n in self.first)
        return shown + (f" and {self.n - len(self.first)} more" if self.n > len(self.first) else "")


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
    elif role == "function":
        add(fld, f"role 'function' is {_LEGACY}")
    elif role == "developer":
        add(fld, "role 'developer' is not supported by tunery: use 'system'")
    elif role.strip().lower() in _ROLES:
        add(fld, f"unknown role {role!r}: roles are lowercase, use {role.strip().lower()!r}")
    else:
        add(fld, f"unknown role {_show(role)}: use system, user, assistant or tool")
    return None


def _check_message(add: _Add, i: int, m: Any) -> tuple[bool, str | None]:
    f = f"messages[{i}]"
    if not isinstance(m, dict):
        add(f, f"a message must be an object with role and content, got {_kind(m)}")
        return False, None
    role = _check_role(add, f"{f}.role", m)
    ok = role is not None
    calls = role == Role.ASSISTANT and "tool_calls" in m
    if calls and m.get("content") in (None, ""):
        pass  # a message that only calls tools has no text (OpenAI's null)
    elif "content" not in m:
        add(f"{f}.content", "missing content")
        ok = False
    else:
        ok = _check_content(add, f"{f}.content", m["content"]) and ok
    for key in m:
        if key == "function_call":
            add(f"{f}.{key}", f"'function_call' is {_LEGACY}")
            ok = False
        elif key == "tool_calls" and role is not None and role != Role.ASSISTANT:
            add(f"{f}.{key}", "tool_calls are only allowed on assistant messages")
            ok = False
        elif key == "tool_call_id" and role is not None and role != Role.TOOL:
            add(f"{f}.{key}", "tool_call_id is only allowed on tool messages")
            ok = False
        elif key not in _MESSAGE_KEYS:
            add(f"{f}.{key}", f"unknown key {_show(key)}: a message has role, content and optionally weight, name "
                              "(and tool_calls on an assistant message, tool_call_id on a tool message)")
            ok = False
    if role == Role.TOOL and "tool_call_id" not in m:
        add(f"{f}.tool_call_id", "missing tool_call_id: a tool message names the call it answers")
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
        elif role is not None and role != Role.TOOL and i > 0 and roles[i - 1] == role:
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


# --- tool calling --------------------------------------------------------------------------------

_FUNCTION_KEYS = frozenset({"name", "description", "parameters", "strict"})


def _check_tools(add: _Add, tools: Any) -> dict[str, dict] | None:
    """The declared functions' parameter schemas by name when ``tools`` is valid, else None."""
    from jsonschema import Draft202012Validator, SchemaError

    if not isinstance(tools, list) or not tools:
        add("tools", f"tools must be a non-empty list of tools, got {_show(tools) if tools == [] else _kind(tools)}")
        return None
    schemas: dict[str, dict] = {}
    ok = True
    for j, tool in enumerate(tools):
        f = f"tools[{j}]"
        if not isinstance(tool, dict):
            add(f, f'a tool must be an object like {{"type": "function", "function": {{...}}}}, got {_kind(tool)}')
            ok = False
            continue
        for key in tool:
            if key not in ("type", "function"):
                add(f"{f}.{key}", f'unknown key {_show(key)}: a tool has "type" and "function"')
                ok = False
        if tool.get("type") != "function":
            add(f"{f}.type", f'type must be "function", got {_show(tool.get("type"))}')
            ok = False
        fn = tool.get("function")
        if not isinstance(fn, dict):
            add(f"{f}.function", f"function must be an object with name, description and parameters, got {_kind(fn)}")
            ok = False
            continue
        for key in fn:
            if key not in _FUNCTION_KEYS:
                add(f"{f}.function.{key}", f"unknown key {_show(key)}: a function has name, description, "
                                           "parameters and optionally strict")
                ok = False
        name = fn.get("name")
        if not isinstance(name, str) or not _TOOL_NAME.fullmatch(name):
            add(f"{f}.function.name", f"name must be 1-64 letters, digits, _ or -, got {_show(name)}")
            ok = False
            name = None
        elif name in schemas:
            add(f"{f}.function.name", f"function {name!r} is declared twice")
            ok = False
        if "description" in fn and not isinstance(fn["description"], str):
            add(f"{f}.function.description", f"description must be a string, got {_kind(fn['description'])}")
            ok = False
        params = fn.get("parameters", {"type": "object", "properties": {}})
        if not isinstance(params, dict) or params.get("type") != "object":
            add(f"{f}.function.parameters", 'parameters must be a JSON schema of type "object"')
            ok = False
            continue
        try:
            Draft202012Validator.check_schema(params)
        except SchemaError as e:
            where = "".join(f"[{p!r}]" if isinstance(p, int) else f".{p}" for p in e.path)
            add(f"{f}.function.parameters{where}", f"not a valid JSON schema: {e.message}")
            ok = False
            continue
        if name is not None:
            schemas[name] = params
    return schemas if ok else None


def _check_arguments(add: _Add, fld: str, args: Any, schema: dict | None) -> bool:
    """A call's ``arguments``: a JSON string of an object that validates against ``schema``."""
    from jsonschema import Draft202012Validator

    if not isinstance(args, str):
        add(fld, f"arguments must be a JSON string (as the API sends them), got {_kind(args)}")
        return False
    try:
        value = json.loads(args, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as e:
        add(fld, f"arguments are not valid JSON: {getattr(e, 'msg', e)}")
        return False
    if not isinstance(value, dict):
        add(fld, f"arguments must be a JSON object, got {_kind(value)}")
        return False
    if schema is None:
        return True
    ok = True
    for err in sorted(Draft202012Validator(schema).iter_errors(value), key=lambda e: list(e.path)):
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.path)
        add(fld, f"arguments{where} do not match the function's parameters: {err.message}")
        ok = False
    return ok


def _check_tool_use(add: _Add, messages: list, roles: list[str | None], schemas: dict[str, dict] | None,
                    declared: bool, parallel: bool) -> bool:
    """Tool calls against the declared functions, and each tool message answering an earlier
    call (``schemas`` is None when ``tools`` itself is invalid: calls are then checked for shape only)."""
    ok = True
    ids: set[str] = set()
    pending: dict[str, int] = {}  # call id -> message index, until a tool message answers it
    for i, (m, role) in enumerate(zip(messages, roles, strict=True)):
        f = f"messages[{i}]"
        if role == Role.TOOL:
            cid = m.get("tool_call_id")
            prev = roles[i - 1] if i > 0 else None
            if not (prev == Role.TOOL or (prev == Role.ASSISTANT and messages[i - 1].get("tool_calls"))):
                add(f"{f}.role", "a tool message must follow the assistant message whose call it answers "
                                 "(or another tool message)")
                ok = False
            if not isinstance(cid, str) or not cid:
                if "tool_call_id" in m:
                    add(f"{f}.tool_call_id", f"tool_call_id must be a non-empty string, got {_show(cid)}")
                ok = False
            elif cid in pending:
                del pending[cid]
            elif cid in ids:
                add(f"{f}.tool_call_id", f"call {cid!r} is already answered")
                ok = False
            else:
                add(f"{f}.tool_call_id", f"{cid!r} answers no earlier tool call of this conversation")
                ok = False
            continue
        if pending and role is not None:
            names = ", ".join(repr(c) for c in pending)
            add(f"{f}.role", f"tool call{_s(len(pending))} {names} of messages[{min(pending.values())}] "
                             "not answered: give each call a tool message before the next turn")
            ok = False
            pending.clear()
        if role != Role.ASSISTANT or "tool_calls" not in m:
            continue
        calls = m["tool_calls"]
        if not isinstance(calls, list) or not calls:
            add(f"{f}.tool_calls", f"tool_calls must be a non-empty list of calls, got "
                                   f"{_show(calls) if calls == [] else _kind(calls)}")
            ok = False
            continue
        if len(calls) > 1 and not parallel:
            add(f"{f}.tool_calls", f"{len(calls)} calls in one message, but parallel_tool_calls is false")
            ok = False
        for j, call in enumerate(calls):
            cf = f"{f}.tool_calls[{j}]"
            if not isinstance(call, dict):
                add(cf, f'a tool call must be an object like {{"id": ..., "type": "function", "function": '
                        f'{{"name": ..., "arguments": "{{...}}"}}}}, got {_kind(call)}')
                ok = False
                continue
            for key in call:
                if key not in ("id", "type", "function"):
                    add(f"{cf}.{key}", f'unknown key {_show(key)}: a tool call has "id", "type" and "function"')
                    ok = False
            cid = call.get("id")
            if not isinstance(cid, str) or not cid:
                add(f"{cf}.id", f"id must be a non-empty string, got {_show(cid)}")
                ok = False
            elif cid in ids:
                add(f"{cf}.id", f"call id {cid!r} is used twice in this conversation")
                ok = False
            else:
                ids.add(cid)
                pending[cid] = i
            if call.get("type") != "function":
                add(f"{cf}.type", f'type must be "function", got {_show(call.get("type"))}')
                ok = False
            fn = call.get("function")
            if not isinstance(fn, dict):
                add(f"{cf}.function", f"function must be an object with name and arguments, got {_kind(fn)}")
                ok = False
                continue
            for key in fn:
                if key not in ("name", "arguments"):
                    add(f"{cf}.function.{key}", f'unknown key {_show(key)}: a call\'s function has "name" and "arguments"')
                    ok = False
            name = fn.get("name")
            schema = None
            if not isinstance(name, str) or not name:
                add(f"{cf}.function.name", f"name must be a non-empty string, got {_show(name)}")
                ok = False
            elif not declared:
                add(f"{cf}.function.name", f"calls {name!r}, but the example declares no tools: list the "
                                           'functions in "tools"')
                ok = False
            elif schemas is not None:
                if name not in schemas:
                    add(f"{cf}.function.name", f"calls {name!r}, which is not among the example's tools "
                                               f"({', '.join(schemas)})")
                    ok = False
                else:
                    schema = schemas[name]
            if "arguments" not in fn:
                add(f"{cf}.function.arguments", "missing arguments (\"{}\" for a call without any)")
                ok = False
            else:
                ok = _check_arguments(add, f"{cf}.function.arguments", fn["arguments"], schema) and ok
    return ok


# --- one line ------------------------------------------------------------------------------------

_SURROGATE = re.compile("[\ud800-\udfff]")


def lone_surrogate(obj: Any) -> tuple[str | None, str] | None:
    """The first string of a parsed line that holds a lone surrogate (a ``\\ud800`` escape without
    its other half: not Unicode text, so no file, database or tokenizer can take it), as (field,
    message); None when there is none."""
    stack: list[tuple[Any, str]] = [(obj, "")]
    while stack:
        value, where = stack.pop()
        if isinstance(value, str):
            m = _SURROGATE.search(value)
            if m:
                return where or None, (f"not valid Unicode: a lone surrogate \\u{ord(m.group()):04x} at character "
                                       f"{m.start() + 1} (a \\ud800-\\udfff escape must be one half of a pair)")
        elif isinstance(value, dict):
            if any(_SURROGATE.search(k) for k in value):
                return where or None, "not valid Unicode: a key holds a lone surrogate (\\ud800-\\udfff)"
            stack.extend(reversed([(v, f"{where}.{k}" if where else k) for k, v in value.items()]))
        elif isinstance(value, list):
            stack.extend(reversed([(v, f"{where}[{i}]") for i, v in enumerate(value)]))
    return None


def _check_line(add: _Add, warn: _Add, raw: bytes) -> Conversation | None:
    """The example when the line is a valid example, else None (problems reported)."""
    text, problem = decode_line(raw)
    if text is None:
        add(None, problem)
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
    if "\\u" in text and (bad := lone_surrogate(obj)) is not None:
        add(*bad)  # before anything echoes a value: text with a lone surrogate cannot even be printed
        return None
    if not isinstance(obj, dict):
        add(None, f'expected a JSON object like {{"messages": [...]}}, got {_kind(obj)}')
        return None
    if is_pair(obj):  # OpenAI's preference format (DPO): its own rules; measured as prompt + preferred
        pair = check_pair(add, warn, obj, _check_message)
        return pair.conversation(pair.chosen) if pair else None
    ok = True
    for key in obj:
        if key == "functions":
            add(key, f"'functions' is {_LEGACY}")
            ok = False
        elif key not in _EXAMPLE_KEYS:
            add(key, f'unknown key {_show(key)}: an example holds "messages" and optionally "tools", '
                     '"parallel_tool_calls"')
            ok = False
    schemas = _check_tools(add, obj["tools"]) if "tools" in obj else {}
    ok = ok and schemas is not None
    parallel = obj.get("parallel_tool_calls", True)
    if not isinstance(parallel, bool):
        add("parallel_tool_calls", f"parallel_tool_calls must be true or false, got {_show(parallel)}")
        ok, parallel = False, True
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
    if any(r == Role.TOOL for r in roles) or any(isinstance(m, dict) and "tool_calls" in m for m in messages):
        ok = _check_tool_use(add, messages, roles, schemas, "tools" in obj, parallel) and ok
    return Conversation.from_dicts(messages, obj.get("tools")) if ok else None


def _whole_document_hint(data: bytes | None) -> str | None:
    """Name the usual mistake of a pretty-printed JSON document saved as .jsonl."""
    if data is None:
        return None
    try:
        doc = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError):
        return None
    if isinstance(doc, list | dict):
        return (f"the file is one JSON document ({_kind(doc)}), not JSON Lines: write one "
                '{"messages": [...]} object per line')
    return None


# --- a whole file --------------------------------------------------------------------------------

class Tally(Protocol):
    """Where measured examples go (:class:`tunery.data.stats.TokenTally`)."""

    def add(self, turns: int, tokens: int, trained: int) -> None: ...


class _Issues:
    """Issues of one kind in file order, at most ``cap`` of them kept; the rest only counted."""

    def __init__(self, report: ValidationReport, cap: int | None) -> None:
        self.report, self.cap, self.kept = report, cap, []

    def add(self, issue: Issue) -> None:
        if self.cap is None or len(self.kept) < self.cap:
            self.kept.append(issue)
        else:
            self.report.dropped[issue.severity] = self.report.dropped.get(issue.severity, 0) + 1


class _Measure:
    """Examples measured with the model's tokenizer as they come, a batch at a time (the chat
    template's batched call is several times faster than one call each), then forgotten."""

    BATCH_EXAMPLES = 64
    BATCH_BYTES = 1 << 20

    def __init__(self, report: ValidationReport, issues: _Issues, tokenizer: PreTrainedTokenizerBase,
                 tally: Tally | None) -> None:
        self.report, self.issues, self.tokenizer, self.tally = report, issues, tokenizer, tally
        self.batch: list[tuple[int, Conversation]] = []
        self.batch_bytes = 0
        self.over_seq = _LineList()
        self.rejected: set[int] = set()

    def add(self, line: int, conv: Conversation, size: int) -> None:
        context = self.report.context_length
        if context and len(conv) > context:
            # every message takes a token at least: refused before templating, which would take
            # time and memory in proportion to the square of its length to find trained tokens
            self._reject(line, f"example has {len(conv):,} messages, more than the model's context of "
                               f"{context:,} tokens can hold: split it into shorter conversations")
            return
        self.batch.append((line, conv))
        self.batch_bytes += size
        if len(self.batch) >= self.BATCH_EXAMPLES or self.batch_bytes >= self.BATCH_BYTES:
            self.flush()

    def _reject(self, line: int, message: str) -> None:
        self.issues.add(Issue(line, None, message))
        self.rejected.add(line)
        if not self.report.keep_examples:
            self.report.n_unkept -= 1

    def _renderable(self, batch: list[tuple[int, Conversation]]) -> list[tuple[int, Conversation]]:
        """The examples the chat template renders; each one it rejects is named."""
        from tunery.chat_template import render

        out = []
        for line, conv in batch:
            try:
                render(self.tokenizer, conv)
            except TuneryError as e:
                self._reject(line, e.message)
            else:
                out.append((line, conv))
        return out

    def flush(self) -> None:
        from tunery.chat_template import count_tokens, render_all, trained_token_counts

        batch, self.batch, self.batch_bytes = self.batch, [], 0
        if not batch:
            return
        trained: list[int] = []
        if self.tally is not None:
            try:
                lengths, trained = trained_token_counts(self.tokenizer, [c for _, c in batch])
            except TuneryError:  # name the examples the template rejects; measure the others
                batch = self._renderable(batch)
                lengths, trained = trained_token_counts(self.tokenizer, [c for _, c in batch])
        else:
            try:
                texts = render_all(self.tokenizer, [c for _, c in batch])
            except TuneryError:
                batch = self._renderable(batch)
                texts = render_all(self.tokenizer, [c for _, c in batch])
            lengths = count_tokens(self.tokenizer, texts)
        context, max_seq = self.report.context_length, self.report.max_seq_length
        for k, ((line, conv), n) in enumerate(zip(batch, lengths, strict=True)):
            if self.report.keep_examples:
                self.report.token_counts[line] = n
            if self.tally is not None:
                self.tally.add(len(conv), n, trained[k])
            if context and n > context:
                self.issues.add(Issue(line, None, f"example is {n} tokens, longer than the model's context of "
                                                  f"{context}: it will be truncated", "warning"))
            if max_seq and n > max_seq:
                self.over_seq.add(line)

    def finish(self) -> None:
        self.flush()
        if self.rejected and self.report.keep_examples:
            self.report.examples = [(line, c) for line, c in self.report.examples if line not in self.rejected]
        if self.over_seq:
            n = self.over_seq.n
            self.issues.add(Issue(None, None, f"{n} example{_s(n)} longer than the training max_seq_length of "
                                              f"{self.report.max_seq_length} tokens will be truncated in training "
                                              f"(line{_s(n)} {self.over_seq})", "warning"))


class Validator:
    """The validator's single pass over a file: feed it every line (:meth:`line`, bytes without the
    ``\\n``, or the length of a line too long to read), then :meth:`finish`. Each line is checked,
    measured (with a tokenizer) and forgotten; ``keep_examples`` keeps the valid conversations,
    ``max_issues`` caps the problems kept per kind (all are counted), ``tally`` receives each
    measured example's turns, tokens and trained tokens."""

    def __init__(self, *, purpose: str = "training", tokenizer: PreTrainedTokenizerBase | None = None,
                 context_length: int | None = None, max_seq_length: int | None = None,
                 keep_examples: bool = True, max_issues: int | None = None, tally: Tally | None = None) -> None:
        if purpose not in PURPOSES:
            raise InvalidInput(f"purpose must be training or validation, not {purpose!r}", param="purpose")
        self.report = ValidationReport(purpose=purpose, context_length=context_length,
                                       max_seq_length=max_seq_length, keep_examples=keep_examples)
        self.line_issues = _Issues(self.report, max_issues)
        self.measured_issues = _Issues(self.report, max_issues)
        self.measure = (_Measure(self.report, self.measured_issues, tokenizer, tally)
                        if tokenizer is not None else None)
        self.blank, self.no_system = _LineList(), _LineList()
        self.seen: dict[bytes, int] = {}  # a digest per distinct example, to name duplicates
        self.n_nonblank = 0
        self.first_line: int | None = None
        self.first_bad: int | None = None
        self.utf16 = False

    def line(self, lineno: int, raw: bytes | int) -> None:
        if self.utf16:
            return
        if lineno == 1 and isinstance(raw, bytes):
            if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
                self.utf16 = True
                return
            raw = raw.removeprefix(_BOM)
        self.report.n_lines = lineno
        if isinstance(raw, bytes) and not raw.strip():
            self.blank.add(lineno)
            return
        self.n_nonblank += 1
        self.first_line = self.first_line or lineno

        def add(fld: str | None, message: str) -> None:
            self.line_issues.add(Issue(lineno, fld, message))

        def warn(fld: str | None, message: str) -> None:
            self.line_issues.add(Issue(lineno, fld, message, "warning"))

        n_before = sum(self.report.dropped.values()) + len(self.line_issues.kept)
        if isinstance(raw, int):
            add(None, f"the line is {raw:,} bytes, longer than the {MAX_LINE_BYTES:,} a line may hold: no "
                      "model's context holds an example that long")
            conv = None
        else:
            conv = _check_line(add, warn, raw.removesuffix(b"\r"))
        if conv is None:
            if self.first_bad is None and sum(self.report.dropped.values()) + len(self.line_issues.kept) > n_before:
                self.first_bad = lineno
            return
        key = hashlib.blake2b(json.dumps([conv.to_dicts(with_weights=True), conv.tools], sort_keys=True,
                                         ensure_ascii=False).encode(), digest_size=16).digest()
        if key in self.seen:
            warn(None, f"duplicate of line {self.seen[key]}")
        else:
            self.seen[key] = lineno
        if conv.messages[0].role is not Role.SYSTEM:
            self.no_system.add(lineno)
        if self.report.keep_examples:
            self.report.examples.append((lineno, conv))
        else:
            self.report.n_unkept += 1
        if self.measure is not None:
            self.measure.add(lineno, conv, len(raw))

    def finish(self, whole: Callable[[], bytes | None] = lambda: None) -> ValidationReport:
        """The report, with the file's own issues first. ``whole`` gives the file's bytes (or None
        when it is too large to parse at once), asked for only to explain a file whose first line
        is already bad."""
        report = self.report
        if self.utf16:
            report.issues = [Issue(None, None, "the file is UTF-16 encoded: save it as UTF-8")]
            return report
        if self.measure is not None:
            self.measure.finish()
        file_issues: list[Issue] = []
        n_nonblank = self.n_nonblank
        if n_nonblank == 0:
            file_issues.append(Issue(None, None, "the file is empty: write one chat example per line"))
        elif n_nonblank < MIN_TRAINING_EXAMPLES:
            severity: Severity = "error" if report.purpose == "training" else "warning"
            file_issues.append(Issue(None, None, f"only {n_nonblank} example{_s(n_nonblank)}: the OpenAI fine-tuning "
                                                 f"service requires at least {MIN_TRAINING_EXAMPLES} (50-100 usually "
                                                 "work better)", severity))
        if self.first_bad is not None and self.first_bad == self.first_line:
            hint = _whole_document_hint(whole())
            if hint:
                file_issues.insert(0, Issue(None, None, hint))
        if self.blank:
            n = self.blank.n
            file_issues.append(Issue(None, None, f"blank line{_s(n)} {self.blank} skipped", "warning"))
        if self.no_system:
            n = self.no_system.n
            file_issues.append(Issue(None, None, f"{n} example{_s(n)} without a system message (line{_s(n)} "
                                                 f"{self.no_system}): give the system message you will use at "
                                                 "inference", "warning"))
        report.issues = file_issues + self.line_issues.kept + self.measured_issues.kept
        return report

    def feed(self, lines: Iterable[bytes | int]) -> Validator:
        for lineno, raw in enumerate(lines, 1):
            self.line(lineno, raw)
        return self


def validate_bytes(data: bytes, *, purpose: str = "training", tokenizer: PreTrainedTokenizerBase | None = None,
                   context_length: int | None = None, max_seq_length: int | None = None) -> ValidationReport:
    """Validate the bytes of a chat JSONL file. With a tokenizer, examples are also measured against
    ``context_length`` (the model's) and ``max_seq_length`` (the training setting)."""
    v = Validator(purpose=purpose, tokenizer=tokenizer, context_length=context_length,
                  max_seq_length=max_seq_length)
    return v.feed(byte_lines(data)).finish(lambda: data)


def validate_file(path: str | Path, *, model: str | None = None, purpose: str = "training") -> ValidationReport:
    """Validate a chat JSONL file, read line by line; with ``model``, also measure examples with its
    tokenizer against its context length and its catalog training ``max_seq_length``."""
    path = Path(path)
    with open_data(path) as f:
        kw: dict[str, Any] = {}
        if model is not None:
            from tunery.models import registry
            from tunery.models.loading import load_tokenizer

            rec = registry.get(model)
            spec = rec.spec
            kw = {"tokenizer": load_tokenizer(rec), "context_length": rec.context_length,
                  "max_seq_length": spec.training.max_seq_length if spec else None}
        v = Validator(purpose=purpose, **kw).feed(file_lines(f))
    return v.finish(lambda: small_file(path))


MAX_REPORTED_ERRORS = 20


def load_examples(source: str | Path | bytes, *, purpose: str = "training") -> list[Conversation]:
    """The conversations of a valid chat JSONL file (a path or its bytes), for the trainer. An invalid
    file raises InvalidInput listing the first errors and how many there are."""
    report = validate_bytes(source, purpose=purpose) if isinstance(source, bytes) else \
        validate_file(source, purpose=purpose)
    if not report.ok:
        n = report.n_errors
        raise InvalidInput(f"invalid {purpose} file ({n} error{_s(n)}):\n"
                           + report.format(MAX_REPORTED_ERRORS, severity="error"),
                           param=f"{purpose}_file", code=f"invalid_{purpose}_file",
                           hint="run `tunery data validate FILE` for the full report")
    return report.conversations
