"""Batch runs started in the background (by the server): a run, then the evaluation runs that grade
it, one after the other in a thread, with a cancel that stops whichever is running and skips the
rest. Everything is checked before the thread starts, so a bad mapping is an error of the request,
not a run that fails later; what the thread reports lives in memory and in the run store.
:func:`shutdown` cancels and waits for every thread, so a run a server stopped ends Canceled; one
whose process died is marked Failed when next read (:func:`tunery.flows.runs.get_run`)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from tunery.errors import Conflict, InvalidInput, TuneryError
from tunery.flows.batch import Progress, RunCanceled, RunSpec, _prepare, create_run
from tunery.flows.connections import ModelFactory
from tunery.flows.mapping import load_data, parse_column_mapping
from tunery.flows.refs import Reference
from tunery.flows.runs import _NAME, default_run_name, get_run
from tunery.flows.spec import load_flow

STARTING, RUNNING, DONE, FAILED, CANCELED = "Starting", "Running", "Completed", "Failed", "Canceled"


@dataclass
class Submission:
    """One submit: the main run and its evaluations (each an evaluation flow's spec; ``run`` is
    filled in with the main run's name)."""

    name: str
    evaluations: list[str]
    status: str = STARTING
    progress: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    started: float = field(default_factory=time.time)
    cancel: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def to_dict(self) -> dict[str, Any]:
        """A snapshot: the thread goes on updating ``progress``, the answer must not change."""
        progress = {k: dict(v) for k, v in dict(self.progress).items()}
        return {"name": self.name, "evaluations": list(self.evaluations), "status": self.status,
                "progress": progress, "error": self.error, "started": self.started}


_lock = threading.Lock()
_submissions: dict[str, Submission] = {}


def check(spec: RunSpec, evaluations: list[RunSpec]) -> None:
    """Raise what a run would fail on before its first line: the flows, the variant, the data, and
    every mapping (an evaluation's ``${run.outputs.X}`` must be an output of the flow it grades)."""
    flow = load_flow(spec.flow or "").with_variant(spec.variant)
    _prepare(flow, spec)
    columns = {c for row in load_data(spec.data) for c in row} if spec.data else set()
    for i, ev in enumerate(evaluations):
        load_flow(ev.flow or "")
        for key, ref in parse_column_mapping(ev.column_mapping).items():
            if not isinstance(ref, Reference):
                continue
            name = ref.path[0]
            if ref.source == "data" and name not in columns:
                raise InvalidInput(f"evaluation {i + 1}, {key}={ref}: the data has no column {name!r}",
                                   param=f"evaluations[{i}].column_mapping.{key}",
                                   hint="its columns: " + ", ".join(sorted(columns)))
            known = flow.outputs if ref.section == "outputs" else flow.inputs
            if ref.source == "run" and name not in known:
                raise InvalidInput(f"evaluation {i + 1}, {key}={ref}: the flow has no {ref.section[:-1]} {name!r}",
                                   param=f"evaluations[{i}].column_mapping.{key}",
                                   hint=f"its {ref.section}: " + ", ".join(known))


def submit(spec: RunSpec, evaluations: list[RunSpec] | None = None, *,
           model_factory: ModelFactory | None = None) -> Submission:
    """Check, name and start the run and its evaluations in a background thread."""
    evaluations = list(evaluations or [])
    check(spec, evaluations)
    flow = load_flow(spec.flow or "").with_variant(spec.variant)
    name = spec.name or default_run_name(flow.name, flow.variant_label)
    names = [name]
    eval_specs = []
    for ev in evaluations:
        ev_name = ev.name or f"{name}_eval_{load_flow(ev.flow or '').name}"[:120]
        if not ev.name and ev_name in names:  # the same evaluation flow twice: number the second
            ev_name = next(f"{ev_name}_{i}" for i in range(2, 1000) if f"{ev_name}_{i}" not in names)
        names.append(ev_name)
        eval_specs.append(ev.merged(name=ev_name, run=name, default_model=spec.default_model))
    for i, n in enumerate(names):
        param = "name" if i == 0 else f"evaluations[{i - 1}].name"
        if not _NAME.match(n):
            raise InvalidInput(f"invalid run name {n!r}", param=param, hint="use letters, digits and _ . -")
        if n in names[:i]:
            raise Conflict(f"two runs of this submission would both be named {n!r}", param=param,
                           hint="give each run its own name")
    with _lock:
        for n in names:
            if n in _submissions and _submissions[n].status in (STARTING, RUNNING):
                raise Conflict(f"a run named {n!r} is already running", param="name")
            try:
                get_run(n)
            except TuneryError:
                continue
            raise Conflict(f"a run named {n!r} already exists", param="name", hint="pick another name")
        sub = Submission(name, [e.name or "" for e in eval_specs])
        for n in names:
            _submissions[n] = sub
    sub.thread = threading.Thread(target=_work, args=(sub, spec.merged(name=name), eval_specs, model_factory),
                                  daemon=True, name=f"tunery-run-{name}")
    sub.thread.start()
    return sub


def _work(sub: Submission, spec: RunSpec, evaluations: list[RunSpec], model_factory: ModelFactory | None) -> None:
    def progress(run: str):
        def report(p: Progress) -> None:
            sub.progress[run] = {"total": p.total, "done": p.done, "failed": p.failed}
        return report

    sub.status = RUNNING
    try:
        for s in [spec, *evaluations]:
            if sub.cancel.is_set():
                raise RunCanceled("canceled by the user")
            create_run(s, model_factory=model_factory, on_progress=progress(s.name or ""), cancel=sub.cancel)
        sub.status = DONE
    except RunCanceled:
        sub.status = CANCELED
    except Exception as e:  # reported on the run; the server goes on
        sub.status, sub.error = FAILED, str(e)


def state(name: str) -> Submission | None:
    with _lock:
        return _submissions.get(name)


def shutdown(timeout: float = 10.0) -> None:
    """Cancel every run still going and wait (up to ``timeout`` in all) for each to record how it
    ended, so none stays Running after the server stops."""
    with _lock:
        subs = list({id(s): s for s in _submissions.values()}.values())
    for sub in subs:
        sub.cancel.set()
    deadline = time.monotonic() + timeout
    for sub in subs:
        if sub.thread is not None:
            sub.thread.join(max(0.0, deadline - time.monotonic()))


def cancel(name: str) -> Submission:
    """Stop the submission ``name`` belongs to (its run or one of its evaluations)."""
    sub = state(name)
    if sub is None:
        get_run(name)  # a run that does not exist at all is NotFound, naming it
    if sub is None or sub.status not in (STARTING, RUNNING):
        raise InvalidInput(f"run {name!r} is not running in this server", param="name")
    sub.cancel.set()
    return sub
