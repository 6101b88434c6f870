"""Peak RSS of the process running the pipeline, 100 vs 1,000 pairs (edits are streamed to disk).

    python bench/memory_scaling.py            # full: 100 and 1,000 pairs of 512x512 images (~5 min)
    python bench/memory_scaling.py --quick    # smoke: 2 and 4 small pairs

Each run is `python main.py --config <generated config>` in its own subprocess with the instant models
(identity editor, bench.models.ConstantRewardModel), mode two_stage, PNG level 1 (the level changes the
time, not the memory: one image is encoded at a time). The peak is the kernel's
high-water mark `ru_maxrss` of that very process (os.wait4 on its pid: exact, not sampled); a psutil
sampler (every 50 ms) gives the timeline, and the pipeline's own per-stage peaks come from report.json.
Target: peak(1,000) / peak(100) <= 1.2.

Attribution: a probe subprocess imports what the pipeline imports (torch included) and calls
`src.data.load_benchmark` on the same file, reporting RSS before/after and the base64 text the returned
`Benchmark` keeps alive. The same pair counts are also run from a benchmark whose images are PNG files
(`original_image_path`), which the loader does not hold in memory: if that variant scales flat, the
base64 text held by src/data.py is the cause.
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (check_ok, make_benchmark, mib, report_of, run_measured, save_result, table,  # noqa: E402
                          verdict, write_config)

TARGET_RATIO = 1.2


def probe(data_path: str) -> None:
    """Child: RSS around load_benchmark (run in a fresh process by the parent)."""
    import resource

    import psutil
    import torch  # noqa: F401  - the pipeline imports torch before it loads models (check(), seeding)

    import src.pipeline  # noqa: F401  - and everything the pipeline module imports
    from src.data import load_benchmark

    proc = psutil.Process()
    gc.collect()
    before = proc.memory_info().rss
    bench = load_benchmark(data_path)
    after_load_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    gc.collect()
    after = proc.memory_info().rss
    # base64 text kept as Python strings by the returned pairs (src/data.py may instead keep it elsewhere,
    # e.g. a spool file: then nothing is counted here)
    held_b64 = sum(len(v) for p in bench.iter_pairs() for v in [getattr(p, "_image_b64", None)] if isinstance(v, str))
    print(json.dumps({"rss_before_load": before, "peak_during_load": after_load_peak, "rss_after_load": after,
                      "held_base64_chars": held_b64, "pairs": len(bench),
                      "file_bytes": Path(data_path).stat().st_size}))


def run_probe(data_path: Path, tmp: Path) -> dict:
    out = tmp / f"probe-{data_path.stem}.json"
    log = tmp / f"probe-{data_path.stem}.log"
    with open(out, "wb") as f:
        import subprocess

        from bench.common import child_env

        code = subprocess.call([sys.executable, str(Path(__file__).resolve()), "--probe-child", str(data_path)],
                               stdout=f, stderr=open(log, "wb"), env=child_env())
    if code != 0:
        raise SystemExit(f"probe failed ({code}): {log.read_text(errors='replace')[-2000:]}")
    return json.loads(out.read_text().strip().splitlines()[-1])


def run_pipeline(data_path: Path, tmp: Path, tag: str) -> dict:
    # PNG level 1: memory does not depend on the level (one image is encoded at a time), time does
    cfg = write_config(tmp / f"config-{tag}.yaml", data_path, tmp / "outputs", pipeline={"png_compress_level": 1})
    log = tmp / f"run-{tag}.log"
    res = run_measured([sys.executable, "main.py", "--config", str(cfg), "--run-name", tag], log_path=log,
                       sample_rss_s=0.05)
    check_ok(res, f"pipeline run {tag}", log)
    rep = report_of(tmp / "outputs" / tag)
    perf = rep["run"]["performance"] or {}
    stages = {k: v.get("peak_rss_bytes") for k, v in (perf.get("stages") or {}).items()}
    statuses: dict[str, int] = {}
    for p in rep["pairs"]:
        statuses[p["status"]] = statuses.get(p["status"], 0) + 1
    timeline = res.pop("timeline")
    peak_at = max(timeline, key=lambda tr: tr[1])[0] if timeline else None
    # keep the timeline commit-sized: ~40 points
    step = max(1, len(timeline) // 40)
    shutil.rmtree(tmp / "outputs" / tag, ignore_errors=True)
    return {**res, "stage_peak_rss_bytes": stages, "statuses": statuses, "sampled_peak_at_s": peak_at,
            "timeline_mib": [(t, mib(r)) for t, r in timeline[::step]]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", default="100,1000", help="small,large pair counts")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--no-paths-variant", action="store_true", help="skip the image-files variant")
    ap.add_argument("--no-probe", action="store_true", help="skip the load_benchmark probe")
    ap.add_argument("--quick", action="store_true", help="smoke mode: 2 and 4 pairs, no variant, no probe")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--results-dir")
    ap.add_argument("--probe-child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.probe_child:
        probe(args.probe_child)
        return 0
    if args.quick:
        args.pairs, args.no_paths_variant, args.no_probe, args.size = "2,4", True, True, 128
    small, large = (int(x) for x in args.pairs.split(","))

    tmp = Path(tempfile.mkdtemp(prefix="ieb-bench-memory-"))
    results = []
    try:
        variants = ["base64"] + ([] if args.no_paths_variant else ["paths"])
        for variant in variants:
            for n in (small, large):
                tag = f"{variant}-{n}"
                print(f"{variant}: {n} pairs ...", flush=True)
                data = tmp / f"bench-{tag}.json"
                info = make_benchmark(data, n, args.size, as_paths=(variant == "paths"))
                row = {"variant": variant, "pairs": n, "data": info}
                row["pipeline"] = run_pipeline(data, tmp, tag)
                row["probe"] = {} if args.no_probe else run_probe(data, tmp)
                results.append(row)
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    def peak(variant: str, n: int) -> int:
        return next(r for r in results if r["variant"] == variant and r["pairs"] == n)["pipeline"]["ru_maxrss_bytes"]

    ratios = {v: round(peak(v, large) / peak(v, small), 3) for v in {r["variant"] for r in results}}
    ok = ratios["base64"] <= TARGET_RATIO
    rows = []
    for r in results:
        p, pr = r["pipeline"], r["probe"]
        rows.append([r["variant"], r["pairs"], mib(r["data"]["file_bytes"]), mib(p["ru_maxrss_bytes"]),
                     mib(p["sampled_peak_rss_bytes"]), p["sampled_peak_at_s"], p["wall_s"],
                     mib(p["stage_peak_rss_bytes"].get("edit")), mib(p["stage_peak_rss_bytes"].get("score")),
                     mib(pr.get("rss_before_load")), mib(pr.get("peak_during_load")), mib(pr.get("rss_after_load")),
                     mib(pr.get("held_base64_chars"))])
    print(f"\nPeak RSS (MiB) of `python main.py` with instant models, {args.size}x{args.size} images:")
    print(table(["images", "pairs", "file MiB", "peak RSS (ru_maxrss)", "peak sampled", "peak at s", "wall s",
                 "edit-stage peak", "score-stage peak", "probe: RSS before load", "probe: peak in load",
                 "probe: RSS after load", "probe: base64 held MiB"], rows))
    print(table(["images", f"peak({large}) / peak({small})", "target", "verdict"],
                [[v, ratios[v], f"<= {TARGET_RATIO}", verdict(ratios[v] <= TARGET_RATIO) if v == "base64" else "(diagnostic)"]
                 for v in sorted(ratios)]))
    path = save_result("memory_scaling", {
        "settings": {"pairs": [small, large], "image_size": args.size, "quick": args.quick,
                     "editor": "IdentityEditModel batch_size 1", "judge": "bench.models.ConstantRewardModel batch_size 4",
                     "mode": "two_stage", "png_compress_level": 1,
                     "command": "python main.py --config <generated> --run-name <tag>",
                     "peak": "ru_maxrss of the main.py process via os.wait4 (exact high-water mark)"},
        "runs": results, "ratios": ratios,
        "target": {"ratio_max": TARGET_RATIO, "measured": ratios["base64"], "verdict": verdict(ok)}},
        args.results_dir)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
