"""The studio's pages and static files. A page is a server-rendered shell (layout, navigation,
empty panels) and nothing more: every piece of data on it is fetched by its script over HTTP,
from ``/v1`` and the ``/v1/tunery`` extensions, so the studio can never know more than an API
client does. A browser that asks for a page no route serves gets the studio's "page not found"
(:func:`install_not_found`); an API client still gets the API's JSON 404."""

from __future__ import annotations

import mimetypes
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from tunery.errors import NotFound

router = APIRouter(include_in_schema=False)

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
STATIC_URL = "/studio/static"

PAGES: dict[str, tuple[str, str]] = {
    # slug -> (navigation label, page title)
    "playground": ("Playground", "Chat playground"),
    "compare": ("Compare", "Compare models"),
    "fine-tune": ("Fine-tune", "Fine-tune a model"),
    "jobs": ("Jobs", "Fine-tuning jobs"),
    "data": ("Data", "Data files"),
    "models": ("Models", "Models and deployments"),
    "flows": ("Flows", "Prompt flows"),
    "runs": ("Runs", "Prompt-flow runs"),
}

# .js must be served as JavaScript or browsers refuse the module scripts; some systems map it wrongly
_TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml", ".html": "text/html"}


@lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                              trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)


def render(template: str, page: str, *, title: str | None = None, status_code: int = 200,
           **context: Any) -> HTMLResponse:
    from tunery import __version__

    html = _env().get_template(template).render(
        page=page, title=title or PAGES[page][1], pages=PAGES, version=__version__,
        static=lambda path: f"{STATIC_URL}/{path}", **context)
    # no-cache: browsers revalidate (ETag), so an upgraded studio never runs with stale scripts
    return HTMLResponse(html, status_code=status_code, headers={"Cache-Control": "no-cache"})


def wants_page(request: Request) -> bool:
    """Whether ``request`` is a browser asking for a page: a GET outside the API (``/v1``) that
    accepts HTML. A script's fetch accepts ``*/*``, an API client JSON: those are not."""
    path = request.url.path
    if request.method not in ("GET", "HEAD") or path == "/v1" or path.startswith("/v1/"):
        return False
    kinds = (part.split(";")[0].strip().lower() for part in request.headers.get("accept", "").split(","))
    return any(kind in ("text/html", "application/xhtml+xml") for kind in kinds)


def not_found_page(path: str) -> HTMLResponse:
    return render("not_found.html", "not-found", title="Page not found", status_code=404, path=path)


def install_not_found(app: FastAPI) -> None:
    """Answer a browser's request for a page that no route serves with the studio's "page not
    found" page, which links back home, instead of the API's JSON 404; every other request (an
    API client's, a script's, any under ``/v1``) gets the app's own answer, unchanged. It wraps
    the app's handler of HTTP errors, so it goes after :func:`tunery.server.errors.install`."""
    api_answer = app.exception_handlers[StarletteHTTPException]

    async def not_found(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404 and wants_page(request):
            return not_found_page(request.url.path)
        return await api_answer(request, exc)

    app.add_exception_handler(StarletteHTTPException, not_found)


@router.get("/")
@router.get("/playground")
def playground() -> HTMLResponse:
    # the studio opens on the playground, at / itself: no redirect for links and health checks to follow
    return render("playground.html", "playground")


@router.get("/compare")
def compare() -> HTMLResponse:
    return render("compare.html", "compare")


@router.get("/fine-tune")
def fine_tune() -> HTMLResponse:
    return render("finetune.html", "fine-tune")


@router.get("/jobs")
def jobs() -> HTMLResponse:
    return render("jobs.html", "jobs")


@router.get("/jobs/{job_id}")
def job(job_id: str) -> HTMLResponse:
    # the id only goes into the page for its script to ask the API; an unknown id shows the API's 404 there
    return render("job.html", "jobs", job_id=job_id)


@router.get("/data")
def data() -> HTMLResponse:
    return render("data.html", "data")


@router.get("/models")
def models() -> HTMLResponse:
    return render("models.html", "models")


@router.get("/runs")
def runs() -> HTMLResponse:
    return render("runs.html", "runs")


@router.get("/runs/{run_name}")
def run_detail(run_name: str) -> HTMLResponse:
    return render("flow_run.html", "runs", run_name=run_name)


@router.get("/flows")
def flows() -> HTMLResponse:
    return render("flows.html", "flows")


@router.get("/flows/{flow_name}")
def flow_editor(flow_name: str) -> HTMLResponse:
    # like a job's page: the name only goes into the page, for its script to ask the API
    return render("flow.html", "flows", flow_name=flow_name)


@router.get("/favicon.ico")
def favicon(request: Request) -> Response:
    return static_file("favicon.svg", request)


@router.get(STATIC_URL + "/{path:path}")
def static_file(path: str, request: Request) -> Response:
    try:  # a NUL or an over-long name names no file: the OS lookup raises on them
        target = (STATIC / path).resolve()
        found = target.is_relative_to(STATIC) and target.is_file()
    except (OSError, ValueError):
        found = False
    if not found:
        if wants_page(request):  # someone followed a link or typed the address
            return not_found_page(request.url.path)
        raise NotFound(f"no studio file {path!r}", param="path")
    media = _TYPES.get(target.suffix) or mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    return FileResponse(target, media_type=media, headers={"Cache-Control": "no-cache"})
