"""tunery's extensions of the HTTP API, under ``/v1/tunery``: what the studio needs and the OpenAI
API has no route for. Each is read-only, a thin map onto one library function, answers JSON (the
run comparison also as the flows library's HTML page) and wants the same API key as ``/v1``."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse

from tunery import examples
from tunery.errors import InvalidInput
from tunery.server.auth import require_key

router = APIRouter(prefix="/v1/tunery", dependencies=[Depends(require_key)], tags=["tunery extensions"])

EXERCISE_QUESTIONS = 5
"""The first questions of ``travel/questions.jsonl`` are the exercise's own, asked in order."""
MAX_ISSUES = 1000
MAX_FINDINGS = 200


@router.get("/info")
def info(request: Request) -> dict[str, Any]:
    """The version, and whether some worker will run queued fine-tuning jobs."""
    from tunery import __version__
    from tunery.jobs.worker import worker_alive

    embedded = getattr(request.app.state, "worker", None) is not None
    return {"object": "tunery.info", "version": __version__, "worker": embedded or worker_alive(),
            "api_keys": bool(getattr(request.app.state, "api_keys", None))}


# -- data files -------------------------------------------------------------------------------

@lru_cache(maxsize=4)
def _tokenizer(model_id: str, path: str) -> Any:
    """Cached per model id and folder: a re-created fine-tune with the same name has a new folder."""
    from tunery.models.loading import load_tokenizer

    return load_tokenizer(model_id)


@router.get("/files/{file_id}/report")
def file_report(file_id: str, purpose: Literal["training", "validation"] = "training",
                model: str | None = Query(None, description="measure tokens with this model's tokenizer"),
                n_epochs: int | None = Query(None, ge=1, le=50,
                                             description="epochs for billed tokens; auto when left out")
                ) -> dict[str, Any]:
    """The validator's report (every problem, by line and field), token statistics for ``model``
    and the personal-data scan of an uploaded file, made in one pass over the file: memory for a
    few numbers per example, whatever the file's size (:mod:`tunery.data.report`)."""
    from tunery.data import files
    from tunery.data.preference import file_kind
    from tunery.data.report import report_file
    from tunery.models import registry
    from tunery.training.config import DPOHyperparameters, Hyperparameters

    rec = files.get(file_id)
    model_rec = registry.get(model) if model else None
    tokenizer = _tokenizer(model_rec.id, str(model_rec.path)) if model_rec else None
    spec = model_rec.spec if model_rec else None
    result = report_file(rec.path, purpose=purpose, tokenizer=tokenizer,
                         context_length=model_rec.context_length if model_rec else None,
                         max_seq_length=spec.training.max_seq_length if spec else None,
                         max_issues=MAX_ISSUES, max_findings=MAX_FINDINGS)
    report = result.validation
    validation = report.to_dict()
    validation["n_issues"] = report.n_errors + report.n_warnings
    validation["issues"] = validation["issues"][:MAX_ISSUES]
    token_stats = None
    data_kind = file_kind(rec.path)  # "preference" or "chat": the wizard matches the method to it
    if model_rec is not None and report.n_examples:
        # what a job on this file would train: DPO's auto epochs for preference pairs
        kind = DPOHyperparameters if data_kind == "preference" else Hyperparameters
        epochs = n_epochs or kind.parse({}).resolve(report.n_examples).n_epochs
        token_stats = {**result.token_stats(context_length=model_rec.context_length, n_epochs=epochs).to_dict(),
                       "model": model_rec.id, "n_epochs_auto": n_epochs is None}
    pii = result.pii
    return {"object": "tunery.file_report", "file": rec.to_openai(), "kind": data_kind, "validation": validation,
            "token_stats": token_stats,
            "pii": {"counts": pii.counts, "lines_with_pii": pii.lines_with_pii, "n_findings": pii.n_findings,
                    "findings": [f.to_dict() for f in pii.findings[:MAX_FINDINGS]],
                    "plain_text_lines": pii.plain_text_lines, "not_scanned": pii.not_scanned}}


# -- jobs -------------------------------------------------------------------------------------

@router.get("/fine_tuning/jobs/{job_id}/metrics")
def job_metrics(job_id: str) -> dict[str, Any]:
    """Every metric row of a job so far (step, train/valid loss and token accuracy), oldest first."""
    from tunery.jobs import metrics

    return {"object": "list", "data": metrics(job_id)}


# -- bundled examples -------------------------------------------------------------------------

@router.get("/examples/travel/questions")
def travel_questions() -> dict[str, Any]:
    """The travel example's held-out test questions (the exercise's come first) and the system
    message its training data uses."""
    folder = examples.TRAVEL
    questions = [json.loads(line)["question"] for line in
                 (folder / "questions.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    first = json.loads((folder / "train.jsonl").read_text(encoding="utf-8").split("\n", 1)[0])
    system = next((m["content"] for m in first["messages"] if m["role"] == "system"), "")
    return {"object": "list", "system": system, "exercise_questions": EXERCISE_QUESTIONS,
            "data": [{"index": i, "question": q, "exercise": i < EXERCISE_QUESTIONS}
                     for i, q in enumerate(questions)]}


# -- prompt-flow runs -------------------------------------------------------------------------

def _run_names(names: str) -> list[str]:
    out = [n.strip() for n in names.split(",") if n.strip()]
    if not out:
        raise InvalidInput("name at least one run: ?names=RUN1,RUN2", param="names")
    return list(dict.fromkeys(out))


@router.get("/runs")
def list_runs(limit: int = Query(200, ge=1, le=1000)) -> dict[str, Any]:
    from tunery.flows import list_runs as runs

    data = []
    for r in runs(limit):
        d = r.to_dict()
        d.pop("path", None)  # a server-side folder means nothing to a client
        data.append({"object": "tunery.run", **d})
    return {"object": "list", "data": data}


@router.get("/runs/compare")
def compare_runs(names: str = Query(..., description="comma-separated run names")) -> dict[str, Any]:
    from tunery.flows import compare_runs as compare

    return {"object": "tunery.run_comparison", **compare(_run_names(names))}


@router.get("/runs/compare.html")
def compare_runs_html(names: str = Query(..., description="comma-separated run names")) -> HTMLResponse:
    from tunery.flows import compare_runs as compare
    from tunery.flows import render_html

    return HTMLResponse(render_html(compare(_run_names(names))))
