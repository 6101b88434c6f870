"""Does ordering a category's pairs by input size before batching (score_pairs) make a VLM judge faster?

    python bench/judge_ordering.py            # 16 items, batch 8, logits and generate (~6 min on one CPU thread)
    python bench/judge_ordering.py --quick    # smoke: tiny:qwen3-vl, 4 items, batch 2

Real benchmarks mix image sizes within a category (GEdit-Bench's photos come in many aspect ratios and
resolutions; the Qwen3-VL processor keeps each near its own size, so the image token counts differ by
hundreds). Batches formed in benchmark order then pad every row to the longest one. `score_pairs` sorts a
category's pairs by `src.pipeline.judge_input_size` (the edit's pixel count from its PNG header, then the
text length) when the batch size is above 1; this bench measures what that buys.

Items: the built-in category prompt, an original and an edit of the same size, sizes alternating between
`--sizes` (default 512x512 and 320x320: 256 and 100 image tokens per image with the real 32-px merged
patches), instructions of equal length. The same items are scored by
`Qwen3VLRewardModel(model_name=tiny:qwen3-vl-bench)` (docs/benchmarks.md section 3) in batches of
`--batch`: in benchmark order (mixed sizes in every batch), and in the order `score_pairs` now uses (the
real `judge_input_size` on the edits written as PNG files). Alternated per round, median of `--rounds`.
Scores must be equal up to float noise (checked: largest difference reported).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import realistic_image, save_result, table, wait_quiet  # noqa: E402


def make_items(n: int, sizes: list[tuple[int, int]], run_dir: Path):
    from src.data import PairSpec
    from src.models.base import ScoreRequest
    from src.prompts import render_prompt, template_for_category
    from src.state import EditRecord

    items = []
    for i in range(n):
        w, h = sizes[i % len(sizes)]
        original = realistic_image(i, max(w, h)).resize((w, h))
        edited = realistic_image(5000 + i, max(w, h)).resize((w, h))
        rel = f"e{i}.png"
        edited.save(run_dir / rel)
        instruction = f"把画面中第 {i % 10} 个物体移到左边，并保持其余内容不变"  # equal lengths
        pair = PairSpec(category="物理", pair_id=f"p{i}", index=i, file_stem=f"p{i}", instruction=instruction,
                        description="一张测试图片")
        rec = EditRecord(category="物理", pair_id=f"p{i}", position=i, status="edited", instruction=instruction,
                         description="一张测试图片", metadata={}, image_path=rel, output_sha256="-",
                         input_sha256="-", seed=0, editor_fingerprint="-", error=None, info={}, seconds=0.0,
                         created_at=0.0)
        prompt = render_prompt(template_for_category("物理", {}, "auto"), instruction=instruction,
                               description="一张测试图片", category="物理", pair_id=f"p{i}")
        items.append((pair, rec, ScoreRequest(pair_id=f"p{i}", category="物理", original=original, edited=edited,
                                              instruction=instruction, description="一张测试图片", prompt=prompt)))
    return items


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", type=int, default=16)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sizes", default="512x512,320x320")
    ap.add_argument("--modes", default="logits,generate")
    ap.add_argument("--new-tokens", type=int, default=65, help="forced reply length in generate mode")
    ap.add_argument("--model", default="tiny:qwen3-vl-bench")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--results-dir")
    args = ap.parse_args(argv)
    if args.quick:
        args.items, args.batch, args.rounds, args.model, args.sizes = 4, 2, 1, "tiny:qwen3-vl", "64x64,32x32"
        args.new_tokens = 4
    import torch

    from src.models.reward.implementations.qwen3_vl_reward import Qwen3VLRewardModel
    from src.pipeline import judge_input_size

    torch.set_num_threads(1)
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="ieb-bench-order-"))
    items = make_items(args.items, sizes, tmp)
    orders = {"benchmark order": items,
              "sorted (score_pairs)": sorted(items, key=lambda it: judge_input_size(tmp, it[0], it[1]))}
    rows = []
    for mode in args.modes.split(","):
        judge = Qwen3VLRewardModel(model_name=args.model, device="cpu", dtype="float32", batch_size=args.batch,
                                   scoring=mode, max_new_tokens=args.new_tokens, max_retries=0)
        judge.load()
        if mode == "generate":
            judge._generation_config.min_new_tokens = args.new_tokens  # fixed work per row (random weights)
        times: dict[str, list[float]] = {k: [] for k in orders}
        scores: dict[str, dict[str, float | None]] = {}
        tokens: dict[str, list[int]] = {}
        for name, seq in orders.items():  # untimed warm-up; input lengths per batch (padded to the longest)
            reqs = [r for _, _, r in seq]
            batches = [reqs[i:i + args.batch] for i in range(0, len(reqs), args.batch)]
            tokens[name] = [int(judge._encode([judge._logits_prompt_text(r) if mode == "logits" else
                                              judge._prompt_text(r) for r in b], b)["attention_mask"].shape[1])
                            for b in batches]
            judge.score(batches[0])
        busy = None if args.quick else wait_quiet(timeout_s=10)
        for _ in range(args.rounds):
            for name, seq in orders.items():
                reqs = [r for _, _, r in seq]
                t0 = time.perf_counter()
                results = []
                for i in range(0, len(reqs), args.batch):
                    results += judge.score(reqs[i:i + args.batch])
                times[name].append(time.perf_counter() - t0)
                scores[name] = {r.pair_id: (res.score if res.status == "scored" else None)
                                for r, res in zip(reqs, results)}
        judge.release()
        base = statistics.median(times["benchmark order"])
        diffs = [abs(a - b) for pid, a in scores["benchmark order"].items()
                 for b in [scores["sorted (score_pairs)"][pid]] if a is not None and b is not None]
        for name in orders:
            t = statistics.median(times[name])
            rows.append({"mode": mode, "order": name, "items": args.items, "batch": args.batch,
                         "padded_lengths_per_batch": tokens[name], "seconds_median": round(t, 3),
                         "seconds_all": [round(x, 3) for x in times[name]],
                         "items_per_s": round(args.items / t, 3), "speedup": round(base / t, 3),
                         "largest_score_difference": max(diffs) if diffs else None, "cpu_busy_before": busy})
    print(table(["mode", "order", "padded length per batch", "s (median)", "items/s", "x benchmark order",
                 "largest score diff"],
                [[r["mode"], r["order"], r["padded_lengths_per_batch"], r["seconds_median"], r["items_per_s"],
                  r["speedup"], r["largest_score_difference"]] for r in rows]))
    path = save_result("judge_ordering", {
        "settings": {"model": args.model, "items": args.items, "batch": args.batch, "rounds": args.rounds,
                     "sizes": args.sizes, "modes": args.modes, "new_tokens": args.new_tokens, "quick": args.quick,
                     "torch_threads": 1},
        "rows": rows}, args.results_dir)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
