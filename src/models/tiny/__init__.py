"""Offline tiny random-weight checkpoints of the real architectures.

`model_name: tiny:<arch>` resolves to a local directory holding a checkpoint saved with
`save_pretrained`, built once from a config with a fixed seed and cached on disk; the model classes
then load it through the very same `from_pretrained` path as a real checkpoint. Builders live one per
family in this package and take the output directory.

The cache directory is `$IEB_CACHE_DIR/tiny` (default `~/.cache/image-edit-benchmark/tiny`), or
`<cache_dir>/tiny` when a model's `cache_dir` init_arg is given. A checkpoint is built in a temporary
directory and renamed into place, so a killed build never leaves a half-written checkpoint.
"""

from __future__ import annotations

import importlib
import os
import shutil
import tempfile
from pathlib import Path

# arch -> "module:function"; the function takes the output directory and writes the checkpoint.
TINY_BUILDERS: dict[str, str] = {
    "qwen-image-edit": "src.models.tiny.qwen_image_edit:build",
    "qwen3-vl": "src.models.tiny.qwen3_vl:build_dense",
    "qwen3-vl-moe": "src.models.tiny.qwen3_vl:build_moe",
    "qwen3-vl-bench": "src.models.tiny.qwen3_vl:build_bench",
    "qwen2.5-vl": "src.models.tiny.qwen2_5_vl:build",
    "qwen-image-edit-plus": "src.models.tiny.qwen_image_edit_plus:build",
    "flux-kontext": "src.models.tiny.flux_kontext:build",
    "instruct-pix2pix": "src.models.tiny.instruct_pix2pix:build",
}

# Bump when a builder changes what it writes, so stale caches are not reused.
TINY_VERSION = "1"

PREFIX = "tiny:"


def default_cache_root() -> Path:
    root = os.environ.get("IEB_CACHE_DIR")
    return Path(root) if root else Path.home() / ".cache" / "image-edit-benchmark"


def is_tiny(model_name: str) -> bool:
    return str(model_name).startswith(PREFIX)


def tiny_arch(model_name: str) -> str:
    arch = str(model_name)[len(PREFIX):]
    if arch not in TINY_BUILDERS:
        from src.models.base import ModelError

        known = ", ".join(f"tiny:{a}" for a in sorted(TINY_BUILDERS))
        raise ModelError(f"unknown tiny architecture {model_name!r}; known: {known}")
    return arch


def resolve_model_path(model_name: str, cache_dir: str | None = None) -> str:
    """Return what to pass to `from_pretrained`: a local dir (built if tiny) or the name unchanged."""
    if not is_tiny(model_name):
        return str(model_name)
    arch = tiny_arch(model_name)
    root = (Path(cache_dir) if cache_dir else default_cache_root()) / "tiny"
    target = root / f"{arch}-v{TINY_VERSION}"
    if (target / ".complete").exists():
        return str(target)
    root.mkdir(parents=True, exist_ok=True)
    module_name, func_name = TINY_BUILDERS[arch].split(":")
    builder = getattr(importlib.import_module(module_name), func_name)
    tmp = Path(tempfile.mkdtemp(prefix=f".{arch}-", dir=root))
    try:
        builder(tmp)
        (tmp / ".complete").write_text("ok\n")
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished first: keep theirs
            if not (target / ".complete").exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return str(target)
