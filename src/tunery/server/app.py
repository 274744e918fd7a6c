"""The one FastAPI app behind ``tunery serve``: the OpenAI-compatible ``/v1`` API, the embedded
fine-tuning job worker, and the web studio at ``/`` when ``tunery.server.studio`` is installed
(until then ``/`` is a small page that points to ``/docs``)."""

from __future__ import annotations

import importlib
import importlib.util
import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, Depends, FastAPI
from fastapi.responses import HTMLResponse

from tunery.server import errors
from tunery.server.api import ROUTERS
from tunery.server.auth import configured_keys, require_key

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


def create_app(*, api_keys: Iterable[str] = (), worker: bool = False) -> FastAPI:
    """The app. ``api_keys`` add to those in ``TUNERY_API_KEY``; ``worker`` runs queued
    fine-tuning jobs in this process while the app is up."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.worker = _start_worker() if worker else None
        try:
            yield
        finally:
            if app.state.worker is not None:
                app.state.worker.stop()

    from tunery import __version__

    app = FastAPI(title="tunery", version=__version__, lifespan=lifespan,
                  description="OpenAI-compatible fine-tuning, files, models, chat and deployments, "
                              "served from your own machine.")
    app.state.api_keys = configured_keys(api_keys)
    errors.install(app)
    v1 = APIRouter(prefix="/v1", dependencies=[Depends(require_key)])
    for router in ROUTERS:
        v1.include_router(router)
    app.include_router(v1)

    studio = _studio_router()
    if studio is not None:
        app.include_router(studio)
    if studio is None or not any(getattr(r, "path", None) == "/" for r in studio.routes):
        @app.get("/", include_in_schema=False)
        def root() -> HTMLResponse:
            return HTMLResponse(_ROOT_PAGE)

    @app.get("/health", include_in_schema=False)
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app
