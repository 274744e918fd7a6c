"""What ``tunery flow`` does while a flow is being written: validate it (every problem at once),
test it on one line (every node's output), and set a node's default variant in the file."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tunery.flows import context
from tunery.flows.connections import ModelFactory
from tunery.flows.executor import AggregationResult, FlowExecutor, LineResult
from tunery.flows.spec import (
    Flow,
    InvalidFlow,
    Problem,
    check_flow,
    find_flow_file,
    flow_text,
    load_flow,
    read_flow_text,
)
from tunery.home import atomic_write_text


@dataclass
class ValidationReport:
    file: Path
    problems: list[Problem] = field(default_factory=list)
    flow: Flow | None = None

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors


def validate_flow(path: str | Path) -> ValidationReport:
    """Check the file, the templates and, for every variant, the Python nodes' code."""
    file = find_flow_file(path)
    flow, problems = check_flow(file)
    report = ValidationReport(file, list(problems), flow)
    if flow is None or report.errors:
        return report
    selections = [None] + [(nv.node, vid) for nv in flow.node_variants.values() for vid in nv.variants
                           if vid != nv.default_id]
    for sel in selections:
        try:
            FlowExecutor(flow.with_variant(sel), model_factory=lambda c, m: None).prepare()  # type: ignore[arg-type,return-value]
        except InvalidFlow as e:
            report.problems += [p for p in e.problems if p not in report.problems]
    return report


@dataclass
class FlowTestResult:
    flow: Flow
    line: LineResult
    aggregation: AggregationResult | None
    warnings: list[str]

    def to_dict(self) -> dict[str, Any]:
        line = self.line.to_dict()  # its values as JSON can carry them
        d = {"flow": str(self.flow.dir), "variants": self.flow.selected, "status": self.line.status,
             "inputs": line["inputs"], "nodes": line["nodes"], "outputs": line["outputs"], "error": self.line.error,
             "logs": self.line.logs, "warnings": self.warnings}
        if self.aggregation is not None:
            d["aggregation"] = {k: v.to_dict() for k, v in self.aggregation.nodes.items()}
            d["metrics"] = self.aggregation.metrics
        return d


def test_flow(path: str | Path, inputs: dict[str, Any] | None = None, *, variant: str | None = None,
              node: str | None = None, model_factory: ModelFactory | None = None,
              connections: dict[str, dict[str, str]] | None = None, default_model: str | None = None,
              on_warning: Callable[[str], None] | None = None) -> FlowTestResult:
    """Run the flow once on ``inputs`` (defaults fill the rest). With ``node``, run only that node
    and the nodes it needs; ``inputs`` may then give the node's own inputs by name, or another
    node's output as ``NODE.output``. Aggregation nodes run over the single line."""
    flow = load_flow(path).with_variant(variant)
    ex = FlowExecutor(flow, model_factory=model_factory, connections=connections, default_model=default_model,
                      on_warning=on_warning)
    unknown = [k for k in inputs or {} if k not in flow.inputs]
    if unknown and node is None:  # a misspelt input would leave its default in silence
        ex.warn(f"the flow has no input{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
                f"ignored (its inputs: {', '.join(flow.inputs) or 'none'})")
    with context.capture_prints():
        line = ex.run_line(dict(inputs or {}), target=node, given=dict(inputs or {}) if node else None)
        aggregation = ex.run_aggregation([line]) if node is None and ex.agg_nodes else None
    return FlowTestResult(flow, line, aggregation, ex.warnings)


test_flow.__test__ = False  # type: ignore[attr-defined]  # not a pytest test, despite the name


def set_default_variant(path: str | Path, node: str, variant: str) -> Path:
    """Make ``variant`` the default of ``node`` in flow.dag.yaml, editing only that line so the
    file's comments and layout survive (a layout that line edit cannot read goes through
    :func:`~tunery.flows.spec.flow_text`, which keeps them too)."""
    flow = load_flow(path)
    flow.variant_node(node, variant, node_param="node")
    file = flow.file
    text = read_flow_text(file)
    eol = "\r\n" if "\r\n" in text else "\n"  # the file's own line endings, kept
    new = _edit_default(text, node, variant, eol)
    if new is None or (yaml.safe_load(new).get("node_variants") or {}).get(node, {}).get("default_variant_id") != variant:
        data = yaml.safe_load(text)
        data["node_variants"][node]["default_variant_id"] = variant
        new = flow_text(text, data)
    atomic_write_text(file, new)
    return file


def _edit_default(text: str, node: str, variant: str, eol: str = "\n") -> str | None:
    lines = text.splitlines(keepends=True)
    indent = lambda s: len(s) - len(s.lstrip(" "))  # noqa: E731
    try:
        start = next(i for i, ln in enumerate(lines) if re.match(r"^node_variants:\s*(#.*)?$", ln.rstrip("\r\n")))
    except StopIteration:
        return None
    node_line, level = None, None
    for i in range(start + 1, len(lines)):
        ln = lines[i]
        if not ln.strip() or ln.lstrip().startswith("#"):
            continue
        if not ln.startswith(" "):
            break  # the next top-level key
        level = indent(ln) if level is None else level
        if indent(ln) == level and re.match(rf"^\s+{re.escape(node)}:\s*(#.*)?$", ln.rstrip("\r\n")):
            node_line = i
            break
    if node_line is None:
        return None
    base = indent(lines[node_line])
    body = [i for i in range(node_line + 1, len(lines)) if lines[i].strip() and not lines[i].lstrip().startswith("#")]
    child = indent(lines[body[0]]) if body and indent(lines[body[0]]) > base else base + 2
    for i in body:
        ln = lines[i]
        if indent(ln) <= base:
            break
        m = re.match(r"^(\s+default_variant_id:\s*)(\S+)(.*)$", ln.rstrip("\r\n"))
        if m and indent(ln) == child:
            lines[i] = f"{m.group(1)}{variant}{m.group(3)}{ln[len(ln.rstrip(chr(13) + chr(10))):]}"
            return "".join(lines)
    # no default_variant_id yet: add one as the node's first key
    lines.insert(node_line + 1, f"{' ' * child}default_variant_id: {variant}{eol}")
    return "".join(lines)
