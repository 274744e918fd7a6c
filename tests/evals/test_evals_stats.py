from __future__ import annotations

import pytest

from tunery.evals.base import RowScore
from tunery.evals.stats import aggregate, bootstrap_ci


def test_aggregate_mean_pass_rate_and_unscored():
    rows = [RowScore(1.0, True, ""), RowScore(0.0, False, ""), RowScore(None, None, "judge said nothing"),
            RowScore(1.0, True, "")]
    agg = aggregate(rows)
    assert agg["mean"] == pytest.approx(2 / 3)
    assert agg["pass_rate"] == pytest.approx(2 / 3)
    assert (agg["n"], agg["unscored"]) == (3, 1)
    assert 0.0 <= agg["ci_low"] <= agg["mean"] <= agg["ci_high"] <= 1.0


def test_bootstrap_is_deterministic_and_brackets_the_mean():
    values = [0.1, 0.4, 0.35, 0.8, 0.9, 0.2, 0.55]
    first, second = bootstrap_ci(values), bootstrap_ci(values)
    assert first == second
    low, high = first
    assert low < sum(values) / len(values) < high
    assert bootstrap_ci(values, seed=1) != first  # the seed is what makes it repeatable


def test_bootstrap_edge_cases():
    assert bootstrap_ci([]) is None
    assert bootstrap_ci([0.7]) is None            # one value: no interval
    assert bootstrap_ci([1.0, 1.0, 1.0]) == (1.0, 1.0)  # ties: a zero-width interval


def test_aggregate_of_nothing_and_without_bootstrap():
    assert aggregate([]) == {"mean": None, "pass_rate": None, "ci_low": None, "ci_high": None, "n": 0,
                             "unscored": 0}
    agg = aggregate([RowScore(0.2, None, ""), RowScore(0.4, None, "")], bootstrap=False)
    assert agg["mean"] == pytest.approx(0.3)
    assert agg["pass_rate"] is None and agg["ci_low"] is None
