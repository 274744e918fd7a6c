"""Batch runs (``tunery run create``): every line of a data file through a flow, in parallel, then
the aggregation nodes over the successful lines; the result is stored as a run.

Each line runs in its own daemon thread, at most ``workers`` at a time. A line that runs past
``line_timeout`` is marked failed with a timeout error and the batch goes on; Python cannot stop a
thread, so the abandoned line keeps running in the background until its current node returns
(it is told to stop before the next node, and its late result is discarded). Being daemon
threads, such stragglers never keep the process alive at exit."""

from __future__ import annotations

import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from tunery.data.text import read_text
from tunery.errors import InvalidInput
from tunery.flows import context
from tunery.flows.connections import ModelFactory
from tunery.flows.executor import COMPLETED, FAILED, FlowExecutor, LineResult
from tunery.flows.mapping import PreparedLine, load_data, map_lines
from tunery.flows.runs import CANCELED, RunRecord, RunStore, default_run_name, get_run, load_details
from tunery.flows.spec import find_flow_file, load_flow, yaml_error

DEFAULT_WORKERS = 4
DEFAULT_LINE_TIMEOUT = 600.0  # seconds, Prompt flow's default


@dataclass
class RunSpec:
    """What to run: the fields of a ``run.yml`` (and of ``tunery run create``'s options)."""

    flow: str | None = None
    data: str | None = None
    column_mapping: dict[str, Any] = field(default_factory=dict)
    variant: str | None = None
    connections: dict[str, dict[str, str]] = field(default_factory=dict)
    run: str | None = None
    name: str | None = None
    display_name: str | None = None
    description: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    environment_variables: dict[str, str] = field(default_factory=dict)
    workers: int | None = None
    line_timeout: float | None = None
    default_model: str | None = None
    resume_from: str | None = None

    def merged(self, **overrides: Any) -> RunSpec:
        """This spec with every override that is set (not None, not empty) applied on top."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        for key, value in overrides.items():
            if key not in values:
                raise InvalidInput(f"unknown run setting {key!r}", param=key)
            if value is None or value == {} or value == ():
                continue
            if isinstance(value, dict) and isinstance(values[key], dict):
                value = {**values[key], **value}
            values[key] = value
        return RunSpec(**values)


def load_run_file(path: str | Path) -> RunSpec:
    """Read a Prompt flow ``run.yml``; relative ``flow`` and ``data`` paths are relative to it."""
    p = Path(path).expanduser()
    try:
        raw = yaml.safe_load(read_text(p, param="file")) or {}
    except FileNotFoundError:
        raise InvalidInput(f"run file {p} not found", param="file") from None
    except yaml.YAMLError as e:
        raise InvalidInput(yaml_error(p, e), param="file") from None
    if not isinstance(raw, dict):
        raise InvalidInput(f"{p} must be a mapping of run settings", param="file")
    raw.pop("$schema", None)
    known = {f.name for f in fields(RunSpec)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise InvalidInput(f"{p.name}: unknown setting(s) {', '.join(unknown)}", param="file",
                           hint="known: " + ", ".join(sorted(known)))
    for key in ("flow", "data"):
        if raw.get(key):
            raw[key] = str((p.parent / str(raw[key])).resolve())
    for key in ("column_mapping", "connections", "tags", "environment_variables"):
        if raw.get(key) is None:
            raw.pop(key, None)
        elif not isinstance(raw[key], dict):
            raise InvalidInput(f"{p.name}: {key} must be a mapping", param=key)
    for node, settings in (raw.get("connections") or {}).items():
        if not isinstance(settings, dict):
            raise InvalidInput(f"{p.name}: connections.{node} must be a mapping such as "
                               "{deployment_name: NAME}", param="connections")
    return RunSpec(**raw)


class RunCanceled(Exception):
    """A run stopped by its ``cancel`` event: lines still running are told to stop and dropped,
    and the run is stored as Canceled with the lines that finished."""


@dataclass(frozen=True)
class Progress:
    total: int
    done: int
    failed: int
    elapsed: float

    @property
    def rate(self) -> float:
        """Lines per second so far."""
        return self.done / self.elapsed if self.elapsed > 0 else 0.0


def create_run(spec: RunSpec, *, model_factory: ModelFactory | None = None,
               on_progress: Callable[[Progress], None] | None = None,
               on_line: Callable[[LineResult], None] | None = None,
               on_warning: Callable[[str], None] | None = None,
               cancel: threading.Event | None = None) -> RunRecord:
    """Run a flow over a data file (or over a parent run's lines) and store the run. Setting
    ``cancel`` stops it: it is stored as Canceled and :class:`RunCanceled` is raised."""
    resumed: list[LineResult] = []
    mapping_warnings: list[str] = []
    if spec.resume_from:
        spec, resumed, prepared, flow_dir = _resume(spec)
        flow = load_flow(flow_dir).with_variant(spec.variant)
        source = spec.flow or str(flow_dir)
    else:
        if not spec.flow:
            raise InvalidInput("no flow given", param="flow", hint="pass --flow DIR or a run file with flow:")
        flow_dir = find_flow_file(spec.flow).parent
        flow = load_flow(flow_dir).with_variant(spec.variant)
        source = str(flow_dir.resolve())
        prepared, mapping_warnings = _prepare(flow, spec)
    workers = int(_positive(spec.workers, "workers", "TUNERY_FLOW_WORKERS", DEFAULT_WORKERS, whole=True))
    timeout = _positive(spec.line_timeout, "line_timeout", "TUNERY_FLOW_LINE_TIMEOUT", DEFAULT_LINE_TIMEOUT)
    name = spec.name or default_run_name(flow.name, flow.variant_label)
    warnings: list[str] = []
    store: RunStore | None = None

    def warn(message: str) -> None:
        if message not in warnings:
            warnings.append(message)
            if store is not None:
                store.log(f"WARNING {message}")
            if on_warning:
                on_warning(message)

    executor = FlowExecutor(flow, model_factory=model_factory, connections=spec.connections,
                            default_model=spec.default_model, on_warning=warn)
    executor.prepare()  # import the flow's code before creating anything
    meta = {"display_name": spec.display_name or name, "description": spec.description, "tags": spec.tags,
            "flow_name": flow.name, "data": spec.data, "variant": spec.variant, "variants": flow.selected,
            "column_mapping": spec.column_mapping, "connections": spec.connections, "run": spec.run,
            "resume_from": spec.resume_from, "workers": workers, "line_timeout": timeout,
            "default_model": spec.default_model, "environment_variables": sorted(spec.environment_variables),
            "start_time": time.time(), "total_lines": len(prepared) + len(resumed)}
    store = RunStore.create(name, flow.dir, meta, flow=source, includes=flow.includes)
    for w in mapping_warnings:
        warn(w)
    results: list[LineResult] = []
    started = time.monotonic()
    total = len(prepared) + len(resumed)

    def done(line: LineResult) -> None:
        results.append(line)
        store.append_line(line)
        if line.status != COMPLETED:
            store.log(f"line {line.line_number} failed: {line.error and line.error.get('message')}")
        if line.logs:
            store.log("".join(f"[line {line.line_number}] {x}\n" for x in line.logs.rstrip("\n").splitlines()))
        if on_line:
            on_line(line)
        if on_progress:
            on_progress(Progress(total, len(results), sum(r.status != COMPLETED for r in results),
                                 time.monotonic() - started))

    if on_progress:
        on_progress(Progress(total, 0, 0, 0.0))  # the run has started: the caller may show its bar
    saved_env = {k: os.environ.get(k) for k in spec.environment_variables}
    try:
        os.environ.update({k: str(v) for k, v in spec.environment_variables.items()})
        for line in resumed:
            done(line)
        with context.capture_prints():
            _execute(executor, prepared, workers, timeout, done, cancel)
            aggregation = executor.run_aggregation(results)
    except BaseException as e:
        store.finish(CANCELED if isinstance(e, (KeyboardInterrupt, RunCanceled)) else FAILED, results, None,
                     warnings=warnings, error=f"{type(e).__name__}: {e}")
        raise
    finally:
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    if aggregation.logs:
        store.log(aggregation.logs)
    error = None
    if aggregation.error:
        error = f"aggregation node {aggregation.error['node']!r} failed: {aggregation.error['message']}"
        store.log(error)
    all_failed = bool(results) and all(r.status != COMPLETED for r in results)
    status = FAILED if error or all_failed else COMPLETED
    if all_failed and not error:
        error = "every line failed; see `tunery run show-details`"
    return store.finish(status, results, aggregation, warnings=warnings, error=error,
                        aggregation_nodes={k: v.to_dict() for k, v in aggregation.nodes.items()})


def _positive(value: Any, name: str, env: str, default: float, *, whole: bool = False) -> float:
    """A run's ``workers`` or ``line_timeout``: as given (option or run file), else from ``$env``, else
    the default. Anything but a number above 0 (a whole one for workers) is refused, naming where
    it came from: 0 is not taken for "unset"."""
    if value is not None:
        where = f"{name} (--{name.replace('_', '-')}, or {name}: in the run file)"
    elif os.environ.get(env, "").strip():
        value, where = os.environ[env], f"${env}"
    else:
        return default
    try:
        number = float(value)
        if isinstance(value, bool) or not number > 0 or (whole and not number.is_integer()):
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise InvalidInput(f"{where} must be a {'whole ' if whole else ''}number above 0, not {value!r}",
                           param=name) from None
    return number


def _prepare(flow, spec: RunSpec) -> tuple[list[PreparedLine], list[str]]:
    data = load_data(spec.data) if spec.data else None
    parent = None
    if spec.run:
        parent_run = get_run(spec.run)
        parent = load_details(parent_run)
    if data is None and parent is None:
        raise InvalidInput("no data given", param="data", hint="pass --data FILE.jsonl (or --run RUN to grade a run)")
    return map_lines(flow, data, spec.column_mapping, parent=parent,
                     data_name=Path(spec.data).name if spec.data else "data")


def _resume(spec: RunSpec) -> tuple[RunSpec, list[LineResult], list[PreparedLine], Path]:
    """The original run's settings, its successful lines (kept) and its failed lines (rerun)."""
    old = get_run(spec.resume_from or "")
    if old.status == "Running":
        raise InvalidInput(f"run {old.name!r} is still running", param="resume_from")
    m = old.meta
    base = RunSpec(flow=old.flow, data=m.get("data"), column_mapping=m.get("column_mapping") or {},
                   variant=m.get("variant"), connections=m.get("connections") or {}, run=m.get("run"),
                   description=m.get("description"), tags=m.get("tags") or {}, workers=m.get("workers"),
                   line_timeout=m.get("line_timeout"), default_model=m.get("default_model"))
    merged = base.merged(name=spec.name, display_name=spec.display_name, workers=spec.workers,
                         line_timeout=spec.line_timeout, default_model=spec.default_model,
                         connections=spec.connections, environment_variables=spec.environment_variables,
                         resume_from=old.name)
    kept, rerun = [], []
    for d in load_details(old):
        if d["status"] == COMPLETED:
            kept.append(LineResult.from_dict(d))
        else:
            rerun.append(PreparedLine(d["line_number"], d.get("inputs") or {}))
    return merged, kept, rerun, old.snapshot


@dataclass
class _Slot:
    thread: threading.Thread
    started: float
    cancel: threading.Event


def _execute(executor: FlowExecutor, lines: list[PreparedLine], workers: int, timeout: float,
             done: Callable[[LineResult], None], stop: threading.Event | None = None) -> None:
    pending = deque(lines)
    running: dict[int, _Slot] = {}
    finished: queue.Queue[tuple[int, LineResult]] = queue.Queue()

    def work(line: PreparedLine, cancel: threading.Event) -> None:
        try:
            result = executor.run_line(line.inputs, line_number=line.line_number, cancel=cancel)
        except Exception as e:  # a bug in tunery itself; keep the batch going and say so
            now = time.time()
            result = LineResult(line.line_number, FAILED, line.inputs, error={
                "message": f"unexpected {type(e).__name__}: {e}", "type": "SystemError", "node": None,
                "field": None}, start=now, end=now)
        finished.put((line.line_number, result))

    try:
        while pending or running:
            if stop is not None and stop.is_set():
                raise RunCanceled("canceled by the user")
            while pending and len(running) < workers:
                line = pending.popleft()
                if line.error:
                    now = time.time()
                    done(LineResult(line.line_number, FAILED, line.inputs, error={
                        "message": line.error, "type": "InputError", "node": None, "field": "column_mapping"},
                        start=now, end=now))
                    continue
                cancel = threading.Event()
                thread = threading.Thread(target=work, args=(line, cancel), daemon=True,
                                          name=f"tunery-flow-line-{line.line_number}")
                running[line.line_number] = _Slot(thread, time.monotonic(), cancel)
                thread.start()
            if not running:
                continue
            first_deadline = min(s.started for s in running.values()) + timeout
            try:
                number, result = finished.get(timeout=max(0.01, min(first_deadline - time.monotonic(), 0.5)))
                if running.pop(number, None) is not None:
                    done(result)
                # else: the late result of a line already failed for its timeout; dropped
            except queue.Empty:
                pass
            now = time.monotonic()
            for number, slot in list(running.items()):
                if now - slot.started >= timeout:
                    slot.cancel.set()
                    del running[number]
                    wall = time.time()
                    done(LineResult(number, FAILED, next((ln.inputs for ln in lines if ln.line_number == number), {}),
                                    error={"message": f"line timed out after {timeout:g}s", "type": "Timeout",
                                           "node": None, "field": None}, start=wall - (now - slot.started),
                                    end=wall))
    except BaseException:
        for slot in running.values():
            slot.cancel.set()
        raise
