"""What flow code sees while it runs: the metrics of the current run (``log_metric`` writes there)
and the current line's log (``print`` in a Python node goes there, not to the terminal).

Both are context variables, so lines running in parallel threads keep theirs apart."""

from __future__ import annotations

import math
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TextIO


@dataclass
class MetricSink:
    """The metrics of one run; only aggregation nodes may add to them, as in Prompt flow."""

    metrics: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _NodeScope:
    node: str
    aggregation: bool
    sink: MetricSink | None


_node: ContextVar[_NodeScope | None] = ContextVar("tunery_flow_node", default=None)
_log: ContextVar[list[str] | None] = ContextVar("tunery_flow_log", default=None)


def log_metric(key: str, value: Any, variant_id: str | None = None) -> None:
    """Record a run metric (Prompt flow's ``promptflow.log_metric``). Outside an aggregation node
    it is ignored with a warning, as Prompt flow does."""
    scope = _node.get()
    if scope is None or scope.sink is None:
        return
    if not scope.aggregation:
        msg = f"log_metric({key!r}) in node {scope.node!r} ignored: only aggregation nodes may log metrics"
        if msg not in scope.sink.warnings:
            scope.sink.warnings.append(msg)
        return
    if isinstance(value, bool):
        value = int(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"log_metric({key!r}, {value!r}): the value must be a number") from None
    if math.isnan(number) or math.isinf(number):
        raise TypeError(f"log_metric({key!r}, {value!r}): the value must be a finite number")
    scope.sink.metrics[str(key)] = number


@contextmanager
def node_scope(node: str, aggregation: bool, sink: MetricSink | None) -> Iterator[None]:
    token = _node.set(_NodeScope(node, aggregation, sink))
    try:
        yield
    finally:
        _node.reset(token)


@contextmanager
def line_log(buffer: list[str]) -> Iterator[list[str]]:
    """Collect what flow code prints in this context into ``buffer``."""
    token = _log.set(buffer)
    try:
        yield buffer
    finally:
        _log.reset(token)


def log_text(text: str) -> None:
    """Add text to the current line's log (dropped outside a line)."""
    buf = _log.get()
    if buf is not None:
        buf.append(text if text.endswith("\n") else text + "\n")


class _Router:
    """Stands in for sys.stdout: text printed inside a line's context joins that line's log;
    everything else passes through untouched."""

    def __init__(self, target: TextIO) -> None:
        self._target = target

    def write(self, text: str) -> int:
        buf = _log.get()
        if buf is None:
            return self._target.write(text)
        buf.append(text)
        return len(text)

    def flush(self) -> None:
        if _log.get() is None:
            self._target.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)


_router_lock = threading.Lock()
_router_depth = 0


@contextmanager
def capture_prints() -> Iterator[None]:
    """Route ``print`` from flow code to the current line's log while the block runs."""
    global _router_depth
    with _router_lock:
        if _router_depth == 0:
            capture_prints.saved = sys.stdout  # type: ignore[attr-defined]
            sys.stdout = _Router(sys.stdout)  # type: ignore[assignment]
        _router_depth += 1
    try:
        yield
    finally:
        with _router_lock:
            _router_depth -= 1
            if _router_depth == 0:
                sys.stdout = capture_prints.saved  # type: ignore[attr-defined]
