"""One job's training, run in a child process (``python -m tunery.jobs JOB_ID``) so that
cancelling kills it promptly and a crash in training cannot take the server down.

The child holds an exclusive lock on ``jobs/<id>/lock`` while it lives; the operating system
drops the lock when the process dies however it dies, which is how a worker knows a job's
training is gone and must be resumed from its last checkpoint."""

from __future__ import annotations

import fcntl
import math
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

from tunery import db
from tunery.errors import TuneryError
from tunery.jobs import store

EXIT_INTERRUPTED = 75  # stopped by SIGTERM (worker shutdown): resume later


def try_lock(path: Path):
    """An open file holding an exclusive lock on ``path``, or None if another process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    f = open(path, "a+")  # noqa: SIM115 - the lock lives as long as the file stays open
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        return None
    return f


def training_config(job: dict[str, Any], n_examples: int, spec) -> tuple[Any, dict[str, Any]]:
    from tunery.models.catalog import TrainingDefaults
    from tunery.training.config import Hyperparameters, LoraSettings, TrainingConfig

    defaults = spec.training if spec else TrainingDefaults()
    hp = Hyperparameters.parse(job["hyperparameters"]).resolve(n_examples)
    method = job["training_method"]
    base_lr = defaults.lora_learning_rate if method == "lora" else defaults.full_learning_rate
    steps = math.ceil(n_examples / hp.batch_size) * hp.n_epochs
    overrides = (job.get("config") or {}).get("lora")
    cfg = TrainingConfig(
        method=method, n_epochs=hp.n_epochs, batch_size=hp.batch_size,
        learning_rate=base_lr * hp.learning_rate_multiplier, seed=int(job["seed"]),
        max_seq_length=defaults.max_seq_length, lora=LoraSettings.from_defaults(defaults, overrides),
        checkpoint_every=int(os.environ.get("TUNERY_CHECKPOINT_EVERY", 0)) or max(5, steps // 8 if method == "lora" else steps // 2),
        eval_every=max(1, min(10, steps // 10)),
    )
    return cfg, hp.to_dict()


def run(job_id: str) -> int:
    from tunery.data import files
    from tunery.data.validate import validate_bytes
    from tunery.home import atomic_dir, home
    from tunery.models import registry
    from tunery.models.loading import base_path, load_tokenizer
    from tunery.models.registry import ModelRecord
    from tunery.training import Callbacks, Cancelled, Trainer, encode_all

    jdir = store.job_dir(job_id)
    lock = try_lock(jdir / "lock")
    if lock is None:
        return 0  # another process is already training this job
    interrupted = {"flag": False}
    signal.signal(signal.SIGTERM, lambda *_: interrupted.__setitem__("flag", True))

    job = store.row(job_id)
    if job["status"] != "running":
        return 0
    base = registry.ensure(job["model"])
    tok = load_tokenizer(base)

    def load(fid: str, purpose: str):
        rep = validate_bytes(files.content(fid), purpose=purpose)
        return [c for _, c in rep.examples]

    train = load(job["training_file"], "training")
    valid = load(job["validation_file"], "validation") if job["validation_file"] else []
    cfg, hp = training_config(job, len(train), base.spec)
    ft_name = store.model_name(job["model"], job["suffix"], job_id)
    store.update(job_id, hyperparameters=hp, config={**(job.get("config") or {}), "resolved": cfg.to_dict()})
    train_ex = encode_all(train, tok, max_length=cfg.max_seq_length)
    valid_ex = encode_all(valid, tok, max_length=cfg.max_seq_length)
    n_trunc = sum(e.truncated for e in train_ex)
    if n_trunc:
        store.add_event(job_id, f"{n_trunc} training example(s) longer than {cfg.max_seq_length} tokens were "
                                "truncated", level="warn")

    last_check = {"t": 0.0, "stop": False}

    def should_stop() -> bool:
        if interrupted["flag"]:
            return True
        now = time.monotonic()
        if now - last_check["t"] > 0.5:
            last_check["t"] = now
            last_check["stop"] = store.row(job_id)["status"] != "running"
        return last_check["stop"]

    started = time.time()

    last_progress: dict[str, Any] = {}

    def on_progress(info: dict[str, Any]) -> None:
        last_progress.update(info)
        done = info["step"] / info["total_steps"]
        if done > 0 and info["elapsed"] > 0:
            store.update(job_id, estimated_finish=int(time.time() + info["elapsed"] / done * (1 - done)))

    def on_checkpoint(step: int, path: Path, metrics: dict[str, Any]) -> None:
        store.add_checkpoint(job_id, step, str(path), f"{ft_name}:ckpt-step-{step}", metrics)
        from tunery.training import checkpoint

        store.prune_checkpoints(job_id, {str(p) for p in checkpoint.list_checkpoints(path.parent)})

    trainer = Trainer(base_path=base_path(base), tokenizer=tok, config=cfg, train=train_ex, valid=valid_ex,
                      output_dir=jdir / "output", callbacks=Callbacks(
                          on_message=lambda level, msg: store.add_event(job_id, msg, level=level),
                          on_metrics=lambda row: store.add_event(
                              job_id, f"Step {row['step']}/{trainer.total_steps}: training loss={row['train_loss']:.4f}",
                              type="metrics", data={**row, "total_steps": trainer.total_steps,
                                                    "epoch": last_progress.get("epoch"),
                                                    "tokens_per_second": round(last_progress.get("tokens_per_second", 0), 1)}),
                          on_checkpoint=on_checkpoint, on_progress=on_progress, should_stop=should_stop))
    from tunery.training import checkpoint as ck

    latest = ck.latest(trainer.checkpoint_dir)
    if latest is not None:
        step = ck.load_state(latest)["step"]
        store.delete_metric_events_after(job_id, step)
    else:
        store.add_event(job_id, f"Fine-tuning started: {len(train_ex)} examples, {cfg.n_epochs} epochs, batch size "
                                f"{cfg.batch_size}, learning rate {cfg.learning_rate:g} ({cfg.method}), "
                                f"{trainer.total_steps} steps", data={"hyperparameters": hp})
    try:
        result = trainer.run(resume=True)
    except Cancelled:
        if interrupted["flag"]:
            return EXIT_INTERRUPTED
        return 0

    model_dir = home().models / ft_name.replace(":", "_")
    with atomic_dir(model_dir) as tmp:
        for item in result.output_dir.iterdir():
            (shutil.copytree if item.is_dir() else shutil.copy2)(item, tmp / item.name)
    registry.register(ModelRecord(id=ft_name, kind="fine-tuned", parent=base.id,
                                  path=model_dir, source=f"job:{job_id}", method=cfg.method,
                                  meta={"job": job_id, "catalog": (base.meta or {}).get("catalog", base.id),
                                        "context_length": base.context_length, "base_path": str(base_path(base))}),
                      replace=True)
    results = files.create((jdir / "output" / "results.csv").read_bytes(), "step_metrics.csv",
                           "fine-tune-results")
    store.set_status(job_id, "succeeded", only_from=("running",), finished_at=db.now(), fine_tuned_model=ft_name,
                     trained_tokens=result.trained_tokens, result_files=[results.id], estimated_finish=None)
    store.add_event(job_id, f"New fine-tuned model created: {ft_name}",
                    data={"seconds": round(time.time() - started, 2),
                          "tokens_per_second": round(result.tokens_per_second, 1)})
    store.add_event(job_id, "The job has successfully completed")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    job_id = argv[0]
    try:
        return run(job_id)
    except TuneryError as e:
        fail(job_id, e.message, code=e.code or "invalid_training_input", param=e.param)
        return 1
    except Exception as e:  # a crash: record it on the job, never leave it "running" silently
        import traceback

        traceback.print_exc()
        fail(job_id, f"training failed: {type(e).__name__}: {e}", code="training_error")
        return 1


def fail(job_id: str, message: str, *, code: str, param: str | None = None) -> None:
    if store.set_status(job_id, "failed", only_from=("validating_files", "queued", "running"),
                        finished_at=db.now(), error={"code": code, "message": message, "param": param}):
        store.add_event(job_id, f"Fine-tuning job failed: {message}", level="error")


if __name__ == "__main__":
    sys.exit(main())
