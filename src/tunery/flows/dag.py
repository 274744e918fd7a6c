"""A flow as typed objects: its inputs, outputs and nodes (with their variants), and the
:class:`Problem` that validation reports. Parsing ``flow.dag.yaml`` into them is
:mod:`tunery.flows.spec`; the checks of the node graph and of templates (:mod:`tunery.flows.graph`,
:mod:`tunery.flows.templates`) work on them, below the parser that calls them."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tunery.errors import InvalidInput, NotFound
from tunery.flows.refs import Reference, parse_variant

NO_DEFAULT = object()  # a flow input without a default (None is a default)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a flow: ``where`` (``node 'classify'``, ``outputs.category``...),
    the ``field`` inside it, and what is wrong."""

    where: str
    field: str
    message: str
    severity: str = "error"  # or "warning": reported, does not stop a run

    def __str__(self) -> str:
        loc = f"{self.where}, {self.field}" if self.field else self.where
        return f"{loc}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        """The problem with the node and variant it names pulled out, for an editor to place it."""
        m = re.match(r"^node '([^']+)'(?: \(variant ([^)]+)\))?$", self.where)
        nv = re.match(r"^node_variants\.(.+)$", self.where)
        return {"where": self.where, "field": self.field, "message": self.message, "severity": self.severity,
                "node": m.group(1) if m else (nv.group(1) if nv else None), "variant": m.group(2) if m else None,
                "text": str(self)}


class InvalidFlow(InvalidInput):
    """A flow file with problems; ``problems`` lists them all."""

    def __init__(self, file: Path | str, problems: list[Problem]) -> None:
        errors = [p for p in problems if p.severity == "error"]
        head = f"{file}: " + "; ".join(str(p) for p in errors[:5])
        if len(errors) > 5:
            head += f"; and {len(errors) - 5} more"
        super().__init__(head, param="flow", code="invalid_flow",
                         hint="run `tunery flow validate --flow DIR` to list every problem")
        self.file = str(file)
        self.problems = problems

    def to_openai(self) -> dict:
        """The OpenAI error object, its ``param`` the first error's place (``node 'x', inputs.y``)
        and every problem listed under ``problems`` for an editor to show on its node and field."""
        body = super().to_openai()
        errors = [p for p in self.problems if p.severity == "error"]
        if errors:
            body["error"]["param"] = f"{errors[0].where}, {errors[0].field}" if errors[0].field else errors[0].where
        body["error"]["problems"] = [p.to_dict() for p in self.problems]
        return body


@dataclass(frozen=True)
class FlowInput:
    name: str
    type: str = "string"
    default: Any = NO_DEFAULT
    description: str = ""

    @property
    def has_default(self) -> bool:
        return self.default is not NO_DEFAULT


@dataclass(frozen=True)
class FlowOutput:
    name: str
    reference: Reference
    type: str = "string"
    description: str = ""


@dataclass(frozen=True)
class Activate:
    """Run the node only when ``when`` (a reference or literal) equals ``is_value``."""

    when: Any
    is_value: Any

    @property
    def reference(self) -> Reference | None:
        return self.when if isinstance(self.when, Reference) else None


@dataclass(frozen=True)
class Node:
    name: str
    type: str
    source: str  # path of the template or Python file, relative to the flow folder
    inputs: dict[str, Any] = field(default_factory=dict)  # literals, or Reference objects
    connection: str | None = None
    api: str = "chat"
    aggregation: bool = False
    activate: Activate | None = None
    function: str | None = None
    variant_id: str | None = None  # set when this node came from node_variants

    @property
    def references(self) -> list[tuple[str, Reference]]:
        """(field, reference) pairs: every input reference, then the activate condition."""
        refs = [(f"inputs.{k}", v) for k, v in self.inputs.items() if isinstance(v, Reference)]
        if self.activate and self.activate.reference:
            refs.append(("activate.when", self.activate.reference))
        return refs

    @property
    def depends_on(self) -> set[str]:
        return {r.node for _, r in self.references if r.node}

    @property
    def where(self) -> str:
        """How problems name this node: ``node 'classify'``, ``node 'classify' (variant variant_1)``."""
        return f"node '{self.name}'" + (f" (variant {self.variant_id})" if self.variant_id else "")


@dataclass(frozen=True)
class NodeVariants:
    node: str
    default_id: str
    variants: dict[str, Node]


@dataclass(frozen=True)
class Flow:
    """A parsed flow. ``nodes`` are concrete: nodes marked ``use_variants`` hold the selected
    (by default, the default) variant; ``selected`` names the variant chosen per such node."""

    dir: Path
    file: Path
    inputs: dict[str, FlowInput]
    outputs: dict[str, FlowOutput]
    nodes: tuple[Node, ...]
    node_variants: dict[str, NodeVariants]
    selected: dict[str, str] = field(default_factory=dict)
    warnings: tuple[Problem, ...] = ()
    includes: tuple[Path, ...] = ()
    """``additional_includes`` that exist, resolved: files and folders a run copies in beside the flow."""

    @property
    def name(self) -> str:
        return self.dir.name

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise NotFound(f"flow {self.name} has no node {name!r}", param="node",
                       hint="nodes: " + ", ".join(n.name for n in self.nodes))

    def variant_node(self, node: str, vid: str, *, node_param: str = "variant"):
        """The node as variant ``vid`` defines it; errors name the variants that exist."""
        nv = self.node_variants.get(node)
        if nv is None:
            raise InvalidInput(f"node {node!r} has no variants", param=node_param,
                               hint="nodes with variants: " + (", ".join(self.node_variants) or "none"))
        if vid not in nv.variants:
            raise InvalidInput(f"node {node!r} has no variant {vid!r}", param="variant",
                               hint="its variants: " + ", ".join(nv.variants))
        return nv.variants[vid]

    def with_variant(self, selector: str | tuple[str, str] | None) -> Flow:
        """The same flow with one node switched to another variant (``${node.variant_1}``)."""
        if selector is None:
            return self
        node, vid = parse_variant(selector) if isinstance(selector, str) else selector
        chosen = self.variant_node(node, vid)
        nodes = tuple(chosen if n.name == node else n for n in self.nodes)
        return replace(self, nodes=nodes, selected={**self.selected, node: vid})

    @property
    def variant_label(self) -> str | None:
        """``variant_1`` when one non-default variant is selected (used in run names)."""
        chosen = [v for k, v in self.selected.items() if v != self.node_variants[k].default_id]
        return chosen[0] if len(chosen) == 1 else None
