"""Job workers as the tests run them: a stub training process (it does to its job what the runner
does, with no training), ``tunery worker`` in a process of its own (with real or stub training),
its stop, and a wait for a condition. Shared by the queue tests (``tests/jobs``) and the
reliability suite (``tests/reliability``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from tunery.jobs import list_events, store

# A training process that does what the runner does to the job, with no training: holds the job's
# lock, then ends it as succeeded (only while its worker holds it) or, with "sleep", waits for a signal.
STUB_CHILD = """
import os, sys, time
from tunery import db
from tunery.jobs import runner, store
job_id = sys.argv[-1]
lock = runner.try_lock(store.job_dir(job_id) / "lock")
if lock is not None and os.environ.get("STUB_SLEEP"):
    time.sleep(600)
if lock is not None and store.row(job_id)["status"] == "running":
    with db.transaction() as tx:
        if store.set_status(job_id, "succeeded", only_from=("running",), conn=tx, finished_at=db.now(),
                            held_by=os.environ[runner.WORKER_ENV]):
            store.add_event(job_id, "The job has successfully completed", conn=tx)
"""


def stub_command(args: list[str], nproc: int | None = None) -> list[str]:
    return [sys.executable, "-c", STUB_CHILD, *args]  # args end with "tunery.jobs", the job id


def run_here(job_id: str) -> None:
    """Train ``job_id`` (already ``running``) in this process, as its training process would; the
    runner's SIGTERM handler is taken off again afterwards."""
    from tunery.jobs import runner

    old = signal.getsignal(signal.SIGTERM)
    try:
        assert runner.run(job_id) == 0
    finally:
        signal.signal(signal.SIGTERM, old)


def locked(job_id: str) -> bool:
    from tunery.jobs.runner import try_lock

    lock = try_lock(store.job_dir(job_id) / "lock")
    if lock is None:
        return True
    lock.close()
    return False


def messages(job_id: str) -> list[str]:
    return [e["message"] for e in list_events(job_id, limit=1000)[0]]


def until(cond, timeout: float, what: str, step=None, job_id: str | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if step is not None:
            step()
        if cond():
            return
        if job_id and store.row(job_id)["status"] in ("failed", "cancelled"):
            break
        time.sleep(0.1)
    raise AssertionError(f"no {what}" + (f": {store.row(job_id)}, {messages(job_id)}"
                                                           if job_id else ""))


# ``tunery worker`` whose training processes are the stub (argv[1] "stub")
STUBBED_WORKER = f"""
import sys
from tunery.jobs import worker
if sys.argv.pop(1) == "stub":
    worker.launch_command = lambda args, nproc=None: [sys.executable, "-c", {STUB_CHILD!r}, *args]
from tunery.cli.main import main
main()
"""


def worker_process(worker_id: str | None, *extra: str, stub: bool = False, **env: str) -> subprocess.Popen:
    """``tunery worker --id WORKER_ID`` (no id: the default, ``host:pid``) in a new session."""
    named = ["--id", worker_id] if worker_id else []
    return subprocess.Popen([sys.executable, "-c", STUBBED_WORKER, "stub" if stub else "real", "worker",
                             *named, "--poll-interval", "0.2", "--threads", "1", *extra],
                            env={**os.environ, "TUNERY_CLAIM_LEASE_S": "3", **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)


def end_worker(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)  # Ctrl-C: the worker stops its training and exits
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
