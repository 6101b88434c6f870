"""FLUX.1 Kontext through diffusers' `FluxKontextPipeline` (a preset of `DiffusersEditModel`).

Defaults are the model card's usage of `black-forest-labs/FLUX.1-Kontext-dev`: `guidance_scale` 2.5
(Kontext-dev is guidance-distilled: the scale is an input of the transformer, not classifier-free
guidance), 28 steps, no true CFG.

Sizes
    Output: the pipeline makes `height` x `width` (default 1024x1024, *square whatever the input*: the
    known "Kontext crops my image" problem) rescaled to `max_area` pixels at that aspect ratio. We pass
    the input's aspect ratio instead, so the output keeps the original's shape:
    `w = round(sqrt(max_area * w_in / h_in))`, `h = round(sqrt(max_area * h_in / w_in))`, both floored to
    multiples of 16 - the pipeline's own arithmetic. `max_area` is a target, not a cap: a small input
    is enlarged to ~`max_area` pixels (upstream behaviour). We pass that size as `height`/`width` together
    with `max_area = w * h`, so the pipeline keeps it exactly (and does not log its resize warning).
    Conditioning image: with `auto_resize: true` (upstream default, `_auto_resize`) the pipeline resizes
    the input to the Kontext training resolution (~1 MP) closest to its aspect ratio, whatever
    `max_area` is. With `auto_resize: false` the pipeline would keep the input's own size (any size), so
    we resize it to the output size first: compute then follows `max_area` for both.

Batching: requests sharing output and conditioning sizes go into one call (prompt lists, one generator
per request); see `diffusers_generic.py` for seeds, retries and errors. One input image per request.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from PIL import Image

from src.models.base import EditRequest, ModelError
from src.models.diffusion.implementations.diffusers_generic import (
    DiffusersEditModel,
    RequestError,
    check_number,
    check_optional_str,
    check_positive_int,
    rgb,
    true_cfg_active,
    true_cfg_call_kwargs,
    true_cfg_info,
)

DEFAULT_AREA = 1024 * 1024  # the pipeline's default max_area
MULTIPLE = 16  # vae_scale_factor (8) * patch packing (2)


def preferred_resolutions() -> list[tuple[int, int]]:
    from diffusers.pipelines.flux.pipeline_flux_kontext import PREFERRED_KONTEXT_RESOLUTIONS

    return list(PREFERRED_KONTEXT_RESOLUTIONS)


def output_size(image_size: tuple[int, int], max_area: int, multiple: int = MULTIPLE) -> tuple[int, int]:
    """(width, height) of the output for an input of `image_size` (the pipeline's max_area arithmetic)."""
    width_in, height_in = image_size
    if width_in < 1 or height_in < 1:
        raise RequestError(f"empty input image ({width_in}x{height_in})")
    ratio = width_in / height_in
    width = round((max_area * ratio) ** 0.5) // multiple * multiple
    height = round((max_area / ratio) ** 0.5) // multiple * multiple
    return max(width, multiple), max(height, multiple)


def condition_size(image_size: tuple[int, int], out: tuple[int, int], auto_resize: bool,
                   vae_scale_factor: int = 8) -> tuple[int, int]:
    """(width, height) the pipeline encodes the input image at (see module doc)."""
    if not auto_resize:
        return out  # we resize the input to the output size ourselves
    multiple = vae_scale_factor * 2
    # the pipeline first floors the image to multiples of vae_scale_factor, then picks by aspect ratio
    width, height = (side - side % vae_scale_factor for side in image_size)
    if width < 1 or height < 1:
        raise RequestError(f"input image {image_size[0]}x{image_size[1]} is too small for auto_resize "
                           f"(needs >= {vae_scale_factor} px per side); set auto_resize: false")
    ratio = width / height
    _, width, height = min((abs(ratio - w / h), w, h) for w, h in preferred_resolutions())
    return width // multiple * multiple, height // multiple * multiple


class FluxKontextModel(DiffusersEditModel):
    """FLUX.1 Kontext [dev] via diffusers' FluxKontextPipeline; English-only text encoders (T5-XXL, CLIP): Chinese instructions get a warning. See the module docstring."""

    def __init__(
        self,
        model_name: str = "black-forest-labs/FLUX.1-Kontext-dev",
        device: str = "auto",
        dtype: str = "bfloat16",
        batch_size: int = 1,
        cache_dir: str | None = None,
        num_inference_steps: int = 28,
        guidance_scale: float = 2.5,
        true_cfg_scale: float = 1.0,
        negative_prompt: str | None = None,
        max_area: int = DEFAULT_AREA,
        auto_resize: bool = True,
        offload: str = "none",
        device_map: str | None = None,
        max_memory: dict | None = None,
        quantization: dict | None = None,
    ) -> None:
        super().__init__(pipeline_class="FluxKontextPipeline", model_name=model_name, device=device, dtype=dtype,
                         batch_size=batch_size, cache_dir=cache_dir, offload=offload, device_map=device_map,
                         max_memory=max_memory, quantization=quantization)
        self.num_inference_steps = check_positive_int("num_inference_steps", num_inference_steps)
        self.guidance_scale = check_number("guidance_scale", guidance_scale)
        self.true_cfg_scale = check_number("true_cfg_scale", true_cfg_scale)
        self.negative_prompt = check_optional_str("negative_prompt", negative_prompt)
        if isinstance(max_area, bool) or not isinstance(max_area, int) or max_area < MULTIPLE * MULTIPLE:
            raise ModelError(f"max_area must be an integer >= {MULTIPLE * MULTIPLE} (pixels), got {max_area!r}")
        self.max_area = max_area
        if not isinstance(auto_resize, bool):
            raise ModelError(f"auto_resize must be true or false, got {auto_resize!r}")
        self.auto_resize = auto_resize

    @property
    def cfg_active(self) -> bool:
        """True classifier-free guidance (a second transformer pass) needs a scale > 1 and a negative prompt."""
        return true_cfg_active(self.true_cfg_scale, self.negative_prompt)

    def _vae_scale_factor(self) -> int:
        return int(getattr(self.pipe, "vae_scale_factor", 8))

    def _plan(self, req: EditRequest) -> Hashable:
        if req.extra_images:
            raise RequestError(f"FLUX.1 Kontext takes exactly one input image; got {1 + len(req.extra_images)} "
                               "(extra_images is not supported by FluxKontextPipeline)")
        factor = self._vae_scale_factor()
        out = output_size(req.image.size, self.max_area, factor * 2)
        return out, condition_size(req.image.size, out, self.auto_resize, factor)

    def _pipeline_kwargs(self, chunk: list[EditRequest], key: Hashable) -> dict[str, Any]:
        (width, height), _ = key
        images = [rgb(r.image) for r in chunk]
        if not self.auto_resize:
            images = [img if img.size == (width, height) else img.resize((width, height), Image.LANCZOS)
                      for img in images]
        return {
            "image": images,
            "prompt": [r.instruction for r in chunk],
            **true_cfg_call_kwargs(self.true_cfg_scale, self.negative_prompt, len(chunk)),
            "guidance_scale": self.guidance_scale,
            "num_inference_steps": self.num_inference_steps,
            "height": height,
            "width": width,
            "max_area": width * height,  # already applied: keeps our size exactly
            "_auto_resize": self.auto_resize,
        }

    def _family_info(self, req: EditRequest, key: Hashable) -> dict[str, Any]:
        (width, height), (cond_width, cond_height) = key
        return {
            "width": width,
            "height": height,
            "condition_width": cond_width,
            "condition_height": cond_height,
            "num_inference_steps": self.num_inference_steps,
            "guidance_scale": self.guidance_scale,
            **true_cfg_info(self.true_cfg_scale, self.negative_prompt),
            "max_area": self.max_area,
            "auto_resize": self.auto_resize,
        }
