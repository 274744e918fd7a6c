"""Choosing a model's tool-call threshold on held-out questions (issue 17).

Under ``tool_choice: auto`` a model decides to call a tool with its first token. A small tuned
model is often sure when a call is needed and unsure when it is not: on the seventh bundled travel
set the ninth-round fine-tune gave an answer opening with ``<tool_call>`` at least 0.98 on each
question that needs one (0.51 at the least on the sixth), and anywhere from 0.35 up on those it
wrongly called on. Serving with a threshold (``GenerationParams.tool_call_threshold``,
``tunery.serving.constrained``) lets it call only above it. This module measures that probability
per question through the serving engine, and picks the threshold that best separates the two kinds
of question for the greedy answers; ``tunery models calibrate`` saves it as the model's own, which
the server then applies to every request that does not send one.

Questions are those of the ``tool_calls`` evaluator: ``question``, ``expect`` (``"no_tool"`` or the
calls) and ``tools`` (or the tools given here). Each is asked once, one token, greedy: its
probability is the summed probability of the 20 most likely first tokens that open a call (the
most the API returns; below the twentieth token a share is too small to matter for a threshold).
Pick the threshold on questions the model was not trained on, and judge it on others: a threshold
chosen on the questions it is then scored on flatters it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tunery.chat import ChatModel, GenerationParams
from tunery.errors import InvalidInput
from tunery.evals.runner import _messages
from tunery.evals.tool_calls import ToolCalls
from tunery.progress import Progress, say
from tunery.serving.constrained import check, opens_call

GRID = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98, 0.99)
"""The thresholds :func:`choose` weighs."""


@dataclass(frozen=True)
class Decision:
    """One question: whether it needs a call, the probability the model opens one, and whether its
    greedy answer opens one (a threshold only ever stops a call the model would make)."""

    question: str
    needs_call: bool
    p_call: float
    greedy_calls: bool

    def calls_at(self, threshold: float) -> bool:
        """Whether the greedy answer calls under ``threshold`` (0: the model's own decision)."""
        return self.greedy_calls and self.p_call >= threshold


@dataclass(frozen=True)
class Calibration:
    decisions: tuple[Decision, ...]
    threshold: float
    """The chosen threshold (0: none helps; the model's own decisions are already the best)."""

    def at(self, threshold: float) -> tuple[int, int]:
        """(questions needing a call whose greedy answer calls under ``threshold``, those needing
        none whose answer does not)."""
        return (sum(d.calls_at(threshold) for d in self.decisions if d.needs_call),
                sum(not d.calls_at(threshold) for d in self.decisions if not d.needs_call))

    @property
    def counts(self) -> tuple[int, int]:
        """(questions needing a call, questions needing none)."""
        need = sum(d.needs_call for d in self.decisions)
        return need, len(self.decisions) - need

    def table(self) -> list[tuple[float, int, int]]:
        """(threshold, :meth:`at` it) for off and each threshold of :data:`GRID`."""
        return [(t, *self.at(t)) for t in (0.0, *GRID)]

    def to_dict(self) -> dict[str, Any]:
        need, none = self.counts
        return {"threshold": self.threshold, "needs_call": need, "needs_none": none,
                "table": [{"threshold": t, "calls_kept": k, "no_calls": n} for t, k, n in self.table()],
                "questions": [d.__dict__ for d in self.decisions]}


def measure_call(model: ChatModel, messages: Sequence[Any], tools: Sequence[Mapping[str, Any]]
                 ) -> tuple[float, bool]:
    """The probability ``model`` gives an answer to ``messages`` that opens with a tool call (from
    the first token's 20 most likely: the server's gate, ``constrained.call_probability``, sums
    every such token), and whether its greedy answer does."""
    params = GenerationParams(max_tokens=1, temperature=0.0, tools=tuple(tools), tool_choice="auto",
                              tool_call_threshold=0, logprobs=True, top_logprobs=20)
    completion = model.generate(messages, params)
    first = completion.logprobs[0][0] if completion.logprobs and completion.logprobs[0] else None
    if first is None:
        raise InvalidInput(f"model {model.name!r} returned no log-probabilities, which calibration needs",
                           param="model")
    return (min(1.0, sum(math.exp(t.logprob) for t in first.top or (first,) if opens_call(t.utf8))),
            opens_call(first.utf8))


def choose(decisions: Sequence[Decision]) -> float:
    """The threshold of :data:`GRID` (or 0, none) with the best balanced accuracy of the greedy
    answers' decisions under it: the mean of the share of needed calls made and the share of
    unneeded ones not made. 0 when no threshold beats the model alone; where several tie, the middle
    one of them in :data:`GRID`'s order, away from both ends of the tie."""
    need = [d for d in decisions if d.needs_call]
    none = [d for d in decisions if not d.needs_call]
    if not need or not none:
        raise InvalidInput(f"calibration needs questions of both kinds: {len(need)} need a call and {len(none)} "
                           "need none", param="data", hint='add questions whose expect is "no_tool", and ones that '
                           "expect calls")

    def score(t: float) -> float:
        return sum(d.calls_at(t) for d in need) / len(need) + sum(not d.calls_at(t) for d in none) / len(none)

    best = max(score(t) for t in (0.0, *GRID))
    if score(0.0) == best:
        return 0.0
    tied = [t for t in GRID if score(t) == best]
    return tied[(len(tied) - 1) // 2]


def calibrate_threshold(model: ChatModel, questions: Sequence[Mapping[str, Any]], *, system: str | None = None,
                        tools: Sequence[Mapping[str, Any]] | None = None, question_key: str = "question",
                        progress: Progress | None = None) -> Calibration:
    """Ask each question once and choose the threshold. A row's own ``tools`` win over ``tools``.
    Every row is checked first (an ``expect`` the ``tool_calls`` evaluator reads, tools the server
    would take), and the problems are named together, by the question's number."""
    reader, problems, expects = ToolCalls(), [], []
    for i, q in enumerate(questions, 1):
        expects.append(reader.expected(q))
        if expects[-1] is None:
            problems.append(f"question {i}: 'expect' must be \"no_tool\" or {{\"tool_calls\": [{{\"name\": ...}}]}}")
        if not (q.get("tools") or tools):
            problems.append(f"question {i}: no tools to be asked with (a 'tools' column, as in the training data)")
            continue
        try:
            check(GenerationParams(tools=tuple(q.get("tools") or tools or ())))
        except InvalidInput as e:
            problems.append(f"question {i}: {e}")
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise InvalidInput("; ".join(problems[:5]) + more, param="data")
    decisions = []
    for i, (q, expect) in enumerate(zip(questions, expects, strict=True), 1):
        p, greedy = measure_call(model, _messages(system, q[question_key]), q.get("tools") or tools or ())
        decisions.append(Decision(q[question_key], bool(expect), p, greedy))
        say(progress, f"question {i} of {len(questions)}")
    return Calibration(tuple(decisions), choose(decisions))
