"""The state database: SQLite in WAL mode under the home folder, or PostgreSQL when
``TUNERY_DATABASE_URL`` names one (for workers on several machines); its schema created and upgraded
by ordered, named migrations (each runs once, in order, recorded in ``schema_migrations``), the
same for both.

Callers write SQLite's SQL and get ``sqlite3.Row``-like rows from either; the few translations
PostgreSQL needs (placeholders, column types, upserts) are made here, in one place."""

from __future__ import annotations

import functools
import json
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tunery.errors import TuneryError
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
    # Who runs a job and until when: a worker claims a queued job by writing its id and a lease
    # expiry, renews the expiry while it trains, and any worker may resume a job whose lease ran out.
    ("0008_job_leases", """
        ALTER TABLE jobs ADD COLUMN worker_id TEXT;
        ALTER TABLE jobs ADD COLUMN lease_expires_at REAL;
        CREATE INDEX jobs_queue ON jobs(status, created_at);
    """),
    # What a model or a file is still needed by, so that the registry and the file store refuse to
    # delete it without reading the tables of the layers above them: a job that has not ended
    # (its status not in tunery.jobs.store.TERMINAL) starts from its model and reads its files; a
    # deployment serves its model.
    ("0009_model_and_file_uses", """
        CREATE VIEW model_uses AS
        SELECT model, 'fine-tuning job' AS user_kind, id AS user_name, status FROM jobs
        WHERE status NOT IN ('succeeded', 'failed', 'cancelled')
        UNION ALL
        SELECT model, 'deployment' AS user_kind, name AS user_name, NULL AS status FROM deployments;
        CREATE VIEW file_uses AS
        SELECT training_file AS file_id, 'training_file' AS role, id AS job_id, status FROM jobs
        WHERE status NOT IN ('succeeded', 'failed', 'cancelled')
        UNION ALL
        SELECT validation_file AS file_id, 'validation_file' AS role, id AS job_id, status FROM jobs
        WHERE validation_file IS NOT NULL AND status NOT IN ('succeeded', 'failed', 'cancelled');
    """),
    # Where a deleted file stood in the list, so that a page cursor (``after``) naming it still
    # says where the next page starts: the SDK's `for f in client.files.list(): delete(f.id)`
    # asks for the next page after a file it has just deleted.
    ("0010_deleted_files", """
        CREATE TABLE deleted_files (
            id TEXT PRIMARY KEY,
            purpose TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            seq BIGINT NOT NULL
        );
    """),
]

# What PostgreSQL adds to a migration: statements SQLite has no counterpart for, run after the
# shared ones (whole: a function body holds semicolons).
_POSTGRES_EXTRA: dict[str, list[str]] = {
    # wake the workers (LISTEN tunery_jobs) when a job needs one: created, queued again, cancelled
    "0008_job_leases": [
        """CREATE FUNCTION tunery_jobs_notify() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN PERFORM pg_notify('tunery_jobs', NEW.status); RETURN NULL; END $$""",
        """CREATE TRIGGER jobs_notify AFTER INSERT OR UPDATE OF status ON jobs FOR EACH ROW
           WHEN (NEW.status IN ('validating_files', 'queued', 'cancelled')) EXECUTE FUNCTION tunery_jobs_notify()""",
    ],
}

JOBS_CHANNEL = "tunery_jobs"


def url() -> str | None:
    """The PostgreSQL database to use (``TUNERY_DATABASE_URL``), or None for SQLite in the home."""
    value = os.environ.get("TUNERY_DATABASE_URL", "").strip()
    if not value:
        return None
    if not value.startswith(("postgresql://", "postgres://")):
        raise TuneryError(f"TUNERY_DATABASE_URL must be a postgresql:// URL, not {value.split(':', 1)[0]!r}",
                          param="TUNERY_DATABASE_URL", hint="unset it to use SQLite in TUNERY_HOME")
    return value


def backend() -> str:
    """``"postgresql"`` or ``"sqlite"``: which database :func:`connect` opens."""
    return "postgresql" if url() else "sqlite"


# -- SQLite -----------------------------------------------------------------------------------

_SQLITE_MIN = (3, 35)  # UPDATE ... RETURNING, which claims and releases use


def _connect(path: Path) -> sqlite3.Connection:
    if sqlite3.sqlite_version_info < _SQLITE_MIN:
        raise TuneryError(f"SQLite {sqlite3.sqlite_version} is too old: tunery needs "
                          f"{'.'.join(map(str, _SQLITE_MIN))} or later",
                          hint="use a Python built with a newer SQLite (python.org, conda, or a newer OS), "
                               "or set TUNERY_DATABASE_URL to a PostgreSQL database")
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    # switching a new database to WAL needs it alone for a moment; when two connections open it at
    # once (a server and its worker on a new home) SQLite may answer "locked" at once, without
    # waiting, to avoid a deadlock: try again, within the same 30 s a busy database is given
    deadline = time.monotonic() + 30
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                conn.close()
                raise
            time.sleep(0.05)
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


# -- PostgreSQL: spoken to as SQLite is, so that no caller knows which it has ----------------

class _Row(tuple):
    """A row as ``sqlite3.Row`` gives it: by index, by column name, and ``dict(row)``. The
    ``rowid`` column every table has here (as SQLite gives every table one) is left out of
    ``keys()``, as SQLite leaves it out of ``SELECT *``."""

    _index: dict[str, int]

    def __getitem__(self, key):  # type: ignore[override]
        return tuple.__getitem__(self, self._index[key] if isinstance(key, str) else key)

    def keys(self) -> list[str]:
        return [k for k in self._index if k != "rowid"]


def _row_factory(cursor):
    index = {d.name: i for i, d in enumerate(cursor.description or ())}
    row_type = type("Row", (_Row,), {"_index": index})
    return row_type


class PgConnection:
    """A PostgreSQL connection (autocommit) with ``sqlite3.Connection``'s ``execute``: ``?`` and
    ``:name`` placeholders, ``INSERT OR REPLACE``, rows like ``sqlite3.Row``, and a constraint
    violation raised as ``sqlite3.IntegrityError``, the error callers already catch."""

    def __init__(self, conn) -> None:
        self.raw = conn

    def execute(self, sql: str, params: tuple | list | dict = ()):
        import psycopg

        text, args = _to_postgres(sql, bool(params), isinstance(params, dict)), (params or None)
        try:
            return self.raw.execute(text, args)
        except psycopg.IntegrityError as e:
            raise sqlite3.IntegrityError(str(e)) from e

    def close(self) -> None:
        self.raw.close()


_QMARK = re.compile(r"'(?:[^']|'')*'|\?|%|:([A-Za-z_]\w*)")
_UPSERT = re.compile(r"^\s*INSERT\s+OR\s+REPLACE\s+INTO\s+(\w+)\s*\(([^)]*)\)", re.I)


@functools.lru_cache(maxsize=512)
def _to_postgres(sql: str, has_params: bool, named: bool) -> str:
    """``sql`` as psycopg takes it. ``INSERT OR REPLACE INTO t (a, b, ...)`` becomes an upsert on
    the first column (every table's primary key comes first)."""
    if has_params:
        def sub(m: re.Match) -> str:
            tok = m.group(0)
            if tok == "?":
                return "%s"
            if tok == "%":
                return "%%"
            if tok.startswith(":"):
                return f"%({m.group(1)})s" if named else tok
            return tok.replace("%", "%%")  # a string literal
        sql = _QMARK.sub(sub, sql)
    if m := _UPSERT.match(sql):
        cols = [c.strip() for c in m.group(2).split(",")]
        sets = ", ".join(f"{c}=EXCLUDED.{c}" for c in cols[1:])
        sql = f"INSERT INTO{sql[m.start(1) - 1:]} ON CONFLICT ({cols[0]}) DO UPDATE SET {sets}"
    return sql


def _postgres_ddl(stmt: str) -> str:
    """A migration statement in PostgreSQL's types; each new table gets SQLite's implicit
    ``rowid`` (insertion order, which queries use to break ties)."""
    stmt = re.sub(r"\bINTEGER\s+PRIMARY\s+KEY\s+AUTOINCREMENT\b", "BIGSERIAL PRIMARY KEY", stmt, flags=re.I)
    stmt = re.sub(r"\bINTEGER\b", "BIGINT", stmt)
    stmt = re.sub(r"\bREAL\b", "DOUBLE PRECISION", stmt)
    if re.match(r"\s*CREATE\s+TABLE\b", stmt, re.I):
        close = stmt.rindex(")")
        stmt = stmt[:close].rstrip() + ",\n            rowid BIGSERIAL\n        " + stmt[close:]
    return stmt


# A worker cut off from the server must see it fail within seconds, not hang in a renewal while its
# lease runs out: a connect timeout, TCP keepalives, and a statement timeout (all unless the URL sets them).
_PG_DEFAULTS = {"connect_timeout": "10", "keepalives": "1", "keepalives_idle": "10", "keepalives_interval": "5",
                "keepalives_count": "3", "tcp_user_timeout": "30000", "options": "-c statement_timeout=30000"}


def _pg_connect(address: str) -> PgConnection:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    given = conninfo_to_dict(address)
    extra = {k: v for k, v in _PG_DEFAULTS.items() if k not in given}
    return PgConnection(psycopg.connect(address, autocommit=True, row_factory=_row_factory, **extra))


_local = threading.local()


def _pg_cached(address: str) -> PgConnection:
    """This thread's connection (one per thread and process: a connection is neither shared
    between threads nor inherited across a fork); reopened when the server dropped it."""
    key = (address, os.getpid())
    conn = getattr(_local, "pg", None)
    if conn is None or conn[0] != key or conn[1].raw.closed or conn[1].raw.broken:
        conn = (key, _pg_connect(address))
        _local.pg = conn
    return conn[1]


# -- both -------------------------------------------------------------------------------------

def migrate(conn: sqlite3.Connection | PgConnection, migrations: list[tuple[str, str]] | None = None) -> list[str]:
    """Apply the migrations not yet recorded; returns the names applied."""
    migrations = MIGRATIONS if migrations is None else migrations
    postgres = isinstance(conn, PgConnection)
    create = "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at INTEGER)"
    if postgres:  # under the lock: two processes creating it at once on a new database collide
        conn.execute("BEGIN")
        try:
            conn.execute("SELECT pg_advisory_xact_lock(20260101)")
            conn.execute(create.replace("INTEGER", "BIGINT"))
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    else:
        conn.execute(create)
    applied = {r[0] for r in conn.execute("SELECT name FROM schema_migrations")}
    done = []
    for name, sql in migrations:
        if name in applied:
            continue
        if postgres:
            conn.execute("BEGIN")
            conn.execute("SELECT pg_advisory_xact_lock(20260101)")  # one migrating process at a time
        else:
            conn.execute("BEGIN IMMEDIATE")
        try:
            # re-check inside the write lock: another process may have just applied it
            if conn.execute("SELECT 1 FROM schema_migrations WHERE name=?", (name,)).fetchone():
                conn.execute("COMMIT")
                continue
            for stmt in _statements(sql):
                conn.execute(_postgres_ddl(stmt) if postgres else stmt)
            for stmt in _POSTGRES_EXTRA.get(name, []) if postgres else []:
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


_migrated: set[Path | str] = set()


def connect() -> sqlite3.Connection | PgConnection:
    """A new connection to the state database (PostgreSQL at ``TUNERY_DATABASE_URL``, else SQLite
    in the home), migrated to the latest schema. Close it when done."""
    address = url()
    path = None if address else home().db_path
    conn = _pg_connect(address) if address else _connect(path)
    _ensure_migrated(conn, address or path)
    return conn


def _ensure_migrated(conn, key: str | Path) -> None:
    """Migrate ``conn`` once per process for ``key``, the address it was opened with (not the
    home read again: in tests another thread may switch ``TUNERY_HOME`` in between, which marked
    a new home's database migrated while its tables did not exist)."""
    if key not in _migrated:
        migrate(conn)
        _migrated.add(key)


@contextmanager
def _connection() -> Iterator[sqlite3.Connection | PgConnection]:
    """A connection for one call: SQLite's are cheap to open (a file), PostgreSQL's are kept,
    one per thread."""
    address = url()
    if address is None:
        conn = connect()
        try:
            yield conn
        finally:
            conn.close()
        return
    conn = _pg_cached(address)
    _ensure_migrated(conn, address)
    yield conn


def query(sql: str, params: tuple | dict = (), *, conn: sqlite3.Connection | PgConnection | None = None
          ) -> list[sqlite3.Row]:
    """The rows one statement reads. ``conn``: read through that connection, one in
    :func:`transaction` (it sees the transaction's own writes, and its row locks hold), instead of
    a connection of its own."""
    if conn is not None:
        return conn.execute(sql, params).fetchall()
    with _connection() as own:
        return own.execute(sql, params).fetchall()


def execute(sql: str, params: tuple | dict = (), *, conn: sqlite3.Connection | PgConnection | None = None) -> int:
    """Run one write statement; returns the number of rows changed. ``conn``: as for :func:`query`,
    the write then commits or rolls back with that transaction."""
    if conn is not None:
        return conn.execute(sql, params).rowcount
    with _connection() as own:
        return own.execute(sql, params).rowcount


@contextmanager
def transaction() -> Iterator[sqlite3.Connection | PgConnection]:
    """A connection in one write transaction, for a change made of several statements: they are
    all committed when the block ends, or none is (an exception rolls them all back), and no other
    writer interleaves (the write lock is taken at the start on SQLite; PostgreSQL locks the rows
    written, and those read with :func:`row_lock`). Reads on other connections do not see the
    change until the commit; read back through this connection."""
    with _connection() as conn:
        conn.execute("BEGIN" if isinstance(conn, PgConnection) else "BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


def clock() -> str:
    """An SQL expression: the database's time, in seconds since the epoch (fractional). Leases are
    written and compared with it, never with a machine's own clock: workers on machines whose
    clocks disagree still agree on when a lease runs out."""
    if url():
        return "EXTRACT(EPOCH FROM clock_timestamp())::float8"
    return "((julianday('now') - 2440587.5) * 86400.0)"


def skip_locked() -> str:
    """What ends a ``SELECT`` that picks a row to claim: on PostgreSQL the row is locked and rows
    other claims hold are skipped, so that concurrent claims take different rows without waiting;
    SQLite needs nothing (its write transaction already runs alone)."""
    return " FOR UPDATE SKIP LOCKED" if url() else ""


def row_lock(mode: str = "update") -> str:
    """What ends a ``SELECT`` inside :func:`transaction` that reads a row the transaction goes on
    to rely on, so that no other transaction changes it before this one ends: on PostgreSQL the rows
    read are locked until the commit, ``"update"`` (``FOR UPDATE``) to change or delete them, others
    wait; ``"share"`` (``FOR SHARE``) to keep them as they are, other sharers go on. A row deleted
    meanwhile is not read at all. SQLite needs nothing: :func:`transaction` already holds its
    write lock, so no other writer runs until it ends."""
    if mode not in ("update", "share"):
        raise ValueError(f"row_lock mode must be 'update' or 'share', not {mode!r}")
    return f" FOR {mode.upper()}" if url() else ""


def json_has(column: str) -> str:
    """An SQL condition: the JSON object in ``column`` holds, at the key given as the condition's
    first parameter, the string given as its second (keys and values are parameters, never SQL)."""
    if url():
        return f"(CAST({column} AS jsonb) ->> ?) = ?"
    return f"EXISTS (SELECT 1 FROM json_each({column}) WHERE key = ? AND value = ? AND type = 'text')"


def json_int(column: str, key: str) -> str:
    """An SQL expression: the integer at ``key`` of the JSON text in ``column``."""
    if url():
        return f"CAST((CAST({column} AS jsonb) ->> '{key}') AS BIGINT)"
    return f"CAST(json_extract({column}, '$.{key}') AS INTEGER)"


class Listener:
    """Wake-ups sent on a channel (PostgreSQL's LISTEN/NOTIFY). SQLite sends none: there
    :meth:`wait` just waits, and the waiting side polls."""

    def __init__(self, channel: str) -> None:
        self._conn = None
        if address := url():
            self._conn = _pg_connect(address)
            self._conn.raw.execute(f"LISTEN {channel}")

    @property
    def notifies(self) -> bool:
        """Whether notifications come (else the waiting side must poll)."""
        return self._conn is not None

    def wait(self, timeout: float, stop: threading.Event) -> bool:
        """Wait up to ``timeout`` seconds for a notification or ``stop``; True if notified."""
        if self._conn is None:
            stop.wait(timeout)
            return False
        deadline = time.monotonic() + timeout
        while not stop.is_set() and (left := deadline - time.monotonic()) > 0:
            try:  # in slices, so that a stop is seen within half a second
                if any(True for _ in self._conn.raw.notifies(timeout=min(left, 0.5), stop_after=1)):
                    return True
            except Exception:  # the server went away: poll until it is back
                stop.wait(left)
                return False
        return False

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


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
