"""Validation runs apart from training (issue 21, item 4): a new job's file problems are reported
while another job trains, whatever the worker's round is waiting on, and an error in the
validation thread's work never ends it.

The training process is the stub of the queue tests (``support_workers.STUB_CHILD``: it holds the
job's lock and sleeps), here one that lets a SIGTERM wait, as a real training does while it
finishes its step (a step of a large model on a CPU takes many seconds): a cancel makes the
worker's round wait for it (up to 10 s)."""

from __future__ import annotations

import json
import sys
import time

import pytest

from support_workers import STUB_CHILD, locked, stub_command, until
from tunery.data import files
from tunery.jobs import Worker, cancel_job, create_job, get_job, store

# the step in progress goes on for 8 s after SIGTERM, then the process ends as interrupted
_SLOW_STEP = ("import signal, sys, time\n"
              "signal.signal(signal.SIGTERM, lambda *_: (time.sleep(8), sys.exit(75)))\n" + STUB_CHILD)


@pytest.fixture
def slow_step_training(monkeypatch):
    from tunery.jobs import worker

    monkeypatch.setattr(worker, "launch_command", lambda args, nproc=None: [sys.executable, "-c", _SLOW_STEP, *args])
    monkeypatch.setenv("STUB_SLEEP", "1")


def _bad_file(tmp_path) -> str:
    ok = json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]})
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join([ok] * 5 + ['{"messages": [{"role": "robot", "content": "x"}]}'] + [ok] * 5) + "\n")
    return files.create_from_path(path).id


def test_a_bad_file_is_reported_while_another_job_trains(tiny_model, chat_file, tmp_path, slow_step_training):
    training = create_job(model="tiny-random", training_file=files.create_from_path(chat_file(12)).id,
                          hyperparameters={"n_epochs": 1, "batch_size": 2})["id"]
    w = Worker(poll_interval=0.1).start()
    try:
        until(lambda: get_job(training)["status"] == "running" and locked(training), 60, "training")
        child = w.child.proc
        cancel_job(training)  # the round now waits for the training to finish its step
        time.sleep(0.5)
        bad = create_job(model="tiny-random", training_file=_bad_file(tmp_path))["id"]
        t0 = time.monotonic()
        until(lambda: get_job(bad)["status"] == "failed", 6, "validation while the round waits on the training")
        assert child.poll() is None, "the training ended first: the test proves nothing"
        job = get_job(bad)
        assert job["error"]["code"] == "invalid_training_file" and "line 6" in job["error"]["message"], job
        assert time.monotonic() - t0 < 6
    finally:
        w.stop(timeout=30)
    assert get_job(training)["status"] == "cancelled"


def test_the_validation_thread_survives_a_failing_database_and_a_crashing_job(tiny_model, chat_file, monkeypatch):
    from tunery import db
    from tunery.jobs import worker

    real_query, calls = db.query, []

    def flaky(sql, *a, **kw):  # the database is away for the validation thread's first look
        if "validating_files' ORDER BY" in sql and not calls:
            calls.append(sql)
            raise OSError("database unreachable")
        return real_query(sql, *a, **kw)

    real_validate = Worker._validate

    def crash_on_first(self, job_id):
        if job_id == first:
            raise MemoryError("unforeseen")
        return real_validate(self, job_id)

    monkeypatch.setattr(worker, "launch_command", stub_command)  # the second job trains as a stub
    monkeypatch.setenv("STUB_SLEEP", "1")
    monkeypatch.setattr(worker.db, "query", flaky)
    monkeypatch.setattr(Worker, "_validate", crash_on_first)
    train = files.create_from_path(chat_file(12)).id
    first, second = (create_job(model="tiny-random", training_file=train)["id"] for _ in range(2))
    w = Worker(poll_interval=0.1)
    w.start()
    try:
        until(lambda: get_job(second)["status"] in ("queued", "running", "succeeded"), 30, "second validated")
        assert calls and w._validator is not None and w._validator.is_alive()
    finally:
        w.stop(timeout=30)
    job = get_job(first)
    assert job["status"] == "failed" and job["error"]["code"] == "validation_error"
    assert "MemoryError: unforeseen" in job["error"]["message"]
    assert store.row(second)["status"] != "validating_files"


def test_a_background_worker_stops_when_every_round_fails(monkeypatch, capsys):
    """`--exit-when-idle` (the worker `tunery finetune` starts) gives up after rounds failing in a row
    (its home deleted under it); a worker started on purpose would keep retrying."""
    from tunery.jobs import worker

    def broken(self):
        raise RuntimeError("disk I/O error")

    monkeypatch.setattr(worker, "GIVE_UP_ROUNDS", 3)
    monkeypatch.setattr(Worker, "run_once", broken)
    import threading

    w = Worker(poll_interval=0.01)
    t = threading.Thread(target=w.run_forever, kwargs={"exit_when_idle": True}, daemon=True)
    t.start()
    t.join(20)
    stuck = t.is_alive()
    if stuck:  # the old worker: retried forever
        w.stop()
        t.join(20)
    assert not stuck and "3 rounds failed in a row" in capsys.readouterr().out
