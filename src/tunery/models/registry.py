"""The model registry: base models (pulled from the catalog or added from a local folder or GGUF
file), fine-tuned models and their checkpoints, all resolvable by name."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunery import db
from tunery.errors import Conflict, InvalidInput, NotFound
from tunery.models.catalog import CATALOG, ModelSpec

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$")
FINE_TUNED_PREFIX = "ft:"
"""Fine-tuned models and their checkpoints are named ``ft:<base>:<suffix>:<id>[:ckpt-step-N]``."""


@dataclass(frozen=True)
class ModelRecord:
    id: str
    kind: str  # "base" | "fine-tuned"
    path: Path  # HF folder (base or full fine-tune) or PEFT adapter folder (LoRA)
    source: str
    parent: str | None = None
    method: str | None = None  # "lora" | "full" for fine-tuned models
    created_at: int = 0
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def is_adapter(self) -> bool:
        return self.kind == "fine-tuned" and self.method == "lora"

    @property
    def is_checkpoint(self) -> bool:
        """A checkpoint of a fine-tuning job (``ft:...:ckpt-step-N``): the job's, not a model of its own."""
        return self.meta.get("checkpoint_step") is not None

    @property
    def base_id(self) -> str:
        """The model whose full weights this model runs on (see :meth:`root`); the parent's id
        when the chain cannot be followed (a parent removed), so listings never fail on it."""
        try:
            return self.root().id
        except (NotFound, InvalidInput):
            return self.parent or self.id

    def root(self) -> ModelRecord:
        """The model whose full weights this one runs on, through any chain of LoRA parents (a
        checkpoint of a job from a LoRA fine-tune has that fine-tune as its parent)."""
        rec, seen = self, {self.id}
        while rec.is_adapter and rec.parent:
            rec = get(rec.parent)
            if rec.id in seen:
                raise InvalidInput(f"model {rec.id!r} is its own ancestor", param="model")
            seen.add(rec.id)
        return rec

    @property
    def spec(self) -> ModelSpec | None:
        """The catalog entry this model descends from, if any."""
        return CATALOG.get(self.meta.get("catalog") or self.parent or self.id)

    @property
    def context_length(self) -> int:
        return int(self.meta.get("context_length") or (self.spec.context_length if self.spec else 2048))

    def to_openai(self) -> dict[str, Any]:
        return {"id": self.id, "object": "model", "created": self.created_at,
                "owned_by": "tunery" if self.kind == "base" else "user", "parent": self.parent,
                "root": self.base_id, "kind": self.kind}


def _record(row) -> ModelRecord:
    return ModelRecord(id=row["id"], kind=row["kind"], path=Path(row["path"]), source=row["source"],
                       parent=row["parent"], method=row["method"], created_at=row["created_at"],
                       meta=db.loads(row["meta"], {}))


def register(record: ModelRecord, *, replace: bool = False, conn: db.sqlite3.Connection | None = None
             ) -> ModelRecord:
    """Add ``record`` (``replace``: over a model of the same name). With ``conn``, a connection in
    :func:`tunery.db.transaction`, the row is written in that transaction, so a caller that also
    records something else (a job that produced the model) commits both or neither. Its
    ``parent``, when set, must be registered (or a checkpoint), and stays so: it is locked until
    the transaction ends."""
    if not NAME_RE.match(record.id):
        raise InvalidInput(f"invalid model name {record.id!r}: use letters, digits and . _ - :", param="name")
    if conn is None:
        with db.transaction() as tx:
            return register(record, replace=replace, conn=tx)
    # a deployment's name is usable wherever a model's is, and is looked up first: the schema's
    # model_uses view publishes deployments' names, so the registry never reads their table
    if conn.execute("SELECT 1 FROM model_uses WHERE user_kind='deployment' AND user_name=?", (record.id,)).fetchone():
        raise Conflict(f"{record.id!r} is already the name of a deployment", param="name",
                       hint=f"pick another name, or delete the deployment (`tunery deployments delete {record.id}`)")
    # the model it is made from is kept until this commits: remove() waits for the lock, then sees
    # this model among its children; one removed before is not there to build on
    if record.parent is not None and find(record.parent, conn=conn, lock=True) is None:
        raise NotFound(f"model {record.parent!r}, which {record.id!r} is made from, is not registered",
                       param="model", hint="see `tunery models list`; it may have been removed meanwhile")
    verb = "INSERT OR REPLACE" if replace else "INSERT"
    try:
        conn.execute(f"{verb} INTO models (id, kind, parent, path, source, method, created_at, meta) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                     (record.id, record.kind, record.parent, str(record.path), record.source, record.method,
                      record.created_at or db.now(), db.dumps(record.meta)))
    except db.sqlite3.IntegrityError as e:
        raise Conflict(f"a model named {record.id!r} already exists", param="name",
                       hint="pick another name or remove it with `tunery models remove`") from e
    return _record(conn.execute("SELECT * FROM models WHERE id=?", (record.id,)).fetchone())


def list_models(kind: str | None = None) -> list[ModelRecord]:
    sql = "SELECT * FROM models" + (" WHERE kind=?" if kind else "") + " ORDER BY kind, created_at, id"
    return [_record(r) for r in db.query(sql, (kind,) if kind else ())]


def find(name: str, *, conn: db.sqlite3.Connection | None = None, lock: bool = False) -> ModelRecord | None:
    """A registered model or fine-tuned checkpoint by name, or None. With ``conn``, a connection in
    :func:`tunery.db.transaction`, it is read there, and ``lock`` keeps it until that transaction
    ends (a job or deployment about to use it): :func:`remove` waits for the transaction, then sees
    the use it wrote. For a checkpoint the lock is on the model its job started from, which
    :func:`remove` keeps while the checkpoint is used."""
    if lock and conn is None:
        raise TypeError("find(lock=True) needs the transaction's connection (conn)")
    rows = db.query("SELECT * FROM models WHERE id=?" + (db.row_lock("share") if lock else ""), (name,), conn=conn)
    if rows:
        return _record(rows[0])
    # A checkpoint of a fine-tuning job, named ``ft:...:ckpt-step-N``: the job system publishes them
    # in this view of the schema (tunery.db), so the registry never reads the jobs' tables.
    rows = db.query("SELECT path, step, created_at, parent, method, job_id FROM model_checkpoints WHERE id=?",
                    (name,), conn=conn)
    if rows:
        path, step, created, base, method, job_id = tuple(rows[0])
        base_rec = find(base, conn=conn, lock=lock)
        return ModelRecord(id=name, kind="fine-tuned", path=Path(path), source=f"checkpoint of {job_id}",
                           parent=base, method=method, created_at=created,
                           meta={**{k: v for k, v in (base_rec.meta if base_rec else {}).items()
                                    if k not in OWN_META}, "checkpoint_step": step, "job": job_id})
    return None


def _unknown(name: str) -> NotFound:
    if name in CATALOG:
        return NotFound(f"model {name!r} is in the catalog but not pulled yet", param="model",
                        code="model_not_found", hint=f"run `tunery models pull {name}`")
    return NotFound(f"unknown model {name!r}", param="model", code="model_not_found",
                    hint="see `tunery models list` (GET /v1/models); add a local one with "
                         "`tunery models add NAME PATH`")


def get(name: str, *, conn: db.sqlite3.Connection | None = None, lock: bool = False) -> ModelRecord:
    """Resolve a model name (``conn`` and ``lock`` as for :func:`find`); a catalog model that was
    not pulled yet is named in the error."""
    rec = find(name, conn=conn, lock=lock)
    if rec is None:
        raise _unknown(name)
    return rec


OWN_META = ("tool_call_threshold",)
"""Settings of a model's own, which a checkpoint of a job started from it does not take on (a
threshold calibrated for the base says nothing of a fine-tune)."""


def update_meta(name: str, **changes: Any) -> ModelRecord:
    """Set (a value) or clear (None) keys of a registered model's ``meta``, in one transaction. A
    checkpoint has no row of its own: it is refused."""
    with db.transaction() as tx:
        rows = db.query("SELECT * FROM models WHERE id=?" + db.row_lock("update"), (name,), conn=tx)
        if not rows:
            rec = find(name, conn=tx)
            if rec is None:
                raise _unknown(name)
            raise InvalidInput(f"{name!r} is a checkpoint of job {rec.meta.get('job')}, which has no settings of "
                               "its own", param="model", hint="register its folder as a model "
                               f"(`tunery models add NAME {rec.path}`) and change that")
        meta = {k: v for k, v in {**db.loads(rows[0]["meta"], {}), **changes}.items() if v is not None}
        tx.execute("UPDATE models SET meta=? WHERE id=?", (db.dumps(meta), name))
        return _record(tx.execute("SELECT * FROM models WHERE id=?", (name,)).fetchone())


def _check_unused(name: str, tx: db.sqlite3.Connection) -> None:
    """Refuse to remove a model that a job that has not ended starts from, a deployment serves (the
    ``model_uses`` view of the schema names them; a checkpoint they use counts for the model its
    job started from, which it runs on), or a fine-tune runs on."""
    # a checkpoint runs on its job's model, and a checkpoint of a job that started from a
    # checkpoint on that one's, and so on: the names under which this model may be used
    names, frontier = [name], [name]
    while frontier:
        frontier = [r["id"] for n in frontier
                    for r in tx.execute("SELECT id FROM model_checkpoints WHERE parent=?", (n,)).fetchall()
                    if r["id"] not in names]
        names += frontier
    uses = tx.execute(f"SELECT model, user_kind, user_name, status FROM model_uses WHERE model IN "
                      f"({', '.join('?' * len(names))}) ORDER BY user_kind, user_name", tuple(names)).fetchall()

    def via(u) -> str:
        return "" if u["model"] == name else f", through its checkpoint {u['model']}"

    jobs = [f"{u['user_name']} ({u['status']}{via(u)})" for u in uses if u["user_kind"] == "fine-tuning job"]
    if jobs:
        raise Conflict(f"model {name!r} is the model of fine-tuning job(s) that have not ended: {', '.join(jobs)}",
                       param="model", hint="wait until they end, or cancel them first")
    deployed = [u["user_name"] + (f" ({via(u)[2:]})" if via(u) else "") for u in uses
                if u["user_kind"] == "deployment"]
    if deployed:
        raise Conflict(f"model {name!r} is deployed as {', '.join(deployed)}", param="model",
                       hint="delete those deployments first")
    # read after the uses: a job that ends registers its fine-tune in the transaction that ends it,
    # so a job not seen running above has its fine-tune seen here
    children = tx.execute("SELECT id FROM models WHERE parent=?", (name,)).fetchall()
    if children:
        raise Conflict(f"model {name!r} is the base of {len(children)} fine-tuned model(s), e.g. "
                       f"{children[0]['id']!r}", param="model", hint="remove those first")


IN_PLACE_SOURCES = ("local", "folder")
"""Sources of models registered on a folder the user gave (``tunery models add NAME DIR``, an ONNX
folder served by path): the folder is theirs, wherever it lies."""


def deletes_folder(rec: ModelRecord) -> bool:
    """Whether removing ``rec`` deletes its folder: only one tunery made (a pull, a fine-tune, an
    export) that lies in TUNERY_HOME, never a folder registered in place."""
    from tunery.home import home

    in_place = rec.source.split(":", 1)[0] in IN_PLACE_SOURCES
    return not in_place and rec.path.resolve().is_relative_to(home().root.resolve())


def remove(name: str, *, delete_files: bool = True) -> ModelRecord:
    """Remove a registered model (and its folder, when :func:`deletes_folder`). Refused for a
    checkpoint (it belongs to its job) and for a model something still needs."""
    rec = get(name)
    if rec.is_checkpoint:
        raise InvalidInput(f"{name!r} is a checkpoint of fine-tuning job {rec.meta.get('job')}, not a model of "
                           "its own, and cannot be deleted", param="model",
                           hint="a job's checkpoints stay with the job; delete its fine-tuned model instead")
    # the checks and the delete in one transaction: a fine-tune, job or deployment added in between
    # would be left without its model
    with db.transaction() as tx:
        # locked before the checks: a job or deployment being created holds the row (find(lock=True))
        # until it commits, so this waits for it and then sees its use; one created after waits for this
        if not tx.execute("SELECT id FROM models WHERE id=?" + db.row_lock(), (name,)).fetchone():
            raise _unknown(name)  # removed meanwhile
        _check_unused(name, tx)
        tx.execute("DELETE FROM models WHERE id=?", (name,))
    if delete_files and deletes_folder(rec) and rec.path.exists():
        shutil.rmtree(rec.path, ignore_errors=True)
    return rec
