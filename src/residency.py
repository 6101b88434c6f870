"""Where the idle model waits: the residency policy, and pinned host buffers for fast GPU <-> host moves.

Policy (`pipeline.residency`, see docs/residency.md):

- `release`:  free a model (GPU and host) when its stage is over; load it again if it is needed again.
- `offload`:  keep the idle model in (pinned) host RAM and copy it back to the GPU when needed.
- `resident`: keep both models on the GPU.
- `auto`:     `choose_residency()` picks one: two_stage -> release; interleaved -> resident when the
              memory plan (src/memplan.py) estimates both fit together, else offload when the idle
              models' host copies fit in host RAM, else release (reload at every swap, slow) with a warning.

`PinnedOffload` moves a list of `nn.Module`s between the GPU and host RAM with one copy per tensor,
into ONE page-locked host arena sized exactly (each copy aligned to 512 bytes; `pinned_arena_bytes`),
allocated and registered (cudaHostRegister) on the first offload and REUSED on every later one (nothing
re-allocated, asynchronous copies possible). Not `tensor.pin_memory()`: torch's caching host allocator
rounds each block up to a power of two (a 53.7 GiB editor would hold ~89.6 GiB pinned). Each tensor goes
back to the device it came from (models spread by a device_map), and `close()` (on release) unregisters
the arena and empties torch's pinned host cache. Parameters and buffers keep their
identity: only `tensor.data` is re-pointed, so the optimizer-free inference modules (and any references
the pipeline holds to them) stay valid.

NOT RUN ON A GPU: this machine has no CUDA device. On CPU, `offload()` / `restore("cpu")` are no-ops
that return the bytes that would move; the CUDA branch (pinning, device copies, synchronize) is tested
with monkeypatched stand-ins only (tests/test_residency.py).

Torch is imported lazily (inside functions), never at module import.
"""

from __future__ import annotations

import time
from typing import Any

POLICIES = ("auto", "release", "offload", "resident")
MODES = ("two_stage", "interleaved")


def _gib(n: int | float | None) -> str:
    if n is None:
        return "?"
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{int(n)} B"


# ----------------------------------------------------------------------------- policy


def offload_host_need(plan: dict) -> int | None:
    """Host RAM the `offload` policy holds: BOTH models' pinned arenas (`pinned_bytes`, else the weights; +
    margin), since each model's `PinnedOffload` keeps its arena for reuse."""
    models = plan.get("models") or {}
    sizes = [m.get("pinned_bytes") or m.get("weight_bytes") for m in models.values()]
    if not sizes or any(s is None for s in sizes):
        return None
    margin = (plan.get("assumptions") or {}).get("margin_fraction", 0.10)
    return int(sum(sizes) * (1 + margin))


def choose_residency(policy: str, mode: str, plan: dict | None) -> tuple[str, str]:
    """(chosen policy, reason). A reason starting with "WARNING:" should be logged as a warning.

    `plan` is `src.memplan.plan(...)`'s result (keys used: both_fit, together_peak_bytes, memory.gpus,
    memory.host_available_bytes, models.*.weight_bytes / fits_alone / free_bytes, assumptions), or None.
    """
    if policy not in POLICIES:
        raise ValueError(f"residency must be one of {', '.join(POLICIES)}, got {policy!r}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    both_fit = plan.get("both_fit") if plan else None
    together = plan.get("together_peak_bytes") if plan else None

    if policy != "auto":
        if policy == "resident" and both_fit is False:
            return "resident", (f"WARNING: residency resident as configured, but the memory plan estimates the two "
                                f"models do not fit together (~{_gib(together)} needed); expect out-of-memory "
                                "errors (batches shrink, weights cannot); offload or release would fit better")
        if policy == "offload" and plan is not None:
            need, host = offload_host_need(plan), (plan.get("memory") or {}).get("host_available_bytes")
            if need is not None and host is not None and need > host:
                return "offload", (f"WARNING: residency offload as configured, but the two models' pinned host copies "
                                   f"(~{_gib(need)}) exceed the host RAM available ({_gib(host)}); expect the "
                                   "offload to fail or the machine to swap; release would fit")
        if mode == "two_stage" and policy != "release":
            return policy, (f"configured ({policy}); two_stage uses each model once, so keeping the editor after "
                            "stage 1 only holds memory the judge could use")
        return policy, "configured"

    if mode == "two_stage":
        return "release", "auto: two_stage uses each model once; the editor is released before the judge loads"

    # interleaved: both models are needed again and again
    if plan is None:
        return "offload", ("WARNING: auto without a memory plan: offload (the idle model waits in host RAM), "
                           "not checked against free memory")
    warn = "".join(f"; WARNING: {role} is estimated not to fit on {m.get('target')} even alone"
                   for role, m in (plan.get("models") or {}).items() if m.get("fits_alone") is False)
    if both_fit:
        return "resident", f"auto: the memory plan estimates both models fit together (~{_gib(together)}){warn}"
    gpus = (plan.get("memory") or {}).get("gpus")
    host = (plan.get("memory") or {}).get("host_available_bytes")
    if not gpus:  # CPU run: "offloading" to host RAM is where the models already are
        why = "unknown" if both_fit is None else "estimated not to fit together"
        return "release", (f"WARNING: auto: no GPU and both models in host RAM are {why}: release and reload "
                           f"the models at every swap (slow); use mode two_stage{warn}")
    need = offload_host_need(plan)
    if need is not None and host is not None and need <= host:
        return "offload", (f"auto: both models do not fit together on the GPU; their pinned host copies "
                           f"(~{_gib(need)}) fit in host RAM ({_gib(host)} available){warn}")
    if need is None or host is None:
        return "offload", (f"WARNING: auto: both models do not fit together (or unknown) and the host RAM need is "
                           f"unknown (models ~{_gib(need)}, host {_gib(host)} available): offload, unchecked{warn}")
    return "release", (f"WARNING: auto: both models do not fit together on the GPU, and their host copies "
                       f"(~{_gib(need)}) do not fit in host RAM ({_gib(host)} available): release and reload the "
                       f"models at every swap (slow); use mode two_stage{warn}")


# ----------------------------------------------------------------------------- pinned offload


def _tensor_bytes(t) -> int:
    return int(t.numel()) * int(t.element_size())


def module_bytes(modules: list) -> int:
    """Bytes of the (deduplicated) parameters and buffers of `modules`."""
    return sum(_tensor_bytes(t) for _, t in _collect(modules))


def _collect(modules: list) -> list[tuple[tuple, Any]]:
    """[(stable key, tensor)] over parameters and buffers of every module; shared tensors once."""
    seen: set[int] = set()
    out = []
    for mi, module in enumerate(m for m in modules if m is not None):
        for kind, named in (("p", module.named_parameters()), ("b", module.named_buffers())):
            for name, t in named:
                if t is None or id(t) in seen or t.device.type == "meta":
                    continue
                seen.add(id(t))
                out.append(((mi, kind, name), t))
    return out


PIN_ALIGN = 512  # bytes: every host copy starts at a multiple of this inside the arena (any dtype's alignment)


def pinned_arena_bytes(tensor_bytes) -> int:
    """Host bytes `PinnedOffload` pins for tensors of these sizes: one arena, each copy aligned to PIN_ALIGN.
    Exact, unlike `tensor.pin_memory()`, whose caching host allocator rounds every block up to a power of
    two (CachingHostAllocator.h, `PowerOf2Ceil`): a 53.7 GiB editor would pin ~89.6 GiB that way."""
    end = 0
    for n in tensor_bytes:
        end = -(-end // PIN_ALIGN) * PIN_ALIGN + int(n)
    return end


def caching_allocator_pinned_bytes(tensor_bytes) -> int:
    """What per-tensor `pin_memory()` would hold: each block rounded up to the next power of two."""
    return sum(1 << (int(n) - 1).bit_length() if n > 1 else int(n) for n in tensor_bytes)


def empty_host_cache() -> None:
    """Return the caching host allocator's free pinned blocks to the OS (torch._C._host_emptyCache; torch
    has no public name for it in 2.13). A no-op without CUDA. NOT RUN ON A GPU here."""
    try:
        import torch

        if torch.cuda.is_available() and hasattr(torch._C, "_host_emptyCache"):
            torch._C._host_emptyCache()
    except Exception:  # noqa: BLE001 - best effort on release
        pass


class PinnedOffload:
    """Moves `modules` between their devices and one reusable pinned host arena. See the module docstring.

    offload()       -> (seconds, bytes): device -> host, into views of ONE host arena sized exactly
                       (`pinned_arena_bytes`), allocated and page-locked (cudaHostRegister) on the first
                       offload, then reused. Each tensor's device is remembered.
    restore(device) -> (seconds, bytes): host -> the device each tensor came from (a model spread by a
                       device_map returns to its GPUs; `device` is used only for a tensor never offloaded
                       by this object), one `.to(device, non_blocking=True)` per tensor, then a synchronize.
    close()         -> unregister and drop the arena, then empty torch's pinned host cache.
    `bytes` is the size of the modules' parameters and buffers (what a move transfers); on CPU nothing is
    copied and the seconds are ~0. `pin=None` pins when CUDA is available. If page-locking fails the
    arena stays pageable (copies are then synchronous) and `pinned` says so.
    """

    def __init__(self, modules: list, pin: bool | None = None) -> None:
        self.modules = [m for m in modules if m is not None]
        self.pin = pin
        self.host: dict[tuple, Any] = {}  # key -> view of the arena (the tensor's host copy)
        self.devices: dict[tuple, Any] = {}  # key -> the device the tensor was offloaded from
        self.arena = None  # one uint8 host tensor holding every host copy
        self.pinned = False  # the arena is page-locked (cudaHostRegister succeeded)
        self.allocations = 0  # arenas allocated so far (1 after the first offload, unless the layout changed)

    # -- the seams the tests replace (the CUDA path cannot run here)
    def _pinning(self) -> bool:
        if self.pin is None:
            import torch

            self.pin = bool(torch.cuda.is_available())
        return self.pin

    @staticmethod
    def _on_host(t) -> bool:
        return t.device.type == "cpu"

    @staticmethod
    def _alloc_arena(nbytes: int):
        import torch

        return torch.empty(max(int(nbytes), 1), dtype=torch.uint8)  # pageable until _register pins it

    @staticmethod
    def _register(arena) -> bool:  # pragma: no cover - GPU-only path
        """Page-lock the arena in place: cudaHostRegister(ptr, size, cudaHostRegisterDefault), exact size."""
        import torch

        cudart = torch.cuda.cudart()
        err = cudart.cudaHostRegister(arena.data_ptr(), arena.numel(), 0)
        return int(getattr(err, "value", err)) == 0

    @staticmethod
    def _unregister(arena) -> None:  # pragma: no cover - GPU-only path
        import torch

        torch.cuda.cudart().cudaHostUnregister(arena.data_ptr())

    @staticmethod
    def _to_device(t, device):
        return t.to(device, non_blocking=True)

    @staticmethod
    def _synchronize(device=None) -> None:
        import torch

        if torch.cuda.is_available():  # not run here (no GPU)
            torch.cuda.synchronize(device)

    # -- the arena
    def _layout_matches(self, moving) -> bool:
        return self.arena is not None and all(
            key in self.host and self.host[key].shape == t.shape and self.host[key].dtype == t.dtype
            for key, t in moving)

    def _build_arena(self, moving) -> None:
        self._free_arena()
        arena = self._alloc_arena(pinned_arena_bytes(_tensor_bytes(t) for _, t in moving))
        self.allocations += 1
        self.pinned = bool(self._pinning() and self._register(arena))
        if self._pinning() and not self.pinned:
            import logging

            logging.getLogger(__name__).warning("could not page-lock the %s host arena (cudaHostRegister failed): "
                                                "offload copies will be synchronous", _gib(arena.numel()))
        end = 0
        for key, t in moving:
            start = -(-end // PIN_ALIGN) * PIN_ALIGN
            end = start + _tensor_bytes(t)
            self.host[key] = arena[start:end].view(t.dtype).view(t.shape)
        self.arena = arena

    def _free_arena(self) -> None:
        if self.arena is not None and self.pinned:
            self._unregister(self.arena)
        self.arena, self.pinned = None, False
        self.host.clear()

    # -- the moves
    def offload(self) -> tuple[float, int]:
        t0 = time.perf_counter()
        entries = _collect(self.modules)
        nbytes = sum(_tensor_bytes(t) for _, t in entries)
        moving = [(key, t) for key, t in entries if not self._on_host(t)]
        if not moving:  # CPU: already in host memory
            return time.perf_counter() - t0, nbytes
        # CUDA path below: NOT RUN ON A GPU here (tested with monkeypatched seams)
        if not self._layout_matches(moving):
            self._build_arena(moving)
        for key, t in moving:
            self.devices[key] = t.device
            self.host[key].copy_(t.detach(), non_blocking=self.pinned)
        for device in {t.device for _, t in moving}:  # host copies complete before device memory goes
            self._synchronize(device)
        for key, t in moving:
            t.data = self.host[key]
        return time.perf_counter() - t0, nbytes

    def restore(self, device) -> tuple[float, int]:
        t0 = time.perf_counter()
        entries = _collect(self.modules)
        nbytes = sum(_tensor_bytes(t) for _, t in entries)
        if str(device).startswith("cpu"):
            return time.perf_counter() - t0, nbytes
        # CUDA path below: NOT RUN ON A GPU here (tested with monkeypatched seams)
        targets = set()
        for key, t in entries:
            if self._on_host(t):
                target = self.devices.get(key, device)
                t.data = self._to_device(t.data, target)  # the host copy stays in the arena for reuse
                targets.add(str(target))
        for target in sorted(targets) or [str(device)]:
            self._synchronize(target)
        return time.perf_counter() - t0, nbytes

    def host_bytes(self) -> int:
        """Host RAM held by the arena (what is pinned)."""
        return 0 if self.arena is None else int(self.arena.numel())

    def close(self) -> None:
        """Drop the arena (unregistered first) and the module references, and empty torch's pinned cache."""
        self._free_arena()
        self.devices.clear()
        self.modules = []
        empty_host_cache()


__all__ = ["POLICIES", "choose_residency", "offload_host_need", "PinnedOffload", "module_bytes", "PIN_ALIGN",
           "pinned_arena_bytes", "caching_allocator_pinned_bytes", "empty_host_cache"]
