"""Evaluation runs: ask every model every question with the same system message, score the answers
with each evaluator, and write a report folder (``results.jsonl``, ``summary.json``,
``report.html``). ``compare_models`` is the fine-tuning exercise's base-versus-tuned comparison.

Models are passed in as ChatModel objects, so tests hand in scripted fakes and the CLI resolves
references with ``tunery.serving.resolve.get_chat_model``.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tunery.chat import ChatMessage, Role
from tunery.errors import InvalidInput
from tunery.evals.base import Evaluator
from tunery.home import atomic_dir, atomic_write_json, atomic_write_text, home
from tunery.serving.base import ChatModel, GenerationParams

DEFAULT_PARAMS = GenerationParams(temperature=0.0, max_tokens=256)

Progress = Callable[[str, int, int], None]  # (model name, answers done, answers in all)


@dataclass
class EvalReport:
    """The outcome of one evaluation run.

    ``rows`` holds one dict per (question, model): ``index``, ``model``, ``question``, ``answer``,
    ``finish_reason``, the question's other columns under ``data``, and ``scores`` (metric ->
    score, passed, reason). ``summary`` maps model -> metric -> aggregate (mean, pass_rate,
    ci_low, ci_high, n, unscored). ``metrics_meta`` says per metric how it was scored (scale,
    judge...). ``paths`` names the files written, if any.
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

    def summary_json(self) -> dict[str, Any]:
        return {"title": self.title, "created": self.created, "models": self.models, "metrics": self.metrics,
                "system": self.system, "question_key": self.question_key, "params": asdict(self.params),
                "questions": self.n_questions, "compare": self.compare, "summary": self.summary,
                "metrics_meta": self.metrics_meta,
                "deltas": self.deltas() if self.compare else None,
                "files": {k: p.name for k, p in self.paths.items()}}


def _messages(system: str | None, question: str) -> list[ChatMessage]:
    msgs = [ChatMessage(Role.SYSTEM, system)] if system else []
    return [*msgs, ChatMessage(Role.USER, question)]


def _validate(questions: Sequence[Mapping[str, Any]], models: Mapping[str, ChatModel],
              evaluators: Sequence[Evaluator], question_key: str) -> None:
    if not questions:
        raise InvalidInput("there are no questions to ask", param="data")
    if not models:
        raise InvalidInput("name at least one model to evaluate", param="model")
    for i, q in enumerate(questions, 1):
        if not isinstance(q.get(question_key), str) or not q[question_key].strip():
            raise InvalidInput(f"row {i} has no text in column {question_key!r}", param="question_key")
    names = [e.name for e in evaluators]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup:
        raise InvalidInput(f"evaluator {dup!r} is given twice", param="evaluator")
    # fail before spending minutes on generation if the data lacks a column an evaluator reads
    probe = [{**q, "question": q[question_key], "answer": ""} for q in questions]
    for e in evaluators:
        e.check_columns(probe)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")[:40] or "model"


def default_out_dir(models: Sequence[str]) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = home().reports / f"{stamp}-{'-vs-'.join(_slug(m) for m in models)}"
    out, n = base, 2
    while out.exists():
        out, n = base.with_name(f"{base.name}-{n}"), n + 1
    return out


def run_eval(questions: Sequence[Mapping[str, Any]], models: Mapping[str, ChatModel],
             evaluators: Sequence[Evaluator], *, system: str | None = None, question_key: str = "question",
             params: GenerationParams = DEFAULT_PARAMS, out_dir: Path | None = None, write: bool = True,
             progress: Progress | None = None, title: str = "",
             compare: dict[str, str] | None = None, concurrency: int = 8) -> EvalReport:
    """Generate an answer from every model for every question, score them, and (with ``write``)
    save the report folder to ``out_dir`` (default ``TUNERY_HOME/reports/<time>-<models>``).
    Up to ``concurrency`` requests are in flight at once."""
    _validate(questions, models, evaluators, question_key)
    total = len(questions) * len(models)
    done = 0
    answers: dict[str, list[tuple[str, str, float]]] = {name: [("", "stop", 0.0)] * len(questions) for name in models}

    lock = threading.Lock()

    def ask(name: str, indices: Sequence[int]) -> None:
        nonlocal done
        for i in indices:
            t0 = time.perf_counter()
            completion = models[name].generate(_messages(system, questions[i][question_key]), params)
            answers[name][i] = (completion.text, completion.finish_reason, time.perf_counter() - t0)
            with lock:
                done += 1
                if progress:
                    progress(name, done, total)

    # Requests go out together so that an engine which batches (tunery's does) decodes them
    # together; a model that takes one request at a time is asked in question order.
    order = range(len(questions))
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        futures = []
        for name, model in models.items():
            if min(concurrency, getattr(model, "parallel_requests", 1)) > 1:
                futures += [pool.submit(ask, name, [i]) for i in order]
            else:
                futures.append(pool.submit(ask, name, order))
        for fut in futures:
            fut.result()

    metrics = [e.name for e in evaluators]
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    per_row: dict[str, dict[str, list]] = {}
    meta: dict[str, dict[str, Any]] = {e.name: {"kind": e.kind, "scale": list(e.scale), "binary": e.binary,
                                                "description": e.description, "hint": e.hint}
                                       for e in evaluators}
    for name in models:
        rows = [{**q, "question": q[question_key], "answer": a[0]} for q, a in zip(questions, answers[name], strict=True)]
        summary[name], per_row[name] = {}, {}
        for e in evaluators:
            result = e.evaluate(rows)
            summary[name][e.name] = result.aggregate
            per_row[name][e.name] = result.per_row
            meta[e.name].update(result.meta)

    report_rows = []
    for i, q in enumerate(questions):
        for name in models:
            text, finish, seconds = answers[name][i]
            report_rows.append({
                "index": i, "model": name, "question": q[question_key], "answer": text, "finish_reason": finish,
                "seconds": round(seconds, 3),
                "data": {k: v for k, v in q.items() if k != question_key},
                "scores": {m: per_row[name][m][i].to_dict() for m in metrics},
            })
    report = EvalReport(models=list(models), metrics=metrics, rows=report_rows, summary=summary,
                        metrics_meta=meta, system=system, params=params, question_key=question_key,
                        created=datetime.now(UTC).isoformat(timespec="seconds"),
                        title=title or " vs ".join(models), compare=compare)
    if write:
        write_report(report, out_dir or default_out_dir(list(models)))
    return report


def write_report(report: EvalReport, out_dir: Path) -> dict[str, Path]:
    """Write ``results.jsonl``, ``summary.json`` and ``report.html``; the folder appears whole."""
    import json

    from tunery.evals.report_html import render_html

    out_dir = Path(out_dir)
    names = {"results": "results.jsonl", "summary": "summary.json", "html": "report.html"}
    report.paths = {k: out_dir / v for k, v in names.items()}
    with atomic_dir(out_dir) as tmp:
        lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in report.rows)
        atomic_write_text(tmp / names["results"], lines)
        atomic_write_json(tmp / names["summary"], report.summary_json())
        atomic_write_text(tmp / names["html"], render_html(report))
    return report.paths


def compare_models(base: ChatModel, tuned: ChatModel, questions: Sequence[Mapping[str, Any]],
                   system: str | None, evaluators: Sequence[Evaluator], **kwargs: Any) -> EvalReport:
    """The exercise's comparison: the same questions and system message to a base and a
    fine-tuned model. Accepts ``run_eval``'s keyword arguments; ``report.deltas()`` gives
    tuned-minus-base per metric."""
    base_name, tuned_name = base.name, tuned.name
    if base_name == tuned_name:
        base_name, tuned_name = f"{base_name} (base)", f"{tuned_name} (fine-tuned)"
    kwargs.setdefault("title", f"{base_name} vs {tuned_name}")
    return run_eval(questions, {base_name: base, tuned_name: tuned}, evaluators, system=system,
                    compare={"base": base_name, "tuned": tuned_name}, **kwargs)
