"""Judge agreement: several judges that scored the same edits of one run.

For every two judges, on the pairs both scored (the same edit: a judge's score is only shown for the
edit it scored), per category and overall: Spearman, Kendall (tau-b) and Pearson with scipy p-values
and paired-bootstrap 95% CIs (`src.stats.correlations`), and the pairs where they disagree
most. Judges may use different scales (0–10, 1–5), so disagreement is measured on ranks: each score
becomes its percentile rank among that judge's scores of the common pairs (`scipy.stats.rankdata`,
average ties, divided by n), and the disagreement of a pair is the absolute difference of its two
percentile ranks (0 = same place in both orderings, ~1 = opposite ends); pairs in the same place are
never listed.

Built from report dicts alone (their `pairs`), so every number is recomputable from the reports.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

import numpy as np
from scipy import stats

from src.stats import METHOD, correlations

AGREEMENT_RESAMPLES = 1000
TOP_DISAGREEMENTS = 10


def _scored(report: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(p["category"], p["pair_id"]): p for p in report["pairs"]
            if p["status"] == "scored" and p["score"] is not None}


def judge_agreement(reports: dict[str, dict[str, Any]], *, seed: int = 0,
                    n_resamples: int = AGREEMENT_RESAMPLES, top: int = TOP_DISAGREEMENTS) -> dict[str, Any]:
    """`reports`: judge label -> its report of the run. Returns {uncertainty, pairs: [one entry per
    two judges]}; empty `pairs` with fewer than two judges."""
    out: dict[str, Any] = {"uncertainty": {"method": METHOD, "seed": seed, "n_resamples": n_resamples,
                                           "confidence": 0.95},
                           "disagreement": "absolute difference of the pair's percentile ranks (average ties) "
                                           "among each judge's scores of the common pairs",
                           "judge_pairs": []}
    scored = {name: _scored(rep) for name, rep in reports.items()}
    for a, b in combinations(reports, 2):
        keys = [k for k in scored[a] if k in scored[b]]
        x = np.array([scored[a][k]["score"] for k in keys], dtype=float)
        y = np.array([scored[b][k]["score"] for k in keys], dtype=float)
        categories: dict[str, Any] = {}
        for cat in dict.fromkeys(k[0] for k in keys):
            idx = [i for i, k in enumerate(keys) if k[0] == cat]
            categories[cat] = correlations(x[idx], y[idx], seed=seed, n_resamples=n_resamples)
        entry: dict[str, Any] = {"judges": [a, b], "n": len(keys),
                                 "overall": correlations(x, y, seed=seed, n_resamples=n_resamples),
                                 "categories": categories, "disagreements": []}
        if keys:
            ra = stats.rankdata(x) / len(keys)
            rb = stats.rankdata(y) / len(keys)
            gap = np.abs(ra - rb)
            order = [i for i in sorted(range(len(keys)), key=lambda i: (-gap[i], keys[i])) if gap[i] > 0][:top]
            for i in order:
                p = scored[a][keys[i]]
                entry["disagreements"].append({
                    "category": keys[i][0], "pair_id": keys[i][1], "instruction": p.get("instruction"),
                    "edited_image": p.get("edited_image"), "scores": {a: float(x[i]), b: float(y[i])},
                    "percentile_ranks": {a: float(ra[i]), b: float(rb[i])}, "disagreement": float(gap[i])})
        out["judge_pairs"].append(entry)
    return out
