"""Qwen-Image-Edit through diffusers' `QwenImageEditPipeline`.

Loading
    `QwenImageEditPipeline.from_pretrained(path, dtype=..., processor=...)` for a hub id, a local
    directory or a `tiny:qwen-image-edit` checkpoint alike; the weights are read in the configured dtype
    (diffusers 0.42 renamed `torch_dtype` to `dtype` and warns on the old name; older versions get
    `torch_dtype`). The processor is always passed in: the
    checkpoint's own `Qwen2VLProcessor` also builds a video processor, which needs torchvision, and
    torchvision is not part of this project. `Qwen2VLImageOnlyProcessor` is the same processor without
    the video half, built from the checkpoint's `processor/` folder with the PIL image processor
    (`Qwen2VLImageProcessorPil`); the pipeline only ever passes it text and images.

Working size (`max_area`)
    The pipeline works at a ~1024*1024 pixel area whatever the input size: it computes
    `calculate_dimensions(1024 * 1024, w / h)` from the *first* input image, resizes the conditioning
    image (for both the VAE and the Qwen2.5-VL prompt encoder) to that size, and uses the same size in
    the transformer's RoPE shapes (`img_shapes`). `height` / `width` arguments only change the size of
    the generated latents, not of the conditioning image (still ~4096 latent tokens), so passing them
    alone saves little and mixes two resolutions. There is no argument for the conditioning area, so with
    `max_area` set we substitute the module-level `calculate_dimensions` of
    `diffusers.pipelines.qwenimage.pipeline_qwenimage_edit` for the duration of the call (under a lock,
    restored afterwards) by one that uses `min(1024 * 1024, max_area)` as the target area (and never
    returns a side under 32 px), and pass the same `height` / `width` explicitly. Output, conditioning
    image and RoPE shapes then all agree at the capped size. Like upstream's 1024*1024, `max_area` is a
    target: sides are rounded to multiples of 32, so e.g. 48*48 gives 64x64 for a square input and 512*512
    gives 512x512 (the rounding matters only at toy sizes). With `max_area: null` nothing is patched:
    the pipeline runs exactly as upstream. `check()` verifies the hook still exists in the installed
    diffusers, and each call verifies it was used.

Batching
    Up to `batch_size` requests go into one pipeline call (lists of prompts, images, negative prompts
    and one generator per request) when they share the same working size: the pipeline sizes every image
    of a call from the first one, so requests whose aspect ratios give different working sizes are never
    mixed (they go into separate calls). If a batched call raises, its requests are retried one by one;
    a request that still fails gets `EditResult(image=None, error=...)`.

    Batched and one-by-one results agree closely but not bit-for-bit: in a batch, prompts are padded
    (left) to the longest one, so the text encoder and transformer run with attention masks and
    different matrix shapes.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import threading
from contextlib import contextmanager
from typing import Any

from src.batching import is_oom
from src.models.base import (
    BaseEditModel,
    EditRequest,
    EditResult,
    ModelError,
    free_memory,
    parse_dtype,
)
from src.models.diffusion.placement import check_on_device, check_placement, load_pipeline, move
from src.models.diffusion.qwen_fixes import apply_to_pipeline as apply_rope_fix
from src.models.diffusion.qwen_fixes import resize_for_text_encoder
from src.models.diffusion.implementations.diffusers_generic import (
    check_number,
    check_optional_str,
    check_positive_int,
    dtype_kwarg,
    single_request_call,
    true_cfg_active,
    true_cfg_call_kwargs,
    true_cfg_info,
)

log = logging.getLogger(__name__)

PIPELINE_MODULE = "diffusers.pipelines.qwenimage.pipeline_qwenimage_edit"
DEFAULT_AREA = 1024 * 1024  # the pipeline's hard-coded working area
MIN_SIDE = 32  # calculate_dimensions rounds to multiples of 32; never let a side round to 0
MULTIPLE = 16  # vae_scale_factor * 2; a no-op on multiples of 32


# ----------------------------------------------------------------------------- processor


def _image_only_processor_class():
    from transformers import ProcessorMixin, Qwen2VLProcessor

    class Qwen2VLImageOnlyProcessor(Qwen2VLProcessor):
        """`Qwen2VLProcessor` without a video processor (which would need torchvision).

        Same text/image behaviour: image placeholder expansion, `image_grid_thw`, `pixel_values`.
        """

        def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
            # What Qwen2VLProcessor.__init__ sets, minus the video processor argument.
            self.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
            self.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
            self.image_token_id = getattr(tokenizer, "image_token_id", None) or tokenizer.convert_tokens_to_ids(
                self.image_token
            )
            self.video_token_id = getattr(tokenizer, "video_token_id", None) or tokenizer.convert_tokens_to_ids(
                self.video_token
            )
            ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)

    return Qwen2VLImageOnlyProcessor


_PROCESSOR_CLASS = None


def image_only_processor_class():
    """The class, created on first use so importing this module does not import transformers."""
    global _PROCESSOR_CLASS
    if _PROCESSOR_CLASS is None:
        _PROCESSOR_CLASS = _image_only_processor_class()
    return _PROCESSOR_CLASS


def load_image_only_processor(path: str, cache_dir: str | None = None, subfolder: str = "processor"):
    """Build the image-only processor from a checkpoint's `processor/` folder (hub id or local dir).

    The image processor settings come from `processor/preprocessor_config.json`; the tokenizer from
    `processor/`, falling back to the pipeline's `tokenizer/` folder if the processor folder has none.
    """
    from transformers import Qwen2Tokenizer, Qwen2VLImageProcessorPil

    image_processor = Qwen2VLImageProcessorPil.from_pretrained(path, subfolder=subfolder, cache_dir=cache_dir)
    try:
        tokenizer = Qwen2Tokenizer.from_pretrained(path, subfolder=subfolder, cache_dir=cache_dir)
    except (OSError, ValueError, TypeError) as exc:
        log.info("no tokenizer in %s/%s (%s); using %s/tokenizer", path, subfolder, exc, path)
        tokenizer = Qwen2Tokenizer.from_pretrained(path, subfolder="tokenizer", cache_dir=cache_dir)
    return image_only_processor_class()(image_processor=image_processor, tokenizer=tokenizer)


# ----------------------------------------------------------------------------- working area


class AreaHook:
    """The `max_area` patch of one Qwen-Image edit pipeline: the module-level `calculate_dimensions` of
    `module_name`, which `pipeline_class.__call__` sizes its images with (see the module doc). Shared
    with `qwen_image_edit_plus.py`; each pipeline module has its own hook and lock."""

    def __init__(self, module_name: str, pipeline_class: str, uncapped: str,
                 error: type[Exception] = ValueError) -> None:
        self.module_name = module_name
        self.pipeline_class = pipeline_class
        self.uncapped = uncapped  # what `max_area: null` gives, for the error message
        self.error = error  # raised by working_size for an empty image
        self.lock = threading.Lock()

    def module(self):
        return importlib.import_module(self.module_name)

    def check(self) -> None:
        """Raise ModelError if the installed diffusers no longer sizes inputs via `calculate_dimensions`."""
        module = self.module()
        call = inspect.unwrap(getattr(module, self.pipeline_class).__call__)
        uses_hook = "calculate_dimensions" in getattr(getattr(call, "__code__", None), "co_names", ())
        if not callable(getattr(module, "calculate_dimensions", None)) or not uses_hook:
            raise ModelError(
                f"max_area cannot be applied with this diffusers version: {self.pipeline_class} no longer sizes "
                f"its inputs with calculate_dimensions(); set max_area: null ({self.uncapped})"
            )

    def working_size(self, image_size: tuple[int, int], max_area: int | None) -> tuple[int, int]:
        """(width, height) the pipeline will work and output at for an input of `image_size` = (w, h).

        The same arithmetic as the pipeline's `__call__`: `calculate_dimensions(area, w / h)` (sides
        rounded to multiples of 32, so the result's area is only approximately `area`), floored to 16.
        """
        width_in, height_in = image_size
        if width_in < 1 or height_in < 1:
            raise self.error(f"empty input image ({width_in}x{height_in})")
        cap = effective_cap(max_area)
        with self.lock:  # read the unpatched function
            width, height = self.module().calculate_dimensions(DEFAULT_AREA if cap is None else cap,
                                                               width_in / height_in)[:2]
        if cap is not None:
            width, height = max(int(width), MIN_SIDE), max(int(height), MIN_SIDE)
        return int(width) // MULTIPLE * MULTIPLE, int(height) // MULTIPLE * MULTIPLE

    @contextmanager
    def capped(self, max_area: int | None):
        """Within the block, the pipeline sizes its images to at most `max_area` pixels (see module doc).

        Yields a list that receives one entry (the target area) per use of the hook, so the caller can
        verify it was used; None when nothing is patched.
        """
        cap = effective_cap(max_area)
        if cap is None:
            yield None
            return
        module = self.module()
        with self.lock:
            original = module.calculate_dimensions
            uses: list[float] = []

            def calculate_dimensions(target_area, ratio):
                uses.append(target_area)
                width, height, *rest = original(min(target_area, cap), ratio)
                return (max(width, MIN_SIDE), max(height, MIN_SIDE), *rest)

            module.calculate_dimensions = calculate_dimensions
            try:
                yield uses
            finally:
                module.calculate_dimensions = original

    @contextmanager
    def applied(self, max_area: int | None):
        """`capped`, and a ModelError after the block if the pipeline did not call the hook."""
        with self.capped(max_area) as uses:
            yield
        if uses is not None and not uses:
            raise ModelError("max_area was not applied: diffusers did not call calculate_dimensions")


def effective_cap(max_area: int | None) -> int | None:
    """The capped target area, or None when the pipeline's own area applies (no patching)."""
    return None if max_area is None or max_area >= DEFAULT_AREA else max_area


def check_max_area(max_area: Any) -> int | None:
    """The `max_area` init_arg, validated: null or an integer area of at least MIN_SIDE x MIN_SIDE pixels."""
    if max_area is not None and (isinstance(max_area, bool) or not isinstance(max_area, int)
                                 or max_area < MIN_SIDE * MIN_SIDE):
        raise ModelError(f"max_area must be null or an integer >= {MIN_SIDE * MIN_SIDE} (pixels), got {max_area!r}")
    return max_area


AREA_HOOK = AreaHook(PIPELINE_MODULE, "QwenImageEditPipeline", "the pipeline's own 1024*1024 area")
check_area_hook = AREA_HOOK.check
working_size = AREA_HOOK.working_size
capped_area = AREA_HOOK.capped


# ----------------------------------------------------------------------------- model


class QwenImageEditModel(BaseEditModel):
    """Qwen-Image-Edit (single input image) via diffusers. See the module docstring for details."""

    def __init__(
        self,
        model_name: str = "Qwen/Qwen-Image-Edit",
        device: str = "auto",
        dtype: str = "bfloat16",
        batch_size: int = 1,
        num_inference_steps: int = 50,
        true_cfg_scale: float = 4.0,
        negative_prompt: str | None = " ",
        max_area: int | None = None,
        cache_dir: str | None = None,
        guidance_scale: float | None = None,
        offload: str = "none",
        device_map: str | None = None,
        max_memory: dict | None = None,
        quantization: dict | None = None,
    ) -> None:
        super().__init__(model_name=model_name, device=device, dtype=dtype, batch_size=batch_size,
                         cache_dir=cache_dir)
        self.placement = check_placement(offload, device_map, max_memory, quantization, device)
        self.num_inference_steps = check_positive_int("num_inference_steps", num_inference_steps)
        self.true_cfg_scale = check_number("true_cfg_scale", true_cfg_scale)
        self.negative_prompt = check_optional_str("negative_prompt", negative_prompt)
        self.max_area = check_max_area(max_area)
        self.guidance_scale = check_number("guidance_scale", guidance_scale, optional=True)
        self.pipe = None

    # -- configuration
    @property
    def cfg_active(self) -> bool:
        """True classifier-free guidance runs only with a scale > 1 *and* a negative prompt."""
        return true_cfg_active(self.true_cfg_scale, self.negative_prompt)

    def check(self) -> None:
        super().check()
        check_on_device(self.placement, self.device_spec)
        try:
            AREA_HOOK.module().QwenImageEditPipeline  # noqa: B018 - presence check
            from transformers import Qwen2VLImageProcessorPil  # noqa: F401
        except (ImportError, AttributeError) as exc:
            raise ModelError(f"Qwen-Image-Edit needs diffusers with QwenImageEditPipeline and a transformers "
                             f"with Qwen2VLImageProcessorPil: {exc}") from exc
        if effective_cap(self.max_area) is not None:
            check_area_hook()

    # -- life cycle
    def _load(self) -> None:
        from diffusers import QwenImageEditPipeline

        if effective_cap(self.max_area) is not None:
            check_area_hook()
        torch_dtype = parse_dtype(self.dtype_name)
        path = self.resolved_model_path()
        what = f"Qwen-Image-Edit checkpoint {self.model_name!r}"
        try:
            processor = load_image_only_processor(path, cache_dir=self.cache_dir)
        except (OSError, ValueError) as exc:
            raise ModelError(f"could not load {what} ({path}): {exc}") from exc
        self.pipe = load_pipeline(QwenImageEditPipeline, path, self.device, self.placement, what,
                                  prepare=apply_rope_fix, processor=processor, cache_dir=self.cache_dir,
                                  **{dtype_kwarg(): torch_dtype})

    def _release(self) -> None:
        self.pipe = None

    def _to(self, device: str) -> None:
        if self.pipe is not None:
            move(self.pipe, self.placement, device, type(self).__name__)

    def torch_modules(self) -> list:
        """The pipeline's nn.Module components, moved by PinnedOffload in unload_from_gpu / load_to_gpu;
        none when accelerate places them (offload, device_map: balanced, quantization: placement.py)."""
        if self.pipe is None or not self.placement.movable:
            return []
        modules = (getattr(self.pipe, name, None) for name in ("transformer", "vae", "text_encoder"))
        return [m for m in modules if m is not None]

    # -- editing
    def edit(self, requests: list[EditRequest]) -> list[EditResult]:
        if not requests:
            return []
        if not self.loaded or self.pipe is None:
            raise ModelError("QwenImageEditModel.edit() before load() (or after release())")
        results: list[EditResult | None] = [None] * len(requests)

        # Group by working size (a call sizes all its images from the first), keep request order inside.
        groups: dict[tuple[int, int], list[int]] = {}
        for i, req in enumerate(requests):
            if req.extra_images:
                results[i] = EditResult(image=None, error=(
                    f"Qwen-Image-Edit takes exactly one input image; got {1 + len(req.extra_images)} "
                    "(extra_images is not supported by QwenImageEditPipeline)"))
                continue
            try:
                size = working_size(req.image.size, self.max_area)
            except Exception as exc:  # noqa: BLE001 - e.g. an empty image: fail this request only
                results[i] = EditResult(image=None, error=f"{type(exc).__name__}: {exc}")
                continue
            groups.setdefault(size, []).append(i)

        for size, indices in groups.items():
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start:start + self.batch_size]
                for i, result in zip(chunk, self._edit_chunk([requests[i] for i in chunk], size)):
                    results[i] = result
        return results  # type: ignore[return-value]

    def _edit_chunk(self, chunk: list[EditRequest], size: tuple[int, int]) -> list[EditResult]:
        try:
            images = self._run(chunk, size)
            return [self._result(req, img, size, len(chunk)) for req, img in zip(chunk, images)]
        except Exception as exc:  # noqa: BLE001 - a failing request must not kill the run
            if is_oom(exc):
                raise  # the pipeline's AdaptiveBatcher frees memory, halves the batch and retries
            if len(chunk) == 1:
                log.warning("edit failed for %s: %s", chunk[0].pair_id, exc)
                free_memory()
                return [EditResult(image=None, error=f"{type(exc).__name__}: {exc}",
                                   info=self._info(chunk[0], size, 1))]
            log.warning("batched edit of %d requests failed (%s: %s); retrying one by one",
                        len(chunk), type(exc).__name__, exc)
            free_memory()
        return [self._edit_chunk([req], size)[0] for req in chunk]

    def _run(self, chunk: list[EditRequest], size: tuple[int, int]) -> list:
        import torch

        if self.pipe is None:
            raise ModelError("the model was released; load() it again")
        width, height = size
        images = [req.image.convert("RGB") for req in chunk]
        kwargs: dict[str, Any] = dict(
            # One request: the model card's call (a single image, which the pipeline resizes for the text
            # encoder too). Several: each pre-resized as a single image would be (qwen_fixes module doc).
            image=images if len(chunk) == 1 else resize_for_text_encoder(self.pipe, images, width, height),
            prompt=[req.instruction for req in chunk],
            **true_cfg_call_kwargs(self.true_cfg_scale, self.negative_prompt, len(chunk)),
            height=height,
            width=width,
            num_inference_steps=self.num_inference_steps,
            generator=[torch.Generator(device="cpu").manual_seed(int(req.seed)) for req in chunk],
            output_type="pil",
        )
        if self.guidance_scale is not None:
            kwargs["guidance_scale"] = self.guidance_scale
        if len(chunk) == 1:
            kwargs = single_request_call(kwargs)  # the model card's call: one image, prompt, generator
        with AREA_HOOK.applied(self.max_area), torch.inference_mode():
            images = self.pipe(**kwargs).images
        if len(images) != len(chunk):
            raise RuntimeError(f"pipeline returned {len(images)} images for {len(chunk)} requests")
        return [img.convert("RGB") for img in images]

    def _info(self, req: EditRequest, size: tuple[int, int], batch: int) -> dict[str, Any]:
        return {
            "width": size[0],
            "height": size[1],
            "input_width": req.image.size[0],
            "input_height": req.image.size[1],
            "num_inference_steps": self.num_inference_steps,
            **true_cfg_info(self.true_cfg_scale, self.negative_prompt),
            "guidance_scale": self.guidance_scale,
            "max_area": self.max_area,
            "seed": req.seed,
            "batch": batch,
            "dtype": str(self.dtype_name),
            "model": self.model_name,
            **self.placement.describe(),
        }

    def _result(self, req: EditRequest, image, size: tuple[int, int], batch: int) -> EditResult:
        info = self._info(req, size, batch)
        info["width"], info["height"] = image.size
        return EditResult(image=image, info=info)
