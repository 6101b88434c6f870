"""Uncertainty of the report's numbers: bootstrap confidence intervals and standard errors.

Every mean a report prints gets a 95% confidence interval from a percentile bootstrap
(`scipy.stats.bootstrap`, method="percentile") and a standard error, deterministic given the seed.

- `mean_ci(values, seed=...)`: the mean of one list of numbers; se is the analytic standard error of the
  mean, sample standard deviation / sqrt(n) (`scipy.stats.sem`, ddof=1), so it does not depend on the seed.
- `strata_ci(groups, statistic, seed=...)`: any statistic of several groups of numbers (a mean over
  per-task means, a pooled mean over strata ...). The bootstrap resamples every group independently
  (a stratified bootstrap: each resample keeps every group's size), so a "mean over the 11 task types"
  is resampled the way it was computed. se is the standard deviation of the bootstrap distribution.
- `ratio_ci(numerators, denominators, seed=...)`: a pooled mean over units holding several values each
  (KRIS-Bench's AVG pools 3 or 4 metric values per pair): whole units are resampled together.

Why percentile and not BCa: BCa needs a jackknife over all n values (n statistic evaluations, slow at
10,000 pairs) and is undefined on degenerate samples (all values equal), which judge scores often are;
the percentile interval is defined for every sample with two or more values. With fewer than two values
there is no interval: `ci95` and `se` are None (never a made-up zero-width interval).

The resamples are drawn in batches (`batch`) so that memory stays at about BATCH_ELEMENTS floats whatever
the number of pairs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import scipy.stats

DEFAULT_N_RESAMPLES = 2000
CONFIDENCE = 0.95
METHOD = "percentile bootstrap (scipy.stats.bootstrap)"
BATCH_ELEMENTS = 2_000_000


def describe(seed: int, n_resamples: int = DEFAULT_N_RESAMPLES) -> dict[str, Any]:
    """The `uncertainty` section of a report: how every ci95 / se in it was computed."""
    return {
        "method": METHOD,
        "confidence": CONFIDENCE,
        "interval": "percentile",
        "n_resamples": n_resamples,
        "seed": seed,
        "se": "mean: sample std / sqrt(n) (ddof=1); composite statistics: std of the bootstrap distribution",
        "scipy": scipy.__version__,
    }


def _as_array(values: Sequence[float] | np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{what}: expected a flat list of numbers, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        bad = [i for i, v in enumerate(arr) if not math.isfinite(v)]
        raise ValueError(f"{what}: values must be finite numbers; not finite at positions {bad[:10]}")
    return arr


def _batch(n_values: int) -> int:
    return max(1, BATCH_ELEMENTS // max(1, n_values))


def mean_ci(values: Sequence[float] | np.ndarray, *, seed: int,
            n_resamples: int = DEFAULT_N_RESAMPLES) -> dict[str, Any]:
    """Mean, its standard error and a 95% percentile-bootstrap CI: {mean, se, ci95: [lo, hi], n}.

    n == 0: everything None (n = 0). n == 1: the mean, se and ci95 None. Deterministic given `seed`.
    """
    arr = _as_array(values, "mean_ci")
    n = int(arr.size)
    if n == 0:
        return {"mean": None, "se": None, "ci95": None, "n": 0}
    mean = float(arr.mean())
    if n < 2:
        return {"mean": mean, "se": None, "ci95": None, "n": n}
    res = scipy.stats.bootstrap((arr,), np.mean, n_resamples=n_resamples, batch=_batch(n), vectorized=True,
                                method="percentile", confidence_level=CONFIDENCE,
                                rng=np.random.default_rng(seed))
    lo, hi = res.confidence_interval
    return {"mean": mean, "se": float(scipy.stats.sem(arr, ddof=1)), "ci95": [float(lo), float(hi)], "n": n}


def _pooled(numerators, denominators, axis=-1):
    return np.sum(numerators, axis=axis) / np.sum(denominators, axis=axis)


def ratio_ci(numerators: Sequence[float] | np.ndarray, denominators: Sequence[float] | np.ndarray, *, seed: int,
             n_resamples: int = DEFAULT_N_RESAMPLES) -> dict[str, Any]:
    """sum(numerators) / sum(denominators) with a 95% percentile-bootstrap CI over units: {value, se, ci95, n}.

    A pooled mean over units that hold several values each (a pair scored on 3 or 4 metrics: numerator =
    the sum of its values, denominator = how many): the bootstrap resamples whole units (numerator and
    denominator together), so values of one pair stay together. se = std of the bootstrap distribution.
    Every denominator must be positive.
    """
    num = _as_array(numerators, "ratio_ci numerators")
    den = _as_array(denominators, "ratio_ci denominators")
    if num.size != den.size:
        raise ValueError(f"ratio_ci: {num.size} numerators but {den.size} denominators")
    if num.size == 0:
        return {"value": None, "se": None, "ci95": None, "n": 0}
    if np.any(den <= 0):
        raise ValueError(f"ratio_ci: denominators must be positive; got {sorted(set(den[den <= 0].tolist()))}")
    n = int(num.size)
    value = float(num.sum() / den.sum())
    if n < 2:
        return {"value": value, "se": None, "ci95": None, "n": n}
    res = scipy.stats.bootstrap((num, den), _pooled, n_resamples=n_resamples, batch=_batch(2 * n), vectorized=True,
                                paired=True, method="percentile", confidence_level=CONFIDENCE,
                                rng=np.random.default_rng(seed))
    lo, hi = res.confidence_interval
    return {"value": value, "se": float(res.standard_error), "ci95": [float(lo), float(hi)], "n": n}


def strata_ci(groups: Sequence[Sequence[float] | np.ndarray], statistic: Callable[..., Any], *, seed: int,
              n_resamples: int = DEFAULT_N_RESAMPLES) -> dict[str, Any]:
    """A statistic of several groups with a stratified 95% percentile-bootstrap CI: {value, se, ci95, n}.

    `statistic(*arrays, axis=-1)` must be vectorized the way scipy.stats.bootstrap asks: it receives one
    array per group (resamples along the leading axes, values along `axis`) and reduces `axis`.
    Empty groups are rejected (the caller decides what an empty group means). If any group has fewer
    than two values it cannot be resampled: the value is returned with se and ci95 None.
    """
    arrays = [_as_array(g, f"strata_ci group {i}") for i, g in enumerate(groups)]
    if not arrays:
        return {"value": None, "se": None, "ci95": None, "n": 0}
    empty = [i for i, a in enumerate(arrays) if a.size == 0]
    if empty:
        raise ValueError(f"strata_ci: groups {empty} are empty; drop them or decide what they mean first")
    n = int(sum(a.size for a in arrays))
    value = float(statistic(*arrays, axis=-1))
    if min(a.size for a in arrays) < 2:
        return {"value": value, "se": None, "ci95": None, "n": n}
    res = scipy.stats.bootstrap(tuple(arrays), statistic, n_resamples=n_resamples, batch=_batch(n),
                                vectorized=True, paired=False, method="percentile",
                                confidence_level=CONFIDENCE, rng=np.random.default_rng(seed))
    lo, hi = res.confidence_interval
    return {"value": value, "se": float(res.standard_error), "ci95": [float(lo), float(hi)], "n": n}
