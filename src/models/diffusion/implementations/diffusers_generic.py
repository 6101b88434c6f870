"""Any diffusers image-editing pipeline, named by class (`DiffusersEditModel`), and the shared engine.

`DiffusersEditModel` runs a pipeline named by `pipeline_class` (a class of the `diffusers` package, e.g.
"QwenImageEditPipeline") that takes `image` + `prompt`; `call_kwargs` are passed to every call as they
are. The family editors (`FluxKontextModel`, `InstructPix2PixModel`, `QwenImageEditPlusModel`) are
presets over it: they fix the pipeline class, expose the family's own arguments, and override the few
hooks that differ (how a request is sized, what goes into a call).

Loading
    `<Pipeline>.from_pretrained(path, dtype=..., cache_dir=..., **load_kwargs)` for a hub id, a local
    directory or a `tiny:<arch>` checkpoint alike; the weights are read in the configured dtype. A
    checkpoint whose `model_index.json` lists a Qwen-VL processor gets the image-only processor of
    `qwen_image_edit.py` instead (the full one builds a video processor, which needs torchvision).
    `scheduler` (a diffusers scheduler class name) replaces the checkpoint's scheduler, built from its
    config, as model cards do with `pipe.scheduler = X.from_config(pipe.scheduler.config)`.

Editing (shared by all presets)
    Each request gets its own `torch.Generator("cpu").manual_seed(request.seed)`; a call passes one
    generator per request. Requests are grouped by a per-family key (the working size: pipelines size a
    whole call from its first image), then cut into chunks of `batch_size` (or 1 where the pipeline has no
    batching). A chunk that raises is retried one request at a time; a request that still fails, or that
    the family cannot take (e.g. extra images), gets `EditResult(image=None, error=...)`; the rest of the
    batch is unaffected. `EditResult.info` records the output size, input size, seed, batch size, dtype,
    model and pipeline plus the family's own settings.

The generic editor groups by exact input size and passes no size arguments, so the pipeline decides
the output size. It takes exactly one image per request (`extra_images` -> an error for that request).
"""

from __future__ import annotations

import difflib
import inspect
import logging
from collections.abc import Hashable
from contextlib import nullcontext
from typing import Any

from src.batching import is_oom
from src.models.base import BaseEditModel, EditRequest, EditResult, ModelError, free_memory, parse_dtype
from src.models.diffusion import qwen_fixes
from src.models.diffusion.placement import check_on_device, check_placement, load_pipeline, move

log = logging.getLogger(__name__)

# Arguments the editor itself passes to every call; `call_kwargs` may not set them.
RESERVED_CALL_KWARGS = frozenset({"image", "prompt", "generator", "output_type", "return_dict",
                                  "num_images_per_prompt", "latents"})
RESERVED_LOAD_KWARGS = frozenset({"dtype", "torch_dtype", "cache_dir", "device_map", "max_memory",
                                  "quantization_config"})  # the last three: init_args device_map/... (placement.py)
# call_kwargs that are one text per prompt: a single string is repeated for every request of a batch.
PER_PROMPT_TEXT_KWARGS = ("negative_prompt", "prompt_2", "negative_prompt_2", "prompt_3", "negative_prompt_3")
QWEN_VL_PROCESSORS = ("Qwen2VLProcessor", "Qwen2_5_VLProcessor")
# Lists of one that a one-request call passes as the single value (see single_request_call).
SINGLE_REQUEST_KWARGS = frozenset({"image", "prompt", "generator", *PER_PROMPT_TEXT_KWARGS})


class RequestError(ValueError):
    """This request cannot be edited as configured; it fails alone with this message."""


# ----------------------------------------------------------------------------- small helpers


def suggest(name: str, options: list[str]) -> str:
    close = difflib.get_close_matches(str(name), options, n=3, cutoff=0.6)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def diffusers_class(name: str, suffix: str, what: str) -> type:
    """`diffusers.<name>`, which must end with `suffix`; unknown -> ModelError with did-you-mean."""
    import diffusers

    options = sorted(n for n in dir(diffusers) if n.endswith(suffix))
    if not isinstance(name, str) or name not in options:
        raise ModelError(f"unknown {what} {name!r}: diffusers {diffusers.__version__} has no class of that name"
                         f"{suggest(name, options)}")
    try:
        return getattr(diffusers, name)
    except (ImportError, AttributeError) as exc:  # a pipeline whose optional dependency is missing
        raise ModelError(f"diffusers.{name} cannot be imported here: {exc}") from exc


def check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ModelError(f"{name} must be a positive integer, got {value!r}")
    return value


def check_number(name: str, value: Any, optional: bool = False) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ModelError(f"{name} must be a number{' or null' if optional else ''}, got {value!r}")
    return float(value)


def check_optional_str(name: str, value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ModelError(f"{name} must be a string or null, got {value!r}")
    return value


def dtype_kwarg() -> str:
    """`dtype` where diffusers has renamed `torch_dtype` (0.42 warns on `torch_dtype`), else `torch_dtype`.

    Detected positively: an older diffusers would silently ignore an unknown `dtype` and load float32.
    """
    try:
        from diffusers.utils import deprecation_utils

        return "dtype" if hasattr(deprecation_utils, "_resolve_dtype") else "torch_dtype"
    except ImportError:
        return "torch_dtype"


def rgb(image) -> Any:
    return image if image.mode == "RGB" else image.convert("RGB")


# True classifier-free guidance (`true_cfg_scale` + `negative_prompt`: a second transformer pass) of the
# Qwen-Image and FLUX Kontext pipelines.


def true_cfg_active(true_cfg_scale: float, negative_prompt: str | None) -> bool:
    """True CFG runs only with a scale > 1 *and* a negative prompt."""
    return true_cfg_scale > 1 and negative_prompt is not None


def true_cfg_call_kwargs(true_cfg_scale: float, negative_prompt: str | None, n: int) -> dict[str, Any]:
    """The pipeline arguments of true CFG for a call of `n` prompts."""
    cfg = true_cfg_active(true_cfg_scale, negative_prompt)
    return {
        "negative_prompt": [negative_prompt] * n if cfg else None,
        # diffusers warns when a scale > 1 comes without a negative prompt; CFG is off then anyway
        "true_cfg_scale": true_cfg_scale if cfg else 1.0,
    }


def true_cfg_info(true_cfg_scale: float, negative_prompt: str | None) -> dict[str, Any]:
    """The `EditResult.info` entries of true CFG."""
    cfg = true_cfg_active(true_cfg_scale, negative_prompt)
    return {"true_cfg_scale": true_cfg_scale, "cfg_active": cfg, "negative_prompt": negative_prompt if cfg else None}


def single_request_call(kwargs: dict[str, Any]) -> dict[str, Any]:
    """A call for one request as model cards write it: one image, one prompt, one generator (not lists of
    one). Identical results in diffusers 0.42 except where a pipeline treats a list differently
    (`QwenImageEditPipeline` skips the text encoder's resize for a list, see qwen_fixes.py)."""
    return {name: value[0] if name in SINGLE_REQUEST_KWARGS and isinstance(value, list) and len(value) == 1
            else value for name, value in kwargs.items()}


# ----------------------------------------------------------------------------- the editor


class DiffusersEditModel(BaseEditModel):
    """A diffusers pipeline named by `pipeline_class` that takes `image` + `prompt` (see module doc)."""

    def __init__(
        self,
        pipeline_class: str,
        model_name: str,
        device: str = "auto",
        dtype: str = "bfloat16",
        batch_size: int = 1,
        cache_dir: str | None = None,
        call_kwargs: dict | None = None,
        load_kwargs: dict | None = None,
        scheduler: str | None = None,
        offload: str = "none",
        device_map: str | None = None,
        max_memory: dict | None = None,
        quantization: dict | None = None,
    ) -> None:
        super().__init__(model_name=model_name, device=device, dtype=dtype, batch_size=batch_size,
                         cache_dir=cache_dir)
        self.placement = check_placement(offload, device_map, max_memory, quantization, device)
        if not isinstance(pipeline_class, str) or not pipeline_class:
            raise ModelError(f"pipeline_class must be a diffusers class name, got {pipeline_class!r}")
        self.pipeline_class = pipeline_class
        self.call_kwargs = self._checked_kwargs("call_kwargs", call_kwargs, RESERVED_CALL_KWARGS)
        self.load_kwargs = self._checked_kwargs("load_kwargs", load_kwargs, RESERVED_LOAD_KWARGS)
        self.scheduler = check_optional_str("scheduler", scheduler)
        self.pipe = None

    @staticmethod
    def _checked_kwargs(name: str, value: Any, reserved: frozenset) -> dict:
        if value is None:
            return {}
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise ModelError(f"{name} must be a mapping of argument names to values, got {value!r}")
        taken = sorted(set(value) & reserved)
        if taken:
            raise ModelError(f"{name} may not set {taken}: the editor passes these itself (placement: use the "
                             "init_args device_map, max_memory, quantization, offload)")
        return dict(value)

    # -- resolution (cheap: no weights)
    def _pipeline_cls(self) -> type:
        return diffusers_class(self.pipeline_class, "Pipeline", "pipeline_class")

    def _check_call_signature(self, cls: type) -> None:
        params = inspect.signature(cls.__call__).parameters
        missing = [p for p in ("image", "prompt") if p not in params]
        if missing:
            raise ModelError(f"{cls.__name__} does not take {' and '.join(missing)}; an editor pipeline takes "
                             "an input image and a prompt")
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            for key in self.call_kwargs:
                if key not in params:
                    raise ModelError(f"call_kwargs: {cls.__name__}.__call__ has no argument {key!r}"
                                     f"{suggest(key, sorted(params))}")

    def check(self) -> None:
        super().check()
        check_on_device(self.placement, self.device_spec)
        self._check_call_signature(self._pipeline_cls())
        if self.scheduler is not None:
            diffusers_class(self.scheduler, "Scheduler", "scheduler")

    # -- life cycle
    def _component_overrides(self, cls: type, path: str) -> dict[str, Any]:
        """Components passed to from_pretrained instead of the checkpoint's (the Qwen-VL processor)."""
        if "processor" in self.load_kwargs:
            return {}
        try:
            index = cls.load_config(path, cache_dir=self.cache_dir)
        except Exception as exc:  # noqa: BLE001 - from_pretrained reports an unreadable checkpoint better
            log.debug("could not read model_index.json of %s: %s", path, exc)
            return {}
        entry = index.get("processor")
        if isinstance(entry, (list, tuple)) and entry and entry[-1] in QWEN_VL_PROCESSORS:
            from src.models.diffusion.implementations.qwen_image_edit import load_image_only_processor

            return {"processor": load_image_only_processor(path, cache_dir=self.cache_dir)}
        return {}

    def _load(self) -> None:
        cls = self._pipeline_cls()
        self._check_call_signature(cls)
        scheduler_cls = diffusers_class(self.scheduler, "Scheduler", "scheduler") if self.scheduler else None
        torch_dtype = parse_dtype(self.dtype_name)
        path = self.resolved_model_path()
        try:
            kwargs = {**self.load_kwargs, **self._component_overrides(cls, path)}
        except (OSError, ValueError, TypeError) as exc:
            raise ModelError(f"could not load {cls.__name__} checkpoint {self.model_name!r} ({path}): {exc}") from exc

        def prepare(pipe) -> None:
            if scheduler_cls is not None:
                pipe.scheduler = scheduler_cls.from_config(pipe.scheduler.config)
            qwen_fixes.apply_to_pipeline(pipe)  # 3D rope positions of a Qwen-VL text encoder (qwen_fixes.py)

        self.pipe = load_pipeline(cls, path, self.device, self.placement,
                                  f"{cls.__name__} checkpoint {self.model_name!r}", prepare=prepare,
                                  cache_dir=self.cache_dir, **{dtype_kwarg(): torch_dtype}, **kwargs)

    def _release(self) -> None:
        self.pipe = None

    def _to(self, device: str) -> None:
        if self.pipe is not None:
            move(self.pipe, self.placement, device, type(self).__name__)

    # -- hooks the family presets override
    def _max_batch(self) -> int:
        """Most requests one pipeline call takes."""
        return self.batch_size

    def _plan(self, req: EditRequest) -> Hashable:
        """The grouping key of a request (requests of one call share it); RequestError fails it alone."""
        if req.extra_images:
            raise RequestError(f"{self.pipeline_class} via DiffusersEditModel takes exactly one input image; got "
                               f"{1 + len(req.extra_images)} (extra_images is not supported)")
        return tuple(req.image.size)

    def _pipeline_kwargs(self, chunk: list[EditRequest], key: Hashable) -> dict[str, Any]:
        """Everything for one call except `generator` and `output_type`."""
        images = qwen_fixes.text_encoder_images(self.pipe, [rgb(r.image) for r in chunk])
        kwargs: dict[str, Any] = {"image": images, "prompt": [r.instruction for r in chunk]}
        for name, value in self.call_kwargs.items():
            kwargs[name] = [value] * len(chunk) if name in PER_PROMPT_TEXT_KWARGS and isinstance(value, str) else value
        return kwargs

    def _calling(self, key: Hashable):
        """A context entered around each pipeline call (e.g. a working-area patch)."""
        return nullcontext()

    def _family_info(self, req: EditRequest, key: Hashable) -> dict[str, Any]:
        return {"call_kwargs": dict(self.call_kwargs), "scheduler": self.scheduler}

    # -- editing
    def edit(self, requests: list[EditRequest]) -> list[EditResult]:
        if not requests:
            return []
        if not self.loaded or self.pipe is None:
            raise ModelError(f"{type(self).__name__}.edit() before load() (or after release())")
        results: list[EditResult | None] = [None] * len(requests)
        groups: dict[Hashable, list[int]] = {}
        for i, req in enumerate(requests):
            try:
                key = self._plan(req)
            except RequestError as exc:
                results[i] = EditResult(image=None, error=str(exc), info=self._base_info(req, None, 0))
                continue
            except Exception as exc:  # noqa: BLE001 - e.g. an empty image: fail this request only
                results[i] = EditResult(image=None, error=f"{type(exc).__name__}: {exc}")
                continue
            groups.setdefault(key, []).append(i)

        step = max(1, self._max_batch())
        for key, indices in groups.items():
            for start in range(0, len(indices), step):
                chunk = indices[start:start + step]
                for i, result in zip(chunk, self._edit_chunk([requests[i] for i in chunk], key)):
                    results[i] = result
        return results  # type: ignore[return-value]

    def _edit_chunk(self, chunk: list[EditRequest], key: Hashable) -> list[EditResult]:
        try:
            images, flags = self._run(chunk, key)
        except Exception as exc:  # noqa: BLE001 - a failing request must not kill the run
            if is_oom(exc):
                raise  # the pipeline's AdaptiveBatcher frees memory, halves the batch and retries
            if len(chunk) == 1:
                log.warning("edit failed for %s: %s: %s", chunk[0].pair_id, type(exc).__name__, exc)
                free_memory()
                return [EditResult(image=None, error=f"{type(exc).__name__}: {exc}",
                                   info=self._base_info(chunk[0], key, 1))]
            log.warning("batched edit of %d requests failed (%s: %s); retrying one by one",
                        len(chunk), type(exc).__name__, exc)
            free_memory()
            return [self._edit_chunk([req], key)[0] for req in chunk]
        results = []
        for req, image, flag in zip(chunk, images, flags):
            info = self._base_info(req, key, len(chunk))
            info["width"], info["height"] = image.size
            if flag:
                info["nsfw_content_detected"] = True
            results.append(EditResult(image=image, info=info))
        return results

    def _run(self, chunk: list[EditRequest], key: Hashable) -> tuple[list, list[bool]]:
        import torch

        if self.pipe is None:
            raise ModelError("the model was released; load() it again")
        kwargs = self._pipeline_kwargs(chunk, key)
        kwargs["generator"] = [torch.Generator(device="cpu").manual_seed(int(req.seed)) for req in chunk]
        kwargs["output_type"] = "pil"
        if len(chunk) == 1:
            kwargs = single_request_call(kwargs)
        with self._calling(key), torch.inference_mode():
            output = self.pipe(**kwargs)
        images = list(output.images)
        if len(images) != len(chunk):
            raise RuntimeError(f"pipeline returned {len(images)} images for {len(chunk)} requests")
        flags = getattr(output, "nsfw_content_detected", None)
        flags = [bool(f) for f in flags] if isinstance(flags, (list, tuple)) and len(flags) == len(chunk) \
            else [False] * len(chunk)
        return [rgb(img) for img in images], flags

    def _base_info(self, req: EditRequest, key: Hashable | None, batch: int) -> dict[str, Any]:
        info: dict[str, Any] = {
            "input_width": req.image.size[0],
            "input_height": req.image.size[1],
            "seed": req.seed,
            "batch": batch,
            "dtype": str(self.dtype_name),
            "model": self.model_name,
            "pipeline": self.pipeline_class,
            **self.placement.describe(),
        }
        if key is not None:
            info.update(self._family_info(req, key))
        return info
