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
"""

from __future__ import annotations

import base64
import binascii
import difflib
import hashlib
import io
import json
import logging
import re
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


# ----------------------------------------------------------------------------- records


@dataclass
class PairSpec:
    """One (original image, instruction) pair. Holds references only; images are decoded on demand."""

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
    _image_b64: str | None = field(default=None, repr=False, compare=False)
    _reference_b64: list[str] = field(default_factory=list, repr=False, compare=False)
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
                return _decode_b64(self._image_b64)
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
                raw = _decode_b64(value)
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

    def iter_pairs(self) -> Iterator[PairSpec]:
        for category in self.categories:
            yield from self.pairs[category]

    def __len__(self) -> int:
        return sum(len(p) for p in self.pairs.values())


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


def _read_text(path: Path, shown: str) -> str:
    if not path.exists():
        raise BenchmarkError(f"benchmark file {shown} does not exist (resolved to {path.resolve()}).")
    if path.is_dir():
        raise BenchmarkError(f"benchmark path {shown} is a directory; give the .json or .jsonl file.")
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


def _category_name(value: Any, what: str, shown: str) -> str:
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


def _first(pair: dict, names: tuple[str, ...]) -> tuple[str | None, Any]:
    for n in names:
        if n in pair and pair[n] is not None:
            return n, pair[n]
    return None, None


def _is_blob(key: str, value: Any) -> bool:
    k = key.lower()
    if k.endswith("b64") or k.endswith("base64"):
        return True
    if isinstance(value, str) and (len(value) > _BIG_STRING or _DATA_URL.match(value[:200] or "")):
        return True
    if isinstance(value, list) and value and all(isinstance(v, str) and _is_blob("", v) for v in value):
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
    f_b64, b64 = _first(raw, IMAGE_B64_FIELDS)
    f_path, ipath = _first(raw, IMAGE_PATH_FIELDS)
    if f_b64 is not None:
        spec.image_field = f_b64
        if not isinstance(b64, str) or not b64.strip():
            problems.append(f"field {f_b64!r}: must be a non-empty base64 string, got "
                            f"{_kind(b64) if not isinstance(b64, str) else 'an empty string'}")
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
        if not isinstance(refs, list) or not all(isinstance(r, str) and r.strip() for r in refs):
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
            spec.metadata[key] = value

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
    text = _read_text(p, shown)
    source = p.name

    if p.suffix.lower() in (".jsonl", ".ndjson"):
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
        groups = _group_flat(items, shown, labels)
        info: dict = {}
    else:
        doc = _parse_json(text, shown)
        groups, info = _split_categories(doc, shown)

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
                     info=info)
