"""Edited images that already exist on disk (made elsewhere: an API, another tool, an earlier run).

No model runs: each request is answered with the file for its pair.

Layout
    Default (`path_template: null`): `<images_dir>/<category>/<pair_id>.<ext>` with `ext` one of png, jpg,
    jpeg, webp (lower case). Exactly one of them must exist; two (e.g. `a.png` and `a.jpg`) is an error
    for that pair rather than a silent pick.
    `path_template` (e.g. "{category}/{pair_id}.png", "edits/{pair_id}.webp") names the file exactly;
    its placeholders are `{category}` and `{pair_id}` (nothing else; `{{`/`}}` for literal braces).

Errors (per pair, `EditResult(image=None, error=...)`; the run continues)
    - no file: the message lists the path(s) looked for;
    - a path that would leave `images_dir` (path traversal: `..`, absolute paths, via the template or the
      ids) is refused without touching the file system. The check is lexical: symlinks placed inside
      `images_dir` are followed (that is the user's choice);
    - an unreadable image.
    `load()` raises ModelError when `images_dir` is not a directory.

Images are read fully, EXIF orientation applied (as the data layer does for originals) and converted to
RGB. `info` has the file's path relative to `images_dir`, its format and size.
"""

from __future__ import annotations

import os
import string
from pathlib import Path

from PIL import Image, ImageOps

from src.models.base import BaseEditModel, EditRequest, EditResult, ModelError

EXTENSIONS = ("png", "jpg", "jpeg", "webp")
PLACEHOLDERS = ("category", "pair_id")


def _check_template(template: str) -> None:
    try:
        fields = [field for _, field, _, _ in string.Formatter().parse(template) if field is not None]
    except ValueError as exc:
        raise ModelError(f"path_template {template!r} is not a valid format string: {exc}") from exc
    unknown = sorted({f for f in fields if f not in PLACEHOLDERS})
    if unknown:
        raise ModelError(f"path_template {template!r} has unknown placeholder(s) {unknown}; "
                         f"use {{category}} and {{pair_id}}")
    if not template.strip() or template.endswith(("/", os.sep)):
        raise ModelError(f"path_template {template!r} must name a file")


class PrecomputedEditModel(BaseEditModel):
    """Reads `<images_dir>/<category>/<pair_id>.<png|jpg|jpeg|webp>` (or `path_template`) per pair."""

    uses_torch_rng = False  # no torch randomness: the run need not import torch to seed it

    def __init__(self, images_dir: str, path_template: str | None = None, model_name: str = "precomputed",
                 device: str = "cpu", dtype: str = "float32", batch_size: int = 1,
                 cache_dir: str | None = None) -> None:
        super().__init__(model_name=model_name, device=device, dtype=dtype, batch_size=batch_size,
                         cache_dir=cache_dir)
        if not isinstance(images_dir, str) or not images_dir:
            raise ModelError(f"images_dir must be a directory path, got {images_dir!r}")
        if path_template is not None:
            if not isinstance(path_template, str):
                raise ModelError(f"path_template must be a string or null, got {path_template!r}")
            _check_template(path_template)
        self.images_dir = images_dir
        self.path_template = path_template
        self.root: Path | None = None

    # -- life cycle
    def check(self) -> None:
        super().check()
        if not Path(self.images_dir).expanduser().is_dir():
            raise ModelError(f"images_dir {self.images_dir!r} is not a directory")

    def _load(self) -> None:
        root = Path(self.images_dir).expanduser()
        if not root.is_dir():
            raise ModelError(f"images_dir {self.images_dir!r} is not a directory")
        self.root = Path(os.path.abspath(root))

    def _release(self) -> None:
        self.root = None

    def _to(self, device: str) -> None:
        pass  # nothing lives on a device

    # -- lookup
    def candidates(self, category: str, pair_id: str) -> list[str]:
        """Paths relative to images_dir to look for, in order. Raises ValueError on path traversal."""
        if self.path_template is not None:
            relative = [self.path_template.format(category=category, pair_id=pair_id)]
        else:
            stem = f"{category}/{pair_id}"
            relative = [f"{stem}.{ext}" for ext in EXTENSIONS]
        for rel in relative:
            self._inside(rel)
        return relative

    def _inside(self, rel: str) -> Path:
        """`root / rel` if it stays inside root (lexically: `..` and absolute paths are refused)."""
        assert self.root is not None
        if "\x00" in rel:
            raise ValueError(f"path {rel!r} contains a NUL byte")
        full = os.path.normpath(os.path.join(self.root, rel))
        if os.path.isabs(rel) or os.path.commonpath([full, str(self.root)]) != str(self.root) or full == str(self.root):
            raise ValueError(f"path {rel!r} resolves outside images_dir {str(self.root)!r}")
        return Path(full)

    def edit(self, requests: list[EditRequest]) -> list[EditResult]:
        if not self.loaded or self.root is None:
            raise ModelError("PrecomputedEditModel.edit() before load() (or after release())")
        return [self._one(req) for req in requests]

    def _one(self, req: EditRequest) -> EditResult:
        try:
            relative = self.candidates(str(req.category), str(req.pair_id))
        except (ValueError, KeyError, IndexError) as exc:
            return EditResult(image=None, error=f"refused: {exc}")
        paths = {rel: self._inside(rel) for rel in relative}
        found: dict[str, str] = {}  # real file -> relative path (a case-insensitive FS may list one file twice)
        for rel, path in paths.items():
            try:
                if path.is_file():
                    found.setdefault(os.path.normcase(os.path.realpath(path)), rel)
            except OSError as exc:  # e.g. a name too long for the file system
                return EditResult(image=None, error=f"cannot look up {str(path)!r}: {exc}")
        if not found:
            looked = ", ".join(str(path) for path in paths.values())
            return EditResult(image=None, error=f"no precomputed image for {req.category}/{req.pair_id}; "
                                                f"looked for: {looked}")
        if len(found) > 1:
            return EditResult(image=None, error=f"ambiguous precomputed image for {req.category}/{req.pair_id}: "
                                                f"found {sorted(found.values())}; keep one")
        (rel,) = found.values()
        path = paths[rel]
        try:
            with Image.open(path) as opened:
                fmt = opened.format
                image = ImageOps.exif_transpose(opened).convert("RGB")  # reads the pixels; the file is closed after
        except Exception as exc:  # noqa: BLE001 - a corrupt file fails its pair only
            return EditResult(image=None, error=f"cannot read precomputed image {str(path)!r}: "
                                                f"{type(exc).__name__}: {exc}")
        return EditResult(image=image, info={"path": rel, "format": fmt, "width": image.size[0],
                                             "height": image.size[1], "model": self.model_name})
