"""The fine-tuning job API, as the OpenAI fine-tuning endpoints expose it. The server's routes
and the CLI are thin maps onto these functions."""

from __future__ import annotations

import random
import re
from typing import Any

from tunery import db
from tunery.data import files
from tunery.errors import Conflict, InvalidInput
from tunery.jobs import store
from tunery.models import CATALOG, find
from tunery.training.config import Hyperparameters

SUFFIX_RE = re.compile(r"^[a-z0-9_-]{1,64}$")


def _check_model(model: Any) -> str:
    if not isinstance(model, str) or not model:
        raise InvalidInput("model must be a non-empty string naming a base model", param="model")
    rec = find(model)
    if rec is None and model not in CATALOG:
        raise InvalidInput(f"unknown base model {model!r}", param="model", code="model_not_found",
                           hint="see `tunery models list --all`")
    if rec is not None and rec.kind != "base":
        raise InvalidInput(f"{model!r} is a fine-tuned model; fine-tune its base {rec.parent!r} instead "
                           "(continuing from a fine-tuned model is not supported yet)", param="model")
    return model


def _check_lora(model: str, lora: Any) -> None:
    """LoRA settings are checked at creation, layer indices against the model's depth."""
    import json

    from tunery.models.catalog import TrainingDefaults
    from tunery.training.config import LoraSettings, check_layer_range

    if not isinstance(lora, dict):
        raise InvalidInput("lora must be an object with r, alpha, dropout, target_modules, layers", param="lora")
    unknown = set(lora) - {"r", "alpha", "dropout", "target_modules", "layers"}
    if unknown:
        raise InvalidInput(f"unknown LoRA setting {sorted(unknown)[0]!r}; known: r, alpha, dropout, "
                           "target_modules, layers", param=f"lora.{sorted(unknown)[0]}")
    settings = LoraSettings.from_defaults(TrainingDefaults(), lora)
    rec = find(model)
    config = rec.path / "config.json" if rec is not None else None
    if settings.layers and config is not None and config.exists():
        n = json.loads(config.read_text()).get("num_hidden_layers")
        if isinstance(n, int):
            check_layer_range(settings.layers, n, model)


def _check_file(file_id: Any, param: str) -> str:
    if not isinstance(file_id, str) or not file_id:
        raise InvalidInput(f"{param} must be a file id (upload the file first)", param=param)
    try:
        files.get(file_id)
    except Exception as e:  # NotFound: re-raise naming the right param
        raise InvalidInput(f"{param}: no file with id {file_id!r}", param=param, code="file_not_found",
                           hint="upload it with `POST /v1/files` or pass a path to `tunery finetune`") from e
    return file_id


def _hyperparameters(hyperparameters: Any, method: Any) -> tuple[Hyperparameters, dict[str, Any]]:
    if hyperparameters is not None and not isinstance(hyperparameters, dict):
        raise InvalidInput("hyperparameters must be an object", param="hyperparameters")
    hp = dict(hyperparameters or {})
    extra: dict[str, Any] = {}
    if method is not None:
        if not isinstance(method, dict):
            raise InvalidInput("method must be an object like {\"type\": \"supervised\"}", param="method")
        mtype = method.get("type", "supervised")
        if mtype != "supervised":
            raise InvalidInput(f"method.type {mtype!r} is not supported; tunery does supervised fine-tuning",
                               param="method.type")
        sup = method.get("supervised") or {}
        if not isinstance(sup, dict):
            raise InvalidInput("method.supervised must be an object", param="method.supervised")
        mhp = sup.get("hyperparameters") or {}
        if not isinstance(mhp, dict):
            raise InvalidInput("method.supervised.hyperparameters must be an object",
                               param="method.supervised.hyperparameters")
        hp.update(mhp)
        extra = {k: v for k, v in sup.items() if k != "hyperparameters"}
    return Hyperparameters.parse(hp), extra


def create_job(*, model: str, training_file: str, validation_file: str | None = None,
               hyperparameters: dict[str, Any] | None = None, method: dict[str, Any] | None = None,
               suffix: str | None = None, seed: int | None = None, metadata: dict[str, str] | None = None,
               training_method: str | None = None, lora: dict[str, Any] | None = None) -> dict[str, Any]:
    """Create a fine-tuning job; the worker validates the files, then trains.

    ``training_method`` (``lora``, the default, or ``full``) and ``lora`` (``r``, ``alpha``,
    ``dropout``, ``target_modules``) are tunery extensions; they may also sit in
    ``method.supervised``."""
    model = _check_model(model)
    training_file = _check_file(training_file, "training_file")
    if validation_file is not None:
        validation_file = _check_file(validation_file, "validation_file")
    hp, extra = _hyperparameters(hyperparameters, method)
    training_method = training_method or extra.get("training_method") or "lora"
    if training_method not in ("lora", "full"):
        raise InvalidInput(f"training_method must be 'lora' or 'full', not {training_method!r}",
                           param="training_method")
    lora = lora if lora is not None else extra.get("lora")
    if lora is not None:
        _check_lora(model, lora)
    if suffix is not None and (not isinstance(suffix, str) or not SUFFIX_RE.match(suffix)):
        raise InvalidInput(f"suffix must be 1-64 characters of lowercase letters, digits, '-' and '_', "
                           f"not {suffix!r}", param="suffix")
    if seed is None:
        seed = random.SystemRandom().randrange(0, 2**31 - 1)
    elif isinstance(seed, bool) or not isinstance(seed, int) or not (0 <= seed < 2**31):
        raise InvalidInput(f"seed must be an integer between 0 and 2147483647, not {seed!r}", param="seed")
    if metadata is not None and (not isinstance(metadata, dict) or len(metadata) > 16 or not all(
            isinstance(k, str) and isinstance(v, str) and len(k) <= 64 and len(v) <= 512 for k, v in metadata.items())):
        raise InvalidInput("metadata must be at most 16 string keys (64 chars) and string values (512 chars)",
                           param="metadata")
    job_id = store.new_id("ftjob")
    db.execute(
        "INSERT INTO jobs (id, status, model, training_file, validation_file, hyperparameters, method, seed, suffix, "
        "metadata, created_at, training_method, config) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (job_id, "validating_files", model, training_file, validation_file, db.dumps(hp.to_dict()),
         db.dumps({"type": "supervised"}), seed, suffix, db.dumps(metadata) if metadata is not None else None,
         db.now(), training_method, db.dumps({"lora": lora} if lora else {})))
    store.add_event(job_id, f"Created fine-tuning job: {job_id}")
    store.add_event(job_id, f"Validating training file: {training_file}"
                    + (f" and validation file: {validation_file}" if validation_file else ""))
    return get_job(job_id)


def get_job(job_id: str) -> dict[str, Any]:
    return store.to_openai(store.row(job_id))


def list_jobs(*, after: str | None = None, limit: int = 20, status: str | None = None
              ) -> tuple[list[dict[str, Any]], bool]:
    if not isinstance(limit, int) or not 1 <= limit <= 100:
        raise InvalidInput("limit must be between 1 and 100", param="limit")
    sql, args = "SELECT id FROM jobs WHERE 1=1", []
    if status:
        sql += " AND status=?"
        args.append(status)
    if after:
        ref = db.query("SELECT created_at, rowid FROM jobs WHERE id=?", (after,))
        if ref:
            sql += " AND (created_at < ? OR (created_at = ? AND rowid < ?))"
            args += [ref[0][0], ref[0][0], ref[0][1]]
    sql += " ORDER BY created_at DESC, rowid DESC LIMIT ?"
    args.append(limit + 1)
    ids = [r["id"] for r in db.query(sql, tuple(args))]
    return [get_job(i) for i in ids[:limit]], len(ids) > limit


def cancel_job(job_id: str) -> dict[str, Any]:
    """Cancel a job that has not ended; the worker stops its training process promptly."""
    r = store.row(job_id)
    if r["status"] in store.TERMINAL:
        raise Conflict(f"job {job_id} has already {r['status']}; only active jobs can be cancelled",
                       param="fine_tuning_job_id", code="job_not_cancellable")
    if store.set_status(job_id, "cancelled", only_from=store.ACTIVE, finished_at=db.now()):
        store.add_event(job_id, "Fine-tuning job cancelled")
    return get_job(job_id)


def list_events(job_id: str, *, after: str | None = None, limit: int = 20) -> tuple[list[dict[str, Any]], bool]:
    if not isinstance(limit, int) or not 1 <= limit <= 10000:
        raise InvalidInput("limit must be between 1 and 10000", param="limit")
    return store.events(job_id, after=after, limit=limit)


def list_checkpoints(job_id: str, *, after: str | None = None, limit: int = 10
                     ) -> tuple[list[dict[str, Any]], bool]:
    if not isinstance(limit, int) or not 1 <= limit <= 100:
        raise InvalidInput("limit must be between 1 and 100", param="limit")
    return store.checkpoints(job_id, after=after, limit=limit)


def metrics(job_id: str) -> list[dict[str, Any]]:
    """All metric rows of a job, oldest first (for charts and the results CSV)."""
    store.row(job_id)
    rows = db.query("SELECT data FROM job_events WHERE job_id=? AND type='metrics' ORDER BY seq", (job_id,))
    return [db.loads(r["data"], {}) for r in rows]
