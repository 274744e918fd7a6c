"""The node graph, derived from the references between nodes: dangling references and cycles are
problems naming the node and field; the execution order is a topological sort that keeps the
file's order where the graph leaves a choice."""

from __future__ import annotations

import difflib

from tunery.errors import InvalidInput
from tunery.flows.dag import Flow, Node, Problem


def _suggest(name: str, options: list[str]) -> str:
    close = difflib.get_close_matches(name, options, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_graph(flow: Flow, declared: set[str] | None = None) -> list[Problem]:
    """Problems with the references of ``flow.nodes`` and ``flow.outputs``. Names in ``declared``
    exist in the file but failed to parse: references to them are not reported twice."""
    problems: list[Problem] = []
    by_name = {n.name: n for n in flow.nodes}
    declared = declared or set()
    names = sorted(set(by_name) | declared)
    for node in flow.nodes:
        for field, ref in node.references:
            if ref.is_flow_input:
                name = ref.path[0]
                if name not in flow.inputs:
                    problems.append(Problem(node.where, field, f"{ref} references unknown flow input "
                                            f"{name!r}{_suggest(name, list(flow.inputs))}"))
                continue
            target = by_name.get(ref.node or "")
            if ref.node == node.name:
                problems.append(Problem(node.where, field, f"{ref} references the node itself"))
            elif target is None:
                if ref.node not in declared:
                    problems.append(Problem(node.where, field, f"{ref} references unknown node "
                                            f"{ref.node!r}{_suggest(ref.node or '', names)}"))
            elif target.aggregation and not node.aggregation:
                problems.append(Problem(node.where, field, f"{ref}: only aggregation nodes may reference "
                                        f"the aggregation node {ref.node!r}"))
    for out in flow.outputs.values():
        ref = out.reference
        where = f"outputs.{out.name}"
        if ref.is_flow_input:
            if ref.path[0] not in flow.inputs:
                problems.append(Problem(where, "reference", f"{ref} references unknown flow input {ref.path[0]!r}"))
        elif ref.node not in by_name:
            if ref.node not in declared:
                problems.append(Problem(where, "reference", f"{ref} references unknown node {ref.node!r}"
                                        f"{_suggest(ref.node or '', names)}"))
        elif by_name[ref.node].aggregation:
            problems.append(Problem(where, "reference", f"{ref}: flow outputs cannot reference the "
                                    f"aggregation node {ref.node!r} (its results are metrics)"))
    problems += _cycles(flow.nodes)
    return problems


def _cycles(nodes: tuple[Node, ...]) -> list[Problem]:
    by_name = {n.name: n for n in nodes}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    stack: list[str] = []
    problems: list[Problem] = []

    def visit(name: str) -> None:
        state[name] = 1
        stack.append(name)
        node = by_name[name]
        for field, ref in node.references:
            dep = ref.node
            if dep is None or dep not in by_name or dep == name:
                continue
            if state.get(dep) == 1:
                cycle = stack[stack.index(dep):] + [dep]
                problems.append(Problem(node.where, field, f"{ref} closes a cycle: {' -> '.join(cycle)}"))
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[name] = 2

    for n in nodes:
        if n.name not in state:
            visit(n.name)
    return problems


def execution_order(nodes: tuple[Node, ...] | list[Node]) -> list[Node]:
    """Nodes sorted so that every node comes after the nodes it references (file order kept
    where free). Assumes a checked flow; a cycle raises."""
    by_name = {n.name: n for n in nodes}
    done: set[str] = set()
    order: list[Node] = []
    remaining = list(nodes)
    while remaining:
        for i, n in enumerate(remaining):
            if all(d in done or d not in by_name for d in n.depends_on):
                order.append(n)
                done.add(n.name)
                del remaining[i]
                break
        else:
            raise InvalidInput("the flow's nodes form a cycle: " + ", ".join(n.name for n in remaining),
                               param="flow")
    return order


def upstream(nodes: tuple[Node, ...] | list[Node], target: str) -> set[str]:
    """``target`` and every node it depends on, directly or not."""
    by_name = {n.name: n for n in nodes}
    seen: set[str] = set()
    todo = [target]
    while todo:
        name = todo.pop()
        if name in seen or name not in by_name:
            continue
        seen.add(name)
        todo.extend(by_name[name].depends_on)
    return seen
