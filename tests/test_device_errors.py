"""Sticky CUDA errors stop the stage (exit 1, one message) instead of failing every remaining pair.

The fake models raise (or record as text, as the editors do for a failing pair) the CUDA runtime's own
error strings; no GPU is involved.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import torch

from src.batching import AdaptiveBatcher
from src.cli import main
from src.device_errors import StickyDeviceError, is_sticky_device_error, stop_on_sticky
from src.models.base import EditResult
from tests.conftest import make_benchmark, write_config
from tests.fakes import FakeEditModel, FakeRewardModel

ILLEGAL = "CUDA error: an illegal memory access was encountered"
ASSERT = "CUDA error: device-side assert triggered\nCompile with `TORCH_USE_CUDA_DSA` to enable device-side assertions."


class StickyEditModel(FakeEditModel):
    """Records a sticky CUDA error as the pair's error text for the ids in `STICKY` (as the diffusers
    editors turn a failing pair's exception into `EditResult.error`). A class attribute, not an init_arg,
    so the "repaired" model of the resume has the same fingerprint."""

    STICKY: set[str] = set()

    def edit(self, requests):
        out = super().edit(requests)
        return [EditResult(image=None, error=f"AcceleratorError: {ILLEGAL}") if r.pair_id in self.STICKY else o
                for r, o in zip(requests, out)]


class StickyRewardModel(FakeRewardModel):
    """Raises torch.AcceleratorError (device-side assert) for a batch holding one of the ids in `STICKY`."""

    STICKY: set[str] = set()

    def score(self, requests):
        if any(r.pair_id in self.STICKY for r in requests):
            raise torch.AcceleratorError(ASSERT)
        return super().score(requests)


def test_recognised_by_text_type_and_cause():
    assert is_sticky_device_error(torch.AcceleratorError(ILLEGAL))
    assert is_sticky_device_error(RuntimeError("CUDA error: uncorrectable ECC error encountered"))
    assert is_sticky_device_error("RuntimeError: CUDA error: unspecified launch failure")
    wrapped = ValueError("pipeline failed")
    wrapped.__cause__ = RuntimeError(ASSERT)
    assert is_sticky_device_error(wrapped)
    assert not is_sticky_device_error(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert not is_sticky_device_error(RuntimeError("shape mismatch")) and not is_sticky_device_error(None)


def test_batcher_neither_splits_nor_retries_a_sticky_batch():
    calls = []

    def fn(items):
        calls.append(len(items))
        raise torch.AcceleratorError(ILLEGAL)

    batcher = AdaptiveBatcher(4)
    results = batcher.call(fn, ["a", "b", "c", "d"])
    assert calls == [4] and len(results) == 4 and all(is_sticky_device_error(r) for r in results)
    assert batcher.events[-1]["kind"] == "sticky" and batcher.size == 4


def test_stop_on_sticky_names_the_pair_and_ignores_other_errors():
    stop_on_sticky("edit", ["a", "b"], [EditResult(image=None, error="injected"), RuntimeError("boom")])
    with pytest.raises(StickyDeviceError, match="pair-b.*illegal memory access"):
        stop_on_sticky("edit", ["pair-a", "pair-b"], [EditResult(image=None), EditResult(image=None, error=ILLEGAL)])
    # the served judge's per-pair error texts are the server's, not this process's
    stop_on_sticky("score", ["a"], [EditResult(image=None, error=ILLEGAL)], result_errors=False)


def _rows(run_dir: Path, table: str) -> list[tuple[str, str]]:
    with sqlite3.connect(run_dir / "state.sqlite") as conn:
        return sorted(conn.execute(f"SELECT pair_id, status FROM {table}").fetchall())


def _error_message(capsys) -> str:
    return [line for line in capsys.readouterr().err.splitlines() if " ERROR " in line][-1]


def test_edit_stage_stops_on_a_sticky_error_and_resume_finishes(tmp_path, capsys, monkeypatch):
    data = make_benchmark(tmp_path / "b.json", categories=["物理", "环境"], n=3)
    cfg = write_config(tmp_path / "c.yaml", data, editor={"class_path": "tests.test_device_errors.StickyEditModel",
                                                         "init_args": {"batch_size": 2}})
    monkeypatch.setattr(StickyEditModel, "STICKY", {"0-1"})
    assert main(["--config", str(cfg), "--run-name", "r"]) == 1
    message = _error_message(capsys)
    assert "edit stopped" in message and "illegal memory access" in message and "'0-1'" in message
    assert "--resume" in message and "Traceback" not in message
    run_dir = tmp_path / "outputs" / "r"
    assert _rows(run_dir, "edits") == []  # the batch (0-0, 0-1) is not recorded, nothing after it ran
    monkeypatch.setattr(StickyEditModel, "STICKY", set())  # the GPU is repaired
    assert main(["--resume", str(run_dir)]) == 0
    assert [s for _, s in _rows(run_dir, "edits")] == ["edited"] * 6
    assert [s for _, s in _rows(run_dir, "scores")] == ["scored"] * 6


def test_score_stage_stops_on_a_sticky_error_with_edits_kept(tmp_path, capsys, monkeypatch):
    data = make_benchmark(tmp_path / "b.json", categories=["物理", "环境"], n=3)
    cfg = write_config(tmp_path / "c.yaml", data, judge={"class_path": "tests.test_device_errors.StickyRewardModel",
                                                        "init_args": {"batch_size": 2}})
    monkeypatch.setattr(StickyRewardModel, "STICKY", {"1-0"})
    assert main(["--config", str(cfg), "--run-name", "r"]) == 1
    message = _error_message(capsys)
    assert "score stopped" in message and "device-side assert" in message and "'1-0'" in message
    run_dir = tmp_path / "outputs" / "r"
    assert [s for _, s in _rows(run_dir, "edits")] == ["edited"] * 6
    # category 物理 was scored; the batch holding 1-0 (1-0, 1-1) and everything after it stayed pending
    assert _rows(run_dir, "scores") == [("0-0", "scored"), ("0-1", "scored"), ("0-2", "scored")]
