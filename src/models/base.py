"""Base classes for editors and judges, and the request/result records they exchange.

An editor turns a batch of `EditRequest`s into `EditResult`s; a judge turns a batch of `ScoreRequest`s
into `ScoreResult`s. Both are *controllers* (never serialized): the pipeline turns their results into
records. Both have the same life cycle:

    load()            read weights (host and device) once
    unload_from_gpu() move weights to host memory, keep them for a fast way back
    load_to_gpu()     the way back
    release()         free GPU *and* host memory; the object is not used again

Subclasses implement `_load`, `_release` and `edit` / `score`; the generic parts (device resolution,
dtype parsing, tiny checkpoints) live here so every model family resolves them the same way.
"""

from __future__ import annotations

import gc
import logging
import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

log = logging.getLogger(__name__)


class ModelError(Exception):
    """A model could not be set up as configured (clear message, no traceback for the user)."""


# ----------------------------------------------------------------------------- records exchanged


@dataclass
class EditRequest:
    pair_id: str
    category: str
    image: Image.Image  # RGB original, EXIF orientation applied
    instruction: str
    seed: int  # derived by the pipeline from the run seed + category + pair id
    description: str | None = None
    extra_images: list[Image.Image] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class EditResult:
    image: Image.Image | None  # None when the edit failed
    error: str | None = None
    info: dict[str, Any] = field(default_factory=dict)  # what the model actually used (size, steps ...)


@dataclass
class JudgePrompt:
    system: str
    user: str
    template: str  # template name, e.g. "physics"
    template_hash: str  # sha256 of the template source text
    retry: str | None = None  # corrective instruction after an unparseable reply (None: the judge's default)


class _DecodedOnUse:
    """A ScoreRequest image field that takes a PIL image or a zero-argument loader returning one; a loader
    runs on the first read of the attribute and its image is kept. The pipeline passes loaders, so a judge
    that never looks at pixels (a constant or text-only judge) costs no PNG decode, and a judge that does
    decodes each image once. Reads always return a PIL image."""

    def __set_name__(self, owner, name: str) -> None:
        self.slot = "_" + name

    def __get__(self, obj, objtype=None):
        if obj is None:  # class access: the dataclass field has no default
            raise AttributeError(self.slot[1:])
        value = obj.__dict__[self.slot]
        if not isinstance(value, Image.Image):
            value = value()
            if not isinstance(value, Image.Image):
                raise TypeError(f"{self.slot[1:]}: the loader returned {type(value).__name__}, not a PIL image")
            obj.__dict__[self.slot] = value
        return value

    def __set__(self, obj, value) -> None:
        if not (isinstance(value, Image.Image) or callable(value)):
            raise TypeError(f"{self.slot[1:]} must be a PIL image or a loader, not {type(value).__name__}")
        obj.__dict__[self.slot] = value

    @staticmethod
    def decoded(obj, name: str) -> bool:
        return isinstance(obj.__dict__.get("_" + name), Image.Image)


@dataclass
class ScoreRequest:
    pair_id: str
    category: str
    original: Image.Image = _DecodedOnUse()  # a PIL image, or a loader decoded on first use
    edited: Image.Image = _DecodedOnUse()
    instruction: str
    description: str | None
    prompt: JudgePrompt
    image_roles: tuple[str, ...] = ("original", "edited")  # which images the judge sees, in order
    named_images: dict[str, Image.Image] = field(default_factory=dict)  # the pair's extra images by role
    metadata: dict[str, Any] = field(default_factory=dict)  # the pair's other fields (KRIS explain_en ...)
    prompts: dict[str, JudgePrompt] = field(default_factory=dict)  # per protocol query, rendered by the pipeline

    def decoded(self, name: str) -> bool:
        """Whether the image field `name` ("original" / "edited") has been decoded (or was given decoded)."""
        return _DecodedOnUse.decoded(self, name)

    def images(self) -> list[Image.Image]:
        return [self.original if role == "original" else self.edited if role == "edited"
                else self.named_images[role] for role in self.image_roles]


@dataclass
class ScoreResult:
    status: str  # "scored" | "score_failed"
    score: float | None  # None unless status == "scored"; never invented
    raw_reply: str | None = None  # the judge's last reply text (generate mode)
    reasoning: str | None = None
    error: str | None = None
    attempts: int = 1
    details: dict[str, Any] = field(default_factory=dict)  # e.g. the score distribution (logits mode)

    def __post_init__(self) -> None:
        if self.status == "scored" and self.score is None:
            raise ValueError("a scored result needs a score")
        if self.status != "scored" and self.score is not None:
            raise ValueError("only a scored result may carry a score")


# ----------------------------------------------------------------------------- helpers

_DTYPES = {"float32": "float32", "fp32": "float32", "float16": "float16", "fp16": "float16",
           "half": "float16", "bfloat16": "bfloat16", "bf16": "bfloat16"}


def check_dtype(name: str) -> str:
    """The canonical dtype name (`float32`, `float16`, `bfloat16`); checked without importing torch."""
    key = str(name).replace("torch.", "").lower()
    if key not in _DTYPES:
        raise ModelError(f"unknown dtype {name!r}; use one of float32, float16, bfloat16")
    return _DTYPES[key]


def parse_dtype(name: str):
    key = check_dtype(name)
    import torch

    return getattr(torch, key)


def resolve_device(device: str) -> str:
    """`auto` -> cuda when present, else cpu. `cuda` without a GPU is a clear error.
    Torch is imported only for `auto` and `cuda*` (a `cpu` run of torch-free models never imports it)."""
    device = str(device)
    if device != "auto" and not device.startswith("cuda"):
        return device
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(
            f"device {device!r} was requested but this machine has no CUDA GPU "
            "(torch.cuda.is_available() is False); use device: auto or device: cpu"
        )
    return device


def free_memory(device: str | None = None) -> None:
    """Collect garbage and, on CUDA, return cached blocks to the driver. A no-op beyond gc on CPU."""
    gc.collect()
    torch = sys.modules.get("torch")  # not imported = nothing of ours lives on a GPU
    if torch is None:
        return
    try:
        if torch.cuda.is_available():  # not exercised on the CPU-only CI
            torch.cuda.empty_cache()
    except Exception:  # pragma: no cover - torch import problems surface elsewhere
        pass


class _ModelBase(ABC):
    """Shared life cycle. Constructor arguments are the config's `init_args`; keep them cheap."""

    # Whether results may depend on torch's global RNG: `seed_everything` imports and seeds torch only when
    # a model of the run says so. Torch-free models (identity, precomputed, API judges) set False.
    uses_torch_rng: bool = True

    def __init__(self, model_name: str, device: str = "auto", dtype: str = "bfloat16",
                 batch_size: int = 1, cache_dir: str | None = None) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ModelError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.model_name = model_name
        self.device_spec = device
        self.dtype_name = dtype
        self.batch_size = batch_size
        self.cache_dir = cache_dir
        self.loaded = False
        self.on_gpu = False
        self.device: str | None = None
        self.last_move: dict | None = None  # the last unload_from_gpu / load_to_gpu: direction, seconds, bytes
        self._offloader = None  # a PinnedOffload over torch_modules(), made on the first move

    # -- resolution, cheap and done before anything heavy
    def check(self) -> None:
        """Validate what can be validated without loading weights (device, dtype, model path)."""
        resolve_device(self.device_spec)
        check_dtype(self.dtype_name)

    def resolved_model_path(self) -> str:
        """A hub id or local directory for `from_pretrained`; `tiny:<arch>` is built/cached first."""
        from src.models.tiny import resolve_model_path

        return resolve_model_path(self.model_name, self.cache_dir)

    # -- life cycle
    def load(self) -> None:
        if self.loaded:
            return
        self.device = resolve_device(self.device_spec)
        self._load()
        self.loaded = True
        self.on_gpu = self.device.startswith("cuda")

    def torch_modules(self) -> list:
        """The torch `nn.Module`s holding this model's weights (moved by `PinnedOffload`); [] = none known."""
        return []

    def _pinned_offload(self, modules: list):
        from src.residency import PinnedOffload

        if getattr(self, "_offloader", None) is None:
            self._offloader = PinnedOffload(modules)
        return self._offloader

    def unload_from_gpu(self) -> None:
        """To host memory. With `torch_modules()`, via reusable pinned buffers (src/residency.py; the CUDA
        path has not run on a GPU here). On CPU a no-op; `last_move` then holds the bytes that would move."""
        import time

        if not self.loaded:
            return
        modules = self.torch_modules()
        if self.on_gpu:
            t0 = time.perf_counter()
            if modules:
                seconds, nbytes = self._pinned_offload(modules).offload()
            else:
                self._to("cpu")
                seconds, nbytes = time.perf_counter() - t0, None
            self.on_gpu = False
            free_memory()
        elif str(self.device).startswith("cuda"):
            seconds, nbytes = 0.0, 0  # already in host memory
        else:
            from src.residency import module_bytes

            seconds, nbytes = 0.0, (module_bytes(modules) if modules else None)  # CPU: what would move
        self.last_move = {"direction": "offload", "seconds": seconds, "bytes": nbytes}

    def load_to_gpu(self) -> None:
        """Back to the device (one copy per tensor from the pinned buffers); on CPU a no-op, see above."""
        import time

        if not self.loaded:
            return
        modules = self.torch_modules()
        if not self.on_gpu and str(self.device).startswith("cuda"):
            t0 = time.perf_counter()
            if modules:
                seconds, nbytes = self._pinned_offload(modules).restore(self.device)
            else:
                self._to(self.device)
                seconds, nbytes = time.perf_counter() - t0, None
            self.on_gpu = True
        elif self.on_gpu:
            seconds, nbytes = 0.0, 0  # already on the device
        else:
            from src.residency import module_bytes

            seconds, nbytes = 0.0, (module_bytes(modules) if modules else None)  # CPU: what would move
        self.last_move = {"direction": "restore", "seconds": seconds, "bytes": nbytes}

    def release(self) -> None:
        """Free GPU and host memory; after this the model must be `load()`ed again."""
        if getattr(self, "_offloader", None) is not None:
            self._offloader.close()  # the pinned host buffers and the module references
            self._offloader = None
        if self.loaded:
            self._release()
        self.loaded = False
        self.on_gpu = False
        free_memory()

    @abstractmethod
    def _load(self) -> None: ...

    @abstractmethod
    def _release(self) -> None:
        """Drop every reference to weights (set attributes to None)."""

    def _to(self, device: str) -> None:  # pragma: no cover - GPU-only path
        raise NotImplementedError


class BaseEditModel(_ModelBase):
    """An image editor: `edit` a batch of pairs into images (one result per request, same order)."""

    @abstractmethod
    def edit(self, requests: list[EditRequest]) -> list[EditResult]: ...


class BaseRewardModel(_ModelBase):
    """A judge: `score` a batch of (original, edited, instruction, description, prompt)."""

    @abstractmethod
    def score(self, requests: list[ScoreRequest]) -> list[ScoreResult]: ...
