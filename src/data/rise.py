"""RISEBench, read as distributed: ``data/data_total.json`` (a list of records) and the image folders
beside it (``temporal_reasoning_images/`` ...).

Record fields used: ``index`` (the id, e.g. ``temporal_reasoning_1``), ``category`` (``temporal_reasoning``,
``causal_reasoning``, ``spatial_reasoning``, ``logical_reasoning``), ``instruction``, ``image`` (the input
image, relative to the JSON file's folder -- the official ``--input`` folder; ``benchmark.image_root``
changes it) and, when present and not empty, ``reference_img`` (the reference-answer image: the judge-only
image ``reference``). The text fields the official judge uses (``reference``, ``reference_txt``,
``subtask``, ``consistency_free``, ``reasoning_img``, ``reasoning_wo_ins`` ...) and every other field are
kept in ``metadata`` under their own names, with ``metadata["source_format"] = "rise"``.

Categories are the four reasoning types under their RISEBench names (``temporal_reasoning``,
``causal_reasoning``, ``spatial_reasoning``, ``logical_reasoning`` -- also the folder names of the official
output layout). A record without a usable ``category`` stops the load (like a native flat list without
one): pairs cannot be grouped without it.
"""

from __future__ import annotations

from pathlib import Path

from src.data.errors import BenchmarkError
from src.data.jsonio import _check_file, _load_json
from src.data.public import bad_record, build_pair, file_source, is_missing, looks_native, peek
from src.data.records import REFERENCE_ROLE, PairSpec
from src.data.spool import _kind, _materialize, _Spool

NAME = "rise"
FILE_NAME = "data_total.json"
SUFFIX = "_reasoning"
CATEGORIES = ("temporal_reasoning", "causal_reasoning", "spatial_reasoning", "logical_reasoning")


def detect(p: Path) -> bool:
    if not p.is_file():
        return False
    if p.name == FILE_NAME:
        return True
    head = peek(p)
    return (p.suffix.lower() == ".json" and head.lstrip().startswith("[") and not looks_native(head)
            and '"index"' in head and '"image"' in head and SUFFIX in head)


def category_of(value) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def read(p: Path, shown: str, spool: _Spool, image_root: Path | None = None) -> tuple[dict[str, list[PairSpec]], dict]:
    _check_file(p, shown)
    doc = _load_json(p, shown, spool)
    if not isinstance(doc, list):
        raise BenchmarkError(f"benchmark file {shown}: expected a list of RISEBench records, got {_kind(doc)}.")
    base = image_root if image_root is not None else p.resolve().parent
    groups: dict[str, list[PairSpec]] = {}
    for i, record in enumerate(doc):
        if not isinstance(record, dict):
            raise BenchmarkError(f"benchmark file {shown}: entry {i} is {_kind(record)}, not a record object.")
        category = category_of(_materialize(record.get("category")))
        if category is None:
            raise BenchmarkError(f"benchmark file {shown}: entry {i} (index {_materialize(record.get('index'))!r}) "
                                 f"has no usable 'category' (got {_materialize(record.get('category'))!r}); "
                                 "expected e.g. 'temporal_reasoning'.")
        specs = groups.setdefault(category, [])
        specs.append(_pair(category, len(specs), _materialize(record), p.name, base))
    return groups, {}


def _pair(category: str, index: int, record: dict, source: str, base: Path) -> PairSpec:
    if not isinstance(record, dict):  # pragma: no cover - checked by read
        return bad_record(fmt=NAME, source=source, category=category, index=index, pair_id=None, value=record)
    problems: list[str] = []
    if dups := getattr(record, "duplicates", None):
        problems.append(f"repeated key(s) {', '.join(map(repr, dups))} (JSON keeps only the last)")
    image = None
    if is_missing(record.get("image")):
        problems.append("field 'image': image is null" if "image" in record else "no field 'image' (the input image)")
    else:
        image = file_source(record["image"], base, "image", problems)
    extras = []
    if not is_missing(record.get("reference_img")):
        extras.append((REFERENCE_ROLE, "reference_img", file_source(record["reference_img"], base,
                                                                    "reference_img", problems)))
    return build_pair(fmt=NAME, source=source, category=category, index=index, raw=record,
                      pair_id=record.get("index"), id_field="index", instruction=record.get("instruction"),
                      instruction_field="instruction", image=image, image_field="image", extras=extras,
                      problems=problems)
