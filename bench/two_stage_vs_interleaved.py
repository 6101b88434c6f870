"""two_stage vs interleaved: model loads, swaps and wall time over 5 categories (tiny models, CPU).

    python bench/two_stage_vs_interleaved.py            # full: config.yaml x 3 modes x 2 repeats (~3 min)
    python bench/two_stage_vs_interleaved.py --quick    # smoke: instant models, 1 pair per category

Each run is `python main.py --config config.yaml --output-dir T --run-name R --set ...` in its own
subprocess (tiny random-weight Qwen-Image-Edit + Qwen3-VL, 3 pairs x 5 categories, torch_threads 1 from
config.yaml), in these modes:
- two_stage (residency auto -> release): edit everything, release the editor, load the judge once;
- interleaved + residency offload: per category editor on / judge off, both loaded once; on this CPU-only
  machine an offload moves nothing (both models already live in host memory), so this measures the
  bookkeeping, NOT a GPU<->host copy (see docs/benchmarks.md, paper estimate, for GPU costs);
- interleaved + residency release: the idle model is freed and reloaded from disk at every swap.
Loads and swaps come from report.json (`run.invocations[-1]`: model_loads, model_swaps, seconds,
performance.swaps). Runs alternate between modes; the wall time reported is the mean over repeats.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (check_ok, make_benchmark, report_of, run_measured, save_result, table,  # noqa: E402
                          wait_quiet, write_config)

MODES = [("two_stage", ["pipeline.mode=two_stage"]),
         ("interleaved+offload", ["pipeline.mode=interleaved", "pipeline.residency=offload"]),
         ("interleaved+release", ["pipeline.mode=interleaved", "pipeline.residency=release"])]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="config.yaml")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="smoke mode: instant models, 5 pairs, 1 repeat")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--results-dir")
    args = ap.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="ieb-bench-modes-"))
    config = args.config
    if args.quick:
        args.repeats = 1
        make_benchmark(tmp / "bench.json", 5, 64)
        config = str(write_config(tmp / "instant.yaml", tmp / "bench.json", tmp / "outputs"))
    runs = []
    try:
        for rep in range(args.repeats):
            for name, sets in MODES:
                tag = f"{name.replace('+', '-')}-r{rep}"
                print(f"{name}, repeat {rep + 1}/{args.repeats} ...", flush=True)
                cmd = [sys.executable, "main.py", "--config", config, "--output-dir", str(tmp / "outputs"),
                       "--run-name", tag]
                for s in sets:
                    cmd += ["--set", s]
                log = tmp / f"{tag}.log"
                busy = None if args.quick else wait_quiet()
                res = run_measured(cmd, log_path=log)
                check_ok(res, f"{name} run", log)
                rep_json = report_of(tmp / "outputs" / tag)
                inv = rep_json["run"]["invocations"][-1]
                perf = inv.get("performance") or {}
                runs.append({"mode": name, "repeat": rep, "wall_s": res["wall_s"],
                             "in_run_s": round(inv["finished_at"] - inv["started_at"], 3),
                             "model_loads": inv["model_loads"], "model_swaps": inv["model_swaps"],
                             "residency": inv.get("residency", {}).get("chosen"),
                             "seconds": inv["seconds"], "perf_swaps": perf.get("swaps"),
                             "categories": len(rep_json["categories"]), "pairs": rep_json["overall"]["pairs"],
                             "scored": rep_json["overall"]["scored"], "cpu_busy_before": busy})
                shutil.rmtree(tmp / "outputs" / tag, ignore_errors=True)
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    summary = []
    for name, _ in MODES:
        rs = [r for r in runs if r["mode"] == name]
        first = rs[0]
        secs = lambda key: round(statistics.mean(r["seconds"].get(key, 0.0) for r in rs), 3)  # noqa: E731
        summary.append({"mode": name, "residency": first["residency"], "categories": first["categories"],
                        "pairs": first["pairs"], "editor_loads": first["model_loads"]["editor"],
                        "judge_loads": first["model_loads"]["judge"], "swaps": first["model_swaps"],
                        "wall_s_mean": round(statistics.mean(r["wall_s"] for r in rs), 2),
                        "wall_s_all": [r["wall_s"] for r in rs],
                        "in_run_s_mean": round(statistics.mean(r["in_run_s"] for r in rs), 2),
                        "load_s": round(secs("load_editor") + secs("load_judge"), 3),
                        "release_s": round(secs("release_editor") + secs("release_judge"), 3),
                        "offload_s": round(secs("offload_editor") + secs("offload_judge") + secs("to_gpu_editor")
                                           + secs("to_gpu_judge"), 3),
                        "edit_s": secs("edit"), "score_s": secs("score")})
    print(f"\n{'instant models (smoke)' if args.quick else config}: {summary[0]['categories']} categories, "
          f"{summary[0]['pairs']} pairs; mean of {args.repeats} run(s); CPU only (no GPU moves)")
    print(table(["mode", "residency", "editor loads", "judge loads", "swaps", "wall s", "in-run s", "load s",
                 "release s", "offload/restore s", "edit s", "score s"],
                [[s["mode"], s["residency"], s["editor_loads"], s["judge_loads"], s["swaps"], s["wall_s_mean"],
                  s["in_run_s_mean"], s["load_s"], s["release_s"], s["offload_s"], s["edit_s"], s["score_s"]]
                 for s in summary]))
    path = save_result("two_stage_vs_interleaved", {
        "settings": {"config": "instant models (smoke)" if args.quick else config, "repeats": args.repeats,
                     "quick": args.quick, "torch_threads": "1 (config.yaml pipeline.torch_threads)"},
        "summary": summary, "runs": runs}, args.results_dir)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
