"""Reports built from the records alone: report.json, report.md, report.html.

`build_report` reads the run's SQLite records (edits, the scores of one judge, invocations, the plan)
and nothing else; every aggregate in it is recomputed from its own `pairs` list by `summarize`, so a
reader can check any number (tests do exactly that). Markdown and HTML are rendered with Jinja
(StrictUndefined; HTML autoescaped, Markdown escaped by a filter), because instructions and judge
replies are untrusted text.
"""

from __future__ import annotations

import functools
import hashlib
import html
import json
import math
import os
import platform
import statistics
from importlib import metadata
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from src import gallery, stats
from src.perf import format_table
from src.report_labels import LABELS
from src.scoring.headline import build_headline, mean_of_means
from src.state import SCHEMA_VERSION, State, write_file_atomic

REPORT_SCHEMA_VERSION = "1"
FAILURE_STATUSES = ("invalid_input", "edit_failed", "score_failed")
STATUSES = ("scored", *FAILURE_STATUSES, "pending")
PACKAGES = ("torch", "diffusers", "transformers", "accelerate", "pillow", "openai")
TEMPLATE_DIR = Path(__file__).parent / "report_templates"


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def summarize(pairs: list[dict[str, Any]], *, seed: int | None = None,
              n_resamples: int = stats.DEFAULT_N_RESAMPLES) -> dict[str, Any]:
    """Counts and score statistics of a list of report pairs (std is the sample std, n - 1).

    With a seed, the mean and every dimension mean also get `se` and a 95% bootstrap `ci95` (src/stats.py).
    """
    counts = {s: sum(1 for p in pairs if p["status"] == s) for s in STATUSES}
    scores = [p["score"] for p in pairs if p["status"] == "scored"]
    attempted = counts["scored"] + counts["score_failed"]
    dims: dict[str, list[float]] = {}
    for p in pairs:
        if p["status"] == "scored":
            for name, value in (p.get("dimensions") or {}).items():
                dims.setdefault(name, []).append(value)
    out = {
        "pairs": len(pairs),
        "scored": counts["scored"],
        "failed": {s: counts[s] for s in FAILURE_STATUSES},
        "pending": counts["pending"],
        "judge_coverage": (counts["scored"] / attempted) if attempted else None,
        "mean": statistics.fmean(scores) if scores else None,
        "std": statistics.stdev(scores) if len(scores) >= 2 else None,
        "median": statistics.median(scores) if scores else None,
        "min": min(scores) if scores else None,
        "max": max(scores) if scores else None,
        "dimensions": {name: {"mean": statistics.fmean(v), "n": len(v)} for name, v in dims.items()},
    }
    if seed is not None:
        ci = stats.mean_ci(scores, seed=seed, n_resamples=n_resamples)
        out.update(se=ci["se"], ci95=ci["ci95"])
        for name, v in dims.items():
            ci = stats.mean_ci(v, seed=seed, n_resamples=n_resamples)
            out["dimensions"][name].update(se=ci["se"], ci95=ci["ci95"])
    return out


def aggregate(pairs: list[dict[str, Any]], categories: list[str], *, seed: int,
              benchmark_format: str | None = None) -> dict[str, Any]:
    """Every aggregate of a report, from its pairs alone: overall, categories, headline, uncertainty."""
    cats = {c: summarize([p for p in pairs if p["category"] == c], seed=seed) for c in categories}
    overall = summarize(pairs, seed=seed)
    means = [c["mean"] for c in cats.values() if c["mean"] is not None]
    overall["macro_mean"] = statistics.fmean(means) if means else None
    groups = [[p["score"] for p in pairs if p["category"] == c and p["status"] == "scored"] for c in categories]
    groups = [g for g in groups if g]
    macro = stats.strata_ci(groups, mean_of_means, seed=seed) if groups else {"se": None, "ci95": None}
    overall.update(macro_se=macro["se"], macro_ci95=macro["ci95"])
    return {"overall": overall, "categories": cats,
            "headline": build_headline(pairs, seed=seed, configured_format=benchmark_format),
            "uncertainty": stats.describe(seed)}


def judge_name(judge_spec: dict[str, Any]) -> str:
    """The judge's model as a person would name it: `model_name` (local judges), `model` (served
    judges), else the class name."""
    args = judge_spec.get("init_args") or {}
    return str(args.get("model_name") or args.get("model") or judge_spec.get("class_path", "judge").rsplit(".", 1)[-1])


def protocol_label(judge_spec: dict[str, Any]) -> str:
    """The judge protocol as text: its name, or compact JSON when it is chosen per category/format."""
    value = (judge_spec.get("init_args") or {}).get("protocol") or "category_0to10"
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)


def benchmark_fingerprint(pairs: list[dict[str, Any]]) -> str:
    """What was benchmarked: sha256 over (category, pair id, input image sha256, instruction) of every pair."""
    rows = sorted([p["category"], p["pair_id"], p.get("input_sha256"), p.get("instruction")] for p in pairs)
    return hashlib.sha256(json.dumps(rows, ensure_ascii=False).encode("utf-8")).hexdigest()


def build_report(state: State, scoring_fp: str, run_name: str) -> dict[str, Any]:
    plan: dict[str, list[str]] = json.loads(state.get_meta("plan") or "{}")
    edits = state.edit_map()
    scores = state.score_map(scoring_fp)
    pairs = []
    for category, ids in plan.items():
        for pair_id in ids:
            pairs.append(_pair_entry(category, pair_id, edits.get((category, pair_id)), scores.get((category, pair_id))))
    gallery.attach(pairs, edits, state.path.parent)  # originals, extra images, thumbnails (when on disk)
    invocations = state.invocations()
    current = next((i for i in reversed(invocations) if i["judge_fingerprint"] == scoring_fp), invocations[-1])
    config = current["config"]
    loads = {"editor": 0, "judge": 0}
    swaps = 0
    for inv in invocations:
        for k in loads:
            loads[k] += inv["stats"].get("model_loads", {}).get(k, 0)
        swaps += inv["stats"].get("model_swaps", 0)
    agg = aggregate(pairs, list(plan), seed=config["seed"], benchmark_format=config["benchmark"].get("format"))
    return {
        "schema_version": REPORT_SCHEMA_VERSION,
        "run": {
            "name": run_name,
            "started_at": invocations[0]["started_at"],
            "finished_at": max((i["finished_at"] or 0) for i in invocations) or None,
            "config_fingerprint": current["config_fingerprint"],
            "scoring_fingerprint": scoring_fp,
            "state_schema_version": SCHEMA_VERSION,
            "editor": config["diffusion_model"],
            "judge": config["reward_model"],
            "judge_name": judge_name(config["reward_model"]),
            "benchmark_fingerprint": benchmark_fingerprint(pairs),
            "prompts": config["prompts"],
            "benchmark": config["benchmark"],
            "mode": config["pipeline"]["mode"],
            "seed": config["seed"],
            "report": config.get("report") or {"language": "auto"},
            "allow_remote_code": config.get("allow_remote_code", False),
            "removed_pairs": json.loads(state.get_meta("removed_pairs") or "[]"),
            "packages": package_versions(),
            "model_loads": loads,
            "model_swaps": swaps,
            "performance": next((i["stats"]["performance"] for i in reversed(invocations)
                                 if (i["stats"].get("performance") or {}).get("stages")), None),
            "invocations": [{"stage": i["stage"], "started_at": i["started_at"], "finished_at": i["finished_at"],
                             **i["stats"]} for i in invocations],
        },
        "overall": agg["overall"],
        "categories": agg["categories"],
        "headline": agg["headline"],
        "uncertainty": agg["uncertainty"],
        "pairs": pairs,
    }


def _pair_entry(category: str, pair_id: str, edit, score) -> dict[str, Any]:
    entry: dict[str, Any] = {"pair_id": pair_id, "category": category, "instruction": None, "description": None,
                             "status": "pending", "score": None, "error": None, "edited_image": None,
                             "seed": None, "judge_raw_reply": None, "judge_reasoning": None, "judge_attempts": None,
                             "judge_details": None, "dimensions": None, "template": None, "template_hash": None,
                             "input_sha256": None, "metadata": {}}
    if edit is None:
        return entry
    entry.update(instruction=edit.instruction, description=edit.description, seed=edit.seed,
                 metadata=edit.metadata, edited_image=edit.image_path,
                 input_sha256=edit.input_sha256)
    if edit.status != "edited":
        entry.update(status=edit.status, error=edit.error)
        return entry
    if score is None or score.edit_sha256 != edit.output_sha256:
        return entry  # edited, not scored yet
    entry.update(status=score.status, score=score.score, error=score.error, judge_raw_reply=score.raw_reply,
                 judge_reasoning=score.reasoning, judge_attempts=score.attempts, judge_details=score.details,
                 dimensions=score.details.get("dimensions") if score.status == "scored" else None,
                 template=score.template, template_hash=score.template_hash)
    return entry


# ----------------------------------------------------------------------------- rendering


def fmt(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def fmt_ci(value: Any, digits: int = 2) -> str:
    """A [lo, hi] interval as "[lo, hi]" ("–" when missing)."""
    if not value or value[0] is None or value[1] is None:
        return "–"
    return f"[{fmt(float(value[0]), digits)}, {fmt(float(value[1]), digits)}]"


def fmt_pct(value: Any) -> str:
    return "–" if value is None else f"{100 * value:.0f}%"


def md_escape(value: Any) -> str:
    """Untrusted text inside a Markdown table cell: no HTML, no pipes, one line."""
    text = html.escape("" if value is None else str(value), quote=False)
    for ch in "\\`*_[]|#":
        text = text.replace(ch, "\\" + ch)
    return " ".join(text.split())


@functools.lru_cache(maxsize=None)
def _env(autoescape: bool) -> Environment:
    """The Jinja environment (one per autoescape flag, kept: compiling the templates costs far more than
    rendering them, and a run writes several reports). Callers must not change it."""
    env = Environment(loader=FileSystemLoader(TEMPLATE_DIR), undefined=StrictUndefined,
                      autoescape=autoescape,
                      keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)
    env.filters["fmt"] = fmt
    env.filters["md"] = md_escape
    env.filters["ci"] = fmt_ci
    env.filters["pct"] = fmt_pct
    env.filters["perf_table"] = format_table
    return env


def write_reports(state: State, run_dir: Path, scoring_fp: str) -> dict[str, Path]:
    """Write the reports of the run from its records; return the top-level report paths.

    - `report.json/.md/.html` at the top of the run folder: the report of `scoring_fp`, the judge of
      this invocation (the latest judge), as always.
    - `reports/<judge>/report.json/.md/.html`: one report per judge that scored this run's edits (and
      the current one), never overwritten by another judge; `<judge>` is the judge's model name plus 8
      hex digits of its scoring fingerprint (`judge_folder`).
    - `reports/index.json/.md/.html`: the judges, and their agreement when several scored the same
      edits (src/agreement.py).
    Image links in the per-judge HTML go through `root` ("../../"), so they resolve from that folder.
    """
    report = build_report(state, scoring_fp, run_dir.name)
    judges = _judge_reports(state, run_dir.name, report)
    index = Path("reports") / "index.md" if len(judges) > 1 else None
    paths = _write_report_files(report, run_dir, root="", judges_index=index)
    for name, rep in judges.items():
        _write_report_files(rep, run_dir / "reports" / name, root="../../", judges_index=Path("..") / "index.md"
                            if index else None)
    write_judges_index(run_dir / "reports", judges, latest=judge_folder(report))
    return paths


def judge_folder(report: dict[str, Any]) -> str:
    """The folder name of a judge's reports: its model name (last path part) + 8 hex of its scoring fingerprint."""
    from src.data import safe_name

    name = str(report["run"]["judge_name"]).rstrip("/").rsplit("/", 1)[-1] or "judge"
    return f"{safe_name(name)}-{report['run']['scoring_fingerprint'][:8]}"


def _judge_reports(state: State, run_name: str, current: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every judge with score records in this run (oldest first by its latest invocation), and the current one."""
    scored = set(state.judge_fingerprints())
    order: list[str] = []
    for inv in state.invocations():
        fp = inv["judge_fingerprint"]
        if fp in scored or fp == current["run"]["scoring_fingerprint"]:
            if fp in order:
                order.remove(fp)
            order.append(fp)
    out: dict[str, dict[str, Any]] = {}
    for fp in order:
        rep = current if fp == current["run"]["scoring_fingerprint"] else build_report(state, fp, run_name)
        out[judge_folder(rep)] = rep
    return out


def _write_report_files(report: dict[str, Any], folder: Path, root: str, judges_index: Path | None) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"json": folder / "report.json", "md": folder / "report.md", "html": folder / "report.html"}
    _write_text(paths["json"], json.dumps(report, ensure_ascii=False, indent=2))
    context = {"r": report, "failures": [p for p in report["pairs"] if p["status"] in FAILURE_STATUSES],
               "root": root, "judges_index": judges_index.as_posix() if judges_index else None,
               "t": LABELS[gallery.language_of(report)]}
    _write_text(paths["md"], _env(False).get_template("report.md.j2").render(**context))
    write_html(report, context, paths["html"], Path(os.path.normpath(folder / root)) if root else folder)
    return paths


def write_judges_index(folder: Path, judges: dict[str, dict[str, Any]], latest: str) -> dict[str, Path]:
    """reports/index.*: one line per judge and, with several judges, their agreement on the same edits."""
    from src.agreement import judge_agreement

    folder.mkdir(parents=True, exist_ok=True)
    index = {
        "latest": latest,
        "judges": [{"name": name, "judge": rep["run"]["judge_name"], "class_path": rep["run"]["judge"]["class_path"],
                    "protocol": protocol_label(rep["run"]["judge"]),
                    "scoring_fingerprint": rep["run"]["scoring_fingerprint"], "pairs": rep["overall"]["pairs"],
                    "scored": rep["overall"]["scored"], "mean": rep["overall"]["mean"],
                    "report": f"{name}/report.json"} for name, rep in judges.items()],
        "agreement": judge_agreement(judges),
    }
    paths = {"json": folder / "index.json", "md": folder / "index.md", "html": folder / "index.html"}
    _write_text(paths["json"], json.dumps(index, ensure_ascii=False, indent=2))
    from src.compare_labels import LABELS as INDEX_LABELS

    t = INDEX_LABELS[gallery.language_of(judges[latest])]
    _write_text(paths["md"], _env(False).get_template("judges_index.md.j2").render(ix=index, t=t))
    _write_text(paths["html"], _env(True).get_template("judges_index.html.j2").render(ix=index, t=t))
    return paths


def _write_text(path: Path, text: str) -> None:
    """Every report file is the old one or the complete new one (temp file, fsync, rename): a full disk
    never leaves a truncated report where a valid one was."""
    write_file_atomic(path, text.encode("utf-8"))


def write_html(report: dict[str, Any], context: dict[str, Any], path: Path, run_dir: Path) -> None:
    """report.html: summary, charts, performance and the pair gallery (src/gallery.py; docs/report.md)."""
    html_ctx = gallery.html_context(report, path, run_dir)
    context = {"root": "", "judges_index": None, **context, **html_ctx}
    _write_text(path, _env(True).get_template("report.html.j2").render(**context))
