"""An image-only Qwen3-VL processor that works without torchvision.

`transformers.Qwen3VLProcessor` always builds a video processor, and Qwen3-VL's video processor needs
torchvision, which this project does not install. The judge only ever sends images, so
`Qwen3VLImageOnlyProcessor` below is `Qwen3VLProcessor` minus the video processor: same image-token
expansion, same `mm_token_type_ids` (needed for Qwen3-VL's 3D M-RoPE), same chat template handling.
Its image processor is always the PIL backend `Qwen2VLImageProcessorPil` (Qwen3-VL's hub checkpoints
name `Qwen2VLImageProcessorFast`, i.e. the torchvision backend of the same processor). The PIL backend
reads the same `preprocessor_config.json` / `processor_config.json` keys (patch_size, merge_size,
temporal_patch_size, size, image_mean, image_std).

Load with `load_qwen_vl_processor(path_or_hub_id)`; it works for real checkpoints and for the tiny
ones written by `src.models.tiny.qwen3_vl`.
"""

from __future__ import annotations

from typing import Any

from transformers import AutoTokenizer, Qwen2VLImageProcessorPil
from transformers.models.qwen3_vl.processing_qwen3_vl import Qwen3VLProcessor


class Qwen3VLImageOnlyProcessor(Qwen3VLProcessor):
    """`Qwen3VLProcessor` without a video processor (images and text only)."""

    # Sub-processors are discovered from the `__init__` signature: image_processor and tokenizer only.
    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        # ProcessorMixin zips positional sub-processors with `get_attributes()` (here: image_processor,
        # tokenizer), so the `video_processor=None` the parent passes on is dropped.
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)

    @classmethod
    def _get_arguments_from_pretrained(cls, pretrained_model_name_or_path, processor_dict=None, **kwargs):
        subfolder = kwargs.pop("subfolder", "")
        image_processor = Qwen2VLImageProcessorPil.from_pretrained(
            pretrained_model_name_or_path, subfolder=subfolder, **kwargs
        )
        tokenizer = AutoTokenizer.from_pretrained(pretrained_model_name_or_path, subfolder=subfolder, **kwargs)
        return [image_processor, tokenizer]

    def __call__(self, images=None, text=None, videos=None, **kwargs):
        if videos is not None:
            raise ValueError(f"{type(self).__name__} handles images only (no torchvision video processor)")
        return super().__call__(images=images, text=text, **kwargs)


def load_qwen_vl_processor(path: str, cache_dir: str | None = None) -> Qwen3VLImageOnlyProcessor:
    """Processor (tokenizer + PIL image processor + chat template) of a Qwen-VL checkpoint."""
    kwargs: dict[str, Any] = {}
    if cache_dir:
        kwargs["cache_dir"] = cache_dir
    processor = Qwen3VLImageOnlyProcessor.from_pretrained(path, **kwargs)
    if processor.chat_template is None:
        processor.chat_template = getattr(processor.tokenizer, "chat_template", None)
    if processor.chat_template is None:
        raise ValueError(f"checkpoint {path!r} has no chat template")
    processor.tokenizer.padding_side = "left"
    return processor


def image_size_kwargs(processor: Qwen3VLImageOnlyProcessor, min_pixels: int | None,
                      max_pixels: int | None) -> dict[str, Any]:
    """`images_kwargs` overriding the image processor's pixel budget (empty when neither is given)."""
    if min_pixels is None and max_pixels is None:
        return {}
    size = processor.image_processor.size
    shortest = getattr(size, "shortest_edge", None) if not isinstance(size, dict) else size.get("shortest_edge")
    longest = getattr(size, "longest_edge", None) if not isinstance(size, dict) else size.get("longest_edge")
    if min_pixels is not None and max_pixels is not None and min_pixels > max_pixels:
        raise ValueError(f"min_pixels ({min_pixels}) exceeds max_pixels ({max_pixels})")
    # A bound given alone wins over the checkpoint's other bound when they conflict.
    if min_pixels is not None:
        shortest = min_pixels
        longest = max(longest, min_pixels) if longest is not None else None
    if max_pixels is not None:
        longest = max_pixels
        shortest = min(shortest, max_pixels) if shortest is not None else None
    if shortest is None or longest is None:
        raise ValueError(f"image processor size {size!r} lacks shortest_edge/longest_edge")
    return {"size": {"shortest_edge": int(shortest), "longest_edge": int(longest)}}
