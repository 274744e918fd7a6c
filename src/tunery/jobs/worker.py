"""The job worker: validates the files of new jobs, claims queued jobs and trains each in a child
process, stops cancelled ones, and resumes jobs whose training was lost (their worker or machine
went down, or the process was killed) from their last checkpoint.

Any number of workers may share one state database, on one machine (SQLite) or several
(PostgreSQL, with the home folder shared): each trains one job at a time, and on one machine only
:func:`per_machine` of them (default 1) train at once. A worker claims a job atomically, with a
lease that a thread of it renews while the training runs (its heartbeat); it acts only on
jobs it holds or whose lease ran out, so that when a worker dies another one resumes its job once
the lease is over, and no job is ever trained by two workers at once.

New jobs' files are validated in a thread of their own (every worker runs one, training or
standing by), so that a file's problems are reported while another job trains, whatever the
round is waiting on, and no training waits while a large file is read. A validation reads its file
line by line and keeps only a count and the first problems, so its memory does not grow with the
file; any error in it fails that job, never the worker."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from tunery import db
from tunery.errors import TuneryError
from tunery.home import home
from tunery.jobs import store
from tunery.jobs.runner import EXIT_INTERRUPTED, WORKER_ENV, fail, staging_dirs, try_lock
from tunery.training.distributed import check_devices, launch_command

MAX_ATTEMPTS = 3
LEASE_S = 3600.0  # how long a training may go without progress (TUNERY_JOB_LEASE_S)
CLAIM_LEASE_S = 30.0  # how long a claim lasts without its worker's heartbeat (TUNERY_CLAIM_LEASE_S)
IDLE_WAIT_S = 5.0  # an idle worker's longest sleep where NOTIFY wakes it (PostgreSQL)
PER_MACHINE_ENV = "TUNERY_WORKERS_PER_MACHINE"  # workers of one home that train at once on a machine


def _is_training_process(pid: int, job_id: str) -> bool:
    """Whether ``pid`` is the training process of ``job_id`` (``python -m tunery.jobs JOB_ID``):
    a recorded pid may since have been given to an unrelated process (or be one of another machine)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:  # gone, or no /proc (not Linux): leave it to stop by itself
        return False
    return b"tunery.jobs" in argv and job_id.encode() in argv


def _hold_shared(path: Path):
    """A shared lock on ``path``, held by every worker of this home on this machine while it runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    f = open(path, "a+")  # noqa: SIM115 - the lock lives as long as the file stays open
    fcntl.flock(f, fcntl.LOCK_SH)
    return f


GIVE_UP_ROUNDS = 30
"""Rounds failing in a row after which a worker started with ``--exit-when-idle`` (the background
worker ``tunery finetune`` starts) stops instead of retrying forever: seen when a test's home was
deleted under it, which left it looping for hours. A worker started on purpose keeps retrying."""


def worker_alive() -> bool:
    """True when some worker process of this home runs on this machine (it holds the worker
    lock); workers on other machines are not seen."""
    lock = try_lock(home().root / "worker.lock")
    if lock is None:
        return True
    lock.close()
    return False


def per_machine() -> int:
    """How many workers of this home may train at once on this machine (``TUNERY_WORKERS_PER_MACHINE``,
    default 1: a training uses every core, so two would only slow each other down)."""
    env = os.environ.get(PER_MACHINE_ENV, "").strip() or "1"
    if not env.isdigit() or int(env) < 1:
        raise TuneryError(f"{PER_MACHINE_ENV} must be a whole number, at least 1; got {env!r}",
                          param=PER_MACHINE_ENV)
    return int(env)


def _take_slot():
    """One of this machine's :func:`per_machine` training slots for this home (an exclusive lock,
    dropped when the process ends however it ends), or None when all are taken. Named after the
    machine: a home shared over NFS carries locks between machines, and each has its own slots."""
    for i in range(per_machine()):
        if (lock := try_lock(home().root / "trainers" / f"{socket.gethostname()}-{i}.lock")) is not None:
            return lock
    return None


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _has_ended(worker_id: str) -> bool:
    """Whether ``worker_id`` names (as ``host:pid``, the default) a worker of this machine whose
    process is gone: its jobs need not wait for their leases to run out (a restarted server
    resumes at once)."""
    host, _, pid = worker_id.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # alive, another user's
        return False
    return False


def _pending() -> int:
    """Jobs waiting for a worker: new (their files not yet validated) or queued."""
    return db.query("SELECT COUNT(*) FROM jobs WHERE status IN ('validating_files','queued')")[0][0]


@dataclass
class _Child:
    job_id: str
    proc: subprocess.Popen
    started: float = field(default_factory=time.monotonic)
    ended: threading.Event = field(default_factory=threading.Event)  # the worker let go of it: no more heartbeats


class Worker:
    """Runs jobs one at a time (training uses every core). ``start()`` runs it in a thread.

    ``worker_id`` names it in the jobs it claims (default ``host:pid``) and must be unique among
    the workers that run at once: a worker takes the running jobs under its own id for jobs it
    lost (it restarted). ``lease_s``: how long a training may go without progress before it is
    taken for hung; ``claim_lease_s``: how long its claim lasts without a heartbeat, that is how
    soon another worker resumes the job of a worker that died."""

    def __init__(self, poll_interval: float = 1.0, *, lease_s: float | None = None,
                 claim_lease_s: float | None = None, worker_id: str | None = None) -> None:
        self.poll_interval = poll_interval
        self.lease_s = lease_s if lease_s is not None else float(os.environ.get("TUNERY_JOB_LEASE_S", LEASE_S))
        self.claim_lease_s = (claim_lease_s if claim_lease_s is not None
                              else float(os.environ.get("TUNERY_CLAIM_LEASE_S", CLAIM_LEASE_S)))
        self.worker_id = worker_id or default_worker_id()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._validator: threading.Thread | None = None  # while run_forever runs; else run_once validates
        self.child: _Child | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> Worker:
        self._thread = threading.Thread(target=self.run_forever, name="tunery-worker", daemon=True)
        self._thread.start()
        return self

    def stop(self, *, timeout: float = 30.0) -> None:
        """Stop the worker; a training in progress is interrupted and goes back to the queue, to
        resume from its last checkpoint (here at the next start, or on another worker)."""
        self._stop.set()
        if self._thread:
            self._thread.join(timeout)
        self._interrupt_child(timeout)
        with contextlib.suppress(Exception):  # the database is gone: the lease runs out instead
            self._watch_child()
        self._drop_child()

    def run_forever(self, *, exit_when_idle: bool = False) -> None:
        """Work until stopped. An error in one round is printed and the worker goes on. While this
        machine's training slots for the home are taken (:func:`per_machine`), it stands by."""
        lock = _hold_shared(home().root / "worker.lock")
        slot = None
        listener = db.Listener(db.JOBS_CHANNEL)
        ended = threading.Event()  # tells the validation thread that the worker stops
        self._validator = self._start_validator(ended)
        failures = 0
        try:
            while not self._stop.is_set():
                if not self._validator.is_alive():  # it catches every error; should it end all the same
                    print("tunery worker: the validation thread ended unexpectedly; restarting it", flush=True)
                    self._validator = self._start_validator(ended)
                try:
                    if slot is None:
                        slot = _take_slot()
                    busy = self.run_once() if slot is not None else _pending() > 0
                    failures = 0
                except Exception:  # the database is unreachable for a while, and the like
                    traceback.print_exc()
                    busy, failures = True, failures + 1
                    if exit_when_idle and failures >= GIVE_UP_ROUNDS:  # its home was removed, say
                        print(f"tunery worker: {failures} rounds failed in a row; a background worker stops",
                              flush=True)
                        return
                if exit_when_idle and not busy:
                    return
                # PostgreSQL wakes an idle worker when a job needs one (NOTIFY); it still looks now
                # and then, for leases that ran out
                idle = self.child is None and listener.notifies
                listener.wait(max(self.poll_interval, IDLE_WAIT_S) if idle else self.poll_interval, self._stop)
        finally:
            ended.set()
            self._validator.join(self.poll_interval + 5)  # one mid-way through a large file is abandoned:
            self._validator = None  # its job stays validating_files, for the next worker to validate
            listener.close()
            if slot is not None:
                slot.close()
            lock.close()

    def _start_validator(self, ended: threading.Event) -> threading.Thread:
        t = threading.Thread(target=self._validate_forever, args=(ended,), name="tunery-validator", daemon=True)
        t.start()
        return t

    def _validate_forever(self, ended: threading.Event) -> None:
        """The validation thread: validates new jobs' files until the worker stops (asked to, or
        its loop ended)."""
        while not ended.is_set() and not self._stop.is_set():
            try:
                self._validate_new()
            except Exception:  # the database is unreachable for a while, and the like: try again
                traceback.print_exc()
            ended.wait(self.poll_interval)

    # -- one round ---------------------------------------------------------------------------
    def run_once(self) -> bool:
        """Do whatever is due; returns True while this worker has work (a child or queued jobs)."""
        self._watch_child()
        if self._validator is None:  # driven round by round (tests): validate here
            self._validate_new()
        lost = self._resume_lost() if self.child is None else 0
        if self.child is None and not lost:
            self._remove_stale_copies()
            self._start_next()
        return self.child is not None or _pending() > 0

    def _watch_child(self) -> None:
        c = self.child
        if c is None:
            return
        status = store.row(c.job_id)["status"]
        code = c.proc.poll()
        if code is None:
            if status == "cancelled":
                self._interrupt_child(10.0, sig=signal.SIGTERM)
            elif status in store.TRAINING and (quiet := self._silent_for(c)) > self.lease_s:
                # hung (a step that never ends, a deadlock): its lease is over; kill it and resume
                self._interrupt_child(10.0, sig=signal.SIGTERM)
                self._drop_child()
                self._requeue(c.job_id, f"Training made no progress for {quiet:.0f} s (lease {self.lease_s:g} s, "
                                        "TUNERY_JOB_LEASE_S); stopped it, resuming from the last checkpoint")
            return
        self._drop_child()
        if status in store.TRAINING:  # it ended without ending the job (pausing: it stopped as asked)
            self._requeue(c.job_id, "Training interrupted; resuming from the last checkpoint" if code == EXIT_INTERRUPTED
                          else f"Training process ended unexpectedly (exit code {code}); resuming from the last "
                               "checkpoint")

    def _beat(self, c: _Child) -> None:
        """Renew the lease of ``c``'s job while its training process runs and the worker holds on
        to it: in a thread of its own, so that a slow round (validating large files) never lets the
        lease run out under a healthy training. A lease another worker took over, or one not renewed
        for a whole claim lease (the database is unreachable, so another worker may take the job),
        stops the training."""
        renewed = time.monotonic()
        while not c.ended.wait(min(self.poll_interval, self.claim_lease_s / 3)) and c.proc.poll() is None:
            try:
                if store.renew_lease(c.job_id, self.worker_id, self.claim_lease_s):
                    renewed = time.monotonic()
                    continue
                r = store.row(c.job_id)
                lost = r["status"] == "running" and r["worker_id"] != self.worker_id
            except Exception:
                lost = time.monotonic() - renewed > self.claim_lease_s
            if lost:  # the round that follows sees the process end and leaves the job to its holder
                with contextlib.suppress(OSError):
                    c.proc.send_signal(signal.SIGTERM)
                return

    def _drop_child(self) -> None:
        if self.child is not None:
            self.child.ended.set()
            self.child = None

    def _silent_for(self, c: _Child) -> float:
        """Seconds since the child's last sign of progress (an event of its job; it writes one
        per step), or since it started."""
        last = db.query("SELECT MAX(created_at) FROM job_events WHERE job_id=?", (c.job_id,))[0][0] or 0
        return min(time.monotonic() - c.started, time.time() - last)

    def _requeue(self, job_id: str, message: str) -> None:
        store.release(job_id, self.worker_id, max_attempts=MAX_ATTEMPTS, message=message)

    def _validate_new(self) -> None:
        for r in db.query("SELECT id FROM jobs WHERE status='validating_files' ORDER BY created_at"):
            # one validator per job: another worker's may be reading this file now (on this
            # machine, or on one sharing the folder where its file system passes locks on)
            if (held := try_lock(store.job_dir(r["id"]) / "validate.lock")) is None:
                continue
            try:
                self._validate(r["id"])
            except Exception as e:  # any error in one job fails that job; the worker lives on
                fail(r["id"], f"validation failed: {type(e).__name__}: {e}", code="validation_error")
            finally:
                held.close()

    def _validate(self, job_id: str) -> None:
        from tunery.data import files
        from tunery.data.validate import MAX_REPORTED_ERRORS, validate_file

        job = store.row(job_id)
        if job["status"] != "validating_files":  # another worker validated it meanwhile
            return
        problems = []
        n_examples = None
        for param, purpose in (("training_file", "training"), ("validation_file", "validation")):
            fid = job[param]
            if not fid:
                continue
            try:  # read line by line, keeping a count and the first problems: bounded memory; with the
                # model's tokenizer, so what only it can refute (a control token written in a message,
                # which training would read as the token) fails here, named, not in training
                rep = validate_file(files.get(fid).path, purpose=purpose, keep_examples=False,
                                    max_issues=MAX_REPORTED_ERRORS, model=job["model"])
            except Exception as e:  # missing file on disk and the like
                problems.append((param, f"{param} {fid} cannot be read: {e}"))
                continue
            if not rep.ok:
                lines = [i.format() for i in rep.errors[:MAX_REPORTED_ERRORS]]
                more = f" (and {rep.n_errors - len(lines)} more)" if rep.n_errors > len(lines) else ""
                problems.append((param, f"{param} {fid} is invalid: " + "; ".join(lines) + more))
            elif purpose == "training":
                n_examples = rep.n_examples
        if problems:
            fail(job["id"], " | ".join(p for _, p in problems), code="invalid_training_file",
                 param=problems[0][0])
            return
        try:  # what only the data can refute: a batch larger than the file
            store.request(job).method.hyperparameters.check_examples(n_examples or 0)
        except TuneryError as e:
            fail(job["id"], str(e), code="invalid_hyperparameters", param=e.param)
            return
        if store.set_status(job["id"], "queued", only_from=("validating_files",)):
            store.add_event(job["id"], "Files validated, moving job to queued state")

    def _resume_lost(self) -> int:
        """Running jobs whose training is lost go back to the queue: those whose lease ran out
        (their worker died), those of a worker of this machine whose process has ended, and those
        held under this worker's own id (it restarted). One whose training process still lives on
        this machine (its lock is held) resumes once that process has ended. It is asked to end
        only when its worker has ended, or no worker holds the job (it also stops by itself when
        it sees its parent gone); never under a live worker, which stops its own training when it
        loses the lease. Returns how many such processes live here, so that no other training
        starts beside them on the same cores; one on another machine (sharing the folder) is
        left to its own worker."""
        alive = 0
        gone = frozenset(h for h in store.holders() if h != self.worker_id and _has_ended(h))
        for r in store.lost_jobs(self.worker_id, gone):
            lock = try_lock(store.job_dir(r["id"]) / "lock")
            if lock is not None:
                lock.close()
                store.release(r["id"], r["worker_id"] if r["worker_id"] in gone else self.worker_id,
                              max_attempts=MAX_ATTEMPTS, message="Training process was lost (worker or machine "
                                                                 "stopped); resuming from the last checkpoint")
                continue
            if not (r["pid"] and _is_training_process(r["pid"], r["id"])):
                continue  # trained on another machine
            alive += 1
            if r["worker_id"] is None or r["worker_id"] in gone or r["worker_id"] == self.worker_id:
                with contextlib.suppress(OSError):  # it has just ended
                    os.kill(r["pid"], signal.SIGTERM)
        return alive

    def _remove_stale_copies(self) -> None:
        """A model copy still under its staging name whose job no longer runs was cut short (its
        process was killed mid-copy) and is never used. Copies of running jobs (of any worker,
        on any machine sharing the folder) are left alone."""
        running = {job_id[-8:] for job_id in store.running_ids()}
        for p in staging_dirs(home().models):
            # ".<model folder, ending in the job id's last 8 characters>.<random>.staging.tmp"
            if p.name.rsplit(".", 3)[0][-8:] not in running:
                shutil.rmtree(p, ignore_errors=True)

    def _start_next(self) -> None:
        job = store.claim_next(self.worker_id, self.claim_lease_s)
        if job is None:
            return
        job_id = job["id"]
        try:  # more training processes than GPUs: checked by the worker that trains it, on its machine
            # (the one that validated it may be another, with other GPUs), before any rank dies in CUDA
            nproc = store.request(job).nproc_per_node
            check_devices(nproc)
        except TuneryError as e:
            fail(job_id, str(e), code="invalid_hyperparameters", param=e.param)
            return
        if job["attempts"] == 1 and not store.checkpoints(job_id, limit=1)[0]:  # not a resumed pause
            store.add_event(job_id, "Fine-tuning job started")
        jdir = store.job_dir(job_id)
        jdir.mkdir(parents=True, exist_ok=True)
        log = open(jdir / "train.log", "ab")  # noqa: SIM115 - handed to the child
        cmd = launch_command(["-m", "tunery.jobs", job_id], nproc)  # torchrun for N > 1
        proc = subprocess.Popen(cmd, stdout=log,
                                stderr=subprocess.STDOUT, env={**os.environ, "TOKENIZERS_PARALLELISM": "false",
                                                                WORKER_ENV: self.worker_id},
                                start_new_session=True)
        log.close()
        store.update(job_id, pid=proc.pid)
        self.child = _Child(job_id, proc)
        threading.Thread(target=self._beat, args=(self.child,), name="tunery-heartbeat", daemon=True).start()

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
