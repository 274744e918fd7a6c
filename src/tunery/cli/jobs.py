"""`tunery finetune`, `tunery jobs ...` and `tunery worker`: thin maps onto ``tunery.jobs``."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
from collections.abc import Collection
from pathlib import Path

import click
from pydantic import ValidationError
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from tunery.cli._common import (
    DataPath,
    Group,
    console,
    err_console,
    print_fields,
    print_json,
    print_list,
    threads_option,
)
from tunery.errors import InvalidInput, TuneryError, invalid_request, validation_param
from tunery.jobs.api import EVENTS_LIMIT, PAGE_LIMIT, check_data_kind
from tunery.jobs.spec import FineTuneRequest
from tunery.jobs.store import ACTIVE, TERMINAL
from tunery.models.catalog import DEFAULT_MODEL
from tunery.training.config import DPOHyperparameters, Hyperparameters, LoraSpec

STATUS_STYLE = {"succeeded": "green", "failed": "red", "cancelled": "yellow", "running": "cyan",
                "queued": "blue", "validating_files": "blue", "pausing": "magenta", "paused": "magenta"}


_FLAGS: dict[str, str] = {}
"""Request path (``lora.r``) -> the option that sets it (``--lora-r``), to name the flag in errors."""
_PATHS = {FineTuneRequest: "", Hyperparameters: "hyperparameters.", DPOHyperparameters: "hyperparameters.",
          LoraSpec: "lora."}


def _spec_option(flag: str, model: type, field: str, *decls: str, note: str = "", usage: str = "", **kw):
    """An option setting the request's ``field`` of ``model``: its help is that field's description,
    after ``usage`` (how the option spells a value where the request's JSON spells it otherwise)."""
    _FLAGS[_PATHS[model] + field] = flag
    return click.option(flag, *decls, help=usage + model.model_fields[field].description + note, **kw)


def _flag(param: str | None, given: Collection[str] = ()) -> str | None:
    """The option behind a request path; the method's hyperparameters are set by the plain options.
    ``lora`` as a whole (refused on a full fine-tune) is the ``--lora-*`` options among the request
    paths ``given`` (``lora.r``), as the user typed them."""
    path = re.sub(r"^method\.[a-z_]+\.", "", param or "")
    if path == "lora":
        return ", ".join(flag for p, flag in _FLAGS.items() if p.startswith("lora.") and p in given) or None
    return _FLAGS.get(path)


def _in_option_terms(text: str, param: str | None) -> str:
    """A request error's text in the options' terms: the request's names of the settings the options
    set (``training_method full``, ``nproc_per_node``) become the options (``--training-method full``).
    Only names no sentence uses as a word are renamed, and the setting the error is about."""
    names = {path.rsplit(".", 1)[-1]: flag for path, flag in _FLAGS.items()}
    own = (param or "").rsplit(".", 1)[-1]
    renamed = [n for n in names if "_" in n or n == own]
    return re.sub(r"(?<![\w.-])(" + "|".join(map(re.escape, renamed)) + r")\b", lambda m: names[m[1]], text)


def _named(e: InvalidInput, given: Collection[str] = ()) -> InvalidInput:
    """A domain error about an option's value, with the option named (``given``: as for :func:`_flag`)."""
    flag = _flag(e.param, given)
    if flag is None or e.hint:
        return e
    return InvalidInput(e.message, param=e.param, code=e.code, hint=f"set with {flag}")


def _layer_list(ctx, param, text: str | None) -> str | list[int] | None:
    """``all``, or comma-separated indices and ranges (``20-29``)."""
    if text is None or text.strip() == "all":
        return None if text is None else "all"
    out: list[int] = []
    try:
        for part in text.split(","):
            lo, _, hi = part.strip().partition("-")
            if hi and int(hi) < int(lo):
                raise click.BadParameter(f"{part.strip()!r}: a range goes from the lower index to the higher, "
                                         f"e.g. {hi.strip()}-{lo.strip()}")
            out += list(range(int(lo), int(hi) + 1)) if hi else [int(lo)]
    except ValueError:
        raise click.BadParameter(f"{text!r}: use 'all' or indices like '20-29' or '0,5,10'") from None
    return out


def _names(ctx, param, text: str | None) -> list[str] | None:
    return None if text is None else [t.strip() for t in text.split(",") if t.strip()]


def _read_once(path: Path, shown: dict[Path, Path], param: str) -> Path:
    """``path`` itself, or for a pipe (``/dev/stdin``, a shell's ``<(...)``), which a second read
    finds empty, a file holding what it gave: validation, the data-kind check and the upload each
    read the file. The copy is removed when the command ends; ``shown`` maps what is read to
    what the user gave."""
    import atexit
    import shutil
    import tempfile

    from tunery.data.text import open_data

    if not path.exists() or path.is_file() or path.is_dir():
        shown[path] = path
        return path
    if (copy := next((c for c, given in shown.items() if given == path), None)) is not None:
        return copy  # the same pipe named twice (training and validation): it was read once
    folder = tempfile.mkdtemp(prefix="tunery-pipe-")
    atexit.register(shutil.rmtree, folder, True)
    copy = Path(folder) / (path.name if path.suffix else f"{path.name}.jsonl")
    with open_data(path, param=param) as f, copy.open("wb") as out:
        shutil.copyfileobj(f, out)
    shown[copy] = path
    return copy


@click.command()
@click.argument("training_file", type=DataPath(path_type=Path))
@_spec_option("--validation-file", FineTuneRequest, "validation_file", type=DataPath(path_type=Path))
@_spec_option("--model", FineTuneRequest, "model", "-m", default=DEFAULT_MODEL, show_default=True)
@_spec_option("--suffix", FineTuneRequest, "suffix")
@_spec_option("--n-epochs", Hyperparameters, "n_epochs", default="auto", show_default=True)
@_spec_option("--batch-size", Hyperparameters, "batch_size", default="auto", show_default=True)
@_spec_option("--learning-rate-multiplier", Hyperparameters, "learning_rate_multiplier", default="auto",
              show_default=True)
@_spec_option("--seed", FineTuneRequest, "seed", type=int)
@click.option("--method", type=click.Choice(["supervised", "dpo", "lora", "full"]), default="supervised",
              show_default=True, help="supervised (chat examples) or dpo (preference pairs: input, preferred_output, "
                                      "non_preferred_output). lora or full: the older spelling of --training-method.")
@_spec_option("--training-method", FineTuneRequest, "training_method", type=click.Choice(["lora", "full"]),
              note=" Default: lora.")
@_spec_option("--beta", DPOHyperparameters, "beta", default="auto", show_default=True, note=" With --method dpo.")
@_spec_option("--lora-r", LoraSpec, "r", type=int)
@_spec_option("--lora-alpha", LoraSpec, "alpha", type=int)
@_spec_option("--lora-dropout", LoraSpec, "dropout", type=float)
@_spec_option("--lora-target-modules", LoraSpec, "target_modules", callback=_names,
              usage="Comma-separated here: q_proj,v_proj. ")
@_spec_option("--lora-layers", LoraSpec, "layers", callback=_layer_list,
              note=" Here comma-separated indices or ranges, e.g. 20-29 or 0,5,10, or 'all'.")
@_spec_option("--nproc-per-node", FineTuneRequest, "nproc_per_node", type=int)
@_spec_option("--sharding", FineTuneRequest, "sharding", type=click.Choice(["auto", "ddp", "fsdp"]), default="auto",
              show_default=True)
@_spec_option("--precision", FineTuneRequest, "precision", type=click.Choice(["auto", "fp32", "bf16"]),
              default="auto", show_default=True)
@click.option("--wait/--no-wait", default=False, show_default=True, help="Train now and show progress until the job ends; exits 1 if it fails, is cancelled or is paused (no model yet).")
@threads_option("CPU threads for training, in the worker this command starts (default: every CPU this "
                "process may use; TUNERY_NUM_THREADS).")
def finetune(training_file: Path, validation_file: Path | None, model: str, suffix: str | None, n_epochs: str,
             batch_size: str, learning_rate_multiplier: str, seed: int | None, method: str,
             training_method: str | None, beta: str, lora_r: int | None,
             lora_alpha: int | None, lora_dropout: float | None, lora_target_modules: list[str] | None,
             lora_layers: str | list[int] | None, nproc_per_node: int | None, sharding: str, precision: str,
             wait: bool) -> None:
    """Start a fine-tuning job on TRAINING_FILE (chat JSONL; preference pairs with --method dpo).

    The file is validated first; problems are listed by line and field. A file of - is read
    from standard input. Without --wait the job
    is queued and a background worker trains it (follow it with `tunery jobs follow ID`).
    """
    from tunery.data import files
    from tunery.data.preference import file_kind
    from tunery.data.validate import MAX_REPORTED_ERRORS, validate_file
    from tunery.jobs import create_job

    lora = {"r": lora_r, "alpha": lora_alpha, "dropout": lora_dropout, "target_modules": lora_target_modules,
            "layers": lora_layers}
    if method in ("lora", "full"):
        if training_method not in (None, method):
            raise click.BadParameter(f"--method {method} and --training-method {training_method} disagree",
                                     param_hint="--training-method")
        method, training_method = "supervised", method
    if beta != "auto" and method != "dpo":
        raise click.BadParameter("beta is a DPO setting: add --method dpo", param_hint="--beta")
    given = {f"lora.{k}" for k, v in lora.items() if v is not None}  # the request refuses them on a full fine-tune
    hp = {"n_epochs": n_epochs, "batch_size": batch_size, "learning_rate_multiplier": learning_rate_multiplier,
          **({"beta": beta} if method == "dpo" else {})}
    try:  # the files are paths until they are uploaded, once the request and the data are known good
        request = FineTuneRequest.model_validate({
            "model": model, "training_file": str(training_file),
            "validation_file": str(validation_file) if validation_file else None, "suffix": suffix, "seed": seed,
            "method": {"type": method, method: {"hyperparameters": hp}}, "training_method": training_method,
            "lora": {k: v for k, v in lora.items() if v is not None} or None, "nproc_per_node": nproc_per_node,
            "sharding": sharding, "precision": precision})
    except ValidationError as e:
        err = e.errors(include_url=False)[0]
        param = validation_param(tuple(err["loc"]))
        flag = _flag(param, given)
        if flag is None:
            raise invalid_request(e.errors(include_url=False)) from None
        raise click.BadParameter(_in_option_terms(str(err["msg"]), param), param_hint=flag) from None
    n_examples = 0
    shown = {}  # each file read as the paths below, named as the user gave it (a pipe is copied once)
    training_file, validation_file = (None if p is None else _read_once(p, shown, param)
                                      for p, param in ((training_file, "training_file"),
                                                       (validation_file, "validation_file")))
    for path, purpose in ((training_file, "training"), (validation_file, "validation")):
        if path is None:
            continue
        name = shown.get(path, path)
        report = validate_file(path, purpose=purpose)
        if report.ok:
            try:
                check_data_kind(file_kind(path), purpose, method)
            except InvalidInput as e:  # the request's wording of the fix (method {"type": ...}) is the API's
                fix = "--method dpo" if method != "dpo" else "--method supervised, or a file of preference pairs"
                raise click.BadParameter(f"{name}: {e.message} (use {fix})", param_hint="--method") from None
        if not report.ok:
            err_console.print(report.format(limit=MAX_REPORTED_ERRORS, severity="error"))
            err_console.print(f"[bold red]error:[/] {name} is not valid {purpose} data "
                              f"({len(report.errors)} problem(s)); fix them and run again "
                              f"(`tunery data validate {name}` lists them all)")
            sys.exit(1)
        if purpose == "training":
            n_examples = len(report.examples)
    try:
        request.method.hyperparameters.check_examples(n_examples)
    except InvalidInput as e:
        raise click.BadParameter(_in_option_terms(str(e), e.param), param_hint=_flag(e.param)) from None
    uploaded = [files.create_from_path(training_file, "fine-tune")]
    if validation_file:
        uploaded.append(files.create_from_path(validation_file, "fine-tune"))
    try:
        job = create_job(request.model_copy(update={"training_file": uploaded[0].id,
                                                    "validation_file": uploaded[1].id if validation_file else None}))
    except BaseException as e:
        for rec in uploaded:  # no job reads them: a refused request leaves no copy of the data behind
            with contextlib.suppress(TuneryError, OSError):  # a job that does read one keeps it
                files.delete(rec.id)
        if isinstance(e, InvalidInput):
            raise _named(e, given) from None
        raise
    console.print(f"Created job [bold]{job['id']}[/] ({method}, {request.training_method} on {model})")
    if wait:  # a paused job has no model yet: a script's `--wait && deploy` must not go on
        _follow(job["id"], run_worker=True)
    else:
        if _ensure_background_worker():
            console.print("Started a background worker.")
        console.print(f"Follow it with [bold]tunery jobs follow {job['id']}[/]")


def _ensure_background_worker() -> bool:
    from tunery.home import home
    from tunery.jobs.worker import worker_alive

    if worker_alive():
        return False
    log = open(home().root / "worker.log", "ab")  # noqa: SIM115 - handed to the child
    subprocess.Popen([sys.executable, "-m", "tunery.cli.main", "worker", "--exit-when-idle"], stdout=log,
                     stderr=subprocess.STDOUT, start_new_session=True, env=dict(os.environ))
    log.close()
    return True


def _follow(job_id: str, *, run_worker: bool, paused_ok: bool = False) -> None:
    """A progress bar with loss, tokens/s and ETA until the job ends or is paused; optionally runs a
    worker here. A job that fails or is cancelled exits 1. A paused one is parked, not failed: with
    ``paused_ok`` (`jobs follow`, `jobs resume --follow`) it returns, saying how to resume; without
    (a caller that needs the fine-tuned model: `finetune --wait`, `tunery quickstart`) it exits 1
    too, as there is no model yet."""
    from tunery.jobs import Worker, get_job, list_events
    from tunery.jobs.worker import worker_alive

    get_job(job_id)  # an unknown id is an error before a worker starts or a bar is drawn
    worker = Worker(poll_interval=0.5).start() if run_worker and not worker_alive() else None
    seen: set[str] = set()
    cols = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("steps"),
            TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[tps]} tok/s"), TimeElapsedColumn(),
            TimeRemainingColumn()]
    try:
        with Progress(*cols, console=console, transient=False) as progress:
            task = progress.add_task("waiting", total=None, loss="-", tps="-")
            while True:
                job = get_job(job_id)
                events, _ = list_events(job_id, limit=200)
                for ev in reversed(events):
                    if ev["id"] in seen:
                        continue
                    seen.add(ev["id"])
                    if ev["type"] == "metrics":
                        d = ev["data"]
                        progress.update(task, total=d.get("total_steps"), completed=d.get("step"),
                                        loss=f"{d.get('train_loss', 0):.3f}", tps=f"{d.get('tokens_per_second', 0):.0f}")
                    else:
                        color = {"warn": "yellow", "error": "red"}.get(ev["level"], "dim")
                        progress.console.print(f"[{color}]{escape(ev['message'])}[/]")
                progress.update(task, description=job["status"])
                if job["status"] in (*TERMINAL, "paused"):
                    break
                time.sleep(0.5)
    except KeyboardInterrupt:
        if worker:  # the job trained in this process: it stops with it, and waits in the queue
            worker.stop()
            if get_job(job_id)["status"] == "paused":  # it was being paused: it stays so
                err_console.print(f"stopped training here; the job is paused (`tunery jobs resume {job_id}` "
                                  "goes on)", soft_wrap=True)
            else:
                err_console.print(f"stopped training here; the job waits in the queue until a worker takes it "
                                  f"up (`tunery jobs follow {job_id}` trains it here again, `tunery jobs cancel "
                                  f"{job_id}` drops it)", soft_wrap=True)
        else:
            err_console.print(f"stopped following; the job goes on in the worker training it (cancel with "
                              f"`tunery jobs cancel {job_id}`)", soft_wrap=True)
        sys.exit(130)
    if worker:
        worker.stop()
    _summary(job)
    if job["status"] != "succeeded" and not (paused_ok and job["status"] == "paused"):
        sys.exit(1)


def _summary(job: dict) -> None:
    style = STATUS_STYLE.get(job["status"], "white")
    console.print(f"Job {job['id']}: [{style}]{job['status']}[/]")
    if job["fine_tuned_model"]:
        console.print(f"Fine-tuned model: [bold]{job['fine_tuned_model']}[/]")
        console.print(f"  try it: tunery ask {job['fine_tuned_model']} \"Where should I go in spring?\"")
    if job["error"]:
        console.print(f"[red]{escape(str(job['error'].get('message')))}[/]")
    if job["status"] == "paused":
        console.print(f"  go on with: tunery jobs resume {job['id']}", soft_wrap=True)


@click.group(cls=Group)
def jobs() -> None:
    """List, follow, inspect, pause, resume and cancel fine-tuning jobs."""


@jobs.command("list")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, PAGE_LIMIT),
              help="Show the newest N jobs.")
@click.option("--status", type=click.Choice(ACTIVE + TERMINAL), default=None, help="Only jobs in this status.")
@click.option("--metadata", "metadata", multiple=True, metavar="KEY=VALUE",
              help="Only jobs whose metadata holds this pair (repeat for several; all must match).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON, as the HTTP API returns it.")
def list_cmd(limit: int, status: str | None, metadata: tuple[str, ...], as_json: bool) -> None:
    """List jobs, newest first."""
    from tunery.jobs import list_jobs

    pairs = {}
    for item in metadata:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--metadata")
        pairs[key] = value
    items, _ = list_jobs(limit=limit, status=status, metadata=pairs or None)
    print_list(items, as_json=as_json, to_json=lambda j: j,
               empty="No jobs yet. Start one with [bold]tunery finetune FILE.jsonl[/].",
               columns=("id", "status", "model", "fine-tuned model", "created"),
               row=lambda j: (j["id"], f"[{STATUS_STYLE.get(j['status'], 'white')}]{j['status']}[/]", j["model"],
                              j["fine_tuned_model"] or "",
                              time.strftime("%Y-%m-%d %H:%M", time.localtime(j["created_at"]))))


@jobs.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON, as the HTTP API returns it.")
def show(job_id: str, as_json: bool) -> None:
    """Show a job: status, hyperparameters, model, error."""
    from tunery.jobs import get_job

    job = get_job(job_id)
    if as_json:
        print_json(job)
        return
    method = (job.get("method") or {}).get("type", "supervised")
    rows = {"id": job["id"], "status": job["status"], "model": job["model"], "method": method,
            "training_method": job.get("training_method"), "fine_tuned_model": job.get("fine_tuned_model"),
            "training_file": job.get("training_file"), "validation_file": job.get("validation_file"),
            "hyperparameters": job.get("hyperparameters"), "seed": job.get("seed"),
            "suffix": job.get("user_provided_suffix"), "trained_tokens": job.get("trained_tokens"),
            "result_files": job.get("result_files"), "error": job.get("error")}
    print_fields(rows)


@jobs.command()
@click.argument("job_id")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, EVENTS_LIMIT),
              help="Show the last N events.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON, as the HTTP API returns it.")
def events(job_id: str, limit: int, as_json: bool) -> None:
    """Show a job's events, oldest first."""
    from tunery.jobs import list_events

    items, _ = list_events(job_id, limit=limit)
    items.reverse()
    if as_json:
        print_json(items)
        return
    for e in items:
        ts = time.strftime("%H:%M:%S", time.localtime(e["created_at"]))
        color = {"warn": "yellow", "error": "red"}.get(e["level"], "white")
        console.print(f"[dim]{ts}[/] [{color}]{escape(e['message'])}[/]")


@jobs.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON, as the HTTP API returns it.")
def checkpoints(job_id: str, as_json: bool) -> None:
    """List a job's checkpoints; each is usable as a model name."""
    from tunery.jobs import list_checkpoints

    items, _ = list_checkpoints(job_id)
    if as_json:
        print_json(items)
        return
    if not items:
        console.print(f"No checkpoints yet: job {job_id} writes them as it trains.")
        return
    t = Table(show_edge=False, header_style="bold")
    for c in ("step", "checkpoint model", "train loss", "valid loss"):
        t.add_column(c)
    for c in items:
        m = c["metrics"]
        t.add_row(str(c["step_number"]), c["fine_tuned_model_checkpoint"], f"{m.get('train_loss', float('nan')):.4f}",
                  f"{m['full_valid_loss']:.4f}" if "full_valid_loss" in m else "")
    console.print(t)


@jobs.command()
@click.argument("job_id")
def cancel(job_id: str) -> None:
    """Cancel a job; its training process stops within seconds."""
    from tunery.jobs import cancel_job

    job = cancel_job(job_id)
    console.print(f"Job {job['id']}: {job['status']}")


@jobs.command()
@click.argument("job_id")
def pause(job_id: str) -> None:
    """Pause a queued or running job: a running one writes a checkpoint at the step it reached
    and stops within a step ("pausing", then "paused"), freeing the machine. `tunery jobs resume`
    goes on from that step, with the losses of a run never paused."""
    from tunery.jobs import pause_job

    job = pause_job(job_id)
    console.print(f"Job {job['id']}: {job['status']}")


@jobs.command()
@click.argument("job_id")
@click.option("--follow/--no-follow", "follow_", default=False, show_default=True,
              help="Then follow it with a progress bar, training here if no worker is running.")
def resume(job_id: str, follow_: bool) -> None:
    """Resume a paused job: it is queued again and goes on from the step it paused at."""
    from tunery.jobs import resume_job

    job = resume_job(job_id)
    console.print(f"Job {job['id']}: {job['status']}")
    if follow_:
        _follow(job_id, run_worker=True, paused_ok=True)
        return
    if _ensure_background_worker():
        console.print("Started a background worker.")
    console.print(f"Follow it with [bold]tunery jobs follow {job['id']}[/]")


@jobs.command()
@click.argument("job_id")
@click.option("--run-worker/--no-run-worker", default=True, show_default=True,
              help="Train here if no worker is running.")
def follow(job_id: str, run_worker: bool) -> None:
    """Follow a job with a progress bar (loss, tokens/s, ETA) until it ends or is paused.

    Exits 0 when the job succeeds or is paused (`tunery jobs resume ID` goes on), 1 when it fails
    or is cancelled."""
    _follow(job_id, run_worker=run_worker, paused_ok=True)


def _set_nproc(n: int | None) -> None:
    """The worker's ``--nproc-per-node``, for its training children (``training.distributed``)."""
    from tunery.training.distributed import NPROC_ENV

    if n is not None:
        os.environ[NPROC_ENV] = str(n)


@click.command()
@click.option("--exit-when-idle", is_flag=True, help="Exit once no job is waiting.")
@click.option("--poll-interval", type=click.FloatRange(0, min_open=True), default=1.0, show_default=True,
              help="Seconds between looks for new jobs.")
@click.option("--id", "worker_id", default=None,
              help="This worker's name in the jobs it claims, unique among running workers (default: host:pid).")
@threads_option("CPU threads for training (default: every CPU this process may use; TUNERY_NUM_THREADS).")
@click.option("--nproc-per-node", type=click.IntRange(min=1), default=None, expose_value=False,
              callback=lambda ctx, param, n: _set_nproc(n),
              help="Training processes (torchrun, data-parallel) for jobs that do not say; they share the "
                   "threads (default: 1; TUNERY_NPROC_PER_NODE).")
def worker(exit_when_idle: bool, poll_interval: float, worker_id: str | None) -> None:
    """Run a job worker in the foreground: validates, trains, resumes interrupted jobs.

    Any number of workers may share one queue (TUNERY_HOME, or TUNERY_DATABASE_URL for workers on
    several machines; see docs/scaling.md): each trains one job at a time, and resumes the job of a
    worker that died once its lease runs out (TUNERY_CLAIM_LEASE_S). Only one worker of a home
    trains at a time on a machine (the others stand by) unless TUNERY_WORKERS_PER_MACHINE says more.
    """
    from tunery.jobs import Worker

    w = Worker(poll_interval=poll_interval, worker_id=worker_id)
    console.print("worker started (Ctrl-C stops it; an interrupted job resumes at the next start)")
    try:
        w.run_forever(exit_when_idle=exit_when_idle)
    except KeyboardInterrupt:
        pass
    finally:
        w.stop()
