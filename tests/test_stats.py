"""src/stats.py: bootstrap CIs and standard errors — values, determinism, coverage, edge cases."""

import math

import numpy as np
import pytest

from src import stats


def test_mean_and_se_are_the_textbook_values():
    values = [1, 2, 3, 4, 10]
    out = stats.mean_ci(values, seed=0)
    assert out["n"] == 5
    assert out["mean"] == pytest.approx(4.0)
    # sample variance: (9 + 4 + 1 + 0 + 36) / 4 = 12.5; se = sqrt(12.5 / 5) = sqrt(2.5)
    assert out["se"] == pytest.approx(math.sqrt(2.5))
    lo, hi = out["ci95"]
    assert min(values) <= lo < out["mean"] < hi <= max(values)


def test_ci_is_deterministic_given_the_seed_and_moves_with_it():
    values = np.random.default_rng(3).normal(size=40)
    a = stats.mean_ci(values, seed=7)
    b = stats.mean_ci(list(values), seed=7)
    c = stats.mean_ci(values, seed=8)
    assert a == b
    assert a["ci95"] != c["ci95"]
    assert a["mean"] == c["mean"] and a["se"] == c["se"]  # only the interval depends on the seed


def test_large_sample_interval_matches_the_normal_approximation():
    values = np.random.default_rng(1).normal(loc=5, scale=2, size=4000)
    out = stats.mean_ci(values, seed=0)
    lo, hi = out["ci95"]
    assert (hi - lo) / 2 == pytest.approx(1.96 * out["se"], rel=0.1)
    assert (lo + hi) / 2 == pytest.approx(out["mean"], abs=0.5 * out["se"])


def test_coverage_of_the_true_mean_is_near_95_percent():
    rng = np.random.default_rng(2024)
    hits = 0
    trials = 200
    for i in range(trials):
        sample = rng.normal(loc=3.0, scale=1.5, size=40)
        lo, hi = stats.mean_ci(sample, seed=i, n_resamples=1000)["ci95"]
        hits += lo <= 3.0 <= hi
    # percentile bootstrap at n=40 under-covers slightly; binomial sd at 200 trials is ~1.5 points
    assert 0.88 <= hits / trials <= 0.99, hits


def test_small_and_degenerate_samples():
    assert stats.mean_ci([], seed=0) == {"mean": None, "se": None, "ci95": None, "n": 0}
    assert stats.mean_ci([7], seed=0) == {"mean": 7.0, "se": None, "ci95": None, "n": 1}
    const = stats.mean_ci([4, 4, 4], seed=0)
    assert const["ci95"] == [4.0, 4.0] and const["se"] == 0.0


def test_non_finite_values_are_refused_with_their_position():
    with pytest.raises(ValueError, match=r"not finite at positions \[1\]"):
        stats.mean_ci([1.0, float("nan"), 2.0], seed=0)


def _mean_of_means(*groups, axis=-1):
    return np.mean([g.mean(axis=axis) for g in groups], axis=0)


def test_strata_ci_resamples_within_each_group():
    # Two constant groups of different sizes: the mean of the group means is 5 in every stratified
    # resample, so the interval is exactly [5, 5]; resampling the pooled values would move it.
    groups = [[0.0] * 3, [10.0] * 7]
    out = stats.strata_ci(groups, _mean_of_means, seed=0)
    assert out["value"] == 5.0 and out["n"] == 10
    assert out["ci95"] == [5.0, 5.0] and out["se"] == 0.0


def test_strata_ci_value_and_interval():
    rng = np.random.default_rng(5)
    groups = [rng.normal(loc=m, size=s) for m, s in ((1, 10), (4, 30), (9, 5))]
    out = stats.strata_ci(groups, _mean_of_means, seed=1)
    assert out["value"] == pytest.approx(np.mean([g.mean() for g in groups]))
    lo, hi = out["ci95"]
    assert lo < out["value"] < hi
    # se of a mean of independent means: sqrt(sum(s_k^2 / n_k)) / K, up to bootstrap noise and ddof
    analytic = math.sqrt(sum(g.var(ddof=1) / g.size for g in groups)) / len(groups)
    assert out["se"] == pytest.approx(analytic, rel=0.2)
    assert stats.strata_ci(groups, _mean_of_means, seed=1) == out


def test_strata_ci_edge_cases():
    assert stats.strata_ci([[1.0], [2.0, 3.0]], _mean_of_means, seed=0) == {
        "value": 1.75, "se": None, "ci95": None, "n": 3}
    with pytest.raises(ValueError, match=r"groups \[1\] are empty"):
        stats.strata_ci([[1.0, 2.0], []], _mean_of_means, seed=0)


def test_describe_records_the_seed_and_method():
    d = stats.describe(11, n_resamples=500)
    assert d["seed"] == 11 and d["n_resamples"] == 500 and "percentile" in d["method"]


def test_ratio_ci_resamples_whole_units():
    # units (sum of values, number of values): pooled mean = 21 / 7 = 3
    sums, counts = [6.0, 8.0, 4.0, 3.0], [2, 2, 2, 1]
    out = stats.ratio_ci(sums, counts, seed=0)
    assert out["value"] == 3.0 and out["n"] == 4
    lo, hi = out["ci95"]
    assert 2.0 <= lo <= 3.0 <= hi <= 4.0  # bounded by the smallest and largest unit means
    assert stats.ratio_ci(sums, counts, seed=0) == out
    # every unit with the same mean: the interval cannot move, whatever the unit sizes
    assert stats.ratio_ci([2.0, 6.0, 4.0], [1, 3, 2], seed=0)["ci95"] == [2.0, 2.0]
    with pytest.raises(ValueError, match="denominators must be positive"):
        stats.ratio_ci([1.0, 2.0], [1, 0], seed=0)
