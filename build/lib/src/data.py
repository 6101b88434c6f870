"""Benchmark loading: parse the benchmark file into `PairSpec`s, decode images lazily.

Accepted file shapes (UTF-8, a BOM is tolerated):

* ``{"<cat>": [pair, ...], ...}``
* ``{"<cat>": {"data_pairs": [pair, ...], <other keys ignored>}, ...}``
* ``{"categories": [{"name": "<cat>", "data_pairs": [pair, ...]}, ...], <other keys>}``
* ``[pair, ...]`` where every pair has a ``category`` field (also ``{"data_pairs": [pair, ...]}``)
* ``.jsonl`` / ``.ndjson``: one pair per line with a ``category`` field; blank lines are skipped.

Pair fields (first synonym present wins; the unused synonyms are kept in ``metadata``):

* image: ``original_image_b64`` | ``image_b64`` (plain base64 or a ``data:image/...;base64,`` URL), or
  ``original_image_path`` | ``image_path`` (relative to the benchmark file's folder; absolute paths and
  ``..`` are allowed because this module only *reads*; the resolved path is in ``PairSpec.image_path``)
* ``edit_instruction`` | ``instruction`` (required, non-empty string)
* ``original_description`` | ``description`` (optional string; empty means absent)
* ``pair_id`` | ``id`` (string or integer; when absent the position in the category, ``f"{index:04d}"``)
* ``reference_images_b64`` (optional list of base64 strings, see `PairSpec.extra_images`)
* anything else is kept in ``metadata`` -- except base64 blobs (keys ending in ``b64``/``base64``,
  ``data:`` URLs, strings over 64 KiB), whose names are listed in ``PairSpec.omitted_fields``.

Two kinds of problems:

* `BenchmarkError` -- the file as a whole is unusable (missing, not UTF-8, bad JSON, unknown shape,
  no pairs, duplicate ids or file-name collisions in a category, duplicate category). Raised by
  `load_benchmark` before any pair is returned; the whole file is validated even when only some
  categories are selected.
* per pair -- `PairSpec.error` is set at parse time (pair is not an object, no/empty instruction, no
  image field, wrong field types, image file missing) and `InvalidPair` is raised by `load_image`
  when the image itself is bad (base64, not an image, truncated, decompression bomb). The other pairs
  are unaffected.

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

import base64
import binascii
import codecs
import difflib
import hashlib
import io
import json
import logging
import os
import re
import tempfile
import threading
import unicodedata
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from PIL import Image, ImageOps, UnidentifiedImageError

log = logging.getLogger(__name__)

# Largest image accepted, in pixels (width * height). Checked from the header before decoding, so
# a decompression bomb never allocates its pixels. Read at call time: tests/configs may change it.
MAX_IMAGE_PIXELS = 64_000_000

# Image formats `load_image` will open (others, e.g. EPS which shells out to Ghostscript, are refused).
ALLOWED_FORMATS = ("PNG", "JPEG", "MPO", "WEBP", "GIF", "BMP", "TIFF", "AVIF")

# safe_name: maximum length of a name in UTF-8 bytes (file systems limit bytes, and CJK characters are
# 3 bytes each); leaves room for extensions and suffixes under the usual 255-byte limit.
MAX_NAME_BYTES = 120

IMAGE_B64_FIELDS = ("original_image_b64", "image_b64")
IMAGE_PATH_FIELDS = ("original_image_path", "image_path")
INSTRUCTION_FIELDS = ("edit_instruction", "instruction")
DESCRIPTION_FIELDS = ("original_description", "description")
ID_FIELDS = ("pair_id", "id")
REFERENCE_FIELD = "reference_images_b64"
_KNOWN_FIELDS = set(IMAGE_B64_FIELDS + IMAGE_PATH_FIELDS + INSTRUCTION_FIELDS + DESCRIPTION_FIELDS
                    + ID_FIELDS + (REFERENCE_FIELD,))
_BIG_STRING = 64 * 1024

# Strings of at least this many characters are kept in the spool file, not in memory (see module doc).
SPOOL_MIN_CHARS = 2048
# Folder of the spool file; None = tempfile's default ($TMPDIR, else /tmp). Read at load time.
SPOOL_DIR: str | None = None


class BenchmarkError(Exception):
    """File-level problem; str(e) is one clear paragraph naming the file (and category/pair/field)."""


class InvalidPair(Exception):
    """Per-pair problem; the message names file, category, pair id and field."""


# ----------------------------------------------------------------------------- safe names

_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"} | {
    f"{p}{s}" for p in ("COM", "LPT") for s in list("0123456789") + ["¹", "²", "³"]}
_SAFE_PUNCT = "-_."


def _name_char_ok(ch: str) -> bool:
    return ch in _SAFE_PUNCT or unicodedata.category(ch)[0] in "LNM"


def safe_name(text: str) -> str:
    """A file/directory name for an id or category: readable, unique, never a path.

    Unicode letters, digits and combining marks are kept (``物理`` stays ``物理``), as are ``-``, ``_``
    and ``.``; every other character (path separators, control and reserved characters, spaces, ``~``)
    becomes ``_``; runs of dots become ``_``; leading/trailing dots are stripped; Windows device names get
    a ``_`` prefix; the result is at most `MAX_NAME_BYTES` UTF-8 bytes.

    When anything had to change, ``~`` plus 8 hex digits of sha256(original text) is appended. An
    unchanged name never contains ``~``, so distinct inputs give distinct names (up to a hash
    collision): ``safe_name("a/b") == "a_b~<hash>"`` while ``safe_name("a_b") == "a_b"``.
    """
    text = str(text)
    body = "".join(ch if _name_char_ok(ch) else "_" for ch in text)
    body = re.sub(r"\.{2,}", "_", body).strip(".")
    if body.split(".")[0].upper() in _WINDOWS_RESERVED:
        body = "_" + body
    if body == text and body and len(body.encode("utf-8")) <= MAX_NAME_BYTES:
        return body
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    budget = MAX_NAME_BYTES - 9
    while len(body.encode("utf-8")) > budget:
        body = body[:-1]
    body = body.rstrip(".") or "_"
    return f"{body}~{digest}"


# ----------------------------------------------------------------------------- image decoding

_DATA_URL = re.compile(r"^\s*data:[^,;]*(?:;[^,;]*)*?;base64,", re.IGNORECASE)
_B64_CHARS = re.compile(r"[^A-Za-z0-9+/=]")


def _decode_b64(value: str) -> bytes:
    """Decode base64 text (whitespace, missing padding and url-safe alphabet tolerated)."""
    text = _DATA_URL.sub("", value, count=1)
    if text:  # fast path: clean standard base64 (the common case) decodes in one C call
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            pass  # whitespace, url-safe alphabet, missing padding or bad data: the checks below say which
    if text.lstrip().startswith("data:"):
        raise ValueError("a 'data:' URL that is not base64-encoded (expected ';base64,')")
    text = re.sub(r"\s+", "", text)
    if not text:
        raise ValueError("empty")
    if ("-" in text or "_" in text) and "+" not in text and "/" not in text:
        text = text.replace("-", "+").replace("_", "/")
    bad = _B64_CHARS.search(text)
    if bad:
        raise ValueError(f"character {bad.group()!r} at position {bad.start()} is not a base64 character")
    if "=" in text.rstrip("="):
        raise ValueError(f"padding '=' in the middle of the data (position {text.index('=')})")
    stripped = text.rstrip("=")
    if len(stripped) % 4 == 1:
        raise ValueError(f"{len(stripped)} base64 characters cannot encode whole bytes (truncated?)")
    try:
        return base64.b64decode(stripped + "=" * (-len(stripped) % 4), validate=True)
    except (binascii.Error, ValueError) as e:  # pragma: no cover - guarded above
        raise ValueError(str(e)) from None


def _to_rgb(im: Image.Image) -> Image.Image:
    mode = im.mode
    if mode.startswith("I;16") or mode == "I":
        # 16-bit grayscale: scale to 8 bits (PIL's own conversion clips everything above 255 to white)
        return im.convert("I").point(lambda v: v / 257).convert("L").convert("RGB")
    if mode == "F":
        lo, hi = im.getextrema()
        scale = 255.0 if hi <= 1.0 else 1.0
        return im.point(lambda v: v * scale).convert("L").convert("RGB")
    if mode == "CMYK":
        icc = im.info.get("icc_profile")
        if icc:
            try:
                from PIL import ImageCms

                src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
                dst = ImageCms.createProfile("sRGB")
                return ImageCms.profileToProfile(im, src, dst, outputMode="RGB")
            except Exception as e:  # a broken profile: fall back to the naive conversion
                log.debug("CMYK ICC conversion failed (%s); using the plain conversion", e)
        return im.convert("RGB")
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info
    if has_alpha:
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode == "RGB":
        return im
    return im.convert("RGB")


def _open_formats() -> list[str]:
    Image.init()  # registers every plugin; formats this Pillow build lacks (AVIF ...) are skipped
    return [f for f in ALLOWED_FORMATS if f in Image.OPEN]


def _open_image(raw: bytes, where: str) -> Image.Image:
    """Bytes -> RGB image with EXIF orientation applied; every problem is an `InvalidPair`."""
    limit = int(MAX_IMAGE_PIXELS)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            im = Image.open(io.BytesIO(raw), formats=_open_formats())
        except UnidentifiedImageError:
            raise InvalidPair(
                f"{where}: not a recognised image ({len(raw)} bytes starting with {raw[:12]!r}; "
                f"accepted formats: {', '.join(_open_formats())})") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise InvalidPair(f"{where}: image is too large, refused as a possible decompression bomb "
                              f"({e})") from None
        except Exception as e:
            raise InvalidPair(f"{where}: cannot read the image header ({type(e).__name__}: {e})") from None
        fmt, (w, h) = im.format, im.size
        if w * h > limit:
            raise InvalidPair(
                f"{where}: image is {w}x{h} = {w * h:,} pixels, over the limit of {limit:,} "
                "(refused as a possible decompression bomb; raise src.data.MAX_IMAGE_PIXELS if intended)")
        try:
            im.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise InvalidPair(f"{where}: image is too large, refused as a possible decompression bomb "
                              f"({e})") from None
        except Exception as e:
            raise InvalidPair(f"{where}: {fmt} image data is truncated or corrupt ({w}x{h}; "
                              f"{type(e).__name__}: {e})") from None
    try:
        im = ImageOps.exif_transpose(im)
    except Exception as e:  # broken EXIF: keep the stored orientation rather than lose the pair
        log.warning("%s: could not apply the EXIF orientation (%s); using the image as stored", where, e)
    try:
        return _to_rgb(im)
    except Exception as e:
        raise InvalidPair(f"{where}: cannot convert {fmt} image of mode {im.mode} to RGB "
                          f"({type(e).__name__}: {e})") from None


# ----------------------------------------------------------------------------- spool


class _Spool:
    """Append-only unnamed temporary file holding the long strings of one loaded benchmark.

    Created on the first string (a benchmark with only small values never opens a file). Reads use
    ``os.pread`` (no shared file position), so pairs may be decoded from several threads. The file is
    closed by `close` or when the object is garbage-collected (every `_Spooled` refers to it).
    """

    def __init__(self, directory: str | None = None) -> None:
        self._directory = directory
        self._fd: int | None = None
        self._file = None
        self._end = 0
        self._lock = threading.Lock()
        self.closed = False

    @property
    def size(self) -> int:
        """Bytes written so far."""
        return self._end

    def add(self, text: str) -> _Spooled:
        data = text.encode("utf-8", "surrogatepass")
        with self._lock:
            if self.closed:
                raise RuntimeError("the benchmark spool is closed")
            try:
                if self._file is None:
                    self._file = tempfile.TemporaryFile(prefix="ieb-bench-spool-", dir=self._directory,
                                                        buffering=0)
                    self._fd = self._file.fileno()
                offset = self._end
                view = memoryview(data)
                while view:
                    n = os.pwrite(self._fd, view, self._end) if hasattr(os, "pwrite") else self._seek_write(view)
                    view = view[n:]
                    self._end += n
            except OSError as e:
                where = self._directory or tempfile.gettempdir()
                raise BenchmarkError(
                    f"cannot write the temporary spool file that holds the benchmark's images (in {where}): "
                    f"{e}. It needs about as much free space as the images' base64 text; point TMPDIR (or "
                    "src.data.SPOOL_DIR) at a folder with room.") from None
        return _Spooled(self, offset, len(data), len(text), not text or text.isspace(), text[:200])

    def _seek_write(self, view: memoryview) -> int:  # pragma: no cover - platforms without os.pwrite
        self._file.seek(self._end)
        return self._file.write(view)

    def read(self, offset: int, nbytes: int) -> str:
        with self._lock:  # so that close() cannot take the file away in the middle of a read
            if self.closed:
                raise RuntimeError("the benchmark was closed (Benchmark.close()); its images are no longer "
                                   "available")
            chunks, pos, todo = [], offset, nbytes
            while todo > 0:
                if hasattr(os, "pread"):
                    chunk = os.pread(self._fd, todo, pos)
                else:  # pragma: no cover - Windows
                    self._file.seek(pos)
                    chunk = self._file.read(todo)
                if not chunk:
                    raise RuntimeError(f"the benchmark spool file ended early ({pos} of {offset + nbytes} bytes)")
                chunks.append(chunk)
                pos += len(chunk)
                todo -= len(chunk)
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        return data.decode("utf-8", "surrogatepass")

    def reset(self) -> None:
        """Forget everything written (a failed streaming attempt is redone another way)."""
        with self._lock:
            if self._file is not None:
                self._file.truncate(0)
            self._end = 0

    def close(self) -> None:
        with self._lock:
            self.closed = True
            if self._file is not None:
                self._file.close()
                self._file = None
                self._fd = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass


class _Spooled:
    """A long JSON string stored in a `_Spool`: what the loader needs to know without reading it back."""

    __slots__ = ("spool", "offset", "nbytes", "length", "blank", "head")

    def __init__(self, spool: _Spool, offset: int, nbytes: int, length: int, blank: bool, head: str) -> None:
        self.spool, self.offset, self.nbytes = spool, offset, nbytes
        self.length = length  # in characters
        self.blank = blank  # only whitespace
        self.head = head  # the first 200 characters

    def text(self) -> str:
        return self.spool.read(self.offset, self.nbytes)

    def __reduce__(self):  # pickle/deepcopy: a plain string, independent of the spool
        return str, (self.text(),)

    def __repr__(self) -> str:
        return f"<{self.length:,} characters kept on disk>"


def _text(value: str | _Spooled) -> str:
    return value.text() if isinstance(value, _Spooled) else value


def _blank(value: str | _Spooled) -> bool:
    return value.blank if isinstance(value, _Spooled) else not value.strip()


def _materialize(value: Any) -> Any:
    """`value` with every `_Spooled` inside it read back (containers are updated in place)."""
    if isinstance(value, _Spooled):
        return value.text()
    stack = [value] if isinstance(value, (dict, list)) else []
    while stack:  # iterative: nesting depth is not limited by the recursion limit
        container = stack.pop()
        entries = container.items() if isinstance(container, dict) else enumerate(container)
        updates = []
        for key, item in entries:
            if isinstance(item, _Spooled):
                updates.append((key, item.text()))
            elif isinstance(item, (dict, list)):
                stack.append(item)
        for key, item in updates:
            container[key] = item
    return value


def _spool_tree(value: Any, spool: _Spool) -> Any:
    """A parsed JSON value with its long strings moved to `spool` (containers updated in place)."""
    if isinstance(value, str):
        return spool.add(value) if len(value) >= SPOOL_MIN_CHARS else value
    stack = [value] if isinstance(value, (dict, list)) else []
    while stack:
        container = stack.pop()
        entries = container.items() if isinstance(container, dict) else enumerate(container)
        updates = []
        for key, item in entries:
            if isinstance(item, str):
                if len(item) >= SPOOL_MIN_CHARS:
                    updates.append((key, spool.add(item)))
            elif isinstance(item, (dict, list)):
                stack.append(item)
        for key, item in updates:
            container[key] = item
    return value


# ----------------------------------------------------------------------------- records


@dataclass
class PairSpec:
    """One (original image, instruction) pair. Holds references only; images are decoded on demand.

    A long base64 value is not held in memory: ``_image_b64`` / ``_reference_b64`` entries are then
    references into the benchmark's spool file (see the module docstring), read back on use.
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
    _reference_b64: list[str | _Spooled] = field(default_factory=list, repr=False, compare=False)
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
        raw = self._raw_image()
        if self._sha256 is None:
            self._sha256 = hashlib.sha256(raw).hexdigest()
        return _open_image(raw, self.where(self.image_field))

    def image_sha256(self) -> str:
        """sha256 (hex) of the raw image bytes (decoded base64 or file content). Raises `InvalidPair`."""
        if self._sha256 is None:
            self._sha256 = hashlib.sha256(self._raw_image()).hexdigest()
        return self._sha256

    def extra_images(self) -> list[Image.Image]:
        """The optional ``reference_images_b64`` images (RGB), ``[]`` when absent. Raises `InvalidPair`."""
        if self.error:
            raise InvalidPair(self.error)
        images = []
        for i, value in enumerate(self._reference_b64):
            where = self.where(f"{REFERENCE_FIELD}[{i}]")
            try:
                raw = _decode_b64(_text(value))
            except ValueError as e:
                raise InvalidPair(f"{where}: not valid base64 ({e})") from None
            images.append(_open_image(raw, where))
        return images


@dataclass
class Benchmark:
    path: str
    categories: list[str]  # selected, in the selected order
    pairs: dict[str, list[PairSpec]]
    all_categories: list[str] = field(default_factory=list)  # every category in the file, file order
    info: dict = field(default_factory=dict)  # top-level keys that are not categories
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


# ----------------------------------------------------------------------------- parsing


class _DupDict(dict):
    """A JSON object that had repeated keys (json keeps the last one silently)."""

    duplicates: list[str]


def _object_hook(items: list[tuple[str, Any]]) -> dict:
    d: dict = {}
    dups: list[str] = []
    for k, v in items:
        if k in d and k not in dups:
            dups.append(k)
        d[k] = v
    if dups:
        d = _DupDict(d)
        d.duplicates = dups
    return d


def _check_file(path: Path, shown: str) -> None:
    if not path.exists():
        raise BenchmarkError(f"benchmark file {shown} does not exist (resolved to {path.resolve()}).")
    if path.is_dir():
        raise BenchmarkError(f"benchmark path {shown} is a directory; give the .json or .jsonl file.")


def _read_text(path: Path, shown: str) -> str:
    """The whole file as text (the in-memory path: error messages and files only `json` can read)."""
    _check_file(path, shown)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise BenchmarkError(f"cannot read benchmark file {shown}: {e}.") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        hint = ""
        try:
            data.decode("gb18030")
            hint = " It decodes as GBK/GB18030: re-save it as UTF-8."
        except UnicodeDecodeError:
            pass
        raise BenchmarkError(f"benchmark file {shown} is not UTF-8 text (invalid byte "
                             f"0x{data[e.start]:02x} at byte offset {e.start}).{hint}") from None
    if not text.strip():
        raise BenchmarkError(f"benchmark file {shown} is empty.")
    return text


def _parse_json(text: str, shown: str) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_object_hook)
    except json.JSONDecodeError as e:
        raise BenchmarkError(f"benchmark file {shown} is not valid JSON: {e.msg} at line "
                             f"{e.lineno}, column {e.colno}.") from None
    except RecursionError:
        raise BenchmarkError(f"benchmark file {shown} is nested too deeply to parse.") from None


def _parse_jsonl_text(text: str, shown: str) -> tuple[list, list[str]]:
    """The in-memory JSONL path: (items, labels), or the exact error for the first bad line."""
    items, labels = [], []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            items.append(json.loads(line, object_pairs_hook=_object_hook))
        except json.JSONDecodeError as e:
            raise BenchmarkError(f"benchmark file {shown}: line {lineno} is not valid JSON: "
                                 f"{e.msg} at column {e.colno}.") from None
        labels.append(f"the pair on line {lineno}")
    if not items:
        raise BenchmarkError(f"benchmark file {shown} has no pairs (only blank lines).")
    return items, labels


# ----------------------------------------------------------------------------- streaming parse

# Deeper documents are handed to the json module (which refuses very deep ones with a clear message).
_MAX_STREAM_DEPTH = 500
_READ_CHUNK = 256 * 1024
# Bytes the json module refuses anywhere in a document (raw control characters) but that yajl (\v, \f)
# or ijson's pure-Python parser (also \x1c-\x1f) skip as whitespace between tokens.
_JSON_FORBIDDEN = (b"\x0b", b"\x0c", b"\x1c", b"\x1d", b"\x1e", b"\x1f")
# \uD800-\uDFFF escapes. json keeps a lone one (a high one not followed by a low one, or a low one not
# preceded by a high one); yajl turns it into '?' or fails. (An escaped backslash followed by 'uD800' text
# is taken for an escape too: harmless, the file is then read by json.)
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_SURROGATE_CONTEXT = 6 + 11  # bytes kept between reads: the escape before one, and one plus the next
# Non-ASCII characters that ijson's pure-Python parser (not json, not yajl) skips between tokens; with
# that parser a file containing any of them (even inside strings) is read by json instead.
_UNICODE_SPACE = re.compile(b"|".join(re.escape(chr(c).encode()) for c in range(0x80, 0x3001) if chr(c).isspace()))


class _NotStreamable(Exception):
    """The streaming parser might not read this file exactly as `json` does: let `json` read it."""


_BACKEND: Any = False  # ijson backend module, None when ijson is missing; False = not chosen yet


def _ijson_backend() -> Any:
    """ijson's C backend (yajl2_c, in its wheels), else its pure-Python one; None without ijson."""
    global _BACKEND
    if _BACKEND is False:
        _BACKEND = None
        try:
            import ijson
        except ImportError:
            log.warning("the ijson package is missing: benchmark files are read whole into memory "
                        "(pip install -r requirements.txt)")
            return None
        for name in ("yajl2_c", "python"):
            try:
                _BACKEND = ijson.get_backend(name)
                break
            except ImportError:
                log.info("ijson backend %s is not available; using the next one", name)
    return _BACKEND


class _CheckedReader:
    """The benchmark file as the streaming parser sees it: a leading UTF-8 BOM removed, and cut short
    (with `problem` set) at anything `json` would read differently (invalid UTF-8, the bytes in
    `_JSON_FORBIDDEN`, lone surrogate escapes). Raising from `read` instead would upset ijson's Python
    backend (its coroutines report the interruption as an unraisable exception).

    It also counts the unescaped quotes: yajl accepts a document followed by an *unterminated* string
    (``{} "abc``) where json reports extra data; in a valid document the count is even.
    """

    def __init__(self, f, unicode_space_ok: bool = True) -> None:
        self._f = f
        self._unicode_space_ok = unicode_space_ok
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._first = True
        self._pending = b""  # bytes read ahead while looking for a BOM
        self._pos = 0  # stream offset after the last byte returned
        self._tail = b""  # the last bytes returned, for escapes that straddle two reads
        self._decided = 0  # lone-surrogate matches starting before this offset have been judged
        self._odd_backslashes = False  # the last read ended with an odd run of backslashes
        self.quotes = 0  # unescaped '"' seen
        self.eof = False
        self.problem: str | None = None

    def read(self, size: int = -1) -> bytes:
        if size == 0:  # ijson probes the stream type with read(0)
            return self._f.read(0)
        if self.problem:
            return b""
        if self._first:  # drop a BOM, whatever the read size
            self._first = False
            head = self._f.read(len(codecs.BOM_UTF8))
            self._pending = b"" if head == codecs.BOM_UTF8 else head
        data = self._pending if size < 0 else self._pending[:size]
        self._pending = self._pending[len(data):]
        if size < 0 or len(data) < size:
            data += self._f.read(size - len(data) if size >= 0 else -1)
        try:
            return self._checked(data)
        except _NotStreamable as e:
            self.problem = str(e)
            self.eof = True
            return b""

    def _checked(self, data: bytes) -> bytes:
        final = not data
        self.eof = self.eof or final
        try:
            self._decoder.decode(data, final)
        except UnicodeDecodeError as e:
            raise _NotStreamable(f"not UTF-8 ({e.reason})") from None
        for b in _JSON_FORBIDDEN:
            if b in data:
                raise _NotStreamable(f"control character {b!r}")
        buf = self._tail + data
        base = self._pos - len(self._tail)
        if not self._unicode_space_ok and not data.isascii() and _UNICODE_SPACE.search(buf):
            raise _NotStreamable("non-ASCII white space (ijson's Python parser would skip it)")
        self._pos += len(data)
        limit = len(buf) if final else len(buf) - 11  # an escape needs the next one in `buf` to be judged
        for m in _SURROGATE_ESCAPE.finditer(buf):
            i = m.start()
            if base + i < self._decided:
                continue
            if i >= limit:
                break
            if buf[i + 3] in b"89abAB":  # high: a low escape must follow
                ok = _SURROGATE_ESCAPE.match(buf, i + 6) is not None and buf[i + 9] in b"cdefCDEF"
            else:  # low: a high escape must precede (the read before is in `_tail`)
                ok = i >= 6 and _SURROGATE_ESCAPE.match(buf, i - 6) is not None and buf[i - 3] in b"89abAB"
            if not ok:
                raise _NotStreamable("a lone surrogate escape")
        self._decided = max(self._decided, base + limit)
        self._tail = buf[-_SURROGATE_CONTEXT:]
        quotes = data.count(b'"')
        if quotes:  # minus the escaped ones: preceded by an odd run of backslashes (maybe from the last read)
            text = b"\\" + data if self._odd_backslashes else data
            i = text.find(b'\\"')
            while i != -1:
                j = i
                while j >= 0 and text[j] == 0x5C:
                    j -= 1
                quotes -= (i - j) % 2
                i = text.find(b'\\"', i + 2)
        self.quotes += quotes
        if data:
            run = len(data) - len(data.rstrip(b"\\"))
            odd = run % 2 == 1
            self._odd_backslashes = self._odd_backslashes ^ odd if run == len(data) else odd
        return data


def _stream_json(f, spool: _Spool, backend: Any) -> Any:
    """Build the document from parser events, moving long strings to `spool` as they arrive.

    Objects go through `_object_hook` like in `json.loads`, so repeated keys are detected the same way.
    """
    reader = _CheckedReader(f, unicode_space_ok=getattr(backend, "backend_name", "") != "python")
    try:
        root = _build(backend.basic_parse(reader, use_float=True, buf_size=_READ_CHUNK), spool)
    except Exception:
        if reader.problem:  # the parser failed because the reader cut the file short
            raise _NotStreamable(reader.problem) from None
        raise
    while not reader.eof:  # the parser stopped before the end (it should not): the rest must be blank
        if reader.read(_READ_CHUNK).strip(b" \t\n\r"):
            raise _NotStreamable("data after the document")
    if reader.problem:  # the document may have looked complete: the json module decides
        raise _NotStreamable(reader.problem)
    if reader.quotes % 2:
        raise _NotStreamable("an unterminated string after the document")
    if len(root) != 1:
        raise _NotStreamable("not exactly one document")
    return root[0]


def _build(events: Iterator[tuple[str, Any]], spool: _Spool) -> list:
    """ijson ``basic_parse`` events -> [document] (objects via `_object_hook`, long strings spooled)."""
    stack: list[list] = []  # open containers: [items, is_object, pending key]
    root: list = []
    min_chars = SPOOL_MIN_CHARS
    for event, value in events:
        if event == "map_key":
            stack[-1][2] = value
            continue
        if event == "start_map" or event == "start_array":
            if len(stack) >= _MAX_STREAM_DEPTH:
                raise _NotStreamable(f"nested deeper than {_MAX_STREAM_DEPTH} levels")
            stack.append([[], event == "start_map", None])
            continue
        if event == "end_map":
            value = _object_hook(stack.pop()[0])
        elif event == "end_array":
            value = stack.pop()[0]
        elif event == "string" and len(value) >= min_chars:
            value = spool.add(value)
        if stack:
            frame = stack[-1]
            frame[0].append((frame[2], value) if frame[1] else value)
        else:
            root.append(value)
    if stack:
        raise _NotStreamable("the document ended inside a container")
    return root


def _load_json(p: Path, shown: str, spool: _Spool) -> Any:
    """The parsed document, long strings in `spool`: streamed when possible, else through `json`."""
    backend = _ijson_backend()
    reason = "ijson is not installed"
    if backend is not None:
        try:
            with open(p, "rb") as f:
                return _stream_json(f, spool, backend)
        except BenchmarkError:
            raise
        except OSError as e:
            raise BenchmarkError(f"cannot read benchmark file {shown}: {e}.") from None
        except Exception as e:  # a syntax error, not UTF-8, ...: json gives the exact message (or reads it)
            reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
            spool.reset()
    doc = _parse_json(_read_text(p, shown), shown)
    if backend is not None:
        log.warning("%s: read into memory with the json module; the streaming parser could not take it (%s)",
                    shown, reason)
    return _spool_tree(doc, spool)


def _load_jsonl(p: Path, shown: str, spool: _Spool) -> tuple[list, list[str]]:
    """(pairs, labels) of a JSONL file, read one line at a time, long strings in `spool`.

    Any problem sends the file through the in-memory path, which reports the exact error (the whole
    file is validated as UTF-8 before any line is parsed, as before).
    """
    items: list = []
    labels: list[str] = []
    try:
        with open(p, "rb") as f:
            lineno = 0
            for k, raw in enumerate(f):  # split at b"\n"; splitlines() then gives str.splitlines()'s lines
                if k == 0 and raw.startswith(codecs.BOM_UTF8):
                    raw = raw[len(codecs.BOM_UTF8):]
                for line in raw.decode("utf-8").splitlines():
                    lineno += 1
                    if not line.strip():
                        continue
                    items.append(_spool_tree(json.loads(line, object_pairs_hook=_object_hook), spool))
                    labels.append(f"the pair on line {lineno}")
        if items:
            return items, labels
    except BenchmarkError:
        raise
    except OSError as e:
        raise BenchmarkError(f"cannot read benchmark file {shown}: {e}.") from None
    except Exception:  # noqa: BLE001 - the in-memory path below reports it exactly
        pass
    spool.reset()
    items, labels = _parse_jsonl_text(_read_text(p, shown), shown)
    return [_spool_tree(item, spool) for item in items], labels


def _category_name(value: Any, what: str, shown: str) -> str:
    value = _materialize(value)
    if isinstance(value, bool) or not isinstance(value, (str, int)) or str(value).strip() == "":
        raise BenchmarkError(f"benchmark file {shown}: {what} has no usable category name "
                             f"(got {value!r}; expected a non-empty string).")
    return str(value)


def _group_flat(items: list, shown: str, labels: list[str]) -> dict[str, list]:
    """A flat list of pairs with a `category` field -> {category: [pairs]} (first-appearance order)."""
    groups: dict[str, list] = {}
    for item, label in zip(items, labels):
        if not isinstance(item, dict):
            raise BenchmarkError(f"benchmark file {shown}: {label} is {_kind(item)}, not a pair object "
                                 "(a flat list needs objects with a 'category' field).")
        if "category" not in item:
            raise BenchmarkError(f"benchmark file {shown}: {label} has no 'category' field (a flat list "
                                 "of pairs needs one per pair).")
        cat = _category_name(item["category"], label, shown)
        pair = dict(item)
        del pair["category"]
        groups.setdefault(cat, []).append(pair)
    return groups


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, _Spooled):
        return "a string"
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)


def _check_dups(obj: Any, shown: str, where: str) -> None:
    if isinstance(obj, _DupDict):
        raise BenchmarkError(f"benchmark file {shown}: {where} repeats the key(s) "
                             f"{', '.join(map(repr, obj.duplicates))}; JSON would silently keep only the "
                             "last one.")


def _split_categories(doc: Any, shown: str) -> tuple[dict[str, list], dict]:
    """The parsed document -> ({category: [raw pairs]}, info)."""
    info: dict = {}
    if isinstance(doc, list):
        return _group_flat(doc, shown, [f"entry {i} of the top-level list" for i in range(len(doc))]), info
    if not isinstance(doc, dict):
        raise BenchmarkError(f"benchmark file {shown}: the top level is {_kind(doc)}; expected an object "
                             "mapping category -> pairs, {'categories': [...]}, or a list of pairs.")
    _check_dups(doc, shown, "the top-level object")
    cats = doc.get("categories")
    if isinstance(cats, list) and cats and all(
            isinstance(c, dict) and "data_pairs" in c and ("name" in c or "category" in c) for c in cats):
        groups: dict[str, list] = {}
        for i, c in enumerate(cats):
            _check_dups(c, shown, f"categories[{i}]")
            name = _category_name(c.get("name", c.get("category")), f"categories[{i}]", shown)
            if name in groups:
                raise BenchmarkError(f"benchmark file {shown}: category {name!r} appears twice in "
                                     "'categories'.")
            if not isinstance(c["data_pairs"], list):
                raise BenchmarkError(f"benchmark file {shown}: category {name!r}: 'data_pairs' is "
                                     f"{_kind(c['data_pairs'])}, expected a list of pairs.")
            groups[name] = c["data_pairs"]
        info = {k: v for k, v in doc.items() if k != "categories"}
        return groups, info
    if isinstance(doc.get("data_pairs"), list) and all(
            isinstance(p, dict) and "category" in p for p in doc["data_pairs"]):
        labels = [f"entry {i} of 'data_pairs'" for i in range(len(doc["data_pairs"]))]
        return _group_flat(doc["data_pairs"], shown, labels), {
            k: v for k, v in doc.items() if k != "data_pairs"}
    groups = {}
    for key, value in doc.items():
        if isinstance(value, list):
            groups[key] = value
        elif isinstance(value, dict):
            _check_dups(value, shown, f"category {key!r}")
            if "data_pairs" not in value:
                raise BenchmarkError(
                    f"benchmark file {shown}: category {key!r} is an object without 'data_pairs' (its "
                    f"keys: {', '.join(map(repr, list(value)[:10]))}); expected a list of pairs or "
                    "{'data_pairs': [...]}.")
            if not isinstance(value["data_pairs"], list):
                raise BenchmarkError(f"benchmark file {shown}: category {key!r}: 'data_pairs' is "
                                     f"{_kind(value['data_pairs'])}, expected a list of pairs.")
            groups[key] = value["data_pairs"]
        else:  # scalars next to categories (version, name ...) are file metadata
            info[key] = value
    if not groups:
        raise BenchmarkError(
            f"benchmark file {shown}: unrecognised top-level shape: no key holds a list of pairs (keys: "
            f"{', '.join(map(repr, list(doc)[:10])) or 'none'}). Expected {{category: [pairs]}}, "
            "{category: {'data_pairs': [pairs]}}, {'categories': [{'name', 'data_pairs'}]} or a list "
            "of pairs with a 'category' field.")
    return groups, info


def _first(pair: dict, names: tuple[str, ...], spooled: bool = False) -> tuple[str | None, Any]:
    """The first of `names` present and not null, and its value (read back from the spool unless
    `spooled`: the image field keeps its reference)."""
    for n in names:
        if n in pair and pair[n] is not None:
            return n, (pair[n] if spooled else _materialize(pair[n]))
    return None, None


def _is_blob(key: str, value: Any) -> bool:
    k = key.lower()
    if k.endswith("b64") or k.endswith("base64"):
        return True
    if isinstance(value, str) and (len(value) > _BIG_STRING or _DATA_URL.match(value[:200] or "")):
        return True
    if isinstance(value, _Spooled) and (value.length > _BIG_STRING or _DATA_URL.match(value.head)):
        return True
    if isinstance(value, list) and value and all(isinstance(v, (str, _Spooled)) and _is_blob("", v)
                                                 for v in value):
        return True
    return False


def _parse_pair(raw: Any, category: str, index: int, source: str, base_dir: Path) -> PairSpec:
    default_id = f"{index:04d}"
    spec = PairSpec(category=category, pair_id=default_id, index=index, file_stem="",
                    instruction=None, description=None, source=source)
    if not isinstance(raw, dict):
        spec.file_stem = safe_name(spec.pair_id)
        spec.error = f"{spec.where()} (position {index}): the pair is {_kind(raw)}, not an object"
        return spec
    problems: list[str] = []

    # id
    id_field, pid = _first(raw, ID_FIELDS)
    if id_field is not None:
        if isinstance(pid, bool) or not isinstance(pid, (str, int)) or str(pid).strip() == "":
            problems.append(f"field {id_field!r}: must be a non-empty string or an integer, got {pid!r}; "
                            f"using the position id {default_id!r}")
        else:
            spec.pair_id = str(pid)
    spec.file_stem = safe_name(spec.pair_id)

    # instruction
    f_ins, ins = _first(raw, INSTRUCTION_FIELDS)
    if f_ins is None:
        problems.append("no edit instruction (field 'edit_instruction' or 'instruction' is missing or "
                        "null)")
    elif not isinstance(ins, str):
        problems.append(f"field {f_ins!r}: must be a string, got {_kind(ins)}")
    elif not ins.strip():
        problems.append(f"field {f_ins!r}: the edit instruction is empty")
    else:
        spec.instruction = ins.strip()

    # description
    f_desc, desc = _first(raw, DESCRIPTION_FIELDS)
    if f_desc is not None:
        if not isinstance(desc, str):
            problems.append(f"field {f_desc!r}: must be a string or null, got {_kind(desc)}")
        else:
            spec.description = desc.strip() or None

    # image
    f_b64, b64 = _first(raw, IMAGE_B64_FIELDS, spooled=True)
    f_path, ipath = _first(raw, IMAGE_PATH_FIELDS)
    if f_b64 is not None:
        spec.image_field = f_b64
        is_text = isinstance(b64, (str, _Spooled))
        if not is_text or _blank(b64):
            problems.append(f"field {f_b64!r}: must be a non-empty base64 string, got "
                            f"{_kind(b64) if not is_text else 'an empty string'}")
        else:
            spec._image_b64 = b64
    elif f_path is not None:
        spec.image_field = f_path
        if not isinstance(ipath, str) or not ipath.strip():
            problems.append(f"field {f_path!r}: must be a non-empty path string, got {ipath!r}")
        else:
            p = Path(ipath).expanduser()
            p = p if p.is_absolute() else base_dir / p
            spec.image_path = str(p)
            if not p.is_file():
                problems.append(f"field {f_path!r}: image file not found: {p}")
    else:
        problems.append("no image field (expected 'original_image_b64', 'image_b64' or "
                        "'original_image_path')")

    # reference images
    if raw.get(REFERENCE_FIELD) is not None:
        refs = raw[REFERENCE_FIELD]
        if not isinstance(refs, list) or not all(isinstance(r, (str, _Spooled)) and not _blank(r) for r in refs):
            problems.append(f"field {REFERENCE_FIELD!r}: must be a list of base64 strings")
        else:
            spec._reference_b64 = list(refs)

    if isinstance(raw, _DupDict):
        problems.append(f"repeated key(s) {', '.join(map(repr, raw.duplicates))} (JSON keeps only the last)")

    # everything else -> metadata (unused synonyms included), blobs left out
    used = {id_field, f_ins, f_desc, spec.image_field, REFERENCE_FIELD}
    for key, value in raw.items():
        if key in used:
            continue
        if _is_blob(key, value):
            spec.omitted_fields.append(key)
        else:
            spec.metadata[key] = _materialize(value)

    if problems:
        spec.error = f"{spec.where()}: " + "; ".join(problems)
    return spec


def _did_you_mean(name: str, options: list[str]) -> str:
    close = difflib.get_close_matches(name, options, n=1, cutoff=0.5)
    return f" Did you mean {close[0]!r}?" if close else ""


def load_benchmark(path: str | Path, categories: list[str] | None = None,
                   limit: int | None = None) -> Benchmark:
    """Parse and validate a benchmark file. No image is decoded here.

    `categories` selects *and orders* categories (None or [] = all, in file order); a name not in the
    file is a `BenchmarkError`. `limit` keeps the first N pairs of each category.
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
    if isinstance(categories, str):
        categories = [categories]
    shown = str(path)
    p = Path(path).expanduser()
    _check_file(p, shown)
    spool = _Spool(SPOOL_DIR)
    try:
        return _load(p, shown, spool, categories, limit)
    except BaseException:
        spool.close()  # nothing refers to it any more: free the disk now
        raise


def _load(p: Path, shown: str, spool: _Spool, categories: list[str] | None, limit: int | None) -> Benchmark:
    source = p.name
    if p.suffix.lower() in (".jsonl", ".ndjson"):
        items, labels = _load_jsonl(p, shown, spool)
        groups = _group_flat(items, shown, labels)
        del items
        info: dict = {}
    else:
        groups, info = _split_categories(_load_json(p, shown, spool), shown)
        info = _materialize(info)

    base_dir = p.resolve().parent
    pairs: dict[str, list[PairSpec]] = {}
    for cat, raws in groups.items():
        specs = [_parse_pair(r, cat, i, source, base_dir) for i, r in enumerate(raws)]
        seen_ids: dict[str, int] = {}
        seen_stems: dict[str, PairSpec] = {}
        for s in specs:
            if s.pair_id in seen_ids:
                raise BenchmarkError(
                    f"benchmark file {shown}: category {cat!r} has two pairs with id {s.pair_id!r} "
                    f"(positions {seen_ids[s.pair_id]} and {s.index}); pair ids must be unique within a "
                    "category (pairs without an id get their position, zero-padded to 4 digits).")
            seen_ids[s.pair_id] = s.index
            key = s.file_stem.casefold()
            if key in seen_stems:
                other = seen_stems[key]
                raise BenchmarkError(
                    f"benchmark file {shown}: category {cat!r}: pair ids {other.pair_id!r} and "
                    f"{s.pair_id!r} give the same file name {s.file_stem!r} (compared ignoring case, as "
                    "on Windows/macOS file systems); rename one of them.")
            seen_stems[key] = s
        pairs[cat] = specs

    cat_stems: dict[str, str] = {}
    for cat in pairs:
        key = safe_name(cat).casefold()
        if key in cat_stems:
            raise BenchmarkError(f"benchmark file {shown}: categories {cat_stems[key]!r} and {cat!r} give "
                                 "the same directory name; rename one of them.")
        cat_stems[key] = cat

    if not any(pairs.values()):
        raise BenchmarkError(f"benchmark file {shown} has no pairs (categories: "
                             f"{', '.join(map(repr, pairs)) or 'none'}).")

    all_categories = list(pairs)
    if categories:
        selected: list[str] = []
        for name in categories:
            name = str(name)
            if name not in pairs:
                raise BenchmarkError(
                    f"category {name!r} is not in benchmark file {shown}; it has: "
                    f"{', '.join(map(repr, all_categories))}.{_did_you_mean(name, all_categories)}")
            if name not in selected:
                selected.append(name)
    else:
        selected = all_categories
    chosen = {c: (pairs[c][:limit] if limit else pairs[c]) for c in selected}
    n_bad = sum(1 for c in selected for s in chosen[c] if s.error)
    if n_bad:
        log.info("%s: %d pair(s) are invalid and will be reported as such", shown, n_bad)
    return Benchmark(path=str(p), categories=selected, pairs=chosen, all_categories=all_categories,
                     info=info, _spool=spool)
