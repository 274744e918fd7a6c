"""Validate chat fine-tuning data in the OpenAI/Azure JSONL format, one example per line:

    {"messages": [{"role": "system"|"user"|"assistant", "content": "...", "weight": 0|1}]}

and OpenAI's tool-calling examples (``tools`` beside ``messages``, assistant ``tool_calls``,
``tool`` messages), whose tool parts are checked by :mod:`tunery.data.tools`.

Every problem is collected (never only the first), each with its line and field, into a
:class:`ValidationReport` (:mod:`tunery.data.issues`). Nothing here raises for bad data;
:func:`load_examples`, used by the trainer, is the one place that turns an invalid report into an
:class:`InvalidInput`.

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
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from tunery.chat import Conversation, Role
from tunery.data.issues import Add, Issue, Severity, ValidationReport, parse_json, plural, show
from tunery.data.pairs import CHAT_IN_PAIRS, PreferencePair, check_pair, is_pair, line_kind, pair_messages
from tunery.data.text import (
    BOM,
    UTF16,
    byte_lines,
    decode_line,
    file_lines,
    is_utf16,
    line_too_long,
    open_data,
    small_file,
)
from tunery.data.tools import LEGACY, check_example_tools, check_tool_use, message_key_problem
from tunery.errors import InvalidInput, TuneryError, json_kind

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

PURPOSES = ("training", "validation")
MIN_TRAINING_EXAMPLES = 10
"""The OpenAI fine-tuning service refuses training files with fewer examples; so do we."""

_ROLES = frozenset(r.value for r in Role)
_MESSAGE_KEYS = frozenset({"role", "content", "weight", "name", "tool_calls", "tool_call_id"})
_EXAMPLE_KEYS = frozenset({"messages", "tools", "parallel_tool_calls"})


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


def _check_content(add: Add, fld: str, content: Any) -> bool:
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
                add(pf, f'a content part must be an object like {{"type": "text", "text": "..."}}, got {json_kind(part)}')
                ok = False
            elif part.get("type") != "text":
                add(f"{pf}.type", f"only text content parts are supported, got type {show(part.get('type'))}")
                ok = False
            elif not isinstance(part.get("text"), str):
                add(f"{pf}.text", f"text must be a string, got {json_kind(part.get('text'))}")
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
        add(fld, f"content must be a string, got {json_kind(content)}")
        return False
    if not text.strip():
        add(fld, "content is empty")
        return False
    return True


def _check_role(add: Add, fld: str, m: dict) -> str | None:
    """The message's role if it is valid, else None (after reporting why)."""
    if "role" not in m:
        add(fld, "missing role")
        return None
    role = m["role"]
    if not isinstance(role, str):
        add(fld, f"role must be a string, got {json_kind(role)}")
    elif role in _ROLES:
        return role
    elif role == "function":
        add(fld, f"role 'function' is {LEGACY}")
    elif role == "developer":
        add(fld, "role 'developer' is not supported by tunery: use 'system'")
    elif role.strip().lower() in _ROLES:
        add(fld, f"unknown role {role!r}: roles are lowercase, use {role.strip().lower()!r}")
    else:
        add(fld, f"unknown role {show(role)}: use system, user, assistant or tool")
    return None


def _check_message(add: Add, i: int, m: Any) -> tuple[bool, str | None]:
    f = f"messages[{i}]"
    if not isinstance(m, dict):
        add(f, f"a message must be an object with role and content, got {json_kind(m)}")
        return False, None
    role = _check_role(add, f"{f}.role", m)
    ok = role is not None
    # a message that only calls tools has no text (OpenAI's null); nor has a legacy function_call,
    # refused below for what it is rather than for its content
    calls = role == Role.ASSISTANT and ("tool_calls" in m or "function_call" in m)
    if calls and m.get("content") in (None, ""):
        pass
    elif "content" not in m:
        add(f"{f}.content", "missing content")
        ok = False
    else:
        ok = _check_content(add, f"{f}.content", m["content"]) and ok
    for key in m:
        if (problem := message_key_problem(key, role)) is not None:
            add(f"{f}.{key}", problem)
            ok = False
        elif key not in _MESSAGE_KEYS:
            add(f"{f}.{key}", f"unknown key {show(key)}: a message has role, content and optionally weight, name "
                              "(and tool_calls on an assistant message, tool_call_id on a tool message)")
            ok = False
    if role == Role.TOOL and "tool_call_id" not in m:
        add(f"{f}.tool_call_id", "missing tool_call_id: a tool message names the call it answers")
        ok = False
    if "name" in m and not (isinstance(m["name"], str) and m["name"].strip()):
        add(f"{f}.name", f"name must be a non-empty string, got {show(m['name'])}")
        ok = False
    if "weight" in m:
        w = m["weight"]
        if role is not None and role != Role.ASSISTANT:
            add(f"{f}.weight", "weight is only allowed on assistant messages")
            ok = False
        if isinstance(w, bool) or not isinstance(w, int) or w not in (0, 1):
            add(f"{f}.weight", f"weight must be 0 or 1, got {show(w)}"
                + (" (a boolean)" if isinstance(w, bool) else " (a string)" if isinstance(w, str) else ""))
            ok = False
    return ok, role


def _check_order(add: Add, roles: list[str | None]) -> bool:
    """The order of a conversation's messages (a chat example's, a preference pair's prompt): system
    first and once, user and assistant turns alternating."""
    ok = True
    for i, role in enumerate(roles):
        if role == Role.SYSTEM and i > 0:
            add(f"messages[{i}].role", "a system message is only allowed once, as the first message")
            ok = False
        elif role is not None and role != Role.TOOL and i > 0 and roles[i - 1] == role:
            add(f"messages[{i}].role", f"two consecutive {role} messages: alternate user and assistant turns "
                                       "(merge the two into one message)")
            ok = False
    return ok


def _check_turns(add: Add, warn: Add, messages: list, roles: list[str | None]) -> bool:
    """Conversation shape: :func:`_check_order`, and something to learn from."""
    ok = _check_order(add, roles)
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


def _parse_line(add: Add, raw: bytes) -> dict | None:
    """The line's JSON object, else None (the problem reported): UTF-8, JSON without NaN, no lone
    surrogate, an object."""
    text, problem = decode_line(raw)
    if text is None:
        add(None, problem)
        return None
    obj, problem = parse_json(text)
    if problem is not None:
        add(None, f"not valid JSON: {problem}")
        return None
    if "\\u" in text and (bad := lone_surrogate(obj)) is not None:
        add(*bad)  # before anything echoes a value: text with a lone surrogate cannot even be printed
        return None
    if not isinstance(obj, dict):
        add(None, f'expected a JSON object like {{"messages": [...]}}, got {json_kind(obj)}')
        return None
    for _, messages in pair_messages(obj) if is_pair(obj) else [("messages", obj.get("messages"))]:
        for m in messages if isinstance(messages, list) else ():
            if isinstance(m, dict):
                for key in [k for k, v in m.items()
                            if k in _UNSET_IN_RESPONSES and (v is None or v == [] and k == "annotations")]:
                    del m[key]
    return obj


_UNSET_IN_RESPONSES = frozenset({"refusal", "audio", "function_call", "tool_calls", "annotations"})
"""Fields of an API response's message (the ``openai`` SDK's ``message.model_dump()``) that an
example built from responses carries empty: null (and annotations []) is taken as absent, any
other value is checked as written."""


def _check_pair_line(add: Add, warn: Add, raw: bytes) -> PreferencePair | None:
    """A line of a file of preference pairs: the pair when it is valid, else None (problems
    reported). A chat example there is a problem: DPO takes pairs only."""
    obj = _parse_line(add, raw)
    if obj is None:
        return None
    if not is_pair(obj) and "messages" in obj:
        add(None, CHAT_IN_PAIRS)
        return None
    return check_pair(add, warn, obj, _check_message, _check_order)


def _check_line(add: Add, warn: Add, raw: bytes, *, pairs_only: bool = False) -> Conversation | None:
    """The example when the line is a valid example, else None (problems reported). In a file of
    preference pairs (``pairs_only``), see :func:`_check_pair_line`."""
    if pairs_only:
        pair = _check_pair_line(add, warn, raw)
        return pair.conversation(pair.chosen) if pair else None
    obj = _parse_line(add, raw)
    if obj is None:
        return None
    if is_pair(obj):  # OpenAI's preference format (DPO): its own rules; measured as prompt + preferred
        pair = check_pair(add, warn, obj, _check_message, _check_order)
        return pair.conversation(pair.chosen) if pair else None
    if "messages" not in obj and {"prompt", "completion"} <= obj.keys():
        add(None, 'OpenAI\'s legacy prompt/completion format, which chat models do not train on: write '
                  '{"messages": [{"role": "user", "content": PROMPT}, {"role": "assistant", "content": COMPLETION}]}')
        return None
    ok = True
    for key in obj:
        if key == "functions":
            add(key, f"'functions' is {LEGACY}")
            ok = False
        elif key not in _EXAMPLE_KEYS:
            add(key, f'unknown key {show(key)}: an example holds "messages" and optionally "tools", '
                     '"parallel_tool_calls"')
            ok = False
    tools_ok, schemas, parallel = check_example_tools(add, obj)
    ok = ok and tools_ok
    if "messages" not in obj:
        add("messages", 'missing "messages"')
        return None
    messages = obj["messages"]
    if not isinstance(messages, list):
        add("messages", f"messages must be a list of messages, got {json_kind(messages)}")
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
        ok = check_tool_use(add, messages, roles, schemas, parallel) and ok
    return Conversation.from_dicts(messages, obj.get("tools") or None) if ok else None


def _whole_document_hint(data: bytes | None) -> str | None:
    """Name the usual mistake of a pretty-printed JSON document saved as .jsonl."""
    if data is None:
        return None
    try:
        doc = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError):
        return None
    if isinstance(doc, dict) and b"\n" not in data.strip():
        return None  # one object on one line is one JSON Lines example, whatever is wrong inside it
    if isinstance(doc, list | dict):
        return (f"the file is one JSON document ({json_kind(doc)}), not JSON Lines: write one "
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


def _strings(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every string in a JSON value (keys too), with its field path (``messages[2].content``)."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            sub = f"{path}.{k}" if path else str(k)
            yield from _strings(k, sub)
            yield from _strings(v, sub)
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            yield from _strings(v, f"{path}[{i}]")


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
        from tunery.chat_template import control_tokens

        self.controls = control_tokens(tokenizer)

    def add(self, line: int, conv: Conversation, size: int) -> None:
        context = self.report.context_length
        if context and len(conv) > context:
            # every message takes a token at least: refused before templating, which would take
            # time and memory in proportion to the square of its length to find trained tokens
            self._reject(line, f"example has {len(conv):,} messages, more than the model's context of "
                               f"{context:,} tokens can hold: split it into shorter conversations")
            return
        # served, such text is plain text (chat_template.prompt_ids); trained, the template's output
        # would read it as the token itself, a turn's end or start
        for field, text in _strings({"messages": [m.to_dict() for m in conv.messages], "tools": conv.tools or []}):
            token = next((c for c in self.controls if c in text), None)
            if token is not None:
                self._reject(line, f"holds {token!r}, a control token of the model's chat template, which "
                                   "training would read as the token and not as text: remove it or spell it "
                                   "otherwise", field=field)
                return
        self.batch.append((line, conv))
        self.batch_bytes += size
        if len(self.batch) >= self.BATCH_EXAMPLES or self.batch_bytes >= self.BATCH_BYTES:
            self.flush()

    def _reject(self, line: int, message: str, *, field: str | None = None) -> None:
        self.issues.add(Issue(line, field, message))
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
            self.issues.add(Issue(None, None, f"{n} example{plural(n)} longer than the training max_seq_length of "
                                              f"{self.report.max_seq_length} tokens will be truncated in training "
                                              f"(line{plural(n)} {self.over_seq})", "warning"))


class Validator:
    """The validator's single pass over a file: feed it every line (:meth:`line`, bytes without the
    ``\\n``, or the length of a line too long to read), then :meth:`finish`. Each line is checked,
    measured (with a tokenizer) and forgotten; ``keep_examples`` keeps the valid conversations,
    ``max_issues`` caps the problems kept per kind (all are counted), ``tally`` receives each
    measured example's turns, tokens and trained tokens. ``pairs_only`` reads every line as a
    preference pair (the DPO loader: a chat example there is an error) and keeps the pairs, with
    or without ``keep_examples``."""

    def __init__(self, *, purpose: str = "training", tokenizer: PreTrainedTokenizerBase | None = None,
                 context_length: int | None = None, max_seq_length: int | None = None,
                 keep_examples: bool = True, max_issues: int | None = None, tally: Tally | None = None,
                 pairs_only: bool = False) -> None:
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
        self.kind: str | None = "preference" if pairs_only else None
        """chat or preference: the first JSON object line's, as ``file_kind`` finds it, unless ``pairs_only``"""
        self.pairs_only = pairs_only

    def line(self, lineno: int, raw: bytes | int) -> None:
        if self.utf16:
            return
        if lineno == 1 and isinstance(raw, bytes):
            if is_utf16(raw):
                self.utf16 = True
                return
            raw = raw.removeprefix(BOM)
        self.report.n_lines = lineno
        if isinstance(raw, bytes) and not raw.strip():
            self.blank.add(lineno)
            return
        self.n_nonblank += 1
        if self.kind is None and isinstance(raw, bytes):
            self.kind = line_kind(raw)
        self.first_line = self.first_line or lineno

        def add(fld: str | None, message: str) -> None:
            self.line_issues.add(Issue(lineno, fld, message))

        def warn(fld: str | None, message: str) -> None:
            self.line_issues.add(Issue(lineno, fld, message, "warning"))

        n_before = sum(self.report.dropped.values()) + len(self.line_issues.kept)
        if isinstance(raw, int):
            add(None, line_too_long(raw))
            conv = None
        elif self.pairs_only:
            pair = _check_pair_line(add, warn, raw.removesuffix(b"\r"))
            conv = pair.conversation(pair.chosen) if pair else None
            if pair:
                self.report.pairs.append((lineno, pair))
        else:
            conv = _check_line(add, warn, raw.removesuffix(b"\r"), pairs_only=self.kind == "preference")
        if conv is None:
            if self.first_bad is None and sum(self.report.dropped.values()) + len(self.line_issues.kept) > n_before:
                self.first_bad = lineno
            return
        # a pair repeats an earlier one only with the same rejected answer too: two pairs that share
        # the prompt and the preferred answer (two samples of the same model, say) teach two things
        seen = [conv.to_dicts(with_weights=True), conv.tools]
        if self.kind == "preference":
            seen.append(json.loads(raw).get("non_preferred_output"))
        key = hashlib.blake2b(json.dumps(seen, sort_keys=True, ensure_ascii=False).encode(), digest_size=16).digest()
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
            report.issues = [Issue(None, None, UTF16)]
            return report
        if self.measure is not None:
            self.measure.finish()
        file_issues: list[Issue] = []
        n_nonblank = self.n_nonblank
        if n_nonblank == 0:
            what = "preference pair" if self.kind == "preference" else "chat example"
            file_issues.append(Issue(None, None, f"the file is empty: write one {what} per line"))
        elif n_nonblank < MIN_TRAINING_EXAMPLES:
            severity: Severity = "error" if report.purpose == "training" else "warning"
            what = "preference pair" if self.kind == "preference" else "example"
            file_issues.append(Issue(None, None, f"only {n_nonblank} {what}{plural(n_nonblank)}: the OpenAI fine-tuning "
                                                 f"service requires at least {MIN_TRAINING_EXAMPLES} (50-100 usually "
                                                 "work better)", severity))
        if self.first_bad is not None and self.first_bad == self.first_line:
            hint = _whole_document_hint(whole())
            if hint:
                file_issues.insert(0, Issue(None, None, hint))
        if self.blank:
            n = self.blank.n
            file_issues.append(Issue(None, None, f"blank line{plural(n)} {self.blank} skipped", "warning"))
        if self.no_system:
            n = self.no_system.n
            file_issues.append(Issue(None, None, f"{n} example{plural(n)} without a system message (line{plural(n)} "
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


def validate_file(path: str | Path, *, model: str | None = None, purpose: str = "training",
                  keep_examples: bool = True, max_issues: int | None = None) -> ValidationReport:
    """Validate a chat JSONL file, read line by line; with ``model``, also measure examples with its
    tokenizer against its context length and its catalog training ``max_seq_length``. Without
    ``keep_examples`` and with ``max_issues``, its memory does not grow with the file."""
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
        v = Validator(purpose=purpose, keep_examples=keep_examples, max_issues=max_issues, **kw).feed(file_lines(f))
    return v.finish(lambda: small_file(path))


MAX_REPORTED_ERRORS = 20


def load_examples(source: str | Path | bytes, *, purpose: str = "training") -> list[Conversation]:
    """The conversations of a valid chat JSONL file (a path or its bytes), for the trainer. An invalid
    file raises InvalidInput listing the first errors and how many there are."""
    report = validate_bytes(source, purpose=purpose) if isinstance(source, bytes) else \
        validate_file(source, purpose=purpose)
    if not report.ok:
        n = report.n_errors
        raise InvalidInput(f"invalid {purpose} file ({n} error{plural(n)}):\n"
                           + report.format(MAX_REPORTED_ERRORS, severity="error"),
                           param=f"{purpose}_file", code=f"invalid_{purpose}_file",
                           hint="run `tunery data validate FILE` for the full report")
    return report.conversations
