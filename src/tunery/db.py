"""The state database: SQLite in WAL mode under the home folder, its schema created and upgraded
by ordered, named migrations (each runs once, in order, recorded in ``schema_migrations``)."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tunery.home import home

# Append only: never edit or reorder a migration that has shipped.
MIGRATIONS: list[tuple[str, str]] = [
    ("0001_models", """
        CREATE TABLE models (
            id TEXT PRIMARY KEY,
            kind TEXT NOT NULL CHECK (kind IN ('base', 'fine-tuned')),
            parent TEXT,
            path TEXT NOT NULL,
            source TEXT NOT NULL,
            method TEXT,
            created_at INTEGER NOT NULL,
            meta TEXT NOT NULL DEFAULT '{}'
        );
    """),
    ("0002_files", """
        CREATE TABLE files (
            id TEXT PRIMARY KEY,
            filename TEXT NOT NULL,
            purpose TEXT NOT NULL,
            bytes INTEGER NOT NULL,
            path TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            meta TEXT NOT NULL DEFAULT '{}'
        );
    """),
    ("0003_jobs", """
        CREATE TABLE jobs (
            id TEXT PRIMARY KEY,
            status TEXT NOT NULL,
            model TEXT NOT NULL,
            fine_tuned_model TEXT,
            training_file TEXT NOT NULL,
            validation_file TEXT,
            hyperparameters TEXT NOT NULL DEFAULT '{}',
            method TEXT NOT NULL DEFAULT '{}',
            seed INTEGER NOT NULL,
            suffix TEXT,
            metadata TEXT,
            created_at INTEGER NOT NULL,
            started_at INTEGER,
            finished_at INTEGER,
            estimated_finish INTEGER,
            trained_tokens INTEGER,
            result_files TEXT NOT NULL DEFAULT '[]',
            error TEXT,
            pid INTEGER,
            attempts INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX jobs_status ON jobs(status);
        CREATE TABLE job_events (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL UNIQUE,
            job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
            created_at INTEGER NOT NULL,
            level TEXT NOT NULL,
            type TEXT NOT NULL,
            message TEXT NOT NULL,
            data TEXT
        );
        CREATE INDEX job_events_job ON job_events(job_id, seq);
        CREATE TABLE checkpoints (
            id TEXT PRIMARY KEY,
            job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
            step INTEGER NOT NULL,
            path TEXT NOT NULL,
            fine_tuned_model_checkpoint TEXT NOT NULL,
            metrics TEXT NOT NULL DEFAULT '{}',
            created_at INTEGER NOT NULL
        );
        CREATE INDEX checkpoints_job ON checkpoints(job_id, step);
    """),
    ("0004_deployments", """
        CREATE TABLE deployments (
            name TEXT PRIMARY KEY,
            model TEXT NOT NULL,
            tpm INTEGER,
            content_filter TEXT NOT NULL DEFAULT 'default',
            created_at INTEGER NOT NULL,
            meta TEXT NOT NULL DEFAULT '{}'
        );
    """),
    ("0005_runs", """
        CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            flow TEXT NOT NULL,
            status TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            finished_at INTEGER,
            path TEXT NOT NULL,
            meta TEXT NOT NULL DEFAULT '{}'
        );
    """),
    ("0006_job_training_method", """
        ALTER TABLE jobs ADD COLUMN training_method TEXT NOT NULL DEFAULT 'lora';
        ALTER TABLE jobs ADD COLUMN config TEXT;
    """),
    # What the model registry needs to resolve a checkpoint name, so that it reads this view rather
    # than the tables of the job system (which sits above it).
    ("0007_model_checkpoints", """
        CREATE VIEW model_checkpoints AS
        SELECT c.fine_tuned_model_checkpoint AS id, c.path, c.step, c.created_at,
               j.model AS parent, j.training_method AS method, j.id AS job_id
        FROM checkpoints c JOIN jobs j ON c.job_id = j.id;
    """),
]


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def migrate(conn: sqlite3.Connection, migrations: list[tuple[str, str]] | None = None) -> list[str]:
    """Apply the migrations not yet recorded; returns the names applied."""
    migrations = MIGRATIONS if migrations is None else migrations
    conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at INTEGER)")
    applied = {r[0] for r in conn.execute("SELECT name FROM schema_migrations")}
    done = []
    for name, sql in migrations:
        if name in applied:
            continue
        conn.execute("BEGIN IMMEDIATE")
        try:
            # re-check inside the write lock: another process may have just applied it
            if conn.execute("SELECT 1 FROM schema_migrations WHERE name=?", (name,)).fetchone():
                conn.execute("COMMIT")
                continue
            for stmt in _statements(sql):
                conn.execute(stmt)
            conn.execute("INSERT INTO schema_migrations VALUES (?, ?)", (name, int(time.time())))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        done.append(name)
    return done


def _statements(sql: str) -> Iterator[str]:
    for stmt in sql.split(";"):
        if stmt.strip():
            yield stmt


_migrated: set[Path] = set()


def connect() -> sqlite3.Connection:
    """A new connection to the current home's database, migrated to the latest schema."""
    path = home().db_path
    conn = _connect(path)
    if path not in _migrated:
        migrate(conn)
        _migrated.add(path)
    return conn


def query(sql: str, params: tuple | dict = ()) -> list[sqlite3.Row]:
    conn = connect()
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def execute(sql: str, params: tuple | dict = ()) -> int:
    """Run one write statement; returns the number of rows changed."""
    conn = connect()
    try:
        return conn.execute(sql, params).rowcount
    finally:
        conn.close()


@contextmanager
def transaction() -> Iterator[sqlite3.Connection]:
    """A connection in one write transaction, for a change made of several statements: they are
    all committed when the block ends, or none is (an exception rolls them all back), and no other
    writer interleaves (the write lock is taken at the start). Reads on other connections do not
    see the change until the commit; read back through this connection."""
    conn = connect()
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    finally:
        conn.close()


def dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def loads(text: str | None, default: Any = None) -> Any:
    return default if text is None else json.loads(text)


def now() -> int:
    return int(time.time())


def row_to_dict(row: sqlite3.Row, json_fields: tuple[str, ...] = (), *,
                decode: Callable[[str | None], Any] = loads) -> dict[str, Any]:
    d = dict(row)
    for k in json_fields:
        if k in d:
            d[k] = decode(d[k])
    return d
