"""Benchmark loading: shapes, synonyms, per-pair and file-level errors, image decoding, safe names."""

from __future__ import annotations

import base64
import copy
import hashlib
import io
import json
import logging
import os
import pickle
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath, PureWindowsPath

import ijson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import src.data as data
import src.data.jsonio as jsonio
from src.data import (BenchmarkError, Benchmark, InvalidPair, PairSpec, load_benchmark, safe_name)

# ----------------------------------------------------------------------------- helpers


def img_bytes(fmt: str = "PNG", mode: str = "RGB", size=(16, 16), color=(200, 30, 40), **save) -> bytes:
    im = Image.new(mode, size, color)
    buf = io.BytesIO()
    im.save(buf, fmt, **save)
    return buf.getvalue()


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


PNG = b64(img_bytes())


def pair(pid="p1", instruction="把玻璃杯推倒", description="桌上有一杯水", **extra) -> dict:
    d = {"pair_id": pid, "original_image_b64": PNG, "edit_instruction": instruction,
         "original_description": description}
    d.update(extra)
    return {k: v for k, v in d.items() if v is not ...}


def write(tmp_path: Path, doc, name="benchmark.json") -> Path:
    p = tmp_path / name
    if isinstance(doc, (bytes, bytearray)):
        p.write_bytes(doc)
    elif isinstance(doc, str):
        p.write_text(doc, encoding="utf-8")
    else:
        p.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    return p


def load(tmp_path, doc, name="benchmark.json", **kw) -> Benchmark:
    return load_benchmark(write(tmp_path, doc, name), **kw)


def only_pair(bm: Benchmark) -> PairSpec:
    (p,) = list(bm.iter_pairs())
    return p


# ----------------------------------------------------------------------------- shapes

SHAPES = {
    "cat_list": {"物理": [pair("a")], "环境": [pair("b"), pair("c")]},
    "cat_data_pairs": {"物理": {"data_pairs": [pair("a")], "note": "x"},
                       "环境": {"data_pairs": [pair("b"), pair("c")]}},
    "categories_list": {"version": 2, "categories": [{"name": "物理", "data_pairs": [pair("a")]},
                                                     {"name": "环境", "data_pairs": [pair("b"), pair("c")]}]},
    "flat_list": [pair("a", category="物理"), pair("b", category="环境"), pair("c", category="环境")],
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_shapes(tmp_path, shape):
    bm = load(tmp_path, SHAPES[shape])
    assert bm.categories == ["物理", "环境"]
    assert [(p.category, p.pair_id, p.index) for p in bm.iter_pairs()] == [
        ("物理", "a", 0), ("环境", "b", 0), ("环境", "c", 1)]
    assert len(bm) == 3
    for p in bm.iter_pairs():
        assert p.error is None
        assert p.instruction == "把玻璃杯推倒" and p.description == "桌上有一杯水"
        assert "category" not in p.metadata
        assert p.load_image().size == (16, 16)


def test_jsonl(tmp_path):
    lines = [json.dumps(pair("a", category="物理"), ensure_ascii=False), "",
             json.dumps(pair("b", category="环境"), ensure_ascii=False), "   ",
             json.dumps(pair("c", category="物理"), ensure_ascii=False), ""]
    bm = load(tmp_path, "\n".join(lines), name="bench.jsonl")
    assert bm.categories == ["物理", "环境"]
    assert [p.pair_id for p in bm.pairs["物理"]] == ["a", "c"]
    assert [p.index for p in bm.pairs["物理"]] == [0, 1]


def test_jsonl_syntax_error_names_line(tmp_path):
    text = json.dumps(pair("a", category="x")) + "\n\n{oops\n"
    with pytest.raises(BenchmarkError, match=r"line 3"):
        load(tmp_path, text, name="bench.jsonl")


def test_utf8_bom_ok(tmp_path):
    raw = json.dumps({"物理": [pair()]}, ensure_ascii=False).encode("utf-8-sig")
    assert load(tmp_path, raw).categories == ["物理"]


# ----------------------------------------------------------------------------- fields


def test_field_synonyms(tmp_path):
    raw = {"id": 7, "image_b64": PNG, "instruction": "换成红色", "description": "两个杯子"}
    p = only_pair(load(tmp_path, {"指代": [raw]}))
    assert (p.pair_id, p.instruction, p.description, p.image_field) == ("7", "换成红色", "两个杯子", "image_b64")
    assert p.file_stem == "7"
    assert p.load_image().mode == "RGB"


def test_first_synonym_wins_other_kept_in_metadata(tmp_path):
    raw = pair(instruction="A", extra_note=1)
    raw["instruction"] = "B"
    p = only_pair(load(tmp_path, {"c": [raw]}))
    assert p.instruction == "A" and p.metadata == {"instruction": "B", "extra_note": 1, "source_format": "native"}


def test_description_optional(tmp_path):
    bm = load(tmp_path, {"c": [pair("a", description=...), pair("b", description=None),
                               pair("c", description="  ")]})
    assert [p.description for p in bm.iter_pairs()] == [None, None, None]
    assert all(p.error is None for p in bm.iter_pairs())


def test_default_ids_from_position(tmp_path):
    raws = [pair(pid=...), pair(pid=...), pair(pid=None)]
    bm = load(tmp_path, {"c": raws})
    assert [p.pair_id for p in bm.iter_pairs()] == ["0000", "0001", "0002"]


def test_data_url_prefix_and_whitespace(tmp_path):
    wrapped = "\n".join(PNG[i:i + 20] for i in range(0, len(PNG), 20))
    raws = [pair("a", original_image_b64="data:image/png;base64," + PNG),
            pair("b", original_image_b64=wrapped),
            pair("c", original_image_b64=PNG.rstrip("=")),  # missing padding
            pair("d", original_image_b64=base64.urlsafe_b64encode(img_bytes()).decode())]
    bm = load(tmp_path, {"c": raws})
    digests = {p.image_sha256() for p in bm.iter_pairs()}
    assert len(digests) == 1
    for p in bm.iter_pairs():
        assert p.load_image().size == (16, 16)


def test_image_path(tmp_path):
    (tmp_path / "imgs").mkdir()
    raw_png = img_bytes()
    (tmp_path / "imgs" / "a.png").write_bytes(raw_png)
    outside = tmp_path.parent / f"{tmp_path.name}_outside.png"
    outside.write_bytes(raw_png)
    sub = tmp_path / "bench"
    sub.mkdir()
    raws = [{"pair_id": "rel", "original_image_path": "../imgs/a.png", "edit_instruction": "x"},
            {"pair_id": "abs", "original_image_path": str(outside), "edit_instruction": "x"},
            {"pair_id": "missing", "original_image_path": "nope.png", "edit_instruction": "x"}]
    bm = load(sub, {"c": raws})
    rel, absolute, missing = bm.iter_pairs()
    assert rel.image_path == str(sub.resolve() / "../imgs/a.png")
    assert rel.load_image().size == (16, 16)
    import hashlib
    assert rel.image_sha256() == hashlib.sha256(raw_png).hexdigest()
    assert absolute.load_image().size == (16, 16)
    assert "not found" in missing.error and "'original_image_path'" in missing.error
    with pytest.raises(InvalidPair, match="not found"):
        missing.load_image()
    outside.unlink()


def test_metadata_kept_without_blobs(tmp_path):
    raws = [pair("a", difficulty=3, tags=["水", "重力"], nested={"k": [1, 2]},
                 mask_b64=PNG, thumbnail="data:image/png;base64," + PNG)]
    p = only_pair(load(tmp_path, {"c": raws}))
    assert p.metadata == {"difficulty": 3, "tags": ["水", "重力"], "nested": {"k": [1, 2]},
                          "source_format": "native"}
    assert sorted(p.omitted_fields) == ["mask_b64", "thumbnail"]
    json.dumps(p.metadata)
    assert PNG not in repr(p)


def test_reference_images(tmp_path):
    raws = [pair("a", reference_images_b64=[PNG, "data:image/png;base64," + b64(img_bytes(size=(8, 4)))]),
            pair("b"), pair("c", reference_images_b64=[PNG, "!!!"])]
    a, b, c = load(tmp_path, {"c": raws}).iter_pairs()
    assert [im.size for im in a.extra_images()] == [(16, 16), (8, 4)]
    assert "reference_images_b64" not in a.metadata
    assert b.extra_images() == []
    with pytest.raises(InvalidPair, match=r"field 'reference_images_b64\[1\]': not valid base64"):
        c.extra_images()


def test_named_images_roles_editor_and_judge(tmp_path):
    """reference_images_b64 -> original_2...; named_images_b64 adds roles; 'reference' is judge-only."""
    gt = b64(img_bytes(size=(6, 10)))
    raws = [pair("a", reference_images_b64=[PNG], named_images_b64={"reference": gt}),
            pair("b", named_images_b64={"Bad Role": PNG}),
            pair("c", reference_images_b64=[PNG], named_images_b64={"original_2": PNG}),
            pair("d", named_images_b64=[PNG])]
    a, b, c, d = load(tmp_path, {"c": raws}).iter_pairs()
    assert a.image_roles == ["original_2", "reference"] and a.editor_roles == ["original_2"]
    assert [im.size for im in a.extra_images()] == [(16, 16)]  # the editor never gets the reference
    assert {k: im.size for k, im in a.named_images().items()} == {"original_2": (16, 16), "reference": (6, 10)}
    assert a.metadata == {"source_format": "native"}
    assert "snake_case" in b.error and "named_images_b64['Bad Role']" in b.error
    assert "given twice" in c.error
    assert "must be an object {role: base64 string}, got a list" in d.error
    with pytest.raises(KeyError, match="no extra image with role 'gt'"):
        a.load_named_image("gt")
    q = pickle.loads(pickle.dumps(a))
    assert q.named_images()["reference"].size == (6, 10)


# ----------------------------------------------------------------------------- selection / limit


def test_category_selection_and_order(tmp_path):
    doc = {"物理": [pair("a")], "环境": [pair("b")], "社会": [pair("c")]}
    bm = load(tmp_path, doc, categories=["社会", "物理"])
    assert bm.categories == ["社会", "物理"]
    assert [p.pair_id for p in bm.iter_pairs()] == ["c", "a"]
    assert bm.all_categories == ["物理", "环境", "社会"]
    assert set(bm.pairs) == {"社会", "物理"}
    assert load_benchmark(tmp_path / "benchmark.json", categories=[]).categories == ["物理", "环境", "社会"]


def test_unknown_category(tmp_path):
    doc = {"physics": [pair("a")], "环境": [pair("b")]}
    with pytest.raises(BenchmarkError) as e:
        load(tmp_path, doc, categories=["physcs"])
    msg = str(e.value)
    assert "'physcs'" in msg and "'physics'" in msg and "'环境'" in msg and "Did you mean 'physics'" in msg


def test_limit(tmp_path):
    doc = {"a": [pair(str(i)) for i in range(5)], "b": [pair("x")]}
    bm = load(tmp_path, doc, limit=2)
    assert [p.pair_id for p in bm.pairs["a"]] == ["0", "1"]
    assert [p.pair_id for p in bm.pairs["b"]] == ["x"]
    with pytest.raises(ValueError):
        load_benchmark(tmp_path / "benchmark.json", limit=0)


# ----------------------------------------------------------------------------- bad pairs


def _truncated_png() -> str:
    im = Image.effect_noise((64, 64), 50).convert("RGB")
    buf = io.BytesIO()
    im.save(buf, "PNG")
    raw = buf.getvalue()
    return b64(raw[: len(raw) // 2])


BAD_PAIRS = [
    # (pair, expected message part, raised at parse time?)
    (pair("bad_b64", original_image_b64="not*base64"), "field 'original_image_b64': not valid base64", False),
    (pair("not_img", original_image_b64=b64(b"hello world, not an image")),
     "field 'original_image_b64': not a recognised image", False),
    (pair("trunc", original_image_b64=_truncated_png()),
     "field 'original_image_b64': PNG image data is truncated or corrupt", False),
    (pair("no_ins", instruction=...), "no edit instruction", True),
    (pair("empty_ins", instruction="  "), "field 'edit_instruction': the edit instruction is empty", True),
    (pair("int_ins", instruction=5), "field 'edit_instruction': must be a string", True),
    (pair("no_img", original_image_b64=...), "no image field", True),
    (pair("empty_img", original_image_b64=""), "field 'original_image_b64': must be a non-empty", True),
    (pair("null_image", original_image_b64=None), "field 'original_image_b64': image is null", True),
    (pair("bad_desc", description=["x"]), "field 'original_description': must be a string", True),
]


@pytest.mark.parametrize("bad,expected,at_parse", BAD_PAIRS, ids=[b[0].get("pair_id") for b in BAD_PAIRS])
def test_bad_pair_is_isolated(tmp_path, bad, expected, at_parse):
    bm = load(tmp_path, {"物理": [pair("ok1"), bad, pair("ok2")]})
    ok1, bad_spec, ok2 = bm.iter_pairs()
    prefix = f"benchmark.json, category '物理', pair '{bad['pair_id']}'"
    if at_parse:
        assert bad_spec.error is not None
        assert bad_spec.error.startswith(prefix) and expected in bad_spec.error, bad_spec.error
    else:
        assert bad_spec.error is None
    with pytest.raises(InvalidPair) as e:
        bad_spec.load_image()
    assert str(e.value).startswith(prefix) and expected in str(e.value), str(e.value)
    for ok in (ok1, ok2):
        assert ok.error is None and ok.load_image().size == (16, 16)


@pytest.mark.parametrize("value", [None, "a string", 3, []])
def test_non_object_pair(tmp_path, value):
    bm = load(tmp_path, {"物理": [pair("ok"), value]})
    ok, bad = bm.iter_pairs()
    assert ok.error is None
    assert bad.pair_id == "0001"
    assert "benchmark.json, category '物理', pair '0001'" in bad.error and "not an object" in bad.error
    with pytest.raises(InvalidPair):
        bad.load_image()


def test_bad_id_type_falls_back_to_position(tmp_path):
    (p,) = load(tmp_path, {"c": [pair(pid=["x"])]}).iter_pairs()
    assert p.pair_id == "0000" and "field 'pair_id'" in p.error


def test_decompression_bomb_module_limit(tmp_path, monkeypatch):
    bm = load(tmp_path, {"c": [pair("big", original_image_b64=b64(img_bytes(size=(20, 20)))), pair("small")]})
    monkeypatch.setattr(data, "MAX_IMAGE_PIXELS", 300)
    big, small = bm.iter_pairs()
    with pytest.raises(InvalidPair, match=r"pair 'big', field 'original_image_b64': image is 20x20 = 400 pixels"):
        big.load_image()
    assert small.load_image().size == (16, 16)  # 256 pixels, under the limit


def test_decompression_bomb_pil_limit(tmp_path, monkeypatch):
    bm = load(tmp_path, {"c": [pair("big", original_image_b64=b64(img_bytes(size=(20, 20))))]})
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # PIL warns above 100 and fails above 200
    with pytest.raises(InvalidPair, match="decompression bomb"):
        only_pair(bm).load_image()


def test_hash_needs_no_decoding(tmp_path):
    p = only_pair(load(tmp_path, {"c": [pair("x", original_image_b64=b64(b"not an image"))]}))
    import hashlib
    assert p.image_sha256() == hashlib.sha256(b"not an image").hexdigest()
    with pytest.raises(InvalidPair):
        p.load_image()


def test_load_benchmark_does_not_decode(tmp_path, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("decoded an image while loading the benchmark")

    monkeypatch.setattr(Image, "open", boom)
    bm = load(tmp_path, {"c": [pair("a"), pair("b")]})
    assert len(bm) == 2


# ----------------------------------------------------------------------------- bad files

BAD_FILES = [
    ("missing", None, "does not exist"),
    ("empty", b"", "is empty"),
    ("whitespace", b"  \n\t", "is empty"),
    ("syntax", '{"物理": [\n  {"pair_id": "a",}\n]}', r"not valid JSON: .* line 2, column"),
    ("gbk", json.dumps({"物理": [pair()]}, ensure_ascii=False).encode("gbk"), "not UTF-8.*GB18030"),
    ("latin1", b'{"\xe9": []}', "not UTF-8"),
    ("scalar", "42", "top level is a number"),
    ("no_lists", {"version": 1, "name": "x"}, "unrecognised top-level shape"),
    ("obj_without_data_pairs", {"物理": {"pairs": []}}, "without 'data_pairs'"),
    ("data_pairs_not_list", {"物理": {"data_pairs": {}}}, "'data_pairs' is an object"),
    ("no_pairs", {"物理": [], "环境": {"data_pairs": []}}, "has no pairs"),
    ("flat_without_category", [pair("a", category="x"), pair("b")], "entry 1 .* no 'category' field"),
    ("flat_null", [pair("a", category="x"), None], "entry 1 .* null"),
    ("dup_ids", {"物理": [pair("a"), pair("b"), pair("a")]}, "category '物理' has two pairs with id 'a'"),
    ("dup_int_str_ids", {"物理": [pair(3), pair("3")]}, "two pairs with id '3'"),
    ("dup_default_id", {"c": [pair(pid=...), pair("0000")]}, "two pairs with id '0000'"),
    ("stem_case_collision", {"c": [pair("Ab"), pair("aB")]}, "same file name"),
    ("dup_category_key", '{"物理": [], "物理": []}', "repeats the key.*'物理'"),
    ("dup_category_name", {"categories": [{"name": "a", "data_pairs": [pair()]},
                                          {"name": "a", "data_pairs": [pair()]}]}, "'a' appears twice"),
    ("category_dir_collision", {"A": [pair()], "a": [pair()]}, "same directory name"),
]


@pytest.mark.parametrize("name,doc,pattern", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_bad_files(tmp_path, name, doc, pattern):
    path = tmp_path / "benchmark.json" if doc is None else write(tmp_path, doc)
    with pytest.raises(BenchmarkError, match=pattern) as e:
        load_benchmark(path)
    assert "benchmark.json" in str(e.value)


def test_directory_is_bad_file(tmp_path):
    with pytest.raises(BenchmarkError, match="is a directory"):
        load_benchmark(tmp_path)


def test_duplicate_key_in_pair_is_pair_error(tmp_path):
    text = '{"c": [{"pair_id": "a", "edit_instruction": "x", "edit_instruction": "y", "image_b64": "%s"}]}' % PNG
    p = only_pair(load(tmp_path, text))
    assert "repeated key" in p.error and "'edit_instruction'" in p.error


# ----------------------------------------------------------------------------- image modes


def decoded(tmp_path, raw: bytes) -> Image.Image:
    p = only_pair(load(tmp_path, {"c": [pair("x", original_image_b64=b64(raw))]}))
    im = p.load_image()
    assert im.mode == "RGB"
    return im


def test_exif_orientation_applied(tmp_path):
    im = Image.new("RGB", (16, 8), (255, 0, 0))
    im.paste((0, 0, 255), (0, 0, 4, 8))  # blue strip on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to display
    buf = io.BytesIO()
    im.save(buf, "JPEG", exif=exif.tobytes(), quality=95)
    out = decoded(tmp_path, buf.getvalue())
    assert out.size == (8, 16)
    r, g, b = out.getpixel((4, 1))  # blue strip is now at the top
    assert b > 200 and r < 60


@pytest.mark.parametrize("case", ["palette", "grayscale", "bilevel", "cmyk_jpeg", "jpeg", "webp", "gif",
                                  "rgb16_png", "gray16_png", "bmp", "tiff"])
def test_modes_to_rgb(tmp_path, case):
    if case == "palette":
        im = Image.new("RGB", (16, 16), (200, 30, 40)).convert("P", palette=Image.Palette.ADAPTIVE)
        buf = io.BytesIO()
        im.save(buf, "PNG")
        raw = buf.getvalue()
        expect = (200, 30, 40)
    elif case == "grayscale":
        raw, expect = img_bytes(mode="L", color=100), (100, 100, 100)
    elif case == "bilevel":
        raw, expect = img_bytes(mode="1", color=1), (255, 255, 255)
    elif case == "cmyk_jpeg":
        raw, expect = img_bytes("JPEG", mode="CMYK", color=(0, 255, 255, 0), quality=95), (255, 0, 0)
    elif case == "jpeg":
        raw, expect = img_bytes("JPEG", quality=95), (200, 30, 40)
    elif case == "webp":
        raw, expect = img_bytes("WEBP", lossless=True), (200, 30, 40)
    elif case == "gif":
        raw, expect = img_bytes("GIF"), (200, 30, 40)
    elif case == "bmp":
        raw, expect = img_bytes("BMP"), (200, 30, 40)
    elif case == "tiff":
        raw, expect = img_bytes("TIFF"), (200, 30, 40)
    elif case == "gray16_png":
        raw, expect = img_bytes(mode="I;16", color=40000), (155, 155, 155)  # scaled, not clipped to 255
    else:  # 16-bit RGB PNG written by hand (PIL cannot write it)
        raw, expect = _png16_rgb((16, 16), (51400, 7710, 10280)), (200, 30, 40)
    out = decoded(tmp_path, raw)
    assert out.size == (16, 16)
    assert all(abs(a - b) <= 8 for a, b in zip(out.getpixel((8, 8)), expect)), out.getpixel((8, 8))


def _png16_rgb(size, color) -> bytes:
    import struct
    import zlib

    w, h = size
    row = b"\x00" + struct.pack(">HHH", *color) * w
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(row * h)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("mode", ["RGBA", "LA", "RGBA-webp"])
def test_transparency_composited_on_white(tmp_path, mode):
    im = Image.new("RGBA", (16, 16), (0, 0, 0, 0))  # fully transparent black
    im.paste((255, 0, 0, 255), (0, 0, 8, 16))  # opaque red left half
    if mode == "LA":
        im = im.convert("LA")
    buf = io.BytesIO()
    im.save(buf, "WEBP", lossless=True) if mode.endswith("webp") else im.save(buf, "PNG")
    out = decoded(tmp_path, buf.getvalue())
    assert out.getpixel((12, 8)) == (255, 255, 255)
    assert out.getpixel((2, 8)) != (255, 255, 255)


def test_palette_with_transparency_index(tmp_path):
    im = Image.new("P", (16, 16), 0)
    im.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    im.paste(1, (0, 0, 8, 16))
    buf = io.BytesIO()
    im.save(buf, "PNG", transparency=0)
    out = decoded(tmp_path, buf.getvalue())
    assert out.getpixel((12, 8)) == (255, 255, 255) and out.getpixel((2, 8)) == (255, 0, 0)


def test_animated_takes_first_frame(tmp_path):
    frames = [Image.new("RGB", (16, 16), c) for c in [(255, 0, 0), (0, 0, 255)]]
    buf = io.BytesIO()
    frames[0].save(buf, "WEBP", save_all=True, append_images=frames[1:], lossless=True)
    out = decoded(tmp_path, buf.getvalue())
    assert out.getpixel((8, 8))[0] > 200


def test_refused_format(tmp_path):
    raw = img_bytes("PPM")
    p = only_pair(load(tmp_path, {"c": [pair("x", original_image_b64=b64(raw))]}))
    with pytest.raises(InvalidPair, match="not a recognised image"):
        p.load_image()


# ----------------------------------------------------------------------------- ids and safe names


def test_awkward_ids(tmp_path):
    ids = ["../evil", "a/b", "a_b", "物理-1", "..", ".", "CON", "x" * 300, "a\\b", "a\x00b"]
    bm = load(tmp_path, {"指代": [pair(i) for i in ids]})
    stems = [p.file_stem for p in bm.iter_pairs()]
    assert [p.pair_id for p in bm.iter_pairs()] == ids
    assert len(set(stems)) == len(ids)
    assert stems[2] == "a_b" and stems[3] == "物理-1"
    for s in stems:
        _assert_contained(s)


def _assert_contained(name: str) -> None:
    assert name and name not in (".", "..")
    assert "/" not in name and "\\" not in name and "\x00" not in name
    assert len(name.encode("utf-8")) <= data.MAX_NAME_BYTES
    for pure in (PurePosixPath, PureWindowsPath):
        p = pure("base") / name
        assert p.parent == pure("base") and p.name == name and not pure(name).is_absolute()
        assert not pure(name).drive and not pure(name).anchor
    base = Path("/tmp/base")
    assert Path(os.path.normpath(base / name)).parent == base
    assert name.split(".")[0].upper() not in data._WINDOWS_RESERVED
    assert not any(c in name for c in '<>:"|?* ') and all(ord(c) >= 32 for c in name)
    assert not name.endswith(".") and not name.startswith(".")


def test_safe_name_examples():
    assert safe_name("物理") == "物理"
    assert safe_name("pair_001-a.v2") == "pair_001-a.v2"
    assert safe_name("a/b") != safe_name("a_b") == "a_b"
    assert safe_name("a/b").startswith("a_b~")
    assert safe_name("a/b") != safe_name("a\\b")
    assert safe_name("") and safe_name(".") != safe_name("..")
    assert safe_name("con").startswith("_con") and safe_name("LPT1.txt").startswith("_LPT1")
    assert safe_name(3) == "3"


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=200))
def test_safe_name_never_escapes(text):
    name = safe_name(text)
    _assert_contained(name)
    assert safe_name(text) == name  # deterministic
    if "~" not in name:
        assert name == text


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("ab/\\._~ .物\x00"), max_size=8),
       st.text(alphabet=st.sampled_from("ab/\\._~ .物\x00"), max_size=8))
def test_safe_name_injective(a, b):
    if a != b:
        assert safe_name(a) != safe_name(b)


# ----------------------------------------------------------------------------- sample benchmark

REPO = Path(__file__).resolve().parent.parent


def _sample_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_sample_benchmark",
                                                  REPO / "scripts" / "make_sample_benchmark.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sample_benchmark_is_reproducible():
    committed = (REPO / "data" / "sample_benchmark.json").read_bytes()
    assert _sample_script().build() == committed, (
        "data/sample_benchmark.json is out of date: run python scripts/make_sample_benchmark.py")
    assert len(committed) < 100_000


def test_sample_benchmark_loads():
    bm = load_benchmark(REPO / "data" / "sample_benchmark.json")
    assert bm.categories == ["物理", "环境", "社会", "因果", "指代"]
    assert all(len(bm.pairs[c]) == 3 for c in bm.categories)
    sizes = set()
    for p in bm.iter_pairs():
        assert p.error is None and p.instruction and p.description
        im = p.load_image()
        assert im.mode == "RGB"
        sizes.add(im.size)
    assert len(sizes) >= 3  # varied aspect ratios


def test_sample_png_encoder_roundtrip():
    m = _sample_script()
    for rows in m.BENCHMARK.values():
        for _, draw, *_ in rows:
            im = draw()
            out = Image.open(io.BytesIO(m.encode_png(im)))
            assert out.size == im.size and out.tobytes() == im.tobytes()


# ----------------------------------------------------------------------------- streaming and the spool file

def _noise_png(size=(64, 64)) -> bytes:
    im = Image.effect_noise(size, 60).convert("RGB")
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


BIG_RAW = _noise_png()
BIG = b64(BIG_RAW)  # ~16 KB of base64: over SPOOL_MIN_CHARS
assert len(BIG) > data.SPOOL_MIN_CHARS


def _backends() -> list[str]:
    names = []
    for name in ("yajl2_c", "python"):
        try:
            ijson.get_backend(name)
            names.append(name)
        except ImportError:
            pass
    return names


def test_c_backend_preferred():
    """The wheels of the pinned ijson carry the C parser (yajl2_c): it must be the one used."""
    if "yajl2_c" not in _backends():
        pytest.skip("this ijson build has no C backend (the pure-Python one is used: slower, same results)")
    assert data._ijson_backend().backend_name == "yajl2_c"


def _open_fds() -> int | None:
    fd_dir = Path("/proc/self/fd")
    return len(os.listdir(fd_dir)) if fd_dir.is_dir() else None


def test_long_strings_are_spooled(tmp_path):
    note = "说明" * 2000  # long, but not a blob: kept in metadata, read back from the spool
    raws = [pair("a", original_image_b64=BIG, notes=note, mask_b64=BIG, reference_images_b64=[BIG, PNG]),
            pair("b")]
    bm = load(tmp_path, {"version": "v" * 3000, "c": raws})
    a, b = bm.iter_pairs()
    assert isinstance(a._image_b64, data._Spooled) and isinstance(a._extras[0][2], data._Spooled)
    assert isinstance(b._image_b64, str)  # short values stay in memory
    assert bm._spool.size >= 3 * len(BIG) + len(note.encode())
    assert a.metadata == {"notes": note, "source_format": "native"} and a.omitted_fields == ["mask_b64"]
    assert bm.info == {"version": "v" * 3000}
    assert a.image_sha256() == hashlib.sha256(BIG_RAW).hexdigest()
    assert a.load_image().size == (64, 64)
    assert [im.size for im in a.extra_images()] == [(64, 64), (16, 16)]
    assert BIG not in repr(a) and BIG not in repr(bm)


def test_small_benchmark_opens_no_spool_file(tmp_path):
    before = _open_fds()
    bm = load(tmp_path, {"c": [pair("a")]})
    assert bm._spool._file is None
    assert _open_fds() == before


def test_close_releases_the_spool(tmp_path):
    path = write(tmp_path, {"c": [pair("a", original_image_b64=BIG), pair("b")]})
    before = _open_fds()
    with load_benchmark(path) as bm:
        a, b = bm.iter_pairs()
        if before is not None:
            assert _open_fds() == before + 1
        assert a.image_sha256() == hashlib.sha256(BIG_RAW).hexdigest()
    assert _open_fds() == before
    with pytest.raises(RuntimeError, match="closed"):
        a.load_image()
    assert b.load_image().size == (16, 16)  # short values were never spooled
    bm.close()  # idempotent


def test_garbage_collection_releases_the_spool(tmp_path):
    import gc

    path = write(tmp_path, {"c": [pair("a", original_image_b64=BIG)]})
    before = _open_fds()
    if before is None:
        pytest.skip("needs /proc/self/fd")
    bm = load_benchmark(path)
    (p,) = bm.iter_pairs()
    del bm
    gc.collect()
    assert _open_fds() == before + 1  # the pair still needs it
    assert p.load_image().size == (64, 64)
    del p
    gc.collect()
    assert _open_fds() == before


def test_failed_load_releases_the_spool(tmp_path):
    path = write(tmp_path, {"c": [pair("a", original_image_b64=BIG), pair("a", original_image_b64=BIG)]})
    before = _open_fds()
    with pytest.raises(BenchmarkError, match="two pairs with id 'a'"):
        load_benchmark(path)
    assert _open_fds() == before


def test_pickle_and_deepcopy_inline_the_image(tmp_path):
    bm = load(tmp_path, {"c": [pair("a", original_image_b64=BIG, reference_images_b64=[BIG])]})
    (p,) = bm.iter_pairs()
    copies = [pickle.loads(pickle.dumps(p)), copy.deepcopy(p)]
    bm.close()
    for q in copies:
        assert isinstance(q._image_b64, str)
        assert q.image_sha256() == hashlib.sha256(BIG_RAW).hexdigest() and q.load_image().size == (64, 64)
        assert len(q.extra_images()) == 1
        assert (q.pair_id, q.metadata, q.instruction) == (p.pair_id, p.metadata, p.instruction)


def test_spool_is_read_safely_from_threads(tmp_path):
    raws = [pair(str(i), original_image_b64=b64(_noise_png((40 + i, 40)))) for i in range(12)]
    bm = load(tmp_path, {"c": raws})
    expected = [hashlib.sha256(base64.b64decode(r["original_image_b64"])).hexdigest() for r in raws]
    pairs = list(bm.iter_pairs())
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda p: hashlib.sha256(p._raw_image()).hexdigest(), pairs * 4))
    assert got == expected * 4


def test_spool_write_error_is_clear(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "SPOOL_DIR", str(tmp_path / "no such folder"))
    with pytest.raises(BenchmarkError, match="temporary spool file.*TMPDIR"):
        load(tmp_path, {"c": [pair("a", original_image_b64=BIG)]})
    assert load(tmp_path, {"c": [pair("a")]}).categories == ["c"]  # nothing long: no file needed


def test_jsonl_crlf_bom_and_long_lines(tmp_path):
    lines = [json.dumps(pair("a", category="物理", original_image_b64=BIG), ensure_ascii=False), "",
             json.dumps(pair("b", category="物理"), ensure_ascii=False)]
    raw = "\r\n".join(lines).encode("utf-8-sig")
    bm = load(tmp_path, raw, name="bench.jsonl")
    a, b = bm.iter_pairs()
    assert isinstance(a._image_b64, data._Spooled) and a.load_image().size == (64, 64)
    assert b.pair_id == "b"
    with pytest.raises(BenchmarkError, match="line 4 is not valid JSON"):
        load(tmp_path, raw + b"\r\n{oops", name="bench.jsonl")


def _json_error(text: str) -> str:
    try:
        json.loads(text)
    except json.JSONDecodeError as e:
        return f"{e.msg} at line {e.lineno}, column {e.colno}."
    raise AssertionError("valid JSON")


@pytest.mark.parametrize("tail", [' "abc', ' "abc\\"', ' 2', ' {', '\x0c', '\x0b ', ', ]', '\x00'])
def test_trailing_garbage_after_long_pairs(tmp_path, tail):
    """Errors after many long strings still name json's line and column (yajl accepts some of these)."""
    text = json.dumps({"c": [pair(str(i), original_image_b64=BIG) for i in range(5)]}, indent=1) + tail
    with pytest.raises(BenchmarkError) as e:
        load(tmp_path, text)
    assert str(e.value).endswith(f"is not valid JSON: {_json_error(text)}"), str(e.value)


@pytest.mark.parametrize("value", ["NaN", "123456789012345678901234567890", "-Infinity", '"\\ud800 alone"',
                                   "[" * 600 + "]" * 600, '{"a": 1e400}'])
def test_valid_json_the_streaming_parser_refuses(tmp_path, caplog, value):
    """json accepts these (yajl does not, or reads a lone surrogate as '?'): read them with json."""
    text = '{"c": [%s, "extra": %s}], "version": 1}' % (json.dumps(pair("a", original_image_b64=BIG))[:-1], value)
    with caplog.at_level(logging.WARNING, logger="src.data"):
        bm = load(tmp_path, text)
    assert "read into memory with the json module" in caplog.text
    expected = json.loads(text)
    assert bm.info == {"version": 1}
    p = only_pair(bm)
    assert repr(p.metadata["extra"]) == repr(expected["c"][0]["extra"])
    assert p.image_sha256() == hashlib.sha256(BIG_RAW).hexdigest()


def test_lone_surrogate_in_pair_is_kept(tmp_path):
    text = json.dumps({"c": [pair("\ud800", instruction="杯子\udc00")]})  # ASCII: \\ud800 escapes
    p = only_pair(load(tmp_path, text))
    assert (p.pair_id, p.instruction) == ("\ud800", "杯子\udc00")


def _stream(raw: bytes, backend: str) -> object:
    spool = data._Spool()
    try:
        return data._materialize(data._stream_json(io.BytesIO(raw), spool, ijson.get_backend(backend)))
    finally:
        spool.close()


def _canon(v):
    """Type- and order-exact form of a parsed document (repeated keys included)."""
    if isinstance(v, dict):
        return ("dict", tuple((k, _canon(x)) for k, x in v.items()), tuple(getattr(v, "duplicates", ())))
    if isinstance(v, list):
        return ("list", tuple(_canon(x) for x in v))
    return (type(v).__name__, repr(v))


def _expected(raw: bytes):
    return _canon(json.loads(raw.decode("utf-8-sig"), object_pairs_hook=data._object_hook))


@pytest.mark.parametrize("backend", _backends())
@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 7, 11, 13, 64 * 1024])
def test_escapes_across_reads(monkeypatch, backend, chunk):
    monkeypatch.setattr(jsonio, "_READ_CHUNK", chunk)
    monkeypatch.setattr(data, "SPOOL_MIN_CHARS", 4)
    raw = '\ufeff{"e": "\\ud83d\\ude00 \\u7269", "q": "a\\\\\\"b\\\\", "s": "\\\\", "k": "\\"\\""}'.encode()
    assert _canon(_stream(raw, backend)) == _expected(raw)
    # refused, so json reads them: lone surrogates, a document followed by an unterminated string, \f;
    # also (needlessly, harmless) an escaped backslash followed by text that looks like a surrogate escape
    for bad in (b'["\\ud800"]', b'["x\\ud83d"]', b'["\\ude00y"]', b'["\\ud83d\\ud83d\\ude00"]',
                b'{"a": "\\\\\\""} "t', b'{} "\\\\', b'{"a": 1}\x0c', b'["\\\\ud800"]'):
        with pytest.raises(Exception):
            _stream(bad, backend)


_json_scalars = (st.none() | st.booleans() | st.integers(-2**63 + 1, 2**63 - 1)
                 | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30)
                 | st.text(st.sampled_from('"\\/\u2028\x7f\U0001f600ab物'), max_size=20))
_json_docs = st.recursive(_json_scalars, lambda c: st.lists(c, max_size=4)
                          | st.lists(st.tuples(st.text(max_size=5), c), max_size=4), max_leaves=25)


def _dump(v, ensure_ascii: bool, sep: str) -> str:
    if isinstance(v, tuple):
        return v  # pragma: no cover
    if isinstance(v, list) and v and all(isinstance(x, tuple) for x in v):  # an object, keys may repeat
        return "{" + ",".join(f"{json.dumps(k, ensure_ascii=ensure_ascii)}{sep}:{sep}"
                              f"{_dump(x, ensure_ascii, sep)}" for k, x in v) + "}"
    if isinstance(v, list):
        return "[" + f",{sep}".join(_dump(x, ensure_ascii, sep) for x in v) + "]"
    return json.dumps(v, ensure_ascii=ensure_ascii)


@settings(max_examples=300, deadline=None)
@given(_json_docs, st.booleans(), st.sampled_from(["", " ", "\n", "\t", "\r\n"]),
       st.sampled_from([1, 3, 8, 4096]), st.sampled_from(_backends()))
def test_streaming_parse_equals_json(doc, ensure_ascii, sep, chunk, backend):
    raw = _dump(doc, ensure_ascii, sep).encode()
    old = jsonio._READ_CHUNK, data.SPOOL_MIN_CHARS
    jsonio._READ_CHUNK, data.SPOOL_MIN_CHARS = chunk, 3
    try:
        got = _canon(_stream(raw, backend))
    except data._NotStreamable:  # only the pure-Python parser refuses some valid text (json reads it)
        assert backend == "python" and data._UNICODE_SPACE.search(raw)
        return
    finally:
        jsonio._READ_CHUNK, data.SPOOL_MIN_CHARS = old
    assert got == _expected(raw)


_noise = st.sampled_from([b"\x0b", b"\x0c", b"\x1f", b"\x00", b"\\ud800", b"\\udc00", b"\xef\xbb\xbf",
                          b"\xc2\xa0", b"\xe3\x80\x80", b"NaN", b",", b"]", b"}", b'"', b"\\", b"\xff", b"\n",
                          b"1e400", b"99999999999999999999", b"/", b" \"abc", b"-"])


@settings(max_examples=400, deadline=None)
@given(_json_docs, st.booleans(), st.lists(st.tuples(st.integers(0, 10**6), _noise, st.booleans()),
                                            min_size=1, max_size=3),
       st.sampled_from([2, 7, 4096]), st.sampled_from(_backends()))
def test_streaming_parse_never_differs_from_json(doc, ensure_ascii, edits, chunk, backend):
    """On damaged text: the streaming parser either refuses (json then decides) or agrees with json."""
    raw = _dump(doc, ensure_ascii, " ").encode()
    for pos, noise, replace in edits:
        pos %= len(raw) + 1
        raw = raw[:pos] + noise + raw[pos + replace:]
    old = jsonio._READ_CHUNK
    jsonio._READ_CHUNK = chunk
    try:
        got = _canon(_stream(raw, backend))
    except Exception:
        return
    finally:
        jsonio._READ_CHUNK = old
    assert got == _expected(raw)


# Existing tests re-run with other loader settings: every string spooled, ijson's pure-Python parser,
# no ijson at all (json in memory), reads of a few bytes.
_VARIANTS = {
    "spool_everything": {"SPOOL_MIN_CHARS": 0},
    "spool_non_empty": {"SPOOL_MIN_CHARS": 1},
    "python_backend": {"SPOOL_MIN_CHARS": 1, "_BACKEND": "python"},
    "no_ijson": {"SPOOL_MIN_CHARS": 0, "_BACKEND": None},
    "tiny_reads": {"SPOOL_MIN_CHARS": 0, "_READ_CHUNK": 3},
}


@pytest.mark.parametrize("variant", sorted(_VARIANTS))
def test_existing_behaviour_under_loader_variants(tmp_path, monkeypatch, variant):
    for name, value in _VARIANTS[variant].items():
        if name == "_BACKEND" and value is not None:
            value = ijson.get_backend(value)
        monkeypatch.setattr(jsonio if name.startswith("_") else data, name, value)
    counter = iter(range(10**6))

    def fresh() -> Path:
        d = tmp_path / f"t{next(counter)}"
        d.mkdir()
        return d

    for shape in SHAPES:
        test_shapes(fresh(), shape)
    for fn in (test_jsonl, test_jsonl_syntax_error_names_line, test_utf8_bom_ok, test_field_synonyms,
               test_first_synonym_wins_other_kept_in_metadata, test_description_optional,
               test_default_ids_from_position, test_data_url_prefix_and_whitespace, test_image_path,
               test_metadata_kept_without_blobs, test_reference_images, test_category_selection_and_order,
               test_unknown_category, test_limit, test_bad_id_type_falls_back_to_position,
               test_hash_needs_no_decoding, test_directory_is_bad_file, test_duplicate_key_in_pair_is_pair_error,
               test_awkward_ids, test_jsonl_crlf_bom_and_long_lines, test_lone_surrogate_in_pair_is_kept):
        fn(fresh())
    for bad, expected, at_parse in BAD_PAIRS:
        test_bad_pair_is_isolated(fresh(), bad, expected, at_parse)
    for value in [None, "a string", 3, []]:
        test_non_object_pair(fresh(), value)
    for name, doc, pattern in BAD_FILES:
        test_bad_files(fresh(), name, doc, pattern)
    for tail in [' "abc', ' 2', '\x0c']:
        test_trailing_garbage_after_long_pairs(fresh(), tail)
    blank = " " * 3000
    p = only_pair(load(fresh(), {"c": [pair("x", original_image_b64=blank)]}))
    assert "field 'original_image_b64': must be a non-empty base64 string, got an empty string" in p.error
    p = only_pair(load(fresh(), {"c": [pair("x", reference_images_b64=[PNG, blank])]}))
    assert "field 'reference_images_b64': must be a list of base64 strings" in p.error
