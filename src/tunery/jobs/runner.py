"""One job's training, run in a child process (``python -m tunery.jobs JOB_ID``) so that
cancelling kills it promptly and a crash in training cannot take the server down.

The child holds an exclusive lock on ``jobs/<id>/lock`` while it lives; the operating system
drops the lock when the process dies however it dies, which is how a worker knows a job's
training is gone and must be resumed from its last checkpoint.

This module says what happens to the job: it reads the stored request back, resolves it, runs the
recipe (``tunery.training.recipe.finetune``, what happens to the model) with callbacks that turn
its progress into job events, metrics and checkpoints, stops it on cancel, and registers the
fine-tuned model when it succeeds; before that, it prepares what serving the new model needs (the
light tokenizer's check, and the compiled copy a fine-tune outside the default LoRA layers is served
from: :func:`_prepare_fast_copy`)."""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tunery import db
from tunery.data.issues import plural
from tunery.errors import TuneryError
from tunery.jobs import store

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from tunery.models.registry import ModelRecord
    from tunery.training.config import TrainingConfig

EXIT_INTERRUPTED = 75  # stopped by SIGTERM (worker shutdown): resume later
WORKER_ENV = "TUNERY_WORKER_ID"  # the worker that claimed the job, set by it for its training process


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


class _Reporter:
    """The recipe's callbacks, as the job sees them: events and metrics in the store, the
    estimated finish, checkpoints as models, and a stop when the job is cancelled (or the worker
    asks the process to end)."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.model_name = ""  # the fine-tuned model's name, once the job is read
        self.interrupted = False  # SIGTERM: the worker is shutting down; the job resumes later
        self.total_steps = 0
        self.config: TrainingConfig | None = None  # set once resolved, before training starts
        self.hyperparameters: dict[str, Any] = {}
        self.note = ""  # said after the settings when training starts: a default the data chose
        self._progress: dict[str, Any] = {}
        self._checked, self._stop = 0.0, False
        self.parent = os.getppid()  # the worker that started this process
        self.worker_id = os.environ.get(WORKER_ENV) or None  # its id in the job's lease

    def callbacks(self):
        from tunery.training import Callbacks

        return Callbacks(on_message=self.message, on_metrics=self.metrics, on_checkpoint=self.checkpoint,
                         on_progress=self.progress, should_stop=self.should_stop, keep_on_stop=self.keep_on_stop,
                         on_start=self.start)

    def message(self, level: str, message: str) -> None:
        store.add_event(self.job_id, message, level=level)

    def start(self, info: dict[str, Any]) -> None:
        self.total_steps = info["total_steps"]
        # the steps after the checkpoint (every step, when no checkpoint was kept) run again: drop
        # their old metrics so that none appears twice
        store.delete_metric_events_after(self.job_id, info["resumed_from"] or 0)
        if info["resumed_from"] is not None:
            return
        cfg = self.config
        store.add_event(self.job_id, f"Fine-tuning started: {info['examples']} examples, {cfg.n_epochs} epoch{plural(cfg.n_epochs)}, "
                                     f"batch size {cfg.batch_size}, learning rate {cfg.learning_rate:g} "
                                     f"({cfg.method}), {self.total_steps} steps" + (f". {self.note}" if self.note else ""),
                        data={"hyperparameters": self.hyperparameters})

    def metrics(self, row: dict[str, Any]) -> None:
        store.add_event(self.job_id, f"Step {row['step']}/{self.total_steps}: training loss={row['train_loss']:.4f}",
                        type="metrics", data={**row, "total_steps": self.total_steps,
                                              "epoch": self._progress.get("epoch"),
                                              "tokens_per_second": round(self._progress.get("tokens_per_second", 0), 1)})

    def progress(self, info: dict[str, Any]) -> None:
        self._progress.update(info)
        done = info["step"] / info["total_steps"]
        if done > 0 and info["elapsed"] > 0:
            store.update(self.job_id, estimated_finish=int(time.time() + info["elapsed"] / done * (1 - done)))

    def checkpoint(self, step: int, path: Path, metrics: dict[str, Any]) -> None:
        from tunery.training import checkpoint

        store.add_checkpoint(self.job_id, step, str(path), f"{self.model_name}:ckpt-step-{step}", metrics)
        store.prune_checkpoints(self.job_id, {str(p) for p in checkpoint.list_checkpoints(path.parent)})

    def _gone(self) -> bool:
        """The worker that started this process is shutting down (SIGTERM) or died (SIGKILL): stop
        rather than train beside its successor."""
        if os.getppid() != self.parent:
            self.interrupted = True
        return self.interrupted

    def _held(self, statuses: tuple[str, ...]) -> bool:
        """The job is still in one of ``statuses`` and, under a worker, still that worker's (its
        lease not run out: once it has, another worker may train it)."""
        if self.worker_id:
            return store.holds(self.job_id, self.worker_id, statuses)
        return store.row(self.job_id)["status"] in statuses

    def should_stop(self) -> bool:
        if self._gone():
            return True
        now = time.monotonic()
        if now - self._checked > 0.5:  # a cancel or pause is seen within half a second, without a query per step
            self._checked = now
            self._stop = not self._held(("running",))
        return self._stop

    def finishing_stop(self) -> bool:
        """What stops the work after the last step (the fast copy): a cancel, a takeover or the
        worker's end, but not a pause, which comes too late to save anything: the job finishes."""
        return self._gone() or not self._held(store.TRAINING)

    def keep_on_stop(self) -> bool:
        """A job being paused keeps the step it reached (a checkpoint there); one cancelled, taken
        over by another worker or interrupted goes on from its last checkpoint, if at all."""
        if self.interrupted:
            return False
        r = store.row(self.job_id)
        return r["status"] == "pausing" and r["worker_id"] == self.worker_id


def run(job_id: str) -> int:
    """Train job ``job_id`` (status ``running``) to the end; returns the process's exit code."""
    from tunery.data import files
    from tunery.models import ensure
    from tunery.models.catalog import TrainingDefaults
    from tunery.models.stack import on_root
    from tunery.training import Cancelled, distributed
    from tunery.training.recipe import finetune, finetune_dpo

    jdir = store.job_dir(job_id)
    main_rank = distributed.is_main()  # under torchrun, ranks > 0 train silently under rank 0's lock
    lock = try_lock(jdir / "lock") if main_rank else True
    if lock is None:
        return 0  # another process is already training this job
    reporter = _Reporter(job_id)
    signal.signal(signal.SIGTERM, lambda *_: setattr(reporter, "interrupted", True))

    job = store.row(job_id)
    if job["status"] not in store.TRAINING:  # pausing: under torchrun every rank starts, and all stop together
        return 0
    request = store.request(job)
    # a checkpoint of a job from a LoRA fine-tune holds only its own adapter: start from the two
    # stacked into one on the base, as it is served
    base = on_root(ensure(request.model))
    reporter.model_name = store.model_name(_first_base(base).id, job["suffix"], job_id)

    dpo = request.method.type == "dpo"
    train = _examples(files.content(request.training_file), "training", dpo=dpo)
    valid = _examples(files.content(request.validation_file), "validation", dpo=dpo) if request.validation_file else []
    defaults = base.spec.training if base.spec else TrainingDefaults()
    tools = not dpo and any(c.tools for c in train)  # DPO trains on text answers: the usual layers
    config, hp = request.training_config(len(train), defaults, tools=tools)
    reporter.config, reporter.hyperparameters = config, hp.to_dict()
    if tools and config.method == "lora" and (request.lora is None or request.lora.layers is None) \
            and defaults.tool_lora_layers != defaults.lora_layers:
        reporter.note = ("LoRA on every layer, as the training examples define tools (docs/tools.md); "
                         "set lora.layers (--lora-layers) to choose." if config.lora.layers is None else
                         f"LoRA on layers {list(config.lora.layers)}, as the training examples define tools.")
    store.update(job_id, hyperparameters=hp.to_dict())
    started = time.time()
    try:
        result = (finetune_dpo if dpo else finetune)(base, config, train, valid, jdir / "output", reporter.callbacks())
    except Cancelled:
        return EXIT_INTERRUPTED if reporter.interrupted else 0
    if not main_rank:
        return 0  # rank 0 registers the model
    results = files.create((jdir / "output" / "results.csv").read_bytes(), "step_metrics.csv",
                           "fine-tune-results")
    events = [(f"New fine-tuned model created: {reporter.model_name}",
               {"seconds": round(time.time() - started, 2), "tokens_per_second": round(result.tokens_per_second, 1)}),
              ("The job has successfully completed", None)]
    root = _root(base, config.method)
    _check_serving_tokenizer(_model_record(job_id, root, reporter.model_name, config.method, result.output_dir))
    if config.method == "lora":
        _prepare_fast_copy(root, result.output_dir, reporter)
    if not _register(job_id, root, reporter.model_name, config.method, result.output_dir,
                     events=events,
                     finished=dict(finished_at=db.now(), fine_tuned_model=reporter.model_name,
                                   trained_tokens=result.trained_tokens, result_files=[results.id],
                                   estimated_finish=None)):
        files.delete(results.id)  # cancelled before the point of no return: nothing of it stays
    return 0


def _check_serving_tokenizer(rec: ModelRecord) -> None:
    """Check the new model's tokenizer files for serving's light tokenizer now, while transformers
    is loaded anyway, so the first cold ``tunery ask`` of the fine-tune does not pay ~2 s for the
    check (``tunery.models.loading``). ``rec`` is the model in the job's output folder, which
    :func:`_register` copies as it is: the verdict is keyed by the files' content, so it counts for
    the registered model. Done before the job is marked succeeded, so that the training process
    never outlives its job. A failure here only logs."""
    from tunery.models.loading import load_tokenizer

    try:
        load_tokenizer(rec, light=True)
    except Exception as e:  # noqa: BLE001 - the check is a shortcut; serving checks again on first use
        log.debug("could not check the serving tokenizer of %s: %s", rec.id, e)


def _prepare_fast_copy(root: ModelRecord, adapter_dir: Path, reporter: _Reporter) -> None:
    """Build the compiled copy a new LoRA fine-tune will be served from when it is not its base's
    default copy (it adapts layers outside the catalog's LoRA: ``tunery.compiled.cache.needs_every_layer``,
    the rule serving routes by) and the base is already served fast at the process's precision (its
    default copy exists): 40-100 s here (int8 / int4 with GPTQ on SmolLM2) instead of on the
    fine-tune's first request. Done before the job is marked succeeded, like the tokenizer check,
    in a child process that a cancel or the worker's shutdown kills at once (the job then goes on to
    register, or stops, as it would have); a failure is an event, not a failed job: serving builds
    the copy on first use anyway."""
    from tunery.compiled import cache
    from tunery.compiled.lora import adapter_layers, convertible

    try:
        precision = cache.check_precision(None)
        default = cache.default_copy_layers(root)
        if (precision not in cache.COMPILED_PRECISIONS or convertible(adapter_dir) is not None
                or not cache.needs_every_layer(default, adapter_layers(adapter_dir))):
            return
        if (cache.find(root.path, precision, layers=default, hash_unknown=False) is None  # not served fast yet
                or cache.find(root.path, precision, hash_unknown=False) is not None  # built already
                or reporter.finishing_stop()):
            return
        reporter.message("info", f"Building the {precision} copy of {root.id} with adapter inputs on every layer, "
                                 f"which this fine-tune needs (once per base model)")
        started = time.monotonic()
        if cache.build_in_child(root.path, precision, name=root.id, stop=reporter.finishing_stop):
            reporter.message("info", f"Built it in {time.monotonic() - started:.0f} s")
        elif not reporter.finishing_stop():
            reporter.message("warn", "Could not build it (see the worker's log); it is built when the fine-tune "
                                     "is first served")
    except Exception as e:  # noqa: BLE001 - a head start only; serving builds it on first use
        log.warning("could not build the compiled copy for %s: %s", root.id, e)


def _examples(data: bytes, purpose: str, *, dpo: bool) -> list:
    """A file's preference pairs (DPO) or chat conversations (supervised); the other format is an
    error that says which method takes it."""
    from tunery.data.preference import file_kind, load_pairs
    from tunery.data.validate import load_examples
    from tunery.jobs.api import check_data_kind

    check_data_kind(file_kind(data), purpose, "dpo" if dpo else "supervised")
    return load_pairs(data, purpose=purpose) if dpo else load_examples(data, purpose=purpose)


def _first_base(rec):
    """The base model a fine-tune descends from: a fine-tune of a fine-tune is named after it, as
    OpenAI names it (``ft:BASE:SUFFIX:ID``, never ``ft:ft:...``)."""
    from tunery.models import registry

    while rec.kind != "base" and rec.parent:
        rec = registry.get(rec.parent)
    return rec


def _root(base, method: str):
    """The model a fine-tune is registered on: LoRA trained from a LoRA fine-tune was stacked into
    one adapter on that fine-tune's own base (see ``training.recipe``)."""
    from tunery.models import registry

    return registry.get(base.parent) if base.is_adapter and method == "lora" else base


_MODEL_PREFIX, _STAGING = "ft_", ".staging.tmp"  # fine-tuned models' folders; copies not yet in place


def staging_dirs(models: Path) -> list[Path]:
    """The copies of fine-tuned models that :func:`_register` was still making (their process
    was killed mid-copy): only one training process runs per home, so when none runs they are
    all stale."""
    return [p for p in models.glob(f".{_MODEL_PREFIX}*{_STAGING}") if p.is_dir()] if models.is_dir() else []


def _register(job_id: str, base, name: str, method: str, output: Path, *, finished: dict[str, Any],
              events: list[tuple[str, dict[str, Any] | None]]) -> bool:
    """Copy the trained model into the model store, register it under ``name``, mark the job
    succeeded and record its last ``events`` (so whoever sees it succeeded sees them too); False
    (and nothing kept) if the job was cancelled meanwhile, or another worker took it over.

    The copy is made first, under a staging name, while a cancel may still come; then one
    transaction checks the job still runs, registers the model, marks the job succeeded and moves
    the copy into place (the move last, so a failure rolls the rest back). That commit is the point
    of no return: a later cancel is refused because the job has ended."""
    import tempfile

    from tunery.home import atomic_dir, home
    from tunery.models import registry

    model_dir = home().models / name.replace(":", "_")
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{model_dir.name}.", suffix=_STAGING, dir=model_dir.parent))
    try:
        for item in output.iterdir():
            (shutil.copytree if item.is_dir() else shutil.copy2)(item, staging / item.name)
        with db.transaction() as tx:
            was = store.row(job_id, conn=tx)["status"]
            # a pause that came after the last step has nothing left to save: the job completes
            if not store.set_status(job_id, "succeeded", only_from=store.TRAINING, conn=tx,
                                    held_by=os.environ.get(WORKER_ENV) or None, **finished):
                return False
            if was == "pausing":
                store.add_event(job_id, "Training had ended when the pause came: the job completes instead",
                                conn=tx)
            for message, data in events:
                store.add_event(job_id, message, data=data, conn=tx)
            registry.register(_model_record(job_id, base, name, method, model_dir), replace=True, conn=tx)
            with atomic_dir(model_dir) as tmp:
                tmp.rmdir()
                staging.rename(tmp)
        return True
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _model_record(job_id: str, base, name: str, method: str, path: Path) -> ModelRecord:
    """The registry's record of the model job ``job_id`` trains from ``base``, its files at ``path``."""
    from tunery.models.loading import base_path
    from tunery.models.registry import ModelRecord

    return ModelRecord(id=name, kind="fine-tuned", parent=base.id, path=path, source=f"job:{job_id}", method=method,
                       meta={"job": job_id, "catalog": (base.meta or {}).get("catalog", base.id),
                             "context_length": base.context_length, "base_path": str(base_path(base))})


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    job_id = argv[0]
    try:
        return run(job_id)
    except TuneryError as e:  # with its hint: the fix (a rank's check_devices names it there)
        fail(job_id, str(e), code=e.code or "invalid_training_input", param=e.param)
        return 1
    except Exception as e:  # a crash: record it on the job, never leave it "running" silently
        import traceback

        traceback.print_exc()
        fail(job_id, f"training failed: {type(e).__name__}: {e}", code="training_error")
        return 1


def fail(job_id: str, message: str, *, code: str, param: str | None = None) -> None:
    # the message may quote the user's data: lone surrogates ("\udfff") cannot be stored as UTF-8
    message = message.encode("utf-8", "backslashreplace").decode("utf-8")
    if store.set_status(job_id, "failed", only_from=("validating_files", "queued", *store.TRAINING),
                        finished_at=db.now(), error={"code": code, "message": message, "param": param}):
        store.add_event(job_id, f"Fine-tuning job failed: {message}", level="error")


if __name__ == "__main__":
    sys.exit(main())
