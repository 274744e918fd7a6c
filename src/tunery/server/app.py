"""The one FastAPI app behind ``tunery serve``: the OpenAI-compatible ``/v1`` API, the embedded
fine-tuning job worker, and the web studio at ``/`` when ``tunery.server.studio`` is installed
(until then ``/`` is a small page that points to ``/docs``)."""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager, suppress
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tunery.data.validate import lone_surrogate
from tunery.errors import InvalidInput
from tunery.flows import background as flow_runs
from tunery.server import errors
from tunery.server.api import ROUTERS
from tunery.server.api import flows as flows_api
from tunery.server.auth import Access, BrowserGuard, configured_keys, require_key

log = logging.getLogger("tunery.server")

_ROOT_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>tunery</title>
<style>body{font-family:system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem;color:#222}
code{background:#f3f3f3;padding:.1rem .3rem;border-radius:3px}</style></head>
<body><h1>tunery</h1>
<p>An OpenAI-compatible API for your local models is running here.</p>
<ul><li>API base: <code>/v1</code> (point any OpenAI client's <code>base_url</code> at it)</li>
<li>Interactive API docs: <a href="/docs">/docs</a></li>
<li>Models: <a href="/v1/models">/v1/models</a></li></ul>
</body></html>
"""


MAX_REQUEST_BYTES = int(os.environ.get("TUNERY_MAX_REQUEST_BYTES", 8 << 20))
"""The largest body a request may have (8 MiB), file uploads aside: they stream to disk under
their own limit (``TUNERY_MAX_FILE_BYTES``). A chat prompt that fills a 128k-token context is a
few hundred KiB of JSON; the limit keeps what the server parses for one request bounded. Read at
each request, so a test or an embedding app can change it."""


class RequestTooLarge(InvalidInput):
    status_code = 413
    code = "request_too_large"


class _BodyOverLimit(Exception):
    pass


class BodyLimit:
    """Refuses a request body larger than :data:`MAX_REQUEST_BYTES` with 413 and an OpenAI error
    object, before the app parses it: at once when ``Content-Length`` says so, else (a chunked
    body) as soon as the bytes received pass the limit; the app's own answer to the cut body is
    dropped. Pure ASGI, so streamed answers pass untouched. The file upload is exempt (it checks
    its own, larger limit while it streams the body to disk)."""

    EXEMPT = frozenset({("POST", "/v1/files")})

    def __init__(self, app: ASGIApp, limit: int | None = None) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (scope["method"], scope["path"]) in self.EXEMPT:
            await self.app(scope, receive, send)
            return
        limit = MAX_REQUEST_BYTES if self.limit is None else self.limit
        refusal = RequestTooLarge(f"the request body is larger than the {limit:,}-byte limit",
                                  hint="send less (fewer or shorter messages); files go to /v1/files")
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            await JSONResponse(refusal.to_openai(), status_code=refusal.status_code)(scope, receive, send)
            return
        received, over, started = 0, False, False

        async def limited_receive() -> Message:
            nonlocal received, over
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    over = True
                    raise _BodyOverLimit
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            if over and not started:
                return  # the app's answer to a body cut short: ours replaces it
            started = started or message["type"] == "http.response.start"
            await send(message)

        with suppress(_BodyOverLimit):  # raised in the app's read, unless it turned it into its own answer
            await self.app(scope, limited_receive, watched_send)
        if over and not started:
            await JSONResponse(refusal.to_openai(), status_code=refusal.status_code)(scope, receive, send)


async def refuse_lone_surrogates(request: Request) -> None:
    """Refuses a JSON body holding a lone surrogate (a ``"\\ud800"`` escape without its pair, or
    its bytes) with a 400 naming the first such field: it parses as JSON but is not text, so the
    tokenizer and the database fail on it deep inside a route. The body is the one FastAPI has
    already parsed (the request caches it), so this costs a walk only when an escape is there."""
    if not errors.is_json(request):
        return  # not parsed as JSON (uploads stream their own body and check it themselves)
    body = await request.body()
    if b"\\u" not in body and b"\xed" not in body:  # a surrogate comes as an escape or as ED A0-BF ..
        return
    try:
        obj = await request.json()
    except (ValueError, RecursionError):
        return  # not JSON: the route's own parsing answers that
    if (bad := lone_surrogate(obj)) is not None:
        where, problem = bad
        raise InvalidInput(f"Invalid value for '{where}': {problem}" if where else f"Invalid body: {problem}",
                           param=where, hint="send text as UTF-8, or escape a character outside the BMP as "
                                             "a surrogate pair")


def _start_worker() -> Any:
    try:
        from tunery.jobs import Worker
    except ImportError:
        log.warning("tunery.jobs has no Worker yet: fine-tuning jobs will stay queued")
        return None
    worker = Worker()
    worker.start()
    return worker


def _studio_router() -> APIRouter | None:
    if importlib.util.find_spec("tunery.server.studio") is None:
        return None
    module = importlib.import_module("tunery.server.studio")
    return getattr(module, "router", None)


def create_app(*, api_keys: Iterable[str] = (), worker: bool = False, bind: tuple[str, int] | None = None,
               allowed_hosts: Iterable[str] = (), cors_origins: Iterable[str] = (),
               allow_flow_code: bool | None = None) -> FastAPI:
    """The app. ``api_keys`` add to those in ``TUNERY_API_KEY``; ``worker`` runs queued
    fine-tuning jobs in this process while the app is up. ``bind`` (the address and port it will
    listen on), ``allowed_hosts`` and ``cors_origins`` say which ``Host`` and ``Origin`` values it
    accepts (:class:`tunery.server.auth.Access`): by default only loopback names, and no other
    web site. A test client that sends ``Host: testserver`` passes ``allowed_hosts=["testserver"]``.
    ``allow_flow_code`` (default: ``TUNERY_ALLOW_FLOW_CODE=1``) lets every client, not only those
    on this machine, write and run a prompt flow's Python (:mod:`tunery.server.api.flows`)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.worker = _start_worker() if worker else None
        try:
            yield
        finally:
            if app.state.worker is not None:
                app.state.worker.stop()
            flow_runs.shutdown()  # no batch run is left Running by a server that stopped

    from tunery import __version__

    app = FastAPI(title="tunery", version=__version__, lifespan=lifespan,
                  description="OpenAI-compatible fine-tuning, files, models, chat and deployments, "
                              "served from your own machine.")
    app.state.api_keys = configured_keys(api_keys)
    if allow_flow_code is None:
        allow_flow_code = os.environ.get("TUNERY_ALLOW_FLOW_CODE", "") in ("1", "true", "yes")
    app.state.allow_flow_code = allow_flow_code
    app.state.access = Access.configure(bind, allowed_hosts, cors_origins)
    app.add_middleware(BodyLimit)  # inside the guard: a refused host or origin is not read at all
    app.add_middleware(BrowserGuard, access=app.state.access)
    errors.install(app)  # after the guard: its bug catcher must be the outermost middleware
    v1 = APIRouter(prefix="/v1", dependencies=[Depends(require_key), Depends(refuse_lone_surrogates)])
    for router in ROUTERS:
        v1.include_router(router)
    app.include_router(v1)

    studio = _studio_router()
    if studio is not None:
        app.include_router(studio)
        # a browser asking for a page that no route serves gets the studio's "page not found"
        importlib.import_module("tunery.server.studio").install_not_found(app)
    # after the studio's /v1/tunery/runs/compare, which /runs/{name} would otherwise swallow
    app.include_router(flows_api.router, dependencies=[Depends(require_key), Depends(refuse_lone_surrogates)])
    if studio is None or not any(getattr(r, "path", None) == "/" for r in studio.routes):
        @app.get("/", include_in_schema=False)
        def root() -> HTMLResponse:
            return HTMLResponse(_ROOT_PAGE)

    @app.get("/health", include_in_schema=False)
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app
