"""Several workers on one queue (issue 20, item 4), on both state databases (the ``backend``
fixture of tests/jobs/conftest.py): SQLite in the home, and a throw-away PostgreSQL server. Claims are exclusive, leases run on the database's clock and are renewed while a round is
slow, a lease that runs out hands the job to another worker which resumes it from its checkpoint,
3 workers run 30 jobs each exactly once, and the job of a SIGKILLed worker is finished by another.

Only the lease takeover and the SIGKILL tests train (the tiny model); elsewhere the training
process is a stub that finishes its job as the runner does, since starting 30 real ones (each
importing torch) would take minutes and prove nothing more about the queue."""

from __future__ import annotations

import gc
import os
import secrets
import socket
import subprocess
import sys
import threading
import time

import pytest

from support_workers import end_worker as _end
from support_workers import locked as _locked
from support_workers import messages as _messages
from support_workers import stub_command as _stub_command
from support_workers import until as _until
from support_workers import worker_process as _worker_process
from tunery import db
from tunery.data import files
from tunery.jobs import Worker, create_job, get_job, metrics, store


def _queued(n: int) -> list[str]:
    """``n`` queued jobs, straight into the store (the claim does not read their request)."""
    ids = [store.new_id("ftjob") for _ in range(n)]
    for i, job_id in enumerate(ids):
        db.execute("INSERT INTO jobs (id, status, model, training_file, seed, created_at) VALUES (?,?,?,?,?,?)",
                   (job_id, "queued", "tiny-random", "file-x", i, db.now()))
    return ids


def _expire(job_id: str) -> None:
    db.execute(f"UPDATE jobs SET lease_expires_at={db.clock()} - 1 WHERE id=?", (job_id,))


def test_the_backend_under_test_is_the_one_in_use(backend):
    assert db.backend() == backend
    assert [r["name"] for r in db.query("SELECT name FROM schema_migrations ORDER BY name")] == \
        [name for name, _ in db.MIGRATIONS]


def test_claims_are_exclusive_under_contention(backend):
    ids = _queued(60)
    claimed: dict[str, list[str]] = {}
    start = threading.Barrier(6)

    def claim_all(worker_id: str) -> None:
        got = claimed.setdefault(worker_id, [])
        start.wait()
        while (job := store.claim_next(worker_id, 30)) is not None:
            got.append(job["id"])

    threads = [threading.Thread(target=claim_all, args=(f"w{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    every = [j for got in claimed.values() for j in got]
    assert sorted(every) == sorted(ids)  # each job once: none twice, none left
    rows = {r["id"]: r for r in db.query("SELECT id, status, worker_id, attempts FROM jobs")}
    for worker_id, got in claimed.items():
        assert all(rows[j]["worker_id"] == worker_id and rows[j]["status"] == "running" for j in got)
    assert {r["attempts"] for r in rows.values()} == {1}


def test_a_worker_acts_only_on_jobs_it_holds_or_whose_lease_ran_out(backend):
    mine, theirs, expired = _queued(3)
    assert [store.claim_next(w, 30)["id"] for w in ("me", "them", "gone")] == [mine, theirs, expired]  # oldest first
    _expire(expired)
    assert {j["id"] for j in store.lost_jobs("me")} == {mine, expired}
    assert store.release(theirs, "me", max_attempts=3, message="x") is None  # held by a live worker
    assert not store.renew_lease(theirs, "me", 30) and store.renew_lease(theirs, "them", 30)
    assert store.release(expired, "me", max_attempts=3, message="lost") == "queued"
    assert store.release(expired, "them", max_attempts=3, message="lost") is None  # done already, once
    assert get_job(theirs)["status"] == "running" and get_job(expired)["status"] == "queued"
    assert store.release(mine, "me", max_attempts=1, message="lost") == "failed"  # out of attempts
    assert get_job(mine)["error"]["code"] == "training_error"


def test_leases_run_on_the_database_s_clock_not_the_machine_s(backend, monkeypatch):
    real = time.time
    ahead_job, behind_job = _queued(2)
    assert store.claim_next("them", 30)["id"] == ahead_job
    monkeypatch.setattr(time, "time", lambda: real() + 3600)  # this machine's clock is an hour ahead
    assert store.lost_jobs("me") == [] and store.release(ahead_job, "me", max_attempts=3, message="x") is None
    monkeypatch.setattr(time, "time", lambda: real() - 3600)  # a machine an hour behind claims and renews
    assert store.claim_next("slow-clock", 30)["id"] == behind_job and store.renew_lease(behind_job, "slow-clock", 30)
    monkeypatch.setattr(time, "time", real)
    assert store.lost_jobs("me") == []  # its lease has 30 s to run, not minus an hour
    assert store.holds(behind_job, "slow-clock") and not store.holds(behind_job, "me")


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_postgresql_connections_time_out_close_and_a_new_database_migrates_under_its_lock(backend):
    conn = db._pg_connect(db.url())
    try:
        assert conn.execute("SHOW statement_timeout").fetchone()[0] == "30s"
        assert {"connect_timeout", "keepalives"} <= set(conn.raw.info.get_parameters())
    finally:
        conn.close()

    def connections() -> int:
        return db.query("SELECT COUNT(*) FROM pg_stat_activity WHERE datname=current_database()")[0][0]

    before = connections()
    threads = [threading.Thread(target=db.query, args=("SELECT 1",)) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    gc.collect()  # a thread's connection closes when the thread ends
    _until(lambda: connections() == before, 5, "connections of ended threads closed")
    import psycopg

    name = f"tunery_mig_{secrets.token_hex(4)}"
    server = db.url().rsplit("/", 1)[0]
    with psycopg.connect(server + "/postgres", autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def migrate() -> None:
        c = db._pg_connect(f"{server}/{name}")
        try:
            start.wait()
            db.migrate(c)
        except BaseException as e:  # noqa: BLE001 - collected for the assertion
            errors.append(e)
        finally:
            c.close()

    try:
        threads = [threading.Thread(target=migrate) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == []
    finally:
        with psycopg.connect(server + "/postgres", autocommit=True) as admin:
            admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


def test_an_sqlite_without_returning_is_refused_with_a_clear_error(monkeypatch):
    import sqlite3

    from tunery.errors import TuneryError

    monkeypatch.delenv("TUNERY_DATABASE_URL", raising=False)
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 31, 1))
    with pytest.raises(TuneryError, match=r"SQLite .* too old: tunery needs 3\.35"):
        db.connect()


@pytest.fixture
def stub_training(monkeypatch):
    """Workers of this process start a stub training process that holds the job until killed."""
    from tunery.jobs import worker

    monkeypatch.setattr(worker, "launch_command", _stub_command)
    monkeypatch.setenv("STUB_SLEEP", "1")


def test_a_slow_round_keeps_the_lease_and_a_lost_lease_stops_the_training(stub_training):
    (job_id,) = _queued(1)
    # a 3-s lease renewed every second: with 1 s, one late renewal on a loaded 2-core CI machine
    # let the lease run out (a flaky failure, not the product's: production leases are 30 s)
    w = Worker(claim_lease_s=3, worker_id="slow")
    w._start_next()
    try:
        _until(lambda: _locked(job_id), 30, "stub training")
        time.sleep(7)  # a round that takes longer than the claim lease: the heartbeat goes on
        assert store.lost_jobs("other") == [] and store.holds(job_id, "slow")
        db.execute("UPDATE jobs SET worker_id='other' WHERE id=?", (job_id,))  # taken over meanwhile
        _until(lambda: w.child.proc.poll() is not None, 10, "training stopped by its worker")
    finally:
        w.stop(timeout=5)


def test_a_live_worker_s_training_is_never_killed_by_another(backend, stub_training):
    (job_id,) = _queued(1)
    assert store.claim_next("alive", 30)["id"] == job_id
    from tunery.jobs import worker

    child = subprocess.Popen(_stub_command(["-m", "tunery.jobs", job_id]), env=os.environ)
    try:
        store.update(job_id, pid=child.pid)
        _until(lambda: _locked(job_id), 30, "stub training")
        _expire(job_id)  # its worker lives but could not renew (a slow database): its lease ran out
        assert Worker(worker_id="other")._resume_lost() == 1  # counted: it trains on these cores
        time.sleep(0.3)
        assert child.poll() is None and get_job(job_id)["status"] == "running"
        store.update(job_id, pid=os.getpid())  # a pid that is no training process: another machine's
        assert Worker(worker_id="other")._resume_lost() == 0
        assert worker._is_training_process(child.pid, job_id)
    finally:
        child.kill()
        child.wait()


def test_the_training_process_stops_once_its_worker_lost_the_job(backend, monkeypatch, tmp_path):
    from tunery.jobs import runner

    (job_id,) = _queued(1)
    store.claim_next("w1", 30)
    monkeypatch.setenv(runner.WORKER_ENV, "w1")
    assert not runner._Reporter(job_id).should_stop()
    db.execute("UPDATE jobs SET worker_id='w2' WHERE id=?", (job_id,))  # w1's lease ran out; w2 took it
    assert runner._Reporter(job_id).should_stop()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "adapter.bin").write_bytes(b"x")
    assert not runner._register(job_id, None, "ft:tiny:x:1", "lora", tmp_path / "out", finished={}, events=[])
    assert get_job(job_id)["status"] == "running"  # w2's, to finish
    db.execute("UPDATE jobs SET worker_id='w1' WHERE id=?", (job_id,))
    _expire(job_id)  # w1's lease ran out, no one took the job yet: another may at any moment
    assert runner._Reporter(job_id).should_stop()


def test_one_worker_trains_per_machine_unless_asked(stub_training, monkeypatch):
    jobs = _queued(2)

    def running() -> int:
        return sum(get_job(j)["status"] == "running" for j in jobs)

    workers = [Worker(poll_interval=0.1, worker_id=f"w{i}").start() for i in range(2)]
    try:
        _until(lambda: running() == 1, 30, "a training")
        time.sleep(1.0)  # the second worker stands by
        assert running() == 1
    finally:
        for w in workers:
            w.stop(timeout=5)
    monkeypatch.setenv("TUNERY_WORKERS_PER_MACHINE", "2")
    workers = [Worker(poll_interval=0.1, worker_id=f"v{i}").start() for i in range(2)]
    try:
        _until(lambda: running() == 2, 30, "two trainings")
    finally:
        for w in workers:
            w.stop(timeout=5)


def test_the_job_of_an_ended_worker_of_this_machine_is_resumed_before_its_lease_runs_out(backend):
    from tunery.jobs.worker import default_worker_id

    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    alive_id, ended_id = default_worker_id(), f"{socket.gethostname()}:{ended.pid}"
    theirs, lost = _queued(2)
    assert store.claim_next(alive_id, 600)["id"] == theirs  # this process: a live worker of this machine
    assert store.claim_next(ended_id, 600)["id"] == lost
    Worker(worker_id="me")._resume_lost()
    assert get_job(lost)["status"] == "queued" and get_job(theirs)["status"] == "running"


def test_idle_workers_are_woken_when_a_job_is_queued(backend):
    listener, stop = db.Listener(db.JOBS_CHANNEL), threading.Event()
    try:
        assert not listener.wait(0.3, stop)  # nothing happened
        _queued(1)
        t0 = time.monotonic()
        woken = listener.wait(10 if backend == "postgresql" else 0.5, stop)
        if backend == "postgresql":  # NOTIFY from the jobs table's trigger, at once
            assert woken and time.monotonic() - t0 < 5
        else:  # no notifications: the worker polls
            assert not woken and not listener.notifies
    finally:
        listener.close()


def _job(chat_file, *, examples: int, epochs: int = 1, batch_size: int) -> str:
    train = files.create_from_path(chat_file(examples, name=f"train-{secrets.token_hex(3)}.jsonl"))
    return create_job(model="tiny-random", training_file=train.id, seed=7,
                      hyperparameters={"n_epochs": epochs, "batch_size": batch_size})["id"]


def test_an_expired_lease_is_taken_over_and_resumed_from_the_checkpoint(tiny_model, chat_file, monkeypatch):
    """In one process, on SQLite (the claim and lease SQL of both is tested above; the SIGKILL test
    below trains on both)."""
    monkeypatch.delenv("TUNERY_DATABASE_URL", raising=False)
    monkeypatch.setenv("TUNERY_CHECKPOINT_EVERY", "2")
    job_id = _job(chat_file, examples=10, epochs=2, batch_size=2)  # 10 steps
    first, second = Worker(claim_lease_s=3, worker_id="first"), Worker(claim_lease_s=3, worker_id="second")
    _until(lambda: len(metrics(job_id)) >= 3, 240, "third step", step=first.run_once, job_id=job_id)
    assert store.row(job_id)["worker_id"] == "first"
    first.child.ended.set()  # the first worker's machine goes down: its heartbeat, and its training, are gone
    first.child.proc.kill()
    first.child.proc.wait()
    second.run_once()  # the lease has not run out yet: the job is not the second worker's
    assert second.child is None and store.row(job_id)["worker_id"] == "first"
    _until(lambda: get_job(job_id)["status"] == "succeeded", 240, "success", step=second.run_once,
           job_id=job_id)
    job = store.row(job_id)
    assert job["worker_id"] == "second" and job["attempts"] == 2
    messages = _messages(job_id)
    assert any("resuming from the last checkpoint" in m for m in messages)
    assert any(m.startswith("Resumed from checkpoint at step") for m in messages)
    assert [m["step"] for m in metrics(job_id)] == list(range(1, 11))
    first.run_once()  # back, it finds its job finished by the other and leaves it so
    assert get_job(job_id)["status"] == "succeeded" and first.child is None


def test_three_workers_run_thirty_jobs_each_exactly_once(backend, tiny_model, chat_file):
    train = files.create_from_path(chat_file(10))
    jobs = [create_job(model="tiny-random", training_file=train.id, seed=7,
                       hyperparameters={"n_epochs": 1, "batch_size": 10})["id"] for _ in range(30)]
    procs = [_worker_process(f"w{i}", "--exit-when-idle", stub=True, TUNERY_WORKERS_PER_MACHINE="3")
             for i in range(3)]
    try:
        for p in procs:
            assert p.wait(600) == 0, p.stderr.read().decode()[-3000:]
    finally:
        for p in procs:
            _end(p)
    rows = {r["id"]: r for r in db.query("SELECT id, status, attempts, worker_id FROM jobs")}
    assert {rows[j]["status"] for j in jobs} == {"succeeded"}
    assert {rows[j]["attempts"] for j in jobs} == {1}
    for j in jobs:
        messages = _messages(j)
        assert messages.count("Fine-tuning job started") == 1 and messages.count(
            "The job has successfully completed") == 1, messages
    assert len({rows[j]["worker_id"] for j in jobs}) >= 2  # the work was shared


def test_a_sigkilled_worker_s_job_is_finished_by_another(backend, tiny_model, chat_file, monkeypatch):
    monkeypatch.setenv("TUNERY_CHECKPOINT_EVERY", "2")
    job_id = _job(chat_file, examples=10, epochs=2, batch_size=2)  # 10 steps
    first = _worker_process("first")
    second = None
    try:
        _until(lambda: len(metrics(job_id)) >= 3, 240, "third step", job_id=job_id)
        assert store.row(job_id)["worker_id"] == "first"
        second = _worker_process("second")
        first.kill()  # SIGKILL: no cleanup; its training process sees it gone and stops
        first.wait()
        _until(lambda: get_job(job_id)["status"] in store.TERMINAL, 240, "end of the job", job_id=job_id)
    finally:
        for p in (first, second):
            if p is not None:
                _end(p)
    job = store.row(job_id)
    assert job["status"] == "succeeded", job["error"]
    assert job["worker_id"] == "second"
    messages = _messages(job_id)
    assert any(m.startswith("Resumed from checkpoint at step") for m in messages)
    assert [m["step"] for m in metrics(job_id)] == list(range(1, 11))
