"""Fine-tuning jobs under SIGKILL, for the reliability suite (``test_kills.py``, a few kills) and
``benchmarks/reliability.py`` (20): a real ``tunery worker`` process trains the tiny model on
identical jobs one after another; at random moments of a job's training either the worker or the
training process is killed with SIGKILL (a killed worker is started again, as a user or a service
manager would). Every job must end: succeeded with the weights of the same job trained without
interruption (each tensor of the final model compared, bit for bit), or failed with an error
that says why; none is lost or left in a non-terminal state, and no training process outlives
the run.

The worker helpers are the queue tests' (``tests/support_workers.py``); the caller's
``TUNERY_HOME`` holds the state, with the tiny model registered as ``tiny-random``."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from support_chat import chat_lines
from support_workers import end_worker, worker_process

HYPERPARAMETERS = {"n_epochs": 2, "batch_size": 2}  # 10 examples: 10 steps, a checkpoint every 2


@dataclass
class Outcome:
    job_id: str
    status: str
    kills: list[str] = field(default_factory=list)  # "worker at 3.1 s (step 4)", ...
    same_weights: bool | None = None  # succeeded: equal to the uninterrupted run's
    error: str | None = None


def tensor_digests(model_dir: Path) -> dict[str, str]:
    """A SHA-256 per tensor of every safetensors file of a model folder."""
    from safetensors.numpy import load_file

    out = {}
    for f in sorted(model_dir.rglob("*.safetensors")):
        for name, t in load_file(f).items():
            out[f"{f.relative_to(model_dir)}:{name}"] = hashlib.sha256(t.tobytes()).hexdigest()
    if not out:
        raise AssertionError(f"no safetensors weights in {model_dir}")
    return out


def _weights(job_id: str) -> dict[str, str]:
    from tunery.jobs import get_job
    from tunery.models import get

    return tensor_digests(get(get_job(job_id)["fine_tuned_model"]).path)


def _training_pid(job_id: str) -> int | None:
    from tunery.jobs import store
    from tunery.jobs.worker import _is_training_process

    pid = store.row(job_id)["pid"]
    return pid if pid and _is_training_process(pid, job_id) else None


def _wait(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def run(kills: int, *, seed: int, kills_per_job: int = 2, timeout: float = 600.0, log=print) -> list[Outcome]:
    """``kills`` SIGKILLs (each landed on a live process) spread over jobs, at most ``kills_per_job``
    each (fewer than a job's 3 attempts, so each should succeed; a job that ends before its next
    moment takes fewer), after one uninterrupted reference job. Returns each killed
    job's outcome; raises AssertionError for a job not ended within ``timeout`` seconds."""
    from tunery.data import files
    from tunery.home import home as tunery_home
    from tunery.jobs import create_job, get_job, metrics, store
    from tunery.jobs.runner import staging_dirs

    rng = random.Random(seed)
    home = Path(os.environ["TUNERY_HOME"])
    data = home / "kills-train.jsonl"
    data.parent.mkdir(parents=True, exist_ok=True)
    data.write_text("".join(json.dumps(x) + "\n" for x in chat_lines(10)))
    train = files.create_from_path(data).id

    def job() -> str:
        return create_job(model="tiny-random", training_file=train, seed=7, hyperparameters=HYPERPARAMETERS)["id"]

    env = {"TUNERY_CHECKPOINT_EVERY": "2"}
    proc = worker_process(None, **env)  # default id (host:pid): a restarted worker resumes at once
    try:
        ref = job()
        t0 = time.monotonic()
        _wait(lambda: get_job(ref)["status"] in store.TERMINAL, timeout, "the reference job")
        ref_s = time.monotonic() - t0
        assert get_job(ref)["status"] == "succeeded", get_job(ref)["error"]
        ref_weights = _weights(ref)
        log(f"reference job: {ref_s:.1f} s, {len(ref_weights)} tensors")
        outcomes: list[Outcome] = []
        left = kills
        while left > 0:
            out = Outcome(job(), "")
            outcomes.append(out)
            while len(out.kills) < kills_per_job and left > 0:  # until its kills landed, or it ended
                _wait(lambda o=out: get_job(o.job_id)["status"] != "validating_files"
                      and (_training_pid(o.job_id) or get_job(o.job_id)["status"] in store.TERMINAL),
                      timeout, "a training process")
                t0 = time.monotonic()
                if rng.random() < 0.5:  # a moment of the whole run: loading, training, copying the model
                    time.sleep(rng.uniform(0.0, ref_s))
                else:  # a moment of the training itself, between checkpoints or on one
                    at = rng.randint(1, 9)
                    _wait(lambda o=out, at=at: len(metrics(o.job_id)) >= at
                          or get_job(o.job_id)["status"] in store.TERMINAL, timeout, f"step {at}")
                delay = time.monotonic() - t0
                if get_job(out.job_id)["status"] in store.TERMINAL:
                    break  # it ended before this moment
                step = len(metrics(out.job_id))
                if rng.random() < 0.5:
                    proc.kill()  # SIGKILL: no cleanup; its training process sees it gone and stops
                    proc.wait()
                    proc = worker_process(None, **env)
                    out.kills.append(f"worker at {delay:.1f} s (step {step})")
                    left -= 1
                elif (pid := _training_pid(out.job_id)) is not None:  # else between two processes: try again
                    os.kill(pid, signal.SIGKILL)
                    out.kills.append(f"training at {delay:.1f} s (step {step})")
                    left -= 1
            _wait(lambda o=out: get_job(o.job_id)["status"] in store.TERMINAL, timeout, f"the end of {out.job_id}")
            row = get_job(out.job_id)
            out.status, out.error = row["status"], (row["error"] or {}).get("message")
            if out.status == "succeeded":
                out.same_weights = _weights(out.job_id) == ref_weights
            log(f"{out.job_id}: {out.status}, kills: {', '.join(out.kills) or 'none landed'}"
                + (f", weights {'identical' if out.same_weights else 'DIFFERENT'}" if out.same_weights is not None
                   else f", error: {out.error}"))
    finally:
        end_worker(proc)
    from tunery import db

    stuck = db.query("SELECT id, status FROM jobs WHERE status NOT IN ('succeeded','failed','cancelled')")
    assert not stuck, f"jobs left unfinished: {[tuple(r) for r in stuck]}"
    # a training process that ended its job may still be exiting (an interpreter with torch loaded
    # takes a moment to shut down, longer on a loaded machine): give it a few seconds, not forever
    deadline = time.monotonic() + 15
    while (alive := [o.job_id for o in outcomes if _training_pid(o.job_id)]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not alive, f"seed {seed}: training processes outlived their jobs by 15 s: {alive}"
    assert not staging_dirs(tunery_home().models), "half-copied models left behind"
    return outcomes
