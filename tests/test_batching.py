"""AdaptiveBatcher: OOM backoff without losing or repeating items, growth, one-by-one on errors."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from src.batching import AdaptiveBatcher, is_oom


class FakeModel:
    """Doubles numbers. OOM when a batch is larger than `max_fit`, or always for items in `oom_items`."""

    def __init__(self, max_fit: int = 10**9, oom_items=(), bad_items=(), exc=None):
        self.max_fit = max_fit
        self.oom_items = set(oom_items)
        self.bad_items = set(bad_items)
        self.exc = exc or (lambda n: torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {n} GiB"))
        self.calls: list[list] = []
        self.done = Counter()  # successful results per item

    def __call__(self, items):
        self.calls.append(list(items))
        if len(items) > self.max_fit or self.oom_items & set(items):
            raise self.exc(len(items))
        if self.bad_items & set(items):
            raise ValueError(f"bad input among {items}")
        for it in items:
            self.done[it] += 1
        return [it * 2 for it in items]


def run_all(batcher: AdaptiveBatcher, model, items):
    """What the pipeline does: collect `batcher.size` items, call, repeat."""
    out, pending = [], list(items)
    while pending:
        batch, pending = pending[:batcher.size], pending[batcher.size:]
        out.extend(batcher.call(model, batch))
    return out


def test_oom_halves_and_keeps_every_item_once_in_order():
    frees = []
    model = FakeModel(max_fit=2)
    b = AdaptiveBatcher(8, free_fn=lambda: frees.append(1))
    items = list(range(20))
    out = run_all(b, model, items)
    assert out == [i * 2 for i in items]
    assert all(model.done[i] == 1 for i in items) and sum(model.done.values()) == 20
    assert [e["kind"] for e in b.events] == ["oom", "oom"]
    assert [(e["size_before"], e["size_after"]) for e in b.events] == [(8, 4), (4, 2)]
    assert b.size == 2 and len(frees) == 2
    assert set(b.sizes_used) == {2}
    assert "OutOfMemoryError" in b.events[0]["error"]


def test_item_that_ooms_alone_becomes_an_exception_result():
    model = FakeModel(oom_items={5})
    b = AdaptiveBatcher(4, free_fn=None)
    out = run_all(b, model, list(range(8)))
    assert isinstance(out[5], torch.OutOfMemoryError)
    assert out[5].__traceback__ is None  # the failed batch's frames are not kept alive
    assert [o for i, o in enumerate(out) if i != 5] == [i * 2 for i in range(8) if i != 5]
    assert all(model.done[i] == 1 for i in range(8) if i != 5) and model.done[5] == 0
    # batch [4,5,6,7] -> OOM -> size 2: [4,5] OOM -> size 1: [4] ok, [5] OOM alone, then [6], [7]
    assert [e["size_after"] for e in b.events] == [2, 1, 1]
    assert b.size == 1


def test_non_oom_error_retries_one_by_one():
    model = FakeModel(bad_items={2})
    b = AdaptiveBatcher(4)
    out = b.call(model, [0, 1, 2, 3])
    assert out[0] == 0 and out[1] == 2 and out[3] == 6
    assert isinstance(out[2], ValueError)
    assert b.size == 4  # a plain error does not shrink the batch
    assert b.events[0]["kind"] == "error"
    assert model.calls == [[0, 1, 2, 3], [0], [1], [2], [3]]


def test_wrong_result_count_is_an_error_of_the_batch():
    def fn(items):
        return [0] if len(items) > 1 else [it + 100 for it in items]

    b = AdaptiveBatcher(3)
    assert b.call(fn, [1, 2, 3]) == [101, 102, 103]
    assert "returned 1 results for 3 inputs" in b.events[0]["error"]
    out = AdaptiveBatcher(1).call(lambda items: [], [1])
    assert isinstance(out[0], RuntimeError)


def test_auto_grows_then_backs_off_and_never_retries_an_oom_size():
    model = FakeModel(max_fit=6)
    seen = []
    b = AdaptiveBatcher(1, auto=True, max_size=16, on_batch=lambda n, s: seen.append(n))
    items = list(range(60))
    out = run_all(b, model, items)
    assert out == [i * 2 for i in items]
    assert all(model.done[i] == 1 for i in items)
    kinds = [(e["kind"], e["size_before"], e["size_after"]) for e in b.events]
    # 1 -> 2 -> 4 -> 8 (OOM) -> 4; growth then stays below the smallest OOM size: 4 -> 7 (OOM) -> 3 -> 6
    assert kinds == [("grow", 1, 2), ("grow", 2, 4), ("grow", 4, 8), ("oom", 8, 4), ("grow", 4, 7),
                     ("oom", 7, 3), ("grow", 3, 6)]
    assert b.size == 6 and b.oom_ceiling == 7
    assert max(k for k in b.sizes_used) <= 6
    assert sum(seen) == 60 and sum(k * v for k, v in b.sizes_used.items()) == 60


def test_fixed_size_shrinks_only_unless_grow_after():
    model = FakeModel(max_fit=2)
    b = AdaptiveBatcher(4, auto=False)
    run_all(b, model, list(range(12)))
    assert b.size == 2 and not [e for e in b.events if e["kind"] == "grow"]

    # with grow_after: grows back toward the configured size once the OOM cause is gone
    flaky = FakeModel(max_fit=1)
    b = AdaptiveBatcher(4, auto=False, grow_after=2)
    run_all(b, flaky, list(range(3)))
    assert b.size == 1
    b.oom_ceiling = None  # e.g. a new run of the pipeline after the memory was freed
    flaky.max_fit = 100
    run_all(b, flaky, list(range(20)))
    assert b.size == 4  # back to the configured size, never beyond
    assert all(flaky.done[i] == 2 for i in range(3)) and all(flaky.done[i] == 1 for i in range(3, 20))


def test_message_variants_count_as_oom():
    cpu = RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: "
                       "you tried to allocate 100000000000000 bytes. Error code 12 (Cannot allocate memory)")
    assert is_oom(cpu)
    assert is_oom(RuntimeError("CUDA out of memory. Tried to allocate 20.00 MiB"))
    assert is_oom(torch.cuda.OutOfMemoryError("x"))
    assert is_oom(MemoryError())
    wrapped = ValueError("edit failed")
    wrapped.__cause__ = torch.OutOfMemoryError("CUDA out of memory")
    assert is_oom(wrapped)
    assert not is_oom(RuntimeError("shape mismatch"))
    assert not is_oom(ValueError("out of memory"))  # only RuntimeError / MemoryError messages count

    model = FakeModel(max_fit=1, exc=lambda n: RuntimeError(str(cpu)))
    b = AdaptiveBatcher(4)
    assert b.call(model, [1, 2, 3, 4]) == [2, 4, 6, 8]
    assert b.size == 1 and [e["kind"] for e in b.events] == ["oom", "oom"]


def test_partial_last_batch_oom_halves_from_its_length():
    model = FakeModel(max_fit=1)
    b = AdaptiveBatcher(8)
    assert b.call(model, [1, 2, 3]) == [2, 4, 6]
    assert b.events[0]["size_before"] == 8 and b.events[0]["size_after"] == 1  # 3 // 2


def test_validation():
    with pytest.raises(ValueError):
        AdaptiveBatcher(0)
    with pytest.raises(ValueError):
        AdaptiveBatcher(2, grow_after=0)
    assert AdaptiveBatcher(100, auto=True, max_size=8).size == 8
    assert AdaptiveBatcher(3, auto=True).grow_after == 2
    assert AdaptiveBatcher(3).grow_after is None
