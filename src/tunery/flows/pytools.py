"""Python nodes: import the node's file from the flow folder (with the folder on ``sys.path``, so
sibling imports work as in Prompt flow, each flow finding its own, and the Python files its
``additional_includes`` lend it importable as if they were in the folder), pick its ``@tool`` function,
check the node's inputs against the function's parameters, convert its literal inputs to their
types as Prompt flow does, and call it (plain, async or generator functions)."""

from __future__ import annotations

import asyncio
import enum
import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import inspect
import json
import os
import sys
import threading
import traceback
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tunery.flows import shim
from tunery.flows.refs import Reference
from tunery.flows.spec import Node, Problem

_import_lock = threading.Lock()
_flow_modules: set[str] = set()  # modules a flow's code imported from its folder or includes (a utils.py)


def _forget_flow_modules() -> None:
    """Take the modules flow code imported from its folder (or its includes) out of ``sys.modules``,
    so a flow's ``import utils`` finds its own file as it is now, not another flow's ``utils`` or an
    old copy: Prompt flow runs each flow in a fresh process, tunery's server runs many in one."""
    for name in _flow_modules:
        sys.modules.pop(name, None)
    _flow_modules.clear()
    importlib.invalidate_caches()


def _note_flow_modules(before: set[str], roots: tuple[Path, ...]) -> None:
    """Remember the modules imported since ``before`` from ``roots``: files in the flow folder or
    in a folder it includes, or an included file (not from packages installed there, a ``.venv``)."""
    prefixes = tuple(str(r) + os.sep for r in roots)
    for name in set(sys.modules) - before:
        module = sys.modules[name]
        file = getattr(module, "__file__", None)
        if not isinstance(file, str):  # a namespace package: an included folder without __init__.py
            spec = getattr(module, "__spec__", None)
            places = list(getattr(spec, "submodule_search_locations", None) or ())
            file = places[0] + os.sep if places else None
        if (isinstance(file, str) and (file in map(str, roots) or file.startswith(prefixes))
                and not {"site-packages", "dist-packages"} & set(Path(file).parts)):
            _flow_modules.add(name)


class _LentModules(importlib.abc.MetaPathFinder):
    """Finds the modules a flow's ``additional_includes`` lend it, as if they were in its folder
    (Prompt flow copies them there): ``import helper`` for an included ``../shared/helper.py``,
    ``import lib.x`` for an included ``../lib/`` folder. The flow's own file of that name comes
    first. It serves the flow that last loaded its code, as that flow's folder is first on
    ``sys.path``; it sits just before the path finder, where the flow folder would be searched."""

    def __init__(self) -> None:
        # one value, set at once: a lookup in another thread sees one flow's folder and includes
        self.lent: tuple[Path | None, tuple[Path, ...]] = (None, ())

    def lend(self, flow_dir: Path, includes: tuple[Path, ...]) -> None:
        self.lent = (flow_dir, includes)
        finders = sys.meta_path
        if self not in finders:
            path_finder = importlib.machinery.PathFinder
            finders.insert(finders.index(path_finder) if path_finder in finders else len(finders), self)

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        flow_dir, includes = self.lent
        if path is not None or "." in name or flow_dir is None:  # a submodule: its package's __path__ finds it
            return None
        own = flow_dir / name
        if (flow_dir / f"{name}.py").is_file() or (own / "__init__.py").is_file():
            return None
        for inc in includes:
            if inc.is_file() and inc.name == f"{name}.py":
                return importlib.util.spec_from_file_location(name, inc)
            if inc.is_dir() and inc.name == name:
                if (inc / "__init__.py").is_file():
                    return importlib.util.spec_from_file_location(name, inc / "__init__.py",
                                                                  submodule_search_locations=[str(inc)])
                # a namespace package, merged with the flow's own folder of that name as a copy would be
                spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
                spec.submodule_search_locations = [str(p) for p in (own, inc) if p.is_dir()]
                return spec
        return None


_lent = _LentModules()


class ToolLoader:
    """Loads each Python file of one flow once and hands out its tool functions."""

    def __init__(self, flow_dir: Path, includes: tuple[Path, ...] = ()) -> None:
        self.dir = Path(flow_dir).resolve()
        self.includes = tuple(Path(p).resolve() for p in includes)  # additional_includes: importable too
        self._modules: dict[str, Any] = {}
        self._fresh = False  # whether the flow's helper modules were taken out of sys.modules yet
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
                if not self._fresh:  # once per loader: its nodes share one copy of each helper
                    self._fresh = True
                    _forget_flow_modules()
                if str(self.dir) in sys.path:
                    sys.path.remove(str(self.dir))
                sys.path.insert(0, str(self.dir))  # first, before another flow's folder
                _lent.lend(self.dir, self.includes)
                spec = importlib.util.spec_from_file_location(name, path)
                if spec is None or spec.loader is None:
                    return None, Problem(where, "source.path", f"cannot import {source}")
                module = importlib.util.module_from_spec(spec)
                sys.modules[name] = module
                before = set(sys.modules)
                try:
                    spec.loader.exec_module(module)
                except BaseException as e:  # user code: report any failure, never crash the run
                    sys.modules.pop(name, None)
                    if isinstance(e, KeyboardInterrupt):
                        raise
                    return None, Problem(where, "source.path", f"importing {source} failed: {_describe(e, path)}")
                finally:
                    _note_flow_modules(before, (self.dir, *self.includes))
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


def literal_inputs(func: Callable, node: Node, where: str) -> tuple[dict[str, Any], list[Problem]]:
    """The node's literal inputs as Prompt flow passes them to ``func``: converted to the type its
    parameter declares (``n: "5"`` to ``int``, ``flag: "false"`` to ``False``, JSON text to a
    ``list``; JSON text parsed, or else kept, for a ``dict``, another or no annotation), and an empty
    one (``""``, null) left out where the parameter has a default, so the default applies. A value
    that does not convert is a problem naming the node's input."""
    try:
        params = inspect.signature(func, eval_str=True).parameters
    except Exception:  # an annotation that does not evaluate: the types are unknown, not wrong
        try:
            params = inspect.signature(func).parameters
        except (TypeError, ValueError):
            params = {}  # type: ignore[assignment]
    out: dict[str, Any] = {}
    problems: list[Problem] = []
    for key, value in node.inputs.items():
        if isinstance(value, Reference):
            continue
        p = params.get(key)
        if p is None or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            out[key] = value
            continue
        if value is None or value == "":
            if p.default is p.empty:
                out[key] = value
            continue
        type_ = _param_type(p)
        try:
            out[key] = _parse(type_, value)
        except (TypeError, ValueError):
            name = type_.__name__ if isinstance(type_, type) else "value"
            problems.append(Problem(where, f"inputs.{key}", f"{value!r} is not a valid {name} for parameter "
                                    f"{key!r} of {func.__name__}() in {node.source}"))
    return out, problems


def _param_type(p: inspect.Parameter) -> Any:
    """The type Prompt flow converts a literal to: the annotation (the first of a Union, None
    left out; an Enum is a str), else the default's type, else None (any value)."""
    anno = p.annotation
    if typing.get_origin(anno) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(anno) if a is not type(None)]
        anno = args[0] if args else p.empty
    if anno is p.empty and p.default is not p.empty and p.default is not None:
        anno = type(p.default)
    if isinstance(anno, type) and issubclass(anno, enum.Enum):
        return str
    return None if anno is p.empty else anno


def _parse(type_: Any, value: Any) -> Any:
    if type_ is bool:
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        if not isinstance(value, bool):
            raise ValueError
        return value
    if type_ in (int, float, str):
        return type_(value)
    if type_ is list:
        value = json.loads(value) if isinstance(value, str) else value
        if not isinstance(value, list):
            raise ValueError
        return value
    if isinstance(value, str):  # a dict, another type or none: JSON text is read, other text kept
        try:
            return json.loads(value)
        except ValueError:
            pass
    return value


def call_tool(func: Callable, kwargs: dict[str, Any]) -> Any:
    """Call a tool function; awaits coroutines and joins generators (streamed text)."""
    result = func(**kwargs)
    if inspect.iscoroutine(result):
        result = asyncio.run(result)
    if inspect.isgenerator(result):
        result = "".join(str(x) for x in result)
    return result
