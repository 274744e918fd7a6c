"""Running a flow: one line (every non-aggregation node, in graph order) and, after a batch, the
aggregation nodes over all successful lines.

Semantics follow Prompt flow: a node whose ``activate.when`` does not equal ``activate.is`` is
bypassed (output None), and so is a node without ``activate`` whose node references all point at
bypassed nodes; an input from a bypassed node is None, or the parameter's default where the Python
function has one. The first node that fails fails its line. Aggregation nodes receive lists (one
value per successful line) and may call ``log_metric``; the metrics belong to the run."""

from __future__ import annotations

import inspect
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tunery.chat import ChatMessage, GenerationParams, Role
from tunery.errors import InvalidInput, TuneryError
from tunery.flows import context
from tunery.flows.connections import Connection, ModelFactory, ModelResolver, get_connection
from tunery.flows.graph import execution_order
from tunery.flows.pytools import ToolLoader, call_tool, literal_inputs, tool_error
from tunery.flows.refs import MISSING, Reference, lookup
from tunery.flows.spec import Flow, InvalidFlow, Node, Problem, coerce_input
from tunery.flows.templates import MODEL_PARAMS, render, render_chat, template_error

COMPLETED, FAILED, BYPASSED = "Completed", "Failed", "Bypassed"
OVERRIDE_KEYS = ("connection", "deployment_name", "model")


class LineError(Exception):
    """A failure inside one line, naming the node and field where it happened."""

    def __init__(self, message: str, *, node: str | None = None, field: str | None = None,
                 kind: str = "UserError") -> None:
        super().__init__(message)
        self.message, self.node, self.field, self.kind = message, node, field, kind

    def to_dict(self) -> dict[str, Any]:
        return {"message": self.message, "type": self.kind, "node": self.node, "field": self.field}

    def __str__(self) -> str:
        where = ", ".join(x for x in (f"node '{self.node}'" if self.node else "",
                                      self.field or "") if x)
        return f"{where}: {self.message}" if where else self.message


def jsonable(value: Any, depth: int = 0) -> Any:
    """A value flow code made (a node's output) as JSON can carry it, for the run store, the API and
    ``--json``: containers as objects and lists, an object JSON has no word for as its ``str()``. An
    integer too long for Python to write in decimal and nesting past 100 levels (a list holding
    itself) are named, where ``json.dumps`` would raise."""
    if value is None or isinstance(value, str | float | bool):
        return value
    if isinstance(value, int):
        return value if value.bit_length() < 14_000 else f"<an integer of {value.bit_length()} bits>"
    if depth >= 100:
        return "<nested too deeply>"
    if isinstance(value, dict):
        return {k if isinstance(k, str) else str(k): jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v, depth + 1) for v in value]
    return str(value)


@dataclass
class NodeRun:
    node: str
    status: str
    output: Any = None
    error: dict[str, Any] | None = None
    start: float = 0.0
    end: float = 0.0
    usage: dict[str, int] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {"node": self.node, "status": self.status, "output": jsonable(self.output), "start": self.start,
             "end": self.end, "duration": round(self.end - self.start, 4)}
        if self.error:
            d["error"] = self.error
        if self.usage:
            d["usage"] = self.usage
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NodeRun:
        return cls(d["node"], d["status"], d.get("output"), d.get("error"), d.get("start", 0.0),
                   d.get("end", 0.0), d.get("usage"))


@dataclass
class LineResult:
    line_number: int
    status: str
    inputs: dict[str, Any]
    outputs: dict[str, Any] = field(default_factory=dict)
    nodes: dict[str, NodeRun] = field(default_factory=dict)
    error: dict[str, Any] | None = None
    start: float = 0.0
    end: float = 0.0
    logs: str = ""

    @property
    def duration(self) -> float:
        return round(self.end - self.start, 4)

    def to_dict(self) -> dict[str, Any]:
        return {"line_number": self.line_number, "status": self.status, "inputs": jsonable(self.inputs),
                "outputs": jsonable(self.outputs), "error": self.error, "start": self.start, "end": self.end,
                "duration": self.duration, "nodes": {k: v.to_dict() for k, v in self.nodes.items()},
                "logs": self.logs}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LineResult:
        return cls(d["line_number"], d["status"], d.get("inputs") or {}, d.get("outputs") or {},
                   {k: NodeRun.from_dict(v) for k, v in (d.get("nodes") or {}).items()}, d.get("error"),
                   d.get("start", 0.0), d.get("end", 0.0), d.get("logs", ""))


@dataclass
class AggregationResult:
    nodes: dict[str, NodeRun] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    error: dict[str, Any] | None = None
    logs: str = ""


class FlowExecutor:
    """Executes one (variant-resolved) flow. ``model_factory(connection, model_name)`` builds the
    model of llm nodes (default: :class:`ModelResolver`); ``connections`` overrides a node's
    ``connection``/``deployment_name``/``model`` as ``pf run create --connections`` does."""

    def __init__(self, flow: Flow, *, model_factory: ModelFactory | None = None,
                 connections: dict[str, dict[str, str]] | None = None, default_model: str | None = None,
                 on_warning: Callable[[str], None] | None = None) -> None:
        self.flow = flow
        self.warnings: list[str] = []
        self._on_warning = on_warning
        self.factory = model_factory or ModelResolver(default_model, on_warning=self.warn)
        self.overrides = _check_overrides(flow, connections or {})
        self.line_nodes = execution_order([n for n in flow.nodes if not n.aggregation])
        self.agg_nodes = execution_order([n for n in flow.nodes if n.aggregation])
        self.sink = context.MetricSink()
        self._loader = ToolLoader(flow.dir, flow.includes)
        self._tools: dict[str, Callable] = {}
        self._literals: dict[str, dict[str, Any]] = {}  # per node, its literal inputs as its code takes them
        self._connections: dict[str, Connection] = {}
        self._lock = threading.Lock()
        self._prepared = False

    def warn(self, message: str) -> None:
        with self._lock:
            if message in self.warnings:
                return
            self.warnings.append(message)
        if self._on_warning:
            self._on_warning(message)

    def prepare(self) -> None:
        """Import every Python node's code and check its parameters; raises :class:`InvalidFlow`
        listing every problem."""
        if self._prepared:
            return
        problems: list[Problem] = []
        for node in self.flow.nodes:
            literals = {k: v for k, v in node.inputs.items() if not isinstance(v, Reference)}
            if node.type == "python":
                func, probs = self._loader.load(node)
                problems += probs
                if func is not None:
                    self._tools[node.name] = func
                    literals, probs = literal_inputs(func, node, node.where)
                    problems += probs
            self._literals[node.name] = literals
        if problems:
            raise InvalidFlow(self.flow.file, problems)
        self._prepared = True

    # ---- one line -------------------------------------------------------------------------

    def convert_inputs(self, raw: dict[str, Any], *, strict: bool = True) -> dict[str, Any]:
        """Flow inputs with defaults filled and values converted to their declared types."""
        out: dict[str, Any] = {}
        for name, spec in self.flow.inputs.items():
            if name in raw:
                out[name] = coerce_input(raw[name], spec.type, name)
            elif spec.has_default:
                out[name] = spec.default
            elif strict:
                raise InvalidInput(f"flow input {name!r} has no value and no default", param=f"inputs.{name}",
                                   hint=f"give it with --inputs {name}=... or a column mapping")
        return out

    def run_line(self, inputs: dict[str, Any], *, line_number: int = 0, cancel: threading.Event | None = None,
                 target: str | None = None, given: dict[str, Any] | None = None) -> LineResult:
        """Run one line. With ``target``, run only that node and what it needs; ``given`` supplies
        the target's inputs by name, or another node's output as ``NODE.output``."""
        self.prepare()
        plan = self._plan(target, given or {})  # an unknown target is the caller's error, not the line's
        start = time.time()
        logs: list[str] = []
        result = LineResult(line_number, COMPLETED, dict(inputs), start=start)
        try:
            with context.line_log(logs):
                flow_inputs = self.convert_inputs(inputs, strict=target is None)
                result.inputs = flow_inputs if target is None else {**inputs, **flow_inputs}
                runs = result.nodes
                for node in plan:
                    if cancel is not None and cancel.is_set():
                        raise LineError("canceled: the line ran past its timeout", kind="Timeout")
                    if given and f"{node.name}.output" in given:
                        now = time.time()
                        runs[node.name] = NodeRun(node.name, COMPLETED, given[f"{node.name}.output"], None, now, now)
                        continue
                    overrides = (given or {}) if node.name == target else {}
                    runs[node.name] = self._run_node(node, flow_inputs, runs, overrides)
                    if runs[node.name].status == FAILED:
                        raise LineError(runs[node.name].error["message"], node=node.name,
                                        field=runs[node.name].error.get("field"),
                                        kind=runs[node.name].error["type"])
                if target is None:
                    result.outputs = self._flow_outputs(flow_inputs, runs)
        except LineError as e:
            result.status, result.error = FAILED, e.to_dict()
        except TuneryError as e:
            result.status, result.error = FAILED, {"message": str(e), "type": type(e).__name__,
                                                   "node": None, "field": e.param}
        result.end = time.time()
        result.logs = "".join(logs)
        return result

    def _plan(self, target: str | None, given: dict[str, Any]) -> list[Node]:
        if target is None:
            return self.line_nodes
        node = self.flow.node(target)
        if node.aggregation:
            raise InvalidInput(f"node {target!r} is an aggregation node; test it with a batch run", param="node")
        needed: set[str] = set()
        todo = [node]
        while todo:
            n = todo.pop()
            if n.name in needed:
                continue
            needed.add(n.name)
            if f"{n.name}.output" in given and n.name != target:
                continue
            for field_, ref in n.references:
                if n.name == target and field_.removeprefix("inputs.") in given:
                    continue
                if ref.node:
                    todo.append(self.flow.node(ref.node))
        return [n for n in self.line_nodes if n.name in needed]

    def _value(self, node: Node, field_: str, ref: Reference, flow_inputs: dict[str, Any],
               runs: dict[str, NodeRun]) -> tuple[Any, bool]:
        """A reference's value, and whether it points at a bypassed node."""
        if ref.is_flow_input:
            name = ref.path[0]
            if name not in flow_inputs:
                raise LineError(f"flow input {name!r} has no value; pass --inputs {name}=...",
                                node=node.name, field=field_)
            return flow_inputs[name], False
        dep = runs.get(ref.node or "")
        if dep is None:
            raise LineError(f"{ref}: node {ref.node!r} did not run; give its output as --inputs {ref.node}.output=...",
                            node=node.name, field=field_)
        if dep.status == BYPASSED:
            return None, True
        value = lookup(dep.output, ref.path)
        if value is MISSING:
            raise LineError(f"{ref}: the output of {ref.node!r} has no {'.'.join(ref.path)!r} "
                            f"(it is {_preview(dep.output)})", node=node.name, field=field_)
        return value, False

    def _run_node(self, node: Node, flow_inputs: dict[str, Any], runs: dict[str, NodeRun],
                  given: dict[str, Any]) -> NodeRun:
        start = time.time()
        try:
            if self._bypassed(node, flow_inputs, runs):
                return NodeRun(node.name, BYPASSED, None, None, start, time.time())
            kwargs = {}
            defaults = self._defaults(node)
            for key, value in node.inputs.items():
                if key in given:
                    kwargs[key] = given[key]
                elif isinstance(value, Reference):
                    kwargs[key], skipped = self._value(node, f"inputs.{key}", value, flow_inputs, runs)
                    if skipped and key in defaults:  # as Prompt flow: the parameter's default, not None
                        del kwargs[key]
                elif key in self._literals[node.name]:
                    kwargs[key] = self._literals[node.name][key]
            output, usage = self._invoke(node, kwargs)
            return NodeRun(node.name, COMPLETED, output, None, start, time.time(), usage)
        except LineError as e:
            return NodeRun(node.name, FAILED, None, e.to_dict(), start, time.time())

    def _defaults(self, node: Node) -> set[str]:
        """The parameters of a Python node's function that have a default value."""
        func = self._tools.get(node.name) if node.type == "python" else None
        try:
            params = inspect.signature(func).parameters.values() if func is not None else ()
        except (TypeError, ValueError):
            return set()
        return {p.name for p in params if p.default is not p.empty}

    def _bypassed(self, node: Node, flow_inputs: dict[str, Any], runs: dict[str, NodeRun]) -> bool:
        if node.activate is not None:  # as in Prompt flow, the condition alone decides
            ref = node.activate.reference
            if ref is not None:
                value, dep_bypassed = self._value(node, "activate.when", ref, flow_inputs, runs)
                if dep_bypassed:
                    return True
            else:
                value = node.activate.when
            return value != node.activate.is_value
        deps = [ref for field_, ref in node.references if ref.node and field_.startswith("inputs.")]
        return bool(deps) and all(runs.get(r.node or "") is not None and runs[r.node or ""].status == BYPASSED
                                  for r in deps)

    def _flow_outputs(self, flow_inputs: dict[str, Any], runs: dict[str, NodeRun]) -> dict[str, Any]:
        out = {}
        for name, spec in self.flow.outputs.items():
            ref = spec.reference
            if ref.is_flow_input:
                out[name] = flow_inputs.get(ref.path[0])
                continue
            dep = runs.get(ref.node or "")
            if dep is None or dep.status == BYPASSED:
                out[name] = None
                continue
            value = lookup(dep.output, ref.path)
            if value is MISSING:
                raise LineError(f"{ref}: the output of {ref.node!r} has no {'.'.join(ref.path)!r} "
                                f"(it is {_preview(dep.output)})", field=f"outputs.{name}")
            out[name] = value
        return out

    # ---- invoking one node ------------------------------------------------------------------

    def _invoke(self, node: Node, kwargs: dict[str, Any]) -> tuple[Any, dict[str, int] | None]:
        if node.type == "python":
            func = self._tools[node.name]
            try:
                with context.node_scope(node.name, node.aggregation, self.sink):
                    output = call_tool(func, kwargs)
                for w in self.sink.warnings:
                    self.warn(w)
                return output, None
            except TuneryError:
                raise
            except (Exception, SystemExit) as e:  # user code (exit() too): the line fails, the batch goes on
                message, trace = tool_error(e, self.flow.dir)
                context.log_text(f"[{node.name}] {trace}")
                raise LineError(message, node=node.name) from e
        path = self.flow.dir / node.source
        if node.type == "prompt":
            try:
                return render(path, kwargs), None
            except Exception as e:  # the template is the user's: any error of it fails the node, at its line
                raise LineError(template_error(e, node.source), node=node.name, field="source.path") from e
        return self._llm(node, kwargs, path)

    def _llm(self, node: Node, kwargs: dict[str, Any], path) -> tuple[Any, dict[str, int]]:
        """Run an llm node: its answer's text; with ``tools``, as Prompt flow's LLM tool, the
        assistant message (``role``, ``content``, ``tool_calls``) for a later node to act on."""
        variables = {k: v for k, v in kwargs.items() if k not in MODEL_PARAMS}
        try:
            if node.api == "chat":
                messages = render_chat(path, variables)
            else:
                messages = [ChatMessage(Role.USER, render(path, variables))]
        except Exception as e:  # as for a prompt node; ValueError: no role line (parse_chat)
            raise LineError(template_error(e, node.source), node=node.name, field="source.path") from e
        params = _params(node, kwargs)
        over = self.overrides.get(node.name, {})
        conn = self._connection(over.get("connection") or node.connection)
        name = (over.get("deployment_name") or over.get("model") or kwargs.get("deployment_name")
                or kwargs.get("model"))
        try:
            model = self.factory(conn, str(name) if name else None)
            done = model.generate(messages, params)
        except TuneryError as e:  # a model setting the engine refused is named as the node's input
            param = getattr(e, "param", None) or ""
            # a setting is the node's input when the node gave it; the model's name is not: an unknown one
            # falls back to the default model (the resolver), whose absence is no fault of the node's
            head = re.split(r"[.\[]", param)[0]
            named = head in MODEL_PARAMS and head in kwargs and head not in ("model", "deployment_name")
            where = f"inputs.{param}" if named else "connection"
            raise LineError(str(e), node=node.name, field=where, kind=type(e).__name__) from e
        usage = {"prompt_tokens": done.usage.prompt_tokens, "completion_tokens": done.usage.completion_tokens}
        if not params.tools:
            return done.text, usage
        from tunery.serving.constrained import split_answer

        content, calls = split_answer(done.text, params)
        return {"role": "assistant", "content": content if content or not calls else None,
                "tool_calls": calls or None}, usage

    def _connection(self, name: str | None) -> Connection:
        key = name or ""
        with self._lock:
            if key not in self._connections:
                self._connections[key] = get_connection(name)
            return self._connections[key]

    # ---- aggregation ------------------------------------------------------------------------

    def run_aggregation(self, lines: list[LineResult]) -> AggregationResult:
        """Run the aggregation nodes over the successful lines (in line order)."""
        self.prepare()
        result = AggregationResult()
        if not self.agg_nodes:
            result.metrics = dict(self.sink.metrics)
            return result
        ok = sorted((ln for ln in lines if ln.status == COMPLETED), key=lambda ln: ln.line_number)
        if not ok:
            self.warn("no line succeeded, so the aggregation nodes did not run")
            return result
        logs: list[str] = []
        with context.line_log(logs):
            for node in self.agg_nodes:
                start = time.time()
                try:
                    kwargs = {k: self._agg_value(node, f"inputs.{k}", v, ok, result.nodes)
                              if isinstance(v, Reference) else self._literals[node.name][k]
                              for k, v in node.inputs.items() if isinstance(v, Reference)
                              or k in self._literals[node.name]}
                    if node.activate is not None:
                        ref = node.activate.reference
                        when = (self._agg_value(node, "activate.when", ref, ok, result.nodes) if ref
                                else node.activate.when)
                        if when != node.activate.is_value:
                            result.nodes[node.name] = NodeRun(node.name, BYPASSED, None, None, start, time.time())
                            continue
                    output, usage = self._invoke(node, kwargs)
                    result.nodes[node.name] = NodeRun(node.name, COMPLETED, output, None, start, time.time(), usage)
                except LineError as e:
                    result.nodes[node.name] = NodeRun(node.name, FAILED, None, e.to_dict(), start, time.time())
                    result.error = result.error or e.to_dict()
        result.logs = "".join(logs)
        result.metrics = dict(self.sink.metrics)
        for w in self.sink.warnings:
            self.warn(w)
        return result

    def _agg_value(self, node: Node, field_: str, ref: Reference, lines: list[LineResult],
                   agg: dict[str, NodeRun]) -> Any:
        if ref.is_flow_input:
            return [ln.inputs.get(ref.path[0]) for ln in lines]
        if ref.node in agg:
            dep = agg[ref.node]
            if dep.status != COMPLETED:
                raise LineError(f"{ref}: node {ref.node!r} {dep.status.lower()}", node=node.name, field=field_)
            value = lookup(dep.output, ref.path)
            if value is MISSING:
                raise LineError(f"{ref}: the output of {ref.node!r} has no {'.'.join(ref.path)!r}",
                                node=node.name, field=field_)
            return value
        values = []
        for ln in lines:
            dep = ln.nodes.get(ref.node or "")
            value = None if dep is None or dep.status != COMPLETED else lookup(dep.output, ref.path)
            values.append(None if value is MISSING else value)
        return values


def _params(node: Node, kw: dict[str, Any]) -> GenerationParams:
    def num(key: str, conv: Callable, default: Any) -> Any:
        value = kw.get(key)
        if value is None or value == "":
            return default
        try:
            return conv(value)
        except (TypeError, ValueError):
            raise LineError(f"{value!r} is not a valid {key}", node=node.name, field=f"inputs.{key}") from None

    if older := next((k for k in ("functions", "function_call") if kw.get(k)), None):
        raise LineError("functions and function_call are OpenAI's older form: tunery's flows take tools and "
                        "tool_choice", node=node.name, field=f"inputs.{older}")
    tools, tool_choice = _json_input(node, kw, "tools"), _json_input(node, kw, "tool_choice")
    if tools is not None and (not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools)):
        raise LineError("tools must be a list of tool objects such as {\"type\": \"function\", \"function\": "
                        "{\"name\": ...}}", node=node.name, field="inputs.tools")
    stop = kw.get("stop") or ()
    if isinstance(stop, str):
        stop = (stop,)
    if not isinstance(stop, (list, tuple)):
        raise LineError("stop must be a string or a list of strings", node=node.name, field="inputs.stop")
    return GenerationParams(max_tokens=num("max_tokens", int, None), temperature=num("temperature", float, 1.0),
                            top_p=num("top_p", float, 1.0), stop=tuple(str(s) for s in stop),
                            seed=num("seed", int, None), response_format=_response_format(node, kw.get("response_format")),
                            tools=tuple(tools or ()), tool_choice=tool_choice or None)


def _json_input(node: Node, kw: dict[str, Any], key: str) -> Any:
    """An llm node input that holds JSON: as YAML wrote it, or JSON text (as the studio's form and
    an input of the flow pass it); a bare word (``auto``, ``none``, ``required``) is itself."""
    value = kw.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            if key == "tool_choice":
                return value.strip()
            raise LineError(f"{key} is not valid JSON", node=node.name, field=f"inputs.{key}") from None
    return value


def _response_format(node: Node, value: Any) -> dict[str, Any] | None:
    """An llm node's ``response_format`` as Prompt flow's LLM tool takes it: an object such as
    ``{"type": "json_object"}``, the same as JSON text, or the bare type; ``text`` (or nothing) asks
    for plain text. The engine checks the rest (``tunery.serving.constrained``)."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            value = {"type": value.strip()}
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        raise LineError('response_format must be an object such as {"type": "json_object"}', node=node.name,
                        field="inputs.response_format")
    return None if value["type"] == "text" else value


def _check_overrides(flow: Flow, connections: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    for node, settings in connections.items():
        target = next((n for n in flow.nodes if n.name == node), None)
        if target is None:
            raise InvalidInput(f"--connections names node {node!r}, which is not in the flow", param="connections",
                               hint="nodes: " + ", ".join(n.name for n in flow.nodes))
        if target.type != "llm":
            raise InvalidInput(f"--connections: node {node!r} is a {target.type} node, not an llm node",
                               param="connections")
        if not isinstance(settings, dict):
            raise InvalidInput(f"--connections {node}: give settings by name, e.g. {node}.deployment_name=NAME",
                               param="connections")
        for key in settings:
            if key not in OVERRIDE_KEYS:
                raise InvalidInput(f"--connections {node}.{key}: only {', '.join(OVERRIDE_KEYS)} can be set",
                                   param="connections")
    return connections


def _preview(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
