"""The user's flows and the gallery they start from: the bundled example flows, cloned into
``TUNERY_HOME/flows/NAME``; a local folder opened in place (a link, its files stay where they
are); and the edits an editor makes: save a flow's yaml and files (validated first, as ``tunery
flow validate`` does, then written file by file atomically), and clone an llm node's variant.

A folder under ``TUNERY_HOME/flows`` is tunery's only if it holds :data:`MARKER`; only those are
listed and only those may be deleted (a linked folder's own files are never deleted).

Python a flow runs is code run by the server. The marker of a clone keeps the fingerprint
(:func:`code_fingerprint`) of the Python it was cloned with; a flow whose Python differs from it,
or a linked folder, runs *user code* (:func:`user_code`). The server lets only trusted clients
write or run such code (``allow_code``); the others may still edit prompts and run the rest."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from tunery import examples
from tunery.data.text import read_text
from tunery.errors import Conflict, InvalidInput, NotFound, TuneryError
from tunery.flows.connections import ModelFactory
from tunery.flows.dag import NO_DEFAULT, Flow, InvalidFlow
from tunery.flows.develop import test_flow, validate_flow
from tunery.flows.mapping import load_data
from tunery.flows.runs import _SNAPSHOT_IGNORE
from tunery.flows.spec import (
    FLOW_FILES,
    find_flow_file,
    flow_text,
    load_flow,
    read_flow_text,
    yaml_error,
)
from tunery.home import atomic_write_json, atomic_write_text, home

MARKER = ".tunery-flow.json"
EDITABLE = (".jinja2", ".jinja", ".j2", ".py", ".txt", ".md", ".yaml", ".yml", ".json")
MAX_FILE_CHARS = 200_000  # a flow's own text files; data files are shown by preview, not here
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}$")
_VARIANT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
MAX_COPY_BYTES = 50_000_000  # a flow is prompts and code; a linked folder may also hold weights or data
MAX_FILES = 500  # text files an editor is sent
MAX_INCLUDED_FILES = 5000  # files of one included folder that the code fingerprint reads
_SKIP_DIRS = ("__pycache__", "node_modules", "venv", "site-packages")


class CodeRefused(TuneryError):
    """A client that may not write or run user code tried to (see :func:`user_code`)."""

    status_code = 403


def flows_root() -> Path:
    return home().root / "flows"


@dataclass(frozen=True)
class FlowEntry:
    """A flow the studio knows: ``source`` is ``gallery``, ``clone`` or ``link``."""

    name: str
    dir: Path
    source: str
    origin: str | None = None  # the gallery flow it was cloned from, or the linked folder
    created_at: int | None = None
    code: str | None = None  # the fingerprint of the Python it was cloned with; None: untrusted


# ---- the gallery ---------------------------------------------------------------------------

def gallery() -> list[FlowEntry]:
    return [FlowEntry(p.parent.name, p.parent, "gallery") for p in sorted(examples.FLOWS.glob("*/flow.dag.yaml"))]


def gallery_flow(name: str) -> FlowEntry:
    for entry in gallery():
        if entry.name == name:
            return entry
    raise NotFound(f"no gallery flow {name!r}", param="name",
                   hint="gallery flows: " + ", ".join(e.name for e in gallery()))


def summary(entry: FlowEntry) -> dict[str, Any]:
    """Name, description (the file's leading comment), inputs, outputs and whether it is an
    evaluation flow (one with an aggregation node), read without running anything."""
    out: dict[str, Any] = {"name": entry.name, "source": entry.source, "origin": entry.origin,
                           "created_at": entry.created_at, "description": "", "inputs": [], "outputs": [],
                           "nodes": 0, "evaluation": False}
    try:
        file = find_flow_file(entry.dir)
        text = read_flow_text(file)
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        return {**out, "error": yaml_error(file, e)}
    except (OSError, TuneryError) as e:  # no flow file, or not UTF-8
        return {**out, "error": str(e)}
    if not isinstance(raw, dict):
        return {**out, "error": "flow.dag.yaml is not a mapping"}
    out["description"] = " ".join(ln.lstrip("#").strip() for ln in _leading_comment(text))
    # a file that validation would refuse (inputs: 5) is still listed, as far as it reads
    for name, spec in (raw.get("inputs") if isinstance(raw.get("inputs"), dict) else {}).items():
        spec = spec if isinstance(spec, dict) else {}
        out["inputs"].append({"name": name, "type": spec.get("type", "string"), "default": spec.get("default"),
                              "description": spec.get("description") or ""})
    for name, spec in (raw.get("outputs") if isinstance(raw.get("outputs"), dict) else {}).items():
        spec = spec if isinstance(spec, dict) else {}
        out["outputs"].append({"name": name, "reference": spec.get("reference")})
    nodes = raw.get("nodes") if isinstance(raw.get("nodes"), list) else []
    out["nodes"] = len(nodes)
    out["evaluation"] = any(isinstance(n, dict) and n.get("aggregation") for n in nodes)
    return out


def _leading_comment(text: str) -> list[str]:
    lines = []
    for ln in text.splitlines():
        if ln.startswith("$schema"):
            continue
        if not ln.startswith("#"):
            break
        lines.append(ln)
    return lines


# ---- the user's flows ----------------------------------------------------------------------

def _marker(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def list_flows() -> list[FlowEntry]:
    root = flows_root()
    if not root.is_dir():
        return []
    out = []
    for folder in sorted(root.iterdir()):  # a temporary folder (a dot name) is never a flow
        if _NAME.match(folder.name) and folder.is_dir() and (meta := _marker(folder)) is not None:
            out.append(_entry(folder, meta))
    return out


def _entry(folder: Path, meta: dict[str, Any]) -> FlowEntry:
    if meta.get("link"):
        return FlowEntry(folder.name, Path(meta["link"]), "link", meta["link"], meta.get("created_at"))
    return FlowEntry(folder.name, folder, "clone", meta.get("origin"), meta.get("created_at"), meta.get("code"))


def get_flow(name: str) -> FlowEntry:
    _check_name(name)
    folder = flows_root() / name
    meta = _marker(folder) if folder.is_dir() else None
    if meta is None:
        raise NotFound(f"no flow named {name!r}", param="name",
                       hint="clone one from the gallery or open a local folder")
    return _entry(folder, meta)


def resolve_flow(ref: str) -> FlowEntry:
    """``gallery:NAME`` for a bundled flow, else the user's flow ``NAME``."""
    if ref.startswith("gallery:"):
        return gallery_flow(ref.removeprefix("gallery:"))
    return get_flow(ref)


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise InvalidInput(f"invalid flow name {name!r}", param="name", hint="use letters, digits and _ . -")


def _free_name(base: str) -> str:
    base = re.sub(r"[^A-Za-z0-9_.\-]", "-", base)[:56] or "flow"
    taken = {p.name for p in flows_root().iterdir()} if flows_root().is_dir() else set()
    if base not in taken:
        return base
    return next(f"{base}-{i}" for i in range(2, 10_000) if f"{base}-{i}" not in taken)


def clone_gallery(gallery_name: str, name: str | None = None) -> FlowEntry:
    """Copy a gallery flow into ``TUNERY_HOME/flows`` (named after it, ``-2``... when taken)."""
    src = gallery_flow(gallery_name)
    return _copy_in(src.dir, name, origin=f"gallery:{gallery_name}", trusted=True)


def clone_flow(name: str, new_name: str | None = None) -> FlowEntry:
    """Copy one of the user's flows (a linked folder's files too) into a new tunery flow."""
    src = get_flow(name)
    find_flow_file(src.dir)  # a linked folder that is gone, or holds no flow any more, is named
    return _copy_in(src.dir, new_name or f"{name}-copy", origin=name, trusted=not user_code(src))


def _copy_in(src: Path, name: str | None, *, origin: str, trusted: bool) -> FlowEntry:
    """Copy ``src`` in; ``trusted``: its Python is not user code, so neither is the clone's."""
    if name is not None:
        _check_name(name)
        if (flows_root() / name).exists():
            raise _taken(name)
    final = flows_root() / (name or _free_name(src.name))
    flows_root().mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=flows_root()))
    try:
        _copy_flow(src, tmp)
        atomic_write_json(tmp / MARKER, {"created_by": "tunery", "origin": origin, "created_at": int(time.time()),
                                         "code": code_fingerprint(tmp) if trusted else None})
        try:
            tmp.rename(final)  # the folder appears whole, marker included, or not at all
        except OSError as e:  # another request took the name since it was checked
            raise _taken(final.name) from e
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return get_flow(final.name)


def _taken(name: str) -> Conflict:
    return Conflict(f"a flow named {name!r} already exists", param="name", hint="pick another name")


def _ignore(folder: str, names: list[str]) -> set[str]:
    """What a copy of a flow leaves out: caches, runs, .git, virtual environments, links (which
    may point anywhere) and the marker (a copy gets its own)."""
    skip = set(_SNAPSHOT_IGNORE(folder, names)) | {MARKER}
    for n in names:
        p = os.path.join(folder, n)
        if n in _SKIP_DIRS or os.path.islink(p) or os.path.isfile(os.path.join(p, "pyvenv.cfg")):
            skip.add(n)
    return skip


def _walk(folder: Path) -> Iterator[Path]:
    """The files of a flow folder that a copy keeps (:func:`_ignore`), dot folders left out too;
    lazily, so a caller can stop early in a big folder."""
    for d, dirs, files in os.walk(folder):
        skip = _ignore(d, dirs + files)
        dirs[:] = sorted(x for x in dirs if x not in skip and not x.startswith("."))
        yield from (Path(d) / f for f in sorted(files) if f not in skip)


def _copy_flow(src: Path, dst: Path, ignore: Any = None) -> None:
    """Copy a flow folder less :func:`_ignore` (and ``ignore``), refusing one over
    :data:`MAX_COPY_BYTES`: a linked folder may hold anything."""
    size = 0
    for p in _walk(src):
        size += p.stat().st_size if p.is_file() else 0
        if size > MAX_COPY_BYTES:
            raise InvalidInput(f"{src} holds over {MAX_COPY_BYTES / 1e6:.0f} MB; that is the most a flow folder "
                               "may hold", param="flow", hint="move data and model files out of the flow folder")

    def skip(folder: str, names: list[str]) -> set[str]:
        return _ignore(folder, names) | (set(ignore(folder, names)) if ignore else set())

    shutil.copytree(src, dst, dirs_exist_ok=True, ignore=skip)


def code_fingerprint(folder: Path) -> str:
    """A hash of the Python a flow would run: each python node's type, source and function, and
    the text of its source file and of every ``.py`` file in the folder (which is on ``sys.path``
    while the flow runs, so a node may import any of them) or lent to it by its
    ``additional_includes`` (importable as if in the folder; one not found is hashed as missing)."""
    h = hashlib.sha256()
    paths = {p.relative_to(folder).as_posix() for p in _walk(folder) if p.suffix == ".py"}
    try:
        raw = yaml.safe_load(find_flow_file(folder).read_text(encoding="utf-8"))
    except (OSError, NotFound, ValueError, yaml.YAMLError):
        raw = None
    nodes = list(raw.get("nodes") or []) if isinstance(raw, dict) and isinstance(raw.get("nodes"), list) else []
    variants = raw.get("node_variants") if isinstance(raw, dict) else None
    for spec in (variants.values() if isinstance(variants, dict) else ()):
        bodies = spec.get("variants") if isinstance(spec, dict) else None
        nodes += [v.get("node") for v in (bodies.values() if isinstance(bodies, dict) else ()) if isinstance(v, dict)]
    includes = raw.get("additional_includes") if isinstance(raw, dict) else None
    for item in includes if isinstance(includes, list) else ():
        target = folder / item if isinstance(item, str) else None
        if target is not None and target.is_dir():
            files = list(itertools.islice(_walk(target), MAX_INCLUDED_FILES + 1))
            if len(files) > MAX_INCLUDED_FILES:  # too many to check: never the same hash, so user code
                h.update(os.urandom(16))
            paths.update(Path(os.path.relpath(p, folder)).as_posix() for p in files if p.suffix == ".py")
        elif target is not None and (item.endswith(".py") or not target.exists()):
            paths.add(item)
    for node in nodes:
        if isinstance(node, dict) and node.get("type") not in ("llm", "prompt") and not node.get("use_variants"):
            code = {k: node.get(k) for k in ("name", "type", "source", "function", "module", "tool")}
            h.update(json.dumps(code, sort_keys=True, default=str).encode() + b"\n")
            path = (node.get("source") or {}).get("path") if isinstance(node.get("source"), dict) else None
            if isinstance(path, str):
                paths.add(path)
    for rel in sorted(paths):
        try:
            data = (folder / rel).read_bytes()
        except (OSError, ValueError):
            data = b"\0missing"
        h.update(rel.encode() + b"\0" + hashlib.sha256(data).digest())
    return h.hexdigest()


def user_code(entry: FlowEntry) -> bool:
    """Whether the flow runs Python that was not bundled with tunery: a linked folder's, or a
    clone's whose Python changed since it was cloned from the gallery."""
    if entry.source == "gallery":
        return False
    return entry.code is None or code_fingerprint(entry.dir) != entry.code


def check_code(entry: FlowEntry, allow_code: bool) -> None:
    """Raise :class:`CodeRefused` when a client that may not run user code asks to run it."""
    if not allow_code and user_code(entry):
        raise CodeRefused(f"flow {entry.name!r} runs Python written by a user; only a client on this machine may "
                          "run it", param="flow", code="flow_code_not_allowed",
                          hint="run it from this machine, or start the server with --allow-flow-code")


def open_folder(path: str | Path, name: str | None = None) -> FlowEntry:
    """Link a local flow folder (or its ``flow.dag.yaml``) under a name; its files are edited
    where they are. Only a folder holding a flow can be linked, and not the bundled gallery
    (whose flows must stay as shipped)."""
    if "\0" in str(path) or (name and "\0" in name):
        raise InvalidInput("a path cannot hold a NUL character", param="path")
    p = Path(path).expanduser()
    folder = (p.parent if p.name in FLOW_FILES else p).resolve()
    if not any((folder / f).is_file() for f in FLOW_FILES):
        raise NotFound(f"no flow.dag.yaml in {folder}", param="path",
                       hint="give a folder holding a Prompt flow flow.dag.yaml")
    shipped = Path(examples.FLOWS).resolve()
    if folder == shipped or shipped in folder.parents or folder in shipped.parents:
        raise InvalidInput(f"{folder} is tunery's own gallery", param="path",
                           hint="clone the gallery flow instead (POST /v1/tunery/flows {\"gallery\": NAME})")
    final = flows_root() / (name or _free_name(folder.name))
    _check_name(final.name)
    if final.exists():
        raise _taken(final.name)
    flows_root().mkdir(parents=True, exist_ok=True)
    try:
        final.mkdir()
    except FileExistsError as e:
        raise _taken(final.name) from e
    atomic_write_json(final / MARKER, {"created_by": "tunery", "link": str(folder), "created_at": int(time.time())})
    return get_flow(final.name)


def delete_flow(name: str) -> FlowEntry:
    """Remove a cloned flow's folder, or only the link to an opened one."""
    entry = get_flow(name)
    shutil.rmtree(flows_root() / name)
    return entry


# ---- reading and saving --------------------------------------------------------------------

def read_flow(entry: FlowEntry) -> dict[str, Any]:
    """What an editor needs: the parsed yaml, the text of every editable file, every problem
    ``tunery flow validate`` reports, and each node's resolved variants."""
    report = validate_flow(entry.dir)
    text = read_flow_text(report.file)
    try:
        dag = yaml.safe_load(text)
    except yaml.YAMLError:
        dag = None
    return {**summary(entry), "dag": dag, "dag_text": text, "dag_file": report.file.name,
            "files": _files(entry.dir, report.file.name), "ok": report.ok,
            "problems": [p.to_dict() for p in report.problems],
            "graph": graph(report.flow) if report.flow else None}


def _files(folder: Path, dag_name: str) -> dict[str, str]:
    out = {}
    for p in _walk(folder):
        rel = p.relative_to(folder).as_posix()
        if (not p.is_file() or p.suffix not in EDITABLE or rel == dag_name or p.name.startswith(".")
                or p.stat().st_size > MAX_FILE_CHARS):
            continue
        out[rel] = p.read_text(encoding="utf-8", errors="replace")
        if len(out) >= MAX_FILES:
            break
    return out


def graph(flow: Flow) -> dict[str, Any]:
    """Nodes (with their references) laid out by level: a node's level is one more than the
    highest level of what it reads (flow inputs are level 0)."""
    level: dict[str, int] = {}
    by_name = {n.name: n for n in flow.nodes}

    def depth(name: str, seen: frozenset[str] = frozenset()) -> int:
        if name in level:
            return level[name]
        if name in seen or name not in by_name:  # a cycle or unknown node: validation reports it
            return 1
        deps = by_name[name].depends_on
        level[name] = 1 + max((depth(d, seen | {name}) for d in deps), default=0)
        return level[name]

    nodes = []
    for n in flow.nodes:
        nv = flow.node_variants.get(n.name)
        nodes.append({"name": n.name, "type": n.type, "source": n.source, "level": depth(n.name),
                      "aggregation": n.aggregation, "connection": n.connection, "api": n.api,
                      "inputs": {k: str(v) for k, v in n.inputs.items()},
                      "references": [{"field": f, "from": r.node or "inputs", "text": str(r)} for f, r in n.references],
                      "variants": {vid: {"source": v.source, "inputs": {k: str(x) for k, x in v.inputs.items()},
                                         "connection": v.connection}
                                   for vid, v in nv.variants.items()} if nv else None,
                      "default_variant": nv.default_id if nv else None})
    inputs = [{"name": i.name, "type": i.type, "default": None if i.default is NO_DEFAULT else i.default}
              for i in flow.inputs.values()]
    outputs = [{"name": o.name, "from": o.reference.node or "inputs", "text": str(o.reference)}
               for o in flow.outputs.values()]
    return {"inputs": inputs, "outputs": outputs, "nodes": nodes,
            "levels": 1 + max((n["level"] for n in nodes), default=0)}


def save_flow(entry: FlowEntry, *, dag: dict[str, Any] | None = None, files: dict[str, str] | None = None,
              dry_run: bool = False, allow_code: bool = True) -> dict[str, Any]:
    """Write the yaml (``dag``, a parsed mapping) and ``files`` (relative path -> text) into the
    flow, after validating the result in a scratch copy: a flow with errors raises
    :class:`InvalidFlow` and nothing is written. A yaml equal to the file's (parsed) keeps the
    file's text; a changed one is written over it, its comments and layout kept (:func:`flow_text`). Without
    ``allow_code``, a save that changes the flow's Python raises :class:`CodeRefused`."""
    if entry.source == "gallery":
        raise InvalidInput("gallery flows are read-only", param="name", hint="clone it into your flows first")
    file = find_flow_file(entry.dir)
    writes = {_safe_rel(k): v for k, v in (files or {}).items()}
    if file.name in writes or any(k in FLOW_FILES for k in writes):
        raise InvalidInput("send flow.dag.yaml as dag, not among files", param="files")
    for rel in writes:  # each file needs a place: not a folder, under no file (of the flow's or of this save)
        if (entry.dir / rel).is_dir():
            raise InvalidInput(f"{rel!r} is a folder in the flow, not a file", param="files")
        for parent in list(PurePosixPath(rel).parents)[:-1]:
            if parent.as_posix() in writes or (entry.dir / parent).is_file():
                raise InvalidInput(f"{rel!r}: {parent.as_posix()!r} is a file, not a folder", param="files")
    if dag is not None:
        if not isinstance(dag, dict):
            raise InvalidInput("dag must be a mapping with inputs, outputs and nodes", param="dag")
        current = read_flow_text(file)
        try:
            same = yaml.safe_load(current) == dag
        except yaml.YAMLError:
            same = False
        if not same:
            writes[file.name] = flow_text(current, dag)
    scratch = Path(tempfile.mkdtemp(prefix="tunery-flow-check-"))  # outside flows/: never listed as a flow
    try:
        _copy_flow(entry.dir, scratch, shutil.ignore_patterns("*.jsonl", "*.csv", "*.tsv"))
        before = code_fingerprint(scratch)
        for rel, text in writes.items():
            (scratch / rel).parent.mkdir(parents=True, exist_ok=True)
            (scratch / rel).write_text(text, encoding="utf-8")
        if not allow_code and (any(rel.endswith(".py") for rel in writes) or code_fingerprint(scratch) != before):
            raise CodeRefused("this save changes the flow's Python; only a client on this machine may write code",
                              param="files", code="flow_code_not_allowed",
                              hint="edit prompts here, Python from this machine, or start the server with "
                                   "--allow-flow-code")
        report = validate_flow(scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if not report.ok:
        raise InvalidFlow(entry.dir / file.name, report.problems)
    if not dry_run:  # each file atomically, the flow file last (added last): it never names a file not yet there
        for rel, text in writes.items():
            atomic_write_text(entry.dir / rel, text)
    return {"written": sorted(writes) if not dry_run else [], "problems": [p.to_dict() for p in report.problems]}


def _safe_rel(path: str) -> str:
    p = PurePosixPath(path)
    if "\0" in path or "\\" in path or p.is_absolute() or not p.parts or ".." in p.parts or any(x.startswith(".") for x in p.parts):
        raise InvalidInput(f"{path!r} is not a file inside the flow folder", param="files")
    if p.suffix not in EDITABLE:
        raise InvalidInput(f"{path!r}: only text files ({', '.join(EDITABLE)}) can be written", param="files")
    return p.as_posix()


def clone_variant(entry: FlowEntry, node: str, source: str | None = None, new_id: str | None = None) -> str:
    """Add a variant of llm node ``node`` copied from ``source`` (default: its default variant),
    with its own copy of the prompt file (``PROMPT__ID.jinja2``) so it can be edited apart. A
    node without variants gets them: its definition becomes ``variant_0``. Returns the new id."""
    file = find_flow_file(entry.dir)
    try:
        dag = yaml.safe_load(read_flow_text(file))
    except yaml.YAMLError as e:
        raise InvalidInput(yaml_error(file.name, e), param="dag", hint="fix the file first") from e
    nodes = dag.get("nodes") if isinstance(dag, dict) else None
    if not isinstance(nodes, list) or not isinstance(dag.get("node_variants") or {}, dict):
        raise InvalidInput(f"{file.name} is not a flow (a mapping with a list of nodes)", param="dag",
                           hint="fix the file first")
    item = next((n for n in nodes if isinstance(n, dict) and n.get("name") == node), None)
    if item is None:
        raise NotFound(f"flow {entry.name} has no node {node!r}", param="node")
    variants = dag.setdefault("node_variants", {}) or {}
    dag["node_variants"] = variants
    if not item.get("use_variants"):
        if item.get("type") != "llm":
            raise InvalidInput(f"node {node!r} is a {item.get('type')} node; only llm nodes have variants",
                               param="node")
        body = {k: v for k, v in item.items() if k != "name"}
        item.clear()
        item.update({"name": node, "use_variants": True})
        variants[node] = {"default_variant_id": "variant_0", "variants": {"variant_0": {"node": body}}}
    spec = variants.get(node)
    if not isinstance(spec, dict) or not isinstance(spec.get("variants"), dict) or not spec["variants"]:
        raise InvalidInput(f"node {node!r} uses variants but node_variants has none for it", param="node",
                           hint="fix node_variants in flow.dag.yaml first")
    source = source or spec.get("default_variant_id") or next(iter(spec["variants"]))
    if source not in spec["variants"]:
        raise NotFound(f"node {node!r} has no variant {source!r}", param="variant",
                       hint="its variants: " + ", ".join(spec["variants"]))
    if new_id is None:
        new_id = next(f"variant_{i}" for i in range(1, 1000) if f"variant_{i}" not in spec["variants"])
    elif not _VARIANT.match(new_id) or new_id in spec["variants"]:
        raise InvalidInput(f"variant id {new_id!r} is taken or not a name", param="variant_id",
                           hint="use letters, digits and _, e.g. variant_2")
    body = spec["variants"][source].get("node") if isinstance(spec["variants"][source], dict) else None
    if not isinstance(body, dict):
        raise InvalidInput(f"variant {source!r} of node {node!r} has no node mapping", param="variant")
    body = json.loads(json.dumps(body))  # a deep copy
    path = body["source"].get("path") if isinstance(body.get("source"), dict) else None
    files = {}
    if isinstance(path, str) and (entry.dir / path).is_file():
        stem = re.sub(r"__variant_\w+$", "", PurePosixPath(path).stem)
        new_path = str(PurePosixPath(path).with_name(f"{stem}__{new_id}{PurePosixPath(path).suffix}"))
        files[new_path] = read_text(entry.dir / path, param="variant")  # one not UTF-8 is named, at its line
        body["source"]["path"] = new_path
    spec["variants"][new_id] = {"node": body}
    save_flow(entry, dag=dag, files=files)
    return new_id


# ---- trying variants -----------------------------------------------------------------------

def test_variants(entry: FlowEntry, inputs: dict[str, Any], *, node: str | None = None,
                  variants: list[str] | None = None, default_model: str | None = None,
                  model_factory: ModelFactory | None = None) -> list[dict[str, Any]]:
    """Run one line once per variant of llm node ``node`` (all of them when ``variants`` is
    None; the flow as it is without ``node``): every node's output, timing and tokens, per variant."""
    flow = load_flow(entry.dir)
    if node is None:
        chosen: list[str | None] = [None]
    else:
        nv = flow.node_variants.get(node)
        if nv is None:
            raise NotFound(f"flow {entry.name} has no node {node!r} with variants", param="node",
                           hint="leave node out to run the flow as it is, or clone a variant of an llm node")
        ids = list(nv.variants)
        chosen = list(variants or ids)
        for vid in chosen:
            flow.variant_node(node, vid or "", node_param="node")
    out = []
    for vid in chosen:
        selector = f"${{{node}.{vid}}}" if node and vid else None
        result = test_flow(entry.dir, inputs, variant=selector, model_factory=model_factory,
                           default_model=default_model)
        usage = {"prompt_tokens": 0, "completion_tokens": 0}
        for nr in result.line.nodes.values():
            for k in usage:
                usage[k] += (nr.usage or {}).get(k, 0)
        out.append({"variant": vid, "duration": result.line.duration, "usage": usage, **result.to_dict()})
    return out


test_variants.__test__ = False  # type: ignore[attr-defined]  # not a pytest test, despite the name


# ---- data for batch runs -------------------------------------------------------------------

def data_root() -> Path:
    return home().root / "flow-data"


def data_sources() -> list[dict[str, Any]]:
    """Data a batch run can pick: uploads (``upload:NAME``), the gallery flows' own data
    (``gallery:FLOW/FILE``) and the user's flows' (``flow:FLOW/FILE``)."""
    out = []
    if data_root().is_dir():
        out += [{"id": f"upload:{p.name}", "name": p.name, "kind": "upload"} for p in sorted(data_root().iterdir())
                if p.suffix in DATA_TYPES]
    for entry in gallery():
        out += [{"id": f"gallery:{entry.name}/{p.name}", "name": f"{entry.name}/{p.name}", "kind": "gallery"}
                for p in sorted(entry.dir.iterdir()) if p.suffix in DATA_TYPES]
    for entry in list_flows():
        if entry.dir.is_dir():
            out += [{"id": f"flow:{entry.name}/{p.name}", "name": f"{entry.name}/{p.name}", "kind": "flow"}
                    for p in sorted(entry.dir.iterdir()) if p.suffix in DATA_TYPES]
    return out


DATA_TYPES = (".jsonl", ".csv", ".tsv")


def save_data(name: str, content: str) -> dict[str, Any]:
    """Store uploaded data (JSONL, CSV or TSV text) checked as a run would read it."""
    if not _NAME.match(name) or Path(name).suffix not in DATA_TYPES:
        raise InvalidInput(f"invalid data file name {name!r}", param="name",
                           hint="a name such as data.jsonl (or .csv, .tsv), letters, digits and _ . -")
    final = data_root() / name
    data_root().mkdir(parents=True, exist_ok=True)
    # checked under its own name, in a folder of its own beside its final place, so that a problem
    # names the file the user sent (not a temporary name) and the rename into place is atomic
    scratch = Path(tempfile.mkdtemp(prefix=".check-", dir=data_root()))
    tmp = scratch / name
    try:
        tmp.write_text(content, encoding="utf-8")
        load_data(tmp)  # raises naming the bad line
        tmp.replace(final)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {"id": f"upload:{name}", "name": name, "kind": "upload"}


def data_path(data_id: str) -> Path:
    kind, _, rest = data_id.partition(":")
    folder, _, file = rest.rpartition("/")
    if kind == "upload" and not folder:
        path = data_root() / file
    elif kind == "gallery" and folder:
        path = gallery_flow(folder).dir / file
    elif kind == "flow" and folder:
        path = get_flow(folder).dir / file
    else:
        raise InvalidInput(f"unknown data {data_id!r}", param="data",
                           hint="upload:NAME, gallery:FLOW/FILE or flow:FLOW/FILE")
    if Path(file).name != file or Path(file).suffix not in DATA_TYPES or not path.is_file():
        raise NotFound(f"no data {data_id!r}", param="data", hint="see GET /v1/tunery/flow-data")
    return path


def preview(data_id: str, rows: int = 5) -> dict[str, Any]:
    data = load_data(data_path(data_id))
    columns = list(dict.fromkeys(c for row in data for c in row))
    return {"id": data_id, "columns": columns, "rows": data[:rows], "total": len(data)}
