"""`python main.py align RUN --human ratings.csv`: how well does the judge agree with people?

Human ratings (a CSV with columns `pair_id`, `rater`, `dimension`, `score`, and optionally `category`)
are averaged per pair and dimension over the raters. Per dimension, per category and overall:

- judge vs humans: Spearman and Kendall (tau-b), plus Pearson, between the judge's value and the mean
  human rating, with scipy p-values and paired-bootstrap 95% CIs (`src.stats.correlations`);
- the ceiling, human vs human: the same correlations for every two raters on the pairs both rated,
  averaged over the rater pairs with Fisher's z (`src.stats.fisher_mean`: tanh(mean(arctanh(r))));
- `category_mean`: the per-category correlations averaged with Fisher's z (each category counts once),
  next to `overall`, the correlation over all pairs pooled.

The judge's value for a human dimension is the judge's own dimension of the same name when the judge
recorded one (e.g. viescore's SC/PQ), else its score; the output says which (`judge_field`). Only pairs
the judge scored and at least one human rated are used. Rows that cannot be used (a missing field, a
score that is not a number, a pair the run does not have, a repeated rater/pair/dimension) are listed
in `problems` with their line number and left out; everything else still counts.

Reads the run's report.json (or reports/<judge>/report.json with --judge); writes align.json and
align.md (default folder: RUN/align/).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
from itertools import combinations
from pathlib import Path
from typing import Any

from src.compare import CompareError, _load, _report_in, judge_folders
from src.compare_labels import LABELS, language
from src.stats import METHOD, correlations, fisher_mean

log = logging.getLogger("ieb")

REQUIRED = ("pair_id", "rater", "dimension", "score")
METHODS = ("spearman", "kendall", "pearson")
ALIGN_RESAMPLES = 1000


def read_ratings(path: Path) -> tuple[list[dict[str, Any]], list[str], bool]:
    """The usable rows of a ratings CSV, the problems found (file and line named), and whether it has a
    `category` column. A missing column is an error (CompareError)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise CompareError(f"{path}: cannot read the ratings ({e})") from None
    reader = csv.DictReader(text.splitlines())
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        import difflib

        hints = []
        for c in missing:
            close = difflib.get_close_matches(c, header, n=1)
            hints.append(f"{c!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise CompareError(f"{path}: the ratings need the columns {', '.join(REQUIRED)} (and optionally category); "
                           f"missing: {', '.join(hints)}; found: {', '.join(header) or 'no header'}")
    reader.fieldnames = header
    has_category = "category" in header
    rows, problems, seen = [], [], set()
    for line, raw in enumerate(reader, start=2):
        row = {k: (v or "").strip() if isinstance(v, str) else "" for k, v in raw.items() if k is not None}
        empty = [c for c in REQUIRED + (("category",) if has_category else ()) if not row.get(c)]
        if empty:
            problems.append(f"{path}:{line}: empty field {', '.join(empty)}")
            continue
        try:
            score = float(row["score"])
            if not math.isfinite(score):
                raise ValueError
        except ValueError:
            problems.append(f"{path}:{line}: pair {row['pair_id']!r}, rater {row['rater']!r}: score "
                            f"{row['score']!r} is not a number")
            continue
        key = (row.get("category"), row["pair_id"], row["rater"], row["dimension"])
        if key in seen:
            problems.append(f"{path}:{line}: pair {row['pair_id']!r}, rater {row['rater']!r}, dimension "
                            f"{row['dimension']!r} rated twice; the first rating is used")
            continue
        seen.add(key)
        rows.append({"line": line, "category": row.get("category"), "pair_id": row["pair_id"], "rater": row["rater"],
                     "dimension": row["dimension"], "score": score})
    return rows, problems, has_category


def align(report: dict[str, Any], rows: list[dict[str, Any]], *, has_category: bool, source: str = "ratings",
          seed: int = 0, n_resamples: int = ALIGN_RESAMPLES, dimensions: list[str] | None = None) -> dict[str, Any]:
    """The alignment of the report's judge with the human ratings (see the module docstring)."""
    problems: list[str] = []
    scored = {(p["category"], p["pair_id"]): p for p in report["pairs"]}
    by_id: dict[str, list[tuple[str, str]]] = {}
    for key in scored:
        by_id.setdefault(key[1], []).append(key)
    # ratings[(category, pair_id)][dimension][rater] = score
    ratings: dict[tuple[str, str], dict[str, dict[str, float]]] = {}
    for r in rows:
        if has_category:
            key = (r["category"], r["pair_id"])
            if key not in scored:
                problems.append(f"{source}:{r['line']}: category {r['category']!r}, pair {r['pair_id']!r} is not in the run")
                continue
        else:
            keys = by_id.get(r["pair_id"], [])
            if len(keys) != 1:
                problems.append(f"{source}:{r['line']}: pair {r['pair_id']!r} " + (
                    "is not in the run" if not keys else
                    f"is in several categories ({', '.join(k[0] for k in keys)}): add a category column"))
                continue
            key = keys[0]
        ratings.setdefault(key, {}).setdefault(r["dimension"], {})[r["rater"]] = r["score"]
    all_dims = list(dict.fromkeys(d for per in ratings.values() for d in per))
    if dimensions:
        unknown = [d for d in dimensions if d not in all_dims]
        if unknown:
            raise CompareError(f"{source}: no ratings for dimension {', '.join(map(repr, unknown))}; "
                               f"the ratings have: {', '.join(all_dims) or 'none'}")
        all_dims = dimensions
    out: dict[str, Any] = {
        "run": report["run"].get("name"), "judge": report["run"].get("judge_name"),
        "scoring_fingerprint": report["run"].get("scoring_fingerprint"),
        "uncertainty": {"method": METHOD, "seed": seed, "n_resamples": n_resamples, "confidence": 0.95},
        "averaging": "Fisher z: tanh(mean(arctanh(r))) over rater pairs (ceiling) and over categories "
                     "(category_mean); r = +-1 gives +-1",
        "problems": problems, "dimensions": {},
    }
    for dim in all_dims:
        out["dimensions"][dim] = _dimension(dim, scored, ratings, seed, n_resamples)
    return out


def _judge_value(pair: dict[str, Any], field: str) -> float | None:
    if pair["status"] != "scored" or pair["score"] is None:
        return None
    if field == "score":
        return float(pair["score"])
    value = (pair.get("dimensions") or {}).get(field)
    return float(value) if isinstance(value, (int, float)) else None


def _dimension(dim: str, scored: dict, ratings: dict, seed: int, n_resamples: int) -> dict[str, Any]:
    rated = {k: v[dim] for k, v in ratings.items() if dim in v}
    has_dim = any(isinstance((p.get("dimensions") or {}).get(dim), (int, float)) for p in scored.values())
    field = dim if has_dim else "score"
    items = []  # (category, pair_id, judge value, {rater: score})
    for key, by_rater in rated.items():
        value = _judge_value(scored[key], field)
        if value is not None:
            items.append((key[0], key[1], value, by_rater))
    categories = list(dict.fromkeys(i[0] for i in items))
    groups = {c: [i for i in items if i[0] == c] for c in categories}
    per_cat = {c: _group(g, seed, n_resamples) for c, g in groups.items()}
    overall = _group(items, seed, n_resamples)
    category_mean = {
        "judge_human": {m: fisher_mean([g["judge_human"][m]["r"] for g in per_cat.values()]) for m in METHODS},
        "human_human": {m: fisher_mean([g["human_human"][m] for g in per_cat.values()]) for m in METHODS},
        "categories": len(per_cat),
    }
    return {"judge_field": field, "pairs": len(items), "rated_pairs": len(rated),
            "not_scored_by_judge": len(rated) - len(items), "categories": per_cat, "overall": overall,
            "category_mean": category_mean,
            "pairs_used": [{"category": c, "pair_id": p, "judge": v, "human_mean": sum(r.values()) / len(r),
                            "ratings": r} for c, p, v, r in items]}


def _group(items: list, seed: int, n_resamples: int) -> dict[str, Any]:
    judge = [v for _, _, v, _ in items]
    human = [sum(r.values()) / len(r) for _, _, _, r in items]
    raters = sorted({name for _, _, _, r in items for name in r})
    pairwise = []
    for a, b in combinations(raters, 2):
        both = [(r[a], r[b]) for _, _, _, r in items if a in r and b in r]
        c = correlations([x for x, _ in both], [y for _, y in both], seed=seed, n_resamples=0, methods=METHODS)
        pairwise.append({"raters": [a, b], "n": c["n"], **{m: c[m]["r"] for m in METHODS}})
    return {"n": len(items), "raters": raters,
            "judge_human": correlations(judge, human, seed=seed, n_resamples=n_resamples, methods=METHODS),
            "human_human": {"rater_pairs": pairwise,
                            **{m: fisher_mean([p[m] for p in pairwise]) for m in METHODS}}}


# ----------------------------------------------------------------------------- command line


def write_align(result: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    from src.report import _env, _write_text

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "align.json", "md": out_dir / "align.md"}
    _write_text(paths["json"], json.dumps(result, ensure_ascii=False, indent=2))
    t = LABELS[result.get("language") or "en"]
    _write_text(paths["md"], _env(False).get_template("align.md.j2").render(a=result, t=t))
    return paths


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python main.py align",
                                description="Correlation of a run's judge with human ratings, human-human agreement "
                                            "as the ceiling (reads the run's report.json; no model runs).")
    p.add_argument("run", metavar="RUN", help="the run folder")
    p.add_argument("--human", required=True, metavar="CSV",
                   help="ratings: columns pair_id, rater, dimension, score (and optionally category)")
    p.add_argument("--dimension", action="append", help="only this human dimension (repeatable; default: all)")
    p.add_argument("--judge", help="use the run's reports/<JUDGE>/report.json instead of its latest report.json")
    p.add_argument("--out", help="output folder for align.json/.md (default: RUN/align)")
    p.add_argument("--language", choices=("auto", "en", "zh"), default="auto",
                   help="labels of align.md (auto: Chinese when a category name is Chinese)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (recorded in align.json)")
    p.add_argument("--n-resamples", type=int, default=ALIGN_RESAMPLES, help="bootstrap resamples")
    return p


def align_main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from src.cli import setup_console_logging

    setup_console_logging()
    try:
        run = Path(args.run)
        report_path = _report_in(run, args.judge)
        if not report_path.is_file():
            raise CompareError(f"{run}: no {report_path.relative_to(run)} (a finished run folder holds one"
                               + (f"; judges with reports: {', '.join(judge_folders(run)) or 'none'})" if args.judge
                                  else ")"))
        report = _load(report_path)
        human = Path(args.human)
        rows, problems, has_category = read_ratings(human)
        result = align(report, rows, has_category=has_category, source=str(human), seed=args.seed,
                       n_resamples=args.n_resamples, dimensions=args.dimension)
        result["problems"] = problems + result["problems"]
        result["ratings"] = str(human)
        result["language"] = language(args.language, report.get("categories") or {})
        for p in result["problems"]:
            log.warning("%s", p)
        if not any(d["pairs"] for d in result["dimensions"].values()):
            raise CompareError(f"{human}: no rated pair was scored by the judge of {report_path}; nothing to correlate")
        paths = write_align(result, Path(args.out) if args.out else run / "align")
    except CompareError as e:
        log.error("%s", e)
        return 2
    for dim, d in result["dimensions"].items():
        jh, hh = d["overall"]["judge_human"], d["overall"]["human_human"]
        print(f"{dim} ({d['pairs']} pairs): judge-human Spearman {_f(jh['spearman']['r'])}, "
              f"human-human {_f(hh['spearman'])}", flush=True)
    for kind, path in paths.items():
        print(f"align ({kind}): {path}", flush=True)
    return 0


def _f(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"
