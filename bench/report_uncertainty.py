"""What the 95% bootstrap CIs and the benchmark score cost when a report is built.

    python bench/report_uncertainty.py            # 1,000 and 10,000 synthetic pairs, GEdit-like and KRIS-like
    python bench/report_uncertainty.py --quick    # smoke: 100 pairs

Timed: `src.report.aggregate(pairs, categories, seed=0)` — every aggregate of report.json from its pairs
(per-category and overall means with CIs for the score and every dimension, the macro mean, the benchmark
score section), the default 2,000 resamples — against the same summaries without uncertainty
(`summarize(pairs)` per category and overall, what a report cost before CIs). The pairs are synthetic
report entries (no model, no run folder): GEdit-like (22 categories = 11 task types x 2 languages, the 7
viescore dimensions, 1 pair in 37 a judge failure) and KRIS-like (20 sub-tasks, 4 dimensions). Best of
`--repeats` runs, after waiting for the shared CPUs to be mostly idle (`cpu_busy_before`).
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import save_result, table, wait_quiet  # noqa: E402
from src.report import aggregate, summarize  # noqa: E402
from src.scoring.headline import GEDIT_TASKS, KRIS_SUBTASK_OF  # noqa: E402


def gedit_pairs(n: int, rng: random.Random) -> list[dict]:
    pairs = []
    for i in range(n):
        task, lang = GEDIT_TASKS[i % 11], ("en", "cn")[(i // 11) % 2]
        sc, pq = rng.randint(0, 10), rng.randint(0, 10)
        ok = i % 37 != 0
        dims = {"editing_success": sc, "over_editing": sc, "naturalness": pq, "artifacts": pq, "SC": sc, "PQ": pq,
                "overall": math.sqrt(sc * pq)}
        pairs.append({"pair_id": str(i), "category": f"{task}_{lang}", "status": "scored" if ok else "score_failed",
                      "score": dims["overall"] if ok else None, "dimensions": dims if ok else None,
                      "metadata": {"source_format": "gedit", "task_type": task, "instruction_language": lang,
                                   "Intersection_exist": i % 3 != 0}})
    return pairs


def kris_pairs(n: int, rng: random.Random) -> list[dict]:
    subs = sorted(KRIS_SUBTASK_OF)
    pairs = []
    for i in range(n):
        sub = subs[i % len(subs)]
        dims = {k: rng.randint(1, 5) for k in ("consistency", "instruction", "quality", "knowledge")}
        dims["overall"] = sum(dims.values()) / 4
        pairs.append({"pair_id": str(i), "category": sub, "status": "scored", "score": dims["overall"],
                      "dimensions": dims, "metadata": {"source_format": "kris", "sub_task": sub}})
    return pairs


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke mode: 100 pairs, one repeat")
    ap.add_argument("--sizes", default="1000,10000", help="numbers of pairs (comma-separated)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--results-dir", type=Path, default=None)
    args = ap.parse_args(argv)
    sizes = [100] if args.quick else [int(s) for s in args.sizes.split(",")]
    repeats = 1 if args.quick else args.repeats
    rows = []
    for kind, make in (("gedit", gedit_pairs), ("kris", kris_pairs)):
        for n in sizes:
            pairs = make(n, random.Random(n))
            cats = list(dict.fromkeys(p["category"] for p in pairs))
            busy = wait_quiet() if not args.quick else None
            plain = best_of(lambda: ([summarize([p for p in pairs if p["category"] == c]) for c in cats],
                                     summarize(pairs)), repeats)
            full = best_of(lambda: aggregate(pairs, cats, seed=0), repeats)
            rows.append({"benchmark": kind, "pairs": n, "categories": len(cats), "summaries_s": round(plain, 3),
                         "aggregate_with_ci_s": round(full, 3), "cpu_busy_before": busy})
    print(table(["benchmark", "pairs", "categories", "summaries only (s)", "with CIs + benchmark score (s)",
                 "cpu busy before"],
                [[r["benchmark"], r["pairs"], r["categories"], r["summaries_s"], r["aggregate_with_ci_s"],
                  r["cpu_busy_before"]] for r in rows]))
    path = save_result("report_uncertainty", {"settings": {"sizes": sizes, "repeats": repeats, "n_resamples": 2000},
                                              "rows": rows}, args.results_dir)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
