"""Comparing runs line by line: :func:`compare_runs` gathers the data (JSON-able, for the studio's
"Runs" page too) and :func:`render_html` turns it into one self-contained page (inline CSS and
script, no CDN): the runs' metrics at the top, then each line's inputs, every run's outputs side by
side (one column per run, i.e. per variant) and the grades of the runs that evaluated them, with
differences highlighted."""

from __future__ import annotations

import contextlib
import html
import json
import re
import time
import webbrowser
from pathlib import Path
from typing import Any

from tunery.errors import InvalidInput
from tunery.flows.runs import RunRecord, child_runs, get_run, load_details, load_metrics
from tunery.home import atomic_write_text, home


def _evaluations(run: RunRecord) -> list[RunRecord]:
    """The newest finished evaluation run of each evaluation flow that graded ``run``."""
    latest: dict[str, RunRecord] = {}
    for child in child_runs(run.name):
        key = child.meta.get("flow_name") or child.flow
        if child.status != "Running" and key not in latest:
            latest[key] = child
    return list(latest.values())


def _same(values: list[Any]) -> bool:
    dumped = {json.dumps(v, sort_keys=True, default=str) for v in values}
    return len(dumped) <= 1


def compare_runs(names: list[str]) -> dict[str, Any]:
    """Everything the comparison shows, as plain data."""
    if not names:
        raise InvalidInput("name at least one run", param="name", hint="e.g. tunery run visualize -n RUN1,RUN2")
    runs = [get_run(n) for n in names]
    summaries, details, grades = [], {}, {}
    for r in runs:
        details[r.name] = {d["line_number"]: d for d in load_details(r)}
        evals = _evaluations(r)
        metrics = dict(load_metrics(r))
        for e in evals:
            for k, v in load_metrics(e).items():
                metrics[k if k not in metrics else f"{e.meta.get('flow_name') or e.name}.{k}"] = v
        grades[r.name] = {}
        for e in evals:
            for d in load_details(e):
                if d.get("status") == "Completed":
                    grades[r.name].setdefault(d["line_number"], {}).update(d.get("outputs") or {})
        summaries.append({"name": r.name, "display_name": r.meta.get("display_name") or r.name, "flow": r.flow,
                          "flow_name": r.meta.get("flow_name"), "variant": r.variant,
                          "variants": r.meta.get("variants") or {}, "status": r.status,
                          "total_lines": r.meta.get("total_lines"), "failed_lines": r.meta.get("failed_lines"),
                          "metrics": metrics, "evaluations": [{"name": e.name, "flow_name": e.meta.get("flow_name"),
                                                               "metrics": load_metrics(e)} for e in evals]})
    metric_names = sorted({m for s in summaries for m in s["metrics"]})
    metric_rows = []
    for m in metric_names:
        values = {s["name"]: s["metrics"].get(m) for s in summaries}
        present = [v for v in values.values() if v is not None]
        metric_rows.append({"name": m, "values": values, "differs": not _same(present) or len(present) != len(values),
                            "best": max(present) if present else None})
    numbers = sorted({n for d in details.values() for n in d})
    output_names: list[str] = []
    grade_names: list[str] = []
    lines = []
    for n in numbers:
        first = next(d[n] for d in details.values() if n in d)
        cells = {}
        for r in runs:
            d = details[r.name].get(n)
            g = grades[r.name].get(n, {})
            for k in (d or {}).get("outputs") or {}:
                if k not in output_names:
                    output_names.append(k)
            for k in g:
                if k not in grade_names:
                    grade_names.append(k)
            cells[r.name] = {"status": d["status"] if d else "Missing", "outputs": (d or {}).get("outputs") or {},
                             "error": ((d or {}).get("error") or {}).get("message"), "grades": g,
                             "duration": (d or {}).get("duration")}
        outs = [c["outputs"] for c in cells.values()]
        gs = [c["grades"] for c in cells.values()]
        lines.append({"line_number": n, "inputs": first.get("inputs") or {}, "runs": cells,
                      "outputs_differ": not _same(outs), "grades_differ": not _same(gs),
                      "inputs_differ": not _same([d[n].get("inputs") for d in details.values() if n in d])})
    return {"runs": summaries, "metrics": metric_rows, "lines": lines, "output_names": output_names,
            "grade_names": grade_names, "generated_at": int(time.time())}


def _fmt(value: Any) -> str:
    if value is None:
        return '<span class="none">None</span>'
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, indent=1, default=str)
    return f'<div class="val">{html.escape(text)}</div>'


def _num(value: Any) -> str:
    return "" if value is None else (f"{value:.4g}" if isinstance(value, float) else html.escape(str(value)))


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,sans-serif;margin:24px;color:#1d2330;background:#fafbfc}
h1{font-size:20px;margin:0 0 4px}h2{font-size:16px;margin:28px 0 8px}.sub{color:#667}
table{border-collapse:collapse;background:#fff;box-shadow:0 1px 2px #0001;width:100%}
th,td{border:1px solid #e2e5ea;padding:6px 8px;vertical-align:top;text-align:left}
th{background:#f1f3f6;font-weight:600;position:sticky;top:0}
.val{white-space:pre-wrap;max-height:14em;overflow:auto;font-family:ui-monospace,Menlo,monospace;font-size:12.5px}
.none{color:#99a}.k{color:#556;font-size:12px;font-weight:600}
tr.diff td.out{background:#fff7e0}td.best{font-weight:700;color:#0a6b2d}tr.mdiff td{background:#fff7e0}
.failed{color:#b3261e}td.inputs{width:34%}.grade{display:inline-block;white-space:nowrap;border-radius:10px;padding:0 8px;margin:2px 4px 2px 0;
font-size:12px;background:#eef}.g-Correct,.g-correct,.g-True,.g-true{background:#dff3e4;color:#0a6b2d}
.g-Incorrect,.g-incorrect,.g-False,.g-false{background:#fde2e0;color:#b3261e}
.controls{margin:8px 0}label{cursor:pointer}.tag{font-size:12px;color:#556}
"""

_JS = """
document.getElementById('only-diff').addEventListener('change', function(e){
  document.querySelectorAll('tr.line').forEach(function(tr){
    tr.style.display = (e.target.checked && !tr.classList.contains('diff')) ? 'none' : '';});});
"""


def render_html(data: dict[str, Any]) -> str:
    """One self-contained HTML page from :func:`compare_runs` data."""
    runs = data["runs"]
    esc = html.escape
    def tag(r: dict[str, Any]) -> str:
        chosen = ", ".join(f"{node}: {vid}" for node, vid in (r.get("variants") or {}).items())
        return esc(r.get("flow_name") or "") + (f" · {esc(chosen)}" if chosen else "")

    head = "".join(f"<th>{esc(r['display_name'])}<div class='tag'>{tag(r)}</div></th>" for r in runs)
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>tunery runs: "
             f"{esc(', '.join(r['name'] for r in runs))}</title><style>{_CSS}</style></head><body>",
             f"<h1>Run comparison</h1><div class='sub'>{len(runs)} run(s), {len(data['lines'])} line(s); generated "
             f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(data['generated_at']))} by tunery</div>",
             "<h2>Metrics</h2>"]
    if data["metrics"]:
        parts.append(f"<table><tr><th>metric</th>{head}</tr>")
        for m in data["metrics"]:
            cells = "".join(
                f"<td class='{'best' if m['differs'] and v is not None and v == m['best'] else ''}'>{_num(v)}</td>"
                for v in (m["values"].get(r["name"]) for r in runs))
            parts.append(f"<tr class='{'mdiff' if m['differs'] else ''}'><td>{esc(m['name'])}</td>{cells}</tr>")
        parts.append("</table>")
    else:
        parts.append("<p class='sub'>No metrics: evaluate a run with an evaluation flow "
                     "(<code>tunery run create --flow EVAL --run RUN ...</code>).</p>")
    parts.append(f"<h2>Runs</h2><table><tr><th></th>{head}</tr>")
    for label, key in (("run", "name"), ("status", "status"), ("lines", "total_lines"), ("failed", "failed_lines")):
        parts.append(f"<tr><td>{label}</td>" + "".join(f"<td>{esc(str(r.get(key) if r.get(key) is not None else ''))}"
                                                        "</td>" for r in runs) + "</tr>")
    parts.append("<tr><td>evaluated by</td>" + "".join(
        "<td>" + (", ".join(esc(e["name"]) for e in r["evaluations"]) or "<span class='none'>none</span>") + "</td>"
        for r in runs) + "</tr></table>")
    parts.append("<h2>Lines</h2><div class='controls'><label><input type='checkbox' id='only-diff'> only lines "
                 "where the runs differ</label></div>")
    parts.append(f"<table><tr><th>#</th><th>inputs</th>{head}</tr>")
    for line in data["lines"]:
        differs = line["outputs_differ"] or line["grades_differ"]
        inputs = "".join(f"<div class='k'>{esc(str(k))}</div>{_fmt(v)}" for k, v in line["inputs"].items())
        cells = []
        for r in runs:
            c = line["runs"][r["name"]]
            body = "".join(f"<div class='k'>{esc(str(k))}</div>{_fmt(v)}" for k, v in c["outputs"].items())
            if c["status"] != "Completed":
                body += f"<div class='failed'>{esc(c['status'])}: {esc(c.get('error') or '')}</div>"
            body += "".join(f"<span class='grade g-{re.sub(r'[^A-Za-z0-9_-]', '', str(v))}'>{esc(str(k))}: "
                            f"{esc(str(v))}</span>" for k, v in c["grades"].items())
            cells.append(f"<td class='out'>{body}</td>")
        parts.append(f"<tr class='line{' diff' if differs else ''}'><td>{line['line_number']}</td>"
                     f"<td class='inputs'>{inputs}</td>{''.join(cells)}</tr>")
    parts.append(f"</table><script>{_JS}</script></body></html>")
    return "\n".join(parts)


def visualize(names: list[str], html_path: str | Path | None = None, *, open_browser: bool = True) -> Path:
    """Write the comparison page (by default under ``TUNERY_HOME/reports``) and open it."""
    data = compare_runs(names)
    if html_path is None:
        slug = re.sub(r"[^A-Za-z0-9_.-]", "_", "-".join(names))[:80]
        html_path = home().reports / f"visualize-{slug}-{time.strftime('%Y%m%d_%H%M%S')}.html"
    path = Path(html_path).expanduser().resolve()
    atomic_write_text(path, render_html(data))
    if open_browser:
        with contextlib.suppress(webbrowser.Error):  # no browser here: the caller prints the path
            webbrowser.open(path.as_uri())
    return path
