"""The file store behind ``/v1/files`` and ``tunery finetune``: uploaded bytes kept under
``TUNERY_HOME/files`` by id (never by the client's filename), indexed in the database."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunery import db
from tunery.errors import InvalidInput, NotFound
from tunery.home import atomic_write_bytes, home

MAX_FILE_BYTES = int(os.environ.get("TUNERY_MAX_FILE_BYTES", 512 * 1024 * 1024))
PURPOSES = ("fine-tune", "fine-tune-results", "evals", "batch", "assistants", "user_data")


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


def create(content: bytes, filename: str, purpose: str = "fine-tune", *, meta: dict | None = None) -> FileRecord:
    if purpose not in PURPOSES:
        raise InvalidInput(f"purpose must be one of {', '.join(PURPOSES)}, not {purpose!r}", param="purpose")
    if len(content) > MAX_FILE_BYTES:
        raise InvalidInput(f"file is {len(content)} bytes, over the {MAX_FILE_BYTES}-byte limit", param="file",
                           code="file_too_large")
    fid = "file-" + secrets.token_hex(12)
    path = home().files / fid
    atomic_write_bytes(path, content)
    safe_name = Path(filename or "upload.jsonl").name[:255] or "upload.jsonl"
    db.execute("INSERT INTO files (id, filename, purpose, bytes, path, created_at, meta) VALUES (?,?,?,?,?,?,?)",
               (fid, safe_name, purpose, len(content), str(path), db.now(), db.dumps(meta or {})))
    return get(fid)


def create_from_path(path: Path, purpose: str = "fine-tune") -> FileRecord:
    path = Path(path)
    if not path.is_file():
        raise InvalidInput(f"file not found: {path}", param="training_file")
    return create(path.read_bytes(), path.name, purpose, meta={"source_path": str(path.resolve())})


def get(file_id: str) -> FileRecord:
    rows = db.query("SELECT * FROM files WHERE id=?", (file_id,))
    if not rows:
        raise NotFound(f"no file with id {file_id!r}", param="file_id", hint="see `GET /v1/files`")
    return _record(rows[0])


def list_files(purpose: str | None = None, *, limit: int = 10000, after: str | None = None,
               order: str = "desc") -> list[FileRecord]:
    sql, args = "SELECT * FROM files WHERE 1=1", []
    if purpose:
        sql += " AND purpose=?"
        args.append(purpose)
    direction = "ASC" if order == "asc" else "DESC"
    sql += f" ORDER BY created_at {direction}, rowid {direction}"
    recs = [_record(r) for r in db.query(sql, tuple(args))]
    if after:
        ids = [r.id for r in recs]
        recs = recs[ids.index(after) + 1:] if after in ids else []
    return recs[:limit]


def delete(file_id: str) -> FileRecord:
    rec = get(file_id)
    db.execute("DELETE FROM files WHERE id=?", (file_id,))
    rec.path.unlink(missing_ok=True)
    return rec


def content(file_id: str) -> bytes:
    return get(file_id).path.read_bytes()

