"""Statistics for comparing runs, judges and humans: paired differences, correlations, Fisher z.

Everything here is scipy.stats / numpy; nothing is hand-rolled beyond bookkeeping. Every function is
deterministic given `seed` (bootstrap resampling uses `numpy.random.default_rng(seed)`), and returns
plain dicts (JSON-ready; `None` where a number does not exist, e.g. a correlation of a constant).

- `mean_ci`: mean, standard error and a 95% percentile-bootstrap CI of one sample.
- `paired_difference`: mean of the per-pair differences a - b, its bootstrap CI, a paired-bootstrap
  p-value (the CI inverted: twice the smaller tail of the bootstrap distribution beyond 0) and the
  Wilcoxon signed-rank p-value (scipy.stats.wilcoxon).
- `correlations`: Spearman, Kendall (tau-b) and Pearson, each with its scipy p-value and a
  paired-bootstrap 95% CI (pairs resampled together).
- `fisher_mean`: the average of several correlations through Fisher's z: tanh(mean(arctanh(r))).
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Sequence

import numpy as np
from scipy import stats

N_RESAMPLES = 2000
METHOD = "percentile bootstrap (scipy.stats.bootstrap)"


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


def mean_ci(values: Sequence[float], *, seed: int = 0, n_resamples: int = N_RESAMPLES) -> dict[str, Any]:
    """{mean, se, ci95: [lo, hi], n}; se is the sample std / sqrt(n); the CI needs n >= 2."""
    x = np.asarray(values, dtype=float)
    n = int(x.size)
    if n == 0:
        return {"mean": None, "se": None, "ci95": [None, None], "n": 0}
    mean = float(x.mean())
    if n < 2:
        return {"mean": mean, "se": None, "ci95": [None, None], "n": n}
    se = float(stats.sem(x))
    if np.all(x == x[0]):
        return {"mean": mean, "se": se, "ci95": [mean, mean], "n": n}
    res = stats.bootstrap((x,), np.mean, n_resamples=n_resamples, method="percentile", vectorized=True,
                          rng=np.random.default_rng(seed))
    return {"mean": mean, "se": se, "ci95": _ci(res), "n": n}


def paired_difference(a: Sequence[float], b: Sequence[float], *, seed: int = 0,
                      n_resamples: int = N_RESAMPLES) -> dict[str, Any]:
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
    out["se"] = float(stats.sem(d))
    if np.all(d == d[0]):  # no variation: every resample has the same mean
        out["ci95"] = [float(d[0]), float(d[0])]
        out["p_bootstrap"] = 1.0 if d[0] == 0 else 0.0
    else:
        res = stats.bootstrap((d,), np.mean, n_resamples=n_resamples, method="percentile", vectorized=True,
                              rng=np.random.default_rng(seed))
        out["ci95"] = _ci(res)
        dist = np.asarray(res.bootstrap_distribution, dtype=float)
        out["p_bootstrap"] = float(min(1.0, 2 * min(np.mean(dist <= 0), np.mean(dist >= 0))))
    if np.any(d != 0):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out["p_wilcoxon"] = _finite(stats.wilcoxon(d).pvalue)
    else:
        out["p_wilcoxon"] = 1.0
    return out


_CORR = {"spearman": stats.spearmanr, "kendall": stats.kendalltau, "pearson": stats.pearsonr}


def _pearson_vec(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        return stats.pearsonr(x, y, axis=axis).statistic  # nan for a constant resample


def _spearman_vec(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """Spearman's rho of many resamples at once: Pearson's r of the ranks (average ties), as scipy defines it."""
    return _pearson_vec(stats.rankdata(x, axis=axis), stats.rankdata(y, axis=axis), axis=axis)


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
    return float(stats.kendalltau(x, y).statistic)


KENDALL_VECTOR_MAX_N = 150
_VEC = {"spearman": _spearman_vec, "kendall": _kendall_vec, "pearson": _pearson_vec}


def correlations(x: Sequence[float], y: Sequence[float], *, seed: int = 0, n_resamples: int = 1000,
                 methods: Sequence[str] = ("spearman", "kendall", "pearson")) -> dict[str, Any]:
    """{n, spearman: {r, p, ci95}, kendall: {...}, pearson: {...}}: r and p from scipy.stats, the CI a
    percentile bootstrap resampling the pairs together; r is None when undefined (fewer than 3 pairs, or
    one side constant). Resamples where r is undefined (constant) are left out of the CI."""
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
                if name == "kendall" and a.size > KENDALL_VECTOR_MAX_N:  # pairwise signs grow as n^2: loop
                    boot = stats.bootstrap((a, b), lambda u, v: _kendall_one(u, v), paired=True, vectorized=False,
                                           n_resamples=n_resamples, method="percentile",
                                           rng=np.random.default_rng(seed))
                else:
                    batch = max(1, 2_000_000 // (a.size * a.size)) if name == "kendall" else None
                    boot = stats.bootstrap((a, b), _VEC[name], paired=True, vectorized=True, batch=batch,
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
