"""Tiny Qwen3-VL judge throughput at batch 1, 4, 8, in `generate` and `logits` scoring (CPU).

    python bench/judge_batching.py                 # full (~2 min on 2 cores, torch threads 1)
    python bench/judge_batching.py --threads 1,2   # also with 2 torch threads (erratic on a busy 2-core box)
    python bench/judge_batching.py --quick         # smoke

The judge is `Qwen3VLRewardModel(model_name="tiny:qwen3-vl", device="cpu", dtype="float32", ...)` (random
weights, the real architecture, processor and chat template), called directly with `ScoreRequest`s built
like the pipeline builds them: the built-in category prompt rendered by src.prompts, an original and an
edited 256x256 generated image (the tiny processor resizes them to <= 2304 pixels), batches of one
category at a time (as score_pairs does). Prompt kinds: `category` (judged: instructions of different
lengths, so batches are left-padded), `equal` (the same prompts with one instruction for all: no padding;
diagnostic), `short` (a one-line prompt, ~150 tokens; diagnostic).

generate: `max_new_tokens=16`, `max_retries=0` (one generation per item: the random judge's replies never
parse, and retries would multiply the work unevenly). Random weights can emit EOS early, which would make
large batches look faster for the wrong reason, so `min_new_tokens` is set to 16 on the judge's generation
config: every row decodes exactly 16 tokens (checked: the new-token count of every generate call is
recorded). Tokens/s are reported too.
logits: one forward pass per batch (no decoding).

Timing: the same N items at each batch size; one untimed warm-up call per (mode, batch size); each
configuration timed `--rounds` times, the median reported. Target: items/s at batch 8 >= 2.5 x batch 1.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import CATEGORIES, realistic_image, save_result, table, verdict, wait_quiet  # noqa: E402

TARGET = 2.5
MAX_NEW_TOKENS = 16


SHORT_PROMPT = ("You judge image edits.", "Rate how well the edit follows the instruction, 0-10.")


def make_requests(n: int, image_size: int, group: int = 8, prompt_kind: str = "category"):
    """`category`: the built-in category templates (what the pipeline sends; instructions of different
    lengths, so batches need left padding); `equal`: the same templates with one instruction text for all
    (no padding within a batch; diagnostic); `short`: a one-line prompt (diagnostic: how much batching
    gains when the prompt is short)."""
    from src.models.base import JudgePrompt, ScoreRequest
    from src.prompts import render_prompt, template_for_category

    requests = []
    for i in range(n):
        cat = CATEGORIES[(i // group) % len(CATEGORIES)]  # batches of one category, like score_pairs
        n = 7 if prompt_kind == "equal" else i
        instruction = f"把画面中第 {n} 个物体移到左边，并保持其余内容不变"
        description = f"一张测试图片，编号 {n}"
        if prompt_kind == "short":
            prompt = JudgePrompt(system=SHORT_PROMPT[0], user=SHORT_PROMPT[1] + f" Instruction: edit {i}.",
                                 template="short", template_hash="-")
        else:
            prompt = render_prompt(template_for_category(cat, {}, "auto"), instruction=instruction,
                                   description=description, category=cat, pair_id=f"p{i}")
        requests.append(ScoreRequest(pair_id=f"p{i}", category=cat, original=realistic_image(i, image_size),
                                     edited=realistic_image(5000 + i, image_size), instruction=instruction,
                                     description=description, prompt=prompt))
    return requests


def load_judge(scoring: str):
    from src.models.reward.implementations.qwen3_vl_reward import Qwen3VLRewardModel

    judge = Qwen3VLRewardModel(model_name="tiny:qwen3-vl", device="cpu", dtype="float32", batch_size=1,
                               scoring=scoring, max_new_tokens=MAX_NEW_TOKENS, max_retries=0)
    judge.load()
    calls: list[tuple[int, int]] = []  # (rows, new tokens per row) of every generate call
    if scoring == "generate":
        judge._generation_config.min_new_tokens = MAX_NEW_TOKENS  # no early EOS: fixed work per item
        inner = judge.model.generate

        def generate(*args, **kwargs):
            out = inner(*args, **kwargs)
            calls.append((int(out.shape[0]), int(out.shape[1] - kwargs["input_ids"].shape[1])))
            return out

        judge.model.generate = generate
    return judge, calls


def prompt_tokens(judge, requests) -> list[int]:
    """Tokens of each request's full input (text + image placeholders), as the judge encodes it."""
    texts = [judge._logits_prompt_text(r) if judge.scoring == "logits" else judge._prompt_text(r) for r in requests]
    enc = judge._encode(texts, requests)
    return [int(x) for x in enc["attention_mask"].sum(dim=1)]


def measure(judge, calls, requests, batch: int, rounds: int) -> dict:
    judge.batch_size = batch
    judge.score(requests[:batch])  # warm-up
    times = []
    calls.clear()
    statuses: dict[str, int] = {}
    for _ in range(rounds):
        t0 = time.perf_counter()
        results = judge.score(requests)
        times.append(time.perf_counter() - t0)
        for r in results:
            statuses[r.status] = statuses.get(r.status, 0) + 1
    t = statistics.median(times)
    row = {"batch": batch, "items": len(requests), "rounds": rounds, "seconds_median": round(t, 3),
           "seconds_all": [round(x, 3) for x in times], "items_per_s": round(len(requests) / t, 2),
           "statuses": statuses}
    if calls:
        new = [n for _, n in calls]
        row["new_tokens_per_row_min_max"] = [min(new), max(new)]
        tokens = sum(rows * n for rows, n in calls) / rounds
        row["generated_tokens_per_round"] = tokens
        row["tokens_per_s"] = round(tokens / t, 1)
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", type=int, default=40, help="items per timed round (a multiple of 8)")
    ap.add_argument("--batches", default="1,4,8")
    ap.add_argument("--modes", default="generate,logits")
    ap.add_argument("--threads", default="1", help="torch threads, comma-separated (e.g. 1,2)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--image-size", type=int, default=256)
    ap.add_argument("--prompts", default="category,equal,short",
                    help="category: the pipeline's built-in prompts (judged); equal: the same with equal lengths "
                         "(no padding; diagnostic); short: a one-line prompt (diagnostic)")
    ap.add_argument("--quick", action="store_true", help="smoke mode: 8 items, batches 1 and 8, short prompt, 1 round")
    ap.add_argument("--results-dir")
    args = ap.parse_args(argv)
    if args.quick:
        args.items, args.rounds, args.batches, args.prompts, args.image_size = 8, 1, "1,8", "short", 64
    import torch

    batches = [int(b) for b in args.batches.split(",")]
    kinds = args.prompts.split(",")
    request_sets = {k: make_requests(args.items, args.image_size, prompt_kind=k) for k in kinds}
    rows = []
    tokens: dict[str, dict[str, list[int]]] = {}
    for threads in (int(t) for t in args.threads.split(",")):
        torch.set_num_threads(threads)
        for mode in args.modes.split(","):
            judge, calls = load_judge(mode)
            for kind, requests in request_sets.items():
                toks = prompt_tokens(judge, requests)
                tokens.setdefault(mode, {})[kind] = [min(toks), max(toks)]
                for b in batches:
                    busy = None if args.quick else wait_quiet(timeout_s=10)
                    print(f"threads {threads}, {mode}, {kind} prompt, batch {b} ...", flush=True)
                    row = measure(judge, calls, requests, b, args.rounds)
                    rows.append({"threads": threads, "mode": mode, "prompt": kind, "input_tokens_min_max":
                                 [min(toks), max(toks)], "cpu_busy_before": busy, **row})
            judge.release()

    speedups = []
    for threads in sorted({r["threads"] for r in rows}):
        for mode in args.modes.split(","):
            for kind in kinds:
                sel = {r["batch"]: r for r in rows
                       if r["threads"] == threads and r["mode"] == mode and r["prompt"] == kind}
                if not sel:
                    continue
                base = sel[batches[0]]["items_per_s"]
                for b, r in sel.items():
                    r["speedup_vs_batch1"] = round(r["items_per_s"] / base, 2)
                top = sel[batches[-1]]["speedup_vs_batch1"]
                speedups.append({"threads": threads, "mode": mode, "prompt": kind, "speedup": top,
                                 "verdict": verdict(top >= TARGET) if kind == "category" else "(diagnostic)"})
    print(f"\nTiny Qwen3-VL judge (tiny:qwen3-vl, CPU, float32), {args.items} items/round, median of {args.rounds}:")
    print(table(["torch threads", "mode", "prompt", "input tokens", "batch", "s/round", "items/s", "x batch 1",
                 "gen tokens/s", "new tokens/row"],
                [[r["threads"], r["mode"], r["prompt"], r["input_tokens_min_max"], r["batch"], r["seconds_median"],
                  r["items_per_s"], r["speedup_vs_batch1"], r.get("tokens_per_s"), r.get("new_tokens_per_row_min_max")]
                 for r in rows]))
    print(table(["torch threads", "mode", "prompt", f"batch {batches[-1]} / batch {batches[0]}", "target", "verdict"],
                [[s["threads"], s["mode"], s["prompt"], s["speedup"], f">= {TARGET}", s["verdict"]] for s in speedups]))
    path = save_result("judge_batching", {
        "settings": {"model": "tiny:qwen3-vl", "device": "cpu", "dtype": "float32", "items": args.items,
                     "rounds": args.rounds, "image_size": args.image_size, "max_new_tokens": MAX_NEW_TOKENS,
                     "min_new_tokens": MAX_NEW_TOKENS, "max_retries": 0, "quick": args.quick,
                     "threads": args.threads, "prompts": kinds},
        "input_tokens_min_max": tokens, "rows": rows, "speedups": speedups,
        "target": {"speedup_min": TARGET, "judged_on": "category prompts",
                   "results": [s for s in speedups if s["prompt"] == "category"]}}, args.results_dir)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
