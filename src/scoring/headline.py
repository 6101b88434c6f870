"""Benchmark scores as the public benchmarks define them: the `headline` section of report.json.

Built from the report's `pairs` alone (status, dimensions, metadata), like every other number of a report.
The benchmark is chosen by `metadata["source_format"]` of the pairs (or the configured `benchmark.format`):

- GEdit-Bench ("gedit"), mirrors `analyze_scores` in GEdit-Bench/calculate_statistics.py of the Step1X-Edit
  repository: per pair O = sqrt(SC * PQ) (VIEScore); per instruction language (metadata
  `instruction_language`, "en" / "cn"), the mean over the 11 task types (`task_type`) of the per-task means of
  SC, PQ and O; the same on the pairs with `Intersection_exist` true. A task type without scored pairs makes
  the official number NaN; we average over the task types that have scored pairs and list the missing ones.
- KRIS-Bench ("kris"), mirrors `summarize_benchmark_scores_with_normalization` in eval/gen/kris/summarize.py
  (the KRIS summary script shipped with ByteDance's BAGEL evaluation code): every metric value s (1-5) becomes
  (s - 1) * 25; per sub-task (the 20 data folders) the mean per metric; per type (7 "dimensions": Attribute
  Perception ... Instruction Decomposition) the mean per metric and AVG = the mean of all metric values of the
  type pooled together; per knowledge type (Factual / Conceptual / Procedural) and Overall the pooled AVG.
  Which metrics count depends on the type (knowledge only for Social Science, Natural Science, Logical
  Reasoning), not on what the pair holds. Metric values the official code could not parse are dropped.
- RISEBench ("rise"), mirrors `calculate_score`, `calculate_completion` and the aggregation in `main` of
  gpt_eval.py (PhoenixZ810/RISEBench): per pair, temporal / causal / spatial: 0.3 C + 0.5 R + 0.2 P, or
  0.2 P + 0.8 R when the pair is `consistency_free`; logical: 0.3 C + 0.7 R (C and R already mapped from the
  binary judgement to 1 / 5, as the official code does); then, when R == 1, the score is halved and raised
  to 1 if below (score = max(1, score / 2)). Accuracy = share of pairs with every required dimension at 5
  ("complete"). Per category, per subtask and overall: mean score, its percentage 25 * (mean - 1), accuracy,
  and the mean of each dimension. The official accuracy counts unparsed pairs as not complete (its
  denominator is every sample); the official score drops them.
  Consistency-free pairs: the copy of gpt_eval.py we read (commit 674f864) also required C == 5 for them, so
  they could never be complete; later RISE result sheets count them complete on R == 5 and P == 5, which is
  the rule we apply.
- ImgEdit ("imgedit"), mirrors Benchmark/Basic/step1_get_avgscore.py (`extract_scores_and_average`) and
  step2_typescore.py (`compute_edit_type_averages`) of PKU-YuanGroup/ImgEdit: per pair the mean of its rubric
  scores rounded to 2 decimals; per `edit_type` the mean of those, rounded to 2 decimals. The official scripts
  stop there; our "overall" is the mean of the per-type means (unrounded), which is how the paper's Overall
  column reads. The official values (with their rounding) are given as `official`; our `scored` value is the
  same mean without rounding, with its CI.

Failures: the official scripts guess a random score after a failed parse (VIEScore's `give_up_parsing`) or
drop the pair. We never invent a score. Every number comes twice: `scored` (mean over the pairs the judge
scored — what the official scripts report when nothing was guessed) and `all_pairs` (every pair of the
benchmark, a failed or missing one counted as the scale's floor: 0 on GEdit's 0-10, on KRIS's and RISE's
0-100 and on accuracy, 1 on the 1-5 scales of RISE's raw score and ImgEdit), so an editor that fails the
hard pairs does not look better. `coverage` = scored pairs / pairs next to every number.

Pairs never edited have no metadata in the report; their group is read from their category (the readers
name GEdit categories `<task_type>_<language>`, KRIS ones by sub-task, RISE ones by category, ImgEdit ones
by edit type), so they still count in `all_pairs` and coverage. See docs/benchmark-scores.md.

Uncertainty: every number has `se` and a 95% percentile-bootstrap `ci95` (src/stats.py), resampling pairs
within the strata the number is built from (tasks for GEdit's mean over task types), or whole pairs for the
pooled KRIS averages; deterministic given the seed.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from typing import Any, Callable

import numpy as np

from src import stats
from src.data import kris as kris_format

FORMATS = ("gedit", "kris", "rise", "imgedit")

GEDIT_TASKS = ("background_change", "color_alter", "material_alter", "motion_change", "ps_human", "style_change",
               "subject-add", "subject-remove", "subject-replace", "text_change", "tone_transfer")

# KRIS-Bench's groups, one table for the reader and the score: sub-task folders by dimension (7), the
# dimensions whose tasks are judged on knowledge too, dimensions by knowledge type (3)
KRIS_TYPES = kris_format.DIMENSIONS
KRIS_KNOWLEDGE_TYPES = kris_format.KNOWLEDGE_DIMENSIONS
KRIS_META = kris_format.KNOWLEDGE_TYPES
# official short name -> our dimension name(s) (the first one present is used)
KRIS_METRICS: dict[str, tuple[str, ...]] = {
    "VC": ("consistency",), "VQ": ("quality",), "IF": ("instruction", "instruction_following"),
    "KP": ("knowledge",),
}
KRIS_SUBTASK_OF = {sub: t for t, subs in KRIS_TYPES.items() for sub in subs}


def _key(text: Any) -> str:
    """A task name compared loosely: case, '-', ' ' and '_' do not matter ('rule-based_reasoning')."""
    return re.sub(r"[\W_]+", "_", str(text).strip().lower()).strip("_")


KRIS_SUBTASK_BY_KEY = {_key(sub): sub for sub in KRIS_SUBTASK_OF}

RISE_CATEGORIES = {"temporal_reasoning": "Temporal", "causal_reasoning": "Causal", "spatial_reasoning": "Spatial",
                   "logical_reasoning": "Logical"}
RISE_DIMS = {"C": "consistency", "R": "reasoning", "P": "appearance"}  # RISE: ApprConsistency, Reasoning, Plausibility

MIRRORS = {
    "gedit": "Step1X-Edit GEdit-Bench/calculate_statistics.py: analyze_scores",
    "kris": "BAGEL eval/gen/kris/summarize.py: summarize_benchmark_scores_with_normalization",
    "rise": "RISEBench gpt_eval.py: calculate_score, calculate_completion, main",
    "imgedit": "ImgEdit Benchmark/Basic/step1_get_avgscore.py + step2_typescore.py",
}


# ----------------------------------------------------------------------------- which benchmark


def detect_format(pairs: list[dict[str, Any]], configured: str | None = None) -> tuple[str | None, str | None]:
    """(format, why-not): the public format of the pairs, or None with the reason there is no headline."""
    if configured and configured not in ("auto", "native"):
        if configured not in FORMATS:
            return None, f"benchmark.format {configured!r} has no benchmark score (known: {', '.join(FORMATS)})"
        return configured, None
    found = sorted({str(p["metadata"]["source_format"]) for p in pairs
                    if (p.get("metadata") or {}).get("source_format") is not None})
    public = [f for f in found if f != "native"]
    if not public:
        return None, "the pairs are in the project's own format: no paper-defined benchmark score"
    if len(found) > 1:
        return None, f"the pairs come from several formats ({', '.join(found)}): no single benchmark score"
    if public[0] not in FORMATS:
        return None, f"source_format {public[0]!r} has no benchmark score (known: {', '.join(FORMATS)})"
    return public[0], None


def build_headline(pairs: list[dict[str, Any]], *, seed: int, configured_format: str | None = None,
                   n_resamples: int = stats.DEFAULT_N_RESAMPLES) -> dict[str, Any]:
    fmt, why = detect_format(pairs, configured_format)
    if fmt is None:
        return {"format": None, "reason": why}
    builder: Callable[[_Ctx], None] = {"gedit": _gedit, "kris": _kris, "rise": _rise, "imgedit": _imgedit}[fmt]
    ctx = _Ctx(pairs, seed, n_resamples)
    builder(ctx)
    counts = {s: sum(1 for p in pairs if p["status"] == s)
              for s in ("scored", "invalid_input", "edit_failed", "score_failed", "pending")}
    return {"format": fmt, "mirrors": MIRRORS[fmt], "scale": ctx.scale, "notes": ctx.notes,
            "pairs": len(pairs), "status_counts": counts, "numbers": ctx.numbers, "breakdown": ctx.breakdown,
            "problems": [f"pair {where}: {what}" for where, what in ctx.problems],
            "problem_summary": _summary(ctx.problems)}


def _summary(problems: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """The problems grouped by what went wrong (a judge without the benchmark's protocol gives the same
    message for every pair): [{problem, pairs, first}] in order of first appearance."""
    groups: dict[str, dict[str, Any]] = {}
    for where, what in problems:
        g = groups.setdefault(what, {"problem": what, "pairs": 0, "first": where})
        g["pairs"] += 1
    return list(groups.values())


# ----------------------------------------------------------------------------- shared machinery


class _Ctx:
    def __init__(self, pairs: list[dict[str, Any]], seed: int, n_resamples: int):
        self.pairs = pairs
        self.seed = seed
        self.n_resamples = n_resamples
        self.numbers: list[dict[str, Any]] = []
        self.breakdown: list[dict[str, Any]] = []
        self.problems: list[tuple[str, str]] = []  # (category/pair, field: message)
        self._seen: set[tuple[str, str]] = set()
        self.notes: list[str] = []
        self.scale = ""

    def problem(self, p: dict[str, Any], field: str, msg: str) -> None:
        item = (f"{p['category']}/{p['pair_id']}", f"{field}: {msg}")
        if item not in self._seen:  # a pair can be looked at twice (GEdit's full set and intersection subset)
            self._seen.add(item)
            self.problems.append(item)

    def mean(self, values: list[float]) -> dict[str, Any]:
        out = stats.mean_ci(values, seed=self.seed, n_resamples=self.n_resamples)
        return {"value": out["mean"], "se": out["se"], "ci95": out["ci95"], "n": out["n"]}

    def mean_of_means(self, groups: list[list[float]]) -> dict[str, Any]:
        present = [g for g in groups if g]
        if not present:
            return {"value": None, "se": None, "ci95": None, "n": 0}
        return stats.strata_ci(present, mean_of_means, seed=self.seed, n_resamples=self.n_resamples)

    def pooled(self, units: list[tuple[float, int]]) -> dict[str, Any]:
        return stats.ratio_ci([u[0] for u in units], [u[1] for u in units], seed=self.seed,
                              n_resamples=self.n_resamples)


def mean_of_means(*groups: np.ndarray, axis: int = -1) -> np.ndarray:
    """The mean of the group means (vectorized for scipy.stats.bootstrap)."""
    return np.mean([g.mean(axis=axis) for g in groups], axis=0)


def _entry(group: str, metric: str, scored: dict[str, Any], all_pairs: dict[str, Any], n_scored: int,
           n_pairs: int, failure_value: float, **extra: Any) -> dict[str, Any]:
    return {"group": group, "metric": metric, "scored": scored, "all_pairs": all_pairs,
            "coverage": {"scored": n_scored, "pairs": n_pairs, "fraction": (n_scored / n_pairs) if n_pairs else None},
            "failure_value": failure_value, **extra}


def _affine(stat: dict[str, Any], scale: float, shift: float) -> dict[str, Any]:
    """The statistic of scale * (x + shift) (a linear map keeps percentile intervals and scales se)."""
    f = (lambda v: None if v is None else scale * (v + shift))
    return {"value": f(stat["value"]), "se": None if stat["se"] is None else abs(scale) * stat["se"],
            "ci95": None if stat["ci95"] is None else sorted(f(v) for v in stat["ci95"]), "n": stat["n"]}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)) and math.isfinite(float(value)):
        return float(value)
    return None


def _flag(value: Any) -> bool | None:
    """A yes/no metadata field as the benchmark files write it; None when it is neither."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.strip().lower() in ("true", "1", "yes")
    return None


def _present(value: Any) -> bool:
    """A RISE optional field is set: present and not null / NaN, as the official eval_vanilla asks
    (`not pd.isna(item[field])`) and the rise protocol decides which queries a pair gets."""
    return value is not None and not (isinstance(value, float) and math.isnan(value))


# ----------------------------------------------------------------------------- GEdit-Bench


def _gedit(ctx: _Ctx) -> None:
    ctx.scale = "0-10 (VIEScore); O = sqrt(SC * PQ) per pair"
    by_lang: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for p in ctx.pairs:
        md = p.get("metadata") or {}
        lang, task = md.get("instruction_language"), md.get("task_type")
        if lang is None or task is None:  # a pair never edited has no metadata: its category is task_lang
            task, _, lang = str(p["category"]).rpartition("_")
            if task not in GEDIT_TASKS or not lang:
                ctx.problem(p, "instruction_language/task_type", "missing, and the category is not "
                                                                 "<task type>_<language>; left out")
                continue
            p = {**p, "metadata": {**md, "task_type": task, "instruction_language": lang}}
        if task not in GEDIT_TASKS:
            ctx.problem(p, "task_type", f"{task!r} is not one of the 11 GEdit-Bench task types; left out")
            continue
        by_lang[str(lang)].append(p)
    langs = sorted(by_lang, key=lambda lang: ({"en": 0, "cn": 1}.get(lang, 2), lang))
    for lang in langs:
        full = by_lang[lang]
        inter = []
        for p in full:
            raw = p["metadata"].get("Intersection_exist")
            flag = _flag(raw)
            if flag is None:
                ctx.problem(p, "Intersection_exist", ("missing" if raw is None else f"{raw!r} is not true/false")
                            + "; left out of the intersection subset")
            elif flag:
                inter.append(p)
        for subset, label in ((full, lang), (inter, f"{lang} ∩ intersection")):
            _gedit_subset(ctx, subset, label)


def _gedit_values(ctx: _Ctx, p: dict[str, Any]) -> dict[str, float] | None:
    if p["status"] != "scored":
        return None
    dims = p.get("dimensions") or {}
    sc, pq = _number(dims.get("SC")), _number(dims.get("PQ"))
    if sc is None or pq is None:
        ctx.problem(p, "dimensions", "no SC/PQ: the GEdit score needs the viescore protocol; counted as a failure")
        return None
    return {"SC": sc, "PQ": pq, "O": math.sqrt(sc * pq)}


def _gedit_subset(ctx: _Ctx, subset: list[dict[str, Any]], label: str) -> None:
    by_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for p in subset:
        by_task[p["metadata"]["task_type"]].append(p)
    tasks = [t for t in GEDIT_TASKS if t in by_task]
    values = {t: [_gedit_values(ctx, p) for p in by_task[t]] for t in tasks}
    scored = {m: {t: [v[m] for v in values[t] if v is not None] for t in tasks} for m in ("SC", "PQ", "O")}
    every = {m: {t: [v[m] if v is not None else 0.0 for v in values[t]] for t in tasks} for m in ("SC", "PQ", "O")}
    for metric in ("SC", "PQ", "O"):
        s, e = scored[metric], every[metric]
        ctx.numbers.append(_entry(label, metric, ctx.mean_of_means(list(s.values())),
                                  ctx.mean_of_means(list(e.values())), sum(len(v) for v in s.values()),
                                  len(subset), 0.0, tasks_averaged=sum(1 for t in tasks if s[t]),
                                  tasks_without_scores=[t for t in GEDIT_TASKS if not s.get(t)]))
    for t in tasks:
        for metric in ("SC", "PQ", "O"):
            s, e = scored[metric][t], every[metric][t]
            ctx.breakdown.append(_entry(f"{label} · {t}", metric, ctx.mean(s), ctx.mean(e), len(s), len(e), 0.0))


# ----------------------------------------------------------------------------- KRIS-Bench


def _kris_subtask(p: dict[str, Any]) -> str | None:
    md = p.get("metadata") or {}
    candidates = [md.get(k) for k in ("sub_task", "subtask", "task", "category")]
    candidates += [p["category"], str(p["category"]).rsplit("/", 1)[-1]]
    for c in candidates:
        if isinstance(c, str) and _key(c) in KRIS_SUBTASK_BY_KEY:
            return KRIS_SUBTASK_BY_KEY[_key(c)]
    return None


def _kris_values(ctx: _Ctx, p: dict[str, Any], metrics: tuple[str, ...]) -> dict[str, float] | None:
    """Normalised (s - 1) * 25 values of the type's metrics that the pair holds; None if not scored."""
    if p["status"] != "scored":
        return None
    dims = p.get("dimensions") or {}
    out = {}
    for m in metrics:
        for name in KRIS_METRICS[m]:
            v = _number(dims.get(name))
            if v is not None:
                out[m] = (v - 1.0) * 25.0
                break
    if not out:
        ctx.problem(p, "dimensions", f"none of the KRIS metrics ({', '.join(metrics)}) present; counted as a failure")
        return None
    return out


def _kris(ctx: _Ctx) -> None:
    ctx.scale = "0-100: (s - 1) * 25 of every 1-5 metric value"
    by_sub: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for p in ctx.pairs:
        sub = _kris_subtask(p)
        if sub is None:
            ctx.problem(p, "sub-task", f"category {p['category']!r} / metadata name none of the 20 KRIS-Bench "
                                       "sub-tasks; left out")
            continue
        by_sub[sub].append(p)
    # per pair: (type, its metric values or None) ; units for pooled averages: (sum, count)
    type_units: dict[str, tuple[list, list]] = {t: ([], []) for t in KRIS_TYPES}
    for t, subs in KRIS_TYPES.items():
        metrics = ("VC", "VQ", "IF", "KP") if t in KRIS_KNOWLEDGE_TYPES else ("VC", "VQ", "IF")
        type_vals: dict[str, tuple[list, list]] = {m: ([], []) for m in metrics}  # (scored, every)
        n_type = 0
        for sub in subs:
            if sub not in by_sub:
                continue
            sub_pairs = by_sub[sub]
            n_type += len(sub_pairs)
            vals = [_kris_values(ctx, p, metrics) for p in sub_pairs]
            scored_units, every_units = type_units[t]
            for v in vals:
                if v is not None:
                    scored_units.append((sum(v.values()), len(v)))
                    every_units.append((sum(v.values()), len(v)))
                else:
                    every_units.append((0.0, len(metrics)))
            for m in metrics:
                s = [v[m] for v in vals if v is not None and m in v]
                e = [v[m] if v is not None else 0.0 for v in vals if v is None or m in v]
                type_vals[m][0].extend(s)
                type_vals[m][1].extend(e)
                ctx.breakdown.append(_entry(f"{t} · {sub}", m, ctx.mean(s), ctx.mean(e), len(s), len(sub_pairs), 0.0))
        if not n_type:
            continue
        for m in metrics:
            s, e = type_vals[m]
            ctx.numbers.append(_entry(t, m, ctx.mean(s), ctx.mean(e), len(s), n_type, 0.0))
        scored_units, every_units = type_units[t]
        ctx.numbers.append(_entry(t, "AVG", ctx.pooled(scored_units), ctx.pooled(every_units), len(scored_units),
                                  n_type, 0.0))
    for meta, children in [*KRIS_META.items(), ("Overall", tuple(KRIS_TYPES))]:
        scored_units = [u for c in children for u in type_units[c][0]]
        every_units = [u for c in children for u in type_units[c][1]]
        if every_units:
            ctx.numbers.append(_entry(meta, "AVG", ctx.pooled(scored_units), ctx.pooled(every_units),
                                      len(scored_units), len(every_units), 0.0))
    ctx.notes.append("AVG pools every metric value of the group (a knowledge task's pair counts 4 values, "
                     "others 3), as the official summary does; its CI resamples whole pairs.")


# ----------------------------------------------------------------------------- RISEBench


def _rise_pair(ctx: _Ctx, p: dict[str, Any], cat: str) -> dict[str, Any] | None:
    """{score, complete, C, R, P} of a scored pair, by the official formulas; None if it cannot be scored."""
    if p["status"] != "scored":
        return None
    dims = p.get("dimensions") or {}
    logical = cat == "logical_reasoning"
    free = (not logical) and _present((p.get("metadata") or {}).get("consistency_free"))
    v = {k: _number(dims.get(name)) for k, name in RISE_DIMS.items()}
    need = ["R"] + ([] if free else ["C"]) + ([] if logical else ["P"])
    missing = [RISE_DIMS[k] for k in need if v[k] is None]
    if missing:
        ctx.problem(p, "dimensions", f"no {', '.join(missing)}: counted as a failure")
        return None
    c, r, q = v["C"], v["R"], v["P"]
    if logical:
        score = 0.3 * c + 0.7 * r
    elif free:
        score = 0.2 * q + 0.8 * r
    else:
        score = 0.3 * c + 0.5 * r + 0.2 * q
    if r == 1:
        score = max(1.0, score * 0.5)
    complete = r == 5 and (free or c == 5) and (logical or q == 5)
    return {"score": score, "complete": 1.0 if complete else 0.0, "C": None if free else c, "R": r,
            "P": None if logical else q}


def _rise(ctx: _Ctx) -> None:
    ctx.scale = "score 1-5 (percentage = 25 * (score - 1)); accuracy 0-1; dimensions 1-5"
    rows: list[tuple[str, Any, dict[str, Any] | None, set[str]]] = []  # (category, subtask, values, dims used)
    for p in ctx.pairs:
        md = p.get("metadata") or {}
        cat = md.get("category") if md.get("category") in RISE_CATEGORIES else (
            p["category"] if p["category"] in RISE_CATEGORIES else None)
        if cat is None:
            ctx.problem(p, "category", f"none of {', '.join(RISE_CATEGORIES)}; left out")
            continue
        logical = cat == "logical_reasoning"
        used = {"R"} | (set() if (not logical and _present(md.get("consistency_free"))) else {"C"}) | (
            set() if logical else {"P"})
        rows.append((cat, md.get("subtask"), _rise_pair(ctx, p, cat), used))

    def add(target: list, group: str, sel: list, dims: bool) -> None:
        vals = [r[2] for r in sel]
        scored = [v for v in vals if v is not None]
        s = ctx.mean([v["score"] for v in scored])
        e = ctx.mean([v["score"] if v is not None else 1.0 for v in vals])
        n = len(scored)
        target.append(_entry(group, "score", s, e, n, len(vals), 1.0))
        target.append(_entry(group, "score %", _affine(s, 25.0, -1.0), _affine(e, 25.0, -1.0), n, len(vals), 0.0))
        target.append(_entry(group, "accuracy", ctx.mean([v["complete"] for v in scored]),
                             ctx.mean([v["complete"] if v is not None else 0.0 for v in vals]), n, len(vals), 0.0,
                             official_variant="all_pairs"))
        if not dims:
            return
        for k, name in (("R", "reasoning"), ("C", "consistency"), ("P", "appearance")):
            applies = [r for r in sel if k in r[3]]
            if not applies:
                continue
            sv = [r[2][k] for r in applies if r[2] is not None]
            ev = [r[2][k] if r[2] is not None else 1.0 for r in applies]
            target.append(_entry(group, name, ctx.mean(sv), ctx.mean(ev), len(sv), len(ev), 1.0))

    add(ctx.numbers, "Overall", rows, True)
    for cat, label in RISE_CATEGORIES.items():
        sel = [r for r in rows if r[0] == cat]
        if sel:
            add(ctx.numbers, label, sel, True)
    subtasks = sorted({(r[0], r[1]) for r in rows if r[1] is not None},
                      key=lambda cs: (list(RISE_CATEGORIES).index(cs[0]), str(cs[1])))
    for cat, sub in subtasks:
        add(ctx.breakdown, f"{RISE_CATEGORIES[cat]} · {sub}", [r for r in rows if r[0] == cat and r[1] == sub], False)
    ctx.notes.append("accuracy: the official script counts an unparsed pair as not complete (its `all_pairs` "
                     "value); its score drops such pairs (the `scored` value). Dimension means leave out the "
                     "dimensions a pair has no judgement for (consistency of consistency-free pairs, appearance "
                     "of logical pairs).")


# ----------------------------------------------------------------------------- ImgEdit


def _imgedit_pair(ctx: _Ctx, p: dict[str, Any]) -> float | None:
    if p["status"] != "scored":
        return None
    dims = p.get("dimensions") or {}
    vals = [_number(v) for k, v in dims.items() if not str(k).startswith("overall")]
    vals = [v for v in vals if v is not None]
    if not vals:
        ctx.problem(p, "dimensions", "no rubric scores: counted as a failure")
        return None
    return sum(vals) / len(vals)


def _imgedit(ctx: _Ctx) -> None:
    ctx.scale = "1-5: per pair the mean of its rubric scores"
    by_type: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for p in ctx.pairs:
        t = (p.get("metadata") or {}).get("edit_type")
        if t is None and not p.get("metadata") and p["status"] != "scored":
            t = p["category"]  # a pair never edited has no metadata; its category is its edit type
        if t is None:
            ctx.problem(p, "edit_type", "missing; left out")
            continue
        by_type[str(t)].append(p)
    scored_groups, every_groups = [], []
    official_types = []
    n_scored = n_all = 0
    for t in sorted(by_type):
        vals = [_imgedit_pair(ctx, p) for p in by_type[t]]
        s = [v for v in vals if v is not None]
        e = [v if v is not None else 1.0 for v in vals]
        official = round(sum(round(v, 2) for v in s) / len(s), 2) if s else None
        ctx.numbers.append(_entry(t, "score", ctx.mean(s), ctx.mean(e), len(s), len(vals), 1.0, official=official))
        scored_groups.append(s)
        every_groups.append(e)
        if official is not None:
            official_types.append(official)
        n_scored += len(s)
        n_all += len(vals)
    if every_groups:
        ctx.numbers.append(_entry("Overall (mean of the type means)", "score", ctx.mean_of_means(scored_groups),
                                  ctx.mean_of_means(every_groups), n_scored, n_all, 1.0,
                                  official=round(sum(official_types) / len(official_types), 2)
                                  if official_types else None))
    ctx.notes.append("official: the official scripts' value, each pair's mean and each type's mean rounded to "
                     "2 decimals; Overall is not computed by them (mean of their rounded type means here).")
