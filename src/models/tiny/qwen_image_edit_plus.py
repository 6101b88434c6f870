"""Tiny random-weight `QwenImageEditPlusPipeline` checkpoint (Qwen-Image-Edit-2511 layout, toy sizes).

The same components as `tiny:qwen-image-edit` (see `src/models/tiny/qwen_image_edit.py`, whose text
encoder, scheduler config and processor settings are reused as is) assembled into the "Plus" pipeline of
Qwen-Image-Edit-2509 / -2511, laid out like the hub checkpoint `Qwen/Qwen-Image-Edit-2511`:

    model_index.json        _class_name QwenImageEditPlusPipeline, processor -> Qwen2VLProcessor
    transformer/ vae/ text_encoder/ scheduler/ tokenizer/ processor/

One difference from the single-image checkpoint: the transformer has `zero_cond_t: true`, the 2511
config flag (the conditioning image tokens are modulated with timestep 0), so the 2511 code path of
`QwenImageTransformer2DModel` runs. 2509 is the same checkpoint layout with `zero_cond_t` absent.

As for the single-image checkpoint, `Qwen2VLProcessor.save_pretrained` needs torchvision (its video
processor), so the processor folder is written from its parts and loaded with the image-only processor.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from src.models.tiny.qwen_image_edit import (
    AXES_DIMS_ROPE,
    IMAGE_PROCESSOR_CONFIG,
    SCHEDULER_CONFIG,
    TEXT_HIDDEN,
    TRANSFORMER_HEAD_DIM,
    TRANSFORMER_HEADS,
    Z_DIM,
    _DropMessage,
    _text_encoder,
)


def build(out_dir: Path) -> None:
    """Write the tiny checkpoint into `out_dir` (an existing, empty directory)."""
    import torch

    previous_dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        _build(Path(out_dir))
    finally:
        torch.set_default_dtype(previous_dtype)


def _build(out_dir: Path) -> None:
    import torch
    from diffusers import (
        AutoencoderKLQwenImage,
        FlowMatchEulerDiscreteScheduler,
        QwenImageEditPlusPipeline,
        QwenImageTransformer2DModel,
    )
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
        zero_cond_t=True,  # Qwen-Image-Edit-2511
    )

    torch.manual_seed(0)
    vae = AutoencoderKLQwenImage(
        base_dim=8,
        z_dim=Z_DIM,
        dim_mult=[1, 2, 4, 4],
        num_res_blocks=1,
        temperal_downsample=[False, True, True],
    )

    scheduler = FlowMatchEulerDiscreteScheduler(**SCHEDULER_CONFIG)
    tokenizer = build_qwen_tokenizer()
    text_encoder = _text_encoder(tokenizer)  # seeds itself

    pipe = QwenImageEditPlusPipeline(
        transformer=transformer,
        vae=vae,
        scheduler=scheduler,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        processor=None,  # written below from its parts
    )
    pipeline_log = logging.getLogger("diffusers.pipelines.pipeline_utils")
    quiet = _DropMessage("self.processor=None")
    pipeline_log.addFilter(quiet)
    try:
        pipe.save_pretrained(out_dir, safe_serialization=True)
    finally:
        pipeline_log.removeFilter(quiet)

    processor_dir = out_dir / "processor"
    processor_dir.mkdir(parents=True, exist_ok=True)
    Qwen2VLImageProcessorPil(**IMAGE_PROCESSOR_CONFIG).save_pretrained(processor_dir)
    config_file = processor_dir / "preprocessor_config.json"
    saved = json.loads(config_file.read_text())
    saved.update(IMAGE_PROCESSOR_CONFIG)
    saved["image_processor_type"] = "Qwen2VLImageProcessor"
    saved["processor_class"] = "Qwen2VLProcessor"
    config_file.write_text(json.dumps(saved, indent=2, sort_keys=True) + "\n")
    build_qwen_tokenizer().save_pretrained(processor_dir)

    index_file = out_dir / "model_index.json"
    index = json.loads(index_file.read_text())
    index["processor"] = ["transformers", "Qwen2VLProcessor"]
    index_file.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
