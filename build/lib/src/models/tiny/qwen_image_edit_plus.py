"""Tiny random-weight `QwenImageEditPlusPipeline` checkpoint (Qwen-Image-Edit-2511 layout, toy sizes).

The same components as `tiny:qwen-image-edit`, built by its `build_pipeline` (see
`src/models/tiny/qwen_image_edit.py`: text encoder, VAE, scheduler config and processor settings as is)
and assembled into the "Plus" pipeline of Qwen-Image-Edit-2509 / -2511, laid out like the hub checkpoint
`Qwen/Qwen-Image-Edit-2511`:

    model_index.json        _class_name QwenImageEditPlusPipeline, processor -> Qwen2VLProcessor
    transformer/ vae/ text_encoder/ scheduler/ tokenizer/ processor/

One difference from the single-image checkpoint: the transformer has `zero_cond_t: true`, the 2511
config flag (the conditioning image tokens are modulated with timestep 0), so the 2511 code path of
`QwenImageTransformer2DModel` runs. 2509 is the same checkpoint layout with `zero_cond_t` absent.

As for the single-image checkpoint, `Qwen2VLProcessor.save_pretrained` needs torchvision (its video
processor), so the processor folder is written from its parts and loaded with the image-only processor.
"""

from __future__ import annotations

from pathlib import Path

from src.models.tiny._common import float32_weights
from src.models.tiny.qwen_image_edit import build_pipeline


@float32_weights
def build(out_dir: Path) -> None:
    """Write the tiny checkpoint into `out_dir` (an existing, empty directory)."""
    build_pipeline(out_dir, "QwenImageEditPlusPipeline", zero_cond_t=True)  # Qwen-Image-Edit-2511
