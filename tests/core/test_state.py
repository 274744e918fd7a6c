"""The state home, atomic writes, migrations, the shared message type and the CLI edge."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tunery import db
from tunery.chat import ChatMessage, Conversation, Role, content_text
from tunery.home import atomic_dir, atomic_write_text, home


def test_home_follows_env_and_has_folders(tunery_home):
    h = home()
    assert h.root == tunery_home.resolve()
    for sub in ("files", "models", "jobs", "runs"):
        assert (tunery_home / sub).is_dir()


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "a.txt"
    atomic_write_text(target, "one")
    import os

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write_text(target, "two")
    assert target.read_text() == "one"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_atomic_dir_appears_whole_or_not_at_all(tmp_path):
    final = tmp_path / "model"
    with pytest.raises(RuntimeError), atomic_dir(final) as tmp:
        (tmp / "half").write_text("x")
        raise RuntimeError("crash")
    assert not final.exists() and list(tmp_path.iterdir()) == []
    with atomic_dir(final) as tmp:
        (tmp / "weights").write_text("v1")
    with atomic_dir(final) as tmp:
        (tmp / "weights").write_text("v2")
    assert (final / "weights").read_text() == "v2" and len(list(tmp_path.iterdir())) == 1


def test_atomic_writes_get_the_mode_of_any_new_file(tmp_path):
    """Not mkstemp's private 0600 (or mkdtemp's 0700): a scrubbed file, a report or an export is
    as readable as what ``cp`` would write under the same umask."""
    import os

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        with atomic_dir(tmp_path / "report") as tmp:
            atomic_write_text(tmp / "summary.json", "{}")
        os.umask(0o077)
        atomic_write_text(tmp_path / "private.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "report").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "report" / "summary.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "private.txt").stat().st_mode & 0o777 == 0o600
    # a file replaced keeps the mode its owner gave it
    (tmp_path / "a.txt").chmod(0o640)
    atomic_write_text(tmp_path / "a.txt", "y")
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o640 and (tmp_path / "a.txt").read_text() == "y"


def test_a_new_home_is_the_users_alone(tmp_path, monkeypatch):
    """Its files get the umask's mode (an upload may be personal data): the home folder keeps
    others out; one that exists keeps the mode its owner gave it."""
    import os

    from tunery.home import home

    monkeypatch.setenv("TUNERY_HOME", str(tmp_path / "new" / "home"))
    old = os.umask(0o022)
    try:
        root = home().root
    finally:
        os.umask(old)
    assert root.stat().st_mode & 0o777 == 0o700
    (tmp_path / "shared").mkdir(mode=0o750)
    monkeypatch.setenv("TUNERY_HOME", str(tmp_path / "shared"))
    assert home().root.stat().st_mode & 0o777 == 0o750


def test_a_path_that_cannot_be_written_says_why(tmp_path, monkeypatch):
    import errno
    import tempfile

    from tunery.home import CannotWrite

    (tmp_path / "model").mkdir()
    with pytest.raises(CannotWrite, match="it is a folder"):  # the rename onto a folder
        atomic_write_text(tmp_path / "model", "x")
    (tmp_path / "f").write_text("x")
    with pytest.raises(CannotWrite, match=f"cannot write {tmp_path}/f/a/b: {tmp_path}/f is a file, not a folder"):
        atomic_write_text(tmp_path / "f" / "a" / "b", "x")

    def denied(*_a, **_k):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tempfile, "mkdtemp", denied)  # replacing a folder that exists, in a folder we may not write
    with pytest.raises(CannotWrite) as e, atomic_dir(tmp_path / "model"):
        pass
    assert str(e.value) == f"cannot write {tmp_path}/model: the folder {tmp_path} cannot be written (Permission denied)"
    assert isinstance(e.value, OSError)  # caches that tolerate a read-only place still catch it


def test_migrations_run_once_in_order_and_wal():
    conn = db.connect()
    names = [r[0] for r in conn.execute("SELECT name FROM schema_migrations ORDER BY rowid")]
    assert names == [n for n, _ in db.MIGRATIONS]
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.migrate(conn) == []  # nothing left to apply
    extra = [*db.MIGRATIONS, ("9999_test", "CREATE TABLE t (x INTEGER);")]
    assert db.migrate(conn, extra) == ["9999_test"]
    assert db.migrate(conn, extra) == []


def test_a_home_switched_while_connecting_is_not_marked_migrated(tmp_path, monkeypatch):
    """A thread that opened the old home's database while another switched TUNERY_HOME must not
    mark the new home's database migrated (seen in CI: "no such table: models" in the next test)."""
    monkeypatch.setenv("TUNERY_HOME", str(tmp_path / "old"))
    db.query("SELECT 1 FROM jobs")  # the old home: migrated
    opened = db._connect

    def switch_after_opening(path):
        conn = opened(path)
        monkeypatch.setenv("TUNERY_HOME", str(tmp_path / "new"))  # another thread's test begins
        return conn

    monkeypatch.setattr(db, "_connect", switch_after_opening)
    db.connect().close()
    monkeypatch.setattr(db, "_connect", opened)
    assert db.query("SELECT count(*) FROM models")[0][0] == 0  # the new home's tables exist


def test_failed_migration_rolls_back(tmp_path):
    conn = sqlite3.connect(tmp_path / "x.db", isolation_level=None)
    bad = [("0001_ok", "CREATE TABLE a (x);"), ("0002_bad", "CREATE TABLE b (x); CREATE TABLE a (y);")]
    with pytest.raises(sqlite3.OperationalError):
        db.migrate(conn, bad)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "b" not in tables and "a" in tables
    assert [r[0] for r in conn.execute("SELECT name FROM schema_migrations")] == ["0001_ok"]


def test_conversation_round_trip_and_system_override():
    conv = Conversation.from_dicts([{"role": "system", "content": "old"}, {"role": "user", "content": "hi"},
                                    {"role": "assistant", "content": "yo", "weight": 0}])
    assert conv.system == "old" and not conv.messages[2].trainable
    assert conv.to_dicts(with_weights=True)[2] == {"role": "assistant", "content": "yo", "weight": 0}
    new = conv.with_system("new")
    assert new.messages[0] == ChatMessage(Role.SYSTEM, "new") and len(new) == 3
    assert content_text([{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]) == "ab"
    with pytest.raises(ValueError):
        content_text([{"type": "image_url"}])


def _cli(*args: str, home_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tunery.cli.main", *args], capture_output=True, text=True,
                          env={"TUNERY_HOME": str(home_dir), "PATH": "/usr/bin:/bin", "COLUMNS": "200"})


def test_cli_version_help_and_clean_errors(tunery_home):
    r = _cli("version", home_dir=tunery_home)
    assert r.returncode == 0 and "tunery 0.1.0" in r.stdout and "torch" in r.stdout
    r = _cli("--help", home_dir=tunery_home)
    assert r.returncode == 0 and "finetune" in r.stdout and "models" in r.stdout
    r = _cli("models", "show", "nope", home_dir=tunery_home)
    assert r.returncode == 1 and "Traceback" not in r.stderr and "unknown model 'nope'" in r.stderr
    r = _cli("models", "list", home_dir=tunery_home)
    assert r.returncode == 0 and "tunery models pull" in r.stdout


def test_cli_a_mistyped_command_is_named_with_the_close_ones(tunery_home):
    r = _cli("flows", "--help", home_dir=tunery_home)  # the root group loads its commands lazily
    assert r.returncode == 2 and "No such command 'flows'. Did you mean 'flow'?" in r.stderr
    r = _cli("jobs", "pase", "x", home_dir=tunery_home)
    assert r.returncode == 2 and r.stderr.count("Did you mean 'pause'?") == 1
    r = _cli("zzz", home_dir=tunery_home)
    assert r.returncode == 2 and "No such command 'zzz'." in r.stderr and "Did you mean" not in r.stderr


def test_cli_error_is_one_line_with_its_brackets(tunery_home, tmp_path):
    """An error is one line even in a log file (not cut at 80 columns), and square brackets in it
    (a file name, an evaluator's [COLUMN=VALUE]) are text, not rich markup that eats them or, for
    a '[/]', fails with a traceback."""
    for name in ("nope[/].jsonl", "nope[red].jsonl"):
        missing = tmp_path / ("a-rather-long-folder-name-for-the-data" * 2) / name
        r = _cli("data", "validate", str(missing), home_dir=tunery_home)
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
        assert r.stderr == f"error: file not found: {missing}\n"


def test_root_help_is_each_commands_own_first_sentence():
    """``tunery --help`` lists HELP (so it need not import every command); it must say what the
    commands' own docstrings say."""
    import click

    from tunery.cli.main import COMMANDS, HELP, cli

    ctx = click.Context(cli)
    assert set(HELP) == set(COMMANDS)
    for name in COMMANDS:
        assert HELP[name] == cli.get_command(ctx, name).get_short_help_str(limit=1000), name


def test_group_help_wraps_command_summaries_instead_of_cutting_them():
    from click.testing import CliRunner

    from tunery.cli.main import cli

    for group in (["models"], ["data"], ["jobs"], ["flow"], ["flow", "connection"], ["run"], ["eval"],
                  ["deployments"]):
        out = CliRunner().invoke(cli, [*group, "--help"], terminal_width=80).output
        assert "Commands:" in out, (group, out)
        commands = out.split("Commands:")[1]
        assert "..." not in commands, (group, commands)
    out = CliRunner().invoke(cli, ["jobs", "--help"], terminal_width=80).output
    assert "until it ends or is paused." in " ".join(out.split())
