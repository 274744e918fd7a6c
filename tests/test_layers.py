"""The layer map of src/tunery, enforced: no module imports a higher layer, no modules import each
other in a cycle, and each table of the state database is read and written by its owner only.

Every import counts: module level, inside functions, under ``if TYPE_CHECKING``, relative ones, and
``importlib.import_module("tunery...")`` with a literal name. The map below is the one place the
layers are written down (docs/architecture.md describes them in words).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# Lowest first. A module may import its own layer and any lower one. A top-level module or package
# not listed here fails the test, so a new one has to be given its place.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("core", ("tunery", "tunery.errors", "tunery.progress", "tunery.home", "tunery.db",
              "tunery.chat", "tunery.chat_template", "tunery.runtime", "tunery.examples")),
    ("models", ("tunery.models",)),
    ("data", ("tunery.data",)),
    ("training", ("tunery.training",)),
    ("compiled", ("tunery.compiled",)),
    ("jobs", ("tunery.jobs",)),
    ("serving", ("tunery.serving",)),
    ("flows", ("tunery.flows",)),
    ("evals", ("tunery.evals",)),
    ("export", ("tunery.export",)),
    ("quickstart", ("tunery.quickstart",)),
    # The edges import anything; nothing else imports them (they are the top layer).
    ("edges", ("tunery.server", "tunery.cli")),
]

# Folders of the package whose .py files are not modules of tunery (the example flows' own scripts).
NOT_CODE = ("examples/flows",)

# Each table (or view) of the state database and the one package whose SQL may name it; tunery.db,
# which creates them all, is the only other module that does.
TABLES = {
    "models": "tunery.models", "model_checkpoints": "tunery.models", "model_uses": "tunery.models",
    "files": "tunery.data", "file_uses": "tunery.data", "deleted_files": "tunery.data",
    "jobs": "tunery.jobs", "job_events": "tunery.jobs", "checkpoints": "tunery.jobs",
    "deployments": "tunery.serving", "runs": "tunery.flows", "schema_migrations": "tunery.db",
}
SCHEMA = "tunery.db"
_SQL_TABLE = re.compile(r"\b(?:FROM|INTO|UPDATE|JOIN|TABLE|VIEW)\s+([a-z_]+)\b")


@dataclass(frozen=True)
class Import:
    importer: str
    target: str
    path: Path
    line: int


def modules(root: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of ``root / package``."""
    found = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if any(path.relative_to(root / package).as_posix().startswith(folder + "/") for folder in NOT_CODE):
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """The longest known module that ``name`` is or lies in (an attribute of a module -> the module)."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def imports(root: Path, package: str) -> list[Import]:
    """Every import between modules of ``package``, wherever it is written in the file."""
    known = modules(root, package)
    found = []
    for importer, path in known.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    # A relative import counts from the importer's package (the module itself when
                    # it is a package's __init__), one package up per extra dot.
                    base = importer.split(".") if is_package else importer.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    mod = ".".join(base + ([node.module] if node.module else []))
                else:
                    mod = node.module or ""
                # ``from pkg import sub`` imports the submodule ``pkg.sub`` when there is one.
                names = [f"{mod}.{a.name}" for a in node.names] or [mod]
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                  and node.func.attr == "import_module" and node.args
                  and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
                names = [node.args[0].value]
            for name in names:
                if name.split(".")[0] != package:
                    continue
                target = _resolve(name, known)
                if target is not None and target != importer:
                    found.append(Import(importer, target, path, node.lineno))
    return found


def layer_of(module: str, layers: list[tuple[str, tuple[str, ...]]]) -> int | None:
    """Index of the layer ``module`` belongs to: an exact entry, or the package it lies in."""
    for index, (_, members) in enumerate(layers):
        for member in members:
            if module == member or (member.count(".") and module.startswith(member + ".")):
                return index
    return None


def unmapped(root: Path, package: str, layers=LAYERS) -> list[str]:
    return sorted(m for m in modules(root, package) if layer_of(m, layers) is None)


def upward_imports(root: Path, package: str, layers=LAYERS) -> list[str]:
    """One line per import of a higher layer: file:line, the two modules and their layers."""
    problems = []
    for imp in imports(root, package):
        low, high = layer_of(imp.importer, layers), layer_of(imp.target, layers)
        if low is not None and high is not None and high > low:
            problems.append(f"{imp.path.relative_to(root)}:{imp.line}: {imp.importer} "
                            f"({layers[low][0]}) imports {imp.target} ({layers[high][0]})")
    return problems


def foreign_tables(root: Path, package: str, tables: dict[str, str] = TABLES,
                   schema: str = SCHEMA) -> list[str]:
    """One line per SQL string naming a table its module's package does not own (or an unknown one)."""
    problems = []
    for module, path in modules(root, package).items():
        if module == schema:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
                continue
            for table in _SQL_TABLE.findall(node.value):
                owner = tables.get(table)
                if owner is None:
                    problems.append(f"{path.relative_to(root)}:{node.lineno}: {module} uses table {table!r}, "
                                    "which TABLES does not list")
                elif module != owner and not module.startswith(owner + "."):
                    problems.append(f"{path.relative_to(root)}:{node.lineno}: {module} uses table {table!r} "
                                    f"of {owner}; call a function of {owner} instead")
    return problems


def cycles(root: Path, package: str) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    graph: dict[str, set[str]] = {m: set() for m in modules(root, package)}
    for imp in imports(root, package):
        graph[imp.importer].add(imp.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        # Recursion depth is bounded by the module count (a few hundred), well under the limit.
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(components)


def _cycle_lines(root: Path, package: str) -> list[str]:
    """Each cycle with the imports that make it, so the message says which line to cut."""
    edges = imports(root, package)
    lines = []
    for component in cycles(root, package):
        members = set(component)
        inside = sorted({f"{e.path.relative_to(root)}:{e.line}: {e.importer} -> {e.target}"
                         for e in edges if e.importer in members and e.target in members})
        lines.append(" <-> ".join(component) + "\n    " + "\n    ".join(inside))
    return lines


# ---------------------------------------------------------------- the real tree


def test_every_module_has_a_layer():
    assert unmapped(SRC, "tunery") == []


def test_no_module_imports_a_higher_layer():
    problems = upward_imports(SRC, "tunery")
    assert not problems, "imports of a higher layer:\n" + "\n".join(problems)


def test_each_table_is_used_by_its_owner_only():
    problems = foreign_tables(SRC, "tunery")
    assert not problems, "SQL on another package's tables:\n" + "\n".join(problems)


def test_no_import_cycles():
    found = _cycle_lines(SRC, "tunery")
    assert not found, "import cycles:\n" + "\n".join(found)


# ---------------------------------------------------------------- the checker itself


def _package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


TOY_LAYERS = [("core", ("toy", "toy.base")), ("low", ("toy.low",)), ("high", ("toy.high",))]


@pytest.fixture
def toy(tmp_path: Path) -> Path:
    return _package(tmp_path, {
        "toy/__init__.py": "",
        "toy/base.py": "import os\n",
        "toy/low/__init__.py": "from toy.low.a import f\n",
        "toy/low/a.py": "from toy import base\n\ndef f():\n    from . import b\n",
        "toy/low/b.py": "",
        "toy/high/__init__.py": "",
        "toy/high/x.py": "from ..low import a\nfrom toy.low.b import *\n",
        "toy/examples/flows/tool.py": "import toy.high.x\n",
    })


def test_checker_passes_a_clean_package(toy: Path):
    assert unmapped(toy, "toy", TOY_LAYERS) == []
    assert upward_imports(toy, "toy", TOY_LAYERS) == []
    assert cycles(toy, "toy") == []
    # Relative imports and ``from pkg import submodule`` resolve to the submodule.
    edges = {(i.importer, i.target) for i in imports(toy, "toy")}
    assert {("toy.low.a", "toy.base"), ("toy.low.a", "toy.low.b"),
            ("toy.high.x", "toy.low.a"), ("toy.high.x", "toy.low.b")} <= edges


@pytest.mark.parametrize("where", [
    "import toy.high.x\n",
    "def f():\n    from toy.high import x\n",
    "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..high.x import y\n",
    "import importlib\nmod = importlib.import_module('toy.high')\n",
])
def test_checker_names_an_upward_import(toy: Path, where: str):
    (toy / "toy/low/b.py").write_text("\n" + where)
    problems = upward_imports(toy, "toy", TOY_LAYERS)
    assert len(problems) == 1
    assert problems[0].startswith("toy/low/b.py:")
    assert "toy.low.b (low) imports toy.high" in problems[0] and "(high)" in problems[0]


def test_checker_finds_a_cycle_through_a_function_level_import(toy: Path):
    (toy / "toy/low/b.py").write_text("def g():\n    from toy.low import a\n")
    assert cycles(toy, "toy") == [["toy.low.a", "toy.low.b"]]
    assert "toy/low/b.py:2: toy.low.b -> toy.low.a" in _cycle_lines(toy, "toy")[0]


def test_checker_finds_a_three_module_cycle(toy: Path):
    (toy / "toy/base.py").write_text("import toy.low.b\n")
    (toy / "toy/low/b.py").write_text("from toy.high import x\n")
    (toy / "toy/high/x.py").write_text("from toy import base\n")
    assert cycles(toy, "toy") == [["toy.base", "toy.high.x", "toy.low.b"]]


def test_checker_names_sql_on_a_foreign_table(toy: Path):
    tables = {"things": "toy.low", "other": "toy.high"}
    (toy / "toy/low/b.py").write_text('SQL = "SELECT * FROM things"\n')
    assert foreign_tables(toy, "toy", tables, "toy.base") == []
    (toy / "toy/low/b.py").write_text('def f(x):\n    return f"DELETE FROM other WHERE id={x}"\n')
    assert foreign_tables(toy, "toy", tables, "toy.base") == [
        "toy/low/b.py:2: toy.low.b uses table 'other' of toy.high; call a function of toy.high instead"]
    (toy / "toy/base.py").write_text('SCHEMA = "CREATE TABLE other (x); CREATE TABLE things (y)"\n')
    (toy / "toy/low/b.py").write_text('SQL = "UPDATE nowhere SET x=1"\n')
    assert foreign_tables(toy, "toy", tables, "toy.base") == [
        "toy/low/b.py:1: toy.low.b uses table 'nowhere', which TABLES does not list"]


def test_checker_names_an_unmapped_module(toy: Path):
    (toy / "toy/extra.py").write_text("")
    assert unmapped(toy, "toy", TOY_LAYERS) == ["toy.extra"]
