"""Model-graded evaluators: a judge model rates each answer 1-5 for coherence, fluency,
relevance, groundedness or similarity, following a rubric prompt in ``rubrics/<metric>.txt``.

The judge is any chat model: a tunery model or deployment, or any OpenAI-compatible endpoint
(``judge:coherence@gpt-4o-mini@https://api.openai.com/v1``). Every result records the judge used.

A word of honesty about small judges: a 135M-parameter model such as SmolLM2-135M-Instruct,
tunery's default, cannot really grade text. Asked to rate coherence it tends to talk about
coherence instead of giving a digit (the row is then reported as unscored); asked for fluency or
relevance it tends to copy the rubric's first line ("1 - Irrelevant: ..."), which reads as a 1
for good and bad answers alike. Its ratings show that the pipeline runs, nothing more; use a
model of several billion parameters, or a hosted one, as the judge when the numbers matter.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache
from importlib.resources import files
from typing import Any

from tunery.chat import ChatModel, GenerationParams
from tunery.errors import InvalidInput, NotFound
from tunery.evals.base import EvalResult, Evaluator, Row, RowScore, parse_number, reference_key, text_of

# metric -> row columns its rubric needs (besides the answer); "context" for relevance is optional
METRICS: dict[str, tuple[str, ...]] = {
    "coherence": ("question",),
    "fluency": (),
    "relevance": ("question",),
    "groundedness": ("context",),
    "similarity": ("question", "ground_truth"),
}
JUDGE_PARAMS = GenerationParams(temperature=0.0, max_tokens=24)

# in order of trust: "Rating: 4", a leading "4", "4/5", any lone 1-5; "3.5" is no rating
_RATING = (re.compile(r"(?:rating|score|grade)\s*(?:is|of|:|=)?\s*\**([1-5])\b(?!\.\d)", re.IGNORECASE),
           re.compile(r"^\W*([1-5])\b(?!\.\d)"),
           re.compile(r"(?<![\d.])\b([1-5])\s*(?:/|out of)\s*5\b", re.IGNORECASE),
           re.compile(r"(?<![\d.])\b([1-5])\b(?!\.\d|\d)"))


@cache
def rubric(metric: str) -> str:
    """The rubric prompt template for ``metric`` (placeholders ``{{question}}``, ``{{answer}}``...)."""
    if metric not in METRICS:
        raise NotFound(f"no rubric for {metric!r}", param="evaluator", hint=f"choose from {', '.join(METRICS)}")
    return (files("tunery.evals") / "rubrics" / f"{metric}.txt").read_text(encoding="utf-8")


def parse_rating(reply: str) -> int | None:
    """The 1-5 rating in a judge's reply: "4", "Rating: 4", "4/5", "I'd give it a 4." -> 4; None
    if there is none."""
    for pattern in _RATING:
        m = pattern.search(reply.strip())
        if m:
            return int(m.group(1))
    return None


def _fill(template: str, values: dict[str, str]) -> str:
    # plain replacement: answers may contain braces, so str.format would break on them
    for key, value in values.items():
        template = template.replace("{{" + key + "}}", value)
    return template


class Judge(Evaluator):
    kind = "judge"
    description = ("Model-graded 1-5 rating: judge:METRIC@MODEL[,threshold=3] with METRIC one of coherence, "
                   "fluency, relevance, groundedness, similarity and MODEL any tunery model, deployment or "
                   "NAME@http://host/v1 endpoint. Passes at rating >= threshold. SmolLM2-135M is too small to "
                   "judge usefully: use a model of billions of parameters or a hosted one.")
    scale = (1.0, 5.0)

    def __init__(self, metric: str, model: ChatModel, *, threshold: float = 3.0,
                 params: GenerationParams = JUDGE_PARAMS, name: str | None = None) -> None:
        if metric not in METRICS:
            raise InvalidInput(f"evaluator 'judge': unknown metric {metric!r}", param="evaluator",
                               hint=f"choose from {', '.join(METRICS)}")
        super().__init__(name or f"judge:{metric}@{model.name}")
        self.metric = metric
        self.model = model
        self.threshold = threshold
        self.params = params
        self._ref = "ground_truth"

    @classmethod
    def from_spec(cls, options: str) -> Evaluator:
        from tunery.serving import resolve

        metric, at, rest = options.partition("@")
        if not at or not rest.strip():
            raise InvalidInput(f"evaluator 'judge' needs METRIC@MODEL (got {options!r})", param="evaluator",
                               hint="e.g. judge:coherence@smollm2-135m-instruct or "
                                    "judge:fluency@gpt-4o-mini@https://api.openai.com/v1")
        # options follow the model after a comma: judge:coherence@MODEL,threshold=4
        ref, *extra = rest.split(",")
        kw: dict[str, Any] = {}
        for item in extra:
            key, eq, value = item.partition("=")
            if not eq or key.strip() != "threshold":
                raise InvalidInput(f"evaluator 'judge' has no option {item!r}", param="evaluator",
                                   hint="the only option is threshold=N")
            kw["threshold"] = parse_number(value.strip(), option="threshold", evaluator=cls.kind)
        metric = metric.strip()
        if metric not in METRICS:
            raise InvalidInput(f"evaluator 'judge': unknown metric {metric!r}", param="evaluator",
                               hint=f"choose from {', '.join(METRICS)}")
        model = resolve.get_chat_model(ref.strip())
        if hasattr(model, "check_known"):  # a local name: known now, not after every answer is generated
            model.check_known()
        return cls(metric, model, name=f"judge:{options}", **kw)

    @property
    def required_columns(self) -> tuple[str, ...]:
        return tuple(self._ref if c == "ground_truth" else c for c in METRICS[self.metric])

    @property
    def meta(self) -> dict[str, Any]:
        return {"judge": self.model.name, "rubric": f"rubrics/{self.metric}.txt", "threshold": self.threshold}

    def check_columns(self, rows: Sequence[Row]) -> None:
        self._ref = reference_key(rows, None)
        super().check_columns(rows)

    def prompt(self, row: Row) -> str:
        values = {"question": text_of(row, "question"), "answer": text_of(row, "answer"),
                  "context": text_of(row, "context"), "ground_truth": text_of(row, self._ref)}
        return _fill(rubric(self.metric), values)

    def score_row(self, row: Row) -> RowScore:
        from tunery.chat import ChatMessage, Role

        if not text_of(row, "answer").strip():
            return RowScore(1.0, self.threshold <= 1.0, f"empty answer: rated 1 without asking {self.model.name}")
        reply = self.model.generate([ChatMessage(Role.USER, self.prompt(row))], self.params).text
        rating = parse_rating(reply)
        shown = " ".join(reply.split())[:60]
        if rating is None:
            return RowScore(None, None, f"judge {self.model.name} gave no 1-5 rating: {shown!r}")
        return RowScore(float(rating), rating >= self.threshold, f"{self.metric} {rating}/5 from {self.model.name} "
                                                                 f"(reply {shown!r})")

    def evaluate(self, rows: Sequence[Row]) -> EvalResult:
        self.check_columns(rows)
        return self.result([self.score_row(r) for r in rows])
