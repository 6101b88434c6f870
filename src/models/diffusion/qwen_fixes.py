"""Corrections that make diffusers' Qwen-Image edit pipelines encode prompts as their model cards do.

Two defects of the pinned versions (diffusers 0.42.1, transformers 5.23), found by reading the sources:

Text-encoder image size (`QwenImageEditPipeline` only)
    The pipeline resizes its input for the Qwen2.5-VL prompt encoder with `image_processor.resize(image,
    h, w)`, which resizes a single PIL image but returns a *list* untouched. Called as the model card
    calls it (`image=<one image>`) the encoder sees the image at the working size (~1024*1024 pixels,
    ~1,300 vision tokens); given `image=[...]` it sees the original size (a 12 MP photo: ~15k tokens, a
    200x100 thumbnail: 28). `resize_for_text_encoder` gives each image of a list the size a single image
    would get, so a batched call encodes every image like a one-image call. (`QwenImageEditPlusPipeline`
    resizes list entries one by one and is not affected.)

3D rope positions (all Qwen-Image edit pipelines)
    Since transformers 5 (5.15 for the 3D positions), Qwen2.5-VL computes the multimodal (t, h, w) rope
    positions of image tokens only when it is given `mm_token_type_ids` (0 text, 1 image, 2 video), which
    the processor returns. diffusers' `_get_qwen_prompt_embeds` picks `input_ids`, `attention_mask`,
    `pixel_values`, `image_grid_thw` out of the processor's output and drops that field, so the language
    model silently falls back to sequential positions and the prompt embeddings differ from those of the
    transformers 4.x the model was released with (diffusers issue #14194, open PR #14189, which forwards
    the processor's field). `install_rope_fix(text_encoder)` registers a forward pre-hook on the text
    encoder that supplies the same field when a call carries images but no `mm_token_type_ids` (built
    from `input_ids` with the config's image/video token ids - what the processor does), and does nothing
    when the caller passes it (a fixed diffusers) or passes `position_ids`.

`rope_positions_status()` tells whether the installed diffusers/transformers combination has the rope
defect (for `doctor`); it reads signatures and sources only and loads no weights.

Checked on CPU with tiny random-weight checkpoints (tests/test_reference_equivalence.py); not run on a GPU.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

log = logging.getLogger(__name__)

QWEN_TEXT_ENCODERS = ("Qwen2_5_VLForConditionalGeneration", "Qwen2VLForConditionalGeneration")
QWEN_EDIT_PIPELINES = (
    ("diffusers.pipelines.qwenimage.pipeline_qwenimage_edit", "QwenImageEditPipeline"),
    ("diffusers.pipelines.qwenimage.pipeline_qwenimage_edit_plus", "QwenImageEditPlusPipeline"),
    ("diffusers.pipelines.qwenimage.pipeline_qwenimage_edit_inpaint", "QwenImageEditInpaintPipeline"),
)
_MARK = "_ieb_rope_fix_handle"


# ----------------------------------------------------------------------------- rope positions


def mm_token_type_ids(input_ids, config) -> Any:
    """0 for text, 1 for image and 2 for video placeholder tokens of `input_ids` (the processor's field)."""
    import torch

    types = torch.zeros_like(input_ids, dtype=torch.int32)
    image_id = getattr(config, "image_token_id", None)
    video_id = getattr(config, "video_token_id", None)
    if image_id is not None:
        types[input_ids == image_id] = 1
    if video_id is not None:
        types[input_ids == video_id] = 2
    return types


def _pre_hook(module, args, kwargs):
    if args or kwargs.get("mm_token_type_ids") is not None or kwargs.get("position_ids") is not None:
        return None  # positional call, or the caller already gives positions/the field: leave it alone
    input_ids = kwargs.get("input_ids")
    if input_ids is None or (kwargs.get("image_grid_thw") is None and kwargs.get("video_grid_thw") is None):
        return None  # text only: sequential positions are right
    kwargs["mm_token_type_ids"] = mm_token_type_ids(input_ids, module.config).to(input_ids.device)
    return args, kwargs


def takes_mm_token_type_ids(text_encoder) -> bool:
    return "mm_token_type_ids" in inspect.signature(type(text_encoder).forward).parameters


def install_rope_fix(text_encoder) -> bool:
    """Register the pre-hook on a Qwen2(.5)-VL text encoder (idempotent). False when not applicable:
    another encoder class, or a transformers whose forward has no `mm_token_type_ids` (4.x computes the
    3D positions from `input_ids` itself)."""
    if text_encoder is None or type(text_encoder).__name__ not in QWEN_TEXT_ENCODERS:
        return False
    if not takes_mm_token_type_ids(text_encoder):
        return False
    if getattr(text_encoder, _MARK, None) is None:
        handle = text_encoder.register_forward_pre_hook(_pre_hook, with_kwargs=True)
        object.__setattr__(text_encoder, _MARK, handle)
    return True


def apply_to_pipeline(pipe) -> bool:
    """`install_rope_fix` on `pipe.text_encoder` if it is a Qwen-VL encoder; True when installed."""
    return install_rope_fix(getattr(pipe, "text_encoder", None))


def _forwards_field(module_name: str, class_name: str) -> bool | None:
    """Does the pipeline's prompt encoder pass `mm_token_type_ids` on? None when the class is missing."""
    import importlib

    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError):
        return None
    method = getattr(cls, "_get_qwen_prompt_embeds", None)
    if method is None:
        return None
    try:
        source = inspect.getsource(method)
    except (OSError, TypeError):
        return None
    return "mm_token_type_ids" in source or "**model_inputs" in source


def rope_positions_status() -> dict[str, Any]:
    """Whether the installed diffusers + transformers compute wrong 3D rope positions for Qwen-Image edits.

    Returns {"affected": bool, "fixed_here": bool, "message": str, "pipelines": {class: forwards_field}}.
    `affected` is True when transformers needs `mm_token_type_ids` for the 3D positions and some installed
    Qwen-Image edit pipeline does not forward it; `fixed_here` is True when this project's workaround
    (`install_rope_fix`) covers it, i.e. the editors' edits are still right. For `doctor`.
    """
    import diffusers
    import transformers

    versions = f"diffusers {diffusers.__version__}, transformers {transformers.__version__}"
    try:
        from transformers import Qwen2_5_VLForConditionalGeneration
    except ImportError as exc:
        return {"affected": False, "fixed_here": False, "pipelines": {},
                "message": f"{versions}: Qwen2.5-VL is not importable ({exc}); Qwen-Image edits cannot run"}
    needs_field = "mm_token_type_ids" in inspect.signature(Qwen2_5_VLForConditionalGeneration.forward).parameters
    pipelines = {name: _forwards_field(module, name) for module, name in QWEN_EDIT_PIPELINES}
    dropping = sorted(name for name, forwards in pipelines.items() if forwards is False)
    affected = needs_field and bool(dropping)
    if not needs_field:
        message = f"{versions}: transformers computes the 3D rope positions from input_ids; not affected"
    elif not dropping:
        message = f"{versions}: the Qwen-Image edit pipelines forward mm_token_type_ids; not affected"
    else:
        message = (f"{versions}: {', '.join(dropping)} do not forward mm_token_type_ids, so Qwen2.5-VL falls back "
                   "to sequential rope positions (diffusers issue #14194); this project's Qwen editors correct "
                   "it (src/models/diffusion/qwen_fixes.py), other code calling these pipelines does not")
    return {"affected": affected, "fixed_here": affected, "pipelines": pipelines, "message": message}


# ----------------------------------------------------------------------------- text-encoder image size


def resize_for_text_encoder(pipe, images: list, width: int, height: int) -> list:
    """Each image resized as `QwenImageEditPipeline` resizes a *single* input (see module doc).

    Uses the pipeline's own `image_processor.resize` one image at a time; the pipeline's later resize of
    an image already at (width, height) is then a no-op copy, so the VAE input is unchanged too.
    """
    return [img if img.size == (width, height) else pipe.image_processor.resize(img, height, width)
            for img in images]


def text_encoder_images(pipe, images: list) -> list:
    """`images` for one call of `pipe`: for a `QwenImageEditPipeline` given several images, each resized
    to the working size the pipeline computes from the first (its module's `calculate_dimensions` at
    1024*1024, or the capped one inside `AreaHook.capped`); anything else unchanged."""
    import sys

    owner = next((c for c in type(pipe).__mro__ if c.__name__ == "QwenImageEditPipeline"), None)
    if len(images) < 2 or owner is None:
        return images
    module = sys.modules[owner.__module__]
    width_in, height_in = images[0].size
    width, height = module.calculate_dimensions(1024 * 1024, width_in / height_in)[:2]
    return resize_for_text_encoder(pipe, images, int(width), int(height))
