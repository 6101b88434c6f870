"""Shared image and name checks for every benchmark format: safe file names, base64 / data-URL decoding,
image opening with decompression-bomb, truncation and format checks, conversion to RGB.

A format module never decodes images itself: it hands base64 text or a file path to `PairSpec`, which
decodes through `_decode_b64` and `_open_image` here when the image is first needed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import logging
import re
import unicodedata
import warnings

from PIL import Image, ImageOps, UnidentifiedImageError

from src.data.errors import InvalidPair

log = logging.getLogger("src.data")

# Image formats `load_image` will open (others, e.g. EPS which shells out to Ghostscript, are refused).
ALLOWED_FORMATS = ("PNG", "JPEG", "MPO", "WEBP", "GIF", "BMP", "TIFF", "AVIF")

# safe_name: maximum length of a name in UTF-8 bytes (file systems limit bytes, and CJK characters are
# 3 bytes each); leaves room for extensions and suffixes under the usual 255-byte limit.
MAX_NAME_BYTES = 120


def _max_pixels() -> int:
    import src.data  # the knob lives on the package (src.data.MAX_IMAGE_PIXELS), read at call time

    return int(src.data.MAX_IMAGE_PIXELS)


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
    limit = _max_pixels()
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

