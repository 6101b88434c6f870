"""Resuming a finished run vs the original run: wall time and model loads.

    python bench/resume_cost.py            # full: config.yaml (tiny models) + instant models x 300 pairs (~2 min)
    python bench/resume_cost.py --quick    # smoke: instant models x 5 pairs only

Scenarios (each invocation its own subprocess, timed spawn to exit):
- tiny: the default `config.yaml` (tiny random-weight Qwen-Image-Edit + Qwen3-VL, 15 pairs, torch_threads 1
  from the config): `python main.py --config config.yaml --output-dir T --run-name tiny`, then
  `python main.py --resume T/tiny --trust-run-config` (the bench made the run; a run folder's config may
  otherwise name only the project's `src`/`tests` classes, and the instant judge lives in `bench/`).
- instant: identity editor + bench.models.ConstantRewardModel on N generated 512x512 pairs (PNG level 4).
Target: resume wall <= 10% of the original's, and the resumed invocation loads no model (its
`model_loads` in report.json are 0; `run.invocations[-1]`).

Diagnostic: one more resume of each run under cProfile; the top functions of src/ by cumulative time and
the time spent importing are reported, to say where a resume's time goes.
"""

from __future__ import annotations

import argparse
import pstats
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (FAST_B64_MAIN, REPO, check_ok, make_benchmark, report_of, run_measured, save_result, table,  # noqa: E402
                          verdict, wait_quiet, write_config)

TARGET_FRACTION = 0.10


def profile_summary(prof: Path, top: int = 10) -> dict:
    st = pstats.Stats(str(prof))
    total = max(v[3] for v in st.stats.values())  # the outermost cumulative time
    imports = max((v[3] for (f, _, name), v in st.stats.items() if name == "_find_and_load"), default=0.0)
    src = sorted(((v[3], f"{Path(f).relative_to(REPO)}:{line}({name})") for (f, line, name), v in st.stats.items()
                  if f.startswith(str(REPO / "src"))), reverse=True)
    return {"profiled_total_s": round(total, 3), "imports_s": round(imports, 3),
            "top_src_cumulative_s": [[name, round(t, 3)] for t, name in src[:top]]}


def scenario(name: str, argv_new: list[str], run_dir: Path, tmp: Path, quiet: bool, profile: bool,
             what_if: bool = False) -> dict:
    py = sys.executable
    log = tmp / f"{name}-original.log"
    busy0 = wait_quiet() if quiet else None
    orig = run_measured([py, "main.py", *argv_new], log_path=log)
    check_ok(orig, f"{name}: original run", log)
    log = tmp / f"{name}-resume.log"
    busy1 = wait_quiet() if quiet else None
    res = run_measured([py, "main.py", "--resume", str(run_dir), "--trust-run-config"], log_path=log)
    check_ok(res, f"{name}: resume", log)
    rep = report_of(run_dir)
    invs = rep["run"]["invocations"]
    resumed = invs[-1]
    out = {"scenario": name, "pairs": rep["overall"]["pairs"], "original_wall_s": orig["wall_s"],
           "resume_wall_s": res["wall_s"], "fraction": round(res["wall_s"] / orig["wall_s"], 3),
           "original_model_loads": invs[0]["model_loads"], "resume_model_loads": resumed["model_loads"],
           "resume_in_run_s": round((resumed["finished_at"] or 0) - resumed["started_at"], 3),
           "original_in_run_s": round((invs[0]["finished_at"] or 0) - invs[0]["started_at"], 3),
           "statuses_after_resume": {s: sum(1 for p in rep["pairs"] if p["status"] == s)
                                     for s in {p["status"] for p in rep["pairs"]}},
           "cpu_busy_before": {"original": busy0, "resume": busy1}}
    if what_if:  # the suggested src/data.py fix monkeypatched in (src/ itself unchanged)
        log = tmp / f"{name}-whatif.log"
        busy2 = wait_quiet() if quiet else None
        w = run_measured([py, "-c", FAST_B64_MAIN, "--resume", str(run_dir), "--trust-run-config"], log_path=log)
        check_ok(w, f"{name}: what-if resume", log)
        out["whatif_fast_b64_resume_wall_s"] = w["wall_s"]
        out["whatif_fast_b64_fraction"] = round(w["wall_s"] / orig["wall_s"], 3)
        out["cpu_busy_before"]["whatif"] = busy2
    if profile:
        prof = tmp / f"{name}.prof"
        log = tmp / f"{name}-profile.log"
        pr = run_measured([py, "-m", "cProfile", "-o", str(prof), "main.py", "--resume", str(run_dir), "--trust-run-config"], log_path=log)
        check_ok(pr, f"{name}: profiled resume", log)
        out["resume_profile"] = {"wall_s_under_cprofile": pr["wall_s"], **profile_summary(prof)}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=300, help="pairs of the instant-model scenario")
    ap.add_argument("--no-tiny", action="store_true", help="skip the config.yaml (tiny models) scenario")
    ap.add_argument("--no-profile", action="store_true")
    ap.add_argument("--what-if-fast-b64", action="store_true",
                    help="also resume with a fast base64 path monkeypatched into src.data (a what-if)")
    ap.add_argument("--quick", action="store_true", help="smoke mode: instant models, 5 pairs, no profile")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--results-dir")
    args = ap.parse_args(argv)
    if args.quick:
        args.pairs, args.no_tiny, args.no_profile = 5, True, True
    quiet, profile = not args.quick, not args.no_profile

    tmp = Path(tempfile.mkdtemp(prefix="ieb-bench-resume-"))
    rows = []
    try:
        if not args.no_tiny:
            print("tiny (config.yaml) ...", flush=True)
            out = tmp / "outputs"
            rows.append(scenario("tiny config.yaml", ["--config", "config.yaml", "--output-dir", str(out),
                                                      "--run-name", "tiny"], out / "tiny", tmp, quiet, profile))
        print(f"instant models, {args.pairs} pairs ...", flush=True)
        data = tmp / "bench.json"
        make_benchmark(data, args.pairs, 512)
        cfg = write_config(tmp / "instant.yaml", data, tmp / "outputs", pipeline={"png_compress_level": 4})
        rows.append(scenario(f"instant x{args.pairs}", ["--config", str(cfg), "--run-name", "instant"],
                             tmp / "outputs" / "instant", tmp, quiet, profile, args.what_if_fast_b64))
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    for r in rows:
        no_load = all(v == 0 for v in r["resume_model_loads"].values())
        r["no_model_load"] = no_load
        r["verdict"] = verdict(r["fraction"] <= TARGET_FRACTION and no_load)
    print("\nResume of a finished run vs the original (wall s, subprocess spawn to exit):")
    print(table(["scenario", "pairs", "original s", "resume s", "resume / original", "resume loads", "target",
                 "verdict"],
                [[r["scenario"], r["pairs"], r["original_wall_s"], r["resume_wall_s"], r["fraction"],
                  r["resume_model_loads"], f"<= {TARGET_FRACTION} and 0 loads", r["verdict"]] for r in rows]))
    for r in rows:
        if "whatif_fast_b64_fraction" in r:
            print(f"WHAT-IF (src/ unchanged; fast base64 path monkeypatched into src.data): {r['scenario']}: resume "
                  f"{r['whatif_fast_b64_resume_wall_s']} s = {r['whatif_fast_b64_fraction']} of the original")
    for r in rows:
        if "resume_profile" in r:
            p = r["resume_profile"]
            print(f"\n{r['scenario']}: resume under cProfile {p['profiled_total_s']} s, of which imports "
                  f"{p['imports_s']} s; top src/ functions (cumulative s):")
            print(table(["function", "s"], p["top_src_cumulative_s"]))
    path = save_result("resume_cost", {"settings": {"instant_pairs": args.pairs, "tiny": not args.no_tiny,
                                                    "quick": args.quick},
                                       "rows": rows, "target": {"fraction_max": TARGET_FRACTION,
                                                                "results": [[r["scenario"], r["verdict"]] for r in rows]}},
                       args.results_dir)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
