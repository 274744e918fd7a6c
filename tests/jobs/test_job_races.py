"""Races and crashes around a job's lifecycle (issue 21): a cancel while the finished model is
copied, a worker killed under its training process, stale copies, metrics of a restarted run and
a job created half-way."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from support_workers import run_here
from tunery import db
from tunery.data import files
from tunery.errors import Conflict
from tunery.home import home
from tunery.jobs import Worker, cancel_job, create_job, get_job, metrics, runner, store


def _job(chat_file, n=10) -> str:
    train = files.create_from_path(chat_file(n))
    return create_job(model="tiny-random", training_file=train.id, seed=3,
                      hyperparameters={"n_epochs": 1, "batch_size": 2})["id"]


def test_cancel_while_the_model_is_copied_leaves_no_model(tiny_model, chat_file, monkeypatch):
    import shutil

    from tunery.models import find

    job_id = _job(chat_file)
    assert store.set_status(job_id, "running")
    real_copy, cancelled = shutil.copy2, []

    def copy_then_cancel(*a, **kw):  # the user cancels while the trained model is being copied
        if not cancelled:
            cancelled.append(cancel_job(job_id))
        return real_copy(*a, **kw)

    monkeypatch.setattr(shutil, "copy2", copy_then_cancel)
    run_here(job_id)
    job = get_job(job_id)
    assert cancelled and job["status"] == "cancelled" and job["fine_tuned_model"] is None
    assert find(store.model_name("tiny-random", None, job_id)) is None
    assert [p.name for p in home().models.iterdir() if "ft_" in p.name] == []  # no copy, whole or not
    assert [f.purpose for f in files.list_files()] == ["fine-tune"]  # no results file of a cancelled job


def test_cancel_of_a_job_that_just_succeeded_is_refused(tiny_model, chat_file, monkeypatch):
    from tunery.jobs import api

    job_id = _job(chat_file)
    store.set_status(job_id, "running")
    real_row = store.row

    def row_then_finish(jid):  # the job's model is registered right after the cancel read the job
        r = real_row(jid)
        store.set_status(jid, "succeeded", only_from=("running",))
        monkeypatch.setattr(api.store, "row", real_row)
        return r

    monkeypatch.setattr(api.store, "row", row_then_finish)
    with pytest.raises(Conflict, match="already succeeded"):
        cancel_job(job_id)
    assert get_job(job_id)["status"] == "succeeded"


def test_worker_removes_stale_model_copies_only(tiny_model):
    models = home().models
    stale = models / ".ft_tiny-random__abcd1234.x1y2.staging.tmp"
    other = models / ".some-base.q9.tmp"  # another command's folder in the making: not the worker's
    for d in (stale, other):
        d.mkdir(parents=True)
        (d / "model.safetensors").write_bytes(b"half")
    Worker().run_once()
    assert not stale.exists() and other.exists()


def test_a_restart_from_scratch_drops_the_old_metrics(tiny_model, chat_file):
    job_id = _job(chat_file)
    for step in (1, 2, 3):
        store.add_event(job_id, f"Step {step}", type="metrics", data={"step": step})
    rep = runner._Reporter(job_id)
    rep.config = SimpleNamespace(n_epochs=1, batch_size=2, learning_rate=0.1, method="lora")
    rep.start({"total_steps": 3, "resumed_from": 2, "examples": 6})
    assert [m["step"] for m in metrics(job_id)] == [1, 2]
    rep.start({"total_steps": 3, "resumed_from": None, "examples": 6})  # killed before its first checkpoint
    assert metrics(job_id) == []


def test_training_stops_when_its_worker_is_gone(tiny_model, chat_file, monkeypatch):
    job_id = _job(chat_file)
    store.set_status(job_id, "running")
    rep = runner._Reporter(job_id)
    assert not rep.should_stop()
    monkeypatch.setattr(runner.os, "getppid", lambda: 1)  # re-parented: the worker was killed
    assert rep.should_stop() and rep.interrupted  # so it ends as interrupted and resumes later


def test_worker_does_not_train_beside_an_orphaned_training(tiny_model, chat_file):
    orphaned, queued = _job(chat_file), _job(chat_file)
    store.set_status(orphaned, "running")
    store.set_status(queued, "queued")
    lock = store.job_dir(orphaned) / "lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    # stands in for `python -m tunery.jobs JOB` left running by a worker that was SIGKILLed
    proc = subprocess.Popen([sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'a+'); "
                             "fcntl.flock(f, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(60)",
                             str(lock), "tunery.jobs", orphaned], stdout=subprocess.PIPE)
    worker = Worker()
    try:
        assert proc.stdout.readline() == b"locked\n"
        store.update(orphaned, pid=proc.pid)
        worker.run_once()
        assert worker.child is None and get_job(queued)["status"] == "queued"
        assert proc.wait(10) == -signal.SIGTERM  # asked to stop
    finally:
        worker._interrupt_child(10.0)
        proc.kill()
        proc.wait()
    store.set_status(queued, "cancelled")
    worker.run_once()  # its lock is free now: it resumes
    assert get_job(orphaned)["status"] in ("queued", "running")


def test_create_job_writes_all_or_nothing(tiny_model, chat_file, monkeypatch):
    real = store.add_event

    def fail_on_second(job_id, message, **kw):
        if message.startswith("Validating"):
            raise RuntimeError("disk full")
        return real(job_id, message, **kw)

    monkeypatch.setattr(store, "add_event", fail_on_second)
    with pytest.raises(RuntimeError):
        _job(chat_file)
    assert db.query("SELECT COUNT(*) FROM jobs")[0][0] == 0
    assert db.query("SELECT COUNT(*) FROM job_events")[0][0] == 0


def test_an_error_in_one_validation_fails_that_job_and_the_worker_goes_on(tiny_model, chat_file, monkeypatch):
    from tunery.data import validate

    unreadable, crashing, good = _job(chat_file), _job(chat_file), _job(chat_file)
    real_validate, real_request = validate.validate_file, store.request
    calls = []

    def unreadable_first(*a, **kw):
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("role '\udfff' is not a role")  # nothing UTF-8 can store, as the user wrote it
        return real_validate(*a, **kw)

    def crash_on(job):  # an error nobody foresaw, in one job only
        if job["id"] == crashing:
            raise RuntimeError("unforeseen")
        return real_request(job)

    monkeypatch.setattr(validate, "validate_file", unreadable_first)
    monkeypatch.setattr(store, "request", crash_on)
    Worker()._validate_new()
    job = get_job(unreadable)
    assert job["status"] == "failed" and "\\udfff" in job["error"]["message"]
    job = get_job(crashing)
    assert job["status"] == "failed" and job["error"]["code"] == "validation_error", job["error"]
    assert "RuntimeError: unforeseen" in job["error"]["message"]
    assert get_job(good)["status"] == "queued"


def test_a_training_that_makes_no_progress_past_its_lease_is_stopped_and_resumed(tiny_model, chat_file):
    from tunery.jobs.worker import _Child

    job_id = _job(chat_file)
    store.set_status(job_id, "running")
    store.update(job_id, attempts=1)
    hung = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    worker = Worker(lease_s=3)
    worker.child = _Child(job_id, hung, started=time.monotonic() - 20)
    store.add_event(job_id, "Step 1/6", type="metrics", data={"step": 1})
    try:
        worker._watch_child()  # the last event is fresh: within its lease
        assert worker.child is not None and hung.poll() is None
        db.execute("UPDATE job_events SET created_at = created_at - 10 WHERE job_id=?", (job_id,))
        worker._watch_child()
        assert worker.child is None and hung.wait(15) is not None
    finally:
        hung.kill()
        hung.wait()
    assert get_job(job_id)["status"] == "queued"
    assert any("no progress" in e["message"] for e in store.events(job_id, limit=50)[0])
