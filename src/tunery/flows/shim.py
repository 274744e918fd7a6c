"""Prompt flow compatibility: flow code written for Prompt flow imports ``from promptflow.core
import tool, log_metric`` (or ``from promptflow import tool``). When the ``promptflow`` package is
not installed, :func:`install` puts small stand-in modules in ``sys.modules`` so such files run
unchanged: ``tool`` marks a function, ``log_metric`` records into the current run, ``trace`` does
nothing, and the connection classes exist for type annotations.

When the real package is installed it is left alone (its ``log_metric`` then does not reach
tunery's run metrics)."""

from __future__ import annotations

import contextlib
import importlib.machinery
import importlib.util
import sys
import threading
import types
from collections.abc import Callable
from typing import Any

from tunery.flows.context import log_metric

TOOL_MARK = "__tunery_tool__"
_SHIM_MARK = "__tunery_shim__"
_lock = threading.Lock()


def tool(func: Callable | None = None, /, *, name: str | None = None, description: str | None = None,
         **_: Any) -> Any:
    """``@tool``, ``@tool()`` and ``@tool(name=...)`` all mark the function as the node's entry."""

    def mark(f: Callable) -> Callable:
        # a builtin cannot be marked; it still works when the node names it with `function:`
        with contextlib.suppress(AttributeError, TypeError):
            setattr(f, TOOL_MARK, name or getattr(f, "__name__", "tool"))
        return f

    return mark(func) if callable(func) else mark


def trace(func: Callable | None = None, /, **_: Any) -> Any:
    """Prompt flow's tracing decorator; tunery records node timings itself, so this does nothing."""
    return func if callable(func) else (lambda f: f)


def start_trace(*_: Any, **__: Any) -> None:
    """No-op stand-in for ``promptflow.tracing.start_trace``."""


class ToolProvider:
    """Base class of class-based tools; accepted so imports succeed."""

    def __init__(self, *_: Any, **__: Any) -> None:
        pass


class _Connection(dict):
    """A connection's configs and secrets, reachable as keys or attributes."""

    def __init__(self, *args: Any, secrets: dict | None = None, configs: dict | None = None, **kw: Any) -> None:
        super().__init__(*args, **(configs or {}), **(secrets or {}), **kw)

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class CustomConnection(_Connection):
    pass


class OpenAIConnection(_Connection):
    pass


class AzureOpenAIConnection(_Connection):
    pass


def is_tool(obj: Any) -> bool:
    """True for functions marked by this shim's ``tool`` or by the real package's."""
    return callable(obj) and (hasattr(obj, TOOL_MARK) or hasattr(obj, "__tool") or hasattr(obj, "_tool"))


def _module(name: str, **attrs: Any) -> types.ModuleType:
    mod = types.ModuleType(name, "tunery's stand-in for the promptflow package")
    mod.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
    mod.__path__ = []  # a package, so `import promptflow.core` finds the submodule in sys.modules
    setattr(mod, _SHIM_MARK, True)
    for k, v in attrs.items():
        setattr(mod, k, v)
    return mod


def installed() -> bool:
    """True when ``promptflow`` resolves to this shim."""
    mod = sys.modules.get("promptflow")
    return mod is not None and getattr(mod, _SHIM_MARK, False)


def install() -> bool:
    """Provide ``promptflow``, ``promptflow.core``, ``promptflow.tracing`` and
    ``promptflow.connections`` unless the real package is importable. Returns True when the shim
    is (now) in place."""
    with _lock:
        if installed():
            return True
        if "promptflow" in sys.modules or importlib.util.find_spec("promptflow") is not None:
            return False
        connections = {"CustomConnection": CustomConnection, "OpenAIConnection": OpenAIConnection,
                       "AzureOpenAIConnection": AzureOpenAIConnection}
        common = {"tool": tool, "log_metric": log_metric, "ToolProvider": ToolProvider, "trace": trace}
        mods = {
            "promptflow": _module("promptflow", **common, **connections),
            "promptflow.core": _module("promptflow.core", **common),
            "promptflow.tracing": _module("promptflow.tracing", trace=trace, start_trace=start_trace),
            "promptflow.connections": _module("promptflow.connections", **connections),
        }
        for sub in ("core", "tracing", "connections"):
            setattr(mods["promptflow"], sub, mods[f"promptflow.{sub}"])
        sys.modules.update(mods)
        return True
