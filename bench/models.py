"""Instant models for overhead benchmarks, registered by class_path like any model.

    reward_model:
      class_path: bench.models.ConstantRewardModel
      init_args: {value: 5.0}

`ConstantRewardModel` scores every request with the same number and touches no pixels, so a run with it
(and the identity editor, `src.models.diffusion.implementations.identity.IdentityEditModel`) measures
only what the pipeline itself does: decoding, PNG encoding, disk writes, records, reports.
"""

from __future__ import annotations

from src.models.base import BaseRewardModel, ModelError, ScoreRequest, ScoreResult


class ConstantRewardModel(BaseRewardModel):
    """Returns `value` for every request. No weights, no device work. `decode` names the images it decodes
    (reads) per request, as a judge that looks at pixels would: none by default."""

    uses_torch_rng = False  # no torch randomness: the run need not import torch to seed it

    def __init__(self, model_name: str = "constant", device: str = "cpu", dtype: str = "float32",
                 batch_size: int = 1, cache_dir: str | None = None, value: float = 5.0,
                 decode: tuple[str, ...] | list[str] = ()) -> None:
        super().__init__(model_name=model_name, device=device, dtype=dtype, batch_size=batch_size,
                         cache_dir=cache_dir)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 10.0:
            raise ModelError(f"value must be a number in 0..10, got {value!r}")
        self.value = float(value)
        unknown = sorted(set(decode) - {"original", "edited"})
        if unknown:
            raise ModelError(f"decode: unknown image role(s) {unknown}; use 'original' and/or 'edited'")
        self.decode = tuple(decode)  # images to decode per request, as a judge that looks at them would

    def _load(self) -> None:
        pass

    def _release(self) -> None:
        pass

    def _to(self, device: str) -> None:
        pass  # nothing lives on a device

    def score(self, requests: list[ScoreRequest]) -> list[ScoreResult]:
        if not self.loaded:
            raise ModelError("ConstantRewardModel.score() before load() (or after release())")
        for r in requests:
            for role in self.decode:
                getattr(r, role).size  # noqa: B018 - the decode is the point
        return [ScoreResult(status="scored", score=self.value, details={"constant": True}) for _ in requests]


__all__ = ["ConstantRewardModel"]
