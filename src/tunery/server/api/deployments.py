"""``/v1/deployments``: create, list, get, update and delete named deployments (Azure AI Foundry
style) with a tokens-per-minute limit and a content-filter level."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from tunery.compiled.cache import PRECISIONS
from tunery.serving import deployments
from tunery.serving.ratelimit import limiter

router = APIRouter()


class DeploymentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    name: str = Field(min_length=1)
    model: str = Field(min_length=1)
    tpm: int | None = Field(None, ge=1, le=deployments.MAX_TPM)
    content_filter: Literal["off", "default", "strict"] = "default"
    blocklist: list[str] | None = None
    precision: Literal["auto", *PRECISIONS] | None = None  # type: ignore[valid-type]  # auto: the server's


class DeploymentUpdate(BaseModel):
    """The settings to change; a field left out stays as it is, ``"tpm": null`` lifts the limit."""

    model_config = ConfigDict(extra="forbid", strict=True)
    tpm: int | None = Field(None, ge=1, le=deployments.MAX_TPM)
    content_filter: Literal["off", "default", "strict"] = "default"
    blocklist: list[str] | None = None
    precision: Literal["auto", *PRECISIONS] | None = None  # type: ignore[valid-type]


def _out(dep: deployments.Deployment) -> dict[str, Any]:
    return {**dep.to_openai(), "tokens_used_last_minute": limiter.used(dep.name) if dep.tpm else None}


@router.post("/deployments")
def create(body: DeploymentCreate) -> dict[str, Any]:
    return _out(deployments.create(body.name, body.model, tpm=body.tpm, content_filter=body.content_filter,
                                   blocklist=body.blocklist, precision=body.precision))


@router.get("/deployments")
def list_all() -> dict[str, Any]:
    return {"object": "list", "data": [_out(d) for d in deployments.list_deployments()]}


@router.get("/deployments/{name}")
def get(name: str) -> dict[str, Any]:
    return _out(deployments.get(name))


@router.patch("/deployments/{name}")
def update(name: str, body: DeploymentUpdate) -> dict[str, Any]:
    return _out(deployments.update(name, **{k: getattr(body, k) for k in body.model_fields_set}))


@router.delete("/deployments/{name}")
def delete(name: str) -> dict[str, Any]:
    dep = deployments.delete(name)
    return {"id": dep.name, "object": "deployment", "deleted": True}
