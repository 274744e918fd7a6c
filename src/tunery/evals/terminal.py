"""The report in the terminal: answers side by side with a mark per check, then the metrics
with their confidence intervals (each on the subset of questions it applies to) and, for a
comparison, the fine-tuned-minus-base deltas, then the headline figures in plain words."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from tunery.evals.report import EvalReport, change_is_better, headline_change, headline_value


def _num(value: float | None, scale: list[float]) -> str:
    if value is None:
        return "–"
    return f"{value:.1f}" if scale[1] > 5 else f"{value:.2f}"


def _marks(scores: dict[str, dict[str, Any]], meta: dict[str, dict[str, Any]]) -> Text:
    out = Text()
    for metric, s in scores.items():
        if out:
            out.append("  ")
        value = "" if meta[metric].get("binary") else f" {_num(s['score'], meta[metric]['scale'])}"
        if s["passed"] is True:
            out.append(f"✓ {metric}{value}", style="green")
        elif s["passed"] is False:
            out.append(f"✗ {metric}{value}", style="red")
        else:
            out.append(f"{metric}{value}", style="dim")
    return out


def answers_table(report: EvalReport, *, max_chars: int = 600) -> Table:
    t = Table(show_lines=True, header_style="bold", expand=True, title="Answers")
    t.add_column("#", justify="right", width=3)
    t.add_column("question", ratio=1)
    for m in report.models:
        t.add_column(escape(m), ratio=2)
    # the columns that pick subsets (e.g. expect) are shown under each question
    subset_columns = sorted({meta["subset"].split("=")[0] for meta in report.metrics_meta.values() if meta.get("subset")})
    for i, rows in enumerate(report.by_question(), 1):
        first = next(iter(rows.values()))
        question = Text(first["question"])
        for col in subset_columns:
            if first["data"].get(col) is not None:
                question.append(f"\n{col}: {first['data'][col]}", style="dim")
        cells: list[Any] = [str(i), question]
        for m in report.models:
            r = rows[m]
            answer = r["answer"].strip() or "(empty answer)"
            if len(answer) > max_chars:
                answer = answer[: max_chars - 1] + "…"
            cell = Text(answer)
            if r["scores"]:
                cell.append("\n")
                cell.append_text(_marks(r["scores"], report.metrics_meta))
            cells.append(cell)
        t.add_row(*cells)
    return t


def metrics_table(report: EvalReport) -> Table:
    t = Table(header_style="bold", title="Metrics (mean [95% CI] · pass rate)")
    t.add_column("metric")
    for m in report.models:
        t.add_column(escape(m), justify="right")
    deltas = report.deltas() if report.compare else None
    if deltas:
        t.add_column("Δ tuned − base", justify="right")
    for metric in report.metrics:
        meta = report.metrics_meta[metric]
        scale = meta["scale"]
        label = Text(metric)
        if meta.get("subset"):
            label.append(f"\non the {meta['rows']} questions with {meta['subset']}", style="dim")
        if meta.get("hint"):
            label.append(f"\n{meta['hint']}", style="dim")
        if meta.get("judge"):
            label.append(f"\njudge: {meta['judge']}", style="dim")
        row: list[Any] = [label]
        for m in report.models:
            a = report.summary[m][metric]
            cell = _num(a["mean"], scale)
            if a["ci_low"] is not None:
                cell += f" [dim][{_num(a['ci_low'], scale)}, {_num(a['ci_high'], scale)}][/]"
            if a["pass_rate"] is not None:
                cell += f" · {a['pass_rate']:.0%}"
            row.append(cell)
        if deltas:
            d = deltas[metric]
            parts = []
            if d["mean_delta"] is not None:
                color = "green" if d["mean_delta"] > 0 else ("red" if d["mean_delta"] < 0 else "")
                parts.append(f"[{color}]{d['mean_delta']:+.2f}[/]" if color else f"{d['mean_delta']:+.2f}")
            if d["pass_rate_delta"] is not None:
                parts.append(f"{d['pass_rate_delta'] * 100:+.0f} pts")
            row.append(" · ".join(parts) or "–")
        t.add_row(*row)
    return t


def headline_table(report: EvalReport) -> Table:
    t = Table(header_style="bold", title="Summary")
    t.add_column("what")
    for m in report.models:
        t.add_column(escape(m), justify="right")
    if report.compare:
        t.add_column("change", justify="right")
    for h in report.headline_rows():
        label = Text(h["label"])
        label.append(f"\n{h['metric']} · {h['n']} questions", style="dim")
        row: list[Any] = [label, *(headline_value(h["values"][m], h["percent"]) for m in report.models)]
        if report.compare:
            better = change_is_better(h)
            color = {True: "green", False: "red", None: ""}[better]
            change = headline_change(h["change"], h["percent"])
            row.append(f"[{color}]{change}[/]" if color else change)
        t.add_row(*row)
    return t


def render_terminal_table(report: EvalReport, console: Console) -> None:
    """Print the answers side by side (with ✓/✗ per check), the metrics table and the headline."""
    console.print(answers_table(report))
    if report.metrics:
        console.print(metrics_table(report))
    if report.headline:
        console.print(headline_table(report))
    if report.paths.get("html"):
        console.print(f"report: [bold]{escape(str(report.paths['html']))}[/]")
