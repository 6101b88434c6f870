"""Where the idle model waits: the residency policy, and pinned host buffers for fast GPU <-> host moves.

Policy (`pipeline.residency`, see docs/residency.md):

- `release`:  free a model (GPU and host) when its stage is over; load it again if it is needed again.
- `offload`:  keep the idle model in (pinned) host RAM and copy it back to the GPU when needed.
- `resident`: keep both models on the GPU.
- `auto`:     `choose_residency()` picks one: two_stage -> release; interleaved -> resident when the
              memory plan (src/memplan.py) estimates both fit together, else offload when the idle
              models' host copies fit in host RAM, else release (reload at every swap, slow) with a warning.

`PinnedOffload` moves a list of `nn.Module`s between the GPU and host RAM with one copy per tensor,
into page-locked (pinned) host buffers that are allocated on the first offload and REUSED on every
later one (nothing re-allocated, asynchronous copies possible). Parameters and buffers keep their
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
    """Host RAM the `offload` policy holds: BOTH models' weights (+ margin), since `PinnedOffload` keeps
    each model's pinned buffers for reuse (the plan's own `offload_host_bytes` counts only the larger one)."""
    models = plan.get("models") or {}
    sizes = [m.get("weight_bytes") for m in models.values()]
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


class PinnedOffload:
    """Moves `modules` between a device and reusable (pinned) host buffers. See the module docstring.

    offload()       -> (seconds, bytes): device -> host, into buffers allocated once, then reused.
    restore(device) -> (seconds, bytes): host -> device, one `.to(device, non_blocking=True)` per tensor,
                       then a synchronize.
    `bytes` is the size of the modules' parameters and buffers (what a move transfers); on CPU nothing is
    copied and the seconds are ~0. `pin=None` pins when CUDA is available.
    """

    def __init__(self, modules: list, pin: bool | None = None) -> None:
        self.modules = [m for m in modules if m is not None]
        self.pin = pin
        self.host: dict[tuple, Any] = {}  # key -> host buffer (pinned on CUDA machines)
        self.allocations = 0  # host buffers allocated so far (stays constant after the first offload)

    # -- the seams the tests replace (the CUDA path cannot run here)
    def _pinning(self) -> bool:
        if self.pin is None:
            import torch

            self.pin = bool(torch.cuda.is_available())
        return self.pin

    @staticmethod
    def _on_host(t) -> bool:
        return t.device.type == "cpu"

    def _alloc_host(self, t):
        import torch

        host = torch.empty_like(t, device="cpu")
        return host.pin_memory() if self._pinning() else host  # pin_memory() raises without CUDA

    @staticmethod
    def _to_device(t, device):
        return t.to(device, non_blocking=True)

    @staticmethod
    def _synchronize(device=None) -> None:
        import torch

        if torch.cuda.is_available():  # not run here (no GPU)
            torch.cuda.synchronize(device)

    # -- the moves
    def offload(self) -> tuple[float, int]:
        t0 = time.perf_counter()
        entries = _collect(self.modules)
        nbytes = sum(_tensor_bytes(t) for _, t in entries)
        moving = [(key, t) for key, t in entries if not self._on_host(t)]
        if not moving:  # CPU: already in host memory
            return time.perf_counter() - t0, nbytes
        # CUDA path below: NOT RUN ON A GPU here (tested with monkeypatched seams)
        pinned = self._pinning()
        for key, t in moving:
            host = self.host.get(key)
            if host is None or host.shape != t.shape or host.dtype != t.dtype:
                host = self._alloc_host(t)
                self.host[key] = host
                self.allocations += 1
            host.copy_(t.detach(), non_blocking=pinned)
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
        for _, t in entries:
            if self._on_host(t):
                t.data = self._to_device(t.data, device)  # the host buffer stays in self.host for reuse
        self._synchronize(device)
        return time.perf_counter() - t0, nbytes

    def host_bytes(self) -> int:
        """Host RAM held by the reusable buffers."""
        return sum(_tensor_bytes(h) for h in self.host.values())

    def close(self) -> None:
        """Drop the host buffers and the module references (on release)."""
        self.host.clear()
        self.modules = []


__all__ = ["POLICIES", "choose_residency", "offload_host_need", "PinnedOffload", "module_bytes"]
