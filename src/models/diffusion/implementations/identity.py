"""The "did nothing" baseline: every edit returns the input image unchanged.

Useful as a floor for the judge (an edit that ignores the instruction should score low on instruction
following and perfectly on preservation) and to exercise a run end to end without a model.
"""

from __future__ import annotations

from src.models.base import BaseEditModel, EditRequest, EditResult, ModelError


class IdentityEditModel(BaseEditModel):
    """Returns a copy of each request's input image. No weights, no device work."""

    uses_torch_rng = False  # no torch randomness: the run need not import torch to seed it

    def __init__(self, model_name: str = "identity", device: str = "cpu", dtype: str = "float32",
                 batch_size: int = 1, cache_dir: str | None = None) -> None:
        super().__init__(model_name=model_name, device=device, dtype=dtype, batch_size=batch_size,
                         cache_dir=cache_dir)

    def _load(self) -> None:
        pass

    def _release(self) -> None:
        pass

    def _to(self, device: str) -> None:
        pass  # nothing lives on a device

    def edit(self, requests: list[EditRequest]) -> list[EditResult]:
        if not self.loaded:
            raise ModelError("IdentityEditModel.edit() before load() (or after release())")
        results = []
        for req in requests:
            image = req.image if req.image.mode == "RGB" else req.image.convert("RGB")
            results.append(EditResult(image=image.copy(), info={
                "width": image.size[0], "height": image.size[1], "identity": True, "model": self.model_name}))
        return results
