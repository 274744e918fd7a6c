"""The job worker: validates the files of new jobs, starts queued jobs' training in a child
process, stops cancelled ones, and resumes jobs whose training process died (the worker or the
machine went down, or the process was killed) from their last checkpoint.

Several workers may share one home (``tunery serve`` embeds one, ``tunery worker`` runs one):
claiming a job is an atomic status change, and a running job's training is guarded by its lock
file (see ``runner``)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tunery import db
from tunery.errors import TuneryError
from tunery.home import home
from tunery.jobs import store
from tunery.jobs.runner import EXIT_INTERRUPTED, fail, staging_dirs, try_lock

MAX_ATTEMPTS = 3
LEASE_S = 3600.0


def _is_training_process(pid: int, job_id: str) -> bool:
    """Whether ``pid`` is the training process of ``job_id`` (``python -m tunery.jobs JOB_ID``):
    a recorded pid may since have been given to an unrelated process."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:  # gone, or no /proc (not Linux): leave it to stop by itself
        return False
    return b"tunery.jobs" in argv and job_id.encode() in argv


def worker_alive() -> bool:
    """True when some worker process holds this home's worker lock."""
    lock = try_lock(home().root / "worker.lock")
    if lock is None:
        return True
    lock.close()
    return False


@dataclass
class _Child:
    job_id: str
    proc: subprocess.Popen
    started: float = field(default_factory=time.monotonic)


class Worker:
    """Runs jobs one at a time (training uses every core). ``start()`` runs it in a thread."""

    def __init__(self, poll_interval: float = 1.0, *, lease_s: float | None = None) -> None:
        self.poll_interval = poll_interval
        # how long a training process may go without progress before it is taken for hung
        self.lease_s = lease_s if lease_s is not None else float(os.environ.get("TUNERY_JOB_LEASE_S", LEASE_S))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.child: _Child | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> Worker:
        self._thread = threading.Thread(target=self.run_forever, name="tunery-worker", daemon=True)
        self._thread.start()
        return self

    def stop(self, *, timeout: float = 30.0) -> None:
        """Stop the worker; a training in progress is interrupted and resumes at the next start."""
        self._stop.set()
        if self._thread:
            self._thread.join(timeout)
        self._interrupt_child(timeout)

    def run_forever(self, *, exit_when_idle: bool = False) -> None:
        """Work until stopped. Only one worker per home trains at a time: the others stand by
        (holding no jobs) and take over when the active one goes away."""
        lock = None
        try:
            while not self._stop.is_set():
                if lock is None:
                    lock = try_lock(home().root / "worker.lock")
                busy = self.run_once() if lock is not None else True
                if exit_when_idle and not busy:
                    return
                self._stop.wait(self.poll_interval)
        finally:
            if lock is not None:
                lock.close()

    # -- one round ---------------------------------------------------------------------------
    def run_once(self) -> bool:
        """Do whatever is due; returns True while this worker has work (a child or queued jobs)."""
        self._watch_child()
        self._validate_new()
        orphans = self._resume_orphans() if self.child is None else 0
        if self.child is None and not orphans:
            self._remove_stale_copies()
            self._start_next()
        pending = db.query("SELECT COUNT(*) FROM jobs WHERE status IN ('validating_files','queued')")[0][0]
        return self.child is not None or pending > 0

    def _watch_child(self) -> None:
        c = self.child
        if c is None:
            return
        status = store.row(c.job_id)["status"]
        code = c.proc.poll()
        if code is None:
            if status == "cancelled":
                self._interrupt_child(10.0, sig=signal.SIGTERM)
            elif status == "running" and (quiet := self._silent_for(c)) > self.lease_s:
                # hung (a step that never ends, a deadlock): its lease is over; kill it and resume
                self._interrupt_child(10.0, sig=signal.SIGTERM)
                self.child = None
                self._requeue(c.job_id, f"Training made no progress for {quiet:.0f} s (lease {self.lease_s:g} s, "
                                        "TUNERY_JOB_LEASE_S); stopped it, resuming from the last checkpoint")
            return
        self.child = None
        if code == EXIT_INTERRUPTED or (code != 0 and status == "running"):
            self._requeue(c.job_id, f"Training process ended unexpectedly (exit code {code}); resuming from "
                                    "the last checkpoint" if code != EXIT_INTERRUPTED else "Training interrupted; "
                                    "resuming from the last checkpoint")

    def _silent_for(self, c: _Child) -> float:
        """Seconds since the child's last sign of progress (an event of its job; it writes one
        per step), or since it started."""
        last = db.query("SELECT MAX(created_at) FROM job_events WHERE job_id=?", (c.job_id,))[0][0] or 0
        return min(time.monotonic() - c.started, time.time() - last)

    def _requeue(self, job_id: str, message: str) -> None:
        job = store.row(job_id)
        if job["attempts"] >= MAX_ATTEMPTS:
            fail(job_id, f"training failed {job['attempts']} times; giving up", code="training_error")
            return
        if store.set_status(job_id, "queued", only_from=("running",)):
            store.add_event(job_id, message, level="warn")

    def _validate_new(self) -> None:
        for r in db.query("SELECT id FROM jobs WHERE status='validating_files' ORDER BY created_at"):
            try:
                self._validate(r["id"])
            except Exception as e:  # any error in one job fails that job; the worker lives on
                fail(r["id"], f"validation failed: {type(e).__name__}: {e}", code="validation_error")

    def _validate(self, job_id: str) -> None:
        from tunery.data import files
        from tunery.data.validate import validate_bytes

        job = store.row(job_id)
        problems = []
        n_examples = None
        for param, purpose in (("training_file", "training"), ("validation_file", "validation")):
            fid = job[param]
            if not fid:
                continue
            try:
                rep = validate_bytes(files.content(fid), purpose=purpose)
            except Exception as e:  # missing file on disk and the like
                problems.append((param, f"{param} {fid} cannot be read: {e}"))
                continue
            if not rep.ok:
                lines = [i.format() if hasattr(i, "format") else str(i) for i in rep.errors]
                more = f" (and {len(lines) - 20} more)" if len(lines) > 20 else ""
                problems.append((param, f"{param} {fid} is invalid: " + "; ".join(lines[:20]) + more))
            elif purpose == "training":
                n_examples = len(rep.examples)
        if problems:
            fail(job["id"], " | ".join(p for _, p in problems), code="invalid_training_file",
                 param=problems[0][0])
            return
        try:  # settings that only the data can refute: a batch larger than the file
            store.request(job).method.hyperparameters.check_examples(n_examples or 0)
        except TuneryError as e:
            fail(job["id"], str(e), code="invalid_hyperparameters", param=e.param)
            return
        if store.set_status(job["id"], "queued", only_from=("validating_files",)):
            store.add_event(job["id"], "Files validated, moving job to queued state")

    def _resume_orphans(self) -> int:
        """A job marked running whose lock is free has lost its training process: it is queued
        again. One whose lock is held by a process this worker did not start was orphaned by a
        worker that died (the server was killed): it is asked to stop (it also stops by itself when
        it sees its parent gone) and resumes once it has; returns how many such are still alive,
        so that no other training starts beside them."""
        alive = 0
        for r in db.query("SELECT id, pid FROM jobs WHERE status='running' ORDER BY created_at"):
            lock = try_lock(store.job_dir(r["id"]) / "lock")
            if lock is not None:
                lock.close()
                self._requeue(r["id"], "Training process was lost (worker or machine stopped); resuming from "
                                       "the last checkpoint")
                continue
            alive += 1
            if r["pid"] and _is_training_process(r["pid"], r["id"]):
                with contextlib.suppress(OSError):  # it has just ended
                    os.kill(r["pid"], signal.SIGTERM)
        return alive

    def _remove_stale_copies(self) -> None:
        """No training process runs now: a model copy still under its staging name was cut short
        (its process was killed mid-copy) and is never used."""
        for p in staging_dirs(home().models):
            shutil.rmtree(p, ignore_errors=True)

    def _start_next(self) -> None:
        rows = db.query("SELECT id FROM jobs WHERE status='queued' ORDER BY created_at LIMIT 1")
        if not rows:
            return
        job_id = rows[0]["id"]
        if not store.set_status(job_id, "running", only_from=("queued",)):
            return  # another worker took it
        job = store.row(job_id)
        store.update(job_id, attempts=job["attempts"] + 1, started_at=job.get("started_at") or db.now())
        if job["attempts"] == 0:
            store.add_event(job_id, "Fine-tuning job started")
        jdir = store.job_dir(job_id)
        jdir.mkdir(parents=True, exist_ok=True)
        log = open(jdir / "train.log", "ab")  # noqa: SIM115 - handed to the child
        proc = subprocess.Popen([sys.executable, "-m", "tunery.jobs", job_id], stdout=log,
                                stderr=subprocess.STDOUT, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
                                start_new_session=True)
        log.close()
        store.update(job_id, pid=proc.pid)
        self.child = _Child(job_id, proc)

    def _interrupt_child(self, timeout: float, sig: int = signal.SIGTERM) -> None:
        c = self.child
        if c is None or c.proc.poll() is not None:
            return
        c.proc.send_signal(sig)
        try:
            c.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            c.proc.kill()
            c.proc.wait()
