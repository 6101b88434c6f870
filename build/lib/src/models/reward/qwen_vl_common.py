"""Image-only Qwen-VL-family processors that work without torchvision, and the judges' pixel budget.

The Qwen-VL-family processors (`Qwen2VLProcessor`, `Qwen2_5_VLProcessor`, `Qwen3VLProcessor`, GLM-4.1V's,
...) always build a video processor, which needs torchvision, absent from this project. The judges only
ever send images, so `image_only_processor_class(base)` is `base` minus the video processor: same
image-token expansion, same `mm_token_type_ids` (needed for Qwen3-VL's 3D M-RoPE), same chat template
handling. Its image processor is always the PIL backend (`AutoImageProcessor` with `backend="pil"`, i.e.
`Qwen2VLImageProcessorPil` for the Qwen-VL checkpoints, which name `Qwen2VLImageProcessorFast`, the
torchvision backend of the same processor); the PIL backend reads the same `preprocessor_config.json` /
`processor_config.json` keys (patch_size, merge_size, temporal_patch_size, size, image_mean, image_std).

Load with `load_image_only_processor(path_or_hub_id, base)` (`load_qwen_vl_processor(path)` for
Qwen3-VL, whose class is `Qwen3VLImageOnlyProcessor`); it works for real checkpoints and for the tiny
ones written by `src.models.tiny`.
"""

from __future__ import annotations

import inspect
from functools import lru_cache
from typing import Any

from transformers import AutoTokenizer
from transformers.models.qwen3_vl.processing_qwen3_vl import Qwen3VLProcessor

# The constructor of the Qwen-VL-family processors (Qwen2-VL, Qwen2.5-VL, Qwen3-VL, GLM-4.1V, ...): the
# three sub-processors and the chat template, nothing else. Only then is dropping the video processor
# all it takes (a processor with further constructor arguments would silently lose them).
_QWEN_STYLE_INIT = ["image_processor", "tokenizer", "video_processor", "chat_template"]


@lru_cache(maxsize=None)
def image_only_processor_class(base: type) -> type:
    """`base` (a processor class built like `Qwen2_5_VLProcessor`) without its video processor.

    For any processor whose constructor takes exactly `(image_processor, tokenizer, video_processor,
    chat_template)`: same image-token expansion and `mm_token_type_ids` as `base`, the image processor
    always the PIL backend, no video processor (which needs torchvision). Raises `ValueError` for other
    processor classes. One class per `base` (cached).
    """
    params = [name for name, p in inspect.signature(base.__init__).parameters.items()
              if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if params != _QWEN_STYLE_INIT:
        raise ValueError(f"{base.__name__}({', '.join(params)}) is not built like a Qwen-VL processor "
                         f"({', '.join(_QWEN_STYLE_INIT)}); no image-only variant")

    class ImageOnlyProcessor(base):  # type: ignore[misc, valid-type]
        # Sub-processors are discovered from the `__init__` signature: image_processor and tokenizer only.
        def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
            # ProcessorMixin zips positional sub-processors with `get_attributes()` (here: image_processor,
            # tokenizer), so the `video_processor=None` the parent passes on is dropped.
            super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)

        @classmethod
        def _get_arguments_from_pretrained(cls, pretrained_model_name_or_path, processor_dict=None, **kwargs):
            from transformers import AutoImageProcessor

            subfolder = kwargs.pop("subfolder", "")
            image_processor = AutoImageProcessor.from_pretrained(
                pretrained_model_name_or_path, subfolder=subfolder, backend="pil", **kwargs
            )
            tokenizer = AutoTokenizer.from_pretrained(pretrained_model_name_or_path, subfolder=subfolder, **kwargs)
            return [image_processor, tokenizer]

        def __call__(self, images=None, text=None, videos=None, **kwargs):
            if videos is not None:
                raise ValueError(f"{type(self).__name__} handles images only (no torchvision video processor)")
            return super().__call__(images=images, text=text, **kwargs)

    ImageOnlyProcessor.__name__ = ImageOnlyProcessor.__qualname__ = f"{base.__name__}ImageOnly"
    return ImageOnlyProcessor


# `Qwen3VLProcessor` without a video processor (images and text only).
Qwen3VLImageOnlyProcessor = image_only_processor_class(Qwen3VLProcessor)


def load_image_only_processor(path: str, base: type, cache_dir: str | None = None,
                              trust_remote_code: bool = False):
    """Processor (tokenizer + PIL image processor + chat template) of a checkpoint whose processor class is
    the Qwen-VL-style `base` (e.g. `Qwen2_5_VLProcessor`), without the video processor; see
    `image_only_processor_class`. The tokenizer pads on the left."""
    kwargs: dict[str, Any] = {}
    if cache_dir:
        kwargs["cache_dir"] = cache_dir
    if trust_remote_code:
        kwargs["trust_remote_code"] = True
    processor = image_only_processor_class(base).from_pretrained(path, **kwargs)
    if processor.chat_template is None:
        processor.chat_template = getattr(processor.tokenizer, "chat_template", None)
    if processor.chat_template is None:
        raise ValueError(f"checkpoint {path!r} has no chat template")
    processor.tokenizer.padding_side = "left"
    return processor


def load_qwen_vl_processor(path: str, cache_dir: str | None = None):
    """`load_image_only_processor` for a Qwen3-VL checkpoint (a `Qwen3VLImageOnlyProcessor`)."""
    return load_image_only_processor(path, Qwen3VLProcessor, cache_dir=cache_dir)


def image_size_kwargs(processor, min_pixels: int | None,
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
