"""Loading a benchmark streams it: peak memory does not grow with the number of pairs.

A benchmark of N pairs with ~100 KB incompressible PNGs is written to disk one pair at a time; a fresh
Python process then loads it, hashes every pair's image (and decodes a few) and reports its peak RSS.
The 400-pair run may not need much more memory than the 40-pair run: before streaming, the difference
was about three times the file size (file bytes + text + parsed document), now it is a few MB.
"""

from __future__ import annotations

import base64
import io
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

REPO = Path(__file__).resolve().parent.parent

pytest.importorskip("resource", reason="peak RSS is measured with resource.getrusage (POSIX)")

# Runs in a fresh interpreter: only src.data (and PIL) are imported, no torch.
MEASURE = r"""
import json, resource, sys
import src.data as data

bm = data.load_benchmark(sys.argv[1])
digests = set()
decoded = 0
for i, pair in enumerate(bm.iter_pairs()):
    digests.add(pair.image_sha256())
    if i % 97 == 0:
        assert pair.load_image().mode == "RGB"
        decoded += 1
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if sys.platform == "darwin":  # bytes there, KiB on Linux
    peak //= 1024
bm.close()
print(json.dumps({"pairs": len(bm), "distinct": len(digests), "decoded": decoded, "peak_kib": peak,
                  "spooled": bm._spool.size}))
"""


def _noise_png(rng: random.Random, size=(190, 180)) -> bytes:
    """An incompressible PNG of ~100 KB (random pixels, fast compression)."""
    im = Image.frombytes("RGB", size, rng.randbytes(size[0] * size[1] * 3))
    buf = io.BytesIO()
    im.save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def _pairs(n: int, seed: int):
    rng = random.Random(seed)
    for i in range(n):
        yield {"category": ["物理", "环境", "社会", "因果"][i % 4], "pair_id": f"p{i:04d}",
               "edit_instruction": f"把第{i}个杯子换成红色", "original_description": "桌上有一杯水",
               "difficulty": i % 3, "original_image_b64": base64.b64encode(_noise_png(rng)).decode("ascii")}


def write_benchmark(path: Path, n: int, seed: int = 0) -> Path:
    """`n` pairs written one at a time (the file is never whole in memory): a list of pairs with a
    ``category`` field for .json (the order of categories is irrelevant here), one pair a line for .jsonl."""
    with open(path, "w", encoding="utf-8") as f:
        if path.suffix == ".jsonl":
            for pair in _pairs(n, seed):
                f.write(json.dumps(pair, ensure_ascii=False) + "\n")
        else:
            f.write("[")
            for i, pair in enumerate(_pairs(n, seed)):
                f.write(("," if i else "") + json.dumps(pair, ensure_ascii=False))
            f.write("]")
    return path


def measure(path: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, "-c", MEASURE, str(path)], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_peak_memory_does_not_grow_with_pairs(tmp_path, suffix):
    small = write_benchmark(tmp_path / f"small{suffix}", 40, seed=1)
    large = write_benchmark(tmp_path / f"large{suffix}", 400, seed=2)
    size = large.stat().st_size
    assert size > 40_000_000  # ~55 MB: 400 x ~137 KB of base64

    a, b = measure(small), measure(large)
    assert (a["pairs"], b["pairs"]) == (40, 400)
    assert b["distinct"] == 400 and b["decoded"] == 5
    assert b["spooled"] > 0.9 * size  # the images went to the spool file, not to memory
    growth = (b["peak_kib"] - a["peak_kib"]) * 1024
    assert growth < 0.3 * size, (
        f"peak RSS grew by {growth / 2**20:.1f} MiB from 40 to 400 pairs "
        f"({a['peak_kib'] / 1024:.0f} -> {b['peak_kib'] / 1024:.0f} MiB) for a {size / 2**20:.0f} MiB file")
