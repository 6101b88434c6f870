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

Comparisons (src/compare.py, src/agreement.py, src/align.py):
- `paired_difference(a, b, seed=...)`: the mean of the per-pair differences a - b, its CI, a paired-bootstrap
  p-value (the CI inverted: twice the smaller share of bootstrap means on either side of 0) and the
  Wilcoxon signed-rank p-value (`scipy.stats.wilcoxon`).
- `correlations(x, y, seed=...)`: Spearman, Kendall (tau-b) and Pearson with scipy's p-values and
  paired-bootstrap CIs (the pairs resampled together).
- `fisher_mean(rs)`: correlations averaged through Fisher's z: tanh(mean(arctanh(r))).

Why percentile and not BCa: BCa needs a jackknife over all n values (n statistic evaluations, slow at
10,000 pairs) and is undefined on degenerate samples (all values equal), which judge scores often are;
the percentile interval is defined for every sample with two or more values. With fewer than two values
there is no interval: `ci95` and `se` are None (never a made-up zero-width interval).

The resamples are drawn in batches (`batch`) so that memory stays at about BATCH_ELEMENTS floats whatever
the number of pairs.
"""

from __future__ import annotations

import math
import warnings
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


# ----------------------------------------------------------------------------- comparisons (compare, judges, align)
# Paired differences of two runs on the same pairs, correlations with bootstrap CIs, Fisher-z averaging.
# Used by src/compare.py, src/agreement.py and src/align.py (docs/compare.md).


def _finite(x: float | None) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _ci(res) -> list[float | None]:
    lo, hi = _finite(res.confidence_interval.low), _finite(res.confidence_interval.high)
    if lo is None or hi is None:  # some resamples were degenerate (e.g. constant): use the others
        dist = np.asarray(res.bootstrap_distribution, dtype=float)
        dist = dist[np.isfinite(dist)]
        if dist.size == 0:
            return [None, None]
        lo, hi = (float(v) for v in np.percentile(dist, [2.5, 97.5]))
    return [lo, hi]


def paired_difference(a: Sequence[float], b: Sequence[float], *, seed: int = 0,
                      n_resamples: int = DEFAULT_N_RESAMPLES) -> dict[str, Any]:
    """Paired comparison of a and b (same pairs, same order): the mean of a - b with its CI and p-values."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"paired samples differ in length: {x.size} vs {y.size}")
    d = x - y
    out: dict[str, Any] = {"n": int(d.size), "mean_diff": None, "se": None, "ci95": [None, None],
                           "p_bootstrap": None, "p_wilcoxon": None}
    if d.size == 0:
        return out
    out["mean_diff"] = float(d.mean())
    if d.size < 2:
        return out
    out["se"] = float(scipy.stats.sem(d))
    if np.all(d == d[0]):  # no variation: every resample has the same mean
        out["ci95"] = [float(d[0]), float(d[0])]
        out["p_bootstrap"] = 1.0 if d[0] == 0 else 0.0
    else:
        res = scipy.stats.bootstrap((d,), np.mean, n_resamples=n_resamples, method="percentile", vectorized=True,
                              rng=np.random.default_rng(seed))
        out["ci95"] = _ci(res)
        dist = np.asarray(res.bootstrap_distribution, dtype=float)
        out["p_bootstrap"] = float(min(1.0, 2 * min(np.mean(dist <= 0), np.mean(dist >= 0))))
    if np.any(d != 0):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out["p_wilcoxon"] = _finite(scipy.stats.wilcoxon(d).pvalue)
    else:
        out["p_wilcoxon"] = 1.0
    return out


_CORR = {"spearman": scipy.stats.spearmanr, "kendall": scipy.stats.kendalltau, "pearson": scipy.stats.pearsonr}


def _pearson_vec(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return scipy.stats.pearsonr(x, y, axis=axis).statistic  # nan for a constant resample


def _spearman_vec(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """Spearman's rho of many resamples at once: Pearson's r of the ranks (average ties), as scipy defines it."""
    return _pearson_vec(scipy.stats.rankdata(x, axis=axis), scipy.stats.rankdata(y, axis=axis), axis=axis)


def _kendall_vec(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """Kendall's tau-b of many resamples at once: sum sgn(dx) sgn(dy) / sqrt(sum sgn(dx)^2 sum sgn(dy)^2)
    over all pairs (scipy.stats.kendalltau loops over resamples in Python; a test checks equality)."""
    x, y = np.moveaxis(x, axis, -1), np.moveaxis(y, axis, -1)
    sx = np.sign(x[..., :, None] - x[..., None, :])
    sy = np.sign(y[..., :, None] - y[..., None, :])
    with np.errstate(all="ignore"):
        return (sx * sy).sum(axis=(-2, -1)) / np.sqrt((sx * sx).sum(axis=(-2, -1)) * (sy * sy).sum(axis=(-2, -1)))


def _kendall_one(x: np.ndarray, y: np.ndarray) -> float:
    if np.all(x == x[0]) or np.all(y == y[0]):
        return float("nan")
    return float(scipy.stats.kendalltau(x, y).statistic)


KENDALL_VECTOR_MAX_N = 150
_VEC = {"spearman": _spearman_vec, "kendall": _kendall_vec, "pearson": _pearson_vec}


def correlations(x: Sequence[float], y: Sequence[float], *, seed: int = 0, n_resamples: int = 1000,
                 methods: Sequence[str] = ("spearman", "kendall", "pearson")) -> dict[str, Any]:
    """{n, spearman: {r, p, ci95}, kendall: {...}, pearson: {...}}: r and p from scipy.stats, the CI a
    percentile bootstrap resampling the pairs together; r is None when undefined (fewer than 3 pairs, or
    one side constant). Resamples where r is undefined (constant) are left out of the CI; n_resamples=0: no CI."""
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in length: {a.size} vs {b.size}")
    out: dict[str, Any] = {"n": int(a.size)}
    for name in methods:
        entry: dict[str, Any] = {"r": None, "p": None, "ci95": [None, None]}
        if a.size >= 3 and not (np.all(a == a[0]) or np.all(b == b[0])):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                res = _CORR[name](a, b)
                entry["r"], entry["p"] = _finite(res.statistic), _finite(res.pvalue)
                if n_resamples <= 0:  # no interval asked for
                    out[name] = entry
                    continue
                if name == "kendall" and a.size > KENDALL_VECTOR_MAX_N:  # pairwise signs grow as n^2: loop
                    boot = scipy.stats.bootstrap((a, b), lambda u, v: _kendall_one(u, v), paired=True, vectorized=False,
                                           n_resamples=n_resamples, method="percentile",
                                           rng=np.random.default_rng(seed))
                else:
                    batch = max(1, 2_000_000 // (a.size * a.size)) if name == "kendall" else None
                    boot = scipy.stats.bootstrap((a, b), _VEC[name], paired=True, vectorized=True, batch=batch,
                                           n_resamples=n_resamples, method="percentile",
                                           rng=np.random.default_rng(seed))
            entry["ci95"] = _ci(boot)
        out[name] = entry
    return out


def fisher_mean(rs: Sequence[float | None]) -> float | None:
    """Average correlations through Fisher's z: tanh(mean(arctanh(r))); None entries are skipped.
    An r of exactly +-1 has an infinite z: the mean is then +-1 (or undefined when both signs occur)."""
    values = np.asarray([r for r in rs if r is not None], dtype=float)
    if values.size == 0:
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        return _finite(np.tanh(np.mean(np.arctanh(values))))
