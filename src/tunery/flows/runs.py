"""Run storage: each batch run is a folder under ``TUNERY_HOME/runs/NAME`` indexed in the
``runs`` table.

    flow/               snapshot of the flow as it ran
    run.json            properties: flow, data, variant, mapping, parent, status, counts, timings
    lines.jsonl         journal, one record per line as it finishes (any order)
    details.jsonl       every line, in order: status, inputs, outputs, node runs, error, logs
    inputs.jsonl        per-line flow inputs      (written at the end, with line_number)
    outputs.jsonl       per-line flow outputs     (successful lines only, as Prompt flow)
    node_outputs/N.jsonl  per-line output of node N
    metrics.json        metrics logged by aggregation nodes
    logs.txt            warnings, errors with tracebacks, and what flow code printed

Files written at the end are written atomically; the journal is what survives a crash."""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunery import db
from tunery.errors import Conflict, InvalidInput, NotFound
from tunery.flows.executor import COMPLETED, AggregationResult, LineResult
from tunery.home import atomic_write_json, atomic_write_text, home

RUNNING, FAILED, CANCELED = "Running", "Failed", "Canceled"
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$")
_SNAPSHOT_IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".git", ".runs", ".promptflow", ".venv",
                                          "node_modules")


@dataclass
class RunRecord:
    id: str
    name: str
    flow: str
    status: str
    created_at: int
    finished_at: int | None
    path: Path
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def parent(self) -> str | None:
        return self.meta.get("run")

    @property
    def variant(self) -> str | None:
        return self.meta.get("variant")

    @property
    def metrics(self) -> dict[str, float]:
        return self.meta.get("metrics") or {}

    @property
    def snapshot(self) -> Path:
        return self.path / "flow"

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "flow": self.flow, "status": self.status,
                "created_at": self.created_at, "finished_at": self.finished_at, "path": str(self.path),
                **self.meta}


def _record(row) -> RunRecord:
    record = RunRecord(row["id"], row["name"], row["flow"], row["status"], row["created_at"], row["finished_at"],
                       Path(row["path"]), db.loads(row["meta"], {}))
    if record.status == RUNNING and not _alive(record.meta.get("pid")):
        _orphaned(record)
    return record


def _alive(pid: Any) -> bool:
    """Whether the process that runs a run still exists (a run with no ``pid`` is assumed to)."""
    if not isinstance(pid, int) or pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists, owned by another user
        return True
    return True


def _orphaned(record: RunRecord) -> None:
    """Mark a run whose process died mid-run Failed, so it does not stay Running for ever."""
    record.status, record.finished_at = FAILED, db.now()
    record.meta["error"] = record.meta.get("error") or "the process running it stopped before it finished"
    db.execute("UPDATE runs SET status=?, finished_at=?, meta=? WHERE id=? AND status=?",
               (FAILED, record.finished_at, db.dumps(record.meta), record.id, RUNNING))


def default_run_name(flow_name: str, variant: str | None) -> str:
    stamp = time.strftime("%Y%m%d_%H%M%S") + f"_{int(time.time() * 1e6) % 1_000_000:06d}"
    return f"{re.sub(r'[^A-Za-z0-9_]', '_', flow_name)}_{variant or 'default'}_{stamp}"


def get_run(name: str) -> RunRecord:
    rows = db.query("SELECT * FROM runs WHERE name=? OR id=?", (name, name))
    if not rows:
        raise NotFound(f"no run named {name!r}", param="name", hint="see `tunery run list`")
    return _record(rows[0])


def list_runs(limit: int | None = 50) -> list[RunRecord]:
    sql = "SELECT * FROM runs ORDER BY created_at DESC, rowid DESC" + (" LIMIT ?" if limit else "")
    return [_record(r) for r in db.query(sql, (limit,) if limit else ())]


def child_runs(name: str) -> list[RunRecord]:
    """Runs that graded ``name`` (their ``--run`` is it), newest first."""
    return [r for r in list_runs(None) if r.parent == name]


def load_details(run: RunRecord) -> list[dict[str, Any]]:
    """Every line record of a run, in line order (from the journal while it is still running)."""
    final = run.path / "details.jsonl"
    if final.exists():
        return _read_jsonl(final)
    journal = run.path / "lines.jsonl"
    return sorted(_read_jsonl(journal), key=lambda r: r["line_number"]) if journal.exists() else []


def load_metrics(run: RunRecord) -> dict[str, float]:
    path = run.path / "metrics.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else dict(run.metrics)


def read_logs(run: RunRecord) -> str:
    path = run.path / "logs.txt"
    return path.read_text(encoding="utf-8") if path.exists() else ""


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut short by a crash mid-write
                continue
    return out


class RunStore:
    """Writes one run while it executes; thread-safe."""

    def __init__(self, record: RunRecord) -> None:
        self.record = record
        self._lock = threading.Lock()

    @classmethod
    def create(cls, name: str, flow_dir: Path, meta: dict[str, Any], *, flow: str | None = None,
               includes: tuple[Path, ...] = ()) -> RunStore:
        """Create the run's folder (with a snapshot of ``flow_dir``, and the flow's ``includes``
        copied into it as Prompt flow copies ``additional_includes``, so that the snapshot runs on
        its own: a resumed run loads it) and its database row; ``flow`` is where the flow came
        from, as shown to users."""
        if not _NAME.match(name):
            raise InvalidInput(f"invalid run name {name!r}", param="name", hint="use letters, digits and _ . -")
        if db.query("SELECT 1 FROM runs WHERE name=?", (name,)):
            raise Conflict(f"a run named {name!r} already exists", param="name", hint="pick another --name")
        path = home().runs / name
        if path.exists():
            shutil.rmtree(path)  # left by a run whose database row was never written
        path.mkdir(parents=True)
        shutil.copytree(flow_dir, path / "flow", ignore=_SNAPSHOT_IGNORE)
        for inc in includes:  # the flow's own file of the same name comes first, as it does when loading
            target = path / "flow" / inc.name
            if inc.is_dir():
                shutil.copytree(inc, target, ignore=_SNAPSHOT_IGNORE, dirs_exist_ok=True)
            elif not target.exists():
                shutil.copy2(inc, target)
        meta = {**meta, "pid": os.getpid()}  # who runs it: see _orphaned
        record = RunRecord(f"run_{uuid.uuid4().hex[:16]}", name, flow or str(flow_dir), RUNNING,
                           db.now(), None, path, dict(meta))
        try:
            db.execute("INSERT INTO runs (id, name, flow, status, created_at, finished_at, path, meta) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (record.id, name, record.flow, RUNNING,
                                                           record.created_at, None, str(path), db.dumps(meta)))
        except db.sqlite3.IntegrityError as e:
            shutil.rmtree(path, ignore_errors=True)
            raise Conflict(f"a run named {name!r} already exists", param="name", hint="pick another --name") from e
        store = cls(record)
        store._write_properties()
        return store

    def _write_properties(self) -> None:
        atomic_write_json(self.record.path / "run.json", self.record.to_dict())

    def update(self, **meta: Any) -> None:
        with self._lock:
            self.record.meta.update(meta)
            db.execute("UPDATE runs SET meta=? WHERE id=?", (db.dumps(self.record.meta), self.record.id))
            self._write_properties()

    def append_line(self, line: LineResult) -> None:
        text = json.dumps(line.to_dict(), ensure_ascii=False, default=str) + "\n"
        with self._lock, (self.record.path / "lines.jsonl").open("a", encoding="utf-8") as f:
            f.write(text)

    def log(self, text: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with self._lock, (self.record.path / "logs.txt").open("a", encoding="utf-8") as f:
            for line in text.rstrip("\n").splitlines() or [""]:
                f.write(f"{stamp} {line}\n")

    def finish(self, status: str, lines: list[LineResult], aggregation: AggregationResult | None,
               **meta: Any) -> RunRecord:
        lines = sorted(lines, key=lambda ln: ln.line_number)
        path = self.record.path
        dump = lambda rows: "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows)  # noqa: E731
        records = [ln.to_dict() for ln in lines]  # values as JSON can carry them (executor.jsonable)
        atomic_write_text(path / "details.jsonl", dump(records))
        atomic_write_text(path / "inputs.jsonl", dump([{"line_number": r["line_number"], **r["inputs"]}
                                                       for r in records]))
        atomic_write_text(path / "outputs.jsonl", dump([{"line_number": r["line_number"], **r["outputs"]}
                                                        for r in records if r["status"] == COMPLETED]))
        nodes: dict[str, list[dict[str, Any]]] = {}
        for ln in lines:
            for name, nr in ln.nodes.items():
                nodes.setdefault(name, []).append({"line_number": ln.line_number, **nr.to_dict()})
        for name, nr in (aggregation.nodes.items() if aggregation else ()):
            nodes.setdefault(name, []).append({"line_number": None, **nr.to_dict()})
        for name, rows in nodes.items():
            atomic_write_text(path / "node_outputs" / f"{name}.jsonl", dump(rows))
        metrics = aggregation.metrics if aggregation else {}
        atomic_write_json(path / "metrics.json", metrics)
        failed = sum(ln.status != COMPLETED for ln in lines)
        usage = {"prompt_tokens": 0, "completion_tokens": 0}
        for ln in lines:
            for nr in ln.nodes.values():
                for k in usage:
                    usage[k] += (nr.usage or {}).get(k, 0)
        finished = db.now()
        with self._lock:
            self.record.meta.update(meta, metrics=metrics, total_lines=len(lines), completed_lines=len(lines) - failed,
                                    failed_lines=failed, usage=usage,
                                    duration=round(time.time() - self.record.meta.get("start_time", time.time()), 3))
            self.record.status, self.record.finished_at = status, finished
            db.execute("UPDATE runs SET status=?, finished_at=?, meta=? WHERE id=?",
                       (status, finished, db.dumps(self.record.meta), self.record.id))
            self._write_properties()
        return self.record
