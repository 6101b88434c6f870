"""What every format module produces: `PairSpec` (one pair, images decoded on demand) and `Benchmark`."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from PIL import Image

from src.data.errors import InvalidPair
from src.data.images import _decode_b64, _open_image, safe_name
from src.data.spool import _Spool, _Spooled, _text

# Named extra images (`PairSpec.image_roles`). A role is a short snake_case name. Roles starting with
# EDITOR_ROLE_PREFIX ("original_2", "original_3", ...) are further *inputs* of the edit: the editor gets them
# (`PairSpec.extra_images`) and so does the judge. Every other role ("reference": a ground-truth or
# reference-answer image) is for the judge only (`PairSpec.named_images`): the editor never sees it.
EDITOR_ROLE_PREFIX = "original_"
REFERENCE_ROLE = "reference"
ROLE_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
# metadata["source_format"]: where a pair came from ("native" = this project's own JSON/JSONL format).
SOURCE_FORMATS = ("native", "gedit", "kris", "rise", "imgedit")


@dataclass
class PairSpec:
    """One (original image, instruction) pair. Holds references only; images are decoded on demand.

    A long base64 value is not held in memory: ``_image_b64`` and base64 extra images are then
    references into the benchmark's spool file (see the module docstring), read back on use.

    Extra images are *named* (``image_roles``): ``original_2``, ``original_3`` ... are further inputs of the
    edit (the editor gets them from `extra_images`, the judge from `named_images`); any other role, such as
    ``reference`` (a benchmark's ground-truth / reference-answer image), reaches the judge only.
    ``metadata`` holds every other field of the pair under its original name, plus ``source_format``.
    """

    category: str
    pair_id: str
    index: int  # position within its category, 0-based
    file_stem: str  # safe_name(pair_id): use it for every file written for this pair
    instruction: str | None
    description: str | None
    metadata: dict = field(default_factory=dict)
    error: str | None = None  # set when the pair is unusable at parse time
    source: str = ""  # benchmark file name, for messages
    image_field: str | None = None  # the pair field the image comes from
    image_path: str | None = None  # resolved path when the image is a file
    omitted_fields: list[str] = field(default_factory=list)  # blob fields left out of metadata
    _image_b64: str | _Spooled | None = field(default=None, repr=False, compare=False)
    # (role, field shown in messages, base64 text | _Spooled | Path of an image file), in role order
    _extras: list[tuple[str, str, Any]] = field(default_factory=list, repr=False, compare=False)
    _sha256: str | None = field(default=None, repr=False, compare=False)

    def where(self, field_name: str | None = None) -> str:
        """Message prefix: ``benchmark.json, category '物理', pair 'p3', field 'x'``."""
        text = f"{self.source}, category {self.category!r}, pair {self.pair_id!r}"
        return f"{text}, field {field_name!r}" if field_name else text

    def _raw_image(self) -> bytes:
        if self.error:
            raise InvalidPair(self.error)
        where = self.where(self.image_field)
        if self._image_b64 is not None:
            try:
                return _decode_b64(_text(self._image_b64))
            except ValueError as e:
                raise InvalidPair(f"{where}: not valid base64 ({e})") from None
        if self.image_path is not None:
            try:
                return Path(self.image_path).read_bytes()
            except FileNotFoundError:
                raise InvalidPair(f"{where}: image file not found: {self.image_path}") from None
            except OSError as e:
                raise InvalidPair(f"{where}: cannot read image file {self.image_path} ({e})") from None
        raise InvalidPair(f"{self.where()}: no image field")  # pragma: no cover - error is set instead

    def load_image(self) -> Image.Image:
        """Decode the original image: RGB, EXIF orientation applied. Raises `InvalidPair`."""
        return self.load_image_and_bytes()[0]

    def load_image_and_bytes(self) -> tuple[Image.Image, bytes]:
        """`load_image()` and the raw bytes it decoded, read once (the edit stage keeps the bytes for the
        gallery's copy of the original). Raises `InvalidPair`."""
        raw = self._raw_image()
        if self._sha256 is None:
            self._sha256 = hashlib.sha256(raw).hexdigest()
        return _open_image(raw, self.where(self.image_field)), raw

    def image_bytes(self) -> bytes:
        """The raw bytes of the original image (decoded base64 or file content). Raises `InvalidPair`."""
        return self._raw_image()

    def image_sha256(self) -> str:
        """sha256 (hex) of the raw image bytes (decoded base64 or file content). Raises `InvalidPair`."""
        if self._sha256 is None:
            self._sha256 = hashlib.sha256(self._raw_image()).hexdigest()
        return self._sha256

    # ------------------------------------------------------------------ named extra images

    @property
    def image_roles(self) -> list[str]:
        """Roles of the extra images, in order (``[]`` when the pair has only its original)."""
        return [role for role, _, _ in self._extras]

    @property
    def editor_roles(self) -> list[str]:
        """The roles that are inputs of the edit (``original_2`` ...): the editor gets these."""
        return [role for role in self.image_roles if role.startswith(EDITOR_ROLE_PREFIX)]

    def add_extra_image(self, role: str, source: Any, field_name: str) -> None:
        """Attach an extra image: `source` is base64 text (or a spooled one) or a `Path` to a file."""
        if not ROLE_PATTERN.match(role):
            raise ValueError(f"image role {role!r}: expected a short snake_case name such as 'reference'")
        if role in self.image_roles:
            raise ValueError(f"image role {role!r} is given twice")
        self._extras.append((role, field_name, source))

    def named_image_bytes(self, role: str) -> bytes:
        """The raw bytes (decoded base64 or file content) of the extra image `role`. Raises `InvalidPair`."""
        if self.error:
            raise InvalidPair(self.error)
        for name, field_name, source in self._extras:
            if name == role:
                where = self.where(field_name)
                if isinstance(source, Path):
                    try:
                        return source.read_bytes()
                    except FileNotFoundError:
                        raise InvalidPair(f"{where}: image file not found: {source}") from None
                    except OSError as e:
                        raise InvalidPair(f"{where}: cannot read image file {source} ({e})") from None
                try:
                    return _decode_b64(_text(source))
                except ValueError as e:
                    raise InvalidPair(f"{where}: not valid base64 ({e})") from None
        raise KeyError(f"{self.where()}: no extra image with role {role!r} (it has: "
                       f"{', '.join(map(repr, self.image_roles)) or 'none'})")

    def load_named_image(self, role: str) -> Image.Image:
        """Decode the extra image of `role` (RGB, EXIF orientation applied). Raises `InvalidPair`."""
        raw = self.named_image_bytes(role)
        field_name = next(f for name, f, _ in self._extras if name == role)
        return _open_image(raw, self.where(field_name))

    def named_images(self) -> dict[str, Image.Image]:
        """Every extra image by role, for the judge (``{}`` when absent). Raises `InvalidPair`."""
        return {role: self.load_named_image(role) for role in self.image_roles}

    def extra_images(self) -> list[Image.Image]:
        """The extra *input* images for the editor (roles ``original_2`` ..., in order); ``[]`` when absent.

        Judge-only roles such as ``reference`` are not included. Raises `InvalidPair`.
        """
        if self.error:
            raise InvalidPair(self.error)
        return [self.load_named_image(role) for role in self.editor_roles]


@dataclass
class Benchmark:
    path: str
    categories: list[str]  # selected, in the selected order
    pairs: dict[str, list[PairSpec]]
    all_categories: list[str] = field(default_factory=list)  # every category in the file, file order
    info: dict = field(default_factory=dict)  # top-level keys that are not categories
    format: str = "native"  # the format module that read it (src.data.FORMATS)
    _spool: _Spool | None = field(default=None, repr=False, compare=False)  # long strings, on disk

    def iter_pairs(self) -> Iterator[PairSpec]:
        for category in self.categories:
            yield from self.pairs[category]

    def __len__(self) -> int:
        return sum(len(p) for p in self.pairs.values())

    def close(self) -> None:
        """Release the temporary spool file now; afterwards the pairs' images cannot be read.

        Optional: the file is also released when the benchmark and all its pairs are garbage-collected.
        """
        if self._spool is not None:
            self._spool.close()

    def __enter__(self) -> Benchmark:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def set_pair_id(spec: PairSpec, value: Any, field_name: str, problems: list[str]) -> None:
    """Give `spec` the id in `value` (a non-empty string or an integer) and its file stem; anything else is
    a problem naming `field_name`, and the pair keeps its position id."""
    if isinstance(value, bool) or not isinstance(value, (str, int)) or str(value).strip() == "":
        problems.append(f"field {field_name!r}: must be a non-empty string or an integer, got {value!r}; "
                        f"using the position id {spec.pair_id!r}")
    else:
        spec.pair_id = str(value)
    spec.file_stem = safe_name(spec.pair_id)

