"""ImgEdit (the basic single-turn benchmark), read as distributed: ``basic_edit.json`` and the folder of
original images (``origin_img_root`` in ImgEdit's scripts).

``basic_edit.json`` maps a key to a record ``{"id": "<folder>/<file>.jpg", "prompt": ..., "edit_type": ...}``.
Each record becomes a pair in category = ``edit_type`` (``add``, ``remove``, ``replace``, ``alter``,
``style``, ``background``, ``extract``, ``action``, ``compose`` ...) with id = its key; the original image is
``id`` resolved against the image folder: ``benchmark.image_root`` when set, else the JSON file's folder.
Every field of the record is kept in ``metadata`` under its own name, plus ``key`` (the record's key)
and ``metadata["source_format"] = "imgedit"``.

ImgEdit's UGE set (``UGE_edit.json``: the same records without ``edit_type``) is read too: when no record
of a file has an ``edit_type``, every pair goes into one category named after the file (``UGE_edit``); in
a file where some records have one, a record without it is an invalid pair.
"""

from __future__ import annotations

from pathlib import Path

from src.data.errors import BenchmarkError
from src.data.jsonio import _check_file, _load_json
from src.data.public import bad_record, build_pair, file_source, is_missing, looks_native, peek
from src.data.records import PairSpec
from src.data.spool import _kind, _materialize, _Spool

NAME = "imgedit"
FILE_NAME = "basic_edit.json"
FILE_NAMES = (FILE_NAME, "UGE_edit.json")


def detect(p: Path) -> bool:
    if not p.is_file():
        return False
    if p.name in FILE_NAMES:
        return True
    head = peek(p)
    return (p.suffix.lower() == ".json" and head.lstrip().startswith("{") and not looks_native(head)
            and '"edit_type"' in head and '"prompt"' in head and '"id"' in head)


def read(p: Path, shown: str, spool: _Spool, image_root: Path | None = None) -> tuple[dict[str, list[PairSpec]], dict]:
    _check_file(p, shown)
    doc = _load_json(p, shown, spool)
    if not isinstance(doc, dict):
        raise BenchmarkError(f"benchmark file {shown}: expected an object mapping key -> ImgEdit record, got "
                             f"{_kind(doc)}.")
    if dups := getattr(doc, "duplicates", None):
        raise BenchmarkError(f"benchmark file {shown}: repeats the key(s) {', '.join(map(repr, dups))}; JSON "
                             "would silently keep only the last one.")
    base = image_root if image_root is not None else p.resolve().parent
    groups: dict[str, list[PairSpec]] = {}
    typed = any(isinstance(r, dict) and "edit_type" in r for r in doc.values())  # else: the UGE set
    for key, record in doc.items():
        record = _materialize(record)
        etype = record.get("edit_type") if isinstance(record, dict) else None
        category = (etype.strip() if isinstance(etype, str) and etype.strip() else "unknown") if typed else p.stem
        specs = groups.setdefault(category, [])
        if not isinstance(record, dict):
            specs.append(bad_record(fmt=NAME, source=p.name, category=category, index=len(specs), pair_id=key,
                                    value=record))
            continue
        problems: list[str] = []
        if category == "unknown":
            problems.append(f"field 'edit_type': must be a non-empty string, got {etype!r}")
        if dups := getattr(record, "duplicates", None):
            problems.append(f"repeated key(s) {', '.join(map(repr, dups))} (JSON keeps only the last)")
        image = None
        if is_missing(record.get("id")):
            problems.append("field 'id': image is null" if "id" in record else "no field 'id' (the original image)")
        else:
            image = file_source(record["id"], base, "id", problems)
            if image is None and image_root is None:
                problems[-1] += " (set benchmark.image_root to the folder of the original images)"
        specs.append(build_pair(fmt=NAME, source=p.name, category=category, index=len(specs),
                                raw={**record, "key": key}, pair_id=key, id_field="key",
                                instruction=record.get("prompt"), instruction_field="prompt", image=image,
                                image_field="id", problems=problems))
    return groups, {}
