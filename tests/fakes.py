"""Fast fake models, registered exactly like real ones (by class_path in a config).

They exercise the pipeline's bookkeeping — batching, failures, resume, reports — without loading
diffusers or transformers. Outputs are deterministic functions of the inputs and the seed, so two
runs (or a run and its resume) must agree exactly.
"""

from __future__ import annotations

import hashlib
import time

from PIL import Image, ImageChops

from src.models.base import BaseEditModel, BaseRewardModel, EditRequest, EditResult, ScoreRequest, ScoreResult


def _maybe_oom(requests, oom_above: int | None, oom_ids: set[str]) -> None:
    """Raise torch's out-of-memory error, as a GPU would for a batch that does not fit."""
    import torch

    if (oom_above is not None and len(requests) > oom_above) or any(r.pair_id in oom_ids for r in requests):
        raise torch.OutOfMemoryError(f"CUDA out of memory (injected: batch of {len(requests)})")


class FakeEditModel(BaseEditModel):
    """Inverts the image and tints it by the seed. `fail_ids` fail; `delay_s` slows each edit."""

    def __init__(self, model_name: str = "fake", device: str = "cpu", dtype: str = "float32", batch_size: int = 1,
                 cache_dir: str | None = None, fail_ids: list[str] | None = None, raise_ids: list[str] | None = None,
                 delay_s: float = 0.0, oom_above: int | None = None, oom_ids: list[str] | None = None) -> None:
        super().__init__(model_name, device, dtype, batch_size, cache_dir)
        self.fail_ids = set(fail_ids or [])
        self.raise_ids = set(raise_ids or [])
        self.delay_s = delay_s
        self.oom_above = oom_above  # out-of-memory whenever a batch is larger than this
        self.oom_ids = set(oom_ids or [])  # out-of-memory whenever one of these is in the batch
        self.calls: list[int] = []

    def _load(self) -> None:
        self.weights = "loaded"

    def _release(self) -> None:
        self.weights = None

    def edit(self, requests: list[EditRequest]) -> list[EditResult]:
        assert self.loaded
        self.calls.append(len(requests))
        _maybe_oom(requests, self.oom_above, self.oom_ids)
        if any(r.pair_id in self.raise_ids for r in requests):
            raise RuntimeError("injected batch failure")
        out = []
        for r in requests:
            time.sleep(self.delay_s)
            if r.pair_id in self.fail_ids:
                out.append(EditResult(image=None, error="injected edit failure"))
                continue
            tint = Image.new("RGB", r.image.size, (r.seed % 256, (r.seed >> 8) % 256, (r.seed >> 16) % 256))
            out.append(EditResult(image=ImageChops.add(ImageChops.invert(r.image), tint, scale=2.0),
                                  info={"width": r.image.width, "height": r.image.height}))
        return out


class FakeRewardModel(BaseRewardModel):
    """Scores from a hash of the edited pixels and the prompt. `fail_ids` fail with a raw reply."""

    def __init__(self, model_name: str = "fake-judge", device: str = "cpu", dtype: str = "float32",
                 batch_size: int = 1, cache_dir: str | None = None, fail_ids: list[str] | None = None,
                 offset: float = 0.0, delay_s: float = 0.0, oom_above: int | None = None) -> None:
        super().__init__(model_name, device, dtype, batch_size, cache_dir)
        self.oom_above = oom_above
        self.fail_ids = set(fail_ids or [])
        self.offset = offset
        self.delay_s = delay_s
        self.calls: list[int] = []

    def _load(self) -> None:
        self.weights = "loaded"

    def _release(self) -> None:
        self.weights = None

    def score(self, requests: list[ScoreRequest]) -> list[ScoreResult]:
        assert self.loaded
        self.calls.append(len(requests))
        _maybe_oom(requests, self.oom_above, set())
        out = []
        for r in requests:
            time.sleep(self.delay_s)
            if r.pair_id in self.fail_ids:
                out.append(ScoreResult(status="score_failed", score=None, raw_reply="I cannot rate this.",
                                       error="could not parse a 0-10 score", attempts=3))
                continue
            h = hashlib.sha256(r.edited.tobytes() + r.prompt.user.encode()).digest()
            score = min(10.0, round(h[0] / 25.5, 3) + self.offset)
            out.append(ScoreResult(status="scored", score=score, raw_reply=f'{{"score": {score}}}',
                                   reasoning="hash"))
        return out


class FlakyEditModel(FakeEditModel):
    """Fails every edit while the file `outage_file` exists (a missing precomputed image, a broken mount):
    the same config works again once it is gone, so `--retry-failed` can be tested without changing it.
    `hold_file` holds a run inside its first edit, so tests can act on a run that is surely in progress."""

    def __init__(self, outage_file: str = "", hold_file: str = "", model_name: str = "fake", device: str = "cpu",
                 dtype: str = "float32", batch_size: int = 1, cache_dir: str | None = None) -> None:
        super().__init__(model_name=model_name, device=device, dtype=dtype, batch_size=batch_size, cache_dir=cache_dir)
        self.outage_file = outage_file
        self.hold_file = hold_file  # while it exists, edit() waits (after creating hold_file + ".reached")

    def edit(self, requests: list[EditRequest]) -> list[EditResult]:
        from pathlib import Path

        if self.hold_file and Path(self.hold_file).exists():
            Path(self.hold_file + ".reached").write_text("")
            deadline = time.time() + 300
            while Path(self.hold_file).exists() and time.time() < deadline:
                time.sleep(0.02)
        if self.outage_file and Path(self.outage_file).exists():
            assert self.loaded
            return [EditResult(image=None, error="injected outage") for _ in requests]
        return super().edit(requests)


class FlakyRewardModel(FakeRewardModel):
    """Fails every score (as a judge server outage would) while the file `outage_file` exists."""

    def __init__(self, outage_file: str = "", model_name: str = "fake-judge", device: str = "cpu",
                 dtype: str = "float32", batch_size: int = 1, cache_dir: str | None = None) -> None:
        super().__init__(model_name=model_name, device=device, dtype=dtype, batch_size=batch_size, cache_dir=cache_dir)
        self.outage_file = outage_file

    def score(self, requests: list[ScoreRequest]) -> list[ScoreResult]:
        from pathlib import Path

        if self.outage_file and Path(self.outage_file).exists():
            assert self.loaded
            return [ScoreResult(status="score_failed", score=None, raw_reply=None, error="connection refused",
                                attempts=3) for _ in requests]
        return super().score(requests)
