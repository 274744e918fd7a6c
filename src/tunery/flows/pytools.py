"""Python nodes: import the node's file from the flow folder (with the folder on ``sys.path``, so
sibling imports work as in Prompt flow), pick its ``@tool`` function, check the node's inputs
against the function's parameters, and call it (plain, async or generator functions)."""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import inspect
import os
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tunery.flows import shim
from tunery.flows.spec import Node, Problem

_import_lock = threading.Lock()


class ToolLoader:
    """Loads each Python file of one flow once and hands out its tool functions."""

    def __init__(self, flow_dir: Path) -> None:
        self.dir = Path(flow_dir).resolve()
        self._modules: dict[str, Any] = {}
        self._lock = threading.Lock()

    def load(self, node: Node) -> tuple[Callable | None, list[Problem]]:
        """The node's function, or None and the problems that prevent it."""
        where = node.where
        module, problem = self._module(node.source, where)
        if module is None:
            return None, [problem] if problem else []
        func, problem = _pick(module, node, where)
        if func is None:
            return None, [problem] if problem else []
        return func, check_signature(func, node, where)

    def _module(self, source: str, where: str) -> tuple[Any, Problem | None]:
        with self._lock:
            if source in self._modules:
                return self._modules[source], None
            path = (self.dir / source).resolve()
            digest = hashlib.sha1(os.fsencode(path)).hexdigest()[:10]  # a path's bytes may not be UTF-8
            name = f"tunery_flow_{digest}_{path.stem}"
            shim.install()
            with _import_lock:
                if str(self.dir) not in sys.path:
                    sys.path.insert(0, str(self.dir))
                spec = importlib.util.spec_from_file_location(name, path)
                if spec is None or spec.loader is None:
                    return None, Problem(where, "source.path", f"cannot import {source}")
                module = importlib.util.module_from_spec(spec)
                sys.modules[name] = module
                try:
                    spec.loader.exec_module(module)
                except BaseException as e:  # user code: report any failure, never crash the run
                    sys.modules.pop(name, None)
                    if isinstance(e, KeyboardInterrupt):
                        raise
                    return None, Problem(where, "source.path", f"importing {source} failed: {_describe(e, path)}")
            self._modules[source] = module
            return module, None


def _describe(e: BaseException, path: Path) -> str:
    if isinstance(e, SyntaxError):
        return f"SyntaxError at line {e.lineno}: {e.msg}"
    frames = [f for f in traceback.extract_tb(e.__traceback__) if Path(f.filename).resolve() == path]
    line = f" (line {frames[-1].lineno})" if frames else ""
    return f"{type(e).__name__}: {e}{line}"


def _own_frames(e: BaseException, flow_dir: Path) -> list[traceback.FrameSummary]:
    """The frames of ``e``'s traceback in the flow folder's own files: the user's code, not tunery's."""
    return [f for f in traceback.extract_tb(e.__traceback__)
            if Path(f.filename).is_absolute() and Path(f.filename).resolve().is_relative_to(flow_dir)]


def tool_error(e: BaseException, flow_dir: Path) -> tuple[str, str]:
    """What a Python node's exception says, with where in the flow's files it was raised
    (``ValueError: bad input (prep.py, line 9)``), and its traceback through those files only."""
    flow_dir = Path(flow_dir).resolve()
    frames = _own_frames(e, flow_dir)
    where = ""
    if frames:
        where = f" ({Path(frames[-1].filename).resolve().relative_to(flow_dir).as_posix()}, line {frames[-1].lineno})"
    text = "".join(["Traceback (most recent call last):\n", *traceback.format_list(frames),
                    *traceback.format_exception_only(type(e), e)])
    return f"{type(e).__name__}: {e}{where}", text


def _pick(module: Any, node: Node, where: str) -> tuple[Callable | None, Problem | None]:
    if node.function:
        func = getattr(module, node.function, None)
        if not callable(func):
            return None, Problem(where, "function", f"{node.source} has no function {node.function!r}")
        return func, None
    own = [obj for obj in vars(module).values()
           if inspect.isfunction(obj) and obj.__module__ == module.__name__]
    tools = [f for f in own if shim.is_tool(f)]
    if len(tools) == 1:
        return tools[0], None
    if len(tools) > 1:
        names = ", ".join(f.__name__ for f in tools)
        return None, Problem(where, "source.path", f"{node.source} has several @tool functions ({names}); "
                             "name one with `function: NAME` on the node")
    if len(own) == 1:
        return own[0], None
    return None, Problem(where, "source.path", f"{node.source} has no @tool function; decorate the entry "
                         "function with @tool (from promptflow.core import tool)")


def check_signature(func: Callable, node: Node, where: str) -> list[Problem]:
    """The node's inputs must match the function's parameters."""
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):
        return []
    var_kw = any(p.kind is p.VAR_KEYWORD for p in params.values())
    problems = []
    for key in node.inputs:
        if key not in params and not var_kw:
            problems.append(Problem(where, f"inputs.{key}", f"{func.__name__}() in {node.source} has no "
                                    f"parameter {key!r}"))
    for p in params.values():
        if (p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                and p.name not in node.inputs):
            problems.append(Problem(where, f"inputs.{p.name}", f"missing: {func.__name__}() in {node.source} "
                                    f"requires {p.name!r}"))
    return problems


def call_tool(func: Callable, kwargs: dict[str, Any]) -> Any:
    """Call a tool function; awaits coroutines and joins generators (streamed text)."""
    result = func(**kwargs)
    if inspect.iscoroutine(result):
        result = asyncio.run(result)
    if inspect.isgenerator(result):
        result = "".join(str(x) for x in result)
    return result
