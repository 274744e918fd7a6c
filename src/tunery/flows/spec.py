"""The flow format: Prompt flow's ``flow.dag.yaml`` parsed into typed, validated objects (those of
:mod:`tunery.flows.dag`, imported from here too).

Validation collects every problem, each naming where (a node, an output, a variant) and the field,
and raises one :class:`InvalidFlow` at the end, so a user fixes a file in one pass. Keys that
Prompt flow writes but tunery does not need (``$schema``, ``environment``, ``additional_includes``,
a node's ``provider``/``module``...) are accepted and ignored."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from tunery.data.text import read_text
from tunery.errors import InvalidInput, NotFound
from tunery.flows.dag import (
    NO_DEFAULT,
    Activate,
    Flow,
    FlowInput,
    FlowOutput,
    InvalidFlow,
    Node,
    NodeVariants,
    Problem,
)
from tunery.flows.graph import check_graph
from tunery.flows.refs import parse_flow_reference
from tunery.flows.templates import check_template

FLOW_FILES = ("flow.dag.yaml", "flow.dag.yml")
NODE_TYPES = ("llm", "python", "prompt")
INPUT_TYPES = ("string", "int", "double", "bool", "list", "object")


def find_flow_file(path: str | Path) -> Path:
    p = Path(path).expanduser()
    if p.is_file():
        return p
    if p.is_dir():
        for name in FLOW_FILES:
            if (p / name).is_file():
                return p / name
        raise NotFound(f"no flow.dag.yaml in {p}", param="flow",
                       hint="point --flow at a folder holding a Prompt flow flow.dag.yaml")
    raise NotFound(f"flow {p} does not exist", param="flow")


def read_flow_text(file: Path) -> str:
    """The text of a flow file as written, its line endings kept (``set_default_variant`` writes
    it back); a file that is not UTF-8 is named (:func:`tunery.data.text.read_text`)."""
    return read_text(file, param="flow")


def flow_text(text: str, dag: dict[str, Any]) -> str:
    """``dag`` written over a flow file's ``text`` (as :func:`read_flow_text` read it): the values
    that changed are replaced in place by a round-trip YAML library (ruamel.yaml), so the file's
    comments (the leading one is the flow's description), key order, quoting, indentation and line
    endings stay. Lists are matched item by item. A ``text`` that is not YAML is replaced by plain yaml."""
    from io import StringIO

    from ruamel.yaml import YAML, YAMLError
    from ruamel.yaml.util import load_yaml_guess_indent

    crlf = "\r\n" in text
    text = text.replace("\r\n", "\n")  # else a comment keeps its "\r" and gets a second one
    rt = YAML()  # round-trip
    rt.preserve_quotes = True
    rt.width = 100  # as the gallery folds long values (ruamel folds them anew)
    try:
        old, seq_indent, dash_offset = load_yaml_guess_indent(text, yaml=rt)
    except YAMLError:
        old = None
    if not isinstance(old, dict):
        return yaml.safe_dump(dag, sort_keys=False, allow_unicode=True, width=100)
    mapping = _mapping_indent(text)
    rt.indent(mapping=mapping, sequence=seq_indent if dash_offset is not None else mapping,
              offset=dash_offset or 0)
    out = StringIO()
    rt.dump(_merged(old, dag), out)
    return out.getvalue().replace("\n", "\r\n") if crlf else out.getvalue()


def _mapping_indent(text: str) -> int:
    """How far the file indents a mapping in a mapping (what ruamel cannot guess): 2 unless seen."""
    lines = text.splitlines()
    for key, line in zip(lines, lines[1:], strict=False):
        if re.match(r"^[^\s#-][^#]*:\s*(#.*)?$", key) and line.strip() and line.lstrip()[0] not in "-#":
            return len(line) - len(line.lstrip(" ")) or 2
    return 2


def _merged(old: Any, new: Any) -> Any:
    """``old`` (round-trip parsed, comments attached) made equal to ``new``, keeping what is equal."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in [k for k in old if k not in new]:
            del old[key]
        for key, value in new.items():
            old[key] = _merged(old[key], value) if key in old else value
        return old
    if isinstance(old, list) and isinstance(new, list):
        del old[len(new):]
        for i, value in enumerate(new):
            if i < len(old):
                old[i] = _merged(old[i], value)
            else:
                old.append(value)
        return old
    # the old scalar keeps its quoting; 1 == True in Python, but a number is not a boolean here
    return old if old == new and isinstance(old, bool) == isinstance(new, bool) else new


def coerce_input(value: Any, type_: str, name: str) -> Any:
    """Convert a value (often a string from the command line or a CSV) to a flow input's type."""
    try:
        if value is None:
            return None
        if type_ == "string":
            return value if isinstance(value, str) else (json.dumps(value) if isinstance(value, (dict, list))
                                                         else str(value))
        if type_ == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if type_ == "double":
            return float(value)
        if type_ == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
                return value.strip().lower() in ("true", "1", "yes")
            if isinstance(value, int):
                return bool(value)
            raise ValueError
        if type_ in ("list", "object"):
            if isinstance(value, str):
                value = json.loads(value)
            want = list if type_ == "list" else dict
            if not isinstance(value, want):
                raise ValueError
            return value
    except (ValueError, TypeError):
        pass
    else:
        return value
    raise InvalidInput(f"input {name!r} must be of type {type_}, got {value!r}", param=f"inputs.{name}")


def load_flow(path: str | Path) -> Flow:
    """Parse and validate a flow folder (or its yaml file); raises :class:`InvalidFlow`."""
    flow, problems = check_flow(path)
    if flow is None or any(p.severity == "error" for p in problems):
        raise InvalidFlow(find_flow_file(path), problems)
    return flow


def check_flow(path: str | Path) -> tuple[Flow | None, list[Problem]]:
    """Parse a flow and collect every problem (errors and warnings) instead of raising."""
    file = find_flow_file(path)
    try:
        raw = yaml.safe_load(read_flow_text(file))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "yaml"
        return None, [Problem(where, "", f"not valid YAML: {getattr(e, 'problem', None) or e}")]
    if not isinstance(raw, dict):
        return None, [Problem("flow", "", "the file must be a mapping with inputs, outputs and nodes")]
    p = _Parser(file.parent)
    inputs = p.inputs(raw.get("inputs"))
    outputs = p.outputs(raw.get("outputs"))
    nodes, placeholders = p.nodes(raw.get("nodes"))
    variants = p.node_variants(raw.get("node_variants"), placeholders)
    concrete = tuple(variants[n.name].variants[variants[n.name].default_id] if n.name in variants
                     else n for n in nodes if n.name in variants or n.name not in placeholders)
    flow = Flow(dir=file.parent.resolve(), file=file.resolve(), inputs=inputs, outputs=outputs, nodes=concrete,
                node_variants=variants, selected={k: v.default_id for k, v in variants.items()})
    all_nodes = list(concrete) + [v for nv in variants.values() for vid, v in nv.variants.items()
                                  if vid != nv.default_id]
    for node in all_nodes:
        where = node.where
        if node.type in ("llm", "prompt") and (flow.dir / node.source).is_file():
            for prob in check_template(flow.dir / node.source, node, where):
                p.problems.append(prob)
    # the nodes that failed to parse join the graph check, so one malformed reference does not
    # hide the node's other reference problems (a broken variant is left out: it would stand in
    # for its node's default in the default graph)
    parsed = {n.name for n in flow.nodes}
    broken = tuple(n for n in p.broken if n.variant_id is None and n.name not in parsed)
    p.problems += check_graph(replace(flow, nodes=flow.nodes + broken), p.declared)
    for nv in variants.values():  # every variant must fit the graph, not only the default
        for vid in nv.variants:
            if vid != nv.default_id:
                p.problems += [prob for prob in check_graph(flow.with_variant((nv.node, vid)), p.declared)
                               if prob not in p.problems]
    warnings = tuple(x for x in p.problems if x.severity == "warning")
    return replace(flow, warnings=warnings), p.problems


class _Parser:
    def __init__(self, flow_dir: Path) -> None:
        self.dir = flow_dir
        self.problems: list[Problem] = []
        self.declared: set[str] = set()  # every node name written, parsed or not
        self.broken: list[Node] = []  # nodes with problems, as far as they parsed: their references are checked too

    def err(self, where: str, field_: str, message: str) -> None:
        self.problems.append(Problem(where, field_, message))

    def inputs(self, raw: Any) -> dict[str, FlowInput]:
        out: dict[str, FlowInput] = {}
        if raw is None:
            return out
        if not isinstance(raw, dict):
            self.err("inputs", "", "must be a mapping of input name to {type, default}")
            return out
        for name, spec in raw.items():
            where = f"inputs.{name}"
            spec = {} if spec is None else spec
            if not isinstance(spec, dict):
                self.err(where, "", "must be a mapping with type (and optionally default, description)")
                continue
            type_ = str(spec.get("type", "string"))
            if type_ not in INPUT_TYPES:
                self.err(where, "type", f"unknown type {type_!r}; use one of {', '.join(INPUT_TYPES)}")
                continue
            default = spec.get("default", NO_DEFAULT)
            if default is not NO_DEFAULT and default is not None:
                try:
                    default = coerce_input(default, type_, str(name))
                except InvalidInput as e:
                    self.err(where, "default", e.message)
            out[str(name)] = FlowInput(str(name), type_, default, str(spec.get("description") or ""))
        return out

    def outputs(self, raw: Any) -> dict[str, FlowOutput]:
        out: dict[str, FlowOutput] = {}
        if raw is None:
            return out
        if not isinstance(raw, dict):
            self.err("outputs", "", "must be a mapping of output name to {type, reference}")
            return out
        for name, spec in raw.items():
            where = f"outputs.{name}"
            if not isinstance(spec, dict) or "reference" not in spec:
                self.err(where, "reference", "missing; write reference: ${NODE.output}")
                continue
            try:
                ref = parse_flow_reference(spec["reference"])
            except ValueError as e:
                self.err(where, "reference", str(e))
                continue
            if ref is None:
                self.err(where, "reference", f"{spec['reference']!r} is not a reference such as ${{NODE.output}}")
                continue
            out[str(name)] = FlowOutput(str(name), ref, str(spec.get("type", "string")),
                                        str(spec.get("description") or ""))
        return out

    def nodes(self, raw: Any) -> tuple[list[Node], set[str]]:
        """Parsed nodes, and the names of nodes marked ``use_variants`` (defined in node_variants)."""
        nodes: list[Node] = []
        placeholders: set[str] = set()
        if not isinstance(raw, list) or not raw:
            self.err("nodes", "", "must be a non-empty list of nodes")
            return nodes, placeholders
        seen: set[str] = set()
        for i, item in enumerate(raw):
            if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"].strip():
                self.err(f"nodes[{i}]", "name", "every node needs a name")
                continue
            name = item["name"]
            if name in seen:
                self.err(f"node '{name}'", "name", "duplicate node name")
                continue
            seen.add(name)
            self.declared.add(name)
            if name == "inputs":
                self.err(f"node '{name}'", "name", "'inputs' is reserved for flow inputs")
                continue
            if item.get("use_variants"):
                placeholders.add(name)
                nodes.append(Node(name=name, type="variants", source=""))
                continue
            node = self.node(name, item, f"node '{name}'")
            if node is not None:
                nodes.append(node)
        return nodes, placeholders

    def node(self, name: str, item: dict, where: str, variant_id: str | None = None) -> Node | None:
        ok = True
        type_ = item.get("type")
        if type_ not in NODE_TYPES:
            self.err(where, "type", f"{type_!r} is not supported; use one of {', '.join(NODE_TYPES)}")
            ok = False
        source = item.get("source")
        path = None
        if not isinstance(source, dict):
            self.err(where, "source", "missing; write source: {type: code, path: FILE}")
            ok = False
        elif source.get("type", "code") != "code":
            self.err(where, "source.type", f"{source.get('type')!r} tools are not supported; only "
                     "'code' (a template or Python file in the flow folder)")
            ok = False
        elif not isinstance(source.get("path"), str):
            self.err(where, "source.path", "missing")
            ok = False
        else:
            path = source["path"]
            if not (self.dir / path).is_file():
                self.err(where, "source.path", f"file {path!r} not found in {self.dir}")
                ok = False
            elif type_ == "python" and not path.endswith(".py"):
                self.err(where, "source.path", f"{path!r} is not a .py file")
                ok = False
        raw_inputs = item.get("inputs") or {}
        inputs: dict[str, Any] = {}
        if not isinstance(raw_inputs, dict):
            self.err(where, "inputs", "must be a mapping of input name to value or reference")
            ok = False
            raw_inputs = {}
        for key, value in raw_inputs.items():
            try:
                ref = parse_flow_reference(value)
            except ValueError as e:
                self.err(where, f"inputs.{key}", str(e))
                ok = False
                continue
            inputs[str(key)] = ref if ref is not None else value
        activate = None
        if item.get("activate") is not None:
            act = item["activate"]
            if not isinstance(act, dict) or "when" not in act or "is" not in act:
                self.err(where, "activate", "must have both 'when' and 'is'")
                ok = False
            else:
                try:
                    when = parse_flow_reference(act["when"])
                except ValueError as e:
                    self.err(where, "activate.when", str(e))
                    ok = False
                    when = None
                activate = Activate(when if when is not None else act["when"], act["is"])
        api = str(item.get("api") or "chat")
        if type_ == "llm" and api not in ("chat", "completion"):
            self.err(where, "api", f"{api!r} is not supported; use chat or completion")
            ok = False
        connection = item.get("connection")
        node = Node(name=name, type=str(type_), source=path or "", inputs=inputs,
                    connection=str(connection) if connection else None, api=api,
                    aggregation=bool(item.get("aggregation", False)), activate=activate,
                    function=item.get("function"), variant_id=variant_id)
        if not ok:
            self.broken.append(node)
            return None
        return node

    def node_variants(self, raw: Any, placeholders: set[str]) -> dict[str, NodeVariants]:
        out: dict[str, NodeVariants] = {}
        raw = raw or {}
        if not isinstance(raw, dict):
            self.err("node_variants", "", "must be a mapping of node name to its variants")
            raw = {}
        for name in placeholders:
            if name not in raw:
                self.err(f"node '{name}'", "use_variants", f"no node_variants entry for {name!r}")
        for name, spec in raw.items():
            where = f"node_variants.{name}"
            if name not in placeholders:
                self.err(where, "", f"no node {name!r} with use_variants: true")
                continue
            if not isinstance(spec, dict) or not isinstance(spec.get("variants"), dict) or not spec["variants"]:
                self.err(where, "variants", "must map variant ids to {node: {...}}")
                continue
            variants: dict[str, Node] = {}
            for vid, vspec in spec["variants"].items():
                if not isinstance(vspec, dict) or not isinstance(vspec.get("node"), dict):
                    self.err(where, f"variants.{vid}.node", "missing; each variant holds a node definition")
                    continue
                node = self.node(name, vspec["node"], f"node '{name}' (variant {vid})", variant_id=str(vid))
                if node is not None:
                    variants[str(vid)] = node
            default = str(spec.get("default_variant_id") or next(iter(spec["variants"])))
            if default not in spec["variants"]:
                self.err(where, "default_variant_id", f"{default!r} is not one of {', '.join(spec['variants'])}")
                continue
            if default in variants and len(variants) == len(spec["variants"]):
                out[str(name)] = NodeVariants(str(name), default, variants)
        return out
