"""Evaluators by name, and the ``NAME[:options]`` spec strings the CLI and flows use:
``ends_with_question``, ``max_words:80``, ``regex:must=\\?$``, ``json_keys:a,b``,
``recommends:hotel,flight``, ``style_similarity:file=train.jsonl``, ``judge:coherence@MODEL``."""

from __future__ import annotations

from collections.abc import Iterable

from tunery.errors import InvalidInput
from tunery.evals.base import Evaluator
from tunery.evals.judge import Judge
from tunery.evals.overlap import OVERLAP_EVALUATORS
from tunery.evals.recommends import Recommends
from tunery.evals.rules import RULE_EVALUATORS
from tunery.evals.similarity import Similarity, StyleSimilarity

EVALUATORS: dict[str, type[Evaluator]] = {
    cls.kind: cls
    for cls in (*OVERLAP_EVALUATORS, Similarity, StyleSimilarity, *RULE_EVALUATORS, Recommends, Judge)
}


def parse_evaluator(spec: str) -> Evaluator:
    """Build an evaluator from ``NAME[:options]``; its ``name`` (the metric's label) is the spec."""
    spec = spec.strip()
    kind, _, options = spec.partition(":")
    cls = EVALUATORS.get(kind.strip())
    if cls is None:
        raise InvalidInput(f"unknown evaluator {kind!r}", param="evaluator",
                           hint=f"choose from {', '.join(EVALUATORS)} (see `tunery eval list`)")
    return cls.from_spec(options.strip())


def parse_evaluators(specs: Iterable[str]) -> list[Evaluator]:
    """Parse several specs; two that give the same metric name are an error, since their
    columns in the report would collide."""
    evaluators = [parse_evaluator(s) for s in specs]
    seen: set[str] = set()
    for e in evaluators:
        if e.name in seen:
            raise InvalidInput(f"evaluator {e.name!r} is given twice", param="evaluator")
        seen.add(e.name)
    return evaluators
