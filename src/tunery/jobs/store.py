"""Job records, events and checkpoints in the state database, shaped as the OpenAI API shapes
them (``fine_tuning.job``, ``fine_tuning.job.event``, ``fine_tuning.job.checkpoint``).

A job's ``config`` column holds its request, a :class:`~tunery.jobs.spec.FineTuneRequest` in its
stored form; :func:`request` reads it back. The other columns are what the OpenAI job object
shows (``hyperparameters`` turns from the requested values into the resolved ones when training
starts)."""

from __future__ import annotations

import secrets
from typing import Any

from tunery import db
from tunery.errors import InvalidInput, NotFound
from tunery.jobs.spec import FineTuneRequest
from tunery.models.registry import FINE_TUNED_PREFIX

TERMINAL = ("succeeded", "failed", "cancelled")
ACTIVE = ("validating_files", "queued", "running", "pausing", "paused")
TRAINING = ("running", "pausing")  # a training process may be at work: a pausing one is writing its checkpoint
_JSON = ("hyperparameters", "method", "metadata", "result_files", "error", "config")


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


def model_name(base: str, suffix: str | None, job_id: str) -> str:
    """``ft:<base>:<suffix>:<short id>``, as OpenAI names fine-tuned models."""
    return f"{FINE_TUNED_PREFIX}{base}:{suffix or ''}:{job_id[-8:]}"


def job_dir(job_id: str):
    from tunery.home import home

    return home().jobs / job_id


def unknown_cursor(what: str, after: str) -> InvalidInput:
    """The error for a page cursor that names nothing to list from: refused rather than read as
    the first page, which a client paging on would see as the same items again."""
    return InvalidInput(f"after: there is no {what} with id {after!r}", param="after",
                        hint="pass the last_id of the previous page, or leave after out for the first page")


def row(job_id: str, *, conn: db.sqlite3.Connection | None = None) -> dict[str, Any]:
    """A job's row (``conn``: read through that connection, one in :func:`tunery.db.transaction`)."""
    sql = "SELECT * FROM jobs WHERE id=?"
    rows = db.query(sql, (job_id,), conn=conn)
    if not rows:
        raise NotFound(f"no fine-tuning job with id {job_id!r}", param="fine_tuning_job_id",
                       hint="see `tunery jobs list`")
    return db.row_to_dict(rows[0], _JSON)


def request(r: dict[str, Any]) -> FineTuneRequest:
    """The request a job was created with (``r`` is its row)."""
    config = r["config"] or {}
    if "model" not in config:  # created before requests were stored whole: rebuilt from the columns
        config = {"model": r["model"], "training_file": r["training_file"], "validation_file": r["validation_file"],
                  "hyperparameters": r["hyperparameters"], "suffix": r["suffix"], "seed": r["seed"],
                  "metadata": r["metadata"], "training_method": r["training_method"], "lora": config.get("lora")}
    if config.get("training_method") == "full" and config.get("lora"):
        # LoRA settings on a full fine-tune were taken (and ignored) before they were refused: a job
        # stored then still runs, as it was meant to
        config = {k: v for k, v in config.items() if k != "lora"}
    return FineTuneRequest.parse(config)


def to_openai(r: dict[str, Any]) -> dict[str, Any]:
    hp = r["hyperparameters"] or {}
    method = (r["method"] or {}).get("type", "supervised")
    return {
        "object": "fine_tuning.job", "id": r["id"], "model": r["model"], "created_at": r["created_at"],
        "finished_at": r["finished_at"], "fine_tuned_model": r["fine_tuned_model"],
        "organization_id": "org-local", "result_files": r["result_files"] or [], "status": r["status"],
        "validation_file": r["validation_file"], "training_file": r["training_file"],
        "hyperparameters": hp, "trained_tokens": r["trained_tokens"], "error": r["error"],
        "user_provided_suffix": r["suffix"], "seed": r["seed"], "estimated_finish": r["estimated_finish"],
        "integrations": [], "metadata": r["metadata"],
        "method": {"type": method, method: {"hyperparameters": hp}},
        "training_method": r["training_method"],
    }


def update(job_id: str, **fields: Any) -> None:
    sets = ", ".join(f"{k}=?" for k in fields)
    vals = [db.dumps(v) if k in _JSON and v is not None else v for k, v in fields.items()]
    db.execute(f"UPDATE jobs SET {sets} WHERE id=?", (*vals, job_id))


def set_status(job_id: str, status: str, *, only_from: tuple[str, ...] | None = None,
               held_by: str | None = None, conn: db.sqlite3.Connection | None = None, **fields: Any) -> bool:
    """Move a job to ``status`` (atomically, only from the given states, and only while worker
    ``held_by`` holds it); True if it moved. With ``conn`` (a :func:`tunery.db.transaction`), the
    change is part of that transaction."""
    sets = ", ".join(["status=?", *(f"{k}=?" for k in fields)])
    vals = [status, *(db.dumps(v) if k in _JSON and v is not None else v for k, v in fields.items())]
    sql = f"UPDATE jobs SET {sets} WHERE id=?"
    args: list[Any] = [*vals, job_id]
    if only_from:
        sql += f" AND status IN ({','.join('?' * len(only_from))})"
        args += list(only_from)
    if held_by is not None:
        sql += " AND worker_id=?"
        args.append(held_by)
    return db.execute(sql, tuple(args), conn=conn) > 0


def claim_next(worker_id: str, lease_s: float) -> dict[str, Any] | None:
    """Claim the oldest queued job for ``worker_id``: it becomes ``running``, held by that worker
    for ``lease_s`` seconds (renewed by :func:`renew_lease`), its attempt counted; returns its row,
    or None when nothing is queued. Atomic, so that of several workers asking at once each job
    goes to one: SQLite runs the claim alone (its write lock), PostgreSQL locks the chosen row and
    lets the other claims skip it."""
    with db.transaction() as tx:
        got = tx.execute(
            f"UPDATE jobs SET status='running', worker_id=?, lease_expires_at={db.clock()} + ?, "
            "attempts=attempts+1, started_at=COALESCE(started_at, ?) WHERE status='queued' AND id=(SELECT id "
            f"FROM jobs WHERE status='queued' ORDER BY created_at, rowid LIMIT 1{db.skip_locked()}) RETURNING id",
            (worker_id, lease_s, db.now())).fetchall()
    return row(got[0]["id"]) if got else None


def renew_lease(job_id: str, worker_id: str, lease_s: float) -> bool:
    """Extend ``worker_id``'s hold on its running job (its heartbeat); False if it holds it no more
    (the job ended, or its lease ran out and another worker took it)."""
    return db.execute(f"UPDATE jobs SET lease_expires_at={db.clock()} + ? WHERE id=? AND worker_id=? "
                      "AND status IN ('running', 'pausing')", (lease_s, job_id, worker_id)) > 0


def holds(job_id: str, worker_id: str, statuses: tuple[str, ...] = ("running",)) -> bool:
    """Whether ``worker_id`` still holds its job, in one of ``statuses``, its lease not run out:
    what a training process checks to stop once another worker may have taken its job over (or
    it was cancelled, or is being paused)."""
    return bool(db.query(f"SELECT 1 FROM jobs WHERE id=? AND status IN ({','.join('?' * len(statuses))}) "
                         f"AND worker_id=? AND lease_expires_at >= {db.clock()}", (job_id, *statuses, worker_id)))


def _may_take() -> str:
    """A running job ``worker_id`` (the one parameter) may act on: its own, or one whose holder's
    lease ran out (or that no worker claimed, as a job that ran before leases existed)."""
    return f"(worker_id IS NULL OR worker_id=? OR lease_expires_at IS NULL OR lease_expires_at < {db.clock()})"


def lost_jobs(worker_id: str, gone: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    """Running jobs that ``worker_id`` may take back to the queue: those it holds (it restarted
    under the same id, so their training is gone), those whose lease ran out, and those held by
    the workers in ``gone`` (known to have ended before their lease did)."""
    held_by_gone = f" OR worker_id IN ({','.join('?' * len(gone))})" if gone else ""
    return [dict(r) for r in db.query(f"SELECT id, pid, worker_id FROM jobs WHERE status IN ('running', 'pausing') "
                                      f"AND ({_may_take()}"
                                      f"{held_by_gone}) ORDER BY created_at", (worker_id, *sorted(gone)))]


def holders() -> set[str]:
    """The workers that hold running jobs."""
    return {r["worker_id"] for r in db.query("SELECT DISTINCT worker_id FROM jobs WHERE status IN ('running', "
                                             "'pausing') AND worker_id IS NOT NULL")}


def running_ids() -> list[str]:
    """Jobs whose training process may be at work (running, or pausing)."""
    return [r["id"] for r in db.query("SELECT id FROM jobs WHERE status IN ('running', 'pausing')")]


def release(job_id: str, worker_id: str, *, max_attempts: int, message: str) -> str | None:
    """Put a running job whose training process ended back in the queue to resume from its last
    checkpoint, if ``worker_id`` may (it holds the job, or the lease ran out; checked in the same
    statement, so that two workers never both do it), or fail it when it has used
    ``max_attempts``. A pausing job becomes paused instead, its claim not counted as an attempt.
    Returns the new status, or None."""
    with db.transaction() as tx:
        moved = tx.execute(
            "UPDATE jobs SET status=CASE WHEN status='pausing' THEN 'paused' ELSE 'queued' END, "
            "attempts=CASE WHEN status='pausing' THEN attempts - 1 ELSE attempts END, worker_id=NULL, "
            f"lease_expires_at=NULL WHERE id=? AND status IN ('running', 'pausing') AND {_may_take()} "
            "RETURNING status, attempts", (job_id, worker_id)).fetchall()
        if not moved:
            return None
        if moved[0]["status"] == "paused":
            last = tx.execute("SELECT MAX(step) FROM checkpoints WHERE job_id=?", (job_id,)).fetchone()[0]
            add_event(job_id, "Fine-tuning job paused" + (f" at step {last}; resuming goes on from there" if last
                                                           else "; resuming starts it from the beginning"), conn=tx)
            return "paused"
        if moved[0]["attempts"] < max_attempts:
            add_event(job_id, message, level="warn", conn=tx)
            return "queued"
        text = f"training failed {moved[0]['attempts']} times; giving up"
        set_status(job_id, "failed", conn=tx, finished_at=db.now(),
                   error={"code": "training_error", "message": text, "param": None})
        add_event(job_id, f"Fine-tuning job failed: {text}", level="error", conn=tx)
        return "failed"


def add_event(job_id: str, message: str, *, level: str = "info", type: str = "message",
              data: dict[str, Any] | None = None, conn: db.sqlite3.Connection | None = None) -> dict[str, Any]:
    """Record an event (``conn``: in that transaction)."""
    eid = new_id("ftevent")
    created = db.now()
    db.execute("INSERT INTO job_events (id, job_id, created_at, level, type, message, data) VALUES (?,?,?,?,?,?,?)",
               (eid, job_id, created, level, type, message, db.dumps(data) if data is not None else None), conn=conn)
    return {"object": "fine_tuning.job.event", "id": eid, "created_at": created, "level": level,
            "message": message, "data": data or {}, "type": type}


def delete_metric_events_after(job_id: str, step: int) -> None:
    """On resume, metrics past the checkpoint are recomputed: drop the stale ones so the curve
    has neither gaps nor duplicates."""
    db.execute(f"DELETE FROM job_events WHERE job_id=? AND type='metrics' AND {db.json_int('data', 'step')} > ?",
               (job_id, step))


def events(job_id: str, *, after: str | None = None, limit: int = 20, order: str = "desc"
           ) -> tuple[list[dict[str, Any]], bool]:
    row(job_id)
    direction = "DESC" if order == "desc" else "ASC"
    sql, args = "SELECT * FROM job_events WHERE job_id=?", [job_id]
    if after:
        ref = db.query("SELECT seq FROM job_events WHERE id=? AND job_id=?", (after, job_id))
        if not ref:
            raise unknown_cursor(f"event of job {job_id}", after)
        sql += " AND seq < ?" if direction == "DESC" else " AND seq > ?"
        args.append(ref[0]["seq"])
    sql += f" ORDER BY seq {direction} LIMIT ?"
    args.append(limit + 1)
    rows = db.query(sql, tuple(args))
    out = [{"object": "fine_tuning.job.event", "id": r["id"], "created_at": r["created_at"], "level": r["level"],
            "message": r["message"], "data": db.loads(r["data"], {}), "type": r["type"]} for r in rows[:limit]]
    return out, len(rows) > limit


def add_checkpoint(job_id: str, step: int, path: str, name: str, metrics: dict[str, Any]) -> dict[str, Any]:
    cid = new_id("ftckpt")
    db.execute("INSERT INTO checkpoints (id, job_id, step, path, fine_tuned_model_checkpoint, metrics, created_at) "
               "VALUES (?,?,?,?,?,?,?)", (cid, job_id, step, path, name, db.dumps(metrics), db.now()))
    return checkpoints(job_id, limit=1)[0][0]


def prune_checkpoints(job_id: str, existing_paths: set[str]) -> None:
    for r in db.query("SELECT id, path FROM checkpoints WHERE job_id=?", (job_id,)):
        if r["path"] not in existing_paths:
            db.execute("DELETE FROM checkpoints WHERE id=?", (r["id"],))


def checkpoints(job_id: str, *, after: str | None = None, limit: int = 10) -> tuple[list[dict[str, Any]], bool]:
    row(job_id)
    sql, args = "SELECT * FROM checkpoints WHERE job_id=?", [job_id]
    if after:
        ref = db.query("SELECT step FROM checkpoints WHERE id=? AND job_id=?", (after, job_id))
        if not ref:
            raise unknown_cursor(f"checkpoint of job {job_id}", after)
        sql += " AND step < ?"
        args.append(ref[0]["step"])
    sql += " ORDER BY step DESC LIMIT ?"
    args.append(limit + 1)
    rows = db.query(sql, tuple(args))
    out = []
    for r in rows[:limit]:
        m = db.loads(r["metrics"], {})
        out.append({"object": "fine_tuning.job.checkpoint", "id": r["id"], "created_at": r["created_at"],
                    "fine_tuned_model_checkpoint": r["fine_tuned_model_checkpoint"], "step_number": r["step"],
                    "metrics": {**m, "step": r["step"]}, "fine_tuning_job_id": job_id})  # step too, as OpenAI's
    return out, len(rows) > limit
