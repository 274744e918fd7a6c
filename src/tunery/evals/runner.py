"""Evaluation runs: ask every model every question with the same system message, score the answers
with each evaluator, and write a report folder (``results.jsonl``, ``summary.json``,
``report.html``). ``compare_models`` is the fine-tuning exercise's base-versus-tuned comparison.

Models are passed in as ChatModel objects, so tests hand in scripted fakes and the CLI resolves
references with ``tunery.serving.resolve.get_chat_model``.
"""

from __future__ import annotations

import errno
import json
import os
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tunery.chat import ChatMessage, ChatModel, GenerationParams, Role
from tunery.errors import Conflict, InvalidInput
from tunery.evals.base import Evaluator, RowScore
from tunery.evals.report import EvalReport, Headline
from tunery.evals.report_html import render_html
from tunery.home import CannotWrite, atomic_dir, atomic_write_json, atomic_write_text, home

DEFAULT_PARAMS = GenerationParams(temperature=0.0, max_tokens=256)

Progress = Callable[[str, int, int], None]  # (model name, answers done, answers in all)


def _messages(system: str | None, question: str) -> list[ChatMessage]:
    msgs = [ChatMessage(Role.SYSTEM, system)] if system else []
    return [*msgs, ChatMessage(Role.USER, question)]


def _row_params(params: GenerationParams, row: Mapping[str, Any]) -> GenerationParams:
    """The settings a row is asked with: a row that carries ``tools`` (OpenAI function specs, as in
    a tool-calling training file) sends them with its request, so the model may call them; a row
    with a ``seed`` (a whole number, checked by ``_validate``) samples with that seed
    (``evals.onpolicy`` asks one question several times, each with its own)."""
    if row.get("tools") is not None:
        params = replace(params, tools=tuple(row["tools"]))
    return replace(params, seed=row["seed"]) if row.get("seed") is not None else params


def _check_tools(questions: Sequence[Mapping[str, Any]], params: GenerationParams) -> None:
    """Refuse a row whose ``tools`` no model could be asked with, before any generation."""
    from tunery.serving.constrained import check

    checked: set[str] = set()
    for i, q in enumerate(questions, 1):
        tools = q.get("tools")
        if tools is None:
            continue
        if not isinstance(tools, list) or not tools or not all(isinstance(t, dict) for t in tools):
            raise InvalidInput(f"row {i}: column 'tools' must be a non-empty list of function specs "
                               '({"type": "function", "function": {"name", "description", "parameters"}})',
                               param="data")
        key = json.dumps(tools, sort_keys=True)
        if key in checked:
            continue
        try:
            check(_row_params(params, q))
        except InvalidInput as e:
            raise InvalidInput(f"row {i}: {e.message}", param="data", hint=e.hint) from None
        checked.add(key)


def _validate(questions: Sequence[Mapping[str, Any]], models: Mapping[str, ChatModel],
              evaluators: Sequence[Evaluator], question_key: str, headline: Sequence[Headline],
              params: GenerationParams) -> None:
    if not questions:
        raise InvalidInput("there are no questions to ask", param="data")
    if not models:
        raise InvalidInput("name at least one model to evaluate", param="model")
    for i, q in enumerate(questions, 1):
        if not isinstance(q.get(question_key), str) or not q[question_key].strip():
            raise InvalidInput(f"row {i} has no text in column {question_key!r}", param="question_key")
        seed = q.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            raise InvalidInput(f"row {i}: column 'seed' must be a whole number >= 0 (it seeds that row's sampling), "
                               f"not {seed!r}", param="data")
    _check_tools(questions, params)
    names = [e.name for e in evaluators]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup:
        raise InvalidInput(f"evaluator {dup!r} is given twice", param="evaluator")
    unknown = next((h.metric for h in headline if h.metric not in names), None)
    if unknown:
        raise InvalidInput(f"the headline names metric {unknown!r}, which no evaluator gives", param="headline",
                           hint=f"metrics: {', '.join(names)}")
    # fail before spending minutes on generation if the data lacks a column an evaluator reads, or
    # an evaluator's subset holds no row (a typo in [expect=anwser] must not report nothing)
    probe = [{**q, "question": q[question_key], "answer": ""} for q in questions]
    for e in evaluators:
        subset = [r for r in probe if e.applies_to(r)]
        if e.where and not subset:
            column, value = e.where
            found = sorted({str(r[column]) for r in probe if r.get(column) is not None})
            raise InvalidInput(f"evaluator {e.name!r} applies to rows with {column}={value}, and no row has it",
                               param="evaluator",
                               hint=f"values of {column!r} in the data: {', '.join(found)}" if found
                               else f"the data has no {column!r} column")
        e.check_columns(subset)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")[:40] or "model"


def default_out_dir(models: Sequence[str]) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = home().reports / f"{stamp}-{'-vs-'.join(_slug(m) for m in models)}"
    out, n = base, 2
    while out.exists():
        out, n = base.with_name(f"{base.name}-{n}"), n + 1
    return out


REPORT_FILES = {"results": "results.jsonl", "summary": "summary.json", "html": "report.html"}


def check_report_dir(out_dir: Path) -> None:
    """A report folder replaces ``out_dir`` whole, so ``out_dir`` must be new, empty or an earlier
    report: a folder holding anything else (the user's own files) is refused, before any answer is
    generated, rather than deleted."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InvalidInput(f"the report folder {out_dir} is a file", param="out", hint="choose another --out")
    # the folder is made (with its parents) beside the place it goes: one that cannot be is said now,
    # not once every answer has been generated
    where = next(p for p in (out_dir.absolute().parent, *out_dir.absolute().parents) if p.exists())
    if not where.is_dir() or not os.access(where, os.W_OK | os.X_OK):
        raise CannotWrite(out_dir, PermissionError(errno.EACCES, os.strerror(errno.EACCES)))
    others = sorted(p.name for p in out_dir.iterdir() if p.name not in REPORT_FILES.values()) \
        if out_dir.is_dir() else []
    if others:
        shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
        raise Conflict(f"{out_dir} is not an eval report folder (it holds {shown}), and writing the report "
                       "would replace it", param="out", hint="choose a new or empty folder with --out")


def run_eval(questions: Sequence[Mapping[str, Any]], models: Mapping[str, ChatModel],
             evaluators: Sequence[Evaluator], *, system: str | None = None, question_key: str = "question",
             params: GenerationParams = DEFAULT_PARAMS, out_dir: Path | None = None, write: bool = True,
             progress: Progress | None = None, title: str = "",
             compare: dict[str, str] | None = None, concurrency: int = 8,
             headline: Sequence[Headline] = ()) -> EvalReport:
    """Generate an answer from every model for every question, score them, and (with ``write``)
    save the report folder to ``out_dir`` (default ``TUNERY_HOME/reports/<time>-<models>``).
    Up to ``concurrency`` requests are in flight at once. A row with a ``tools`` column is asked
    with those tools (``tool_choice`` auto), as a tool-calling application would. An evaluator with a subset
    (``Evaluator.only_where``, or ``NAME[column=value]``) scores only its rows, and its aggregate
    is over them alone. ``headline`` picks the metrics the summary tells in plain words."""
    _validate(questions, models, evaluators, question_key, headline, params)
    if write and out_dir is not None:
        check_report_dir(out_dir)
    total = len(questions) * len(models)
    done = 0
    answers: dict[str, list[tuple[str, str, float]]] = {name: [("", "stop", 0.0)] * len(questions) for name in models}

    lock = threading.Lock()
    stopped = threading.Event()

    def ask(name: str, indices: Sequence[int]) -> None:
        nonlocal done
        for i in indices:
            if stopped.is_set():
                return
            t0 = time.perf_counter()
            completion = models[name].generate(_messages(system, questions[i][question_key]),
                                               _row_params(params, questions[i]))
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
        try:
            for fut in futures:
                fut.result()
        except BaseException:
            # Ctrl-C, or a model that failed: the questions not yet asked are dropped, rather than
            # asked while the caller waits for an answer it will never see
            stopped.set()
            for fut in futures:
                fut.cancel()
            raise

    metrics = [e.name for e in evaluators]
    subsets = {e.name: [i for i, q in enumerate(questions) if e.applies_to(q)] for e in evaluators}
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    per_row: dict[str, dict[str, dict[int, RowScore]]] = {}
    meta: dict[str, dict[str, Any]] = {e.name: {"kind": e.kind, "scale": list(e.scale), "binary": e.binary,
                                                "description": e.description, "hint": e.hint,
                                                "subset": "=".join(e.where) if e.where else None,
                                                "rows": len(subsets[e.name])}
                                       for e in evaluators}
    for name in models:
        rows = [{**q, "question": q[question_key], "answer": a[0]} for q, a in zip(questions, answers[name], strict=True)]
        summary[name], per_row[name] = {}, {}
        for e in evaluators:
            result = e.evaluate([rows[i] for i in subsets[e.name]])
            summary[name][e.name] = result.aggregate
            per_row[name][e.name] = dict(zip(subsets[e.name], result.per_row, strict=True))
            meta[e.name].update(result.meta)

    report_rows = []
    for i, q in enumerate(questions):
        for name in models:
            text, finish, seconds = answers[name][i]
            report_rows.append({
                "index": i, "model": name, "question": q[question_key], "answer": text, "finish_reason": finish,
                "seconds": round(seconds, 3),
                "data": {k: v for k, v in q.items() if k != question_key},
                "scores": {m: per_row[name][m][i].to_dict() for m in metrics if i in per_row[name][m]},
            })
    report = EvalReport(models=list(models), metrics=metrics, rows=report_rows, summary=summary,
                        metrics_meta=meta, system=system, params=params, question_key=question_key,
                        created=datetime.now(UTC).isoformat(timespec="seconds"),
                        title=title or " vs ".join(models), compare=compare, headline=list(headline))
    if write:
        write_report(report, out_dir or default_out_dir(list(models)))
    return report


def write_report(report: EvalReport, out_dir: Path) -> dict[str, Path]:
    """Write ``results.jsonl``, ``summary.json`` and ``report.html``; the folder appears whole."""
    out_dir = Path(out_dir)
    check_report_dir(out_dir)
    names = REPORT_FILES
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
