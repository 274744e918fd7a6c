"""``/v1/fine_tuning/jobs``: create, list, retrieve, cancel, events and checkpoints, as in the
OpenAI API, over ``tunery.jobs`` (the embedded worker runs the jobs)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from tunery.server.errors import NotAvailable

router = APIRouter()


def _jobs() -> Any:
    try:
        from tunery import jobs
    except ImportError as e:  # pragma: no cover - the package ships with tunery
        raise NotAvailable("fine-tuning jobs are not available in this installation") from e
    if not hasattr(jobs, "create_job"):
        raise NotAvailable("fine-tuning jobs are not available in this build of tunery")
    return jobs


class JobCreate(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    model: str = Field(min_length=1)
    training_file: str = Field(min_length=1)
    validation_file: str | None = None
    hyperparameters: dict[str, Any] | None = None
    method: dict[str, Any] | None = None
    suffix: str | None = Field(None, max_length=64)
    seed: int | None = None
    metadata: dict[str, str] | None = None
    training_method: str | None = None  # tunery extensions: "lora" (default) or "full",
    lora: dict[str, Any] | None = None  # and the LoRA settings (r, alpha, dropout, target_modules)


def _page(data: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    return {"object": "list", "data": data, "has_more": has_more,
            "first_id": data[0]["id"] if data else None, "last_id": data[-1]["id"] if data else None}


@router.post("/fine_tuning/jobs")
def create_job(body: JobCreate) -> dict[str, Any]:
    return _jobs().create_job(**body.model_dump(exclude_none=True))


@router.get("/fine_tuning/jobs")
def list_jobs(after: str | None = None, limit: int = Query(20, ge=1, le=100)) -> dict[str, Any]:
    return _page(*_jobs().list_jobs(after=after, limit=limit))


@router.get("/fine_tuning/jobs/{job_id}")
def get_job(job_id: str) -> dict[str, Any]:
    return _jobs().get_job(job_id)


@router.post("/fine_tuning/jobs/{job_id}/cancel")
def cancel_job(job_id: str) -> dict[str, Any]:
    return _jobs().cancel_job(job_id)


@router.get("/fine_tuning/jobs/{job_id}/events")
def list_events(job_id: str, after: str | None = None, limit: int = Query(20, ge=1, le=10000)) -> dict[str, Any]:
    return _page(*_jobs().list_events(job_id, after=after, limit=limit))


@router.get("/fine_tuning/jobs/{job_id}/checkpoints")
def list_checkpoints(job_id: str, after: str | None = None,
                     limit: int = Query(10, ge=1, le=100)) -> dict[str, Any]:
    return _page(*_jobs().list_checkpoints(job_id, after=after, limit=limit))
