"""The memory plan (`python main.py --config FILE --plan`): will the editor and the judge fit, before loading.

For each model (a config component: `{"class_path": ..., "init_args": {...}}`) this module

1. finds the checkpoint on disk without loading it: `tiny:<arch>` via `resolve_model_path` (built and
   cached if needed), a local directory, or a hub id already in the Hugging Face cache
   (`huggingface_hub.try_to_load_from_cache`, offline). A hub id that is not on disk gives an entry with
   `available: False` and a reason, never an exception;
2. MEASURES parameters and stored bytes from the safetensors *headers* only (8-byte little-endian header
   length + JSON header: dtype, shape, data offsets per tensor; no weight is read), per component for a
   diffusers pipeline (`model_index.json`: transformer, vae, text_encoder, ...) and for the one folder of a
   transformers model; sharded checkpoints through `*.safetensors.index.json`;
3. converts to the configured dtype (floating tensors take 2 bytes in bf16/fp16, 4 in fp32; integer and
   8-bit tensors keep their stored size);
4. ESTIMATES activation + workspace memory per batch size from the sizes in the `config.json` files (the
   formulas are in `docs/memory_plan.md` and next to each function below);
5. compares `peak = (weights + activations) x (1 + 10 %) + 1 GiB` with the free memory of each visible
   GPU (`torch.cuda.mem_get_info`), or, with no GPU, with the host's available RAM (labelled as such);
6. decides: fits alone (each model), both fit together, the residency (`resident` / `release` /
   `offload` / `does not fit` / `unknown`) and the batch sizes (powers of two <= 64) that fit.

API: `plan(editor_spec, judge_spec, mode="two_stage", gpu_free_bytes=None, host_available_bytes=None)
-> dict` (JSON-serialisable) and `format_plan(plan_dict) -> str`. From a `RunConfig`:
`plan(cfg.editor.to_dict(), cfg.judge.to_dict(), mode=cfg.mode)`.

NOT RUN ON A GPU: written and tested on a CPU-only machine. The weights part is exact for what the
checkpoint stores; the activation part is an estimate that has not been compared with
`torch.cuda.max_memory_allocated()` on real hardware. The GPU query is tested with a monkeypatched
`torch.cuda`.
"""

from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path
from typing import Any

GIB = 1024**3

# ----------------------------------------------------------------------------- assumptions (documented)

MARGIN_FRACTION = 0.10  # safety margin on weights + activations (allocator fragmentation, small buffers)
CONTEXT_BYTES = 1 * GIB  # CUDA context + cuBLAS/cuDNN workspaces (on the host: the torch runtime itself)
BATCH_CANDIDATES = (1, 2, 4, 8, 16, 32, 64)

DEFAULT_EDIT_AREA = 1024 * 1024  # QwenImageEditPipeline's working area when max_area is null
EDITOR_PROMPT_TOKENS = 256  # template + instruction text tokens beside the image tokens (pipeline cap: 1024)
JUDGE_TEXT_TOKENS = 1024  # system + user prompt text tokens of one judge request (templates + description)
JUDGE_IMAGES_PER_REQUEST = 2  # original + edited
VAE_COPIES = 4  # live full-resolution tensors in a VAE res-block (input, norm, activation, conv output)
LOGITS_KEPT = 2  # the judge's logits mode uses logits_to_keep=2; generate keeps the last position
ASSUMED_ORIGINAL = (4032, 3024)  # the judge's original image: a 12 MP photo, the worst common case
AUTO_MAX_PIXELS = 1024 * 1024  # = src.models.reward.hf_vlm.AUTO_MAX_PIXELS (max_pixels: auto)
DEFAULT_NEW_TOKENS, THINKING_NEW_TOKENS = 512, 8192  # = hf_vlm's max_new_tokens: null resolution

DTYPE_BYTES = {"float32": 4, "fp32": 4, "float": 4, "float16": 2, "fp16": 2, "half": 2, "bfloat16": 2, "bf16": 2}

# safetensors dtype -> bytes per element (sub-byte types are counted from data_offsets instead).
ST_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
                  "U16": 2, "U32": 4, "U64": 8, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1, "C64": 8}
# Floating types that from_pretrained(torch_dtype=...) casts to the configured dtype.
CASTABLE = {"F64", "F32", "F16", "BF16"}

MAX_HEADER_BYTES = 100 * 1024**2  # the safetensors format's own limit


class CheckpointError(Exception):
    """A checkpoint file is not what it claims to be (bad safetensors header, bad index)."""


# ----------------------------------------------------------------------------- safetensors headers


def read_safetensors_header(path: str | os.PathLike) -> dict[str, Any]:
    """Parse one safetensors file's header: 8-byte little-endian length N, then N bytes of JSON.

    Returns {"tensors": {name: {"dtype", "shape", "numel", "nbytes"}}, "metadata": {...},
    "header_bytes": N, "data_present": bool}. No tensor data is read. `data_present` is False when the
    file is shorter than the header declares (a truncated file, or a header-only test fixture).
    """
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) != 8:
            raise CheckpointError(f"{path}: too short for a safetensors file")
        (n,) = struct.unpack("<Q", head)
        if n <= 0 or n > MAX_HEADER_BYTES or n > size - 8:
            raise CheckpointError(f"{path}: implausible safetensors header length {n}")
        try:
            header = json.loads(f.read(n))
        except ValueError as exc:
            raise CheckpointError(f"{path}: safetensors header is not JSON ({exc})") from exc
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: safetensors header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    tensors: dict[str, dict[str, Any]] = {}
    data_end = 0
    for name, entry in header.items():
        try:
            dtype = str(entry["dtype"])
            shape = [int(d) for d in entry["shape"]]
            start, end = (int(x) for x in entry["data_offsets"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{path}: bad header entry for tensor {name!r}") from exc
        numel = math.prod(shape)
        nbytes = end - start
        if dtype in ST_DTYPE_BYTES and nbytes != numel * ST_DTYPE_BYTES[dtype]:
            raise CheckpointError(f"{path}: tensor {name!r} {dtype}{shape} declares {nbytes} bytes")
        tensors[name] = {"dtype": dtype, "shape": shape, "numel": numel, "nbytes": nbytes}
        data_end = max(data_end, end)
    return {"tensors": tensors, "metadata": metadata, "header_bytes": n, "data_present": size >= 8 + n + data_end}


def _pick_index(folder: Path) -> Path | None:
    for name in ("model.safetensors.index.json", "diffusion_pytorch_model.safetensors.index.json"):
        if (folder / name).is_file():
            return folder / name
    found = sorted(folder.glob("*.safetensors.index.json"))
    return found[0] if found else None


def scan_weights(folder: str | os.PathLike) -> dict[str, Any]:
    """Measure one model folder's weights from its safetensors headers.

    File choice: the index (`*.safetensors.index.json`, preferring the non-variant names) when present,
    else `model.safetensors` / `diffusion_pytorch_model.safetensors`, else every `*.safetensors` in the
    folder. Tensor names seen in several files are counted once.
    """
    folder = Path(folder)
    out: dict[str, Any] = {"path": str(folder), "files": [], "missing_files": [], "parameters": 0,
                           "stored_bytes": 0, "stored_dtypes": {}, "castable_parameters": 0,
                           "fixed_bytes": 0, "data_present": True, "format": None, "error": None,
                           "castable_numels": [], "fixed_tensor_bytes": []}
    index = _pick_index(folder)
    if index is not None:
        try:
            weight_map = json.loads(index.read_text()).get("weight_map") or {}
        except ValueError as exc:
            out["error"] = f"{index.name} is not JSON ({exc})"
            return out
        files = sorted(set(weight_map.values()))
        out["index"] = index.name
    else:
        files = []
        for name in ("model.safetensors", "diffusion_pytorch_model.safetensors"):
            if (folder / name).is_file():
                files = [name]
                break
        if not files:
            files = sorted(p.name for p in folder.glob("*.safetensors"))
    if not files:
        if any(folder.glob("*.bin")) or any(folder.glob("*.pt")) or any(folder.glob("*.pth")):
            out["format"] = "pickle"
            out["error"] = "only PyTorch pickle weights (.bin/.pt): they cannot be measured without loading"
        return out
    out["format"] = "safetensors"
    seen: set[str] = set()
    for name in files:
        path = folder / name
        if not path.is_file():  # a dangling HF-cache symlink or a shard not downloaded yet
            out["missing_files"].append(name)
            continue
        try:
            header = read_safetensors_header(path)
        except (OSError, CheckpointError) as exc:
            out["error"] = str(exc)
            return out
        out["files"].append(name)
        out["data_present"] = out["data_present"] and header["data_present"]
        for tname, t in header["tensors"].items():
            if tname in seen:
                continue
            seen.add(tname)
            out["parameters"] += t["numel"]
            out["stored_bytes"] += t["nbytes"]
            out["stored_dtypes"][t["dtype"]] = out["stored_dtypes"].get(t["dtype"], 0) + t["numel"]
            if t["dtype"] in CASTABLE:
                out["castable_parameters"] += t["numel"]
                out["castable_numels"].append(t["numel"])
            else:
                out["fixed_bytes"] += t["nbytes"]
                out["fixed_tensor_bytes"].append(t["nbytes"])
    return out


def bytes_at_dtype(weights: dict[str, Any], bytes_per_param: int | None) -> int:
    """Weight bytes once loaded in the configured dtype (floating tensors cast, the rest as stored)."""
    if bytes_per_param is None:
        return int(weights["stored_bytes"])
    return int(weights["castable_parameters"] * bytes_per_param + weights["fixed_bytes"])


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


# ----------------------------------------------------------------------------- locating checkpoints


def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~", ".\\")) or os.path.isabs(name)


def locate(model_name: str, cache_dir: str | None = None) -> dict[str, Any]:
    """Where the checkpoint is on disk: {"path", "source", "reason"}; path None when it is not on disk.

    source: "tiny" | "local" | "hf-cache" | "hub" (not on disk) | "missing" (a local path that does not exist).
    Nothing is downloaded; the HF cache lookup is offline.
    """
    from src.models.tiny import is_tiny, resolve_model_path

    name = str(model_name)
    if is_tiny(name):
        return {"path": resolve_model_path(name, cache_dir), "source": "tiny", "reason": None}
    expanded = Path(name).expanduser()
    if expanded.is_dir():
        return {"path": str(expanded), "source": "local", "reason": None}
    if _looks_like_path(name) or expanded.exists():
        return {"path": None, "source": "missing", "reason": f"local directory {name!r} does not exist"}
    try:
        from huggingface_hub import try_to_load_from_cache

        for filename in ("model_index.json", "config.json"):
            hit = try_to_load_from_cache(name, filename, cache_dir=cache_dir)
            if isinstance(hit, str) and os.path.isfile(hit):
                return {"path": str(Path(hit).parent), "source": "hf-cache", "reason": None}
        where = cache_dir or _default_hf_cache()
    except Exception as exc:  # noqa: BLE001 - huggingface_hub missing or a malformed repo id
        where = f"{cache_dir or 'the HF cache'} (lookup failed: {type(exc).__name__}: {exc})"
    return {"path": None, "source": "hub",
            "reason": f"hub id {name!r} is not on disk (not in the Hugging Face cache at {where}); its size is "
                      f"known only once downloaded (e.g. `hf download {name}`) or given as a local directory"}


def _default_hf_cache() -> str:
    try:
        from huggingface_hub import constants

        return str(constants.HF_HUB_CACHE)
    except Exception:  # noqa: BLE001
        return "~/.cache/huggingface/hub"


def analyze_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Components (weights measured from headers + their config.json) of a diffusers or transformers dir."""
    path = Path(path)
    index = _read_json(path / "model_index.json") if (path / "model_index.json").is_file() else None
    components: list[dict[str, Any]] = []
    if index is not None:
        kind = "diffusers"
        for name, value in sorted(index.items()):
            if name.startswith("_") or not isinstance(value, list) or not (path / name).is_dir():
                continue
            weights = scan_weights(path / name)
            if weights["format"] is None and not weights["error"]:
                continue  # scheduler, tokenizer, processor: no weights
            weights.update(name=name, class_name=value[-1] if value else None,
                           config=_read_json(path / name / "config.json"))
            components.append(weights)
    else:
        kind = "transformers"
        weights = scan_weights(path)
        weights.update(name="model", class_name=(_read_json(path / "config.json").get("architectures") or [None])[0],
                       config=_read_json(path / "config.json"))
        components.append(weights)
        weights["preprocessor"] = _read_json(path / "preprocessor_config.json")
        weights["thinking"] = template_opens_thinking(path)
    return {"kind": kind, "components": components}


def template_opens_thinking(path: Path) -> bool:
    """True when the checkpoint's chat template (chat_template.jinja / .json, tokenizer_config.json) writes
    "<think>" in its generation prompt (a Qwen3-VL-*-Thinking checkpoint). A text search, no rendering:
    the judge itself renders the template at load."""
    texts = []
    if (path / "chat_template.jinja").is_file():
        texts.append((path / "chat_template.jinja").read_text(encoding="utf-8", errors="replace"))
    for name in ("chat_template.json", "tokenizer_config.json"):
        value = _read_json(path / name).get("chat_template")
        texts.extend([value] if isinstance(value, str) else [])
    for text in texts:
        tail = text.rsplit("add_generation_prompt", 1)[-1] if "add_generation_prompt" in text else ""
        if "<think>" in tail.split("endif", 1)[0]:
            return True
    return False


# ----------------------------------------------------------------------------- activation estimates


def block_bytes_per_token(hidden: int, intermediate: int, nbytes: int) -> int:
    """Transient memory of one transformer block per token at inference: (4*D + 3*I) * bytes.

    4*D: block input/residual, normed input, attention output, projected output (q/k/v come and go inside
    the attention phase and are <= 3*D); 3*I: the MLP's gate/up/activated intermediates. Inference keeps
    no activations between blocks, so this is counted once, not per layer. Attention itself is assumed to
    use a memory-efficient SDPA kernel (no seq x seq matrix); `eager` attention is added separately.
    """
    return (4 * hidden + 3 * intermediate) * nbytes


def _text_cfg(cfg: dict[str, Any]) -> dict[str, Any]:
    return cfg["text_config"] if isinstance(cfg.get("text_config"), dict) else cfg


def _intermediate(tc: dict[str, Any], hidden: int) -> int:
    """Dense MLP width, or for MoE the width that runs per token (top-k experts + shared expert)."""
    experts = tc.get("num_experts") or tc.get("num_local_experts") or tc.get("n_routed_experts")
    if experts and tc.get("moe_intermediate_size") and tc.get("num_experts_per_tok"):
        width = int(tc["moe_intermediate_size"]) * int(tc["num_experts_per_tok"])
        return width + int(tc.get("shared_expert_intermediate_size") or 0)
    return int(tc.get("intermediate_size") or 4 * hidden)


def editor_activations(components: dict[str, dict[str, Any]], init_args: dict[str, Any], batch: int,
                       nbytes: int) -> dict[str, Any]:
    """QwenImageEditPipeline-style editor: the largest of its three phases (they run one after another).

    area A = min(max_area or 1024*1024, 1024*1024) pixels; VAE scale s = 2**(len(dim_mult)-1) (8);
    pack p = max(patch_size, sqrt(in_channels / z_dim)) (2); latent tokens per image T_lat = A / (s*p)^2
    (4096 at 1024^2).
    Text encoder (Qwen2.5-VL): vision patches P_v = A / patch^2, vision tokens T_v = P_v / merge^2,
    prompt tokens T_txt = T_v + EDITOR_PROMPT_TOKENS.

    transformer = b * (2*T_lat + T_txt) * (4*D + 3*4*D) * bytes   (noisy + conditioning latents + text;
                  D = heads * head_dim; MLP 4*D; CFG runs cond/uncond one after the other, not doubled)
    text_enc    = b * [T_txt * (4*Dt + 3*It) + (Lt + 1) * T_txt * Dt + T_txt * vocab] * bytes
                  + b * P_v * (4*Dv + 3*Iv) * bytes           (the pipeline asks for all hidden states; the
                  LM head computes logits for every prompt token)
    vae         = b * A * (2 * base_dim) * VAE_COPIES * bytes (full-resolution res-blocks dominate)
    """
    max_area = init_args.get("max_area")
    area = min(int(max_area), DEFAULT_EDIT_AREA) if max_area else DEFAULT_EDIT_AREA
    phases: dict[str, int] = {}
    notes: list[str] = []
    vae_cfg = (components.get("vae") or {}).get("config") or {}
    scale = 2 ** (len(vae_cfg.get("dim_mult") or vae_cfg.get("block_out_channels") or [1, 2, 4, 4]) - 1)
    latent_channels = int(vae_cfg.get("z_dim") or vae_cfg.get("latent_channels") or 16)
    tr_cfg = (components.get("transformer") or {}).get("config") or {}
    te_cfg = (components.get("text_encoder") or {}).get("config") or {}

    t_txt = EDITOR_PROMPT_TOKENS
    if te_cfg:
        tc = _text_cfg(te_cfg)
        vc = te_cfg.get("vision_config") or {}
        dt = int(tc.get("hidden_size") or 0)
        if dt:
            it = _intermediate(tc, dt)
            lt = int(tc.get("num_hidden_layers") or 0)
            vocab = int(tc.get("vocab_size") or te_cfg.get("vocab_size") or 0)
            p_v, dv, iv = 0, 0, 0
            if vc:  # a VLM text encoder (Qwen2.5-VL) also reads the input image
                patch = int(vc.get("patch_size") or 14)
                merge = int(vc.get("spatial_merge_size") or 2)
                p_v = area // (patch * patch)
                t_txt = p_v // (merge * merge) + EDITOR_PROMPT_TOKENS
                dv = int(vc.get("hidden_size") or vc.get("embed_dim") or 0)
                iv = int(vc.get("intermediate_size") or 4 * dv)
            phases["text_encoder"] = batch * (t_txt * block_bytes_per_token(dt, it, nbytes)
                                              + (lt + 1) * t_txt * dt * nbytes + t_txt * vocab * nbytes
                                              + p_v * block_bytes_per_token(dv, iv, nbytes))
    if tr_cfg:
        d = int(tr_cfg.get("num_attention_heads") or 0) * int(tr_cfg.get("attention_head_dim") or 0)
        # Tokens cover `pack` x `pack` latent pixels: the patch size, or the pipeline's own 2x2 packing
        # (in_channels = 4 * latent channels, as in Qwen-Image and Flux).
        in_ch = int(tr_cfg.get("in_channels") or latent_channels)
        pack = max(int(tr_cfg.get("patch_size") or 1), round(math.sqrt(max(in_ch // latent_channels, 1))))
        if d:
            t_lat = area // (scale * pack) ** 2
            phases["transformer"] = batch * (2 * t_lat + t_txt) * block_bytes_per_token(d, 4 * d, nbytes)
    if vae_cfg:
        base = int(vae_cfg.get("base_dim") or vae_cfg.get("block_out_channels", [128])[0])
        phases["vae"] = batch * area * 2 * base * VAE_COPIES * nbytes
    if "unet" in components:
        notes.append("UNet denoiser: its activations are not estimated (only text encoder and VAE are)")
    if not phases:
        notes.append("no transformer/text_encoder/vae config understood: activations not estimated (0)")
    return {"bytes": max(phases.values(), default=0), "phases": phases, "assumed_area": area, "notes": notes}


def judge_activations(ckpt: dict[str, Any], init_args: dict[str, Any], batch: int, nbytes: int,
                      image_area: int) -> dict[str, Any]:
    """Qwen3-VL-style judge: KV cache + the larger of vision tower / LLM prefill + logits.

    pixels per image A = min(image_area, max_pixels) (the editor's working area; the original is assumed
    the same size), vision patches P_v = A / patch^2, vision tokens T_v = P_v / merge^2,
    sequence S = JUDGE_TEXT_TOKENS + 2 * T_v, new tokens N = max_new_tokens (generate) or 1 (logits).

    kv_cache = 2 * layers * kv_heads * head_dim * (S + N) * b * bytes
    prefill  = b * S * (4*D + 3*I) * bytes         (I: MLP width; MoE: top-k * moe_intermediate_size)
    vision   = b * 2 * P_v * (4*Dv + 3*Iv) * bytes
    logits   = b * LOGITS_KEPT * vocab * 4         (fp32)
    eager    = b * heads * S^2 * 4                  (only with attn_implementation: eager)
    """
    comp = ckpt["components"][0] if ckpt["components"] else {}
    cfg = comp.get("config") or {}
    tc = _text_cfg(cfg)
    vc = cfg.get("vision_config") or {}
    notes: list[str] = []
    d = int(tc.get("hidden_size") or 0)
    if not d:
        return {"bytes": 0, "phases": {}, "notes": ["no hidden_size in config.json: activations not estimated (0)"]}
    layers = int(tc.get("num_hidden_layers") or 0)
    heads = int(tc.get("num_attention_heads") or 1)
    kv_heads = int(tc.get("num_key_value_heads") or heads)
    head_dim = int(tc.get("head_dim") or d // heads)
    vocab = int(tc.get("vocab_size") or cfg.get("vocab_size") or 0)
    inter = _intermediate(tc, d)

    pre = comp.get("preprocessor") or {}
    patch = int(pre.get("patch_size") or vc.get("patch_size") or 16)
    merge = int(pre.get("merge_size") or vc.get("spatial_merge_size") or 2)
    tokens = judge_image_tokens(pre, init_args, image_area, patch, merge)
    p_v = tokens["patches_per_request"] // JUDGE_IMAGES_PER_REQUEST  # mean vision patches per image
    seq = JUDGE_TEXT_TOKENS + tokens["tokens_per_request"]
    if tokens.get("note"):
        notes.append(tokens["note"])
    if init_args.get("scoring", "generate") != "generate":
        new = 1
    elif init_args.get("max_new_tokens"):
        new = int(init_args["max_new_tokens"])
    else:  # null: as the judge resolves it at load (src/models/reward/hf_vlm.py)
        new = THINKING_NEW_TOKENS if comp.get("thinking") else DEFAULT_NEW_TOKENS
    dv = int(vc.get("hidden_size") or 0)
    iv = int(vc.get("intermediate_size") or 4 * dv)

    kv = 2 * layers * kv_heads * head_dim * (seq + new) * batch * nbytes
    prefill = batch * seq * block_bytes_per_token(d, inter, nbytes)
    vision = batch * JUDGE_IMAGES_PER_REQUEST * p_v * block_bytes_per_token(dv, iv, nbytes)
    logits = batch * LOGITS_KEPT * vocab * 4
    phases = {"kv_cache": kv, "prefill": prefill, "vision": vision, "logits": logits}
    if init_args.get("attn_implementation") == "eager":
        phases["eager_attention"] = batch * heads * seq * seq * 4
    total = kv + max(prefill, vision) + logits + phases.get("eager_attention", 0)
    return {"bytes": total, "phases": phases, "image_tokens": tokens, "sequence_tokens": seq,
            "new_tokens": new, "notes": notes}


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """The Qwen-VL image processors' resize (transformers 5.23 `qwen2_vl...smart_resize`, used by Qwen2-VL,
    Qwen2.5-VL and Qwen3-VL): both sides multiples of `factor` (patch * merge), the area within
    [min_pixels, max_pixels], the aspect ratio kept. Re-implemented here so the plan needs no transformers."""
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def judge_pixel_budget(pre: dict[str, Any], init_args: dict[str, Any]) -> tuple[int | None, int | None, str]:
    """(min_pixels, max_pixels, where from) as the judge applies them (src/models/reward/hf_vlm.py): the
    init_args, "auto" = the checkpoint's max capped at AUTO_MAX_PIXELS, null = the checkpoint's
    (preprocessor_config.json `size.shortest_edge/longest_edge` or legacy `min_pixels/max_pixels`)."""
    size = pre.get("size") if isinstance(pre.get("size"), dict) else {}
    ck_min = size.get("shortest_edge") or pre.get("min_pixels")
    ck_max = size.get("longest_edge") or pre.get("max_pixels")
    lo = init_args.get("min_pixels") or ck_min
    hi = init_args.get("max_pixels", "auto")
    if hi == "auto":
        if ck_max is None:
            return lo, None, "no pixel budget in preprocessor_config.json"
        return lo, min(int(ck_max), AUTO_MAX_PIXELS), f"auto: min(checkpoint {ck_max}, {AUTO_MAX_PIXELS})"
    if hi is None:
        return lo, (int(ck_max) if ck_max else None), "the checkpoint's"
    return lo, int(hi), "init_args"


def judge_image_tokens(pre: dict[str, Any], init_args: dict[str, Any], image_area: int, patch: int,
                       merge: int) -> dict[str, Any]:
    """Vision tokens of one judge request (original + edited), counted as the Qwen-VL processors count
    them: smart_resize to the pixel budget, (h/patch)*(w/patch) patches, merge^2 patches per token.
    The edited image is the editor's working area (square); the original is assumed to be a 12 MP photo
    (ASSUMED_ORIGINAL, 4032 x 3024): its tokens are what max_pixels allows."""
    lo, hi, source = judge_pixel_budget(pre, init_args)
    factor = patch * merge
    side = int(math.sqrt(image_area))
    out: dict[str, Any] = {"min_pixels": lo, "max_pixels": hi, "budget": source, "patch": patch, "merge": merge,
                           "assumed_original": list(ASSUMED_ORIGINAL)}
    if hi is None:  # not a Qwen-VL-style processor: the area itself (capped at nothing)
        per = {"original": ASSUMED_ORIGINAL[0] * ASSUMED_ORIGINAL[1] // (patch * patch),
               "edited": side * side // (patch * patch)}
        out["note"] = "the judge's image processor has no pixel budget: image tokens estimated from the raw areas"
    else:
        per = {}
        for name, (w, h) in (("original", ASSUMED_ORIGINAL), ("edited", (side, side))):
            rh, rw = smart_resize(h, w, factor, int(lo or factor * factor), int(hi))
            per[name] = (rh // patch) * (rw // patch)
    out["patches"] = per
    out["tokens"] = {k: v // (merge * merge) for k, v in per.items()}
    out["patches_per_request"] = sum(per.values())
    out["tokens_per_request"] = sum(out["tokens"].values())
    return out


# ----------------------------------------------------------------------------- one model


def _init_args(spec: dict[str, Any]) -> dict[str, Any]:
    args = spec.get("init_args")
    if args is None:
        args = spec.get("params")
    return dict(args or {})


def _dtype_bytes(dtype: Any) -> tuple[str, int | None]:
    key = str(dtype if dtype is not None else "bfloat16").replace("torch.", "").lower()
    return key, DTYPE_BYTES.get(key)


def describe_model(role: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Measured weights of one configured model (no activations yet; see `plan`)."""
    args = _init_args(spec)
    dtype, nbytes = _dtype_bytes(args.get("dtype", "bfloat16"))
    entry: dict[str, Any] = {
        "role": role, "class_path": spec.get("class_path"), "model_name": args.get("model_name"),
        "dtype": dtype, "bytes_per_param": nbytes, "batch_size": int(args.get("batch_size") or 1),
        "device": str(args.get("device") or "auto"), "available": False, "reason": None, "source": None,
        "path": None, "kind": None, "components": [], "parameters": None, "stored_bytes": None,
        "weight_bytes": None, "pinned_bytes": None, "device_map": args.get("device_map"), "notes": [],
    }
    if nbytes is None:
        entry["notes"].append(f"unknown dtype {dtype!r}: weights counted at their stored size")
    name = args.get("model_name")
    if not name:
        entry["reason"] = "no model_name in init_args: nothing to measure"
        return entry
    try:
        where = locate(str(name), args.get("cache_dir"))
    except Exception as exc:  # noqa: BLE001 - e.g. an unknown tiny arch
        entry["reason"] = f"cannot resolve {name!r}: {exc}"
        return entry
    entry.update(source=where["source"], path=where["path"])
    if where["path"] is None:
        entry["reason"] = where["reason"]
        return entry
    try:
        ckpt = analyze_checkpoint(where["path"])
    except Exception as exc:  # noqa: BLE001 - unreadable folder: report, don't crash the plan
        entry["reason"] = f"cannot read checkpoint at {where['path']}: {type(exc).__name__}: {exc}"
        return entry
    entry["kind"] = ckpt["kind"]
    entry["_ckpt"] = ckpt  # internal, removed before returning the plan
    problems: list[str] = []
    short: list[str] = []
    for comp in ckpt["components"]:
        if comp["error"]:
            problems.append(f"{comp['name']}: {comp['error']}")
        if comp["format"] is None and not comp["error"]:
            problems.append(f"{comp['name']}: no weight files found")
        if comp["missing_files"]:
            problems.append(f"{comp['name']}: {len(comp['missing_files'])} weight file(s) missing "
                            f"(incomplete download?), e.g. {comp['missing_files'][0]}")
        if not comp["data_present"]:
            short.append(comp["name"])
        entry["components"].append({
            "name": comp["name"], "class_name": comp.get("class_name"), "files": len(comp["files"]),
            "parameters": comp["parameters"], "stored_bytes": comp["stored_bytes"],
            "stored_dtypes": comp["stored_dtypes"], "weight_bytes": bytes_at_dtype(comp, nbytes),
        })
    if short:
        entry["notes"].append(f"weight files of {', '.join(short)} are shorter than their headers declare "
                              "(truncated, or header-only); sizes are taken from the headers")
    if not ckpt["components"]:
        problems.append("no weights found (no safetensors files)")
    if problems:
        entry["reason"] = "; ".join(problems)
        return entry
    entry["available"] = True
    entry["parameters"] = sum(c["parameters"] for c in entry["components"])
    entry["stored_bytes"] = sum(c["stored_bytes"] for c in entry["components"])
    entry["weight_bytes"] = sum(c["weight_bytes"] for c in entry["components"])
    # What an offload of this model pins: one exact arena (src/residency.py), each tensor 512-byte aligned;
    # per-tensor pin_memory() would round each tensor up to a power of two instead (shown for comparison).
    sizes = [n * (nbytes or 0) if nbytes else 0 for c in ckpt["components"] for n in c["castable_numels"]]
    if not nbytes:  # unknown dtype: stored sizes
        sizes = []
        entry["pinned_bytes"] = entry["weight_bytes"]
    else:
        sizes += [b for c in ckpt["components"] for b in c["fixed_tensor_bytes"]]
        from src.residency import caching_allocator_pinned_bytes, pinned_arena_bytes

        entry["pinned_bytes"] = pinned_arena_bytes(sizes)
        entry["pinned_bytes_if_rounded"] = caching_allocator_pinned_bytes(sizes)
    return entry


def _activations(entry: dict[str, Any], spec: dict[str, Any], batch: int, image_area: int) -> dict[str, Any]:
    ckpt = entry["_ckpt"]
    args = _init_args(spec)
    nbytes = entry["bytes_per_param"] or 2
    if ckpt["kind"] == "diffusers":
        comps = {c["name"]: c for c in ckpt["components"]}
        return editor_activations(comps, args, batch, nbytes)
    return judge_activations(ckpt, args, batch, nbytes, image_area)


def peak_bytes(weights: int, activations: int) -> int:
    """The estimate compared with free memory: (weights + activations) x (1 + margin) + context."""
    return int((weights + activations) * (1 + MARGIN_FRACTION)) + CONTEXT_BYTES


# ----------------------------------------------------------------------------- memory available


def query_gpus() -> list[dict[str, Any]]:
    """Free/total memory of each visible GPU (torch.cuda.mem_get_info). [] without CUDA.

    NOT RUN ON A GPU (tested with a monkeypatched torch.cuda)."""
    try:
        import torch

        if not torch.cuda.is_available():
            return []
        gpus = []
        for i in range(torch.cuda.device_count()):
            free, total = torch.cuda.mem_get_info(i)
            try:
                name = torch.cuda.get_device_name(i)
            except Exception:  # noqa: BLE001
                name = None
            gpus.append({"index": i, "name": name, "free_bytes": int(free), "total_bytes": int(total)})
        return gpus
    except Exception:  # noqa: BLE001 - no torch, broken driver: plan against the host
        return []


def size_bytes(value: Any) -> int | None:
    """A max_memory value (bytes, or "70GiB" / "80GB" / "512MiB") in bytes; None when unreadable."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    import re

    m = re.match(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]I?B|B)\s*$", str(value).upper())
    if not m:
        return None
    unit = m.group(2)
    base = 1024 if "I" in unit else 1000
    power = {"B": 0, "K": 1, "M": 2, "G": 3, "T": 4}[unit[0]]
    return int(float(m.group(1)) * base**power)


def _spread_pool(gpus: list[dict[str, Any]], caps: dict) -> int | None:
    """Free memory a device_map can use: the sum over the visible GPUs, each capped by max_memory[index]."""
    if not gpus:
        return None
    total = 0
    for g in gpus:
        free = g["free_bytes"]
        if free is None:
            return None
        cap = caps.get(g["index"], caps.get(str(g["index"]))) if caps else None
        capped = size_bytes(cap) if cap is not None else None
        total += min(free, capped) if capped is not None else free
    return total


def host_available() -> int | None:
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:  # noqa: BLE001
        return None


def _target(device: str, n_gpus: int, device_map: Any = None) -> tuple[str, str | None]:
    """The memory pool a model lands in: 'cuda:N', 'cuda:all' (a device_map over every visible GPU) or
    'host', plus a note when the config can't be met."""
    d = device.lower()
    if device_map is not None and d in ("auto", "cuda"):
        if n_gpus == 0:
            return "host", "device_map with no GPU: accelerate places the model in host RAM"
        return "cuda:all", (f"device_map {device_map!r}: spread over {n_gpus} GPU(s), compared with their summed "
                            "free memory (capped by max_memory); each GPU also needs room for the activations "
                            "of the layers it holds, so leave headroom")
    if d == "cpu":
        return "host", None
    if d == "auto":
        return ("cuda:0", None) if n_gpus else ("host", None)
    if d.startswith("cuda"):
        idx = int(d.split(":", 1)[1]) if ":" in d and d.split(":", 1)[1].isdigit() else 0
        if n_gpus == 0:
            return "host", f"device {device!r} is configured but there is no GPU (the run would fail); " \
                           "compared with host RAM instead"
        if idx >= n_gpus:
            return f"cuda:{idx}", f"device {device!r} is configured but only {n_gpus} GPU(s) are visible"
        return f"cuda:{idx}", None
    return "host", f"device {device!r} is not a CUDA device: compared with host RAM"


# ----------------------------------------------------------------------------- the plan


def plan(editor_spec: dict, judge_spec: dict, mode: str = "two_stage", gpu_free_bytes: list[int] | None = None,
         host_available_bytes: int | None = None) -> dict:
    """The memory plan for an editor + judge pair (see module docstring). JSON-serialisable.

    gpu_free_bytes: free bytes per visible GPU (None: ask torch.cuda; [] means no GPU).
    host_available_bytes: available host RAM (None: psutil).
    """
    if mode not in ("two_stage", "interleaved"):
        raise ValueError(f"mode must be two_stage or interleaved, got {mode!r}")
    if gpu_free_bytes is None:
        gpus = query_gpus()
        gpu_source = "torch.cuda.mem_get_info"
    else:
        gpus = [{"index": i, "name": None, "free_bytes": int(b), "total_bytes": None} for i, b in enumerate(gpu_free_bytes)]
        gpu_source = "given"
    host = host_available_bytes if host_available_bytes is not None else host_available()
    pools: dict[str, int | None] = {f"cuda:{g['index']}": g["free_bytes"] for g in gpus}
    pools["host"] = host

    specs = {"editor": editor_spec, "judge": judge_spec}
    models = {role: describe_model(role, spec) for role, spec in specs.items()}
    reasons: list[str] = []  # why the residency is what it is
    warnings: list[str] = []  # problems the residency does not capture (batch size, host RAM at load)
    notes: list[str] = []

    # The judge sees the editor's output: its image size follows the editor's working area.
    max_area = _init_args(editor_spec).get("max_area")
    image_area = min(int(max_area), DEFAULT_EDIT_AREA) if max_area else DEFAULT_EDIT_AREA

    for role, entry in models.items():
        target, note = _target(entry["device"], len(gpus), entry.get("device_map"))
        if target == "cuda:all":
            caps = _init_args(specs[role]).get("max_memory") or {}
            pools["cuda:all"] = _spread_pool(gpus, caps)
        entry["target"] = target
        entry["free_bytes"] = pools.get(target)
        if note:
            entry["notes"].append(note)
        if not entry["available"]:
            reasons.append(f"{role}: {entry['reason']}")
            entry.update(activation_bytes=None, estimated_peak_bytes=None, fits_alone=None, batch_estimates=[])
            continue
        estimates = []
        for b in sorted(set(BATCH_CANDIDATES) | {entry["batch_size"]}):
            act = _activations(entry, specs[role], b, image_area)
            estimates.append({"batch_size": b, "activation_bytes": int(act["bytes"]),
                              "peak_alone_bytes": peak_bytes(entry["weight_bytes"], act["bytes"]),
                              "phases": act["phases"]})
            if b == entry["batch_size"]:
                entry["activation_detail"] = {k: v for k, v in act.items() if k not in ("bytes",)}
                entry["notes"].extend(act.get("notes") or [])
        entry["batch_estimates"] = estimates
        configured = next(e for e in estimates if e["batch_size"] == entry["batch_size"])
        entry["activation_bytes"] = configured["activation_bytes"]
        entry["estimated_peak_bytes"] = configured["peak_alone_bytes"]
        free = entry["free_bytes"]
        entry["fits_alone"] = None if free is None else configured["peak_alone_bytes"] <= free
        if free is None:
            entry["notes"].append(f"free memory of {target} is unknown")

    editor, judge = models["editor"], models["judge"]
    both_available = editor["available"] and judge["available"]
    same_pool = editor["target"] == judge["target"]

    # -- both together (both loaded at once; only one runs at a time)
    both_fit: bool | None = None
    together_peak: int | None = None
    if both_available:
        if same_pool:
            together_peak = peak_bytes(editor["weight_bytes"] + judge["weight_bytes"],
                                       max(editor["activation_bytes"], judge["activation_bytes"]))
            free = pools.get(editor["target"])
            both_fit = None if free is None else together_peak <= free
        else:
            if editor["fits_alone"] is None or judge["fits_alone"] is None:
                both_fit = None
            else:
                both_fit = bool(editor["fits_alone"] and judge["fits_alone"])

    # -- residency
    on_gpu = editor["target"].startswith("cuda") or judge["target"].startswith("cuda")
    offload_need = None
    if not both_available:
        residency = "unknown"
    elif both_fit:
        residency = "resident"
        if mode == "two_stage":
            notes.append("both models fit together; the two-stage pipeline still releases the editor before the "
                         "judge loads (resident is what memory allows, not what two_stage does)")
    elif editor["fits_alone"] and judge["fits_alone"]:
        if mode == "two_stage":
            residency = "release"
        else:  # interleaved: the model not in use waits in host RAM
            # Both models' pinned arenas live at once: each PinnedOffload keeps its arena for reuse.
            offload_need = int((editor["pinned_bytes"] + judge["pinned_bytes"]) * (1 + MARGIN_FRACTION))
            if not on_gpu:
                residency = "does not fit"
                reasons.append("interleaved keeps both models loaded, and without a GPU both live in host RAM, "
                               "where they do not fit together; use mode two_stage")
            elif host is not None and offload_need <= host:
                residency = "offload"
            else:
                residency = "does not fit"
                reasons.append(f"interleaved offloads the idle model to host RAM: needs ~{_gib(offload_need)}, "
                               f"host has {_gib(host)} available; use mode two_stage")
    elif None in (editor["fits_alone"], judge["fits_alone"], both_fit):
        residency = "unknown"
        reasons.append("free memory unknown for a model's device")
    else:
        residency = "does not fit"
        for entry in (editor, judge):
            if not entry["fits_alone"]:
                smaller = [e["batch_size"] for e in entry["batch_estimates"]
                           if e["peak_alone_bytes"] <= entry["free_bytes"] and e["batch_size"] in BATCH_CANDIDATES]
                hint = f" (alone it fits at batch_size {max(smaller)})" if smaller else ""
                reasons.append(f"{entry['role']} alone needs ~{_gib(entry['estimated_peak_bytes'])} at batch_size "
                               f"{entry['batch_size']}, {entry['target']} has {_gib(entry['free_bytes'])} free{hint}")

    # -- batch sizes that fit, in the chosen residency
    for role, entry in models.items():
        other = judge if role == "editor" else editor
        if not entry["available"]:
            entry.update(batch_sizes_fit=[], max_batch_size=None)
            continue
        free = entry["free_bytes"]
        co_weights = other["weight_bytes"] if (residency == "resident" and same_pool and other["available"]) else 0
        fit = []
        for est in entry["batch_estimates"]:
            need = peak_bytes(entry["weight_bytes"] + co_weights, est["activation_bytes"])
            est["peak_in_plan_bytes"] = need
            est["fits"] = None if free is None else need <= free
            if est["fits"] and est["batch_size"] in BATCH_CANDIDATES:
                fit.append(est["batch_size"])
        entry["batch_sizes_fit"] = fit
        entry["max_batch_size"] = max(fit) if fit else None
        configured = next(e for e in entry["batch_estimates"] if e["batch_size"] == entry["batch_size"])
        if configured["fits"] is False:
            best = f"largest that fits: {entry['max_batch_size']}" if fit else "not even batch_size 1 fits"
            warnings.append(f"{role} batch_size {entry['batch_size']} is estimated not to fit ({best})")

    # -- host RAM while loading. Editors (src/models/diffusion/placement.py) load straight onto the GPU on
    # `cuda` / `cuda:0` and with a `device_map`; on `cuda:N` (N > 0) the whole checkpoint is read into host
    # memory first and then moved (`pipe.to(device)`); `offload: model | sequential` keeps the weights in
    # host memory for good. The judge loads with device_map straight to the GPU.
    for role, entry in models.items():
        entry["host_load_bytes"] = None
        if not (entry["available"] and entry["kind"] == "diffusers" and entry["target"].startswith("cuda")):
            continue
        offload = _init_args(specs[role]).get("offload") or "none"
        detour = entry["device_map"] is None and entry["target"] not in ("cuda", "cuda:0")
        if offload == "none" and not detour:
            continue
        entry["host_load_bytes"] = entry["weight_bytes"]
        if host is not None and entry["weight_bytes"] > host:
            why = (f"offload: {offload} keeps it in host RAM" if offload != "none"
                   else "it is loaded into host RAM before it moves to the GPU")
            warnings.append(f"{role}: {why}: needs ~{_gib(entry['weight_bytes'])}, host has {_gib(host)} available")

    if not gpus:
        notes.append("no GPU: compared with host RAM available (a CPU run), not with GPU memory")
    for entry in models.values():
        entry.pop("_ckpt", None)
    return {
        "mode": mode,
        "estimate": True,
        "memory": {"gpus": gpus, "gpu_source": gpu_source, "host_available_bytes": host,
                   "compared_with": "gpu" if gpus else "host (no GPU)"},
        "assumptions": {
            "margin_fraction": MARGIN_FRACTION, "context_bytes": CONTEXT_BYTES,
            "peak_formula": "(weights + activations) * (1 + margin) + context",
            "editor_prompt_tokens": EDITOR_PROMPT_TOKENS, "judge_text_tokens": JUDGE_TEXT_TOKENS,
            "judge_images_per_request": JUDGE_IMAGES_PER_REQUEST, "judge_image_pixels": image_area,
            "batch_candidates": list(BATCH_CANDIDATES),
        },
        "models": models,
        "both_fit": both_fit,
        "together_peak_bytes": together_peak,
        "offload_host_bytes": offload_need,
        "residency": residency,
        "reasons": reasons,
        "warnings": warnings,
        "notes": notes,
    }


# ----------------------------------------------------------------------------- text


def _gib(n: int | float | None) -> str:
    """Human size: GiB from 1 GiB up, else MiB / KiB (tiny checkpoints are a few MiB)."""
    if n is None:
        return "?"
    for unit, size in (("GiB", GIB), ("MiB", 1024**2), ("KiB", 1024)):
        if abs(n) >= size or unit == "KiB":
            return f"{n / size:.2f} {unit}"
    return f"{n} B"  # pragma: no cover


def _count(n: int | None) -> str:
    if n is None:
        return "?"
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return str(n)


def _yes(v: bool | None) -> str:
    return {True: "yes", False: "no", None: "?"}[v]


def format_plan(p: dict) -> str:
    mem = p["memory"]
    lines = [f"Memory plan (mode {p['mode']}) -- an ESTIMATE from checkpoint headers and configs, nothing loaded"]
    if mem["gpus"]:
        for g in mem["gpus"]:
            label = f" {g['name']}" if g.get("name") else ""
            lines.append(f"  compared with: GPU {g['index']}{label}: {_gib(g['free_bytes'])} free ({mem['gpu_source']})")
    else:
        lines.append(f"  compared with: no GPU -> host RAM available: {_gib(mem['host_available_bytes'])} "
                     "(a CPU run; not GPU memory)")
    if mem["gpus"]:
        lines.append(f"  host RAM available: {_gib(mem['host_available_bytes'])} (holds offloaded models)")
    lines.append("")
    header = ["model", "parameters", "bytes", "est. peak", "fits alone", "both fit", "residency", "batch sizes that fit"]
    rows = []
    for role, m in p["models"].items():
        name = f"{role}: {m.get('model_name')}"
        if not m["available"]:
            rows.append([name, "not measured", "?", "?", "?", _yes(p["both_fit"]), p["residency"], "-"])
            continue
        rows.append([
            name, _count(m["parameters"]), f"{_gib(m['weight_bytes'])} ({m['dtype']})",
            f"{_gib(m['estimated_peak_bytes'])} (b={m['batch_size']}, {m['target']})", _yes(m["fits_alone"]),
            _yes(p["both_fit"]), p["residency"],
            (", ".join(str(b) for b in m["batch_sizes_fit"]) or "none"),
        ])
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(r, widths)))
    lines.append("")
    for role, m in p["models"].items():
        if not m["available"]:
            lines.append(f"{role}: NOT MEASURED: {m['reason']}")
            continue
        lines.append(f"{role}: {m['source']} checkpoint {m['path']}")
        for c in m["components"]:
            dtypes = ", ".join(f"{k}" for k in sorted(c["stored_dtypes"]))
            lines.append(f"  {c['name']:<14} {_count(c['parameters']):>10} params  stored {_gib(c['stored_bytes'])} "
                         f"[{dtypes}] -> {_gib(c['weight_bytes'])} in {m['dtype']}")
        phases = ", ".join(f"{k} {_gib(v)}" for k, v in (m.get("activation_detail", {}).get("phases") or {}).items())
        lines.append(f"  activations (b={m['batch_size']}): {_gib(m['activation_bytes'])} [{phases}]")
        tok = (m.get("activation_detail") or {}).get("image_tokens")
        if tok:
            w, h = tok["assumed_original"]
            lines.append(f"  image tokens per request: original ({w}x{h} photo) {tok['tokens']['original']} + edited "
                         f"{tok['tokens']['edited']} = {tok['tokens_per_request']} (max_pixels {tok['max_pixels']}, "
                         f"{tok['budget']}); new tokens {m['activation_detail'].get('new_tokens')}")
        if m.get("pinned_bytes") is not None:
            rounded = m.get("pinned_bytes_if_rounded")
            lines.append(f"  pinned if offloaded: {_gib(m['pinned_bytes'])} (one exact arena"
                         + (f"; per-tensor pin_memory() would hold {_gib(rounded)})" if rounded else ")"))
    if p.get("together_peak_bytes") is not None:
        lines.append(f"both loaded together: ~{_gib(p['together_peak_bytes'])}")
    if p.get("offload_host_bytes") is not None:
        lines.append(f"offload needs in host RAM: ~{_gib(p['offload_host_bytes'])} (both models' pinned arenas)")
    lines.append("")
    lines.append(f"residency: {p['residency']}")
    shown = {f"{role}: {m['reason']}": role for role, m in p["models"].items() if not m["available"]}
    for r in p["reasons"]:
        lines.append(f"  reason: {shown[r] + ': checkpoint not measured (see above)' if r in shown else r}")
    for w in p.get("warnings") or []:
        lines.append(f"  WARNING: {w}")
    for role, m in p["models"].items():
        for n in m.get("notes") or []:
            lines.append(f"  note ({role}): {n}")
    for n in p["notes"]:
        lines.append(f"  note: {n}")
    a = p["assumptions"]
    lines.append(f"peak = (weights + activations) x {1 + a['margin_fraction']:.2f} + {_gib(a['context_bytes'])} "
                 "(CUDA context); activations are estimates (docs/memory_plan.md), not measurements")
    return "\n".join(lines)
