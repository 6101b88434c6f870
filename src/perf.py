"""The performance record of a run: stage wall time, model-call latency, memory peaks, loads and swaps.

Usage (see docs/performance.md for every field):

    perf = PerfRecorder()
    with perf.stage("edit"):
        ...                                   # wall time + peak host RSS (+ peak GPU memory on CUDA)
        perf.model_call("edit", n_items=4, seconds=2.1, batch_size=4)
    perf.event("load_editor", 12.3)
    perf.event("swap", 1.7, bytes=40 * 2**30)
    json.dump(perf.to_dict(), f)              # JSON-serialisable; derived numbers recomputable
    print(format_table(perf.to_dict()))       # Markdown table for report.md

Memory:
- host: a daemon sampler thread reads `psutil.Process().memory_info().rss` every `interval_s` (~50 ms)
  while any stage is open, plus one reading when a stage opens and one when it closes. A peak shorter
  than the sampling interval can be missed (the value is a lower bound of the true peak).
- GPU: when torch is *already imported* and CUDA is available, `torch.cuda.reset_peak_memory_stats(i)`
  when a stage opens and `torch.cuda.max_memory_allocated(i)` when it closes, for every visible device.
  Tensor memory only (not the CUDA context, not the caching allocator's reserve). None on CPU.
  NOT RUN ON A GPU here: this branch is tested with monkeypatched torch.cuda functions only.

Percentiles (`p50_item_s`, `p95_item_s`) use LINEAR INTERPOLATION between closest ranks (NumPy's
default `method="linear"`, Hyndman-Fan type 7): with the sorted per-item latencies x[0..n-1],
h = (n - 1) * q, p = x[floor(h)] + (h - floor(h)) * (x[floor(h) + 1] - x[floor(h)]). So
`numpy.percentile(stage["item_s"], 95)` reproduces `p95_item_s`.

Torch is never imported by this module: it is looked up in `sys.modules`, so a run that has not
imported torch (an API judge only) has no GPU numbers and pays no import.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections import Counter
from contextlib import contextmanager
from typing import Any, Callable, Iterator

try:  # psutil is a dependency; guarded so a missing one costs the RSS numbers only
    import psutil
except ImportError:  # pragma: no cover
    psutil = None

EVENT_KINDS = ("load_editor", "load_judge", "release_editor", "release_judge", "swap")
SAMPLE_INTERVAL_S = 0.05


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0-100) by linear interpolation (NumPy's default); None for no values."""
    if not values:
        return None
    xs = sorted(values)
    h = (len(xs) - 1) * (q / 100.0)
    lo = math.floor(h)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (h - lo) * (xs[hi] - xs[lo])


def _rss_reader() -> Callable[[], int | None]:
    if psutil is None:  # pragma: no cover
        return lambda: None
    proc = psutil.Process()

    def read() -> int | None:
        try:
            return int(proc.memory_info().rss)
        except Exception:  # noqa: BLE001 - never let a reading break a run
            return None

    return read


def _cuda():
    """torch.cuda when torch is already imported and a GPU is usable, else None (never imports torch)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    try:
        return torch.cuda if torch.cuda.is_available() else None
    except Exception:  # noqa: BLE001
        return None


class _Stage:
    def __init__(self) -> None:
        self.wall_s = 0.0
        self.openings = 0
        self.calls = 0
        self.model_s = 0.0
        self.item_s: list[float] = []
        self.batch_sizes: Counter = Counter()
        self.peak_rss: int | None = None
        self.peak_gpu: dict[str, int] | None = None


class PerfRecorder:
    """Collects the performance record of one invocation. Thread-safe; see the module docstring."""

    def __init__(self, interval_s: float = SAMPLE_INTERVAL_S, rss_fn: Callable[[], int | None] | None = None) -> None:
        self.interval_s = interval_s
        self._rss = rss_fn or _rss_reader()
        self._lock = threading.Lock()
        self._stages: dict[str, _Stage] = {}
        self._open: dict[int, _Stage] = {}  # token -> stage record, for every stage currently open
        self._next_token = 0
        self._events: list[dict[str, Any]] = []
        self._peak_rss: int | None = None
        self._sampler: threading.Thread | None = None
        self._stop: threading.Event | None = None

    # ------------------------------------------------------------------ host memory sampling

    def _sample(self) -> None:
        rss = self._rss()
        if rss is None:
            return
        with self._lock:
            self._peak_rss = rss if self._peak_rss is None else max(self._peak_rss, rss)
            for st in self._open.values():
                st.peak_rss = rss if st.peak_rss is None else max(st.peak_rss, rss)

    def _sampler_loop(self, stop: threading.Event) -> None:
        while not stop.wait(self.interval_s):
            self._sample()

    def _start_sampler(self) -> None:  # called with the lock held
        if self._sampler is None:
            self._stop = threading.Event()
            self._sampler = threading.Thread(target=self._sampler_loop, args=(self._stop,), daemon=True,
                                             name="perf-rss-sampler")
            self._sampler.start()

    def _stop_sampler(self) -> None:
        with self._lock:
            if self._open or self._sampler is None:
                return
            thread, stop = self._sampler, self._stop
            self._sampler, self._stop = None, None
        stop.set()
        thread.join(timeout=2.0)

    # ------------------------------------------------------------------ GPU memory (CUDA only)

    def _gpu_fold(self, cuda) -> None:
        """Fold the current per-device peak into every open stage (before a reset, and at a close)."""
        try:
            peaks = {f"cuda:{i}": int(cuda.max_memory_allocated(i)) for i in range(cuda.device_count())}
        except Exception:  # noqa: BLE001
            return
        with self._lock:
            for st in self._open.values():
                if st.peak_gpu is None:
                    st.peak_gpu = {}
                for dev, b in peaks.items():
                    st.peak_gpu[dev] = max(st.peak_gpu.get(dev, 0), b)

    @staticmethod
    def _gpu_reset(cuda) -> None:
        try:
            for i in range(cuda.device_count()):
                cuda.reset_peak_memory_stats(i)
        except Exception:  # noqa: BLE001
            pass

    # ------------------------------------------------------------------ public API

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time a stage and track its memory peaks. A name opened again (interleaved mode) accumulates."""
        cuda = _cuda()
        if cuda is not None:  # not run on a GPU here (tested with fakes)
            self._gpu_fold(cuda)  # keep the peak of enclosing stages before resetting the counters
            self._gpu_reset(cuda)
        with self._lock:
            st = self._stages.setdefault(name, _Stage())
            st.openings += 1
            token = self._next_token
            self._next_token += 1
            self._open[token] = st
            if cuda is not None and st.peak_gpu is None:
                st.peak_gpu = {}
            self._start_sampler()
        self._sample()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            dt = time.perf_counter() - t0
            self._sample()
            if cuda is not None:
                self._gpu_fold(cuda)
            with self._lock:
                st.wall_s += dt
                del self._open[token]
            self._stop_sampler()

    def model_call(self, stage: str, n_items: int, seconds: float, batch_size: int | None = None) -> None:
        """One model call on a batch of `n_items` taking `seconds`; `batch_size` defaults to n_items."""
        if n_items < 1:
            return
        per_item = float(seconds) / n_items
        with self._lock:
            st = self._stages.setdefault(stage, _Stage())
            st.calls += 1
            st.model_s += float(seconds)
            st.item_s.extend([per_item] * n_items)
            st.batch_sizes[int(batch_size if batch_size is not None else n_items)] += 1

    def event(self, kind: str, seconds: float, bytes: int | None = None) -> None:  # noqa: A002 - the brief's name
        """A model load / release, or a swap (seconds and bytes moved between GPU and host)."""
        if kind not in EVENT_KINDS:
            raise ValueError(f"unknown perf event {kind!r}; expected one of {', '.join(EVENT_KINDS)}")
        with self._lock:
            self._events.append({"kind": kind, "seconds": float(seconds),
                                 "bytes": None if bytes is None else int(bytes)})

    def to_dict(self) -> dict[str, Any]:
        """The record (JSON-serialisable). Raw values: wall_s, item_s, batch_sizes, events; the rest derive."""
        with self._lock:
            stages = {}
            for name, st in self._stages.items():
                items = len(st.item_s)
                stages[name] = {
                    "wall_s": st.wall_s,
                    "openings": st.openings,
                    "calls": st.calls,
                    "model_s": st.model_s,
                    "items": items,
                    "items_per_s": (items / st.wall_s) if st.wall_s > 0 else None,
                    "p50_item_s": percentile(st.item_s, 50),
                    "p95_item_s": percentile(st.item_s, 95),
                    "batch_sizes": {str(k): v for k, v in sorted(st.batch_sizes.items())},
                    "peak_rss_bytes": st.peak_rss,
                    "peak_gpu_bytes": dict(st.peak_gpu) if st.peak_gpu is not None else None,
                    "item_s": list(st.item_s),
                }
            events = [dict(e) for e in self._events]
            peak = self._peak_rss
        loads: dict[str, float] = {}
        releases: dict[str, float] = {}
        swaps = {"count": 0, "seconds": 0.0, "bytes": 0}
        for e in events:
            kind = e["kind"]
            if kind == "swap":
                swaps["count"] += 1
                swaps["seconds"] += e["seconds"]
                swaps["bytes"] += e["bytes"] or 0
            else:
                what, role = kind.split("_", 1)
                target = loads if what == "load" else releases
                target[role] = target.get(role, 0.0) + e["seconds"]
        return {
            "percentile_method": "linear interpolation (numpy.percentile default)",
            "stages": stages,
            "loads": loads,
            "releases": releases,
            "swaps": swaps,
            "events": events,
            "peak_rss_bytes": peak,
        }


# ----------------------------------------------------------------------------- Markdown


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n} B"


def _num(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


PERF_LABELS_EN = {
    "perf_cols": "stage|wall s|model s|items/s|p50 s/item|p95 s/item|batch sizes|peak RSS|peak GPU",
    "perf_loads": "loads", "perf_releases": "releases", "perf_swaps": "swaps", "perf_moved": "moved",
    "perf_peak_rss": "peak RSS overall",
    "perf_note": "Batch sizes: `size x calls`; p50/p95 per item by linear interpolation.",
}


def format_table(perf: dict, labels: dict | None = None) -> str:
    """A short Markdown table of `PerfRecorder.to_dict()` (plus one line on loads, releases and swaps), in
    the report's language (`labels`: src/report_labels.py; English when None). Stage and role names are
    identifiers and stay as recorded."""
    t = {**PERF_LABELS_EN, **{k: v for k, v in (labels or {}).items() if k.startswith("perf_")}}
    cols = t["perf_cols"].split("|")
    lines = ["| " + " | ".join(cols) + " |", "|---|---:|---:|---:|---:|---:|---|---:|---|"]
    for name, st in perf.get("stages", {}).items():
        batches = ", ".join(f"{k}x{v}" for k, v in st.get("batch_sizes", {}).items()) or "-"
        gpu = st.get("peak_gpu_bytes")
        gpu_text = ", ".join(f"{dev} {_size(b)}" for dev, b in gpu.items()) if gpu else "-"
        lines.append(f"| {name} | {_num(st.get('wall_s'), 2)} | {_num(st.get('model_s'), 2)} | "
                     f"{_num(st.get('items_per_s'), 3)} | {_num(st.get('p50_item_s'))} | "
                     f"{_num(st.get('p95_item_s'))} | {batches} | {_size(st.get('peak_rss_bytes'))} | {gpu_text} |")
    extra = []
    for key in ("loads", "releases"):
        if perf.get(key):
            extra.append(f"{t['perf_' + key]}: " + ", ".join(f"{role} {s:.2f} s" for role, s in perf[key].items()))
    swaps = perf.get("swaps") or {}
    if swaps.get("count"):
        extra.append(f"{t['perf_swaps']}: {swaps['count']} ({swaps['seconds']:.2f} s, {_size(swaps['bytes'])} "
                     f"{t['perf_moved']})")
    if perf.get("peak_rss_bytes") is not None:
        extra.append(f"{t['perf_peak_rss']}: {_size(perf['peak_rss_bytes'])}")
    if extra:
        lines.append("")
        lines.append("; ".join(extra) + ". " + t["perf_note"])
    return "\n".join(lines)


__all__ = ["PerfRecorder", "format_table", "percentile", "EVENT_KINDS"]
