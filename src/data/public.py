"""What the public-benchmark format modules share: one `build_pair` that turns a benchmark's record into a
`PairSpec` with the same checks and messages everywhere, a relative-path resolver that never hides a
missing file, and the peek used by detection."""

from __future__ import annotations

import base64
import math
from pathlib import Path
from typing import Any

from src.data.images import safe_name
from src.data.records import PairSpec, set_pair_id
from src.data.spool import _kind, _materialize, _min_chars, _Spool, _Spooled

# A source of an image: base64 text (maybe spooled), a Path to a file, or None (missing).
ImageSource = Any


def b64_source(raw: bytes, spool: _Spool) -> str | _Spooled:
    """Image bytes -> base64 text, kept in the spool when long (so memory stays one pair)."""
    text = base64.b64encode(raw).decode("ascii")
    return spool.add(text) if len(text) >= _min_chars() else text


def is_missing(value: Any) -> bool:
    """None, NaN (pandas writes it for an empty cell) or a blank string."""
    return (value is None or (isinstance(value, float) and math.isnan(value))
            or (isinstance(value, str) and not value.strip()))


def file_source(value: Any, base: Path, field_name: str, problems: list[str]) -> Path | None:
    """A relative (or absolute) image path from the benchmark -> Path; a problem when unusable/missing."""
    if not isinstance(value, str) or not value.strip():
        problems.append(f"field {field_name!r}: must be a non-empty image path, got {value!r}")
        return None
    p = Path(value).expanduser()
    p = p if p.is_absolute() else base / p
    if not p.is_file():
        problems.append(f"field {field_name!r}: image file not found: {p}")
        return None
    return p


def build_pair(*, fmt: str, source: str, category: str, index: int, raw: dict, pair_id: Any,
               id_field: str, instruction: Any, instruction_field: str, image: ImageSource,
               image_field: str, extras: list[tuple[str, str, ImageSource]] = (),
               problems: list[str] | None = None, omit: tuple[str, ...] = (),
               extra_metadata: dict | None = None) -> PairSpec:
    """One pair of a public benchmark.

    `raw` is the benchmark's record: every field except those in `omit` (image blobs) and other blobs
    (base64 / data: URLs / strings over 64 KiB, as in the native format) goes into
    ``metadata`` under its own name, then `extra_metadata` (derived fields such as KRIS groups), then
    ``source_format``. `extras` are (role, field shown in messages, source) for named extra images.
    `problems` found by the caller are reported together with the ones found here.
    """
    problems = list(problems or [])
    default_id = f"{index:04d}"
    spec = PairSpec(category=category, pair_id=default_id, index=index, file_stem="", instruction=None,
                    description=None, source=source)
    set_pair_id(spec, pair_id, id_field, problems)

    if is_missing(instruction) and not isinstance(instruction, str):
        problems.append(f"no edit instruction (field {instruction_field!r} is missing or null)")
    elif not isinstance(instruction, str):
        problems.append(f"field {instruction_field!r}: must be a string, got {_kind(instruction)}")
    elif not instruction.strip():
        problems.append(f"field {instruction_field!r}: the edit instruction is empty")
    else:
        spec.instruction = instruction.strip()

    spec.image_field = image_field
    if isinstance(image, Path):
        spec.image_path = str(image)
    elif image is not None:
        spec._image_b64 = image
    elif not any(image_field in p for p in problems):
        problems.append(f"field {image_field!r}: no image")

    for role, label, src in extras:
        if src is not None:
            spec.add_extra_image(role, src, label)

    from src.data.native import _is_blob  # base64 blobs / data: URLs / huge strings stay out of metadata

    spec.omitted_fields = [k for k, v in raw.items() if k in omit or _is_blob(k, v)]
    spec.metadata = {k: _materialize(v) for k, v in raw.items() if k not in spec.omitted_fields}
    spec.metadata.update(extra_metadata or {})
    spec.metadata["source_format"] = fmt
    if problems:
        spec.error = f"{spec.where()}: " + "; ".join(problems)
    return spec


def bad_record(*, fmt: str, source: str, category: str, index: int, pair_id: Any, value: Any) -> PairSpec:
    """A record that is not an object: an invalid pair (the others still run)."""
    pid = str(pair_id) if isinstance(pair_id, (str, int)) and not isinstance(pair_id, bool) else f"{index:04d}"
    spec = PairSpec(category=category, pair_id=pid, index=index, file_stem=safe_name(pid), instruction=None,
                    description=None, source=source, metadata={"source_format": fmt})
    spec.error = f"{spec.where()} (position {index}): the record is {_kind(value)}, not an object"
    return spec


def peek(p: Path, size: int = 65536) -> str:
    """The first `size` bytes of a file as text (for detection; errors -> "")."""
    try:
        with open(p, "rb") as f:
            return f.read(size).decode("utf-8", "ignore")
    except OSError:
        return ""


NATIVE_HINTS = ('"original_image_b64"', '"image_b64"', '"original_image_path"', '"edit_instruction"',
                '"data_pairs"', '"image_path"')


def looks_native(head: str) -> bool:
    return any(h in head for h in NATIVE_HINTS)
