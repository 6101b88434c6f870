"""KRIS-Bench, read as distributed: a ``KRIS_Bench`` folder with one folder per task, each holding an
``annotation.json`` and the task's images.

Accepted paths: the ``KRIS_Bench`` folder (every task folder in it), one task folder, or one task's
``annotation.json``. ``annotation.json`` maps an image id to a record with ``ori_img`` (a file name, or a
list of them for the multi-image tasks), ``ins_en`` (the instruction), ``explain_en`` (the knowledge
explanation), optionally ``gt_img`` (the ground-truth image, e.g. of ``viewpoint_change``), and whatever
else the record holds.

Each record becomes a pair in category = its task folder (``count_change``, ``physics`` ...), id = its key.
The first ``ori_img`` is the original; further ones are edit inputs ``original_2``, ``original_3`` ...
(editor and judge); ``gt_img`` is the judge-only image ``reference``. Every field of the record is kept in
``metadata`` under its own name (file names are not blobs), plus the groups the official summary uses:

* ``sub_task``: the task folder name
* ``dimension``: one of `DIMENSIONS` (e.g. ``Attribute Perception``), None for a folder the official
  summary does not list
* ``knowledge_type``: ``Factual Knowledge`` | ``Conceptual Knowledge`` | ``Procedural Knowledge`` (or None)
* ``knowledge_task``: True when the official summary scores a knowledge metric for the task
  (Social Science, Natural Science, Logical Reasoning)
* ``source_format``: ``"kris"``

For ``temporal_prediction`` (frames ``<id>-<frame>.jpg``; three are given, the fourth is to be made):

* ``frame_numbers``: the frame number of each ``ori_img`` (in order: original, original_2, original_3)
* ``target_frame``: the frame to predict -- the one of 1..4 not given, else the last given + 1 (how the
  official temporal script numbers it); None when the names carry no frame numbers
* ``temporal_prediction_type``: ``reverse`` (frame 1), ``intermediate`` (2 or 3) or ``forward`` (4): the
  three temporal sub-tasks that, with the 19 other task folders, make the paper's 22 sub-tasks

The official summary script groups 20 task folders; task folders are read in its order, unknown ones
after them, alphabetically, with their groups None.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from src.data.errors import BenchmarkError
from src.data.jsonio import _load_json
from src.data.public import bad_record, build_pair, file_source, is_missing, looks_native, peek
from src.data.records import EDITOR_ROLE_PREFIX, REFERENCE_ROLE, PairSpec
from src.data.spool import _kind, _materialize, _Spool

log = logging.getLogger("src.data")

NAME = "kris"
ANNOTATION = "annotation.json"

# dimension -> its task folders, in the order of the official summary
DIMENSIONS: dict[str, tuple[str, ...]] = {
    "Attribute Perception": ("count_change", "color_change", "size_adjustment", "part_completion",
                             "anomaly_correction"),
    "Spatial Perception": ("viewpoint_change", "position_movement"),
    "Temporal Prediction": ("temporal_prediction",),
    "Social Science": ("humanities", "practical_knowledge"),
    "Natural Science": ("biology", "chemistry", "geography", "medicine", "mathematics", "physics"),
    "Logical Reasoning": ("abstract_reasoning", "rule-based_reasoning"),
    "Instruction Decomposition": ("multi-element_composition", "multi-instruction_execution"),
}
KNOWLEDGE_TYPES: dict[str, tuple[str, ...]] = {
    "Factual Knowledge": ("Attribute Perception", "Spatial Perception", "Temporal Prediction"),
    "Conceptual Knowledge": ("Social Science", "Natural Science"),
    "Procedural Knowledge": ("Logical Reasoning", "Instruction Decomposition"),
}
KNOWLEDGE_DIMENSIONS = ("Social Science", "Natural Science", "Logical Reasoning")
TASK_ORDER = [t for tasks in DIMENSIONS.values() for t in tasks]


def groups_of(task: str) -> dict:
    """The derived metadata of a task folder (see the module docstring)."""
    dimension = next((d for d, tasks in DIMENSIONS.items() if task in tasks), None)
    ktype = next((k for k, dims in KNOWLEDGE_TYPES.items() if dimension in dims), None)
    return {"sub_task": task, "dimension": dimension, "knowledge_type": ktype,
            "knowledge_task": dimension in KNOWLEDGE_DIMENSIONS}


_FRAME = re.compile(r"(\d+)-(\d+)")


def temporal_fields(names: list[str]) -> dict:
    """frame_numbers / target_frame / temporal_prediction_type of a temporal_prediction record."""
    frames = []
    for name in names:
        m = _FRAME.search(Path(name).name)
        frames.append(int(m.group(2)) if m else None)
    known = [f for f in frames if f is not None]
    missing = {1, 2, 3, 4} - set(known)
    target = next(iter(missing)) if len(missing) == 1 else (max(known) + 1 if known else None)
    kind = {1: "reverse", 2: "intermediate", 3: "intermediate", 4: "forward"}.get(target)
    return {"frame_numbers": frames, "target_frame": target, "temporal_prediction_type": kind}


def detect(p: Path) -> bool:
    if p.is_file():
        head = peek(p) if p.suffix.lower() == ".json" else ""
        return p.name == ANNOTATION or ('"ins_en"' in head and '"ori_img"' in head and not looks_native(head))
    return p.is_dir() and ((p / ANNOTATION).is_file() or any(
        (c / ANNOTATION).is_file() for c in p.iterdir() if c.is_dir()))


def _task_files(p: Path, shown: str) -> list[Path]:
    if p.is_file():
        return [p]
    if (p / ANNOTATION).is_file():
        return [p / ANNOTATION]
    found = {c.name: c / ANNOTATION for c in p.iterdir() if c.is_dir() and (c / ANNOTATION).is_file()}
    if not found:
        raise BenchmarkError(f"benchmark folder {shown} has no task folder with an {ANNOTATION} (KRIS-Bench).")
    order = [t for t in TASK_ORDER if t in found] + sorted(t for t in found if t not in TASK_ORDER)
    unknown = [t for t in order if t not in TASK_ORDER]
    if unknown:
        log.warning("%s: task folder(s) %s are not in the official KRIS-Bench summary: read, with no "
                    "dimension / knowledge type", shown, ", ".join(unknown))
    return [found[t] for t in order]


def parts(p: Path) -> list[Path]:
    """The independently loadable pieces of `p` (for `python main.py validate`): each task folder."""
    if p.is_file() or (p / ANNOTATION).is_file():
        return [p]
    try:
        return [f.parent for f in _task_files(p, str(p))]
    except BenchmarkError:
        return [p]


def read(p: Path, shown: str, spool: _Spool, image_root: Path | None = None) -> tuple[dict[str, list[PairSpec]], dict]:
    groups: dict[str, list[PairSpec]] = {}
    for ann in _task_files(p, shown):
        task = ann.parent.name
        doc = _load_json(ann, str(ann), spool)
        if not isinstance(doc, dict):
            raise BenchmarkError(f"benchmark file {ann}: expected an object mapping image id -> record, got "
                                 f"{_kind(doc)}.")
        dups = getattr(doc, "duplicates", None)
        if dups:
            raise BenchmarkError(f"benchmark file {ann}: repeats the id(s) {', '.join(map(repr, dups))}; JSON "
                                 "would silently keep only the last one.")
        base = image_root / task if image_root is not None else ann.parent
        source = f"{task}/{ANNOTATION}"
        groups[task] = [_pair(task, i, key, record, source, base) for i, (key, record) in enumerate(doc.items())]
    return groups, {}


def _pair(task: str, index: int, key: str, record, source: str, base: Path) -> PairSpec:
    if not isinstance(record, dict):
        return bad_record(fmt=NAME, source=source, category=task, index=index, pair_id=key, value=record)
    record = _materialize(record)
    problems: list[str] = []
    if dups := getattr(record, "duplicates", None):
        problems.append(f"repeated key(s) {', '.join(map(repr, dups))} (JSON keeps only the last)")
    ori = record.get("ori_img")
    names = [ori] if isinstance(ori, str) else ori
    image, extras = None, []
    if is_missing(ori):
        problems.append("field 'ori_img': image is null" if "ori_img" in record else "no field 'ori_img' (the original image)")
    elif not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        problems.append(f"field 'ori_img': must be a file name or a non-empty list of file names, got {json.dumps(ori)[:80]}")
    else:
        label = "ori_img" if isinstance(ori, str) else "ori_img[0]"
        image = file_source(names[0], base, label, problems)
        for i, name in enumerate(names[1:], start=1):
            extras.append((f"{EDITOR_ROLE_PREFIX}{i + 1}", f"ori_img[{i}]", file_source(name, base, f"ori_img[{i}]", problems)))
    gt = record.get("gt_img")
    if not is_missing(gt):
        extras.append((REFERENCE_ROLE, "gt_img", file_source(gt, base, "gt_img", problems)))
    derived = groups_of(task)
    if task == "temporal_prediction" and isinstance(names, list) and all(isinstance(n, str) for n in names):
        derived.update(temporal_fields(names))
    return build_pair(fmt=NAME, source=source, category=task, index=index, raw=record, pair_id=key,
                      id_field="id (the key in annotation.json)", instruction=record.get("ins_en"),
                      instruction_field="ins_en", image=image, image_field="ori_img", extras=extras,
                      problems=problems, extra_metadata=derived)
