"""Benchmark loading: shapes, synonyms, per-pair and file-level errors, image decoding, safe names."""

from __future__ import annotations

import base64
import io
import json
import os
from pathlib import Path, PurePosixPath, PureWindowsPath

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

import src.data as data
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
    assert p.instruction == "A" and p.metadata == {"instruction": "B", "extra_note": 1}


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
    assert p.metadata == {"difficulty": 3, "tags": ["水", "重力"], "nested": {"k": [1, 2]}}
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
