"""Adaptive batching with out-of-memory backoff (replaces `call_batched` in src/pipeline.py).

The pipeline collects `batcher.size` items, then calls `batcher.call(fn, items)`, which returns one
result per item, in order: the model's result, or an Exception for an item that failed.

- Out of memory during a batch (`torch.OutOfMemoryError` == `torch.cuda.OutOfMemoryError`, a
  `MemoryError`, or a RuntimeError whose message says "out of memory" / "CUDA out of memory" /
  "DefaultCPUAllocator: can't allocate memory"): the exception's traceback is dropped (its frames hold
  the batch's tensors), `free_fn()` runs (gc + torch.cuda.empty_cache), the size is halved
  (from min(size, len(batch))) and the SAME items are run again in batches of the new size, recursively.
  Results are kept in order; an item is never lost, and never produces two results. An item that is out
  of memory alone (batch size 1) becomes an Exception result; the run goes on.
- Any other exception from a batch of more than one item: those items are run one by one, so one bad
  pair fails alone (the `call_batched` contract). `fn` must return exactly len(items) results; a
  different count is an error of the batch.
- A sticky CUDA error (src/device_errors.py: illegal memory access, device-side assert, ECC ...) is
  neither retried nor split: every item of the batch gets that error, and the pipeline stops the stage.
- Growth. `auto=True`: start at `initial` and double (up to `max_size`) after `grow_after` consecutive
  successful calls (default 2). `auto=False`: the size only shrinks on OOM; with `grow_after` set it
  grows back (doubling) toward the configured `initial` after that many consecutive successes, never
  beyond it; with `grow_after=None` (default) it stays shrunk for the rest of the run. In both modes a
  size that ran out of memory is never tried again: growth stops below the smallest size that hit OOM
  (OOM is assumed to be a property of the batch size; inputs of very different sizes can break this,
  and then the OOM path simply shrinks again).

`on_batch(n_items, seconds)` is called after each successful `fn` call (wire it to
`PerfRecorder.model_call`). `sizes_used` counts successful calls per batch size; `events` lists
{"kind": "oom" | "error" | "grow" | "sticky", "size_before", "size_after", "n_items", "error"}.

The OOM path is exercised on CPU with a fake model raising `torch.OutOfMemoryError`; a real CUDA OOM
has not been produced on this (GPU-less) machine.
"""

from __future__ import annotations

import gc
import logging
import sys
import time
from collections import Counter
from typing import Any, Callable

log = logging.getLogger("ieb")

OOM_MESSAGES = ("out of memory", "cuda out of memory", "defaultcpuallocator: can't allocate memory")


def default_free() -> None:
    """gc, then return cached CUDA blocks to the driver (guarded; never imports torch)."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is None:
        return
    try:
        if torch.cuda.is_available():  # not exercised on the CPU-only machine
            torch.cuda.empty_cache()
    except Exception:  # noqa: BLE001
        pass


def _oom_classes() -> tuple[type, ...]:
    torch = sys.modules.get("torch")
    classes: list[type] = []
    if torch is not None:
        for owner in (torch, getattr(torch, "cuda", None)):
            cls = getattr(owner, "OutOfMemoryError", None)
            if isinstance(cls, type):
                classes.append(cls)
    return tuple(classes)


def _is_sticky(exc: BaseException) -> bool:
    from src.device_errors import is_sticky_device_error

    return is_sticky_device_error(exc)


def is_oom(exc: BaseException | None) -> bool:
    """True for an out-of-memory error (also when it is the explicit `__cause__` of the exception)."""
    seen = 0
    while exc is not None and seen < 5:
        classes = _oom_classes()
        if (classes and isinstance(exc, classes)) or isinstance(exc, MemoryError):
            return True
        if isinstance(exc, RuntimeError) and any(m in str(exc).lower() for m in OOM_MESSAGES):
            return True
        exc, seen = exc.__cause__, seen + 1
    return False


class AdaptiveBatcher:
    """Runs a model on batches, halving the batch on out-of-memory (see the module docstring)."""

    def __init__(self, initial: int, auto: bool = False, max_size: int = 64, grow_after: int | None = None,
                 free_fn: Callable[[], None] | None = default_free,
                 on_batch: Callable[[int, float], None] | None = None, what: str = "model") -> None:
        if not isinstance(initial, int) or initial < 1:
            raise ValueError(f"initial batch size must be a positive integer, got {initial!r}")
        if not isinstance(max_size, int) or max_size < 1:
            raise ValueError(f"max_size must be a positive integer, got {max_size!r}")
        if grow_after is not None and (not isinstance(grow_after, int) or grow_after < 1):
            raise ValueError(f"grow_after must be a positive integer or None, got {grow_after!r}")
        self.auto = auto
        self.initial = initial
        self.max_size = max_size
        self.size = min(initial, max_size) if auto else initial
        self.grow_after = (grow_after or 2) if auto else grow_after
        self.limit = max_size if auto else initial  # growth never goes beyond this
        self.oom_ceiling: int | None = None  # smallest batch size that ran out of memory
        self.free_fn = free_fn or (lambda: None)
        self.on_batch = on_batch
        self.what = what
        self.sizes_used: Counter = Counter()
        self.events: list[dict[str, Any]] = []
        self._streak = 0

    # ------------------------------------------------------------------ public

    def call(self, fn: Callable[[list], list], items: list) -> list:
        """One result per item, in order: fn's result, or the Exception of an item that failed."""
        items = list(items)
        out: list = []
        start = 0
        while start < len(items):
            chunk = items[start:start + self.size]  # the size may shrink or grow between chunks
            out.extend(self._run(fn, chunk, allow_grow=True))
            start += len(chunk)
        return out

    # ------------------------------------------------------------------ internals

    def _attempt(self, fn: Callable[[list], list], chunk: list) -> tuple[list | None, BaseException | None]:
        t0 = time.perf_counter()
        try:
            results = fn(list(chunk))
            results = list(results)
            if len(results) != len(chunk):
                raise RuntimeError(f"{self.what} returned {len(results)} results for {len(chunk)} inputs")
        except Exception as exc:  # noqa: BLE001 - model code can raise anything
            error: BaseException = exc
        else:
            dt = time.perf_counter() - t0
            self.sizes_used[len(chunk)] += 1
            if self.on_batch is not None:
                self.on_batch(len(chunk), dt)
            return results, None
        return None, error

    def _run(self, fn: Callable[[list], list], chunk: list, allow_grow: bool) -> list:
        results, error = self._attempt(fn, chunk)
        if error is None:
            self._streak += 1
            if allow_grow:
                self._maybe_grow()
            return results
        self._streak = 0
        if _is_sticky(error):  # the CUDA context is gone: every retry would fail too; the pipeline stops
            self._event("sticky", self.size, self.size, len(chunk), error)
            return [error] * len(chunk)
        if is_oom(error):
            error.__traceback__ = None  # the frames hold the failed batch's tensors
            self.free_fn()
            before = self.size
            if len(chunk) == 1:
                self._event("oom", before, before, 1, error)
                log.warning("%s: out of memory on a single item; recorded as failed: %s", self.what, error)
                return [error]  # says something about this item, not the batch size: no ceiling
            self.oom_ceiling = len(chunk) if self.oom_ceiling is None else min(self.oom_ceiling, len(chunk))
            self.size = max(1, min(self.size, len(chunk)) // 2)
            self._event("oom", before, self.size, len(chunk), error)
            log.warning("%s: out of memory on a batch of %d; batch size %d -> %d, retrying those items",
                        self.what, len(chunk), before, self.size)
            out: list = []
            start = 0
            while start < len(chunk):  # the same items, in smaller batches (recursively)
                sub = chunk[start:start + self.size]
                out.extend(self._run(fn, sub, allow_grow=False))
                start += len(sub)
            return out
        if len(chunk) == 1:
            return [error]
        self._event("error", self.size, self.size, len(chunk), error)
        log.warning("%s batch of %d failed (%s: %s); retrying one by one", self.what, len(chunk),
                    type(error).__name__, error)
        out = []
        for item in chunk:
            out.extend(self._run(fn, [item], allow_grow=False))
        return out

    def _maybe_grow(self) -> None:
        if self.grow_after is None or self._streak < self.grow_after:
            return
        cap = self.limit if self.oom_ceiling is None else min(self.limit, self.oom_ceiling - 1)
        new = min(self.size * 2, cap)
        if new > self.size:
            self._event("grow", self.size, new, 0, None)
            log.info("%s: batch size %d -> %d after %d successful batches", self.what, self.size, new, self._streak)
            self.size = new
        self._streak = 0

    def _event(self, kind: str, before: int, after: int, n_items: int, error: BaseException | None) -> None:
        self.events.append({"kind": kind, "size_before": before, "size_after": after, "n_items": n_items,
                            "error": None if error is None else f"{type(error).__name__}: {error}"})

    def summary(self) -> dict[str, Any]:
        """JSON-serialisable state for the run record."""
        return {"size": self.size, "initial": self.initial, "auto": self.auto, "oom_ceiling": self.oom_ceiling,
                "sizes_used": {str(k): v for k, v in sorted(self.sizes_used.items())}, "events": list(self.events)}


__all__ = ["AdaptiveBatcher", "is_oom", "default_free", "OOM_MESSAGES"]
