"""On-policy preference pairs: ask a model each question several times, score every answer with
evaluators, and pair an answer that passes every check that applies with one that fails a check,
both in the model's own words. What ``tunery eval pairs`` writes, for a DPO job from that model.

Why both sides come from the model: DPO moves the model from where it stands, and a pair whose
preferred answer is in another writer's words teaches those words as much as the behaviour. On the
travel task, hand-written preferred declines spread their phrasings ("...isn't something I do")
to questions the model should answer, and pairs that rejected the model's own refusals but
preferred the training answers moved it little; pairs of its own good and bad answers moved both
checks the right way (benchmarks/RESULTS.md, "Preference fine-tuning", run I).

An answer *fails* when an evaluator that applies to its row gives it ``passed: False`` (a scale
evaluator passes or fails by its threshold: ``answers`` by its calibrated cosine), or when it ran
to the token limit (``finish_reason: "length"``); it *passes* when it fails nothing. An answer an
evaluator could not score (a judge that gave no rating), and an empty answer, are neither: they are
counted and left out. An evaluator that scores without passing or failing (``bleu`` with no
``threshold``) cannot decide a pair and is refused before any sampling.
Each question gives at most ``per_question`` pairs, each with a different failing answer.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tunery.chat import ChatModel, GenerationParams
from tunery.errors import InvalidInput
from tunery.evals.base import Evaluator
from tunery.evals.runner import Progress, run_eval

RAN_ON = "ran to the token limit"
DEFAULT_PARAMS = GenerationParams(temperature=0.6, max_tokens=256)


@dataclass
class PairsReport:
    questions: int
    samples: int  # answers per question
    pairs: list[dict[str, Any]] = field(default_factory=list)
    failures: Counter = field(default_factory=Counter)  # check (or RAN_ON) -> answers failing it
    passed: int = 0  # answers that passed every check
    unscored: int = 0  # answers an evaluator could not score: left out
    empty: int = 0  # empty answers: left out
    no_passing: int = 0  # questions with a failing answer and none that passed: no pair
    all_passed: int = 0  # questions whose answers all passed: nothing to learn from them

    def to_dict(self) -> dict[str, Any]:
        return {"questions": self.questions, "samples": self.samples, "answers": self.questions * self.samples,
                "passed": self.passed, "failures": dict(self.failures), "unscored": self.unscored,
                "empty": self.empty, "pairs": len(self.pairs),
                "questions_without_a_passing_answer": self.no_passing,
                "questions_all_passed": self.all_passed}


def _no_verdict(name: str, kind: str) -> InvalidInput:
    return InvalidInput(f"evaluator {name!r} gives a score but no pass or fail, so it cannot decide which answer "
                        "of a pair is preferred", param="evaluator",
                        hint=f"give it a threshold (e.g. {kind}:threshold=0.3) or leave it out")


def _verdict(row: Mapping[str, Any]) -> list[str] | None:
    """The checks an answer failed ([] = passed every one), or None when a check left it unscored."""
    if any(s["score"] is None for s in row["scores"].values()):
        return None
    undecided = next((m for m, s in row["scores"].items() if s["passed"] is None), None)
    if undecided is not None:  # the up-front check missed an evaluator that scores without a verdict
        raise _no_verdict(undecided, "bleu")
    failed = [m for m, s in row["scores"].items() if s["passed"] is False]
    return [*failed, RAN_ON] if row["finish_reason"] == "length" else failed


def make_pairs(model: ChatModel, questions: Sequence[Mapping[str, Any]], evaluators: Sequence[Evaluator], *,
               system: str | None = None, question_key: str = "question", samples: int = 4,
               per_question: int = 2, params: GenerationParams = DEFAULT_PARAMS, seed: int = 0,
               progress: Progress | None = None) -> PairsReport:
    """Sample ``samples`` answers per question (answer ``k`` of question ``i`` with seed ``seed *
    1_000_003 + k * len(questions) + i``, so a run is reproducible on the same engine), score them
    and pair them. ``params.temperature`` must be above 0: greedy answers are all the same."""
    if samples < 2:
        raise InvalidInput("ask each question at least twice (samples >= 2): a pair needs two answers",
                           param="samples")
    if per_question < 1:
        raise InvalidInput("per_question must be at least 1", param="per_question")
    if params.temperature <= 0:
        raise InvalidInput("sampling needs a temperature above 0: greedy answers to a question are all the same",
                           param="temperature", hint="0.6 gave varied, readable answers from SmolLM2-135M")
    if not evaluators:
        raise InvalidInput("give at least one evaluator (e.g. recommends, refuses, ends_with_question): "
                           "the checks decide which answer of a pair is preferred", param="evaluator")
    for e in evaluators:
        if getattr(e, "threshold", 0) is None:
            raise _no_verdict(e.name, e.kind)
    for i, q in enumerate(questions, 1):
        if q.get("tools") is not None:
            raise InvalidInput(f"row {i} carries tools: pairs are made from plain answers only", param="data")
    n = len(questions)
    rows = [{**q, "seed": seed * 1_000_003 + k * n + i} for k in range(samples) for i, q in enumerate(questions)]
    report = run_eval(rows, {model.name: model}, evaluators, system=system, question_key=question_key,
                      params=params, write=False, progress=progress)
    out = PairsReport(questions=n, samples=samples)
    good: list[list[str]] = [[] for _ in range(n)]
    bad: list[list[str]] = [[] for _ in range(n)]
    for r in report.rows:
        verdict = _verdict(r)
        text = r["answer"].strip()
        if verdict is None or not text:
            out.unscored += verdict is None
            out.empty += verdict is not None
            continue
        i = r["index"] % n
        out.failures.update(verdict)
        (bad if verdict else good)[i].append(text)
        out.passed += not verdict
    rng = random.Random(seed)
    for i, q in enumerate(questions):
        goods, bads = list(dict.fromkeys(good[i])), list(dict.fromkeys(bad[i]))
        if not bads:
            out.all_passed += bool(goods)
            continue
        if not goods:
            out.no_passing += 1
            continue
        rng.shuffle(goods)
        rng.shuffle(bads)
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": q[question_key]}]
        for j, rejected in enumerate(bads[:per_question]):
            out.pairs.append({"input": {"messages": messages},
                              "preferred_output": [{"role": "assistant", "content": goods[j % len(goods)]}],
                              "non_preferred_output": [{"role": "assistant", "content": rejected}]})
    return out


def write_pairs(report: PairsReport, path: Path) -> None:
    """The pairs as preference JSONL (OpenAI's format), written whole or not at all."""
    from tunery.home import atomic_write_text

    atomic_write_text(path, "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in report.pairs))
