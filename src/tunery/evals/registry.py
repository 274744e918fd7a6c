"""Evaluators by name, and the ``NAME[:options]`` spec strings the CLI and flows use:
``ends_with_question``, ``max_words:80``, ``regex:must=\\?$``, ``json_keys:a,b``,
``recommends:hotel,flight``, ``style_similarity:file=train.jsonl``, ``tool_calls``, ``judge:coherence@MODEL``.

Any spec may end with ``[COLUMN=VALUE]`` to score only the rows whose column holds that value:
``recommends[expect=decline]``, ``refuses[expect=answer]``."""

from __future__ import annotations

import re
from collections.abc import Iterable

from tunery.errors import InvalidInput
from tunery.evals.base import Evaluator
from tunery.evals.judge import Judge
from tunery.evals.overlap import OVERLAP_EVALUATORS
from tunery.evals.recommends import Recommends
from tunery.evals.refuses import Declines, Refuses
from tunery.evals.rules import RULE_EVALUATORS
from tunery.evals.similarity import Answers, Similarity, StyleSimilarity
from tunery.evals.tool_calls import ToolCalls

EVALUATORS: dict[str, type[Evaluator]] = {
    cls.kind: cls
    for cls in (*OVERLAP_EVALUATORS, Similarity, StyleSimilarity, Answers, *RULE_EVALUATORS, Recommends, Refuses,
                Declines, ToolCalls, Judge)
}

# A trailing [column=value]; the value holds no brackets or "=", so a regex option rarely looks like one.
_SUBSET = re.compile(r"\[\s*([A-Za-z_][\w.-]*)\s*=\s*([^\[\]=]+?)\s*\]$")


def parse_evaluator(spec: str) -> Evaluator:
    """Build an evaluator from ``NAME[:options][COLUMN=VALUE]``; its ``name`` (the metric's label)
    is the spec."""
    spec = spec.strip()
    subset = _SUBSET.search(spec)
    if subset:
        spec = spec[: subset.start()].rstrip()
    kind, _, options = spec.partition(":")
    cls = EVALUATORS.get(kind.strip())
    if cls is None and re.search(r"[\[\]]", kind):  # a subset half written, or not at the end
        raise InvalidInput(f"evaluator {spec!r}: a subset is written [COLUMN=VALUE] at the end of the spec",
                           param="evaluator", hint="e.g. 'recommends[expect=decline]' (quote it in the shell)")
    if cls is None:
        raise InvalidInput(f"unknown evaluator {kind!r}", param="evaluator",
                           hint=f"choose from {', '.join(EVALUATORS)} (see `tunery eval list`)")
    evaluator = cls.from_spec(options.strip())
    return evaluator.only_where(subset.group(1), subset.group(2)) if subset else evaluator


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
