"""InstructPix2Pix through diffusers' `StableDiffusionInstructPix2PixPipeline` (a `DiffusersEditModel` preset).

Defaults
    `timbrooks/instruct-pix2pix` with the sampler its model card uses (`EulerAncestralDiscreteScheduler`,
    swapped in from the checkpoint's scheduler config; `scheduler: null` keeps the checkpoint's own),
    text guidance 7.5 and image guidance 1.5 (the paper's and the pipeline's defaults), 20 steps (the
    model card shows 10, the pipeline defaults to 100, the original `edit_cli.py` uses 100). Guidance
    runs three UNet passes per step (text+image, image only, neither) when `guidance_scale > 1` and
    `image_guidance_scale >= 1`; `negative_prompt` replaces the empty unconditional text.

Size (`resolution`)
    The pipeline itself works at the input's own size floored to multiples of 8, which for large photos
    is far beyond what SD 1.5 was trained on (512 px). With `resolution: 512` (default, like the
    original `edit_cli.py` and the diffusers docs' 512 px example) the input is resized so its longer
    side is `resolution` px, keeping the aspect ratio, each side rounded to a multiple of 8 (LANCZOS;
    small inputs are enlarged). `resolution: null` keeps the pipeline's own behaviour (input size floored
    to multiples of 8). The output has the working size.

Safety checker: off by default (`safety_checker: false` loads the pipeline with `safety_checker=None`,
as research code and diffusers' own tests do); a black NSFW replacement would be scored as an edit.
With `true`, the checkpoint's checker runs and flagged results carry `info["nsfw_content_detected"]`.
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
)

MULTIPLE = 8  # the VAE's scale factor


def working_size(image_size: tuple[int, int], resolution: int | None) -> tuple[int, int]:
    """(width, height) the edit runs and is returned at (see module doc)."""
    width, height = image_size
    if width < 1 or height < 1:
        raise RequestError(f"empty input image ({width}x{height})")
    if resolution is None:
        width, height = width - width % MULTIPLE, height - height % MULTIPLE
        if width < MULTIPLE or height < MULTIPLE:
            raise RequestError(f"input image {image_size[0]}x{image_size[1]} is smaller than {MULTIPLE} px on a "
                               "side; set a resolution to resize it")
        return width, height
    scale = resolution / max(width, height)
    return (max(MULTIPLE, round(width * scale / MULTIPLE) * MULTIPLE),
            max(MULTIPLE, round(height * scale / MULTIPLE) * MULTIPLE))


class InstructPix2PixModel(DiffusersEditModel):
    """InstructPix2Pix via diffusers' StableDiffusionInstructPix2PixPipeline; English-only CLIP text encoder: Chinese instructions get a warning. See the module docstring."""

    def __init__(
        self,
        model_name: str = "timbrooks/instruct-pix2pix",
        device: str = "auto",
        dtype: str = "bfloat16",
        batch_size: int = 1,
        cache_dir: str | None = None,
        num_inference_steps: int = 20,
        guidance_scale: float = 7.5,
        image_guidance_scale: float = 1.5,
        negative_prompt: str | None = None,
        resolution: int | None = 512,
        scheduler: str | None = "EulerAncestralDiscreteScheduler",
        safety_checker: bool = False,
        offload: str = "none",
        device_map: str | None = None,
        max_memory: dict | None = None,
        quantization: dict | None = None,
    ) -> None:
        if not isinstance(safety_checker, bool):
            raise ModelError(f"safety_checker must be true or false, got {safety_checker!r}")
        load_kwargs = None if safety_checker else {"safety_checker": None, "feature_extractor": None,
                                                   "requires_safety_checker": False}
        super().__init__(pipeline_class="StableDiffusionInstructPix2PixPipeline", model_name=model_name,
                         device=device, dtype=dtype, batch_size=batch_size, cache_dir=cache_dir,
                         load_kwargs=load_kwargs, scheduler=scheduler, offload=offload, device_map=device_map,
                         max_memory=max_memory, quantization=quantization)
        self.num_inference_steps = check_positive_int("num_inference_steps", num_inference_steps)
        self.guidance_scale = check_number("guidance_scale", guidance_scale)
        self.image_guidance_scale = check_number("image_guidance_scale", image_guidance_scale)
        self.negative_prompt = check_optional_str("negative_prompt", negative_prompt)
        if resolution is not None:
            check_positive_int("resolution", resolution)
            if resolution < MULTIPLE:
                raise ModelError(f"resolution must be null or >= {MULTIPLE} (pixels), got {resolution!r}")
        self.resolution = resolution
        self.safety_checker = safety_checker

    @property
    def cfg_active(self) -> bool:
        """The pipeline's own rule for running the guided (3-pass) UNet."""
        return self.guidance_scale > 1.0 and self.image_guidance_scale >= 1.0

    def _plan(self, req: EditRequest) -> Hashable:
        if req.extra_images:
            raise RequestError(f"InstructPix2Pix takes exactly one input image; got {1 + len(req.extra_images)} "
                               "(extra_images is not supported)")
        return working_size(req.image.size, self.resolution)

    def _pipeline_kwargs(self, chunk: list[EditRequest], key: Hashable) -> dict[str, Any]:
        size = tuple(key)
        images = [rgb(r.image) for r in chunk]
        images = [img if img.size == size else img.resize(size, Image.LANCZOS) for img in images]
        return {
            "image": images,
            "prompt": [r.instruction for r in chunk],
            "negative_prompt": [self.negative_prompt] * len(chunk) if self.negative_prompt is not None else None,
            "num_inference_steps": self.num_inference_steps,
            "guidance_scale": self.guidance_scale,
            "image_guidance_scale": self.image_guidance_scale,
        }

    def _family_info(self, req: EditRequest, key: Hashable) -> dict[str, Any]:
        return {
            "width": key[0],
            "height": key[1],
            "num_inference_steps": self.num_inference_steps,
            "guidance_scale": self.guidance_scale,
            "image_guidance_scale": self.image_guidance_scale,
            "cfg_active": self.cfg_active,
            "negative_prompt": self.negative_prompt,
            "resolution": self.resolution,
            "scheduler": self.scheduler,
            "safety_checker": self.safety_checker,
        }
