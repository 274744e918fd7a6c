"""The flow format: Prompt flow's ``flow.dag.yaml`` parsed into typed, validated objects (those of
:mod:`tunery.flows.dag`, imported from here too).

Validation collects every problem, each naming where (a node, an output, a variant) and the field,
and raises one :class:`InvalidFlow` at the end, so a user fixes a file in one pass. Keys that
Prompt flow writes but tunery does not need (``$schema``, ``environment``, a node's
``provider``/``module``...) are accepted and ignored; ``additional_includes`` lend nodes their
source files, as Prompt flow copies them into the flow folder."""

from __future__ import annotations

import difflib
import json
import os
import re
import sys
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
    endings stay. A list of named mappings (``nodes``) is matched by name, so a node deleted or
    added takes its own comments out or comes in between its neighbours' (:func:`_text_edits`);
    other lists item by item. What ruamel would write differently from the file (a long value
    folded elsewhere, spacing) is kept as the file has it unless that part was edited
    (:func:`_merge3`). A ``text`` that is not YAML is replaced by plain yaml."""
    crlf = "\r\n" in text
    text = text.replace("\r\n", "\n")  # else a comment keeps its "\r" and gets a second one
    old = _round_trip(text)
    if old is None:
        return yaml.safe_dump(dag, sort_keys=False, allow_unicode=True, width=100)
    edits: list[tuple[int, int, str]] = []
    _text_edits(old[1], dag, text.split("\n"), edits, old[0])
    if edits:
        lines = text.split("\n")
        for start, end, new in sorted(edits, reverse=True):  # from the end: earlier line numbers hold
            lines[start:end] = new.split("\n")[:-1]
        edited = "\n".join(lines)
        if (again := _round_trip(edited)) is not None:
            text, old = edited, again
    rt, tree = old
    base = _dump(rt, _round_trip(text)[1])  # type: ignore[index]  # a fresh parse: dumping marks comments done
    new = _dump(rt, _merged(tree, dag))
    out = _merge3(text, base, new)
    try:
        if yaml.safe_load(out) != yaml.safe_load(new):
            out = new
    except yaml.YAMLError:
        out = new
    return out.replace("\n", "\r\n") if crlf else out


def _round_trip(text: str) -> tuple[Any, Any] | None:
    """A ruamel round-trip loader set to write as ``text`` is laid out, and ``text`` parsed by it
    (None when it is not a YAML mapping)."""
    from ruamel.yaml import YAML, YAMLError
    from ruamel.yaml.util import load_yaml_guess_indent

    rt = YAML()  # round-trip
    rt.preserve_quotes = True
    rt.width = sys.maxsize  # a long value stays on its line: ruamel would fold it at its own width
    try:
        tree, seq_indent, dash_offset = load_yaml_guess_indent(text, yaml=rt)
    except YAMLError:
        return None
    if not isinstance(tree, dict):
        return None
    mapping = _mapping_indent(text)
    rt.indent(mapping=mapping, sequence=seq_indent if dash_offset is not None else mapping,
              offset=dash_offset or 0)
    return rt, tree


def _dump(rt: Any, tree: Any) -> str:
    from io import StringIO

    out = StringIO()
    rt.dump(tree, out)
    return out.getvalue()


def _mapping_indent(text: str) -> int:
    """How far the file indents a mapping in a mapping (what ruamel cannot guess): 2 unless seen."""
    lines = text.splitlines()
    for key, line in zip(lines, lines[1:], strict=False):
        if re.match(r"^[^\s#-][^#]*:\s*(#.*)?$", key) and line.strip() and line.lstrip()[0] not in "-#":
            return len(line) - len(line.lstrip(" ")) or 2
    return 2


def _names(items: list) -> list[str] | None:
    """The names of a list of named mappings (``nodes``), or None for any other list."""
    names = [x.get("name") if isinstance(x, dict) else None for x in items]
    if all(isinstance(n, str) for n in names) and len(set(names)) == len(names):
        return names  # type: ignore[return-value]
    return None


def _aligned(old: list, new: list) -> list[tuple[str, int, int, int, int]] | None:
    """How ``old`` becomes ``new`` when both are lists of named mappings: difflib's opcodes on the
    names (a renamed item is a ``replace``, paired with the item it replaces); None otherwise."""
    old_names, new_names = _names(old), _names(new)
    if old_names is None or new_names is None:
        return None
    return difflib.SequenceMatcher(None, old_names, new_names, autojunk=False).get_opcodes()


def _text_edits(old: Any, new: Any, lines: list[str], edits: list[tuple[int, int, str]], rt: Any) -> None:
    """The line edits that take out of the file's ``lines`` each key and named-list item (a node)
    that ``new`` lacks, with its own comments (those on the lines just above it and inside it), move
    an item ``new`` moves, with them, and write in an item ``new`` adds before the comment of the
    item that will follow it. Done on the text, because ruamel keeps the comment above an entry in
    the entry before it, and would drop it with that one; the merge then edits the values."""
    if isinstance(old, dict) and isinstance(new, dict):
        starts = [old.lc.key(k) for k in old] if hasattr(old, "lc") else []
        spans = _block_spans(old, lines, starts)
        head = next((i for i, ln in enumerate(lines) if ln.strip() and not ln.startswith(("#", "$schema"))), 0)
        for i, key in enumerate(old):
            if key in new:
                _text_edits(old[key], new[key], lines, edits, rt)
            elif spans is not None and not lines[starts[i][0]][:spans[0]].strip():  # not the "- key:" of an item
                start, end, _ = _taken_out(spans[1], i, lines)
                # the comment that leads the file is its description: it is never a key's to take
                edits.append((max(start, min(head, starts[i][0])), end, ""))
        return
    if not (isinstance(old, list) and isinstance(new, list)):
        return
    ops = _aligned(old, new)
    if ops is None:
        for o, n in zip(old, new, strict=False):
            _text_edits(o, n, lines, edits, rt)
        return
    spans = _block_spans(old, lines, [_dash(old, i, lines) for i in range(len(old))])
    where = {item["name"]: i for i, item in enumerate(old)}
    for _, i1, i2, j1, j2 in ops:
        paired = min(i2 - i1, j2 - j1)
        for k in range(paired):
            _text_edits(old[i1 + k], new[j1 + k], lines, edits, rt)
        if spans is None:
            continue  # a flow-style list: the merge deletes and inserts
        col, items = spans
        edits += [_taken_out(items, i, lines) for i in range(i1 + paired, i2)]
        if j1 + paired < j2:
            at = items[i2][0] if i2 < len(items) else items[-1][1]
            text = ""
            for item in new[j1 + paired:j2]:
                moved = where.get(item["name"])
                text += ("".join(ln + "\n" for ln in lines[slice(*items[moved])]) if moved is not None
                         else _item_text(rt, item, col))
            edits.append((at, at, text))


def _dash(seq: Any, i: int, lines: list[str]) -> tuple[int, int] | None:
    """Where item ``i`` of a block list has its ``-`` (None when it is not on the item's line)."""
    line, col = seq.lc.item(i)
    m = re.match(r"( *)-( +)", lines[line]) if line < len(lines) else None
    return (line, len(m.group(1))) if m is not None and m.end() == col else None


def _block_spans(node: Any, lines: list[str], starts: list) -> tuple[int, list[tuple[int, int]]] | None:
    """The column of a block mapping's keys (a block list's ``-``) and each entry's lines ``[start,
    end)``, given where each begins: from the comment lines just above it (no deeper than it) to its
    last line, less the blank and comment lines at its end that are no deeper than it (they lead
    what follows). None for a flow-style one, or one whose entries do not start at one column."""
    if not starts or not hasattr(node, "fa") or node.fa.flow_style() or None in starts:
        return None
    col = starts[0][1]
    if any(c != col for _, c in starts):
        return None
    indent = lambda s: len(s) - len(s.lstrip(" "))  # noqa: E731
    shallow_comment = lambda s: s.lstrip(" ").startswith("#") and indent(s) <= col  # noqa: E731
    spans = []
    for line, _ in starts:
        start = line
        while start > 0 and shallow_comment(lines[start - 1]):
            start -= 1
        end = line + 1
        while end < len(lines) and not (lines[end].strip() and not lines[end].lstrip().startswith("#")
                                        and indent(lines[end]) <= col):
            end += 1
        while end > line + 1 and (not lines[end - 1].strip() or shallow_comment(lines[end - 1])):
            end -= 1
        spans.append((start, end))
    return col, spans


def _taken_out(spans: list[tuple[int, int]], i: int, lines: list[str]) -> tuple[int, int, str]:
    """The edit that deletes entry ``i`` with the blank lines that part it from the next entry (the
    last entry: from the one before)."""
    start, end = spans[i]
    if i + 1 < len(spans):
        while end < spans[i + 1][0] and not lines[end].strip():
            end += 1
    else:
        while start > 0 and not lines[start - 1].strip():
            start -= 1
    return start, end, ""


def _item_text(rt: Any, item: Any, dash: int) -> str:
    """A new list item as ruamel writes it, its ``-`` at column ``dash``."""
    lines = _dump(rt, {"k": [item]}).split("\n")[1:-1]
    shift = dash - (len(lines[0]) - len(lines[0].lstrip(" ")))
    return "".join((" " * shift + ln if shift >= 0 else ln[-shift:]) + "\n" if ln else "\n" for ln in lines)


def _merged(old: Any, new: Any) -> Any:
    """``old`` (round-trip parsed, comments attached) made equal to ``new``, keeping what is equal."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in [k for k in old if k not in new]:
            del old[key]
        for key, value in new.items():
            old[key] = _merged(old[key], value) if key in old else value
        return old
    if isinstance(old, list) and isinstance(new, list):
        ops = _aligned(old, new) or [("replace", 0, len(old), 0, len(new))]
        for _, i1, i2, j1, j2 in reversed(ops):  # from the end: earlier indices hold
            paired = min(i2 - i1, j2 - j1)
            for k in range(paired):
                old[i1 + k] = _merged(old[i1 + k], new[j1 + k])
            del old[i1 + paired:i2]
            for k, value in enumerate(new[j1 + paired:j2]):
                old.insert(i1 + paired + k, value)
        return old
    # the old scalar keeps its quoting; 1 == True in Python, but a number is not a boolean here
    return old if old == new and isinstance(old, bool) == isinstance(new, bool) else new


def _merge3(ours: str, base: str, theirs: str) -> str:
    """``theirs``' changes from ``base`` made to ``ours`` too, line by line: ``base`` is how ruamel
    writes the file unedited, ``ours`` the file as it is, ``theirs`` ruamel's edited one. Lines
    ruamel writes differently from the file (a value it folds elsewhere) stay as the file has
    them, unless the edit changed those very lines; then the edit's lines win."""
    o, b, t = ours.splitlines(keepends=True), base.splitlines(keepends=True), theirs.splitlines(keepends=True)

    def hunks(x: list[str]) -> list[tuple[int, int, list[str]]]:
        ops = difflib.SequenceMatcher(None, b, x, autojunk=False).get_opcodes()
        return [(i1, i2, x[j1:j2]) for tag, i1, i2, j1, j2 in ops if tag != "equal"]

    edited = hunks(t)
    kept = [(i1, i2, x) for i1, i2, x in hunks(o)
            if not any(i1 < k2 and k1 < i2 or i1 == i2 == k1 == k2 for k1, k2, _ in edited)]
    out: list[str] = []
    at = 0
    for i1, i2, x in sorted(kept + edited, key=lambda h: (h[0], h[1])):
        out += b[at:i1] + x
        at = i2
    return "".join(out + b[at:])


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


def yaml_problem(e: yaml.YAMLError) -> tuple[str, str, str]:
    """Where a text is not YAML (``line 3``; ``yaml`` when the parser does not say), no field, and
    why, in one line (PyYAML's own message spans several, quoting "<unicode string>")."""
    mark = getattr(e, "problem_mark", None)
    return f"line {mark.line + 1}" if mark else "yaml", "", f"not valid YAML: {getattr(e, 'problem', None) or e}"


def yaml_error(file: Path | str, e: yaml.YAMLError) -> str:
    """``file: line 3: not valid YAML: ...``, for a YAML file other than a flow's (a run file)."""
    where, _, why = yaml_problem(e)
    return f"{file}: {where}: {why}"


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
        return None, [Problem(*yaml_problem(e))]
    if not isinstance(raw, dict):
        return None, [Problem("flow", "", "the file must be a mapping with inputs, outputs and nodes")]
    p = _Parser(file.parent)
    p.additional_includes(raw.get("additional_includes"))
    inputs = p.inputs(raw.get("inputs"))
    outputs = p.outputs(raw.get("outputs"))
    nodes, placeholders = p.nodes(raw.get("nodes"))
    variants = p.node_variants(raw.get("node_variants"), placeholders)
    concrete = tuple(variants[n.name].variants[variants[n.name].default_id] if n.name in variants
                     else n for n in nodes if n.name in variants or n.name not in placeholders)
    flow = Flow(dir=file.parent.resolve(), file=file.resolve(), inputs=inputs, outputs=outputs, nodes=concrete,
                node_variants=variants, selected={k: v.default_id for k, v in variants.items()},
                includes=tuple(p.includes))
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
        self.includes: list[Path] = []  # additional_includes, resolved

    def additional_includes(self, raw: Any) -> None:
        """The files and folders outside the flow folder that Prompt flow copies into it for a run
        (``additional_includes: [../shared/utils.py, ../prompts]``): a node's ``source.path`` may
        name one by its name (``utils.py``, ``prompts/classify.jinja2``)."""
        if raw is None:
            return
        if not isinstance(raw, list):
            self.err("additional_includes", "", "must be a list of file or folder paths relative to the flow folder")
            return
        for i, item in enumerate(raw):
            target = (self.dir / str(item)).resolve() if isinstance(item, str) else None
            if target is None or not target.exists():  # a node that needs it is the error
                self.problems.append(Problem(f"additional_includes[{i}]", "", f"{item!r} not found (paths are "
                                             f"relative to {self.dir})", severity="warning"))
            else:
                self.includes.append(target)

    def source_file(self, path: str) -> str | None:
        """``path`` as a path from the flow folder to the file: the flow's own file, else the one an
        additional include brings in under that name; None when there is none."""
        if (self.dir / path).is_file():
            return path
        parts = Path(path).parts
        for inc in self.includes:
            found = (inc if inc.is_file() and path == inc.name
                     else inc.parent / path if inc.is_dir() and parts and parts[0] == inc.name else None)
            if found is not None and found.is_file():
                return Path(os.path.relpath(found, self.dir.resolve())).as_posix()
        return None

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
            path = self.source_file(source["path"])
            if path is None:
                path = source["path"]
                self.err(where, "source.path", f"file {path!r} not found in {self.dir}"
                         + (" or its additional_includes" if self.includes else ""))
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
