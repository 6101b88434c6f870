"""Public benchmark formats read as distributed (GEdit-Bench parquet/arrow, KRIS-Bench folders, RISEBench,
ImgEdit), format detection, `python main.py validate` / `convert`. Every file is made here, tiny, in the
real layout (field names from each benchmark's own files and evaluation scripts)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from src.data import BenchmarkError, InvalidPair, detect_format, load_benchmark
from src.data import kris as kris_mod
from src.data.tools import convert_main, validate_main
from tests.public_formats import (gedit_rows, img_bytes, write_gedit_arrow_stream, write_gedit_parquet, write_imgedit,
                                  write_kris, write_rise)


# ----------------------------------------------------------------------------- GEdit-Bench

def check_gedit(bm):
    assert bm.format == "gedit"
    assert bm.categories == ["background_change_en", "background_change_cn", "color_alter_en", "color_alter_cn"]
    p = bm.pairs["color_alter_cn"][1]
    assert (p.pair_id, p.instruction) == ("col1", "color_alter cn 1")
    assert p.metadata == {"task_type": "color_alter", "key": "col1", "instruction": "color_alter cn 1",
                          "instruction_language": "cn", "Intersection_exist": False, "source_format": "gedit"}
    assert p.omitted_fields == ["input_image", "input_image_raw"]
    assert p.load_image().size == (11, 6) and p.image_roles == []
    assert p.image_sha256() == __import__("hashlib").sha256(img_bytes(size=(11, 6), color=(50, 10, 10))).hexdigest()


def test_gedit_parquet_file_and_hub_folder(tmp_path):
    f = write_gedit_parquet(tmp_path / "repo" / "data" / "train-00000-of-00001.parquet")
    assert detect_format(f) == "gedit" and detect_format(tmp_path / "repo") == "gedit"
    check_gedit(load_benchmark(f))
    check_gedit(load_benchmark(tmp_path / "repo"))


def test_gedit_datasets_cache_arrow(tmp_path):
    cache = tmp_path / "datasets" / "stepfun-ai___ge_dit-bench" / "default" / "0.0.0" / "abc123"
    write_gedit_arrow_stream(cache / "ge_dit-bench-train.arrow")
    (cache / "dataset_info.json").write_text("{}")
    check_gedit(load_benchmark(tmp_path / "datasets"))


def test_gedit_two_cached_versions_refused(tmp_path):
    write_gedit_arrow_stream(tmp_path / "v1" / "a.arrow")
    write_gedit_arrow_stream(tmp_path / "v2" / "a.arrow")
    with pytest.raises(BenchmarkError, match="in 2 folders.*Point benchmark.data_path at one"):
        load_benchmark(tmp_path)


def test_gedit_bad_rows_are_pair_errors(tmp_path):
    rows = gedit_rows()[:3]
    rows[1]["input_image"] = None
    rows[2]["instruction"] = "   "
    bm = load_benchmark(write_gedit_parquet(tmp_path / "g.parquet", rows))
    a, b, c = bm.pairs["background_change_en"] + bm.pairs["background_change_cn"][:1]
    assert a.error is None
    assert b.error == "g.parquet, category 'background_change_en', pair 'bac1': field 'input_image': image is null"
    assert "field 'instruction': the edit instruction is empty" in c.error
    with pytest.raises(InvalidPair, match="image is null"):
        b.load_image()


def test_gedit_wrong_columns(tmp_path):
    f = tmp_path / "x.parquet"
    pq.write_table(pa.table({"a": [1]}), f)
    with pytest.raises(BenchmarkError, match=r"not GEdit-Bench data: no column\(s\) 'task_type'"):
        load_benchmark(f)
    (tmp_path / "y.arrow").write_bytes(b"not arrow at all")
    with pytest.raises(BenchmarkError, match="not a readable parquet/arrow file"):
        load_benchmark(tmp_path / "y.arrow")


# ----------------------------------------------------------------------------- KRIS-Bench


def test_kris_folder(tmp_path):
    root = write_kris(tmp_path / "KRIS_Bench")
    assert detect_format(root) == "kris" and detect_format(root / "physics") == "kris"
    assert detect_format(root / "physics" / "annotation.json") == "kris"
    bm = load_benchmark(root)
    assert bm.format == "kris"
    # the official summary's order, unknown folders last
    assert bm.categories == ["count_change", "viewpoint_change", "temporal_prediction", "physics",
                             "multi-element_composition", "my_own_task"]
    c2 = bm.pairs["count_change"][1]
    assert c2.metadata == {"ori_img": "2.jpg", "ins_en": "Remove a cup.", "explain_en": "", "extra": [1, 2],
                           "sub_task": "count_change", "dimension": "Attribute Perception",
                           "knowledge_type": "Factual Knowledge", "knowledge_task": False, "source_format": "kris"}
    assert c2.instruction == "Remove a cup." and c2.load_image().size == (8, 8)

    view = bm.pairs["viewpoint_change"][0]
    assert view.image_roles == ["reference"] and view.editor_roles == [] and view.extra_images() == []
    assert view.named_images()["reference"].size == (9, 8)  # gt_img reaches the judge, never the editor

    multi = bm.pairs["multi-element_composition"][0]
    assert multi.image_roles == ["original_2", "original_3"] == multi.editor_roles
    assert [im.size for im in multi.extra_images()] == [(9, 8), (10, 8)]
    assert multi.metadata["dimension"] == "Instruction Decomposition"

    temporal = bm.pairs["temporal_prediction"][0]
    assert temporal.editor_roles == ["original_2", "original_3"]
    assert {k: temporal.metadata[k] for k in ("frame_numbers", "target_frame", "temporal_prediction_type")} == {
        "frame_numbers": [2, 3, 4], "target_frame": 1, "temporal_prediction_type": "reverse"}
    assert "target_frame" not in multi.metadata

    phys = bm.pairs["physics"]
    assert phys[0].metadata["knowledge_task"] is True and phys[0].metadata["explain_en"] == "Ice melts."
    assert phys[0].metadata["knowledge_type"] == "Conceptual Knowledge"
    assert phys[1].error.startswith("physics/annotation.json, category 'physics', pair '4': field 'ori_img': "
                                    "image file not found:")
    assert "the record is a string, not an object" in phys[2].error
    assert bm.pairs["my_own_task"][0].metadata["dimension"] is None


def test_kris_temporal_target_frame():
    assert kris_mod.temporal_fields(["5-1.jpg", "5-2.jpg", "5-3.jpg"])["temporal_prediction_type"] == "forward"
    assert kris_mod.temporal_fields(["a/5-1.png", "5-2.png", "5-4.png"])["target_frame"] == 3
    assert kris_mod.temporal_fields(["x.jpg"]) == {"frame_numbers": [None], "target_frame": None,
                                                   "temporal_prediction_type": None}


def test_kris_groups_cover_the_official_summary():
    assert len(kris_mod.TASK_ORDER) == 20 == len(set(kris_mod.TASK_ORDER))
    assert sum(kris_mod.groups_of(t)["knowledge_task"] for t in kris_mod.TASK_ORDER) == 10
    assert {kris_mod.groups_of(t)["knowledge_type"] for t in kris_mod.TASK_ORDER} == {
        "Factual Knowledge", "Conceptual Knowledge", "Procedural Knowledge"}


def test_kris_single_task_and_bad_annotation(tmp_path):
    root = write_kris(tmp_path / "K")
    bm = load_benchmark(root / "viewpoint_change")
    assert bm.categories == ["viewpoint_change"]
    (root / "physics" / "annotation.json").write_text("[1, 2]")
    with pytest.raises(BenchmarkError, match="physics/annotation.json: expected an object mapping image id"):
        load_benchmark(root)
    (root / "physics" / "annotation.json").write_text('{"3": {"ori_img": "3.jpg"}, "3": {}}')
    with pytest.raises(BenchmarkError, match="repeats the id"):
        load_benchmark(root)


# ----------------------------------------------------------------------------- RISEBench


def test_rise_every_pair_valid(tmp_path):
    """Before: RISEBench loaded through the native reader and every pair was invalid (no image field)."""
    f = write_rise(tmp_path / "data")
    assert detect_format(f) == "rise"
    bm = load_benchmark(f)
    assert bm.format == "rise"
    assert bm.categories == ["temporal_reasoning", "causal_reasoning", "logical_reasoning", "spatial_reasoning"]
    t = bm.pairs["temporal_reasoning"][0]
    assert (t.pair_id, t.instruction, t.error) == ("temporal_reasoning_1", "Draw it a year later.", None)
    assert t.metadata == {"index": "temporal_reasoning_1", "category": "temporal_reasoning",
                          "subtask": "Life Progression", "instruction": "Draw it a year later.",
                          "image": "temporal_reasoning_images/1.png", "reference": "Rotten, blackened banana.",
                          "source_format": "rise"}
    logic = bm.pairs["logical_reasoning"][0]
    assert logic.image_roles == ["reference"] and logic.extra_images() == []
    assert logic.named_images()["reference"].size == (7, 5) and logic.load_image().size == (6, 6)
    spatial = bm.pairs["spatial_reasoning"][0]
    assert "field 'image': image file not found" in spatial.error
    assert sum(p.error is None for p in bm.iter_pairs()) == 3


def test_rise_renamed_file_detected_and_missing_category(tmp_path):
    f = write_rise(tmp_path / "d")
    g = tmp_path / "d" / "subset.json"
    g.write_text(f.read_text())
    assert detect_format(g) == "rise"
    recs = json.loads(f.read_text())
    del recs[1]["category"]
    f.write_text(json.dumps(recs))
    with pytest.raises(BenchmarkError, match=r"entry 1 \(index 'causal_reasoning_1'\) has no usable 'category'"):
        load_benchmark(f)


# ----------------------------------------------------------------------------- ImgEdit


def test_imgedit(tmp_path):
    f = write_imgedit(tmp_path / "Basic")
    assert detect_format(f) == "imgedit"
    bm = load_benchmark(f)
    assert bm.categories == ["alter", "style", "add"]
    p = bm.pairs["alter"][0]
    assert (p.pair_id, p.instruction) == ("1082", "Make the shell smooth.")
    assert p.metadata == {"id": "animal/000342021.jpg", "prompt": "Make the shell smooth.", "edit_type": "alter",
                          "key": "1082", "source_format": "imgedit"}
    assert p.load_image().size == (5, 9)
    bad = bm.pairs["alter"][1]
    assert "field 'id': image file not found" in bad.error and "set benchmark.image_root" in bad.error


def test_imgedit_uge_set(tmp_path):
    """ImgEdit's UGE_edit.json: the same records without edit_type, one category named after the file."""
    (tmp_path / "000029784.jpg").write_bytes(img_bytes(fmt="JPEG"))
    f = tmp_path / "UGE_edit.json"
    f.write_text(json.dumps({"1": {"id": "000029784.jpg", "prompt": "Remove the lemon slice."},
                             "2": {"id": "000065904.jpg", "prompt": "Remove the person."}}))
    assert detect_format(f) == "imgedit"
    bm = load_benchmark(f)
    assert bm.categories == ["UGE_edit"]
    a, b = bm.pairs["UGE_edit"]
    assert a.error is None and a.metadata == {"id": "000029784.jpg", "prompt": "Remove the lemon slice.", "key": "1",
                                              "source_format": "imgedit"}
    assert "field 'id': image file not found" in b.error
    # in a typed file, a record without edit_type is an invalid pair
    g = write_imgedit(tmp_path / "typed")
    doc = json.loads(g.read_text())
    del doc["97"]["edit_type"]
    g.write_text(json.dumps(doc))
    bad = load_benchmark(g).pairs["unknown"][0]
    assert "field 'edit_type': must be a non-empty string, got None" in bad.error


def test_imgedit_image_root_and_renamed_file(tmp_path):
    f = write_imgedit(tmp_path / "json", images=tmp_path / "origin")
    g = tmp_path / "json" / "edits.json"
    g.write_text(f.read_text())
    assert detect_format(g) == "imgedit"
    assert load_benchmark(g).pairs["style"][0].error is not None  # images are elsewhere
    bm = load_benchmark(g, image_root=tmp_path / "origin")
    assert bm.pairs["style"][0].load_image().size == (5, 9)


# ----------------------------------------------------------------------------- detection, format choice


def test_native_still_detected_and_format_override(tmp_path):
    f = tmp_path / "b.json"
    f.write_text(json.dumps({"c": [{"pair_id": "a", "edit_instruction": "x", "original_image_b64": "AAAA",
                                    "edit_type": "add", "prompt": "p", "id": "q"}]}))
    assert detect_format(f) == "native"
    with pytest.raises(BenchmarkError, match="expected a list of RISEBench records"):
        load_benchmark(f, format="rise")
    with pytest.raises(BenchmarkError, match="unknown benchmark format 'krs'.*Did you mean 'kris'"):
        load_benchmark(f, format="krs")
    with pytest.raises(BenchmarkError, match="is a directory, and not one of the folder formats"):
        load_benchmark(tmp_path)


def test_config_format_and_image_root(tmp_path):
    from src.config import ConfigError, load_config

    f = write_imgedit(tmp_path / "j", images=tmp_path / "o")
    cfg_path = Path("config.yaml").resolve()
    cfg = load_config(cfg_path, [f"benchmark.data_path={f}", "benchmark.format=imgedit",
                                 f"benchmark.image_root={tmp_path / 'o'}"])
    assert (cfg.data_format, cfg.image_root) == ("imgedit", str(tmp_path / "o"))
    assert cfg.to_dict()["benchmark"]["format"] == "imgedit"
    with pytest.raises(ConfigError, match="benchmark.format must be one of auto, gedit"):
        load_config(cfg_path, ["benchmark.format=gedt"])


# ----------------------------------------------------------------------------- validate / convert


def test_validate_reports_every_problem(tmp_path, capsys):
    root = write_kris(tmp_path / "K")
    assert validate_main([str(root)]) == 2
    out = capsys.readouterr().out
    assert "problem: physics/annotation.json, category 'physics', pair '4': field 'ori_img': image file not found" in out
    assert "pair '5'" in out and "2 invalid pair(s), 2 problem(s)" in out
    # a corrupt image is found by decoding, named with its field
    (root / "viewpoint_change" / "1_gt.jpg").write_bytes(b"garbage")
    assert validate_main([str(root)]) == 2
    assert "category 'viewpoint_change', pair '1', field 'gt_img': not a recognised image" in capsys.readouterr().out
    f = write_rise(tmp_path / "r")
    (tmp_path / "r" / "spatial_reasoning_images").mkdir()
    (tmp_path / "r" / "spatial_reasoning_images" / "9.png").write_bytes(img_bytes())
    assert validate_main([str(f)]) == 0
    assert "4 pairs in 4 categories; 0 invalid pair(s), 0 problem(s): clean." in capsys.readouterr().out
    assert validate_main([str(tmp_path / "nothing.json")]) == 2
    assert "does not exist" in capsys.readouterr().out
    # KRIS-Bench: one broken annotation.json does not hide the other task folders' problems
    (root / "count_change" / "annotation.json").write_text("{oops")
    assert validate_main([str(root)]) == 2
    out = capsys.readouterr().out
    assert "count_change/annotation.json is not valid JSON: Expecting property name" in out
    assert "field 'gt_img': not a recognised image" in out and "pair '4'" in out
    assert "1 of 6 file(s) cannot be loaded" in out


@pytest.mark.parametrize("fmt", ["gedit", "kris", "rise", "imgedit"])
def test_convert_round_trip(tmp_path, capsys, fmt):
    src = {"gedit": lambda: write_gedit_parquet(tmp_path / "g.parquet"), "kris": lambda: write_kris(tmp_path / "K"),
           "rise": lambda: write_rise(tmp_path / "r"), "imgedit": lambda: write_imgedit(tmp_path / "i")}[fmt]()
    out = tmp_path / "out.jsonl"
    before = load_benchmark(src)
    n_valid = sum(p.error is None for p in before.iter_pairs())
    code = convert_main([str(src), "--to", "jsonl", "--out", str(out)])
    assert code == (0 if n_valid == len(before) else 2)
    assert f"{n_valid} pairs written ({fmt} -> jsonl, read back identical)" in capsys.readouterr().out
    after = load_benchmark(out)
    assert after.format == "native"
    old = {(p.category, p.pair_id): p for p in before.iter_pairs() if p.error is None}
    new = {(p.category, p.pair_id): p for p in after.iter_pairs()}
    assert old.keys() == new.keys()
    for k, p in new.items():
        q = old[k]
        assert (p.instruction, p.metadata, p.image_roles) == (q.instruction, q.metadata, q.image_roles)
        assert p.metadata["source_format"] == fmt
        assert p.image_sha256() == q.image_sha256()
        assert {r: im.size for r, im in p.named_images().items()} == {r: im.size for r, im in q.named_images().items()}
        assert p.editor_roles == q.editor_roles
    assert not [n for n in os.listdir(tmp_path) if ".tmp-" in n]
    assert convert_main([str(src), "--to", "jsonl", "--out", str(out)]) == 2  # exists: refused without --force
    assert "exists" in capsys.readouterr().err


# ----------------------------------------------------------------------------- end to end (shared fixture)


@pytest.mark.parametrize("fmt", ["gedit", "kris", "rise", "imgedit"])
def test_public_formats_end_to_end(public_runs, public_benchmarks, fmt):
    """Each format through the pipeline (fake models): valid pairs edited and scored with their metadata in
    the records; invalid pairs recorded as invalid_input with the loader's message; nothing lost."""
    spec = public_benchmarks[fmt]
    bench = load_benchmark(spec["path"], image_root=spec["image_root"])
    report = json.loads((public_runs[fmt] / "report.json").read_text(encoding="utf-8"))
    by_id = {(p["category"], p["pair_id"]): p for p in report["pairs"]}
    assert set(by_id) == {(p.category, p.pair_id) for p in bench.iter_pairs()}
    for pair in bench.iter_pairs():
        rec = by_id[(pair.category, pair.pair_id)]
        if pair.error:
            assert rec["status"] == "invalid_input" and pair.error in rec["error"], rec
        else:
            assert rec["status"] == "scored", rec
            assert rec["metadata"] == pair.metadata and rec["metadata"]["source_format"] == fmt
            assert (public_runs[fmt] / rec["edited_image"]).is_file()
    assert sum(p["status"] == "scored" for p in report["pairs"]) >= 3


def test_gedit_images_go_to_the_spool(tmp_path, monkeypatch):
    """GEdit images arrive as bytes: each is moved to the benchmark's spool file at once (memory stays one
    batch), and reads back to the same bytes."""
    import hashlib

    import src.data as data
    from src.data.spool import _Spooled

    monkeypatch.setattr(data, "SPOOL_MIN_CHARS", 1)
    bm = load_benchmark(write_gedit_parquet(tmp_path / "g.parquet"))
    pairs = list(bm.iter_pairs())
    assert all(isinstance(p._image_b64, _Spooled) for p in pairs)
    assert bm._spool.size > 0
    rows = {(r["task_type"] + "_" + r["instruction_language"], r["key"]): r for r in gedit_rows()}
    for p in pairs:
        assert p.image_sha256() == hashlib.sha256(rows[(p.category, p.pair_id)]["input_image"]["bytes"]).hexdigest()
    bm.close()
