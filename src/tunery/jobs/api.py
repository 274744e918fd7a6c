"""The fine-tuning job API, as the OpenAI fine-tuning endpoints expose it. The server's routes
and the CLI are thin maps onto these functions."""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tunery import db
from tunery.data import files
from tunery.errors import Conflict, InvalidInput, NotFound
from tunery.jobs import store
from tunery.jobs.spec import MAX_SEED, FineTuneRequest
from tunery.models import CATALOG, ModelRecord, find
from tunery.training.config import check_layer_range, check_target_modules

PAGE_LIMIT = 100
"""The most jobs or checkpoints one list request returns."""
EVENTS_LIMIT = 10000
"""The most events one request returns."""


def _check_limit(limit: int, most: int) -> None:
    if not isinstance(limit, int) or not 1 <= limit <= most:
        raise InvalidInput(f"limit must be between 1 and {most}", param="limit")


def _model_record(model: str, *, conn: db.sqlite3.Connection | None = None, lock: bool = False
                  ) -> ModelRecord | None:
    """A model that exists (or is in the catalog): a base, or a fine-tune to continue from (as
    OpenAI recommends supervised first, then DPO from it); its record when it is registered (a
    catalog model not pulled yet has none). ``conn`` and ``lock``: as for :func:`tunery.models.find`."""
    rec = find(model, conn=conn, lock=lock)
    if rec is None and model not in CATALOG:
        raise InvalidInput(f"unknown model {model!r}", param="model", code="model_not_found",
                           hint="see `tunery models list --all`")
    # a running job deletes its older checkpoints, and the new job reads its start again at the end
    if rec is not None and rec.is_checkpoint and store.row(rec.meta["job"], conn=conn)["status"] not in store.TERMINAL:
        raise InvalidInput(f"{model!r} is a checkpoint of a job that has not ended, and may delete it",
                           param="model", hint="start from it once that job has ended")
    return rec


def _check_model(model: str) -> Path | None:
    """:func:`_model_record`'s checks; returns the folder of the full weights the model runs on
    when it is registered and there."""
    rec = _model_record(model)
    from tunery.models.loading import base_path

    folder = base_path(rec) if rec is not None else None
    return folder if folder is not None and (folder / "config.json").exists() else None


def _check_lora(spec: FineTuneRequest, base: Path | None) -> None:
    """The LoRA layers and target modules must exist in the model (when it is there to look at)."""
    if spec.lora is None or base is None:
        return
    if isinstance(spec.lora.layers, list):
        n = json.loads((base / "config.json").read_text()).get("num_hidden_layers")
        if isinstance(n, int):
            check_layer_range(spec.lora.layers, n, spec.model)
    if spec.lora.target_modules:
        from tunery.models.loading import folder_lora_module_names

        names = folder_lora_module_names(base)
        if names is not None:  # else transformers cannot build it, and training will say why
            check_target_modules(spec.lora.target_modules, names, spec.model)


def check_data_kind(kind: str, purpose: str, method: str) -> None:
    """A file of ``kind`` (``chat`` or ``preference``, as :func:`tunery.data.preference.file_kind`
    finds it from the first JSON line) must be what ``method`` trains on: checked when the job is
    created, and again by the training process (a job stored before the check)."""
    param = f"{purpose}_file"
    if kind == "preference" and method != "dpo":
        raise InvalidInput(f"the {purpose} file holds preference pairs, which supervised fine-tuning cannot train on",
                           param=param, hint='use method {"type": "dpo"} (tunery finetune --method dpo)')
    if kind != "preference" and method == "dpo":
        raise InvalidInput(f"the {purpose} file holds chat examples (its first line is not a preference pair), "
                           "which DPO cannot train on", param=param,
                           hint='use method {"type": "supervised"} (tunery finetune --method supervised), '
                                "or a file of preference pairs")


def _check_file(file_id: str, param: str, *, method: str | None = None,
                conn: db.sqlite3.Connection | None = None, lock: bool = False) -> None:
    """The file exists with purpose fine-tune and, given the ``method``, holds what it trains on
    (:func:`check_data_kind`). ``conn`` and ``lock``: as for :func:`tunery.data.files.get`."""
    try:
        rec = files.get(file_id, conn=conn, lock=lock)
    except NotFound as e:  # re-raised naming the right param
        raise InvalidInput(f"{param}: no file with id {file_id!r}", param=param, code="file_not_found",
                           hint="upload it with `POST /v1/files` or pass a path to `tunery finetune`") from e
    if rec.purpose != "fine-tune":  # as OpenAI refuses it
        raise InvalidInput(f"{param}: file {file_id!r} ({rec.filename}) has purpose {rec.purpose!r}, and fine-tuning "
                           "reads only files uploaded with purpose 'fine-tune'", param=param,
                           hint="upload it again with purpose 'fine-tune'")
    if method is not None:
        from tunery.data.preference import file_kind

        check_data_kind(file_kind(rec.path), param.removesuffix("_file"), method)


def create_job(request: FineTuneRequest | Mapping[str, Any] | None = None, /, **fields: Any) -> dict[str, Any]:
    """Create a fine-tuning job from a :class:`~tunery.jobs.spec.FineTuneRequest` (or its fields
    as keyword arguments); the worker validates the files, then trains.

    The request is checked in full here: its shape by the spec, then the base model, the files
    (purpose fine-tune, and the kind of data the method trains on: chat examples or preference
    pairs, told from the first line) and the LoRA layers and target modules against the model. The stored
    request is what the training process reads back."""
    if request is not None and fields:
        raise TypeError("create_job takes a request or its fields, not both")
    spec = FineTuneRequest.parse(fields if request is None else request)
    base = _check_model(spec.model)
    _check_file(spec.training_file, "training_file", method=spec.method.type)
    if spec.validation_file is not None:
        _check_file(spec.validation_file, "validation_file", method=spec.method.type)
    _check_lora(spec, base)
    if spec.seed is None:
        spec = spec.model_copy(update={"seed": random.SystemRandom().randrange(0, MAX_SEED)})
    job_id = store.new_id("ftjob")
    with db.transaction() as tx:  # the job and its first events appear together or not at all
        # checked again in this transaction, their rows locked until it commits (SQLite's write lock
        # already keeps every other writer out): a model or file deleted since the checks above
        # would leave the job without it; a delete that comes now waits for this commit and then
        # sees the job, which it refuses; one that came first left no row to lock, the same error
        _model_record(spec.model, conn=tx, lock=True)
        for file_id, param in ((spec.training_file, "training_file"), (spec.validation_file, "validation_file")):
            if file_id is not None:
                _check_file(file_id, param, conn=tx, lock=True)
        tx.execute(
            "INSERT INTO jobs (id, status, model, training_file, validation_file, hyperparameters, method, seed, "
            "suffix, metadata, created_at, training_method, config) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (job_id, "validating_files", spec.model, spec.training_file, spec.validation_file,
             db.dumps(spec.method.hyperparameters.to_dict()), db.dumps({"type": spec.method.type}), spec.seed,
             spec.suffix, db.dumps(spec.metadata) if spec.metadata is not None else None, db.now(),
             spec.training_method, db.dumps(spec.to_json())))
        store.add_event(job_id, f"Created fine-tuning job: {job_id}", conn=tx)
        store.add_event(job_id, f"Validating training file: {spec.training_file}"
                        + (f" and validation file: {spec.validation_file}" if spec.validation_file else ""),
                        conn=tx)
    return get_job(job_id)


def get_job(job_id: str) -> dict[str, Any]:
    return store.to_openai(store.row(job_id))


def list_jobs(*, after: str | None = None, limit: int = 20, status: str | None = None,
              metadata: dict[str, str] | None = None) -> tuple[list[dict[str, Any]], bool]:
    """Jobs, newest first. ``metadata``, as OpenAI's ``metadata[k]=v`` filter: only jobs whose
    metadata holds every pair given; an empty dict (OpenAI's ``metadata=null``): only jobs with none."""
    _check_limit(limit, PAGE_LIMIT)
    sql, args = "SELECT id FROM jobs WHERE 1=1", []
    if status:
        sql += " AND status=?"
        args.append(status)
    if metadata == {}:
        sql += " AND (metadata IS NULL OR metadata IN ('null', '{}'))"
    for key, value in (metadata or {}).items():
        sql += f" AND metadata IS NOT NULL AND {db.json_has('metadata')}"
        args += [key, value]
    if after:
        ref = db.query("SELECT created_at, rowid FROM jobs WHERE id=?", (after,))
        if not ref:
            raise store.unknown_cursor("fine-tuning job", after)
        sql += " AND (created_at < ? OR (created_at = ? AND rowid < ?))"
        args += [ref[0][0], ref[0][0], ref[0][1]]
    sql += " ORDER BY created_at DESC, rowid DESC LIMIT ?"
    args.append(limit + 1)
    ids = [r["id"] for r in db.query(sql, tuple(args))]
    return [get_job(i) for i in ids[:limit]], len(ids) > limit


def cancel_job(job_id: str) -> dict[str, Any]:
    """Cancel a job that has not ended; the worker stops its training process promptly."""
    # The status change is the check: a job that ended meanwhile (its model was just registered)
    # is refused, as OpenAI refuses to cancel a finished job, rather than reported cancelled.
    store.row(job_id)  # an unknown id is NotFound
    with db.transaction() as tx:
        cancelled = store.set_status(job_id, "cancelled", only_from=store.ACTIVE, conn=tx, finished_at=db.now())
        if cancelled:
            store.add_event(job_id, "Fine-tuning job cancelled", conn=tx)
    if cancelled:
        return get_job(job_id)
    raise Conflict(f"job {job_id} cannot be cancelled: {_where(store.row(job_id)['status'])}",
                   param="fine_tuning_job_id", code="job_not_cancellable")


def _where(status: str) -> str:
    """Where a job is, as a pause, resume or cancel that does not apply to it says so: "it has
    already been cancelled", "it is queued"."""
    if status == "validating_files":
        return "its files are being validated"
    if status in store.TERMINAL:
        return f"it has already {'been ' if status == 'cancelled' else ''}{status}"
    return f"it is {status}"


def pause_job(job_id: str) -> dict[str, Any]:
    """Pause a queued or running job, as OpenAI's ``POST /fine_tuning/jobs/{id}/pause``: a queued
    one is paused at once; a running one is ``pausing`` until its training has written a checkpoint
    at the step it reached and stopped (within a step), then ``paused``. Its model and files stay
    in use. Pausing a paused or pausing job changes nothing."""
    store.row(job_id)  # an unknown id is NotFound
    with db.transaction() as tx:
        if store.set_status(job_id, "pausing", only_from=("running",), conn=tx):
            store.add_event(job_id, "Fine-tuning job pausing: saving a checkpoint at the current step", conn=tx)
        elif store.set_status(job_id, "paused", only_from=("queued",), conn=tx):
            store.add_event(job_id, "Fine-tuning job paused while queued", conn=tx)
        elif (status := store.row(job_id, conn=tx)["status"]) not in ("pausing", "paused"):
            why = _where(status) + ("; pause it once it is queued" if status == "validating_files" else "")
            raise Conflict(f"job {job_id} cannot be paused: {why}", param="fine_tuning_job_id",
                           code="job_not_pausable")
    return get_job(job_id)


def resume_job(job_id: str) -> dict[str, Any]:
    """Resume a paused job, as OpenAI's ``POST /fine_tuning/jobs/{id}/resume``: it is queued
    again, and its training goes on from the checkpoint written when it paused (bit-identical, on
    CPU, to a run never paused)."""
    store.row(job_id)
    with db.transaction() as tx:
        resumed = store.set_status(job_id, "queued", only_from=("paused",), conn=tx)
        if resumed:
            store.add_event(job_id, "Fine-tuning job resumed", conn=tx)
        status = store.row(job_id, conn=tx)["status"]
    if resumed:
        return get_job(job_id)
    why = ("it is still pausing (writing its checkpoint); resume it once it is paused" if status == "pausing"
           else f"{_where(status)}; only a paused job can be resumed")
    raise Conflict(f"job {job_id} cannot be resumed: {why}", param="fine_tuning_job_id", code="job_not_resumable")


def list_events(job_id: str, *, after: str | None = None, limit: int = 20) -> tuple[list[dict[str, Any]], bool]:
    _check_limit(limit, EVENTS_LIMIT)
    return store.events(job_id, after=after, limit=limit)


def list_checkpoints(job_id: str, *, after: str | None = None, limit: int = 10
                     ) -> tuple[list[dict[str, Any]], bool]:
    _check_limit(limit, PAGE_LIMIT)
    return store.checkpoints(job_id, after=after, limit=limit)


def metrics(job_id: str) -> list[dict[str, Any]]:
    """All metric rows of a job, oldest first (for charts and the results CSV)."""
    store.row(job_id)
    rows = db.query("SELECT data FROM job_events WHERE job_id=? AND type='metrics' ORDER BY seq", (job_id,))
    return [db.loads(r["data"], {}) for r in rows]
