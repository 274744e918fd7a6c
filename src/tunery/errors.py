"""Domain exceptions, and the words they use for the user's JSON (its kinds, its parse errors, its
nesting). The CLI turns the exceptions into one line and a non-zero exit; the server into an
OpenAI error object ``{"error": {"message", "type", "param", "code"}}``."""

from __future__ import annotations

import json
import sys
from typing import Any


class TuneryError(Exception):
    """Base class: a problem the user can fix, with a message that names the next step."""

    status_code = 400
    error_type = "invalid_request_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None,
                 hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message

    def to_openai(self) -> dict:
        return {"error": {"message": str(self), "type": self.error_type, "param": self.param,
                          "code": self.code}}


class InvalidInput(TuneryError):
    code = "invalid_value"


class NotFound(TuneryError):
    status_code = 404
    code = "not_found"


class Conflict(TuneryError):
    status_code = 409
    code = "conflict"


class OfflineError(TuneryError):
    """Something needed the network and the network is not there."""

    status_code = 503
    error_type = "service_unavailable"
    code = "offline"


class RateLimited(TuneryError):
    status_code = 429
    error_type = "rate_limit_exceeded"
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, retry_after: float, **kw) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


# -- pydantic validation errors, named the OpenAI way ------------------------------------------------
# One place turns a pydantic error into a parameter path and a message: the server's 400s and every
# typed request model validated inside tunery (``InvalidInput`` via :func:`invalid_request`).

_LOCATIONS = {"body", "query", "path", "header", "form"}
_BRANCHES = {"str", "int", "float", "bool", "dict", "list", "none", "json-or-python"}


def json_kind(value: Any) -> str:
    """A JSON-ish name for a value's type, as the user wrote it, for messages: "an object", "a
    list", "a string", "a number", "a boolean", "null"."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return {dict: "an object", list: "a list", str: "a string", int: "a number", float: "a number"
            }.get(type(value), type(value).__name__)


def json_problem(exc: Exception) -> str:
    """Why a text is not JSON, in a user's words, from the exception ``json.loads`` raised: one
    wording for a request body, a call's arguments and a line of a data file. A text nested past
    Python's recursion limit, a number past its digit limit and bytes that are not UTF-8 are
    named as such, not as a parser's internals."""
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg.removesuffix(' at')} at column {exc.colno}"  # "Invalid control character at"
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text (byte {exc.start + 1} cannot be decoded)"
    if "integer string conversion" in str(exc):  # Python's own limit, named in its own terms
        return f"a number is too long (more than {sys.get_int_max_str_digits()} digits)"
    return str(exc)


MAX_SCHEMA_DEPTH = 64
"""How deeply a JSON schema (a function's ``parameters``, a ``response_format`` schema) may nest
objects and lists: far past any real schema, and short of the depth at which the schema checkers
(jsonschema, llguidance) run out of stack."""


def nested_deeper_than(value: Any, limit: int) -> bool:
    """Whether ``value`` nests objects and lists more than ``limit`` levels deep (a walk without
    recursion, so it cannot itself run out of stack)."""
    stack = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, dict | list):
            if depth > limit:
                return True
            stack.extend((c, depth + 1) for c in (v.values() if isinstance(v, dict) else v))
    return False


def validation_param(loc: tuple) -> str | None:
    """("body", "messages", 0, "content") -> "messages[0].content"."""
    out = ""
    for p in loc:
        if isinstance(p, int):
            out += f"[{p}]"
        elif p in _LOCATIONS or "[" in str(p) or p in _BRANCHES:
            continue  # the request part, and pydantic's names of union branches: nothing to a client
        else:
            out += ("." if out else "") + str(p)
    return out or None


def validation_message(err: dict, param: str | None) -> str:
    kind = err.get("type")
    if kind == "json_invalid":
        return ("We could not parse the JSON body of your request: "
                f"{(err.get('ctx') or {}).get('error', 'invalid JSON')}. Send a valid JSON object.")
    if kind == "missing" and param:
        return f"Missing required parameter: '{param}'."
    if kind == "missing":
        return "The request body is missing; send a JSON object."
    if kind == "extra_forbidden":
        # OpenAI's wording names the key itself; ``param`` carries its path (hyperparameters.n_epoch)
        return f"Unrecognized request argument supplied: {(param or '').rsplit('.', 1)[-1]}"
    where = f"Invalid value for '{param}'" if param else "Invalid request"
    return f"{where}: {str(err.get('msg', 'invalid value')).rstrip('.')}."


def invalid_request(errors: list[dict], *, prefix: str | None = None) -> InvalidInput:
    """The first of pydantic's ``errors`` as an :class:`InvalidInput` naming its parameter (under
    ``prefix`` when the validated object sits inside a larger request), and how many more there are."""
    first = errors[0] if errors else {}
    loc = tuple(first.get("loc") or ())
    param = None if first.get("type") == "json_invalid" else validation_param(((prefix,) if prefix else ()) + loc)
    message = validation_message(first, param)
    if len(errors) > 1:
        message += f" ({len(errors) - 1} more problem{'s' if len(errors) > 2 else ''} in the request)"
    kind = first.get("type")
    code = ("unknown_parameter" if kind == "extra_forbidden"
            else "invalid_json" if kind == "json_invalid" or (kind == "missing" and not param) else "invalid_value")
    return InvalidInput(message, param=param, code=code)
