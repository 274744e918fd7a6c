"""Every error the server sends is an OpenAI error object ``{"error": {"message", "type",
"param", "code"}}`` with the matching status: domain errors keep their own status, request
validation becomes a 400 naming the parameter, unknown routes a 404, and only a bug is a 500."""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from tunery.errors import InvalidInput, RateLimited, TuneryError

log = logging.getLogger("tunery.server")


class PayloadTooLarge(InvalidInput):
    status_code = 413
    code = "file_too_large"


class NotAvailable(TuneryError):
    status_code = 501
    error_type = "not_implemented"
    code = "not_available"


class Unauthorized(TuneryError):
    status_code = 401
    code = "invalid_api_key"


def error_body(message: str, *, type: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


_BRANCHES = {"str", "int", "float", "bool", "dict", "list", "none", "json-or-python"}


def _param(loc: tuple[Any, ...]) -> str | None:
    """("body", "messages", 0, "content") -> "messages[0].content"."""
    parts = [p for p in loc if p not in ("body", "query", "path", "header", "form")]
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        elif "[" in str(p) or p in _BRANCHES:
            continue  # pydantic names union branches in the location; they mean nothing to a client
        else:
            out += ("." if out else "") + str(p)
    return out or None


def _validation_message(err: dict[str, Any], param: str | None) -> str:
    if err.get("type") == "json_invalid":
        return ("We could not parse the JSON body of your request: "
                f"{(err.get('ctx') or {}).get('error', 'invalid JSON')}. Send a valid JSON object.")
    if err.get("type") == "missing" and param:
        return f"Missing required parameter: '{param}'."
    if err.get("type") == "missing":
        return "The request body is missing; send a JSON object."
    if err.get("type") == "extra_forbidden":
        return f"Unrecognized request argument supplied: {param}"
    where = f"Invalid value for '{param}'" if param else "Invalid request"
    return f"{where}: {err.get('msg', 'invalid value')}."


def install(app: FastAPI) -> None:
    @app.exception_handler(TuneryError)
    async def _tunery_error(request: Request, exc: TuneryError) -> JSONResponse:
        headers = {}
        if isinstance(exc, RateLimited):
            headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after))),
                       "retry-after-ms": str(max(1, int(exc.retry_after * 1000)))}
        return JSONResponse(exc.to_openai(), status_code=exc.status_code, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        first = errors[0] if errors else {}
        param = None if first.get("type") == "json_invalid" else _param(tuple(first.get("loc") or ()))
        message = _validation_message(first, param)
        if len(errors) > 1:
            message += f" ({len(errors) - 1} more problem{'s' if len(errors) > 2 else ''} in the request)"
        return JSONResponse(error_body(message, param=param, code="invalid_value" if param else "invalid_json"),
                            status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404 and exc.detail in ("Not Found", None):
            message, code = (f"Unknown request URL: {request.method} {request.url.path}. "
                             "Please check the URL for typos, or see /docs for the routes."), "unknown_url"
        elif exc.status_code == 405:
            message, code = f"Method {request.method} is not allowed on {request.url.path}.", "method_not_allowed"
        else:
            message, code = str(exc.detail), None
        return JSONResponse(error_body(message, code=code), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(error_body(f"The server had an error while processing your request "
                                       f"({type(exc).__name__}); it is logged.", type="server_error"),
                            status_code=500)
