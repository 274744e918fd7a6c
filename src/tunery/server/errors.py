"""Every error the server sends is an OpenAI error object ``{"error": {"message", "type",
"param", "code"}}`` with the matching status: domain errors keep their own status (a 409 or 501
with ``x-should-retry: false``, so the openai SDK does not send it again), request validation
becomes a 400 naming the parameter, unknown routes a 404, and only a bug is a 500 (answered by
:class:`CatchBugs`, which keeps the connection open for the client's next request)."""

from __future__ import annotations

import logging
import math
import secrets
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tunery.errors import InvalidInput, RateLimited, TuneryError, invalid_request, json_problem
from tunery.home import CannotWrite

log = logging.getLogger("tunery.server")


class NotAvailable(TuneryError):
    status_code = 501
    error_type = "not_implemented"
    code = "not_available"


class Unauthorized(TuneryError):
    status_code = 401
    code = "invalid_api_key"


class Forbidden(TuneryError):
    status_code = 403
    code = "forbidden"


def error_body(message: str, *, type: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def install(app: FastAPI) -> None:
    @app.exception_handler(TuneryError)
    async def _tunery_error(request: Request, exc: TuneryError) -> JSONResponse:
        headers = {}
        if isinstance(exc, RateLimited):
            headers = {"Retry-After": str(max(1, math.ceil(exc.retry_after))),
                       "retry-after-ms": str(max(1, int(exc.retry_after * 1000)))}
        elif exc.status_code in _FINAL:
            headers = {"x-should-retry": "false"}
        return JSONResponse(exc.to_openai(), status_code=exc.status_code, headers=headers)

    @app.exception_handler(CannotWrite)
    async def _cannot_write(request: Request, exc: CannotWrite) -> JSONResponse:
        # the server's own state (TUNERY_HOME) cannot be written: not the client's fault, and not a bug
        return JSONResponse(error_body(f"the server cannot save this: {exc}", type="server_error",
                                       code="storage_unavailable"), status_code=503)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        first = errors[0] if errors else {}
        if tuple(first.get("loc") or ()) == ("body",) and first.get("type") != "missing" and not is_json(request):
            # FastAPI hands a body not sent as JSON to the model unparsed, as bytes
            kind = request.headers.get("content-type")
            err = InvalidInput("The request body must be JSON, sent with Content-Type: application/json, not "
                               + (f"as {kind!r}." if kind else "without a Content-Type."), code="invalid_json")
            return JSONResponse(err.to_openai(), status_code=400)
        return JSONResponse(invalid_request(errors).to_openai(), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and exc.detail == _FASTAPI_PARSE_ERROR and isinstance(exc.__cause__, Exception):
            # FastAPI's answer to a JSON body that fails to parse other than by its syntax: bytes
            # that are not UTF-8, nesting past the recursion limit, an over-long integer
            errors = [{"type": "json_invalid", "ctx": {"error": json_problem(exc.__cause__)}}]
            return JSONResponse(invalid_request(errors).to_openai(), status_code=400)
        if exc.status_code == 404 and exc.detail in ("Not Found", None):
            message, code = (f"Unknown request URL: {request.method} {request.url.path}. "
                             "Please check the URL for typos, or see /docs for the routes."), "unknown_url"
        elif exc.status_code == 405:
            message, code = f"Method {request.method} is not allowed on {request.url.path}.", "method_not_allowed"
        else:
            message, code = str(exc.detail), None
        return JSONResponse(error_body(message, code=code), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    app.add_middleware(CatchBugs)


_FASTAPI_PARSE_ERROR = "There was an error parsing the body"
_FINAL = frozenset({409, 501})
"""Statuses the openai SDK retries (twice, by default) that asking again does not change here: a
409 is a state conflict (a job that already ended, a name taken, a file in use), not OpenAI's
lock timeout, and a 501 a missing feature. ``x-should-retry: false`` tells the SDK so."""


def is_json(request: Request) -> bool:
    """Whether the request says its body is JSON, as FastAPI decides whether to parse it as JSON."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    return kind == "application/json" or (kind.startswith("application/") and kind.endswith("+json"))


class CatchBugs:
    """Answers a bug with a 500 OpenAI error object, logged once. Not an ``exception_handler(Exception)``:
    Starlette calls that one from its outermost middleware and then re-raises, and uvicorn closes
    the keep-alive connection on any exception that reaches it, so the client's next request on
    that connection failed. Pure ASGI (not ``BaseHTTPMiddleware``), so streams pass untouched; a
    bug after a response has started still reaches uvicorn, which must close that connection.
    Every response carries an ``x-request-id`` (the SDK's ``request_id``), which the log line of a
    bug names too."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False
        request_id = f"req_{secrets.token_hex(12)}"  # x-request-id, as OpenAI's: the SDK shows it as request_id

        async def send_watched(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message = {**message, "headers": [*message.get("headers", ()), (b"x-request-id", request_id.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_watched)
        except Exception as exc:
            if started:
                raise
            log.exception("unhandled error on %s %s (%s)", scope.get("method"), scope.get("path"), request_id)
            response = JSONResponse(error_body(f"The server had an error while processing your request "
                                               f"({type(exc).__name__}); it is logged as {request_id}.",
                                               type="server_error"), status_code=500)
            await response(scope, receive, send_watched)
