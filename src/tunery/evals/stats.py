"""Aggregates of per-row scores: mean, pass rate and a percentile bootstrap confidence interval.

The bootstrap uses a fixed seed, so the same scores always give the same interval (reports can be
diffed, tests can pin values)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

BOOTSTRAP_SEED = 20240607
BOOTSTRAP_RESAMPLES = 2000
CONFIDENCE = 0.95


class Scored(Protocol):
    """What an aggregate reads of a row's verdict (``tunery.evals.base.RowScore`` has it). A
    protocol rather than an import of RowScore, so that base, which aggregates, and this module
    do not import each other."""

    @property
    def score(self) -> float | None: ...

    @property
    def passed(self) -> bool | None: ...


def bootstrap_ci(values: Sequence[float], *, confidence: float = CONFIDENCE,
                 resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> tuple[float, float] | None:
    """Percentile bootstrap interval for the mean; None for fewer than two values, where
    resampling says nothing."""
    if len(values) < 2:
        return None
    data = np.asarray(values, dtype=np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(data), size=(resamples, len(data)))
    means = data[idx].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    # clamp to the observed range: float noise must not put the interval outside the data
    return float(max(low, data.min())), float(min(high, data.max()))


def aggregate(per_row: Sequence[Scored], *, bootstrap: bool = True) -> dict[str, Any]:
    """``mean`` over scored rows, ``pass_rate`` over rows with a verdict, ``ci_low``/``ci_high``
    (None where not meaningful), ``n`` scored rows and ``unscored`` rows."""
    scores = [r.score for r in per_row if r.score is not None and not math.isnan(r.score)]
    verdicts = [r.passed for r in per_row if r.passed is not None]
    ci = bootstrap_ci(scores) if bootstrap else None
    return {
        "mean": float(np.mean(scores)) if scores else None,
        "pass_rate": sum(verdicts) / len(verdicts) if verdicts else None,
        "ci_low": ci[0] if ci else None,
        "ci_high": ci[1] if ci else None,
        "n": len(scores),
        "unscored": len(per_row) - len(scores),
    }
