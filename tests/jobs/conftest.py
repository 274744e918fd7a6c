"""The state databases the job tests run on: the ``backend`` fixture gives each test SQLite in its
home, then a new database on a throw-away PostgreSQL server (``initdb`` + ``pg_ctl`` in a temporary
folder, or the server at ``TUNERY_TEST_DATABASE_URL``; ``TUNERY_REQUIRE_POSTGRES=1`` fails rather
than skips without one)."""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

PG_BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _no_server(reason: str) -> None:
    """Skip the PostgreSQL tests, or fail them where they must run (CI: ``TUNERY_REQUIRE_POSTGRES=1``)."""
    if os.environ.get("TUNERY_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"TUNERY_REQUIRE_POSTGRES=1: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_server():
    """The URL of a PostgreSQL server's ``postgres`` database, as a superuser: a throw-away
    server in a temporary folder, stopped and removed at the end of the session."""
    if url := os.environ.get("TUNERY_TEST_DATABASE_URL"):
        yield url
        return
    if not PG_BIN:
        _no_server("PostgreSQL server binaries are absent (apt-get install postgresql, or set "
                    "TUNERY_TEST_DATABASE_URL to a server this test may create databases on)")
    bindir = Path(PG_BIN[-1]).parent
    as_user: list[str] = []
    tmp = Path(tempfile.mkdtemp(prefix="tunery-pg-"))
    if os.geteuid() == 0:  # initdb refuses to run as root: run the server as the postgres user
        if shutil.which("runuser") is None or subprocess.run(["id", "postgres"], capture_output=True).returncode:
            _no_server("running as root without a postgres user to run the PostgreSQL server as")
        shutil.chown(tmp, "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    run = dict(check=True, capture_output=True, cwd=tmp)
    subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(tmp / "data"), "-A", "trust", "-U", "tunery",
                    "-E", "UTF8", "--locale=C", "--no-sync"], **run)
    options = f"-p {port} -k {tmp} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off"
    subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(tmp / "data"), "-l", str(tmp / "log"),
                    "-o", options, "-w", "start"], **run)
    try:
        yield f"postgresql://tunery@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(tmp / "data"), "-m", "immediate", "stop"],
                       capture_output=True, cwd=tmp)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request, monkeypatch) -> str:
    """The state database of this test: SQLite in its home, or a new PostgreSQL database."""
    if request.param == "sqlite":
        monkeypatch.delenv("TUNERY_DATABASE_URL", raising=False)
        yield "sqlite"
        return
    import psycopg

    server = request.getfixturevalue("postgres_server")
    name = f"tunery_test_{secrets.token_hex(6)}"
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    monkeypatch.setenv("TUNERY_DATABASE_URL", server.rsplit("/", 1)[0] + "/" + name)
    try:
        yield "postgresql"
    finally:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
