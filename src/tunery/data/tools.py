"""The tool-calling part of a chat example, checked as OpenAI's fine-tuning defines it:

* ``tools``: function specs (``name``, ``description``, a JSON-schema ``parameters`` checked with
  ``jsonschema``), and ``parallel_tool_calls`` beside ``messages``;
* an assistant message's ``tool_calls``: each call's ``arguments`` a JSON string of an object that
  validates against the called function's ``parameters``;
* ``tool`` messages, whose ``tool_call_id`` answers an earlier call of the conversation.

The legacy ``functions`` / ``function_call`` / role ``function`` shape is refused with the new shape
named (:data:`LEGACY`). A ``tools`` entry and a ``tool_calls`` entry share one shape,
``{"type": "function", "function": {...}}`` with their own keys: one check (:func:`_check_entry`)
serves both. Like every check of :mod:`tunery.data.validate`, these report each problem through
``add(field, message)`` and return whether the part was valid; nothing raises for bad data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from tunery.chat import Role
from tunery.data.issues import Add, parse_json, plural, show
from tunery.errors import MAX_SCHEMA_DEPTH, json_kind, nested_deeper_than

LEGACY = ("the legacy function-calling shape, which tunery does not take: declare functions in \"tools\" "
          '([{"type": "function", "function": {...}}]), call them with an assistant message\'s "tool_calls" '
          'and answer each call with a {"role": "tool", "tool_call_id": ..., "content": ...} message')
"""The end of every message that refuses the legacy shape ("'functions' is " + LEGACY)."""

_TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")


@dataclass(frozen=True)
class _Entry:
    """The shape of a ``tools`` or ``tool_calls`` entry, as its messages describe it."""

    what: str  # "a tool", "a tool call"
    example: str  # the entry written out, for "must be an object like ..."
    keys: tuple[str, ...]
    function: str  # what the function object holds, for "must be an object with ..."
    function_keys: frozenset[str]
    function_has: str  # for "unknown key ...: " + this

    def has(self) -> str:
        quoted = [f'"{k}"' for k in self.keys]
        return f"{self.what} has {', '.join(quoted[:-1])} and {quoted[-1]}"


_TOOL = _Entry("a tool", '{"type": "function", "function": {...}}', ("type", "function"),
               "name, description and parameters", frozenset({"name", "description", "parameters", "strict"}),
               "a function has name, description, parameters and optionally strict")
_CALL = _Entry("a tool call", '{"id": ..., "type": "function", "function": {"name": ..., "arguments": "{...}"}}',
               ("id", "type", "function"), "name and arguments", frozenset({"name", "arguments"}),
               'a call\'s function has "name" and "arguments"')


def _check_entry(add: Add, f: str, entry: Any, shape: _Entry) -> tuple[bool, dict | None]:
    """(ok, the entry's ``function`` object) for one ``tools`` or ``tool_calls`` entry: an object
    with only ``shape``'s keys, ``type`` "function" and a ``function`` object with only its keys.
    The function is None when there is none to check further."""
    if not isinstance(entry, dict):
        add(f, f"{shape.what} must be an object like {shape.example}, got {json_kind(entry)}")
        return False, None
    ok = True
    for key in entry:
        if key not in shape.keys:
            add(f"{f}.{key}", f"unknown key {show(key)}: {shape.has()}")
            ok = False
    if entry.get("type") != "function":
        add(f"{f}.type", f'type must be "function", got {show(entry.get("type"))}')
        ok = False
    fn = entry.get("function")
    if not isinstance(fn, dict):
        add(f"{f}.function", f"function must be an object with {shape.function}, got {json_kind(fn)}")
        return False, None
    for key in fn:
        if key not in shape.function_keys:
            add(f"{f}.function.{key}", f"unknown key {show(key)}: {shape.function_has}")
            ok = False
    return ok, fn


def _schema_message(err: Any) -> str:
    """jsonschema's message about ``err.instance`` with that value written as JSON, not as Python's repr."""
    python = repr(err.instance)
    return show(err.instance) + err.message[len(python):] if err.message.startswith(python) else err.message


def check_tools(add: Add, tools: Any) -> dict[str, dict] | None:
    """The declared functions' parameter schemas by name when ``tools`` is valid, else None. An
    empty list declares none, as no ``tools`` does (OpenAI's own DPO example writes ``"tools": []``)."""
    from jsonschema import Draft202012Validator, SchemaError

    if not isinstance(tools, list):
        add("tools", f"tools must be a list of tools, got {json_kind(tools)}")
        return None
    schemas: dict[str, dict] = {}
    ok = True
    for j, tool in enumerate(tools):
        f = f"tools[{j}]"
        entry_ok, fn = _check_entry(add, f, tool, _TOOL)
        ok = entry_ok and ok
        if fn is None:
            continue
        name = fn.get("name")
        if not isinstance(name, str) or not _TOOL_NAME.fullmatch(name):
            add(f"{f}.function.name", f"name must be 1-64 letters, digits, _ or -, got {show(name)}")
            ok = False
            name = None
        elif name in schemas:
            add(f"{f}.function.name", f"function {name!r} is declared twice")
            ok = False
        if "description" in fn and not isinstance(fn["description"], str):
            add(f"{f}.function.description", f"description must be a string, got {json_kind(fn['description'])}")
            ok = False
        params = fn.get("parameters", {"type": "object", "properties": {}})
        if not isinstance(params, dict) or params.get("type") != "object":
            add(f"{f}.function.parameters", 'parameters must be a JSON schema of type "object"')
            ok = False
            continue
        if nested_deeper_than(params, MAX_SCHEMA_DEPTH):  # before jsonschema recurses into it
            add(f"{f}.function.parameters", f"parameters are nested too deeply: a schema may nest at most "
                                            f"{MAX_SCHEMA_DEPTH} levels of objects and lists")
            ok = False
            continue
        try:
            Draft202012Validator.check_schema(params)
        except SchemaError as e:
            where = "".join(f"[{p!r}]" if isinstance(p, int) else f".{p}" for p in e.path)
            add(f"{f}.function.parameters{where}", f"not a valid JSON schema: {_schema_message(e)}")
            ok = False
            continue
        if name is not None:
            schemas[name] = params
    return schemas if ok else None


def check_example_tools(add: Add, obj: dict) -> tuple[bool, dict[str, dict] | None, bool]:
    """The ``tools`` and ``parallel_tool_calls`` beside a chat example's messages (or a preference
    pair's prompt's): (ok, the schemas by name as :func:`check_tools` gives them, whether parallel
    calls are allowed)."""
    schemas = check_tools(add, obj["tools"]) if "tools" in obj else {}
    ok = schemas is not None
    parallel = obj.get("parallel_tool_calls", True)
    if not isinstance(parallel, bool):
        add("parallel_tool_calls", f"parallel_tool_calls must be true or false, got {show(parallel)}")
        ok, parallel = False, True
    return ok, schemas, parallel


def message_key_problem(key: str, role: str | None) -> str | None:
    """What is wrong with a message's tool-calling ``key`` for its ``role`` (None when nothing is,
    or the key is not about tools)."""
    if key == "function_call":
        return f"'function_call' is {LEGACY}"
    if key == "tool_calls" and role is not None and role != Role.ASSISTANT:
        return "tool_calls are only allowed on assistant messages"
    if key == "tool_call_id" and role is not None and role != Role.TOOL:
        return "tool_call_id is only allowed on tool messages"
    return None


def check_arguments(add: Add, fld: str, args: Any, schema: dict | None) -> bool:
    """A call's ``arguments``: a JSON string of an object that validates against ``schema``."""
    from jsonschema import Draft202012Validator

    if not isinstance(args, str):
        add(fld, f"arguments must be a JSON string (as the API sends them), got {json_kind(args)}")
        return False
    value, problem = parse_json(args)
    if problem is not None:
        add(fld, f"arguments are not valid JSON: {problem}")
        return False
    if not isinstance(value, dict):
        add(fld, f"arguments must be a JSON object, got {json_kind(value)}")
        return False
    if schema is None:
        return True
    ok = True
    for err in sorted(Draft202012Validator(schema).iter_errors(value), key=lambda e: list(e.path)):
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.path)
        add(fld, f"arguments{where} do not match the function's parameters: {_schema_message(err)}")
        ok = False
    return ok


def _check_call(add: Add, cf: str, call: Any, ids: set[str], pending: dict[str, int], i: int,
                schemas: dict[str, dict] | None) -> bool:
    """One entry of messages[i].tool_calls; its id joins ``ids`` and ``pending``."""
    ok, fn = _check_entry(add, cf, call, _CALL)
    if not isinstance(call, dict):
        return False
    cid = call.get("id")
    if not isinstance(cid, str) or not cid:
        add(f"{cf}.id", f"id must be a non-empty string, got {show(cid)}")
        ok = False
    elif cid in ids:
        add(f"{cf}.id", f"call id {cid!r} is used twice in this conversation")
        ok = False
    else:
        ids.add(cid)
        pending[cid] = i
    if fn is None:
        return False
    name = fn.get("name")
    schema = None
    if not isinstance(name, str) or not name:
        add(f"{cf}.function.name", f"name must be a non-empty string, got {show(name)}")
        ok = False
    elif schemas == {}:
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
        return False
    return check_arguments(add, f"{cf}.function.arguments", fn["arguments"], schema) and ok


def _check_answer(add: Add, f: str, m: dict, prev: str | None, prev_calls: bool, ids: set[str],
                  pending: dict[str, int], answered: set[str]) -> bool:
    """A tool message: it follows the call it answers, and its ``tool_call_id`` names a pending call
    (which then joins ``answered``)."""
    ok = True
    if not (prev == Role.TOOL or (prev == Role.ASSISTANT and prev_calls)):
        add(f"{f}.role", "a tool message must follow the assistant message whose call it answers "
                         "(or another tool message)")
        ok = False
    cid = m.get("tool_call_id")
    if not isinstance(cid, str) or not cid:
        if "tool_call_id" in m:
            add(f"{f}.tool_call_id", f"tool_call_id must be a non-empty string, got {show(cid)}")
        return False
    if cid in pending:
        del pending[cid]
        answered.add(cid)
    elif cid in answered:
        add(f"{f}.tool_call_id", f"call {cid!r} is already answered")
        ok = False
    elif cid in ids:  # a call left unanswered when the next turn began (named there)
        add(f"{f}.tool_call_id", f"call {cid!r} is answered too late: answer each call right after the "
                                 "assistant message that makes it, before the next turn")
        ok = False
    else:
        add(f"{f}.tool_call_id", f"{cid!r} answers no earlier tool call of this conversation")
        ok = False
    return ok


def check_tool_use(add: Add, messages: list, roles: list[str | None], schemas: dict[str, dict] | None,
                   parallel: bool) -> bool:
    """Tool calls against the declared functions, and each tool message answering an earlier
    call (``schemas`` is empty when no tools are declared, and None when ``tools`` itself is
    invalid: calls are then checked for shape only)."""
    ok = True
    ids: set[str] = set()
    pending: dict[str, int] = {}  # call id -> message index, until a tool message answers it
    answered: set[str] = set()
    for i, (m, role) in enumerate(zip(messages, roles, strict=True)):
        f = f"messages[{i}]"
        if role == Role.TOOL:
            prev = roles[i - 1] if i > 0 else None
            prev_calls = prev == Role.ASSISTANT and bool(messages[i - 1].get("tool_calls"))
            ok = _check_answer(add, f, m, prev, prev_calls, ids, pending, answered) and ok
            continue
        if pending and role is not None:
            names = ", ".join(repr(c) for c in pending)
            add(f"{f}.role", f"tool call{plural(len(pending))} {names} of messages[{min(pending.values())}] "
                             "not answered: give each call a tool message before the next turn")
            ok = False
            pending.clear()
        if role != Role.ASSISTANT or "tool_calls" not in m:
            continue
        calls = m["tool_calls"]
        if not isinstance(calls, list) or not calls:
            add(f"{f}.tool_calls", f"tool_calls must be a non-empty list of calls, got "
                                   f"{show(calls) if calls == [] else json_kind(calls)}")
            ok = False
            continue
        if len(calls) > 1 and not parallel:
            add(f"{f}.tool_calls", f"{len(calls)} calls in one message, but parallel_tool_calls is false")
            ok = False
        for j, call in enumerate(calls):
            ok = _check_call(add, f"{f}.tool_calls[{j}]", call, ids, pending, i, schemas) and ok
    return ok
