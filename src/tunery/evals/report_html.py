"""The self-contained HTML report: the headline figures in plain words, inline CSS, one inline SVG
bar chart per metric (a bar per model, whiskers for the bootstrap confidence interval), a summary
table that names the subset of questions each metric is scored on, and every question's answers
side by side with pass/fail badges. No scripts, fonts or files from elsewhere, so it
opens offline and can be mailed around."""

from __future__ import annotations

from typing import Any

from jinja2 import Environment
from markupsafe import Markup, escape

from tunery.evals.report import EvalReport, change_is_better, headline_change, headline_value

PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7")


def _fmt(value: float | None, scale: tuple[float, float] = (0.0, 1.0)) -> str:
    if value is None:
        return "–"
    return f"{value:.1f}" if scale[1] > 5 else f"{value:.2f}"


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


def bar_chart(metric: str, models: list[str], summary: dict[str, dict[str, dict[str, Any]]],
              scale: tuple[float, float]) -> Markup:
    """An SVG bar chart of one metric's mean per model, with confidence-interval whiskers."""
    width, height, left, right, top, bottom = 440, 230, 44, 12, 26, 48
    plot_w, plot_h = width - left - right, height - top - bottom
    lo, hi = scale
    slot = plot_w / max(len(models), 1)
    bar_w = min(64.0, slot * 0.6)

    def y(v: float) -> float:
        v = min(max(v, lo), hi)
        return top + plot_h * (1 - (v - lo) / (hi - lo if hi > lo else 1))

    parts = [f'<svg class="chart" data-metric="{escape(metric)}" xmlns="http://www.w3.org/2000/svg" '
             f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
             f'aria-label="{escape(metric)} by model">',
             f'<text x="{left}" y="16" class="chart-title">{escape(_clip(metric, 52))}<title>{escape(metric)}</title></text>']
    for k in range(5):
        v = lo + (hi - lo) * k / 4
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y(v):.1f}" y2="{y(v):.1f}" class="grid"/>'
                     f'<text x="{left - 6}" y="{y(v) + 4:.1f}" class="tick" text-anchor="end">{_fmt(v, scale)}</text>')
    for i, model in enumerate(models):
        agg = summary[model][metric]
        cx = left + slot * (i + 0.5)
        color = PALETTE[i % len(PALETTE)]
        label = _clip(model, 22)
        parts.append(f'<text x="{cx:.1f}" y="{height - bottom + 18}" class="tick" text-anchor="middle">'
                     f'{escape(label)}<title>{escape(model)}</title></text>')
        mean = agg.get("mean")
        if mean is None:
            parts.append(f'<text x="{cx:.1f}" y="{y(lo) - 6:.1f}" class="tick" text-anchor="middle">n/a</text>')
            continue
        bar_top = y(mean)
        parts.append(f'<rect class="bar" data-model="{escape(model)}" x="{cx - bar_w / 2:.1f}" y="{bar_top:.1f}" '
                     f'width="{bar_w:.1f}" height="{max(y(lo) - bar_top, 0.5):.1f}" fill="{color}">'
                     f'<title>{escape(model)}: mean {_fmt(mean, scale)} (n={agg.get("n")})</title></rect>')
        label_y = bar_top - 6
        if agg.get("ci_low") is not None and agg.get("ci_high") is not None:
            y1, y2 = y(agg["ci_low"]), y(agg["ci_high"])
            parts.append(f'<g class="ci"><line x1="{cx:.1f}" x2="{cx:.1f}" y1="{y1:.1f}" y2="{y2:.1f}"/>'
                         f'<line x1="{cx - 8:.1f}" x2="{cx + 8:.1f}" y1="{y1:.1f}" y2="{y1:.1f}"/>'
                         f'<line x1="{cx - 8:.1f}" x2="{cx + 8:.1f}" y1="{y2:.1f}" y2="{y2:.1f}"/></g>')
            label_y = min(label_y, y2 - 6)
        parts.append(f'<text x="{cx + bar_w / 2 + 4:.1f}" y="{max(label_y, top) + 10:.1f}" class="value">'
                     f'{_fmt(mean, scale)}</text>')
    parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y(lo):.1f}" y2="{y(lo):.1f}" class="axis"/></svg>')
    return Markup("".join(parts))


CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2433;background:#f6f7f9}
main{max-width:1280px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 10px}
.muted{color:#667085}.card{background:#fff;border:1px solid #e4e7ec;border-radius:8px;padding:14px 16px}
pre{white-space:pre-wrap;margin:6px 0 0;font:13px/1.4 ui-monospace,Menlo,Consolas,monospace}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{border:1px solid #e4e7ec;padding:8px 10px;vertical-align:top;text-align:left}
th{background:#f2f4f7;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums}
.charts{display:flex;flex-wrap:wrap;gap:12px}.charts .card{padding:8px}
svg .grid{stroke:#eaecf0}svg .axis{stroke:#98a2b3}svg .ci line{stroke:#1d2433;stroke-width:1.5}
svg .tick{font-size:11px;fill:#475467}svg .value{font-size:11px;fill:#1d2433}
svg .chart-title{font-size:13px;font-weight:600;fill:#1d2433}
.answer{white-space:pre-wrap}.badges{margin-top:8px;display:flex;flex-wrap:wrap;gap:4px}
.badge{display:inline-block;border-radius:10px;padding:1px 8px;font-size:12px;border:1px solid transparent}
.pass{background:#ecfdf3;color:#067647;border-color:#abefc6}.fail{background:#fef3f2;color:#b42318;border-color:#fecdca}
.score{background:#f2f4f7;color:#344054;border-color:#d0d5dd}
.pos{color:#067647}.neg{color:#b42318}
details summary{cursor:pointer;color:#475467;font-size:12px;margin-top:6px}
.reasons{font-size:12px;color:#475467;margin:4px 0 0;padding-left:16px}
.legend span{display:inline-block;width:10px;height:10px;border-radius:2px;margin:0 4px 0 12px}
"""

TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ report.title }} · tunery evaluation</title><style>{{ css }}</style></head>
<body><main>
<h1>{{ report.title }}</h1>
<div class="muted">tunery evaluation · {{ report.created }} · {{ report.n_questions }} questions ·
temperature {{ report.params.temperature }} · max_tokens {{ report.params.max_tokens }}
<span class="legend">{% for m in report.models %}<span style="background:{{ colors[m] }}"></span>{{ m }}{% endfor %}</span></div>
{% if report.system %}<h2>System message</h2><div class="card"><pre>{{ report.system }}</pre></div>{% endif %}
{% if headline %}
<h2>Summary</h2>
<table class="headline"><thead><tr><th>what</th>{% for m in report.models %}<th>{{ m }}</th>{% endfor %}
{% if report.compare %}<th>change</th>{% endif %}</tr></thead><tbody>
{% for h in headline %}<tr data-metric="{{ h.metric }}"><td>{{ h.label }}<div class="muted">{{ h.metric }} · {{ h.n }} questions</div></td>
{% for m in report.models %}<td class="num">{{ hvalue(h["values"][m], h.percent) }}</td>{% endfor %}
{% if report.compare %}{% set better = is_better(h) %}<td class="num {{ 'pos' if better else ('neg' if better is false else '') }}">{{ hchange(h.change, h.percent) }}</td>{% endif %}
</tr>{% endfor %}</tbody></table>
{% endif %}
{% if report.metrics %}
<h2>Metrics</h2>
<table class="summary"><thead><tr><th>metric</th>{% for m in report.models %}<th>{{ m }}</th>{% endfor %}
{% if deltas %}<th>Δ (fine-tuned − base)</th>{% endif %}</tr></thead><tbody>
{% for metric in report.metrics %}{% set meta = report.metrics_meta[metric] %}<tr>
<td><b title="{{ meta.description }}">{{ metric }}</b>{% if meta.subset %}<div class="muted">on the {{ meta.rows }} questions with {{ meta.subset }}</div>{% endif %}{% if meta.hint %}<div class="muted">{{ meta.hint }}</div>{% endif %}{% if meta.judge %}<div class="muted">judge: {{ meta.judge }}</div>{% endif %}</td>
{% for m in report.models %}{% set a = report.summary[m][metric] %}<td class="num">
mean {{ fmt(a.mean, meta.scale) }}{% if a.ci_low is not none %} <span class="muted">[{{ fmt(a.ci_low, meta.scale) }}, {{ fmt(a.ci_high, meta.scale) }}]</span>{% endif %}
{% if a.pass_rate is not none %}<br>pass {{ pct(a.pass_rate) }}{% endif %}
<br><span class="muted">n={{ a.n }}{% if a.unscored %}, unscored {{ a.unscored }}{% endif %}</span></td>{% endfor %}
{% if deltas %}{% set d = deltas[metric] %}<td class="num">{% if d.mean_delta is not none %}
<span class="{{ 'pos' if d.mean_delta > 0 else ('neg' if d.mean_delta < 0 else '') }}">{{ '%+.2f'|format(d.mean_delta) }}</span>{% endif %}
{% if d.pass_rate_delta is not none %}<br>pass {{ '%+.0f'|format(d.pass_rate_delta * 100) }} pts{% endif %}</td>{% endif %}
</tr>{% endfor %}</tbody></table>
<h2>Charts</h2><p class="muted">Bars are means; whiskers are 95% bootstrap confidence intervals (fixed seed).</p>
<div class="charts">{% for metric in report.metrics %}<div class="card">{{ charts[metric] }}</div>{% endfor %}</div>
{% endif %}
<h2>Answers</h2>
<table class="answers"><thead><tr><th style="width:18%">question</th>{% for m in report.models %}<th>{{ m }}</th>{% endfor %}</tr></thead><tbody>
{% for q in questions %}<tr data-index="{{ loop.index0 }}">
<td><b>{{ loop.index }}.</b> {{ q.question }}{% for k, v in q.extra %}<div class="muted"><i>{{ k }}:</i> {{ v }}</div>{% endfor %}</td>
{% for m in report.models %}{% set r = q.rows[m] %}<td data-model="{{ m }}"><div class="answer">{{ r.answer if r.answer.strip() else '(empty answer)' }}</div>
{% if r.finish_reason == 'length' %}<div class="muted">(cut at max_tokens)</div>{% endif %}
{% if r.scores %}<div class="badges">{% for metric, s in r.scores.items() %}
<span class="badge {{ badge(s) }}" title="{{ s.reason }}">{{ '✓' if s.passed else ('✗' if s.passed is false else '') }} {{ metric }}{% if not report.metrics_meta[metric].binary and s.score is not none %} {{ fmt(s.score, report.metrics_meta[metric].scale) }}{% endif %}</span>
{% endfor %}</div><details><summary>why</summary><ul class="reasons">{% for metric, s in r.scores.items() %}<li><b>{{ metric }}</b>: {{ s.reason }}</li>{% endfor %}</ul></details>{% endif %}
</td>{% endfor %}</tr>{% endfor %}
</tbody></table>
<p class="muted">results.jsonl holds every row with its scores and reasons; summary.json the aggregates.</p>
</main></body></html>
"""


def _badge(score: dict[str, Any]) -> str:
    return "pass" if score["passed"] is True else ("fail" if score["passed"] is False else "score")


def render_html(report: EvalReport) -> str:
    env = Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)
    template = env.from_string(TEMPLATE)
    colors = {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(report.models)}
    charts = {m: bar_chart(m, report.models, report.summary, tuple(report.metrics_meta[m]["scale"]))
              for m in report.metrics}
    questions = []
    for rows in report.by_question():
        first = next(iter(rows.values()))
        extra = [(k, v if isinstance(v, str) else str(v)) for k, v in first["data"].items()
                 if isinstance(v, str | int | float | bool)]
        questions.append({"question": first["question"], "extra": extra, "rows": rows})
    return template.render(report=report, css=Markup(CSS), charts=charts, questions=questions, colors=colors,
                           deltas=report.deltas() if report.compare else None, headline=report.headline_rows(),
                           hvalue=headline_value, hchange=headline_change, is_better=change_is_better,
                           fmt=lambda v, s: _fmt(v, tuple(s)), pct=_pct, badge=_badge)
