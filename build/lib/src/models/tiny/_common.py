"""Helpers shared by the tiny diffusers checkpoint builders (`flux_kontext`, `instruct_pix2pix`,
`qwen_image_edit`, `qwen_image_edit_plus`).

Each family file stays self-contained in what it builds (its components and their configs); these are
only the steps that are the same everywhere: creating the weights in float32, the tiny 4-level
`AutoencoderKL`, and writing entries of `model_index.json`.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


def float32_weights(build: Callable[[Path], None]) -> Callable[[Path], None]:
    """Decorator for a builder `build(out_dir)`: it runs with float32 as torch's default dtype (weights are
    created in the default dtype) and `out_dir` as a Path; the previous default dtype is restored."""

    @functools.wraps(build)
    def wrapper(out_dir: Path) -> None:
        import torch

        previous_dtype = torch.get_default_dtype()
        torch.set_default_dtype(torch.float32)
        try:
            build(Path(out_dir))
        finally:
            torch.set_default_dtype(previous_dtype)

    return wrapper


def tiny_autoencoder_kl(*, sample_size: int, latent_channels: int, **config: Any):
    """A seeded `AutoencoderKL` with the real four levels (8x spatial compression) and toy widths.

    Real (SD 1.5, FLUX): block_out_channels (128, 256, 512, 512), 2 layers per block, 32 norm groups.
    `config` adds the family's own arguments (scaling/shift factors, quant convs).
    """
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    return AutoencoderKL(
        sample_size=sample_size,
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
        block_out_channels=[8, 16, 16, 16],
        layers_per_block=1,
        latent_channels=latent_channels,
        norm_num_groups=4,
        **config,
    )


def update_model_index(out_dir: Path, **entries: Any) -> None:
    """Set `entries` in `out_dir/model_index.json` (rewritten with sorted keys)."""
    index_file = Path(out_dir) / "model_index.json"
    index = json.loads(index_file.read_text())
    index.update(entries)
    index_file.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
