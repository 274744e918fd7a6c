"""What an evaluation run produced: every answer with its scores, the aggregates per model and
metric, and the headline figures that tell its story in plain words. The runner fills it; the
terminal table, the HTML report and ``summary.json`` read it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tunery.chat import GenerationParams


@dataclass(frozen=True)
class Headline:
    """One line of a report's summary in plain words. ``label`` reads ``metric``'s pass rate;
    with ``invert`` the fail rate, e.g. over-refusal from ``refuses[expect=answer]``; with
    ``mean`` the mean score, e.g. a similarity (also what a metric with no verdicts gives)."""

    label: str
    metric: str
    invert: bool = False
    mean: bool = False


@dataclass
class EvalReport:
    """The outcome of one evaluation run.

    ``rows`` holds one dict per (question, model): ``index``, ``model``, ``question``, ``answer``,
    ``finish_reason``, the question's other columns under ``data``, and ``scores`` (metric ->
    score, passed, reason; only the metrics whose subset holds the row). ``summary`` maps model -> metric -> aggregate (mean, pass_rate,
    ci_low, ci_high, n, unscored). ``metrics_meta`` says per metric how it was scored (scale,
    judge, the subset of rows it applies to and how many). ``headline`` lists the few figures
    that tell the story in plain words (see ``headline_rows``). ``paths`` names the files written,
    if any.
    """

    models: list[str]
    metrics: list[str]
    rows: list[dict[str, Any]]
    summary: dict[str, dict[str, dict[str, Any]]]
    metrics_meta: dict[str, dict[str, Any]]
    system: str | None
    params: GenerationParams
    question_key: str = "question"
    created: str = ""
    title: str = ""
    compare: dict[str, str] | None = None  # {"base": model, "tuned": model} for a comparison
    headline: list[Headline] = field(default_factory=list)
    paths: dict[str, Path] = field(default_factory=dict)

    @property
    def n_questions(self) -> int:
        return len({r["index"] for r in self.rows})

    def rows_for(self, model: str) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["model"] == model]

    def by_question(self) -> list[dict[str, dict[str, Any]]]:
        """For each question, in order: model -> its row."""
        out: list[dict[str, dict[str, Any]]] = [{} for _ in range(self.n_questions)]
        for r in self.rows:
            out[r["index"]][r["model"]] = r
        return out

    def deltas(self, base: str | None = None, tuned: str | None = None) -> dict[str, dict[str, Any]]:
        """Per metric: base and tuned mean and pass rate, and tuned minus base (None where a side
        has no value). Defaults to the comparison's models, else the first two."""
        base = base or (self.compare or {}).get("base") or self.models[0]
        tuned = tuned or (self.compare or {}).get("tuned") or self.models[-1]
        out = {}
        for metric in self.metrics:
            b, t = self.summary[base][metric], self.summary[tuned][metric]
            out[metric] = {
                "base_mean": b["mean"], "tuned_mean": t["mean"],
                "mean_delta": None if b["mean"] is None or t["mean"] is None else t["mean"] - b["mean"],
                "base_pass_rate": b["pass_rate"], "tuned_pass_rate": t["pass_rate"],
                "pass_rate_delta": (None if b["pass_rate"] is None or t["pass_rate"] is None
                                    else t["pass_rate"] - b["pass_rate"]),
            }
        return out

    def headline_rows(self) -> list[dict[str, Any]]:
        """Per headline: ``label``, ``metric``, ``subset`` (e.g. "expect=answer" or None), ``n``
        (rows scored), ``percent`` (whether values are rates), ``invert``, ``values`` (model -> the pass rate,
        the fail rate for an inverted line, or the mean) and,
        for a comparison, ``change`` (tuned minus base)."""
        base, tuned = ((self.compare or {}).get("base"), (self.compare or {}).get("tuned"))
        out = []
        for h in self.headline:
            percent = not h.mean and any(self.summary[m][h.metric]["pass_rate"] is not None for m in self.models)
            values: dict[str, float | None] = {}
            for m in self.models:
                agg = self.summary[m][h.metric]
                v = agg["pass_rate"] if percent else agg["mean"]
                values[m] = None if v is None else (1.0 - v if h.invert and percent else v)
            change = (values[tuned] - values[base] if base and tuned and values[base] is not None
                      and values[tuned] is not None else None)
            out.append({"label": h.label, "metric": h.metric, "subset": self.metrics_meta[h.metric].get("subset"),
                        "n": self.summary[self.models[0]][h.metric]["n"], "percent": percent, "invert": h.invert,
                        "values": values, "change": change})
        return out

    def summary_json(self) -> dict[str, Any]:
        return {"title": self.title, "created": self.created, "models": self.models, "metrics": self.metrics,
                "system": self.system, "question_key": self.question_key, "params": asdict(self.params),
                "questions": self.n_questions, "compare": self.compare, "summary": self.summary,
                "metrics_meta": self.metrics_meta,
                "deltas": self.deltas() if self.compare else None, "headline": self.headline_rows(),
                "files": {k: p.name for k, p in self.paths.items()}}


def headline_value(value: float | None, percent: bool) -> str:
    """A headline figure as the terminal and the HTML report print it: 94%, or 0.56."""
    if value is None:
        return "–"
    return f"{value:.0%}" if percent else f"{value:.2f}"


def headline_change(change: float | None, percent: bool) -> str:
    """A headline's tuned-minus-base change: +24 points, or +0.11."""
    if change is None:
        return "–"
    return f"{change * 100:+.0f} points" if percent else f"{change:+.2f}"


def change_is_better(row: dict[str, Any]) -> bool | None:
    """Whether a headline row's change is an improvement (a rise, or a fall for an inverted
    line such as over-refusal); None when there is no change to judge."""
    change = row["change"]
    if change is None or abs(change) < 1e-12:
        return None
    return (change > 0) != row["invert"]

