"""Tiny benchmark files in the real layouts of GEdit-Bench (parquet / arrow), KRIS-Bench (task folders with
annotation.json), RISEBench (data_total.json + image folders) and ImgEdit (basic_edit.json + originals), made
by the tests (never committed). Field names are those of each benchmark's own files and evaluation scripts.
Each file has a few deliberately broken pairs (missing image file, record that is not an object) so that
invalid pairs are exercised end to end too."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image


def img_bytes(size=(12, 8), color=(10, 200, 30), fmt="PNG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, fmt)
    return buf.getvalue()


GEDIT_SCHEMA = pa.schema([
    ("task_type", pa.string()), ("key", pa.string()), ("instruction", pa.string()),
    ("instruction_language", pa.string()),
    ("input_image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
    ("input_image_raw", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
    ("Intersection_exist", pa.bool_()),
])


def gedit_rows():
    rows = []
    for task in ("background_change", "color_alter"):
        for lang in ("en", "cn"):
            for k in range(2):
                key = f"{task[:3]}{k}"
                im = img_bytes(size=(10 + k, 6), color=(k * 50, 10, 10))
                rows.append({"task_type": task, "key": key, "instruction": f"{task} {lang} {k}",
                             "instruction_language": lang, "input_image": {"bytes": im, "path": f"{key}.png"},
                             "input_image_raw": {"bytes": im, "path": None}, "Intersection_exist": k == 0})
    return rows


def write_gedit_parquet(path: Path, rows=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows or gedit_rows(), schema=GEDIT_SCHEMA), path, row_group_size=3)
    return path


def write_gedit_arrow_stream(path: Path, rows=None) -> Path:
    """What the `datasets` library keeps in its cache: the arrow IPC stream format."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(rows or gedit_rows(), schema=GEDIT_SCHEMA)
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=5)
    return path


def write_kris(root: Path) -> Path:
    tasks = {
        "count_change": {"1": {"ori_img": "1.jpg", "ins_en": "Add one apple.", "explain_en": ""},
                         "2": {"ori_img": "2.jpg", "ins_en": "Remove a cup.", "explain_en": "", "extra": [1, 2]}},
        "viewpoint_change": {"1": {"ori_img": "1.jpg", "gt_img": "1_gt.jpg", "ins_en": "View from above.",
                                   "explain_en": ""}},
        "multi-element_composition": {"7": {"ori_img": ["7-1.jpg", "7-2.jpg", "7-3.jpg"],
                                            "ins_en": "Put them together.", "explain_en": ""}},
        "temporal_prediction": {"2": {"ori_img": ["2-2.jpg", "2-3.jpg", "2-4.jpg"], "ins_en": "Show frame 1.",
                                      "explain_en": ""}},
        "physics": {"3": {"ori_img": "3.jpg", "ins_en": "Heat the ice.", "explain_en": "Ice melts."},
                    "4": {"ori_img": "missing.jpg", "ins_en": "Drop it.", "explain_en": "Gravity."},
                    "5": "not a record"},
        "my_own_task": {"1": {"ori_img": "1.jpg", "ins_en": "x", "explain_en": ""}},
    }
    for task, ann in tasks.items():
        d = root / task
        d.mkdir(parents=True)
        (d / "annotation.json").write_text(json.dumps(ann, ensure_ascii=False), encoding="utf-8")
        for rec in ann.values():
            if isinstance(rec, dict):
                names = rec["ori_img"] if isinstance(rec["ori_img"], list) else [rec["ori_img"]]
                for i, name in enumerate(names + ([rec["gt_img"]] if "gt_img" in rec else [])):
                    if name != "missing.jpg":
                        (d / name).write_bytes(img_bytes(size=(8 + i, 8), fmt="JPEG"))
    return root


def write_rise(root: Path) -> Path:
    records = [
        {"index": "temporal_reasoning_1", "category": "temporal_reasoning", "subtask": "Life Progression",
         "instruction": "Draw it a year later.", "image": "temporal_reasoning_images/1.png",
         "reference": "Rotten, blackened banana."},
        {"index": "causal_reasoning_1", "category": "causal_reasoning", "subtask": "State Transition",
         "instruction": "Show it after heating.", "image": "causal_reasoning_images/1.png", "reference": "Melted."},
        {"index": "logical_reasoning_1", "category": "logical_reasoning", "subtask": "Puzzle Solving",
         "instruction": "Solve the maze.", "image": "logical_reasoning_images/1.png",
         "reference_img": "logical_reasoning_images/1_ref.png", "consistency_free": None},
        {"index": "spatial_reasoning_1", "category": "spatial_reasoning", "subtask": "Viewpoint Generation",
         "instruction": "Top view.", "image": "spatial_reasoning_images/9.png", "reference": "A circle."},
    ]
    for rec in records:
        for key in ("image", "reference_img"):
            if rec.get(key) and "9.png" not in rec[key]:
                (root / rec[key]).parent.mkdir(parents=True, exist_ok=True)
                (root / rec[key]).write_bytes(img_bytes(size=(6, 6) if key == "image" else (7, 5)))
    root.mkdir(parents=True, exist_ok=True)
    (root / "data_total.json").write_text(json.dumps(records, indent=1))
    return root / "data_total.json"


def write_imgedit(root: Path, images: Path | None = None) -> Path:
    images = images or root
    doc = {"1082": {"id": "animal/000342021.jpg", "prompt": "Make the shell smooth.", "edit_type": "alter"},
           "673": {"id": "style/000278574.jpg", "prompt": "Ukiyo-e style.", "edit_type": "style"},
           "97": {"id": "for_add/000236569.jpg", "prompt": "Add a chandelier.", "edit_type": "add"},
           "5": {"id": "animal/nope.jpg", "prompt": "x", "edit_type": "alter"}}
    for rec in doc.values():
        if "nope" not in rec["id"]:
            (images / rec["id"]).parent.mkdir(parents=True, exist_ok=True)
            (images / rec["id"]).write_bytes(img_bytes(size=(5, 9), fmt="JPEG"))
    root.mkdir(parents=True, exist_ok=True)
    (root / "basic_edit.json").write_text(json.dumps(doc, indent=4))
    return root / "basic_edit.json"


def write_all(root: Path) -> dict[str, dict]:
    """Every format under `root`: format -> {"path": what to load, "image_root": for load_benchmark or None}."""
    return {"gedit": {"path": write_gedit_parquet(root / "gedit" / "data" / "train-00000-of-00001.parquet").parent.parent,
                      "image_root": None},
            "kris": {"path": write_kris(root / "KRIS_Bench"), "image_root": None},
            "rise": {"path": write_rise(root / "rise" / "data"), "image_root": None},
            "imgedit": {"path": write_imgedit(root / "imgedit" / "json", images=root / "imgedit" / "originals"),
                        "image_root": root / "imgedit" / "originals"}}
