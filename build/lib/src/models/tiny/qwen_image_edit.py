"""Tiny random-weight `QwenImageEditPipeline` checkpoint (real architecture, toy sizes).

Every component is the real class built from a config, shrunk to hidden sizes of 16-64 and 1-2 layers,
with `torch.manual_seed(0)` before each one and float32 weights, so the build is deterministic and takes
a couple of seconds. It is written with `pipe.save_pretrained` (safetensors) and laid out like the hub
checkpoint `Qwen/Qwen-Image-Edit`:

    model_index.json        processor -> ["transformers", "Qwen2VLProcessor"], like the real one
    transformer/ vae/ text_encoder/ scheduler/ tokenizer/
    processor/              preprocessor_config.json (min_pixels/max_pixels, legacy keys) + tokenizer files

What is kept from the real configs: the latent layout (VAE z_dim 16 with the real latents_mean/std, 8x
spatial compression, transformer in_channels 64 / out_channels 16, patch 2), the scheduler config
(dynamic exponential shift, shift_terminal 0.02), the Qwen2.5-VL vision geometry (patch 14, merge 2,
temporal patch 2, windowed + full attention blocks, M-RoPE) and the image processor settings. What is
shrunk: widths, depths, head counts, vocabulary (the byte-level tokenizer of `tokenizer.py`, 272 ids).

The processor folder cannot be written by `Qwen2VLProcessor.save_pretrained`: that class needs a video
processor, which needs torchvision (absent here). We therefore save the pipeline without a processor and
write the processor folder from its parts (image processor + tokenizer), as the real checkpoint ships
it; loading goes through `load_image_only_processor` in the model implementation, for tiny and real
checkpoints alike.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from src.models.tiny._common import float32_weights, update_model_index

# Toy sizes. The transformer's attention_head_dim must equal sum(axes_dims_rope).
TEXT_HIDDEN = 32
VISION_HIDDEN = 32
TRANSFORMER_HEADS = 2
TRANSFORMER_HEAD_DIM = 16
AXES_DIMS_ROPE = (4, 6, 6)
Z_DIM = 16  # real latent channels (the transformer packs 2x2 -> in_channels 64)

# The real Qwen-Image(-Edit) scheduler config.
SCHEDULER_CONFIG = {
    "base_image_seq_len": 256,
    "base_shift": 0.5,
    "invert_sigmas": False,
    "max_image_seq_len": 8192,
    "max_shift": 0.9,
    "num_train_timesteps": 1000,
    "shift": 1.0,
    "shift_terminal": 0.02,
    "stochastic_sampling": False,
    "time_shift_type": "exponential",
    "use_beta_sigmas": False,
    "use_dynamic_shifting": True,
    "use_exponential_sigmas": False,
    "use_karras_sigmas": False,
}

# The real checkpoint's processor/preprocessor_config.json values (Qwen2.5-VL's image processor).
IMAGE_PROCESSOR_CONFIG = {
    "min_pixels": 3136,
    "max_pixels": 12845056,
    "patch_size": 14,
    "temporal_patch_size": 2,
    "merge_size": 2,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
}


class _DropMessage(logging.Filter):
    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.getMessage()).startswith(self.prefix)


def _text_encoder(tokenizer):
    import torch
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from src.models.tiny.tokenizer import vocab_size

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in
           ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>", "<|endoftext|>", "<|im_end|>")}
    heads = 4
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": vocab_size(),
            "hidden_size": TEXT_HIDDEN,
            "intermediate_size": 2 * TEXT_HIDDEN,
            "num_hidden_layers": 2,
            "num_attention_heads": heads,
            "num_key_value_heads": 2,  # grouped-query attention, like the real 28/4
            "max_position_embeddings": 8192,
            "max_window_layers": 2,
            # head_dim 8 -> 4 rotary frequencies split over (t, h, w) like the real [16, 24, 24] / 64
            "rope_parameters": {"rope_type": "default", "mrope_section": [1, 1, 2], "rope_theta": 1000000.0},
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": 2,
            "hidden_size": VISION_HIDDEN,
            "intermediate_size": 2 * VISION_HIDDEN,
            "num_heads": 2,
            "out_hidden_size": TEXT_HIDDEN,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 112,
            "fullatt_block_indexes": [1],  # block 0 windowed, block 1 full, like the real mix
            "tokens_per_second": 2,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    return Qwen2_5_VLForConditionalGeneration(config).eval()


@float32_weights
def build(out_dir: Path) -> None:
    """Write the tiny checkpoint into `out_dir` (an existing, empty directory)."""
    build_pipeline(out_dir, "QwenImageEditPipeline")


def build_pipeline(out_dir: Path, pipeline_class: str, **transformer_config: Any) -> None:
    """Build the tiny components, assemble them into `diffusers.<pipeline_class>` and write it with its
    processor folder into `out_dir`; `transformer_config` adds transformer arguments (the Plus
    checkpoint's `zero_cond_t`). Call it with float32 as the default dtype (as `build` does)."""
    import diffusers
    import torch
    from diffusers import AutoencoderKLQwenImage, FlowMatchEulerDiscreteScheduler, QwenImageTransformer2DModel
    from transformers import Qwen2VLImageProcessorPil

    from src.models.tiny.tokenizer import build_qwen_tokenizer

    torch.manual_seed(0)
    transformer = QwenImageTransformer2DModel(
        patch_size=2,
        in_channels=Z_DIM * 4,
        out_channels=Z_DIM,
        num_layers=2,
        attention_head_dim=TRANSFORMER_HEAD_DIM,
        num_attention_heads=TRANSFORMER_HEADS,
        joint_attention_dim=TEXT_HIDDEN,
        guidance_embeds=False,
        axes_dims_rope=AXES_DIMS_ROPE,
        **transformer_config,
    )

    torch.manual_seed(0)
    # Real: base_dim 96, dim_mult [1, 2, 4, 4], temperal_downsample [False, True, True] (8x spatial).
    # Keep the depth (hence the 8x compression and vae_scale_factor 8), shrink the width.
    vae = AutoencoderKLQwenImage(
        base_dim=8,
        z_dim=Z_DIM,
        dim_mult=[1, 2, 4, 4],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
    )

    torch.manual_seed(0)
    scheduler = FlowMatchEulerDiscreteScheduler(**SCHEDULER_CONFIG)

    tokenizer = build_qwen_tokenizer()
    text_encoder = _text_encoder(tokenizer)  # seeds itself

    pipe = getattr(diffusers, pipeline_class)(
        transformer=transformer,
        vae=vae,
        scheduler=scheduler,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        processor=None,  # written below from its parts, see the module docstring
    )
    # diffusers warns that the (intentionally absent) processor "cannot be saved"; that is expected here.
    pipeline_log = logging.getLogger("diffusers.pipelines.pipeline_utils")
    quiet = _DropMessage("self.processor=None")
    pipeline_log.addFilter(quiet)
    try:
        pipe.save_pretrained(out_dir, safe_serialization=True)
    finally:
        pipeline_log.removeFilter(quiet)

    # processor/: the image processor config in the real checkpoint's (legacy) form + tokenizer files.
    processor_dir = out_dir / "processor"
    processor_dir.mkdir(parents=True, exist_ok=True)
    image_processor = Qwen2VLImageProcessorPil(**IMAGE_PROCESSOR_CONFIG)
    image_processor.save_pretrained(processor_dir)
    config_file = processor_dir / "preprocessor_config.json"
    saved = json.loads(config_file.read_text())
    saved.update(IMAGE_PROCESSOR_CONFIG)
    saved["image_processor_type"] = "Qwen2VLImageProcessor"
    saved["processor_class"] = "Qwen2VLProcessor"
    config_file.write_text(json.dumps(saved, indent=2, sort_keys=True) + "\n")
    build_qwen_tokenizer().save_pretrained(processor_dir)

    update_model_index(out_dir, processor=["transformers", "Qwen2VLProcessor"])
