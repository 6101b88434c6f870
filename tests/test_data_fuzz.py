"""Fuzz the loaders: random bytes and random JSON (in each format's shape) fed to every format. Every outcome
is a `BenchmarkError` (file-level) or pairs that are valid or carry a clear per-pair error -- never another
exception, never a hang (each example is time-bounded)."""

from __future__ import annotations

import io
import json
import shutil
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from src.data import BenchmarkError, load_benchmark
from src.data.tools import pair_problems

TIME_BOUND_S = 20.0  # per example; generous for a loaded 2-core machine, a hang never meets it

_PNG = io.BytesIO()
Image.new("RGB", (4, 4), (1, 2, 3)).save(_PNG, "PNG")
PNG = _PNG.getvalue()

FUZZ = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = (st.none() | st.booleans() | st.integers(-10, 10**6) | st.floats(allow_nan=True, allow_infinity=False)
           | st.text(max_size=12) | st.sampled_from(["a.png", "img/1.png", "", " ", "../x.png", "/etc/passwd",
                                                     "data:image/png;base64,AAAA", "iVBORw0KGgo="]))
values = st.recursive(scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3),
                      max_leaves=8)


def record(keys: list[str]):
    return st.dictionaries(st.sampled_from(keys) | st.text(max_size=5), values, max_size=len(keys) + 2)


def check(path: Path, fmt: str | None) -> None:
    """The loader's contract on whatever `path` holds."""
    start = time.perf_counter()
    try:
        bench = load_benchmark(path, format=fmt)
    except BenchmarkError as e:
        assert str(e).strip()
    else:
        with bench:
            for pair in bench.iter_pairs():
                problems = pair_problems(pair)  # decodes every image: InvalidPair is caught and reported there
                assert all(isinstance(p, str) and p.startswith(pair.source) for p in problems), problems
                if pair.error is None:
                    assert isinstance(pair.instruction, str) and pair.instruction.strip()
                assert pair.metadata.get("source_format") in ("native", "gedit", "kris", "rise", "imgedit")
    assert time.perf_counter() - start < TIME_BOUND_S


class Folder:
    def __enter__(self) -> Path:
        self.path = Path(tempfile.mkdtemp(prefix="ieb-fuzz-"))
        (self.path / "a.png").write_bytes(PNG)
        (self.path / "img").mkdir()
        (self.path / "img" / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
        return self.path

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


NAMES = {"native": "bench.json", "jsonl": "bench.jsonl", "rise": "data_total.json", "imgedit": "basic_edit.json",
         "kris": "task/annotation.json", "gedit": "train.parquet", "arrow": "train.arrow"}


@FUZZ
@given(st.binary(max_size=300), st.sampled_from(sorted(NAMES)), st.booleans())
def test_random_bytes(raw, kind, explicit):
    with Folder() as d:
        f = d / NAMES[kind]
        f.parent.mkdir(exist_ok=True)
        f.write_bytes(raw)
        fmt = {"jsonl": "native", "arrow": "gedit"}.get(kind, kind)
        check(f if kind != "kris" else d, fmt if explicit else None)


@FUZZ
@given(st.lists(record(["index", "category", "instruction", "image", "reference", "reference_img", "subtask"]),
                max_size=4) | values)
def test_random_rise(doc):
    with Folder() as d:
        (d / "data_total.json").write_text(json.dumps(doc))
        check(d / "data_total.json", None)


@FUZZ
@given(st.dictionaries(st.text(max_size=4), record(["ori_img", "gt_img", "ins_en", "explain_en"]) | values,
                       max_size=4) | values)
def test_random_kris(doc):
    with Folder() as d:
        (d / "physics").mkdir()
        (d / "physics" / "annotation.json").write_text(json.dumps(doc))
        (d / "physics" / "a.png").write_bytes(PNG)
        check(d, None)


@FUZZ
@given(st.dictionaries(st.text(max_size=4), record(["id", "prompt", "edit_type"]) | values, max_size=4) | values)
def test_random_imgedit(doc):
    with Folder() as d:
        (d / "basic_edit.json").write_text(json.dumps(doc))
        check(d / "basic_edit.json", None)


@FUZZ
@given(st.dictionaries(st.text(max_size=4), st.lists(record(
    ["pair_id", "edit_instruction", "original_image_b64", "original_image_path", "reference_images_b64",
     "named_images_b64", "category"]) | values, max_size=3) | values, max_size=3) | values, st.booleans())
def test_random_native(doc, jsonl):
    with Folder() as d:
        if jsonl:
            f = d / "b.jsonl"
            f.write_text("\n".join(json.dumps(x) for x in (doc if isinstance(doc, list) else [doc])))
        else:
            f = d / "b.json"
            f.write_text(json.dumps(doc))
        check(f, None)


_opt_text = st.none() | st.text(max_size=8)
_image = st.none() | st.fixed_dictionaries({"bytes": st.none() | st.binary(max_size=40) | st.just(PNG),
                                            "path": st.none() | st.sampled_from(["a.png", "img/1.png", "zz.png"])})


@FUZZ
@given(st.lists(st.fixed_dictionaries({"task_type": _opt_text, "key": _opt_text, "instruction": _opt_text,
                                       "instruction_language": _opt_text | st.sampled_from(["en", "cn"]),
                                       "input_image": _image, "Intersection_exist": st.none() | st.booleans()}),
                max_size=5))
def test_random_gedit_rows(rows):
    schema = pa.schema([("task_type", pa.string()), ("key", pa.string()), ("instruction", pa.string()),
                        ("instruction_language", pa.string()),
                        ("input_image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
                        ("Intersection_exist", pa.bool_())])
    with Folder() as d:
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), d / "t.parquet")
        check(d / "t.parquet", None)
