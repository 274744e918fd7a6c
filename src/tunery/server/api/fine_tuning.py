"""``/v1/fine_tuning/jobs``: create, list, retrieve, cancel, pause, resume, events and checkpoints, as in the
OpenAI API, over ``tunery.jobs`` (the embedded worker runs the jobs)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request

from tunery import jobs
from tunery.errors import InvalidInput
from tunery.jobs.spec import FineTuneRequest

router = APIRouter()


def _page(data: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    return {"object": "list", "data": data, "has_more": has_more,
            "first_id": data[0]["id"] if data else None, "last_id": data[-1]["id"] if data else None}


@router.post("/fine_tuning/jobs")
def create_job(body: FineTuneRequest) -> dict[str, Any]:
    """The body is the job spec: an unknown key anywhere in it is a 400 naming its path."""
    return jobs.create_job(body)


@router.get("/fine_tuning/jobs")
def list_jobs(request: Request, after: str | None = None, limit: int = Query(20, ge=1, le=100)) -> dict[str, Any]:
    """``metadata[k]=v`` (any number) keeps the jobs with those metadata pairs; ``metadata=null``
    those with none, as OpenAI's list does."""
    metadata: dict[str, str] | None = None
    for name, value in request.query_params.multi_items():
        if name == "metadata":
            if value != "null":
                raise InvalidInput(f"metadata={value!r}: filter with metadata[KEY]=VALUE, or metadata=null "
                                   "for jobs without metadata", param="metadata")
            metadata = {}
        elif name.startswith("metadata[") and name.endswith("]"):
            metadata = {**(metadata or {}), name[len("metadata["):-1]: value}
    return _page(*jobs.list_jobs(after=after, limit=limit, metadata=metadata))


@router.get("/fine_tuning/jobs/{job_id}")
def get_job(job_id: str) -> dict[str, Any]:
    return jobs.get_job(job_id)


@router.post("/fine_tuning/jobs/{job_id}/cancel")
def cancel_job(job_id: str) -> dict[str, Any]:
    return jobs.cancel_job(job_id)


@router.post("/fine_tuning/jobs/{job_id}/pause")
def pause_job(job_id: str) -> dict[str, Any]:
    return jobs.pause_job(job_id)


@router.post("/fine_tuning/jobs/{job_id}/resume")
def resume_job(job_id: str) -> dict[str, Any]:
    return jobs.resume_job(job_id)


@router.get("/fine_tuning/jobs/{job_id}/events")
def list_events(job_id: str, after: str | None = None, limit: int = Query(20, ge=1, le=10000)) -> dict[str, Any]:
    return _page(*jobs.list_events(job_id, after=after, limit=limit))


@router.get("/fine_tuning/jobs/{job_id}/checkpoints")
def list_checkpoints(job_id: str, after: str | None = None,
                     limit: int = Query(10, ge=1, le=100)) -> dict[str, Any]:
    return _page(*jobs.list_checkpoints(job_id, after=after, limit=limit))
