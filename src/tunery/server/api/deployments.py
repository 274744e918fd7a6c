"""``/v1/deployments``: create, list, get, update and delete named deployments (Azure AI Foundry
style) with tokens-per-minute and requests-per-minute limits and a content-filter level."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, model_validator

from tunery.compiled.cache import PRECISIONS
from tunery.serving import deployments
from tunery.serving.ratelimit import limiter

router = APIRouter()


class DeploymentSettings(BaseModel):
    """What a deployment sets beside its model; in an update, a field left out stays as it is,
    ``"tpm": null`` (``"rpm": null``) lifts that limit, ``"blocklist": null`` clears the deployment's own terms and
    ``"precision": null`` (or ``"auto"``) serves at the server's default."""

    model_config = ConfigDict(extra="forbid", strict=True)
    tpm: int | None = Field(None, ge=1, le=deployments.MAX_LIMIT)
    rpm: int | None = Field(None, ge=1, le=deployments.MAX_LIMIT)
    content_filter: Literal["off", "default", "strict"] = "default"  # a level always: not null
    blocklist: list[str] | None = None
    precision: Literal["auto", *PRECISIONS] | None = None  # type: ignore[valid-type]  # auto: the server's

    @model_validator(mode="before")
    @classmethod
    def _no_new_model(cls, data: Any) -> Any:
        if cls is DeploymentSettings and isinstance(data, dict):
            if moved := [k for k in ("model", "name") if k in data]:
                raise ValueError(f"a deployment's {moved[0]} cannot change: deploy the model under another "
                                 "name (POST /v1/deployments) and delete this one")
            if not data:
                raise ValueError("nothing to change: give tpm, rpm, content_filter, blocklist or precision")
        return data


class DeploymentCreate(DeploymentSettings):
    name: str = Field(min_length=1)
    model: str = Field(min_length=1)


def _out(dep: deployments.Deployment) -> dict[str, Any]:
    return {**dep.to_openai(), "tokens_used_last_minute": limiter.used(dep.name) if dep.tpm else None,
            "requests_last_minute": limiter.requests(dep.name) if dep.rpm else None}


@router.post("/deployments")
def create(body: DeploymentCreate) -> dict[str, Any]:
    return _out(deployments.create(body.name, body.model, tpm=body.tpm, content_filter=body.content_filter,
                                   blocklist=body.blocklist, precision=body.precision, rpm=body.rpm))


@router.get("/deployments")
def list_all() -> dict[str, Any]:
    return {"object": "list", "data": [_out(d) for d in deployments.list_deployments()]}


@router.get("/deployments/{name}")
def get(name: str) -> dict[str, Any]:
    return _out(deployments.get(name))


@router.patch("/deployments/{name}")
def update(name: str, body: DeploymentSettings) -> dict[str, Any]:
    return _out(deployments.update(name, **{k: getattr(body, k) for k in body.model_fields_set}))


@router.delete("/deployments/{name}")
def delete(name: str) -> dict[str, Any]:
    dep = deployments.delete(name)
    return {"id": dep.name, "object": "deployment", "deleted": True}
