"""`python main.py compare RUN_OR_DIR ...`: a paired leaderboard of several runs on one benchmark.

Reads each run's report.json (its per-pair records; no model runs) and compares the runs on the
pairs that every run scored — the *common pairs* — because means over different subsets mislead:
a run that failed on its hardest pairs looks better than it is. Per category and overall it gives each
run's mean on the common pairs with a 95% bootstrap CI, the paired difference to the best run with
its CI, a paired-bootstrap p-value and a Wilcoxon signed-rank p-value, and each run's own mean over
all its scored pairs (for contrast, labelled as unpaired). Coverage per run says how many of its pairs
were scored and how many are common. It warns when the runs used different judges (scoring
fingerprints), judge protocols or benchmarks (pairs with different input images or instructions
are not common pairs).

Writes compare.json (every number, recomputable from the `pairs` list in it), compare.md and
compare.html (leaderboards and one row per pair with one column per run, the original first).
See docs/compare.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from src.compare_labels import LABELS, language
from src.stats import DEFAULT_N_RESAMPLES as N_RESAMPLES, METHOD, mean_ci, paired_difference

log = logging.getLogger("ieb")

COMPARE_SCHEMA_VERSION = "1"


class CompareError(Exception):
    """A problem with the runs given to `compare` / `align` (exit code 2); the message names the path."""


@dataclass
class Run:
    path: Path  # the run folder
    report_path: Path
    name: str  # unique label in this comparison
    report: dict[str, Any]

    @property
    def editor(self) -> str:
        spec = self.report["run"].get("editor") or {}
        args = spec.get("init_args") or {}
        return str(args.get("model_name") or args.get("model") or spec.get("class_path", "?").rsplit(".", 1)[-1])

    @property
    def judge(self) -> str:
        run = self.report["run"]
        if run.get("judge_name"):
            return run["judge_name"]
        from src.report import judge_name

        return judge_name(run.get("judge") or {})

    @property
    def protocol(self) -> str:
        from src.report import protocol_label

        return protocol_label(self.report["run"].get("judge") or {})


# ----------------------------------------------------------------------------- finding runs


def _report_in(run_dir: Path, judge: str | None) -> Path:
    from src.data import safe_name

    if judge is not None and (safe_name(judge) != judge or judge in ("", ".")):
        raise CompareError(f"--judge {judge!r}: not a judge folder name (see the run's reports/index.md)")
    return run_dir / "reports" / judge / "report.json" if judge else run_dir / "report.json"


def find_runs(paths: list[str | Path], judge: str | None = None) -> tuple[list[Run], list[str]]:
    """Run folders named directly, and every finished run below the other folders.
    Returns the runs and notes about folders that were skipped."""
    found: list[tuple[Path, Path]] = []
    notes: list[str] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise CompareError(f"{path}: no such file or folder")
        if path.is_file() and path.name == "report.json":
            found.append((path.parent, path))
            continue
        if not path.is_dir():
            raise CompareError(f"{path}: not a run folder or a folder of runs")
        if (path / "state.sqlite").is_file() or (path / "report.json").is_file():
            report = _report_in(path, judge)
            if not report.is_file():
                raise CompareError(f"{path}: no {report.relative_to(path)} in this run folder "
                                   + (f"(judges with reports: {', '.join(judge_folders(path)) or 'none'})" if judge
                                      else f"(write it with: python main.py --resume {path} --stage report)"))
            found.append((path, report))
            continue
        below = _run_folders_below(path)
        if not below:
            raise CompareError(f"{path}: no run folder (one holding state.sqlite) below this folder")
        for run_dir in below:
            report = _report_in(run_dir, judge)
            if not report.is_file():
                notes.append(f"skipped {run_dir}: no {report.relative_to(run_dir)}")
                continue
            data = _load(report)
            if (data.get("overall") or {}).get("pending"):
                notes.append(f"skipped {run_dir}: not finished ({data['overall']['pending']} pairs pending)")
                continue
            found.append((run_dir, report))
    runs: list[Run] = []
    seen: set[Path] = set()
    for run_dir, report in found:
        key = report.resolve()
        if key in seen:
            continue
        seen.add(key)
        data = _load(report)
        runs.append(Run(run_dir, report, run_dir.name, data))
    names = [r.name for r in runs]
    for r in runs:  # two runs with the same folder name: label them by their path instead
        if names.count(r.name) > 1:
            r.name = str(r.path)
    return runs, notes


def _run_folders_below(folder: Path) -> list[Path]:
    """Folders holding state.sqlite below `folder`, sorted; a run folder's own subfolders (images,
    thumbnails, ...) are not searched."""
    found = []
    for root, dirs, files in os.walk(folder):
        if "state.sqlite" in files:
            found.append(Path(root))
            dirs[:] = []
        else:
            dirs.sort()
    return sorted(found)


def judge_folders(run_dir: Path) -> list[str]:
    return sorted(d.name for d in (run_dir / "reports").glob("*") if (d / "report.json").is_file())


def _load(report: Path) -> dict[str, Any]:
    try:
        data = json.loads(report.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CompareError(f"{report}: cannot read the report ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("pairs"), list) or not isinstance(data.get("run"), dict):
        raise CompareError(f"{report}: not a run report (no 'run' and 'pairs')")
    for i, p in enumerate(data["pairs"]):
        for field in ("category", "pair_id", "status", "score"):
            if not isinstance(p, dict) or field not in p:
                raise CompareError(f"{report}: pairs[{i}] has no field {field!r}")
    return data


# ----------------------------------------------------------------------------- the comparison


def compare_runs(runs: list[Run], *, seed: int = 0, n_resamples: int = N_RESAMPLES) -> dict[str, Any]:
    """The comparison as a JSON-ready dict (see the module docstring)."""
    if len(runs) < 2:
        raise CompareError(f"compare needs at least two runs; found {len(runs)}"
                           + (f": {runs[0].path}" if runs else ""))
    warnings = _warnings(runs)
    by_run = [{(p["category"], p["pair_id"]): p for p in r.report["pairs"]} for r in runs]
    keys = list(dict.fromkeys(key for pairs in by_run for key in pairs))  # ordered union of every run's pairs
    categories = list(dict.fromkeys(k[0] for k in keys))
    rows, mismatched = [], []
    for key in keys:
        entries = [pairs.get(key) for pairs in by_run]
        scored = all(e is not None and e["status"] == "scored" and e["score"] is not None for e in entries)
        inputs = {e.get("input_sha256") for e in entries if e is not None and e.get("input_sha256")}
        instructions = {e.get("instruction") for e in entries if e is not None and e.get("instruction") is not None}
        same_input = len(inputs) <= 1 and len(instructions) <= 1
        if not same_input:
            mismatched.append(key)
        first = next(e for e in entries if e is not None)
        rows.append({
            "category": key[0], "pair_id": key[1], "instruction": first.get("instruction"),
            "common": scored and same_input,
            "original_image": _original(runs, entries),
            "runs": {r.name: _cell(r, e) for r, e in zip(runs, entries)},
        })
    if mismatched:
        warnings.append(f"{len(mismatched)} pair(s) have different input images or instructions in different runs "
                        f"and are not compared: " + ", ".join(f"{c}/{p}" for c, p in mismatched[:10])
                        + (" …" if len(mismatched) > 10 else ""))
    result: dict[str, Any] = {
        "schema_version": COMPARE_SCHEMA_VERSION,
        "uncertainty": {"method": METHOD, "seed": seed, "n_resamples": n_resamples, "confidence": 0.95,
                        "tests": "paired bootstrap of the mean difference (CI inverted) and Wilcoxon signed-rank "
                                 "(scipy.stats.wilcoxon), each run against the best run on the common pairs"},
        "runs": [_run_entry(r, rows) for r in runs],
        "warnings": warnings,
        "common_pairs": sum(1 for row in rows if row["common"]),
        "categories": {c: _board(runs, [row for row in rows if row["category"] == c], seed, n_resamples)
                       for c in categories},
        "overall": _board(runs, rows, seed, n_resamples),
        "pairs": rows,
    }
    if result["common_pairs"] == 0:
        result["warnings"].append("no pair was scored by every run: nothing can be compared pairwise")
    return result


def _cell(run: Run, entry: dict | None) -> dict[str, Any]:
    if entry is None:
        return {"status": "absent", "score": None, "edited_image": None, "error": None}
    image = entry.get("edited_image")
    thumb = (entry.get("thumbnails") or {}).get("edited")  # written by the gallery (src/gallery.py)
    return {"status": entry["status"], "score": entry["score"], "error": entry.get("error"),
            "edited_image": str(run.path / image) if image else None,
            "thumbnail": str(run.path / thumb) if thumb and image else None}


def _original(runs: list[Run], entries: list[dict | None]) -> dict[str, str | None]:
    """The original image (and its thumbnail) when a run folder holds a copy (the gallery writes
    `original_image` and `thumbnails` into report pairs)."""
    for run, e in zip(runs, entries):
        if e is not None and e.get("original_image"):
            thumb = (e.get("thumbnails") or {}).get("original")
            return {"image": str(run.path / e["original_image"]), "thumbnail": str(run.path / thumb) if thumb else None}
    return {"image": None, "thumbnail": None}


def _run_entry(run: Run, rows: list[dict]) -> dict[str, Any]:
    own = run.report["pairs"]
    scored = [p for p in own if p["status"] == "scored" and p["score"] is not None]
    common = sum(1 for row in rows if row["common"])
    info = run.report["run"]
    return {"name": run.name, "path": str(run.path), "report": str(run.report_path), "editor": run.editor,
            "judge": run.judge, "protocol": run.protocol, "scoring_fingerprint": info.get("scoring_fingerprint"),
            "benchmark_fingerprint": info.get("benchmark_fingerprint"), "pairs": len(own), "scored": len(scored),
            "coverage": len(scored) / len(own) if own else None, "common": common,
            "common_share": common / len(scored) if scored else None}


def _board(runs: list[Run], rows: list[dict], seed: int, n_resamples: int) -> dict[str, Any]:
    """One leaderboard (a category or overall): means on the common pairs and tests against the best."""
    common = [row for row in rows if row["common"]]
    scores = {r.name: [row["runs"][r.name]["score"] for row in common] for r in runs}
    entries: dict[str, dict[str, Any]] = {}
    for r in runs:
        own = [row["runs"][r.name]["score"] for row in rows if row["runs"][r.name]["status"] == "scored"
               and row["runs"][r.name]["score"] is not None]
        entries[r.name] = {"common": mean_ci(scores[r.name], seed=seed, n_resamples=n_resamples),
                           "own": {"mean": sum(own) / len(own) if own else None, "n": len(own),
                                   "pairs": len(rows)}}
    best = None
    if common:
        best = max(runs, key=lambda r: (entries[r.name]["common"]["mean"], -runs.index(r))).name
        for r in runs:
            entries[r.name]["vs_best"] = None if r.name == best else paired_difference(
                scores[r.name], scores[best], seed=seed, n_resamples=n_resamples)
    else:
        for r in runs:
            entries[r.name]["vs_best"] = None
    order = sorted(runs, key=lambda r: -(entries[r.name]["common"]["mean"] or float("-inf")))
    return {"common": len(common), "pairs": len(rows), "best": best, "ranking": [r.name for r in order],
            "runs": entries}


def _warnings(runs: list[Run]) -> list[str]:
    out = []
    fps = {r.report["run"].get("scoring_fingerprint") for r in runs}
    if len(fps) > 1:  # say which judge every run has a report of, if any
        shared = set.intersection(*(set(judge_folders(r.path)) for r in runs))
        if shared:
            out.append("every run has reports of the judge(s) " + ", ".join(sorted(shared))
                       + ": compare them on one judge with --judge NAME")
    for what, get in (("judges", lambda r: r.judge), ("judge protocols", lambda r: r.protocol),
                      ("scoring fingerprints (judge, its settings or prompt templates)",
                       lambda r: (r.report["run"].get("scoring_fingerprint") or "")[:12]),
                      ("benchmark fingerprints (pairs, input images or instructions)",
                       lambda r: (r.report["run"].get("benchmark_fingerprint") or "")[:12])):
        values = {r.name: get(r) for r in runs}
        if len(set(values.values())) > 1:
            out.append(f"the runs used different {what}: " + ", ".join(f"{k}: {v}" for k, v in values.items()))
    return out


# ----------------------------------------------------------------------------- writing


def write_compare(result: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    from src.report import _env, _write_text

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "compare.json", "md": out_dir / "compare.md", "html": out_dir / "compare.html"}
    _write_text(paths["json"], json.dumps(result, ensure_ascii=False, indent=2))
    t = LABELS[result.get("language") or language("auto", result["categories"])]
    _write_text(paths["md"], _env(False).get_template("compare.md.j2").render(c=result, t=t))
    _write_text(paths["html"], _env(True).get_template("compare.html.j2").render(
        c=result, t=t, rel=lambda p: os.path.relpath(p, out_dir)))
    return paths


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python main.py compare",
                                description="Paired leaderboard of several runs on the same benchmark (reads each "
                                            "run's report.json; no model runs).")
    p.add_argument("paths", nargs="+", metavar="RUN_OR_DIR",
                   help="run folders, or folders searched for every finished run below them")
    p.add_argument("--out", help="output folder for compare.json/.md/.html (default: compare-<timestamp>)")
    p.add_argument("--judge", help="use each run's reports/<JUDGE>/report.json instead of its latest report.json")
    p.add_argument("--language", choices=("auto", "en", "zh"), default="auto",
                   help="labels of compare.md/.html (auto: Chinese when a category name is Chinese)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (recorded in compare.json)")
    p.add_argument("--n-resamples", type=int, default=N_RESAMPLES, help="bootstrap resamples")
    return p


def compare_main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from src.cli import setup_console_logging

    setup_console_logging()
    try:
        runs, notes = find_runs(args.paths, args.judge)
        for note in notes:
            log.info("%s", note)
        result = compare_runs(runs, seed=args.seed, n_resamples=args.n_resamples)
        result["language"] = language(args.language, result["categories"])
        for w in result["warnings"]:
            log.warning("%s", w)
        out = Path(args.out or time.strftime("compare-%Y%m%d-%H%M%S"))
        paths = write_compare(result, out)
    except CompareError as e:
        log.error("%s", e)
        return 2
    board = result["overall"]
    print(f"{len(runs)} runs, {result['common_pairs']} common pairs; best overall: {board['best']}", flush=True)
    for kind, path in paths.items():
        print(f"compare ({kind}): {path}", flush=True)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(compare_main(sys.argv[1:]))
