"""What the report.html gallery costs: originals + thumbnails in the report stage, and the HTML itself.

    python bench/gallery_cost.py            # full: 50 pairs of 1024x1024 originals, each its own image (~3 min on a busy 2-core box)
    python bench/gallery_cost.py --quick    # smoke: 10 pairs of 256x256

Scenario (instant models: identity editor + bench.models.ConstantRewardModel; each invocation its own
subprocess, timed spawn to exit):
- `python main.py --config C --run-name g`: the run (edits, scores, reports with the gallery).
- first report: delete gallery.json but keep originals/ and thumbs/ (the edit stage's writer thread
  copied every original and made the thumbnails of every edit and original), then time
  `src.gallery.materialize` in process: what a run's first report pays (index the files).
- cold: delete originals/, thumbs/ and gallery.json, then time the same call: it copies every original
  and writes every thumbnail (what the first report of a run made before the writer made thumbnails
  pays, and `--stage report` on a run folder without them).
- warm: the same call again with every file present (what every later report pays).
- html: `src.report.write_html` in process for a synthetic report of 10,000 pairs (no images), timed,
  with the file size (the page renders 50 cards at a time; tests/test_browser.py loads such a page).
Unique images: every pair has its own original (`--unique` = pairs), so no thumbnail is shared.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (check_ok, make_benchmark, run_measured, save_result, table, wait_quiet,  # noqa: E402
                          write_config)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--pairs", type=int, default=None)
    ap.add_argument("--size", type=int, default=None)
    ap.add_argument("--html-pairs", type=int, default=None)
    ap.add_argument("--results-dir", type=Path, default=None)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args(argv)
    pairs = args.pairs or (10 if args.quick else 50)
    size = args.size or (256 if args.quick else 1024)
    html_pairs = args.html_pairs or (500 if args.quick else 10_000)
    tmp = Path(tempfile.mkdtemp(prefix="ieb-bench-gallery-"))
    py = sys.executable
    try:
        bench = make_benchmark(tmp / "bench.json", pairs, size=size, unique=pairs)
        cfg = write_config(tmp / "c.yaml", tmp / "bench.json", tmp / "out")
        run_dir = tmp / "out" / "g"
        busy = wait_quiet() if not args.quick else None
        first = run_measured([py, "main.py", "--config", str(cfg), "--run-name", "g"], log_path=tmp / "run.log")
        check_ok(first, "run", tmp / "run.log")
        # the gallery step alone, in process (no interpreter start-up in the numbers)
        from src import gallery
        from src.data import load_benchmark
        from src.state import State

        rows = []
        made_by_edit_stage = {name: len(list((run_dir / name).iterdir())) for name in ("thumbs", "originals")}
        for label in ("first report", "cold", "warm"):
            if label in ("first report", "cold"):  # first report: the edit stage's files are there
                for name in ("originals", "thumbs") if label == "cold" else ():
                    shutil.rmtree(run_dir / name)
                (run_dir / "gallery.json").unlink()
            b = wait_quiet() if not args.quick else None
            bench_obj = load_benchmark(tmp / "bench.json")
            state = State(run_dir / "state.sqlite")
            t0 = time.perf_counter()
            counts = gallery.materialize(state, bench_obj, run_dir)
            rows.append({"scenario": label, "wall_s": round(time.perf_counter() - t0, 3), "cpu_busy_before": b,
                         **counts})
            state.close()
            bench_obj.close()
        thumbs = list((run_dir / "thumbs").iterdir())
        originals = list((run_dir / "originals").iterdir())
        gallery_s = rows[1]["wall_s"]

        from src.report import write_html
        from tests.test_gallery import synthetic_report

        report = synthetic_report(html_pairs)
        t0 = time.perf_counter()
        write_html(report, {"r": report, "failures": []}, tmp / "big.html", tmp)
        html_s = time.perf_counter() - t0
        html_bytes = (tmp / "big.html").stat().st_size

        summary = {"pairs": pairs, "image_size": size, "run_wall_s": first["wall_s"],
                   "files_made_by_edit_stage": made_by_edit_stage,
                   "gallery_first_report_s": rows[0]["wall_s"],
                   "gallery_first_report_ms_per_pair": round(1000 * rows[0]["wall_s"] / pairs, 1),
                   "gallery_cold_s": rows[1]["wall_s"], "gallery_warm_s": rows[2]["wall_s"],
                   "gallery_cold_ms_per_pair": round(1000 * gallery_s / pairs, 1),
                   "gallery_warm_ms_per_pair": round(1000 * rows[2]["wall_s"] / pairs, 2),
                   "thumbnails": len(thumbs), "thumb_mean_bytes": round(sum(p.stat().st_size for p in thumbs) / len(thumbs)),
                   "originals": len(originals),
                   "originals_mean_bytes": round(sum(p.stat().st_size for p in originals) / len(originals)),
                   "html_pairs": html_pairs, "html_write_s": round(html_s, 3), "html_bytes": html_bytes,
                   "cpu_busy_before_run": busy}
        print(table(["scenario", "wall s", "cpu busy before"],
                    [[r["scenario"], f"{r['wall_s']:.2f}", r["cpu_busy_before"]] for r in rows]))
        print(table(["measure", "value"], [[k, v] for k, v in summary.items()]))
        path = save_result("gallery_cost", {"benchmark": bench, "rows": rows, "summary": summary},
                           args.results_dir)
        print(f"results: {path}")
    finally:
        if args.keep:
            print(f"kept: {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
