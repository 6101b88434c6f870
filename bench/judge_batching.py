"""Qwen3-VL judge throughput at batch 1, 4, 8, in `generate` and `logits` scoring (CPU, 1 torch thread),
with a profile of where the time goes at batch 1 and batch 8.

    python bench/judge_batching.py                 # full (~20 min on one core)
    python bench/judge_batching.py --no-profile    # without the profile (~16 min)
    python bench/judge_batching.py --threads 1,2   # also with 2 torch threads (erratic on a busy 2-core box)
    python bench/judge_batching.py --quick         # smoke (tiny:qwen3-vl, seconds)
    python bench/judge_batching.py --split         # prefill vs decode per item at batch 1 and 8 (~5 min)

The judge is `Qwen3VLRewardModel(model_name=MODEL, device="cpu", dtype="float32", ...)` with MODEL =
`tiny:qwen3-vl-bench` (src/models/tiny/qwen3_vl.py `build_bench`): the real Qwen3-VL architecture,
processor and from_pretrained path with random weights and realistic *shapes*: a BPE tokenizer trained on
the project's own text (~34k tokens, Qwen's pre-tokenizer and special tokens), the real patch (16 px),
2x2 merge and pixel budget (one LLM token per 32x32 pixels), text hidden 512, 4 layers, 8 query / 2 KV
heads (GQA), MLP 1536. (`--model tiny:qwen3-vl`, the test-suite judge with hidden 32 and a byte-level
tokenizer, is what `--quick` and the old measurements used.) It is called directly with `ScoreRequest`s
built like the pipeline builds them: the built-in category prompt rendered by src.prompts, an original and
an edited `--image-size`² generated image (512² by default: 256 image tokens each, 512 per pair; a 1024²
pair is 2,048 image tokens, ~2.6x the input: `--split --image-size 1024` measures it), batches of one
category at a time (as score_pairs does). Prompt kinds: `category` (judged: instructions of different
lengths, so batches are left-padded), `equal` (the same prompts with one instruction for all: no padding;
diagnostic), `short` (a one-line prompt; diagnostic).

generate: the reply length is realistic: REPLY_SAMPLES are replies in the format our built-in prompts ask
for ({"reasoning": "<two or three sentences>", "score": N}); their token counts with the judge's own
tokenizer are measured, and every row decodes exactly max(counts) new tokens (64 with the bench judge):
`max_new_tokens` = `min_new_tokens` = that count (random weights would otherwise stop at a random EOS and
make large batches look faster for the wrong reason; the new-token count of every generate call is
recorded). `max_retries=0` (one generation per item). logits: one forward pass per batch.

Timing: the same N items at each batch size; one untimed warm-up call per (mode, batch size); each
configuration timed `--rounds` times, the median reported. Target: items/s at batch 8 >= 2.5 x batch 1.
Derived: decode ms per new token per row = (generate s/item - logits s/item) / new tokens (logits mode is
the prefill alone). Physical context: the FLOPs of one item's prefill (torch's FlopCounterMode over a
logits forward) over its logits time give the achieved GFLOP/s, next to this core's measured matmul peak.

Profile (`--profile`, default on unless --quick): one `judge.score` of 8 category items at batch 1 and at
batch 8 per mode under torch.profiler (operator self time in buckets: lm_head, other linear layers,
attention, KV-cache concatenation, vision patch conv, the rest) and cProfile (our per-item Python: chat
template, processor/image preprocessing, reply parsing).
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
MODEL = "tiny:qwen3-vl-bench"
QUICK_MODEL = "tiny:qwen3-vl"
QUICK_NEW_TOKENS = 4

# Replies in the format the built-in prompts ask for (src/prompts/templates/default: a JSON object with
# two or three sentences of reasoning and an integer score); our own wording. Their token counts with the
# judge's tokenizer set the forced reply length of generate mode.
REPLY_SAMPLES = (
    '{"reasoning": "The red car was recolored blue as instructed and the rest of the street is unchanged. The new '
    'paint shows slightly flat reflections on the hood, and the edge near the rear wheel is a little blurred.", '
    '"score": 8}',
    '{"reasoning": "The instruction asked to move the cup to the left edge of the table, but the edited image still '
    'shows it in the center and only its shadow changed. The background and the other objects are preserved.", '
    '"score": 2}',
    '{"reasoning": "水杯被移到了桌子左侧，位置正确，但杯中的水面倾斜方向与重力不符，桌面上的倒影也没有随之移动。其余内容保持不变。", '
    '"score": 5}',
)

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


def reply_tokens(model: str) -> list[int]:
    """Token counts of REPLY_SAMPLES with `model`'s tokenizer (+1 for the end-of-turn token)."""
    from transformers import AutoTokenizer

    from src.models.tiny import resolve_model_path

    tok = AutoTokenizer.from_pretrained(resolve_model_path(model))
    return [len(tok.encode(r, add_special_tokens=False)) + 1 for r in REPLY_SAMPLES]


def load_judge(model: str, scoring: str, new_tokens: int):
    from src.models.reward.implementations.qwen3_vl_reward import Qwen3VLRewardModel

    judge = Qwen3VLRewardModel(model_name=model, device="cpu", dtype="float32", batch_size=1,
                               scoring=scoring, max_new_tokens=new_tokens, max_retries=0)
    judge.load()
    calls: list[tuple[int, int]] = []  # (rows, new tokens per row) of every generate call
    if scoring == "generate":
        judge._generation_config.min_new_tokens = new_tokens  # no early EOS: fixed work per item
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


def image_tokens(judge, requests) -> list[int]:
    texts = [judge._prompt_text(r) for r in requests]
    enc = judge._encode(texts, requests)
    image_id = judge.model.config.image_token_id
    return [int(x) for x in (enc["input_ids"] == image_id).sum(dim=1)]


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
           "seconds_all": [round(x, 3) for x in times], "items_per_s": round(len(requests) / t, 3),
           "seconds_per_item": round(t / len(requests), 4), "statuses": statuses}
    if calls:
        new = [n for _, n in calls]
        row["new_tokens_per_row_min_max"] = [min(new), max(new)]
        tokens = sum(rows * n for rows, n in calls) / rounds
        row["generated_tokens_per_round"] = tokens
        row["tokens_per_s"] = round(tokens / t, 1)
    return row


# ----------------------------------------------------------------------------- physics and profile


def matmul_peak_gflops(repeats: int = 5) -> float:
    """This core's float32 matmul rate on a prefill-like shape ([1024, 512] x [512, 1536]), best of
    `repeats`: the ceiling for compute-bound work at the current torch thread count."""
    import torch

    a, w = torch.randn(1024, 512), torch.randn(1536, 512)
    torch.nn.functional.linear(a, w)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(10):
            torch.nn.functional.linear(a, w)
        best = min(best, (time.perf_counter() - t0) / 10)
    return round(2 * 1024 * 512 * 1536 / best / 1e9, 1)


def prefill_flops(judge, request) -> int:
    """FLOPs (torch.utils.flop_counter: matmuls, convolutions, attention) of one item's logits forward."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    inputs = judge._encode([judge._logits_prompt_text(request)], [request])
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        judge.model(**inputs, use_cache=False, logits_to_keep=2)
    return int(counter.get_total_flops())


def _bucket(name: str, shapes, vocab: int) -> str:
    if "scaled_dot_product" in name or "flash_attention" in name or name == "aten::_efficient_attention_forward":
        return "attention (SDPA)"
    if name in ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear"):
        flat = [d for s in shapes if isinstance(s, (list, tuple)) for d in s]
        return "lm_head (vocab matmul)" if vocab in flat else "linear layers (other matmuls)"
    if name == "aten::cat":
        return "concatenation (KV cache growth, masks)"
    if "convolution" in name:
        return "vision patch conv"
    return "other torch ops"


def profile_call(judge, requests, batch: int) -> dict:
    """One `judge.score(requests)` at `batch` under torch.profiler (operator self time by bucket) and
    cProfile (cumulative time of our per-item Python steps)."""
    import cProfile
    import pstats

    import torch
    from torch.profiler import ProfilerActivity, profile

    judge.batch_size = batch
    judge.score(requests[:batch])  # warm-up
    vocab = int(judge.model.config.text_config.vocab_size)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        t0 = time.perf_counter()
        judge.score(requests)
        wall = time.perf_counter() - t0
    buckets: dict[str, float] = {}
    for ev in prof.key_averages(group_by_input_shape=True):
        key = _bucket(ev.key, ev.input_shapes, vocab)
        buckets[key] = buckets.get(key, 0.0) + ev.self_cpu_time_total / 1e6
    ops = sum(buckets.values())
    pr = cProfile.Profile()
    t0 = time.perf_counter()
    pr.enable()
    judge.score(requests)
    pr.disable()
    wall_cprofile = time.perf_counter() - t0
    stats = pstats.Stats(pr).stats  # (file, line, func) -> (cc, nc, tt, ct, callers)
    steps = {"chat template (apply_chat_template)": ("apply_chat_template",),
             "processor: tokenizer + image preprocessing (_encode)": ("_encode",),
             "model.generate / forward": ("generate", "_call_impl"),
             "reply parsing (parse_score / parse_values)": ("parse_score", "parse_values"),
             "decode replies (batch_decode)": ("_decode_replies",)}
    py: dict[str, float] = {}
    for label, funcs in steps.items():
        best = 0.0
        for (fname, _line, func), (_cc, _nc, _tt, ct, _callers) in stats.items():
            if func in funcs and ("site-packages" not in fname or label.startswith("model")
                                  or label.startswith("chat")):
                best = max(best, ct)
        py[label] = round(best, 3)
    n = len(requests)
    return {"batch": batch, "items": n, "wall_s": round(wall, 3), "wall_s_under_cprofile": round(wall_cprofile, 3),
            "torch_ops_self_s": round(ops, 3),
            "ops_ms_per_item": {k: round(v * 1000 / n, 1) for k, v in sorted(buckets.items(), key=lambda kv: -kv[1])},
            "ops_share": {k: round(v / ops, 3) for k, v in sorted(buckets.items(), key=lambda kv: -kv[1])},
            "python_steps_ms_per_item": {k: round(v * 1000 / n, 1) for k, v in py.items()}}


def prefill_decode_split(model: str, requests, new_tokens: int, batches: list[int], rounds: int) -> list[dict]:
    """Prefill vs decode per item, measured directly: `model.generate` on the judge's own encoded inputs
    with 1 new token (the prefill + one lm_head row) and with `new_tokens` (forced), alternated in each
    round so that load drift on a shared machine hits both alike; the median of `rounds` of each.
    decode ms per token per row = (t(new_tokens) - t(1)) / (new_tokens - 1) / batch."""
    import copy

    import torch

    judge, _calls = load_judge(model, "generate", new_tokens)
    generate = judge.model.generate
    out = []
    for b in batches:
        rows = requests[:b]
        inputs = judge._encode([judge._prompt_text(r) for r in rows], rows)
        times: dict[int, list[float]] = {1: [], new_tokens: []}
        with torch.inference_mode():
            for i in range(rounds + 1):  # round 0: warm-up, not timed
                for n in (1, new_tokens):
                    cfg = copy.deepcopy(judge._generation_config)
                    cfg.max_new_tokens = cfg.min_new_tokens = n
                    t0 = time.perf_counter()
                    generate(**inputs, generation_config=cfg)
                    if i:
                        times[n].append(time.perf_counter() - t0)
        t1, tn = statistics.median(times[1]), statistics.median(times[new_tokens])
        out.append({"batch": b, "rounds": rounds, "seconds_1_token": [round(x, 3) for x in times[1]],
                    f"seconds_{new_tokens}_tokens": [round(x, 3) for x in times[new_tokens]],
                    "prefill_s_per_item": round(t1 / b, 3),
                    "decode_ms_per_token_per_row": round((tn - t1) / (new_tokens - 1) / b * 1000, 2),
                    "generate_s_per_item": round(tn / b, 3)})
    judge.release()
    base = out[0]
    for r in out:
        r["generate_speedup_vs_first"] = round(base["generate_s_per_item"] / r["generate_s_per_item"], 2)
    # the ceiling if decoding cost nothing at the largest batch: (prefill + decode at batch 1) / prefill
    base["generate_ceiling_if_decode_free"] = round(base["generate_s_per_item"] / out[-1]["prefill_s_per_item"], 2)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=MODEL, help=f"judge model_name (default {MODEL}; --quick: {QUICK_MODEL})")
    ap.add_argument("--items", type=int, default=16, help="items per timed round (a multiple of 8)")
    ap.add_argument("--batches", default="1,4,8")
    ap.add_argument("--modes", default="generate,logits")
    ap.add_argument("--threads", default="1", help="torch threads, comma-separated (e.g. 1,2)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--image-size", type=int, default=512)
    ap.add_argument("--new-tokens", type=int, help="forced reply length (default: max token count of REPLY_SAMPLES)")
    ap.add_argument("--prompts", default="category,equal",
                    help="category: the pipeline's built-in prompts (judged); equal: the same with equal lengths "
                         "(no padding; diagnostic); short: a one-line prompt (diagnostic)")
    ap.add_argument("--profile", action=argparse.BooleanOptionalAction, default=None,
                    help="profile batch 1 vs 8 (default: on, off with --quick)")
    ap.add_argument("--split", action="store_true",
                    help="only the prefill/decode split (batch 1 and 8, category prompts, interleaved rounds); "
                         "writes judge_batching_split.json (judge_batching_split_<image size>.json for another "
                         "--image-size)")
    ap.add_argument("--quick", action="store_true",
                    help=f"smoke mode: {QUICK_MODEL}, 8 items, batches 1 and 8, short prompt, 1 round, "
                         f"{QUICK_NEW_TOKENS} new tokens, no profile")
    ap.add_argument("--results-dir")
    args = ap.parse_args(argv)
    if args.quick:
        args.items, args.rounds, args.batches, args.prompts, args.image_size = 8, 1, "1,8", "short", 64
        args.model = QUICK_MODEL if args.model == MODEL else args.model
        args.new_tokens = args.new_tokens or QUICK_NEW_TOKENS
    profile = (not args.quick) if args.profile is None else args.profile
    import torch

    torch.manual_seed(0)
    counts = reply_tokens(args.model)
    new_tokens = args.new_tokens or max(counts)
    batches = [int(b) for b in args.batches.split(",")]
    if args.split:
        torch.set_num_threads(int(args.threads.split(",")[0]))
        split_batches = [batches[0], batches[-1]]
        split = prefill_decode_split(args.model, make_requests(max(split_batches) * 2, args.image_size)[
            max(split_batches):], new_tokens, split_batches, max(args.rounds, 2))
        print(table(["batch", "prefill s/item", "decode ms/token/row", "generate s/item", "x first"],
                    [[r["batch"], r["prefill_s_per_item"], r["decode_ms_per_token_per_row"], r["generate_s_per_item"],
                      r["generate_speedup_vs_first"]] for r in split]))
        print("ceiling if decoding were free at the largest batch:", split[0]["generate_ceiling_if_decode_free"])
        name = "judge_batching_split" if args.image_size == 512 else f"judge_batching_split_{args.image_size}"
        path = save_result(name, {
            "settings": {"model": args.model, "image_size": args.image_size, "new_tokens": new_tokens,
                         "reply_sample_tokens": counts, "threads": args.threads, "prompts": "category"},
            "rows": split}, args.results_dir)
        print(f"\nwrote {path}")
        return 0
    kinds = args.prompts.split(",")
    request_sets = {k: make_requests(args.items, args.image_size, prompt_kind=k) for k in kinds}
    rows = []
    profiles = []
    physics: dict[str, object] = {}
    tokens: dict[str, dict[str, list[int]]] = {}
    for threads in (int(t) for t in args.threads.split(",")):
        torch.set_num_threads(threads)
        for mode in args.modes.split(","):
            judge, calls = load_judge(args.model, mode, new_tokens)
            for kind, requests in request_sets.items():
                toks = prompt_tokens(judge, requests)
                tokens.setdefault(mode, {})[kind] = [min(toks), max(toks)]
                if "image_tokens_per_item" not in physics:
                    physics["image_tokens_per_item"] = sorted(set(image_tokens(judge, requests)))
                for b in batches:
                    busy = None if args.quick else wait_quiet(timeout_s=10)
                    print(f"threads {threads}, {mode}, {kind} prompt, batch {b} ...", flush=True)
                    row = measure(judge, calls, requests, b, args.rounds)
                    rows.append({"threads": threads, "mode": mode, "prompt": kind, "input_tokens_min_max":
                                 [min(toks), max(toks)], "cpu_busy_before": busy, **row})
            if threads == 1 and mode == "logits" and not args.quick:
                physics["prefill_gflop_per_item"] = round(prefill_flops(judge, request_sets[kinds[0]][0]) / 1e9, 2)
                physics["matmul_peak_gflops_1_thread"] = matmul_peak_gflops()
            if profile and threads == 1:
                reqs = request_sets["category" if "category" in request_sets else kinds[0]][:8]
                for b in (1, 8):
                    print(f"profile: {mode}, batch {b} ...", flush=True)
                    profiles.append({"mode": mode, **profile_call(judge, reqs, b)})
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
    # decode cost per new token per row: generate minus logits (the prefill alone), same prompts and batch
    decode = []
    for g in (r for r in rows if r["mode"] == "generate"):
        lg = next((r for r in rows if r["mode"] == "logits" and r["threads"] == g["threads"]
                   and r["prompt"] == g["prompt"] and r["batch"] == g["batch"]), None)
        if lg is not None:
            decode.append({"threads": g["threads"], "prompt": g["prompt"], "batch": g["batch"],
                           "ms_per_token_per_row": round((g["seconds_per_item"] - lg["seconds_per_item"])
                                                         * 1000 / new_tokens, 2)})
    if "prefill_gflop_per_item" in physics:
        lg1 = next((r for r in rows if r["mode"] == "logits" and r["threads"] == 1 and r["batch"] == batches[0]
                    and r["prompt"] == kinds[0]), None)
        lgN = next((r for r in rows if r["mode"] == "logits" and r["threads"] == 1 and r["batch"] == batches[-1]
                    and r["prompt"] == kinds[0]), None)
        for label, r in (("batch1", lg1), (f"batch{batches[-1]}", lgN)):
            if r is not None:
                physics[f"logits_achieved_gflops_{label}"] = round(physics["prefill_gflop_per_item"]
                                                                  / r["seconds_per_item"], 1)

    print(f"\nQwen3-VL judge ({args.model}, CPU, float32), {args.items} items/round, median of {args.rounds}, "
          f"{new_tokens} new tokens per reply (sample replies: {counts} tokens):")
    print(table(["torch threads", "mode", "prompt", "input tokens", "batch", "s/round", "items/s", "x batch 1",
                 "gen tokens/s", "new tokens/row"],
                [[r["threads"], r["mode"], r["prompt"], r["input_tokens_min_max"], r["batch"], r["seconds_median"],
                  r["items_per_s"], r["speedup_vs_batch1"], r.get("tokens_per_s"), r.get("new_tokens_per_row_min_max")]
                 for r in rows]))
    print(table(["torch threads", "mode", "prompt", f"batch {batches[-1]} / batch {batches[0]}", "target", "verdict"],
                [[s["threads"], s["mode"], s["prompt"], s["speedup"], f">= {TARGET}", s["verdict"]] for s in speedups]))
    if decode:
        print(table(["torch threads", "prompt", "batch", "decode ms / new token / row"],
                    [[d["threads"], d["prompt"], d["batch"], d["ms_per_token_per_row"]] for d in decode]))
    if physics:
        print("physics:", physics)
    for p in profiles:
        print(f"\nprofile {p['mode']} batch {p['batch']}: wall {p['wall_s']} s for {p['items']} items; "
              f"torch ops ms/item {p['ops_ms_per_item']}; python steps ms/item {p['python_steps_ms_per_item']}")
    path = save_result("judge_batching", {
        "settings": {"model": args.model, "device": "cpu", "dtype": "float32", "items": args.items,
                     "rounds": args.rounds, "image_size": args.image_size, "max_new_tokens": new_tokens,
                     "min_new_tokens": new_tokens, "reply_sample_tokens": counts, "max_retries": 0,
                     "quick": args.quick, "threads": args.threads, "prompts": kinds},
        "input_tokens_min_max": tokens, "rows": rows, "speedups": speedups, "decode": decode,
        "physics": physics, "profiles": profiles,
        "target": {"speedup_min": TARGET, "judged_on": "category prompts",
                   "results": [s for s in speedups if s["prompt"] == "category"]}}, args.results_dir)
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
