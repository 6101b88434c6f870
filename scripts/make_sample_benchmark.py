"""Generate data/sample_benchmark.json: a tiny benchmark in the user's format, for demos and tests.

    python scripts/make_sample_benchmark.py            # (re)write data/sample_benchmark.json
    python scripts/make_sample_benchmark.py --check    # exit 1 when the committed file is out of date

Shape: ``{"物理": {"data_pairs": [pair, ...]}, "环境": ..., "社会": ..., "因果": ..., "指代": ...}``, 3 pairs
per category; each pair has ``pair_id``, ``edit_instruction`` and ``original_description`` (Chinese) and
``original_image_b64`` (a small PNG of a simple scene drawn here with PIL).

The output is byte-for-byte reproducible: scenes are drawn on palette ("P") images without
anti-aliasing, and the PNG is encoded by the small pure-Python encoder below (fixed-Huffman deflate with
run / row-above matches) rather than by zlib, whose compressed bytes differ between zlib, zlib-ng and
their versions. Only a change in how Pillow rasterises shapes could change the output.
"""

from __future__ import annotations

import argparse
import base64
import json
import struct
import sys
import zlib
from pathlib import Path

from PIL import Image, ImageDraw

OUT = Path(__file__).resolve().parent.parent / "data" / "sample_benchmark.json"

# ----------------------------------------------------------------------------- palette

COLORS = {
    "white": (255, 255, 255), "black": (20, 20, 20), "wall": (236, 228, 214), "wood": (150, 100, 60),
    "dark_wood": (110, 70, 40), "glass": (200, 225, 240), "water": (90, 150, 220), "sky": (135, 200, 240),
    "grass": (90, 170, 70), "leaf": (40, 130, 50), "trunk": (110, 75, 45), "sun": (250, 210, 60),
    "gray": (150, 150, 150), "light_gray": (200, 200, 200), "road": (80, 80, 85), "red": (210, 40, 40),
    "house": (220, 170, 120), "roof": (160, 60, 50), "window": (250, 240, 170), "mountain": (110, 120, 140),
    "snow": (245, 245, 250), "lake": (70, 130, 190), "cloud": (250, 250, 252), "plate": (235, 235, 235),
    "ice": (215, 240, 250), "candle": (245, 240, 225), "flame": (255, 170, 40), "pot": (180, 90, 50),
    "blue": (50, 90, 200), "box": (190, 150, 100), "green_board": (40, 80, 60), "skin": (230, 190, 160),
    "floor": (210, 200, 180), "cup": (245, 245, 245), "yellow": (240, 200, 40),
}
NAMES = list(COLORS)
C = {name: i for i, name in enumerate(NAMES)}


def canvas(w: int, h: int, bg: str) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    im = Image.new("P", (w, h), C[bg])
    im.putpalette([v for name in NAMES for v in COLORS[name]])
    return im, ImageDraw.Draw(im)


# ----------------------------------------------------------------------------- scenes


def glass_on_table():
    im, d = canvas(96, 64, "wall")
    d.rectangle((0, 44, 95, 50), fill=C["wood"])
    d.rectangle((10, 51, 14, 63), fill=C["dark_wood"])
    d.rectangle((81, 51, 85, 63), fill=C["dark_wood"])
    d.rectangle((40, 20, 54, 43), fill=C["glass"], outline=C["gray"])
    d.rectangle((41, 26, 53, 42), fill=C["water"])
    return im


def ball_on_slope():
    im, d = canvas(96, 64, "sky")
    d.rectangle((0, 56, 95, 63), fill=C["grass"])
    d.polygon([(8, 56), (70, 56), (8, 20)], fill=C["gray"])
    d.ellipse((8, 10, 18, 20), fill=C["red"])
    return im


def block_and_tank():
    im, d = canvas(64, 64, "wall")
    d.rectangle((0, 48, 63, 63), fill=C["wood"])
    d.rectangle((6, 18, 38, 47), fill=C["glass"], outline=C["gray"])
    d.rectangle((7, 32, 37, 46), fill=C["water"])
    d.rectangle((46, 38, 56, 47), fill=C["trunk"])
    return im


def tree_summer():
    im, d = canvas(64, 96, "sky")
    d.rectangle((0, 70, 63, 95), fill=C["grass"])
    d.ellipse((46, 6, 58, 18), fill=C["sun"])
    d.rectangle((28, 48, 35, 74), fill=C["trunk"])
    d.ellipse((12, 20, 52, 56), fill=C["leaf"])
    return im


def street_day():
    im, d = canvas(96, 64, "sky")
    d.rectangle((0, 48, 95, 63), fill=C["road"])
    for x in range(4, 96, 16):
        d.rectangle((x, 55, x + 7, 56), fill=C["white"])
    for x0, x1 in ((4, 30), (60, 90)):
        d.rectangle((x0, 26, x1, 47), fill=C["house"])
        d.polygon([(x0 - 2, 26), (x1 + 2, 26), ((x0 + x1) // 2, 12)], fill=C["roof"])
        d.rectangle((x0 + 5, 31, x0 + 11, 37), fill=C["window"])
    d.rectangle((45, 14, 46, 47), fill=C["black"])
    d.rectangle((42, 12, 49, 15), fill=C["gray"])
    return im


def lake_mountains():
    im, d = canvas(80, 60, "sky")
    d.ellipse((8, 6, 30, 14), fill=C["cloud"])
    d.polygon([(0, 36), (24, 12), (48, 36)], fill=C["mountain"])
    d.polygon([(30, 36), (56, 8), (80, 36)], fill=C["mountain"])
    d.rectangle((0, 36, 79, 59), fill=C["lake"])
    d.rectangle((0, 54, 79, 59), fill=C["grass"])
    return im


def dinner_table():
    im, d = canvas(96, 64, "wall")
    d.rectangle((0, 50, 95, 63), fill=C["floor"])
    d.rectangle((12, 30, 84, 36), fill=C["wood"])
    d.rectangle((16, 37, 19, 58), fill=C["dark_wood"])
    d.rectangle((77, 37, 80, 58), fill=C["dark_wood"])
    for cx in (34, 62):
        d.ellipse((cx - 8, 26, cx + 8, 31), fill=C["plate"], outline=C["gray"])
        d.line((cx + 11, 24, cx + 13, 31), fill=C["black"])
        d.line((cx + 13, 24, cx + 15, 31), fill=C["black"])
    return im


def classroom():
    im, d = canvas(96, 64, "wall")
    d.rectangle((0, 52, 95, 63), fill=C["floor"])
    d.rectangle((20, 6, 76, 30), fill=C["green_board"], outline=C["dark_wood"])
    for x in (8, 40, 72):
        d.rectangle((x, 42, x + 16, 45), fill=C["wood"])
        d.rectangle((x + 2, 46, x + 3, 55), fill=C["dark_wood"])
        d.rectangle((x + 13, 46, x + 14, 55), fill=C["dark_wood"])
    return im


def crosswalk_red():
    im, d = canvas(64, 96, "sky")
    d.rectangle((0, 60, 63, 95), fill=C["road"])
    for y in range(64, 96, 8):
        d.rectangle((14, y, 50, y + 3), fill=C["white"])
    d.rectangle((0, 52, 63, 59), fill=C["light_gray"])
    d.rectangle((54, 20, 55, 52), fill=C["black"])
    d.rectangle((50, 14, 59, 32), fill=C["black"])
    d.ellipse((52, 16, 57, 21), fill=C["red"])
    d.ellipse((52, 25, 57, 30), fill=C["road"])
    return im


def ice_on_plate():
    im, d = canvas(64, 64, "wall")
    d.rectangle((0, 44, 63, 63), fill=C["wood"])
    d.ellipse((50, 2, 62, 14), fill=C["sun"])
    d.ellipse((12, 40, 52, 50), fill=C["plate"], outline=C["gray"])
    d.rectangle((24, 30, 38, 44), fill=C["ice"], outline=C["glass"])
    return im


def candle_lit():
    im, d = canvas(64, 96, "wall")
    d.rectangle((0, 80, 63, 95), fill=C["wood"])
    d.ellipse((20, 74, 44, 82), fill=C["plate"], outline=C["gray"])
    d.rectangle((28, 24, 36, 78), fill=C["candle"], outline=C["light_gray"])
    d.line((32, 20, 32, 24), fill=C["black"])
    d.ellipse((29, 10, 35, 21), fill=C["flame"])
    return im


def potted_plant():
    im, d = canvas(80, 64, "wall")
    d.rectangle((10, 4, 70, 40), fill=C["sky"], outline=C["wood"])
    d.line((40, 4, 40, 40), fill=C["wood"])
    d.rectangle((0, 44, 79, 63), fill=C["wood"])
    d.polygon([(30, 30), (50, 30), (47, 45), (33, 45)], fill=C["pot"])
    d.ellipse((26, 12, 40, 24), fill=C["leaf"])
    d.ellipse((38, 10, 54, 24), fill=C["leaf"])
    d.ellipse((31, 20, 49, 32), fill=C["grass"])
    return im


def two_cups():
    im, d = canvas(96, 64, "wall")
    d.rectangle((0, 42, 95, 63), fill=C["wood"])
    for x in (18, 62):
        d.rectangle((x, 24, x + 16, 44), fill=C["cup"], outline=C["gray"])
        d.rectangle((x + 17, 28, x + 21, 37), outline=C["gray"])
    return im


def three_balls():
    im, d = canvas(96, 64, "sky")
    d.rectangle((0, 48, 95, 63), fill=C["grass"])
    d.ellipse((8, 38, 20, 50), fill=C["blue"])
    d.ellipse((34, 22, 62, 50), fill=C["blue"])
    d.ellipse((72, 34, 88, 50), fill=C["blue"])
    return im


def books_and_box():
    im, d = canvas(64, 64, "wall")
    d.rectangle((0, 50, 63, 63), fill=C["floor"])
    d.rectangle((6, 28, 36, 52), fill=C["box"], outline=C["dark_wood"])
    d.rectangle((10, 22, 32, 27), fill=C["blue"], outline=C["black"])
    d.rectangle((42, 46, 60, 51), fill=C["blue"], outline=C["black"])
    return im


BENCHMARK = {
    "物理": [
        ("phys-01", glass_on_table, "把玻璃杯推倒，水洒在桌面上",
         "木桌上立着一个装了大半杯水的透明玻璃杯，背景是浅色的墙。"),
        ("phys-02", ball_on_slope, "让斜坡顶端的红色小球滚下去，画出它停在坡底后的样子",
         "草地上有一个灰色的三角形斜坡，坡顶放着一个红色小球。"),
        ("phys-03", block_and_tank, "把桌上的木块放进水缸里",
         "桌上有一个装了半缸水的玻璃水缸，水缸右边放着一个木块。"),
    ],
    "环境": [
        ("env-01", tree_summer, "把季节改成冬天，树上和地面都覆盖着积雪",
         "晴朗的夏日，草地上有一棵枝叶茂盛的绿树，天空中挂着太阳。"),
        ("env-02", street_day, "把场景改成下雨的夜晚，路灯亮起来",
         "白天的街道，路两旁各有一栋小房子，中间有一盏路灯，天空湛蓝。"),
        ("env-03", lake_mountains, "把时间改为黄昏日落时分",
         "远处有两座山，山前是平静的湖面，天空晴朗，飘着一朵白云。"),
    ],
    "社会": [
        ("soc-01", dinner_table, "把这张餐桌布置成中国春节的年夜饭",
         "一张空的木餐桌，上面摆着两个空盘子和两双筷子。"),
        ("soc-02", classroom, "在黑板前加一位正在讲课的老师",
         "教室前方有一块黑板，黑板下面排着三张课桌，没有人。"),
        ("soc-03", crosswalk_red, "在人行横道前添加一个行人",
         "路口的人行横道前没有人，路边的行人信号灯亮着红灯。"),
    ],
    "因果": [
        ("cause-01", ice_on_plate, "让阳光照射这块冰一个小时",
         "阳光下的木桌上有一个盘子，盘子里放着一块方形的冰。"),
        ("cause-02", candle_lit, "让这根蜡烛继续燃烧三个小时",
         "桌上的烛台里立着一根点燃的白色长蜡烛。"),
        ("cause-03", potted_plant, "连续一个月不给这盆植物浇水",
         "窗台前的桌子上有一盆绿色的盆栽植物，叶子茂盛。"),
    ],
    "指代": [
        ("ref-01", two_cups, "把左边的杯子换成红色", "木桌上并排放着两个一样的白色杯子，一左一右。"),
        ("ref-02", three_balls, "把最大的那个球移除", "草地上有三个大小不同的蓝色球，最大的在中间。"),
        ("ref-03", books_and_box, "把放在纸盒上的那本书改成绿色",
         "地上有一个纸盒，盒子上放着一本蓝色的书，纸盒右边的地上还有一本蓝色的书。"),
    ],
}

# ----------------------------------------------------------------------------- deterministic PNG


class _BitWriter:
    def __init__(self) -> None:
        self.out = bytearray()
        self.acc = 0
        self.n = 0

    def bits(self, value: int, count: int) -> None:  # LSB first (deflate's bit order)
        self.acc |= value << self.n
        self.n += count
        while self.n >= 8:
            self.out.append(self.acc & 0xFF)
            self.acc >>= 8
            self.n -= 8

    def huffman(self, code: int, length: int) -> None:  # Huffman codes are packed MSB first
        self.bits(int(f"{code:0{length}b}"[::-1], 2), length)

    def flush(self) -> bytes:
        if self.n:
            self.out.append(self.acc & 0xFF)
            self.acc = self.n = 0
        return bytes(self.out)


_LEN_BASE = [3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115,
             131, 163, 195, 227, 258]
_LEN_EXTRA = [0] * 8 + [1] * 4 + [2] * 4 + [3] * 4 + [4] * 4 + [5] * 4 + [0]
_DIST_BASE = [1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
              2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577]
_DIST_EXTRA = [0, 0, 0, 0] + [i // 2 for i in range(2, 28)]


def _literal(w: _BitWriter, sym: int) -> None:
    if sym < 144:
        w.huffman(0x30 + sym, 8)
    elif sym < 256:
        w.huffman(0x190 + sym - 144, 9)
    elif sym < 280:
        w.huffman(sym - 256, 7)
    else:
        w.huffman(0xC0 + sym - 280, 8)


def _code_for(value: int, bases: list[int]) -> int:
    i = len(bases) - 1
    while bases[i] > value:
        i -= 1
    return i


def deflate(data: bytes, stride: int) -> bytes:
    """zlib stream, one fixed-Huffman block; matches at distance 1 (runs) and `stride` (row above)."""
    w = _BitWriter()
    w.bits(1, 1)  # BFINAL
    w.bits(1, 2)  # BTYPE = fixed Huffman
    i, n = 0, len(data)
    while i < n:
        best_len, best_dist = 0, 0
        for dist in (1, stride):
            if dist > i:
                continue
            k = 0
            while k < 258 and i + k < n and data[i + k] == data[i + k - dist]:
                k += 1
            if k > best_len:
                best_len, best_dist = k, dist
        if best_len >= 3:
            li = _code_for(best_len, _LEN_BASE)
            _literal(w, 257 + li)
            w.bits(best_len - _LEN_BASE[li], _LEN_EXTRA[li])
            di = _code_for(best_dist, _DIST_BASE)
            w.huffman(di, 5)
            w.bits(best_dist - _DIST_BASE[di], _DIST_EXTRA[di])
            i += best_len
        else:
            _literal(w, data[i])
            i += 1
    _literal(w, 256)
    return b"\x78\x01" + w.flush() + struct.pack(">I", zlib.adler32(data))


def encode_png(im: Image.Image) -> bytes:
    """A palette image -> PNG bytes (8-bit indices, filter 0), independent of the zlib build."""
    assert im.mode == "P"
    w, h = im.size
    pixels = im.tobytes()
    raw = b"".join(b"\x00" + pixels[y * w:(y + 1) * w] for y in range(h))
    palette = bytes(v for name in NAMES for v in COLORS[name])

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 3, 0, 0, 0))
            + chunk(b"PLTE", palette) + chunk(b"IDAT", deflate(raw, w + 1)) + chunk(b"IEND", b""))


# ----------------------------------------------------------------------------- output


def build() -> bytes:
    """The benchmark file content (UTF-8 JSON, 2-space indent, trailing newline)."""
    doc = {}
    for category, rows in BENCHMARK.items():
        pairs = []
        for pair_id, draw, instruction, description in rows:
            png = encode_png(draw())
            pairs.append({"pair_id": pair_id, "edit_instruction": instruction,
                          "original_description": description,
                          "original_image_b64": base64.b64encode(png).decode("ascii")})
        doc[category] = {"data_pairs": pairs}
    return (json.dumps(doc, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=OUT, help=f"output file (default {OUT})")
    ap.add_argument("--check", action="store_true", help="only compare with the existing file")
    args = ap.parse_args(argv)
    content = build()
    if args.check:
        same = args.out.exists() and args.out.read_bytes() == content
        print(f"{args.out}: {'up to date' if same else 'OUT OF DATE (run without --check)'}")
        return 0 if same else 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(content)
    print(f"wrote {args.out} ({len(content):,} bytes, {sum(len(r) for r in BENCHMARK.values())} pairs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
