"""Where a diffusers editor's weights live: `offload`, `device_map`, `quantization` (shared by every editor).

init_args (validated in the constructor, i.e. at config time, with errors that name the option):

    offload: none | model | sequential
        none        the whole pipeline on `device` (default).
        model       `pipe.enable_model_cpu_offload(gpu_id=N)`: each component (text encoder, transformer,
                    VAE) moves to the GPU only while it runs; GPU memory ~ the largest component plus
                    activations, host RAM holds the rest. Slower by one host->GPU copy per component per
                    call.
        sequential  `pipe.enable_sequential_cpu_offload(gpu_id=N)`: weights stream to the GPU layer by
                    layer; the smallest GPU footprint and by far the slowest.
        Both need a CUDA `device` (they are accelerate hooks); on CPU they are a config error.
    device_map: null | balanced | cuda
        balanced    diffusers' pipeline-level strategy: whole components are spread over the visible GPUs
                    (`max_memory` optional: {gpu index or "cpu": "40GiB"}). The pipeline is then *not*
                    moved with `.to()` (diffusers forbids it), cannot be offloaded between stages
                    (`unload_from_gpu` raises a ModelError: use `pipeline.residency: release`) and cannot be
                    combined with `offload`.
        cuda        load every component straight onto the GPU (`device: cuda` / `cuda:0`).
        null        (default) `device: cuda` or `cuda:0` also loads straight to the GPU
                    (`from_pretrained(device_map="cuda")`) instead of reading the whole checkpoint into host
                    RAM first and then `pipe.to("cuda")` (54 GiB of host RAM for Qwen-Image-Edit in bf16).
                    `cuda:N` with N > 0 keeps the host detour: diffusers 0.42 accepts only the strings
                    "cuda", "cpu" and "balanced" as a device_map. On CPU nothing changes.
    quantization: null | {backend: ..., components: [...], ...backend options}
        Passed to diffusers' `PipelineQuantizationConfig(quant_backend=backend, quant_kwargs=options,
        components_to_quantize=components)`, which builds the diffusers or transformers quantization config
        of each listed component (e.g. `{backend: bitsandbytes_4bit, load_in_4bit: true,
        bnb_4bit_quant_type: nf4, bnb_4bit_compute_dtype: bfloat16, components: [transformer, text_encoder]}`).
        Validated at config time: the backend must be one diffusers knows, its package importable, the
        options accepted by its config class. Quantized components are placed at load time by diffusers;
        the pipeline is not moved with `.to()` afterwards.

NOT RUN ON A GPU: these paths are tested on CPU with spies (what is passed to `from_pretrained`, which
offload method is called with which GPU id, that `.to()` is not called) and meta-device pipelines.
Speed and memory on real cards are estimates (docs/gpu.md), not measurements.
"""

from __future__ import annotations

import difflib
import inspect
import logging
from dataclasses import dataclass, field
from typing import Any

from src.models.base import ModelError

log = logging.getLogger(__name__)

OFFLOAD_MODES = ("none", "model", "sequential")
DEVICE_MAPS = ("balanced", "cuda")


@dataclass
class Placement:
    offload: str = "none"
    device_map: str | None = None
    max_memory: dict | None = None
    quantization: dict | None = field(default=None)

    # -- what the plan and the records need to know
    def describe(self) -> dict[str, Any]:
        return {"offload": self.offload, "device_map": self.device_map,
                "quantization": (self.quantization or {}).get("backend")}

    @property
    def movable(self) -> bool:
        """Can `unload_from_gpu` / `load_to_gpu` move the pipeline between host and GPU?"""
        return self.device_map != "balanced" and self.quantization is None and self.offload == "none"


def _did_you_mean(value: str, options) -> str:
    close = difflib.get_close_matches(str(value), list(options), n=2, cutoff=0.5)
    return f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def check_placement(offload: Any = "none", device_map: Any = None, max_memory: Any = None,
                    quantization: Any = None, device: str = "auto") -> Placement:
    """The placement init_args, validated (no weights, no GPU needed). Raises ModelError."""
    if offload is None or offload is False:
        offload = "none"
    if not isinstance(offload, str) or offload not in OFFLOAD_MODES:
        raise ModelError(f"offload must be one of {', '.join(OFFLOAD_MODES)}, got {offload!r}"
                         f"{_did_you_mean(offload, OFFLOAD_MODES)}")
    if device_map is not None and (not isinstance(device_map, str) or device_map not in DEVICE_MAPS):
        raise ModelError(f"device_map must be null or one of {', '.join(DEVICE_MAPS)} (diffusers pipelines take "
                         f"whole-component strategies only), got {device_map!r}{_did_you_mean(device_map, DEVICE_MAPS)}")
    if device_map is not None and offload != "none":
        raise ModelError(f"device_map: {device_map} cannot be combined with offload: {offload} (diffusers refuses "
                         "CPU offload on a device-mapped pipeline); choose one")
    if max_memory is not None:
        if device_map != "balanced":
            raise ModelError("max_memory only applies with device_map: balanced")
        if not isinstance(max_memory, dict) or not all(
                (isinstance(k, int) and k >= 0) or k == "cpu" for k in max_memory):
            raise ModelError(f"max_memory must map GPU indices (0, 1, ...) or 'cpu' to sizes like '40GiB', "
                             f"got {max_memory!r}")
    dev = str(device)
    if (offload != "none" or device_map is not None) and dev == "cpu":
        what = f"offload: {offload}" if offload != "none" else f"device_map: {device_map}"
        raise ModelError(f"{what} needs a CUDA device; device is 'cpu' (use device: auto or cuda)")
    quant = check_quantization(quantization)
    return Placement(offload=offload, device_map=device_map, max_memory=dict(max_memory) if max_memory else None,
                     quantization=quant)


def check_on_device(placement: Placement, device_spec: str) -> None:
    """At `check()`: offload and device_map need the CUDA device `device_spec` resolves to on this machine."""
    from src.models.base import resolve_device

    device = resolve_device(device_spec)
    if not device.startswith("cuda") and (placement.offload != "none" or placement.device_map is not None):
        what = f"offload: {placement.offload}" if placement.offload != "none" else f"device_map: {placement.device_map}"
        raise ModelError(f"{what} needs a CUDA GPU, but device {device_spec!r} is {device!r} on this machine "
                         "(no GPU visible); drop it for a CPU run")


def quantization_backends() -> dict[str, type]:
    from diffusers.quantizers.auto import AUTO_QUANTIZATION_CONFIG_MAPPING

    return dict(AUTO_QUANTIZATION_CONFIG_MAPPING)


# The package each backend needs at load time (checked at config time, not after minutes of loading).
BACKEND_PACKAGES = {"bitsandbytes_4bit": "bitsandbytes", "bitsandbytes_8bit": "bitsandbytes", "gguf": "gguf",
                    "quanto": "optimum.quanto", "torchao": "torchao", "modelopt": "modelopt",
                    "auto-round": "auto_round", "sdnq": "sdnq", "nunchaku_lite": "nunchaku"}


def _installed(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def check_quantization(quantization: Any) -> dict | None:
    """`{backend, components, **options}` -> the same dict, checked against the installed diffusers."""
    if quantization is None:
        return None
    if not isinstance(quantization, dict) or not isinstance(quantization.get("backend"), str):
        raise ModelError("quantization must be null or a mapping with a 'backend' (e.g. bitsandbytes_4bit), "
                         f"'components' and the backend's options; got {quantization!r}")
    quant = dict(quantization)
    backend = quant.pop("backend")
    components = quant.pop("components", None)
    backends = quantization_backends()
    if backend not in backends:
        raise ModelError(f"unknown quantization backend {backend!r}; diffusers knows {', '.join(sorted(backends))}"
                         f"{_did_you_mean(backend, backends)}")
    if components is not None and (not isinstance(components, list) or not components
                                   or not all(isinstance(c, str) for c in components)):
        raise ModelError(f"quantization.components must be a list of pipeline component names "
                         f"(e.g. [transformer, text_encoder]), got {components!r}")
    package = BACKEND_PACKAGES.get(backend)
    if package is not None and not _installed(package):
        raise ModelError(f"quantization backend {backend!r} needs the {package.split('.')[0]!r} package, which is not "
                         f"installed (pip install {package.split('.')[-1] if package.startswith('optimum') else package})")
    config_cls = backends[backend]
    # Named options only: a backend's **kwargs would drop a misspelt option with a log line.
    params = [name for name, p in inspect.signature(config_cls.__init__).parameters.items()
              if name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    unknown = sorted(set(quant) - set(params))
    if unknown:
        raise ModelError(f"quantization: {config_cls.__name__} has no option {unknown[0]!r}"
                         f"{_did_you_mean(unknown[0], params)}")
    checked = {"backend": backend, "components": components, **quant}
    try:
        config_cls(**quant)  # the backend's own checks of its options
        pipeline_quantization_config(checked)  # diffusers' checks: options given, backend known to both libraries
    except Exception as exc:  # noqa: BLE001 - any refusal is a configuration problem
        raise ModelError(f"quantization backend {backend!r} rejects these options: {type(exc).__name__}: {exc}") from exc
    return checked


def pipeline_quantization_config(quant: dict):
    from diffusers import PipelineQuantizationConfig

    options = {k: v for k, v in quant.items() if k not in ("backend", "components")}
    return PipelineQuantizationConfig(quant_backend=quant["backend"], quant_kwargs=options,
                                      components_to_quantize=quant.get("components"))


def gpu_index(device: str) -> int:
    return int(device.split(":", 1)[1]) if ":" in device else 0


def load_kwargs(placement: Placement, device: str) -> dict[str, Any]:
    """Extra `from_pretrained` arguments for this placement on the resolved `device`."""
    kwargs: dict[str, Any] = {}
    if placement.quantization is not None:
        kwargs["quantization_config"] = pipeline_quantization_config(placement.quantization)
    if placement.device_map == "balanced":
        kwargs["device_map"] = "balanced"
        if placement.max_memory:
            kwargs["max_memory"] = dict(placement.max_memory)
    elif placement.offload == "none" and device in ("cuda", "cuda:0"):
        kwargs["device_map"] = "cuda"  # straight to the GPU, no host-RAM detour (module doc)
    return kwargs


def load_pipeline(cls: type, path: str, device: str, placement: Placement, what: str, prepare=None, **kwargs):
    """`cls.from_pretrained(path, **kwargs, **placement kwargs)`, `prepare(pipe)`, then `place` it; every
    failure is a ModelError naming the checkpoint (a failed `.to()` or offload is not a traceback)."""
    extra = load_kwargs(placement, device)
    try:
        pipe = cls.from_pretrained(path, **kwargs, **extra)
    except (OSError, ValueError, TypeError, NotImplementedError, ImportError) as exc:
        raise ModelError(f"could not load {what} ({path}): {exc}") from exc
    pipe.set_progress_bar_config(disable=True)
    if prepare is not None:
        prepare(pipe)
    try:
        place(pipe, placement, device, extra)
    except (RuntimeError, ValueError, NotImplementedError, ImportError) as exc:
        raise ModelError(f"could not place {what} on {device} ({placement.describe()}): "
                         f"{type(exc).__name__}: {exc}") from exc
    return pipe


def place(pipe, placement: Placement, device: str, loaded_with: dict[str, Any]) -> None:
    """After `from_pretrained(**loaded_with)`: put the pipeline where the placement says."""
    if placement.offload == "model":
        pipe.enable_model_cpu_offload(gpu_id=gpu_index(device))
    elif placement.offload == "sequential":
        pipe.enable_sequential_cpu_offload(gpu_id=gpu_index(device))
    elif "device_map" in loaded_with or placement.quantization is not None:
        pass  # already on its device(s); diffusers forbids .to() on a device-mapped pipeline
    else:
        pipe.to(device)


def move(pipe, placement: Placement, device: str, what: str) -> None:
    """`unload_from_gpu` / `load_to_gpu` of an editor with this placement (see module doc)."""
    if placement.offload != "none":
        return  # accelerate's hooks already keep the weights in host memory between calls
    if placement.device_map == "balanced" or placement.quantization is not None:
        why = "spread over GPUs (device_map: balanced)" if placement.device_map == "balanced" else "quantized"
        raise ModelError(f"{what} is {why} and cannot be moved between host and GPU between stages; use "
                         "pipeline.residency: release")
    pipe.to(device)
