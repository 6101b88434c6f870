"""Qwen-Image-Edit-2509 / -2511 through diffusers' `QwenImageEditPlusPipeline` (a `DiffusersEditModel` preset).

Inputs
    One or several images per pair: the original first ("Picture 1" in the prompt template), then the
    pair's `reference_images_b64` (`EditRequest.extra_images`, "Picture 2", ...). Defaults are the model
    card's: `true_cfg_scale` 4.0 with `negative_prompt` " ", 40 steps, no `guidance_scale` (the card's
    1.0 is ignored by this non-distilled model; diffusers only warns). 2509 and 2511 load the same way;
    2511's transformer config adds `zero_cond_t`, which diffusers reads itself.

Loading: like `QwenImageEditModel` (dtype at from_pretrained time, image-only Qwen2-VL processor built
from the checkpoint's `processor/` folder: the full processor needs torchvision).

Sizes (`max_area`)
    The pipeline sizes each input image twice from its own aspect ratio: ~384*384 pixels for the
    Qwen2.5-VL prompt encoder (`CONDITION_IMAGE_SIZE`) and ~1024*1024 for the VAE latents the transformer
    attends to (`VAE_IMAGE_SIZE`), through the module-level `calculate_dimensions(area, ratio)` (sides
    rounded to multiples of 32). The output defaults to ~1024*1024 at the aspect ratio of the *last*
    input image. We pass `height`/`width` computed from the *original* (first) image instead, so the
    edit keeps the original's shape when reference images are given (with one image both agree).
    With `max_area` set (pixels, >= 1024), `calculate_dimensions` of
    `diffusers.pipelines.qwenimage.pipeline_qwenimage_edit_plus` is replaced for the duration of each call
    (under a lock, restored afterwards) by one whose target is `min(target, max_area)` and whose sides
    are never below 32 px, and the output size uses the same cap: output, VAE inputs and (when
    `max_area` < 384*384) the prompt-encoder inputs all stay within the cap. `max_area: null` (default)
    patches nothing. `check()` verifies the hook still exists; each call verifies it was used.

Batching: diffusers 0.42's `QwenImageEditPlusPipeline` rejects more than one prompt per call, so
requests always run one per call whatever `batch_size` says (it is accepted for config compatibility;
`info["batch"]` is 1). Seeds, retries and errors are the shared ones of `diffusers_generic.py`.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

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
from src.models.diffusion.implementations.qwen_image_edit import (
    AreaHook,
    check_max_area,
    effective_cap,
    load_image_only_processor,
)

PIPELINE_MODULE = "diffusers.pipelines.qwenimage.pipeline_qwenimage_edit_plus"

# The single-image editor's working-area patch (same arithmetic: output / VAE area 1024*1024, sides >= 32,
# floored to 16), applied to the Plus pipeline's module.
AREA_HOOK = AreaHook(PIPELINE_MODULE, "QwenImageEditPlusPipeline", "the pipeline's own sizes", error=RequestError)
check_area_hook = AREA_HOOK.check
working_size = AREA_HOOK.working_size  # of the output, for an original of `image_size`
capped_area = AREA_HOOK.capped  # every image of a call at most `max_area` pixels


class QwenImageEditPlusModel(DiffusersEditModel):
    """Qwen-Image-Edit-2509/-2511 (one or more input images) via diffusers. See the module docstring."""

    def __init__(
        self,
        model_name: str = "Qwen/Qwen-Image-Edit-2511",
        device: str = "auto",
        dtype: str = "bfloat16",
        batch_size: int = 1,
        cache_dir: str | None = None,
        num_inference_steps: int = 40,
        true_cfg_scale: float = 4.0,
        negative_prompt: str | None = " ",
        max_area: int | None = None,
        guidance_scale: float | None = None,
        offload: str = "none",
        device_map: str | None = None,
        max_memory: dict | None = None,
        quantization: dict | None = None,
    ) -> None:
        super().__init__(pipeline_class="QwenImageEditPlusPipeline", model_name=model_name, device=device,
                         dtype=dtype, batch_size=batch_size, cache_dir=cache_dir, offload=offload,
                         device_map=device_map, max_memory=max_memory, quantization=quantization)
        self.num_inference_steps = check_positive_int("num_inference_steps", num_inference_steps)
        self.true_cfg_scale = check_number("true_cfg_scale", true_cfg_scale)
        self.negative_prompt = check_optional_str("negative_prompt", negative_prompt)
        self.max_area = check_max_area(max_area)
        self.guidance_scale = check_number("guidance_scale", guidance_scale, optional=True)

    @property
    def cfg_active(self) -> bool:
        """True classifier-free guidance runs only with a scale > 1 *and* a negative prompt."""
        return true_cfg_active(self.true_cfg_scale, self.negative_prompt)

    def check(self) -> None:
        super().check()
        try:
            from transformers import Qwen2VLImageProcessorPil  # noqa: F401
        except ImportError as exc:
            raise ModelError(f"Qwen-Image-Edit needs a transformers with Qwen2VLImageProcessorPil: {exc}") from exc
        if effective_cap(self.max_area) is not None:
            check_area_hook()

    def _component_overrides(self, cls: type, path: str) -> dict[str, Any]:
        if effective_cap(self.max_area) is not None:
            check_area_hook()
        return {"processor": load_image_only_processor(path, cache_dir=self.cache_dir)}

    def _max_batch(self) -> int:
        return 1  # the pipeline raises on more than one prompt per call (see module doc)

    def _plan(self, req: EditRequest) -> Hashable:
        for extra in req.extra_images:
            if extra.size[0] < 1 or extra.size[1] < 1:
                raise RequestError(f"empty reference image ({extra.size[0]}x{extra.size[1]})")
        return working_size(req.image.size, self.max_area)

    def _pipeline_kwargs(self, chunk: list[EditRequest], key: Hashable) -> dict[str, Any]:
        (req,) = chunk
        width, height = key
        kwargs: dict[str, Any] = {
            "image": [rgb(req.image)] + [rgb(img) for img in req.extra_images],
            "prompt": [req.instruction],
            **true_cfg_call_kwargs(self.true_cfg_scale, self.negative_prompt, 1),
            "height": height,
            "width": width,
            "num_inference_steps": self.num_inference_steps,
        }
        if self.guidance_scale is not None:
            kwargs["guidance_scale"] = self.guidance_scale
        return kwargs

    def _calling(self, key: Hashable):
        return AREA_HOOK.applied(self.max_area)

    def _family_info(self, req: EditRequest, key: Hashable) -> dict[str, Any]:
        return {
            "width": key[0],
            "height": key[1],
            "num_input_images": 1 + len(req.extra_images),
            "num_inference_steps": self.num_inference_steps,
            **true_cfg_info(self.true_cfg_scale, self.negative_prompt),
            "guidance_scale": self.guidance_scale,
            "max_area": self.max_area,
        }
