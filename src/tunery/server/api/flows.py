"""``/v1/tunery/flows``, ``/v1/tunery/flow-data`` and ``/v1/tunery/runs/...``: prompt flows for
the studio. The gallery and the user's flows, reading and saving a flow (validated as ``tunery
flow validate`` does; its errors are OpenAI error objects naming the node and field, with every
problem listed), variants, a one-line test run per variant, batch runs with evaluations started in
the background, a run's lines, cancel and export. Each route is a thin map onto
:mod:`tunery.flows`.

Flows run Python in the server, so opening a local folder, writing a flow's Python and running
Python a user wrote (:func:`tunery.flows.library.user_code`) are for trusted clients only: those
on this machine (a loopback address), or every key holder when the server was started with
``--allow-flow-code`` (``app.state.allow_flow_code``)."""

from __future__ import annotations

import csv
import io
import json
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from tunery.errors import InvalidInput, NotFound
from tunery.flows import background, library
from tunery.flows.batch import RunSpec
from tunery.flows.runs import child_runs, get_run, load_details, load_metrics, read_logs
from tunery.server.auth import is_loopback

router = APIRouter(prefix="/v1/tunery", tags=["tunery prompt flows"])


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FlowCreate(_Body):
    gallery: str | None = Field(None, description="clone this gallery flow")
    flow: str | None = Field(None, description="clone this one of your flows")
    path: str | None = Field(None, description="open this local flow folder in place")
    name: str | None = None


class FlowSave(_Body):
    dag: dict[str, Any] | None = None
    files: dict[str, str] = Field(default_factory=dict)


class VariantClone(_Body):
    source: str | None = None
    variant_id: str | None = None


class DefaultVariant(_Body):
    variant: str


class TestRun(_Body):
    inputs: dict[str, Any] = Field(default_factory=dict)
    node: str | None = Field(None, description="an llm node whose variants to run")
    variants: list[str] | None = Field(None, description="which variants (default: all)")
    default_model: str | None = None


class DataUpload(_Body):
    name: str
    content: str


class Evaluation(_Body):
    flow: str = Field(description="gallery:NAME or one of your flows")
    column_mapping: dict[str, Any] = Field(default_factory=dict)
    name: str | None = None


class RunCreate(_Body):
    flow: str
    data: str = Field(description="upload:NAME, gallery:FLOW/FILE or flow:FLOW/FILE")
    variant: str | None = None
    column_mapping: dict[str, Any] = Field(default_factory=dict)
    name: str | None = None
    display_name: str | None = None
    default_model: str | None = None
    workers: int | None = Field(None, ge=1, le=64)
    evaluations: list[Evaluation] = Field(default_factory=list)


def _code_allowed(request: Request) -> bool:
    """Whether this client may write and run a flow's Python (see the module docstring)."""
    host = request.client.host if request.client else ""
    return bool(getattr(request.app.state, "allow_flow_code", False)) or is_loopback(host)


def _flow_out(entry: library.FlowEntry) -> dict[str, Any]:
    return {"object": "tunery.flow", "id": entry.name, **library.summary(entry)}


# -- flows ------------------------------------------------------------------------------------

@router.get("/flows/gallery")
def gallery() -> dict[str, Any]:
    return {"object": "list", "data": [_flow_out(e) for e in library.gallery()]}


@router.get("/flows")
def list_flows() -> dict[str, Any]:
    return {"object": "list", "data": [_flow_out(e) for e in library.list_flows()]}


@router.post("/flows")
def create_flow(body: FlowCreate, request: Request) -> dict[str, Any]:
    """Clone a gallery flow or one of yours, or open a local folder (trusted clients only);
    exactly one of them."""
    given = [k for k in ("gallery", "flow", "path") if getattr(body, k)]
    if len(given) != 1:
        raise InvalidInput("give exactly one of gallery, flow or path", param="gallery")
    if body.gallery:
        entry = library.clone_gallery(body.gallery, body.name)
    elif body.flow:
        entry = library.clone_flow(body.flow, body.name)
    else:
        if not _code_allowed(request):
            raise library.CodeRefused("only a client on this machine may open a local folder", param="path",
                                      code="flow_code_not_allowed",
                                      hint="clone a gallery flow, or start the server with --allow-flow-code")
        entry = library.open_folder(body.path or "", body.name)
    return _flow_out(entry)


@router.get("/flows/{name}")
def get_flow(name: str, gallery: bool = False) -> dict[str, Any]:
    entry = library.gallery_flow(name) if gallery else library.get_flow(name)
    return {"object": "tunery.flow", "id": entry.name, **library.read_flow(entry)}


@router.put("/flows/{name}")
def save_flow(name: str, body: FlowSave, request: Request, dry_run: bool = False) -> dict[str, Any]:
    """Validate and write the flow; nothing is written when it has errors (400, every problem in
    ``error.problems``), or when an untrusted client changes its Python (403). With ``dry_run``
    only validate."""
    entry = library.get_flow(name)
    saved = library.save_flow(entry, dag=body.dag, files=body.files, dry_run=dry_run,
                              allow_code=_code_allowed(request))
    return {"object": "tunery.flow", "id": name, **library.read_flow(entry), "written": saved["written"]}


@router.delete("/flows/{name}")
def delete_flow(name: str) -> dict[str, Any]:
    entry = library.delete_flow(name)
    return {"object": "tunery.flow", "id": entry.name, "deleted": True}


@router.post("/flows/{name}/nodes/{node}/variants")
def clone_variant(name: str, node: str, body: VariantClone) -> dict[str, Any]:
    entry = library.get_flow(name)
    vid = library.clone_variant(entry, node, body.source, body.variant_id)
    return {"object": "tunery.flow", "id": name, "variant": vid, **library.read_flow(entry)}


@router.put("/flows/{name}/nodes/{node}/default_variant")
def set_default_variant(name: str, node: str, body: DefaultVariant) -> dict[str, Any]:
    from tunery.flows import set_default_variant as set_default

    entry = library.get_flow(name)
    set_default(entry.dir, node, body.variant)
    return {"object": "tunery.flow", "id": name, **library.read_flow(entry)}


@router.post("/flows/{name}/test")
def test_run(name: str, body: TestRun, request: Request, gallery: bool = False) -> dict[str, Any]:
    """One line through the flow, once per chosen variant of ``node``: each node's output,
    status, timing and tokens."""
    entry = library.gallery_flow(name) if gallery else library.get_flow(name)
    library.check_code(entry, _code_allowed(request))
    results = library.test_variants(entry, body.inputs, node=body.node, variants=body.variants,
                                    default_model=body.default_model)
    return {"object": "list", "data": results}


# -- data -------------------------------------------------------------------------------------

@router.get("/flow-data")
def list_data() -> dict[str, Any]:
    return {"object": "list", "data": library.data_sources()}


@router.post("/flow-data")
def upload_data(body: DataUpload) -> dict[str, Any]:
    return library.save_data(body.name, body.content)


@router.get("/flow-data/preview")
def preview_data(id: str = Query(..., description="a data id from GET /v1/tunery/flow-data"),
                 rows: int = Query(5, ge=1, le=100)) -> dict[str, Any]:
    return library.preview(id, rows)


# -- runs -------------------------------------------------------------------------------------

@router.post("/runs")
def create_run(body: RunCreate, request: Request) -> dict[str, Any]:
    """Start a batch run (and the evaluation runs grading it) in the background; poll
    ``GET /v1/tunery/runs/{name}`` for its lines."""
    flow = library.resolve_flow(body.flow)
    for entry in [flow, *(library.resolve_flow(e.flow) for e in body.evaluations)]:
        library.check_code(entry, _code_allowed(request))
    data = str(library.data_path(body.data))
    spec = RunSpec(flow=str(flow.dir), data=data, column_mapping=body.column_mapping, variant=body.variant or None,
                   name=body.name or None, display_name=body.display_name, default_model=body.default_model or None,
                   workers=body.workers)
    evals = [RunSpec(flow=str(library.resolve_flow(e.flow).dir), data=data, column_mapping=e.column_mapping,
                     name=e.name or None) for e in body.evaluations]
    sub = background.submit(spec, evals)
    return {"object": "tunery.run_submission", **sub.to_dict()}


@router.get("/runs/{name}")
def get_run_detail(name: str) -> dict[str, Any]:
    """A run's properties, every line so far (inputs, outputs, errors), metrics, the runs that
    evaluated it, and, while this server runs it, its live progress."""
    sub = background.state(name)
    try:
        run = get_run(name)
    except NotFound:
        if sub is None:
            raise
        # submitted here but not stored yet (or it failed before it could be): say how it stands
        return {"object": "tunery.run", "name": name, "status": sub.status, "lines": [], "evaluations": [],
                "submission": sub.to_dict()}
    d = run.to_dict()
    d.pop("path", None)
    lines = [{k: ln.get(k) for k in ("line_number", "status", "inputs", "outputs", "error", "duration")}
             for ln in load_details(run)]
    return {"object": "tunery.run", **d, "lines": lines, "metrics": load_metrics(run),
            "evaluations": [{"name": e.name, "status": e.status, "flow_name": e.meta.get("flow_name"),
                             "metrics": load_metrics(e)} for e in child_runs(run.name)],
            "logs": read_logs(run)[-20_000:], "submission": sub.to_dict() if sub else None}


@router.post("/runs/{name}/cancel")
def cancel_run(name: str) -> dict[str, Any]:
    sub = background.cancel(name)
    return {"object": "tunery.run_submission", **sub.to_dict()}


@router.get("/runs/{name}/export")
def export_run(name: str, format: Literal["jsonl", "csv"] = "jsonl") -> Response:
    """Every line's status, inputs, outputs and error, as JSONL or CSV (``inputs.X``/``outputs.X``
    columns)."""
    run = get_run(name)
    rows = []
    for ln in load_details(run):
        row = {"line_number": ln["line_number"], "status": ln["status"]}
        row.update({f"inputs.{k}": v for k, v in (ln.get("inputs") or {}).items()})
        row.update({f"outputs.{k}": v for k, v in (ln.get("outputs") or {}).items()})
        row["error"] = (ln.get("error") or {}).get("message")
        rows.append(row)
    headers = {"Content-Disposition": f'attachment; filename="{run.name}.{format}"'}
    if format == "jsonl":
        text = "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows)
        return Response(text, media_type="application/x-ndjson", headers=headers)
    columns = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns)
    writer.writeheader()
    for r in rows:
        writer.writerow({k: v if isinstance(v, (str, int, float)) or v is None else json.dumps(v, default=str)
                         for k, v in r.items()})
    return Response(buf.getvalue(), media_type="text/csv", headers=headers)
