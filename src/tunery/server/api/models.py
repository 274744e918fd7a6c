"""``/v1/models``: base models, fine-tuned models (their base as ``parent``), deployments, and
checkpoints by name."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from tunery.errors import InvalidInput, NotFound
from tunery.models import registry
from tunery.serving import deployments

router = APIRouter()


def _model(rec: registry.ModelRecord, precision: str | None = None) -> dict[str, Any]:
    """The OpenAI model object, plus how tunery serves it (``serving``: engine, precision, the
    compiled copy's measured quality)."""
    from tunery.serving.manager import describe_serving, serving_info

    try:
        info = serving_info(rec, precision)
        info["summary"] = describe_serving(info)
    except (InvalidInput, NotFound) as e:  # say, a fine-tune whose base was removed
        info = {"summary": str(e)}
    return {**rec.to_openai(), "serving": info}


def _deployment(dep: deployments.Deployment) -> dict[str, Any]:
    rec = registry.find(dep.model)
    return {**dep.to_model(), "serving": _model(rec, dep.precision)["serving"] if rec is not None else None}


@router.get("/models")
def list_models() -> dict[str, Any]:
    data = [_model(r) for r in registry.list_models()]
    data += [_deployment(d) for d in deployments.list_deployments()]
    return {"object": "list", "data": data}


@router.get("/models/{model_id:path}")
def get_model(model_id: str) -> dict[str, Any]:
    rec = registry.find(model_id)
    if rec is not None:
        return _model(rec)
    dep = deployments.find(model_id)
    if dep is not None:
        return _deployment(dep)
    raise NotFound(f"The model '{model_id}' does not exist", param="model", code="model_not_found",
                   hint="see GET /v1/models")


@router.delete("/models/{model_id:path}")
def delete_model(model_id: str) -> dict[str, Any]:
    rec = registry.find(model_id)
    # a deployment is listed and retrieved as a model: deleting it is not "does not exist"
    if rec is None and deployments.find(model_id) is not None:
        raise InvalidInput(f"{model_id!r} is a deployment, not a fine-tuned model: delete it as a deployment",
                           param="model",
                           hint=f"DELETE /v1/deployments/{model_id}, or `tunery deployments delete {model_id}`")
    if rec is None:
        raise NotFound(f"The model '{model_id}' does not exist", param="model", code="model_not_found")
    if rec.kind != "fine-tuned":
        raise InvalidInput(f"only fine-tuned models can be deleted over the API, and {model_id!r} is a base model",
                           param="model", hint="remove base models with `tunery models remove`")
    # a checkpoint, and a model that a deployment or an unfinished job needs, are refused by the registry
    registry.remove(model_id)
    return {"id": model_id, "object": "model", "deleted": True}
