"""A tiny random-weight Qwen2.5-VL checkpoint of the *real* transformers architecture.

`build(out_dir)` writes a `Qwen2_5_VLForConditionalGeneration` built from a config (no download), with
`torch.manual_seed(0)` and float32 weights, saved with `save_pretrained` (safetensors) next to the files
a real hub checkpoint (e.g. Qwen/Qwen2.5-VL-7B-Instruct) ships for its processor:

    config.json, generation_config.json, model.safetensors     the model
    tokenizer.json, tokenizer_config.json, chat_template.jinja  the offline byte-level Qwen tokenizer
    preprocessor_config.json                                    the image processor (Qwen2-VL style)

`AutoModelForImageTextToText.from_pretrained(out_dir)` loads it, and so does the processor: the files
name `Qwen2_5_VLProcessor` like the hub repos do (its video processor needs torchvision, so the judges
load it image-only, see `src.models.reward.hf_vlm.load_vlm_processor`).

What is kept from the real model, so the judge code paths are the real ones:

- the vision tower's *window attention*: block 0 attends within 32x32-pixel windows (2x2 merged
  tokens), block 1 is a full-attention block (`fullatt_block_indexes`), so images of more than 2x2
  merged tokens are split into several windows, padded at the borders;
- M-RoPE (3D positions, `mrope_section` summing to head_dim // 2) computed from the attention mask;
- CLIP image mean/std, Qwen2.5-VL's chat template (a default system prompt when none is given);
- a generation_config that samples (temperature 0.1, top_p 0.001, top_k 1, repetition_penalty 1.05,
  like the hub file), so a judge's override to plain greedy decoding is exercised.

Sizes: text hidden 32, 2 layers, 4 heads (2 KV heads, head_dim 8); vision hidden 32, depth 2, 2 heads,
patch 8, spatial merge 2 (one LLM token per 16x16 pixels). The image processor resizes every image to
between 32*32 and 64*64 pixels, i.e. 4 to 16 vision tokens per image. Well under 1 MB; building takes a
fraction of a second once torch/transformers are imported.
"""

from __future__ import annotations

import json
from pathlib import Path

PATCH_SIZE = 8
MERGE_SIZE = 2
TEMPORAL_PATCH_SIZE = 2
WINDOW_SIZE = 32  # pixels: 32 // 8 // 2 = 2x2 merged tokens per attention window
MIN_PIXELS = 32 * 32  # -> at least 2x2 merged tokens
MAX_PIXELS = 64 * 64  # -> at most 4x4 merged tokens
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]

SEED = 0
PROCESSOR_CLASS = "Qwen2_5_VLProcessor"

# Qwen2-VL / Qwen2.5-VL chat template behaviour: a default system turn when the conversation has none,
# images as <|vision_start|><|image_pad|><|vision_end|>, optional "Picture n: " labels (add_vision_id).
QWEN2_5_VL_CHAT_TEMPLATE = (
    "{%- set image_count = namespace(value=0) -%}"
    "{%- set video_count = namespace(value=0) -%}"
    "{%- for message in messages -%}"
    "{%- if loop.first and message['role'] != 'system' -%}"
    "{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' -}}"
    "{%- endif -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}{%- for content in message['content'] -%}"
    "{%- if content['type'] == 'image' or 'image' in content or 'image_url' in content -%}"
    "{%- set image_count.value = image_count.value + 1 -%}"
    "{%- if add_vision_id -%}{{- 'Picture ' + image_count.value|string + ': ' -}}{%- endif -%}"
    "{{- '<|vision_start|><|image_pad|><|vision_end|>' -}}"
    "{%- elif content['type'] == 'video' or 'video' in content -%}"
    "{%- set video_count.value = video_count.value + 1 -%}"
    "{%- if add_vision_id -%}{{- 'Video ' + video_count.value|string + ': ' -}}{%- endif -%}"
    "{{- '<|vision_start|><|video_pad|><|vision_end|>' -}}"
    "{%- elif 'text' in content -%}{{- content['text'] -}}"
    "{%- endif -%}{%- endfor -%}{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)


def _config(vocab_size: int, ids: dict[str, int]):
    from transformers import Qwen2_5_VLConfig

    vision = dict(
        depth=2,
        hidden_size=32,
        hidden_act="silu",
        intermediate_size=64,
        num_heads=2,  # head_dim 16: the 2D vision rope needs head_dim % 4 == 0
        in_channels=3,
        patch_size=PATCH_SIZE,
        spatial_merge_size=MERGE_SIZE,
        temporal_patch_size=TEMPORAL_PATCH_SIZE,
        window_size=WINDOW_SIZE,
        fullatt_block_indexes=[1],  # block 0 windowed, block 1 full attention
        tokens_per_second=2,
        out_hidden_size=32,  # == text hidden size
        initializer_range=0.02,
    )
    text = dict(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,  # head_dim 8
        num_key_value_heads=2,
        hidden_act="silu",
        max_position_embeddings=4096,
        max_window_layers=2,
        use_sliding_window=False,
        rms_norm_eps=1e-6,
        # M-RoPE (temporal, height, width) sections, summing to head_dim // 2, as in the real config
        # (there `rope_scaling: {type: mrope, mrope_section: [16, 24, 24]}` for head_dim 128).
        rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": [2, 1, 1]},
        bos_token_id=ids["pad_token_id"],
        eos_token_id=ids["eos_token_id"],
        pad_token_id=ids["pad_token_id"],
        initializer_range=0.02,
    )
    config = Qwen2_5_VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=ids["image_token_id"],
        video_token_id=ids["video_token_id"],
        vision_start_token_id=ids["vision_start_token_id"],
        vision_end_token_id=ids["vision_end_token_id"],
        tie_word_embeddings=False,  # as the 7B/72B checkpoints
    )
    config.dtype = "float32"
    return config


def _save_generation_config(model, ids: dict[str, int]) -> None:
    from transformers import GenerationConfig

    # Qwen/Qwen2.5-VL-7B-Instruct's generation_config.json (sampling with near-greedy settings and a
    # repetition penalty); the judges must override all of it to get plain greedy decoding.
    model.generation_config = GenerationConfig(
        bos_token_id=ids["pad_token_id"],
        pad_token_id=ids["pad_token_id"],
        eos_token_id=[ids["eos_token_id"], ids["pad_token_id"]],
        do_sample=True,
        repetition_penalty=1.05,
        temperature=0.1,
        top_p=0.001,
        top_k=1,
    )


def _save_processor_files(out_dir: Path, tok) -> None:
    from transformers import Qwen2VLImageProcessorPil

    tok.chat_template = QWEN2_5_VL_CHAT_TEMPLATE
    tok.save_pretrained(out_dir)  # tokenizer.json, tokenizer_config.json, chat_template.jinja
    image_processor = Qwen2VLImageProcessorPil(
        patch_size=PATCH_SIZE,
        temporal_patch_size=TEMPORAL_PATCH_SIZE,
        merge_size=MERGE_SIZE,
        min_pixels=MIN_PIXELS,
        max_pixels=MAX_PIXELS,
        image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
    )
    image_processor.save_pretrained(out_dir)  # preprocessor_config.json
    # Mirror the hub repos: both files name the processor class (AutoProcessor reads it from there).
    for name in ("preprocessor_config.json", "tokenizer_config.json"):
        path = out_dir / name
        data = json.loads(path.read_text())
        data["processor_class"] = PROCESSOR_CLASS
        path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    if not (out_dir / "chat_template.jinja").exists() and not (out_dir / "chat_template.json").exists():
        (out_dir / "chat_template.jinja").write_text(QWEN2_5_VL_CHAT_TEMPLATE)


def build(out_dir: Path) -> None:
    """Write a tiny random `Qwen2_5_VLForConditionalGeneration` checkpoint + processor files to `out_dir`."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    from src.models.tiny.tokenizer import build_qwen_tokenizer, special_token_ids

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tok = build_qwen_tokenizer()
    ids = special_token_ids(tok)
    config = _config(len(tok), ids)

    torch.manual_seed(SEED)
    model = Qwen2_5_VLForConditionalGeneration(config).to(torch.float32).eval()
    _save_generation_config(model, ids)
    model.save_pretrained(out_dir, safe_serialization=True)
    _save_processor_files(out_dir, tok)
