"""The file store behind ``/v1/files`` and ``tunery finetune``: uploaded bytes kept under
``TUNERY_HOME/files`` by id (never by the client's filename), indexed in the database. Files are
written piece by piece (:class:`FileWriter`), so one of any size takes constant memory."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from tunery import db
from tunery.errors import Conflict, InvalidInput, NotFound
from tunery.home import atomic_open, home

MAX_FILE_BYTES = int(os.environ.get("TUNERY_MAX_FILE_BYTES", 512 * 1024 * 1024))
"""Read at each write (not bound at import), so a test or an embedding app can lower it."""
PURPOSES = ("fine-tune", "fine-tune-results", "evals", "batch", "assistants", "user_data")
LISTED_PURPOSES = (*PURPOSES, "vision", "batch_output", "assistants_output")
"""What a file list may filter on: OpenAI's purposes, including those only its own services write
(SDK tools enumerate them; here they list nothing)."""
_CHUNK = 1 << 20


class FileTooLarge(InvalidInput):
    status_code = 413
    code = "file_too_large"


def too_large() -> FileTooLarge:
    return FileTooLarge(f"the file is larger than the {MAX_FILE_BYTES}-byte upload limit", param="file",
                        hint="split it, or raise TUNERY_MAX_FILE_BYTES on the server")


def check_purpose(purpose: str) -> None:
    if purpose not in PURPOSES:
        raise InvalidInput(f"purpose must be one of {', '.join(PURPOSES)}, not {purpose!r}", param="purpose")


def _label(filename: str | None) -> str:
    """The client's filename as a label only: its last part, whichever slash separates the parts,
    and never ``.`` or ``..`` (served back in Content-Disposition, a client might follow them)."""
    name = Path((filename or "").replace("\\", "/")).name[:255]
    return name if name not in ("", ".", "..") else "upload.jsonl"


@dataclass(frozen=True)
class FileRecord:
    id: str
    filename: str
    purpose: str
    bytes: int
    path: Path
    created_at: int
    meta: dict[str, Any]

    def to_openai(self) -> dict[str, Any]:
        return {"id": self.id, "object": "file", "bytes": self.bytes, "created_at": self.created_at,
                "filename": self.filename, "purpose": self.purpose, "status": "processed",
                "status_details": None}


def _record(row) -> FileRecord:
    return FileRecord(id=row["id"], filename=row["filename"], purpose=row["purpose"], bytes=row["bytes"],
                      path=Path(row["path"]), created_at=row["created_at"], meta=db.loads(row["meta"], {}))


class FileWriter:
    """A file on its way into the store: :meth:`write` appends to a temporary file beside its final
    place (so memory stays constant and the size is checked as the bytes come), :meth:`commit`
    fsyncs it, renames it into place and indexes it, and :meth:`discard` (or leaving a ``with``
    block without committing) removes it, so a refused or broken upload leaves nothing behind.
    Every method does blocking I/O: an async caller runs them in a thread."""

    def __init__(self) -> None:
        self.id = "file-" + secrets.token_hex(12)
        self.path = home().files / self.id
        self.bytes = 0
        self._target = atomic_open(self.path)
        self._f: BinaryIO | None = self._target.__enter__()

    def write(self, chunk: bytes) -> None:
        if self._f is None:
            raise RuntimeError("write after commit or discard")
        if self.bytes + len(chunk) > MAX_FILE_BYTES:
            raise too_large()
        self._f.write(chunk)
        self.bytes += len(chunk)

    def commit(self, filename: str, purpose: str, *, meta: dict | None = None) -> FileRecord:
        check_purpose(purpose)
        if self._f is None:
            raise RuntimeError("commit after commit or discard")
        self._f = None
        self._target.__exit__(None, None, None)  # fsync, then rename into place
        safe_name = _label(filename)
        try:
            db.execute("INSERT INTO files (id, filename, purpose, bytes, path, created_at, meta) "
                       "VALUES (?,?,?,?,?,?,?)",
                       (self.id, safe_name, purpose, self.bytes, str(self.path), db.now(), db.dumps(meta or {})))
        except BaseException:
            self.path.unlink(missing_ok=True)  # a file no row names would never be listed nor deleted
            raise
        return get(self.id)

    def discard(self) -> None:
        if self._f is not None:
            self._f = None
            reason = InvalidInput("upload discarded")
            self._target.__exit__(type(reason), reason, None)  # removes the temporary file

    def __enter__(self) -> FileWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.discard()


def create(content: bytes, filename: str, purpose: str = "fine-tune", *, meta: dict | None = None) -> FileRecord:
    check_purpose(purpose)
    with FileWriter() as w:
        w.write(content)
        return w.commit(filename, purpose, meta=meta)


def create_from_path(path: Path, purpose: str = "fine-tune") -> FileRecord:
    path = Path(path)
    if not path.is_file():
        raise InvalidInput(f"file not found: {path}", param="training_file")
    check_purpose(purpose)
    with FileWriter() as w, path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            w.write(chunk)
        return w.commit(path.name, purpose, meta={"source_path": str(path.resolve())})


def _not_found(file_id: str) -> NotFound:
    return NotFound(f"no file with id {file_id!r}", param="file_id", hint="see `GET /v1/files`")


def get(file_id: str, *, conn: db.sqlite3.Connection | None = None, lock: bool = False) -> FileRecord:
    """A file by id. With ``conn``, a connection in :func:`tunery.db.transaction`, it is read there,
    and ``lock`` keeps its row until that transaction ends (a job about to read it):
    :func:`delete` waits for the transaction, then sees the use it wrote."""
    if lock and conn is None:
        raise TypeError("get(lock=True) needs the transaction's connection (conn)")
    sql, args = "SELECT * FROM files WHERE id=?" + (db.row_lock("share") if lock else ""), (file_id,)
    rows = db.query(sql, args, conn=conn)
    if not rows:
        raise _not_found(file_id)
    return _record(rows[0])


def list_files(purpose: str | None = None, *, limit: int = 10000, after: str | None = None,
               order: str = "desc") -> list[FileRecord]:
    sql, args = "SELECT * FROM files WHERE 1=1", []
    if purpose and purpose not in LISTED_PURPOSES:
        raise InvalidInput(f"purpose must be one of {', '.join(LISTED_PURPOSES)}, not {purpose!r}", param="purpose")
    if purpose:
        sql += " AND purpose=?"
        args.append(purpose)
    direction = "ASC" if order == "asc" else "DESC"
    if after and not db.query("SELECT 1 FROM files WHERE id=?" + (" AND purpose=?" if purpose else ""),
                              (after, *args)):
        # a file deleted since the previous page still marks where the next one starts
        gone = db.query("SELECT created_at, seq FROM deleted_files WHERE id=?" + (" AND purpose=?" if purpose else ""),
                        (after, *args))
        if not gone:  # refused rather than read as the first page, or as an empty last one
            why = (f"file {after!r} is not one of purpose {purpose!r}" if db.query("SELECT 1 FROM files WHERE id=?", (after,))
                   or db.query("SELECT 1 FROM deleted_files WHERE id=?", (after,)) else f"there is no file with id {after!r}")
            raise InvalidInput(f"after: {why}", param="after",
                               hint="pass the last_id of the previous page, or leave after out for the first page")
        # a live file in the deleted one's exact place (SQLite reuses the highest rowid) came after it
        beyond, tie = (">", ">=") if direction == "ASC" else ("<", "<")
        sql += f" AND (created_at {beyond} ? OR (created_at = ? AND rowid {tie} ?))"
        args += [gone[0]["created_at"], gone[0]["created_at"], gone[0]["seq"]]
        after = None
    sql += f" ORDER BY created_at {direction}, rowid {direction}"
    recs = [_record(r) for r in db.query(sql, tuple(args))]
    if after:
        ids = [r.id for r in recs]
        recs = recs[ids.index(after) + 1:]
    return recs[:limit]


def delete(file_id: str) -> FileRecord:
    """Delete a file; refused while a fine-tuning job that has not ended reads it (the schema's
    ``file_uses`` view names them), as the job would fail without it."""
    rec = get(file_id)
    # the check and the delete in one transaction: a job created in between would lose its file
    with db.transaction() as tx:
        # locked before the check: a job being created holds the row (get(lock=True)) until it
        # commits, so this waits for it and then sees it; one created after waits for this
        if not tx.execute("SELECT id FROM files WHERE id=?" + db.row_lock(), (file_id,)).fetchone():
            raise _not_found(file_id)
        uses = tx.execute("SELECT role, job_id, status FROM file_uses WHERE file_id=? ORDER BY job_id",
                          (file_id,)).fetchall()
        if uses:
            named = " and ".join(f"the {u['role']} of fine-tuning job {u['job_id']}, which is {u['status']}"
                                 for u in uses)
            raise Conflict(f"file {file_id!r} is {named}", param="file_id",
                           hint="delete it once the job has ended, or cancel the job first")
        tx.execute("INSERT INTO deleted_files (id, purpose, created_at, seq) SELECT id, purpose, created_at, rowid "
                   "FROM files WHERE id=?", (file_id,))
        tx.execute("DELETE FROM files WHERE id=?", (file_id,))
    rec.path.unlink(missing_ok=True)
    return rec


def content(file_id: str) -> bytes:
    return get(file_id).path.read_bytes()

