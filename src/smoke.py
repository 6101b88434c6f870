"""`python main.py smoke --config FILE`: prove the configured models on this machine, one pair each.

For the config's editor and judge, on the first valid pair of its benchmark, this

1. records versions (python, torch, CUDA, diffusers, transformers, accelerate), the GPUs and the
   Qwen rope-position status of the installed versions (`qwen_fixes.rope_positions_status`);
2. computes the memory plan (`--plan`: `src/memplan.py`) for batch size 1;
3. loads the editor (seconds; peak GPU memory from `torch.cuda.max_memory_allocated`, summed over GPUs),
   edits the pair (seconds), then calls the upstream pipeline on the same loaded weights exactly as its
   model card does (one image, the pair's seed; `model_card_call` below) and compares the two images
   pixel by pixel (bit-for-bit expected: same weights, same seed, batch 1);
4. releases the editor, loads the judge, scores the edit once (seconds, peak memory, the score or the
   failure with its raw reply);
5. prints a summary and writes `smoke.json` (and `edit.png` / `reference.png`) into
   `<output_dir>/smoke-<time>/` (or `--output-dir DIR`).

A step that raises (e.g. CUDA out of memory while loading) is recorded as `error` of its model with the
peak memory so far, and smoke.json is still written.

Exit status: 0 when every step ran and the edit equals the reference within `--tolerance` (default 0,
in 1/255 steps per channel), 1 otherwise, 2 for a configuration error. On a CPU-only machine peak GPU
memory is null and the host's peak RSS is reported instead. With the tiny models this runs on CPU in the
tests; with real checkpoints it is the command a GPU owner runs to validate a machine or a version pin
(docs/gpu.md). It has NOT been run on a GPU by its authors.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

log = logging.getLogger("src.smoke")


# ----------------------------------------------------------------------------- the model cards' calls


def model_card_call(editor, req) -> tuple[Any, dict[str, Any]] | None:
    """(context, kwargs) of the upstream call the model card shows for `editor`'s family and settings,
    for one request; None when the editor has no upstream pipeline (precomputed, identity, fakes).

    Written from the model cards, independently of the editors' own kwargs: one image (not a list of
    one), a prompt string, a CPU generator seeded with the request's seed. Settings the card leaves at
    its defaults take the editor's configured values (steps, scales, working size).
    """
    import torch
    from PIL import Image

    from src.models.diffusion.implementations.diffusers_generic import DiffusersEditModel
    from src.models.diffusion.implementations.flux_kontext import FluxKontextModel, output_size
    from src.models.diffusion.implementations.instruct_pix2pix import InstructPix2PixModel, working_size
    from src.models.diffusion.implementations.qwen_image_edit import QwenImageEditModel
    from src.models.diffusion.implementations.qwen_image_edit import capped_area as qwen_cap
    from src.models.diffusion.implementations.qwen_image_edit_plus import QwenImageEditPlusModel
    from src.models.diffusion.implementations.qwen_image_edit_plus import capped_area as plus_cap

    image = req.image.convert("RGB")
    generator = torch.Generator(device="cpu").manual_seed(int(req.seed))
    if isinstance(editor, (QwenImageEditModel, QwenImageEditPlusModel)):
        cfg = editor.cfg_active
        kwargs = {"image": [image] if isinstance(editor, QwenImageEditPlusModel) else image,
                  "prompt": req.instruction, "generator": generator,
                  "true_cfg_scale": editor.true_cfg_scale if cfg else 1.0,
                  "negative_prompt": editor.negative_prompt if cfg else None,
                  "num_inference_steps": editor.num_inference_steps}
        if editor.guidance_scale is not None:
            kwargs["guidance_scale"] = editor.guidance_scale
        cap = qwen_cap if isinstance(editor, QwenImageEditModel) else plus_cap
        return cap(editor.max_area), kwargs
    if isinstance(editor, FluxKontextModel):
        factor = int(getattr(editor.pipe, "vae_scale_factor", 8))
        width, height = output_size(image.size, editor.max_area, factor * 2)
        if not editor.auto_resize:
            image = image.resize((width, height), Image.LANCZOS)  # as the editor documents
        kwargs = {"image": image, "prompt": req.instruction, "guidance_scale": editor.guidance_scale,
                  "num_inference_steps": editor.num_inference_steps, "generator": generator,
                  "height": height, "width": width, "max_area": width * height,
                  "_auto_resize": editor.auto_resize}
        if editor.cfg_active:
            kwargs.update(true_cfg_scale=editor.true_cfg_scale, negative_prompt=editor.negative_prompt)
        return nullcontext(), kwargs
    if isinstance(editor, InstructPix2PixModel):
        size = working_size(image.size, editor.resolution)
        if image.size != size:
            image = image.resize(size, Image.LANCZOS)
        kwargs = {"prompt": req.instruction, "image": image, "num_inference_steps": editor.num_inference_steps,
                  "guidance_scale": editor.guidance_scale, "image_guidance_scale": editor.image_guidance_scale,
                  "generator": generator}
        if editor.negative_prompt is not None:
            kwargs["negative_prompt"] = editor.negative_prompt
        return nullcontext(), kwargs
    if isinstance(editor, DiffusersEditModel):
        return nullcontext(), {"image": image, "prompt": req.instruction, "generator": generator,
                               **editor.call_kwargs}
    return None


def reference_edit(editor, req):
    """The upstream call on the editor's loaded pipeline (see model_card_call); None if not applicable."""
    import torch

    call = model_card_call(editor, req)
    if call is None or getattr(editor, "pipe", None) is None:
        return None
    context, kwargs = call
    with context, torch.inference_mode():
        return editor.pipe(**kwargs, output_type="pil").images[0].convert("RGB")


# ----------------------------------------------------------------------------- measurements


def versions() -> dict[str, Any]:
    out: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform()}
    for name in ("torch", "diffusers", "transformers", "accelerate", "safetensors"):
        try:
            out[name] = __import__(name).__version__
        except Exception:  # noqa: BLE001 - report, don't fail
            out[name] = None
    import torch

    out["cuda"] = torch.version.cuda
    return out


def gpus() -> list[dict[str, Any]]:
    import torch

    if not torch.cuda.is_available():
        return []
    out = []
    for i in range(torch.cuda.device_count()):  # pragma: no cover - needs a GPU
        props = torch.cuda.get_device_properties(i)
        out.append({"index": i, "name": props.name, "total_bytes": int(props.total_memory),
                    "capability": f"{props.major}.{props.minor}"})
    return out


def reset_peak() -> None:
    import torch

    if torch.cuda.is_available():  # pragma: no cover - needs a GPU
        for i in range(torch.cuda.device_count()):
            torch.cuda.reset_peak_memory_stats(i)


def peak_gpu_bytes() -> int | None:
    """Peak bytes allocated by torch since reset_peak(), summed over the visible GPUs; None without CUDA."""
    import torch

    if not torch.cuda.is_available():
        return None
    return int(sum(torch.cuda.max_memory_allocated(i) for i in range(torch.cuda.device_count())))  # pragma: no cover


def peak_rss_bytes() -> int | None:
    try:
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * (1 if sys.platform == "darwin" else 1024)
    except Exception:  # noqa: BLE001
        return None


def _timed(fn):
    t0 = time.perf_counter()
    value = fn()
    return value, round(time.perf_counter() - t0, 3)


def _gib(n: int | None) -> str:
    return "n/a" if n is None else f"{n / 1024**3:.2f} GiB"


# ----------------------------------------------------------------------------- the run


def first_valid_pair(bench):
    from src.data import InvalidPair

    for pair in bench.iter_pairs():
        if pair.error:
            continue
        try:
            return pair, pair.load_image(), pair.extra_images()
        except InvalidPair as exc:
            log.warning("skipping invalid pair: %s", exc)
    return None


def run_smoke(cfg, out_dir: Path, tolerance: int = 0) -> dict[str, Any]:
    """The smoke run (module doc); returns the smoke.json content."""
    import numpy as np

    from src.data import load_benchmark
    from src.memplan import plan as memory_plan
    from src.models.base import EditRequest
    from src.models.diffusion.languages import instruction_language_warning
    from src.models.diffusion.qwen_fixes import rope_positions_status
    from src.pipeline import pair_seed, score_request, scoring_setup

    out_dir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"versions": versions(), "gpus": gpus(), "ok": False, "warnings": [],
                              "rope_positions": rope_positions_status()}
    bench = load_benchmark(cfg.data_path, cfg.categories, cfg.limit)
    found = first_valid_pair(bench)
    if found is None:
        result["error"] = f"{cfg.data_path}: no valid pair to edit"
        return result
    pair, image, extra = found
    seed = pair_seed(cfg.seed, pair.category, pair.pair_id)
    result["pair"] = {"category": pair.category, "pair_id": pair.pair_id, "seed": seed,
                      "input_size": list(image.size)}

    plan = memory_plan(cfg.editor.to_dict(), cfg.judge.to_dict(), mode=cfg.mode)
    predicted = {}
    for role in ("editor", "judge"):
        entry = plan["models"][role]
        one = next((e for e in entry.get("batch_estimates") or [] if e["batch_size"] == 1), {})
        predicted[role] = {"weight_bytes": entry.get("weight_bytes"), "peak_bytes": one.get("peak_alone_bytes"),
                           "target": entry.get("target"), "available": entry.get("available")}

    editor = cfg.editor.build()
    editor.check()
    warning = instruction_language_warning(editor, [pair])
    if warning:
        result["warnings"].append(warning)
    req = EditRequest(pair_id=pair.pair_id, category=pair.category, image=image, instruction=pair.instruction,
                      seed=seed, description=pair.description, extra_images=extra, metadata=pair.metadata)
    ed: dict[str, Any] = {"class": type(editor).__name__, "model": getattr(editor, "model_name", None),
                          "predicted": predicted["editor"]}
    result["editor"] = ed
    reset_peak()
    try:
        step = "load"
        _, ed["load_seconds"] = _timed(editor.load)
        ed["peak_gpu_bytes_after_load"] = peak_gpu_bytes()
        step = "edit"
        (edit,), ed["edit_seconds"] = _timed(lambda: editor.edit([req]))
    except Exception as exc:  # noqa: BLE001 - e.g. CUDA out of memory: record it, keep what was measured
        return _failed(result, ed, editor, step, exc)
    ed["peak_gpu_bytes"] = peak_gpu_bytes()
    if edit.image is None:
        ed["error"] = edit.error
        editor.release()
        return result
    edit.image.save(out_dir / "edit.png")
    ed["output_size"] = list(edit.image.size)
    try:
        reference, ed["reference_seconds"] = _timed(lambda: reference_edit(editor, req))
    except Exception as exc:  # noqa: BLE001
        return _failed(result, ed, editor, "reference call", exc)
    if reference is None:
        ed["reference"] = "not applicable (no upstream pipeline)"
        ed["matches_reference"] = None
    else:
        reference.save(out_dir / "reference.png")
        a = np.asarray(edit.image, dtype=np.int16)
        b = np.asarray(reference, dtype=np.int16)
        diff = int(np.abs(a - b).max()) if a.shape == b.shape else None
        ed["reference_max_abs_diff"] = diff
        ed["bit_identical"] = diff == 0
        ed["matches_reference"] = diff is not None and diff <= tolerance
    editor.release()

    judge = cfg.judge.build()
    judge.check()
    scoring = scoring_setup(cfg, bench)
    sreq = score_request(pair, edit.image, scoring, original=image)  # exactly what a run's judge gets
    jd: dict[str, Any] = {"class": type(judge).__name__, "model": getattr(judge, "model_name", None),
                          "predicted": predicted["judge"]}
    result["judge"] = jd
    reset_peak()
    try:
        step = "load"
        _, jd["load_seconds"] = _timed(judge.load)
        step = "score"
        (score,), jd["score_seconds"] = _timed(lambda: judge.score([sreq]))
    except Exception as exc:  # noqa: BLE001
        return _failed(result, jd, judge, step, exc)
    jd["peak_gpu_bytes"] = peak_gpu_bytes()
    jd.update(status=score.status, score=score.score, error=score.error, raw_reply=score.raw_reply,
              attempts=score.attempts)
    judge.release()
    result["peak_rss_bytes"] = peak_rss_bytes()
    result["ok"] = bool(ed.get("matches_reference") is not False and score.status == "scored")
    return result


def _failed(result: dict[str, Any], record: dict[str, Any], model, step: str, exc: Exception) -> dict[str, Any]:
    """A step raised (e.g. out of memory while loading): say which, with the peak so far; free the model."""
    record["error"] = f"{step} failed: {type(exc).__name__}: {exc}"
    record["peak_gpu_bytes"] = peak_gpu_bytes()
    try:
        model.release()
    except Exception:  # noqa: BLE001 - the first error is the one to report
        pass
    result["peak_rss_bytes"] = peak_rss_bytes()
    return result


def format_summary(result: dict[str, Any]) -> str:
    v = result["versions"]
    lines = [f"versions: torch {v.get('torch')} (CUDA {v.get('cuda')}), diffusers {v.get('diffusers')}, "
             f"transformers {v.get('transformers')}, accelerate {v.get('accelerate')}, python {v.get('python')}",
             "gpus: " + (", ".join(f"{g['index']}: {g['name']} {_gib(g['total_bytes'])}" for g in result["gpus"])
                         or "none (CPU run: peak GPU memory n/a)"),
             f"rope positions: {result['rope_positions']['message']}"]
    if "pair" in result:
        p = result["pair"]
        lines.append(f"pair: category {p['category']!r}, pair {p['pair_id']!r}, seed {p['seed']}")
    for role in ("editor", "judge"):
        e = result.get(role)
        if not e:
            continue
        pred = e["predicted"]
        lines.append(f"{role}: {e['class']} {e['model']}: load {e.get('load_seconds')} s, "
                     + (f"edit {e.get('edit_seconds')} s" if role == "editor" else f"score {e.get('score_seconds')} s")
                     + f", peak GPU {_gib(e.get('peak_gpu_bytes'))} (plan: {_gib(pred.get('peak_bytes'))} "
                     f"on {pred.get('target')})")
        if role == "editor":
            if e.get("error"):
                lines.append(f"  FAILED: {e['error']}")
            elif e.get("matches_reference") is None:
                lines.append(f"  reference: {e.get('reference')}")
            else:
                lines.append(f"  model-card reference: max |diff| {e.get('reference_max_abs_diff')} / 255 -> "
                             + ("bit-identical" if e.get("bit_identical") else
                                "within tolerance" if e.get("matches_reference") else "DIFFERS"))
        else:
            lines.append(f"  FAILED: {e['error']}" if e.get("error") and "status" not in e else
                         f"  {e.get('status')}: score {e.get('score')}" + (f" ({e['error']})" if e.get("error") else ""))
    for w in result["warnings"]:
        lines.append(f"WARNING: {w}")
    lines.append("smoke: OK" if result["ok"] else "smoke: FAILED")
    return "\n".join(lines)


def smoke_main(argv: list[str]) -> int:
    from src.config import ConfigError, load_config
    from src.data import BenchmarkError
    from src.models.base import ModelError
    from src.prompts import PromptError

    p = argparse.ArgumentParser(prog="main.py smoke", description="load, edit, compare with the model card's "
                                "call, score: one pair per model; writes smoke.json")
    p.add_argument("--config", required=True)
    p.add_argument("--output-dir", default=None, help="folder for smoke.json (default: <output_dir>/smoke-<time>)")
    p.add_argument("--tolerance", type=int, default=0,
                   help="largest accepted per-pixel difference from the reference, in 1/255 steps (default 0)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
        out_dir = Path(args.output_dir) if args.output_dir else \
            Path(cfg.output_dir) / time.strftime("smoke-%Y%m%d-%H%M%S")
        if cfg.torch_threads:
            import torch

            torch.set_num_threads(cfg.torch_threads)
        result = run_smoke(cfg, out_dir, args.tolerance)
    except (ConfigError, BenchmarkError, ModelError, PromptError) as exc:
        log.error("%s", exc)
        return 2
    (out_dir / "smoke.json").write_text(json.dumps(result, indent=2, ensure_ascii=False, default=str),
                                        encoding="utf-8")
    print(format_summary(result), flush=True)
    print(f"written: {out_dir / 'smoke.json'}", flush=True)
    return 0 if result["ok"] else 1
