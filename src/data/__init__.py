"""Benchmark loading: read a benchmark as it is distributed into `PairSpec`s, decode images lazily.

One module per format, each with ``NAME``, ``detect(path)`` and ``read(path, shown, spool)``:

* `src.data.native`  -- the project's own JSON / JSONL (images as base64 or paths); see its docstring
* `src.data.gedit`   -- GEdit-Bench: the Hugging Face dataset's parquet / arrow files (a file, a folder, or
  a local ``datasets`` / hub cache folder)
* `src.data.kris`    -- KRIS-Bench: a folder of task folders, each with ``annotation.json`` + images
* `src.data.rise`    -- RISEBench: ``data_total.json`` + the image folders beside it
* `src.data.imgedit` -- ImgEdit (basic): ``basic_edit.json`` + the original-image folder

`load_benchmark` picks the format from ``format=`` (config ``benchmark.format``) or detects it
(`detect_format`); every format ends in the same checks (`src.data.assemble`). Shared pieces live in one
place each: image decoding and safe names (`src.data.images`), the spool (`src.data.spool`), JSON
reading (`src.data.jsonio`), the records (`src.data.records`). A new format is one new module plus
one line in `FORMATS`.

Every pair keeps its benchmark's fields in ``PairSpec.metadata`` under their original names (image blobs
excepted) and ``metadata["source_format"]``; extra images (further inputs, reference / ground truth) are
named on the pair (`PairSpec.image_roles`).

Two kinds of problems:

* `BenchmarkError` -- the file as a whole is unusable (missing, not UTF-8, bad JSON, unknown shape,
  no pairs, duplicate ids or file-name collisions in a category, duplicate category). Raised by
  `load_benchmark` before any pair is returned; the whole file is validated even when only some
  categories are selected.
* per pair -- `PairSpec.error` is set at parse time (pair is not an object, no/empty instruction, no
  image field, wrong field types, image file missing) and `InvalidPair` is raised by `load_image`
  when the image itself is bad (base64, not an image, truncated, decompression bomb). The other pairs
  are unaffected. `python main.py validate FILE` lists every problem of both kinds (`src.data.tools`).

Images are decoded only in `PairSpec.load_image`: EXIF orientation is applied and the result is
always RGB. Transparent images are composited on a **white** background (what image viewers and
papers show; dropping alpha would expose whatever colour hides under transparent pixels, often black).
16-bit images are scaled to 8 bits (not clipped), CMYK is converted through its ICC profile when it has
one.

Memory: the file is read as a stream (``ijson``'s C parser for JSON, one line at a time for JSONL), and
every long string (base64 images, big blobs: `SPOOL_MIN_CHARS` characters or more) is written to an
unnamed temporary *spool* file as it is read; a `PairSpec` keeps only its offset and length. Peak memory
is therefore one pair plus the small per-pair fields, whatever the number of pairs; the spool takes about
as much temporary disk as the images' base64 text (``$TMPDIR``, or `SPOOL_DIR`). It is closed by
`Benchmark.close` (or a ``with`` block), else when the last pair referring to it is garbage-collected.
Pickling or copying a `PairSpec` inlines its images, so the copy does not depend on the spool. Files the
streaming parser refuses are re-read with the `json` module, which gives the exact error (line, column);
the rare valid files only `json` accepts (``NaN``, integers over 64 bits, lone surrogate escapes, nesting
deeper than `_MAX_STREAM_DEPTH`) are loaded that way, in memory, with a warning.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path

from src.data.assemble import assemble
from src.data.errors import BenchmarkError, InvalidPair
from src.data.images import ALLOWED_FORMATS, MAX_NAME_BYTES, _decode_b64, _open_image, _WINDOWS_RESERVED, safe_name
from src.data.jsonio import (_ijson_backend, _NotStreamable, _object_hook, _stream_json, _UNICODE_SPACE)
from src.data.records import (EDITOR_ROLE_PREFIX, REFERENCE_ROLE, SOURCE_FORMATS, Benchmark, PairSpec)
from src.data.spool import _materialize, _Spool, _Spooled

log = logging.getLogger(__name__)

# Largest image accepted, in pixels (width * height). Checked from the header before decoding, so
# a decompression bomb never allocates its pixels. Read at call time: tests/configs may change it.
MAX_IMAGE_PIXELS = 64_000_000
# Strings of at least this many characters are kept in the spool file, not in memory (see module doc).
SPOOL_MIN_CHARS = 2048
# Folder of the spool file; None = tempfile's default ($TMPDIR, else /tmp). Read at load time.
SPOOL_DIR: str | None = None

# format name -> module (src.data.<name>); detection tries them in this order, "native" last.
FORMATS = ("gedit", "kris", "rise", "imgedit", "native")


def format_module(name: str):
    if name not in FORMATS:
        from src.data.assemble import _did_you_mean

        raise BenchmarkError(f"unknown benchmark format {name!r}; known: {', '.join(FORMATS)} (or 'auto')."
                             f"{_did_you_mean(str(name), list(FORMATS))}")
    return importlib.import_module(f"src.data.{name}")


def detect_format(path: str | Path) -> str:
    """The format of `path` (a file or a folder), from its name, layout and first bytes; "native" when
    nothing else matches (its errors then say what is wrong)."""
    p = Path(path).expanduser()
    for name in FORMATS:
        if format_module(name).detect(p):
            return name
    return "native"


def load_benchmark(path: str | Path, categories: list[str] | None = None,
                   limit: int | None = None, format: str | None = None,
                   image_root: str | Path | None = None) -> Benchmark:
    """Parse and validate a benchmark. No image is decoded here.

    `categories` selects *and orders* categories (None or [] = all, in file order); a name not in the
    file is a `BenchmarkError`. `limit` keeps the first N pairs of each category. `format` is one of
    `FORMATS` (None or "auto": detected). `image_root` is where a format that names its images by
    relative path finds them (default: the benchmark file's folder).
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
    if isinstance(categories, str):
        categories = [categories]
    shown = str(path)
    p = Path(path).expanduser()
    if not p.exists():
        raise BenchmarkError(f"benchmark file {shown} does not exist (resolved to {p.resolve()}).")
    fmt = detect_format(p) if format in (None, "auto") else str(format)
    module = format_module(fmt)
    spool = _Spool(SPOOL_DIR)
    try:
        kwargs = {"image_root": Path(image_root).expanduser()} if image_root is not None else {}
        pairs, info = module.read(p, shown, spool, **kwargs)
        return assemble(p, shown, spool, pairs, info, categories, limit, fmt)
    except BaseException:
        spool.close()  # nothing refers to it any more: free the disk now
        raise


__all__ = ["ALLOWED_FORMATS", "Benchmark", "BenchmarkError", "EDITOR_ROLE_PREFIX", "FORMATS", "InvalidPair",
           "MAX_IMAGE_PIXELS", "MAX_NAME_BYTES", "PairSpec", "REFERENCE_ROLE", "SOURCE_FORMATS", "SPOOL_DIR",
           "SPOOL_MIN_CHARS", "detect_format", "load_benchmark", "safe_name"]
