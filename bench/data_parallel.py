"""1 vs 2 data-parallel processes on this CPU box: wall time, speed-up, and what the coordination costs.

    python bench/data_parallel.py            # 200 pairs, editor 0.25 s/pair and judge 0.05 s/pair of sleep
    python bench/data_parallel.py --quick    # 20 pairs

The models are the tests' fake editor and judge with a fixed per-pair delay (`delay_s`): a stand-in for
GPU time, which the processes do not share (on this 2-core machine real tiny-model compute would share
the two cores and measure the CPU, not the design). Each configuration runs `main.py` once as a single
process and once under `torch.distributed.run --standalone --nproc_per_node 2` (what `accelerate launch
--multi_gpu --num_processes 2` runs), on the same benchmark, into fresh run folders, and checks that
both reports agree pair by pair. Reported: wall seconds, the speed-up, and the ideal wall time
(model time / N) so the gap — process start-up, imports, the rendezvous, barriers, shard merges — is
visible. Results: bench/results/data_parallel.json, written up in docs/scaling.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (REPO, check_ok, child_env, git_state, machine_info, make_benchmark, now_utc,  # noqa: E402
                          report_of, run_measured, save_result, table, wait_quiet, write_config)

EDIT_S, SCORE_S = 0.25, 0.05


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", type=int, default=200)
    p.add_argument("--quick", action="store_true", help="20 pairs (a smoke run)")
    p.add_argument("--results-dir", type=Path)
    p.add_argument("--keep", action="store_true")
    args = p.parse_args()
    n_pairs = 20 if args.quick else args.pairs
    tmp = Path(tempfile.mkdtemp(prefix="ieb-bench-dp-"))
    start = git_state()
    try:
        data = tmp / "bench.json"
        info = make_benchmark(data, n_pairs, size=64, unique=10)
        cfg = write_config(tmp / "config.yaml", data, tmp / "out",
                           editor={"class_path": "tests.fakes.FakeEditModel", "init_args": {"delay_s": EDIT_S}},
                           judge={"class_path": "tests.fakes.FakeRewardModel",
                                  "init_args": {"delay_s": SCORE_S, "batch_size": 1}})
        env = child_env({"OMP_NUM_THREADS": "1"})
        rows, runs = [], {}
        for n in (1, 2):
            busy = wait_quiet()
            name = f"n{n}"
            cmd = [sys.executable, "main.py", "--config", str(cfg), "--run-name", name]
            if n > 1:
                cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}", *cmd[1:]]
            res = run_measured(cmd, log_path=tmp / f"{name}.log", env=env)
            check_ok(res, name, tmp / f"{name}.log")
            res["cpu_busy_before"] = round(busy, 3)
            runs[name] = res
            model_s = n_pairs * (EDIT_S + SCORE_S)
            rows.append([n, res["wall_s"], round(model_s / n, 1), round(res["wall_s"] - model_s / n, 1)])
        pairs = {name: [(q["category"], q["pair_id"], q["status"], q["score"])
                        for q in report_of(tmp / "out" / name)["pairs"]] for name in runs}
        same = pairs["n1"] == pairs["n2"]
        speedup = runs["n1"]["wall_s"] / runs["n2"]["wall_s"]
        print(table(["processes", "wall s", "ideal s (model time / N)", "overhead s"], rows))
        print(f"speed-up 2 vs 1: {speedup:.2f}x; reports agree pair by pair: {same}")
        payload = {"date": now_utc(), "machine": machine_info(), "git_start": start, "git_end": git_state(),
                   "settings": {"pairs": n_pairs, "edit_delay_s": EDIT_S, "score_delay_s": SCORE_S,
                                "launcher": "torch.distributed.run --standalone", "benchmark": info},
                   "runs": runs, "speedup_2_vs_1": round(speedup, 3), "reports_agree": same}
        print(f"wrote {save_result('data_parallel', payload, args.results_dir)}")
        return 0 if same else 1
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
