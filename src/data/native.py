"""The project's own benchmark format ("native"): JSON or JSONL, images as base64 (or file paths).

Accepted file shapes (UTF-8, a BOM is tolerated):

* ``{"<cat>": [pair, ...], ...}``
* ``{"<cat>": {"data_pairs": [pair, ...], <other keys ignored>}, ...}``
* ``{"categories": [{"name": "<cat>", "data_pairs": [pair, ...]}, ...], <other keys>}``
* ``[pair, ...]`` where every pair has a ``category`` field (also ``{"data_pairs": [pair, ...]}``)
* ``.jsonl`` / ``.ndjson``: one pair per line with a ``category`` field; blank lines are skipped.

Pair fields (first synonym present wins; the unused synonyms are kept in ``metadata``):

* image: ``original_image_b64`` | ``image_b64`` (plain base64 or a ``data:image/...;base64,`` URL), or
  ``original_image_path`` | ``image_path`` (relative to the benchmark file's folder; absolute paths and
  ``..`` are allowed because this module only *reads*; the resolved path is in ``PairSpec.image_path``)
* ``edit_instruction`` | ``instruction`` (required, non-empty string)
* ``original_description`` | ``description`` (optional string; empty means absent)
* ``pair_id`` | ``id`` (string or integer; when absent the position in the category, ``f"{index:04d}"``)
* ``reference_images_b64`` (optional list of base64 strings: further edit inputs, roles ``original_2`` ...)
* ``named_images_b64`` (optional ``{role: base64}``; see `PairSpec` for what a role means)
* anything else is kept in ``metadata`` -- except base64 blobs (keys ending in ``b64``/``base64``,
  ``data:`` URLs, strings over 64 KiB), whose names are listed in ``PairSpec.omitted_fields``.
  ``metadata["source_format"]`` is ``"native"`` unless the pair has its own ``source_format`` field (a
  file written by ``python main.py convert`` keeps the public format it came from; for RISEBench pairs the
  ``category`` field stays in metadata too, as it is one of RISEBench's own fields).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from src.data.errors import BenchmarkError
from src.data.images import _DATA_URL, safe_name
from src.data.jsonio import _check_file, _DupDict, _load_json, _load_jsonl
from src.data.records import EDITOR_ROLE_PREFIX, PairSpec, set_pair_id
from src.data.spool import _blank, _kind, _materialize, _Spool, _Spooled

NAME = "native"

IMAGE_B64_FIELDS = ("original_image_b64", "image_b64")
IMAGE_PATH_FIELDS = ("original_image_path", "image_path")
INSTRUCTION_FIELDS = ("edit_instruction", "instruction")
DESCRIPTION_FIELDS = ("original_description", "description")
ID_FIELDS = ("pair_id", "id")
REFERENCE_FIELD = "reference_images_b64"
NAMED_IMAGES_FIELD = "named_images_b64"
_KNOWN_FIELDS = set(IMAGE_B64_FIELDS + IMAGE_PATH_FIELDS + INSTRUCTION_FIELDS + DESCRIPTION_FIELDS
                    + ID_FIELDS + (REFERENCE_FIELD, NAMED_IMAGES_FIELD))
_BIG_STRING = 64 * 1024
# public formats whose records carry a 'category' field of their own (kept in metadata after `convert`)
_OWN_CATEGORY_FIELD = ("rise",)


def detect(p: Path) -> bool:
    """Any .json / .jsonl / .ndjson file (the fallback format: it gives the clearest errors)."""
    return p.is_file()


def read(p: Path, shown: str, spool: _Spool, image_root: Path | None = None) -> tuple[dict[str, list[PairSpec]], dict]:
    """The file -> ({category: [PairSpec]}, info: top-level keys that are not categories). Relative image
    paths are relative to `image_root` (default: the file's folder)."""
    _check_file(p, shown)
    if p.suffix.lower() in (".jsonl", ".ndjson"):
        items, labels = _load_jsonl(p, shown, spool)
        groups = _group_flat(items, shown, labels)
        del items
        info: dict = {}
    else:
        groups, info = _split_categories(_load_json(p, shown, spool), shown)
        info = _materialize(info)
    base_dir = image_root.resolve() if image_root is not None else p.resolve().parent
    return {cat: [_parse_pair(r, cat, i, p.name, base_dir) for i, r in enumerate(raws)]
            for cat, raws in groups.items()}, info


def _category_name(value: Any, what: str, shown: str) -> str:
    value = _materialize(value)
    if isinstance(value, bool) or not isinstance(value, (str, int)) or str(value).strip() == "":
        raise BenchmarkError(f"benchmark file {shown}: {what} has no usable category name "
                             f"(got {value!r}; expected a non-empty string).")
    return str(value)


def _group_flat(items: list, shown: str, labels: list[str]) -> dict[str, list]:
    """A flat list of pairs with a `category` field -> {category: [pairs]} (first-appearance order)."""
    groups: dict[str, list] = {}
    for item, label in zip(items, labels):
        if not isinstance(item, dict):
            raise BenchmarkError(f"benchmark file {shown}: {label} is {_kind(item)}, not a pair object "
                                 "(a flat list needs objects with a 'category' field).")
        if "category" not in item:
            raise BenchmarkError(f"benchmark file {shown}: {label} has no 'category' field (a flat list "
                                 "of pairs needs one per pair).")
        cat = _category_name(item["category"], label, shown)
        pair = dict(item)
        if _materialize(pair.get("source_format")) not in _OWN_CATEGORY_FIELD:
            del pair["category"]  # a native pair's category field is its category, not metadata
        # else: a pair converted from a format whose records have a 'category' field of their own (RISEBench:
        # equal to the category): it stays in metadata as it was
        groups.setdefault(cat, []).append(pair)
    return groups


def _check_dups(obj: Any, shown: str, where: str) -> None:
    if isinstance(obj, _DupDict):
        raise BenchmarkError(f"benchmark file {shown}: {where} repeats the key(s) "
                             f"{', '.join(map(repr, obj.duplicates))}; JSON would silently keep only the "
                             "last one.")


def _split_categories(doc: Any, shown: str) -> tuple[dict[str, list], dict]:
    """The parsed document -> ({category: [raw pairs]}, info)."""
    info: dict = {}
    if isinstance(doc, list):
        return _group_flat(doc, shown, [f"entry {i} of the top-level list" for i in range(len(doc))]), info
    if not isinstance(doc, dict):
        raise BenchmarkError(f"benchmark file {shown}: the top level is {_kind(doc)}; expected an object "
                             "mapping category -> pairs, {'categories': [...]}, or a list of pairs.")
    _check_dups(doc, shown, "the top-level object")
    cats = doc.get("categories")
    if isinstance(cats, list) and cats and all(
            isinstance(c, dict) and "data_pairs" in c and ("name" in c or "category" in c) for c in cats):
        groups: dict[str, list] = {}
        for i, c in enumerate(cats):
            _check_dups(c, shown, f"categories[{i}]")
            name = _category_name(c.get("name", c.get("category")), f"categories[{i}]", shown)
            if name in groups:
                raise BenchmarkError(f"benchmark file {shown}: category {name!r} appears twice in "
                                     "'categories'.")
            if not isinstance(c["data_pairs"], list):
                raise BenchmarkError(f"benchmark file {shown}: category {name!r}: 'data_pairs' is "
                                     f"{_kind(c['data_pairs'])}, expected a list of pairs.")
            groups[name] = c["data_pairs"]
        info = {k: v for k, v in doc.items() if k != "categories"}
        return groups, info
    if isinstance(doc.get("data_pairs"), list) and all(
            isinstance(p, dict) and "category" in p for p in doc["data_pairs"]):
        labels = [f"entry {i} of 'data_pairs'" for i in range(len(doc["data_pairs"]))]
        return _group_flat(doc["data_pairs"], shown, labels), {
            k: v for k, v in doc.items() if k != "data_pairs"}
    groups = {}
    for key, value in doc.items():
        if isinstance(value, list):
            groups[key] = value
        elif isinstance(value, dict):
            _check_dups(value, shown, f"category {key!r}")
            if "data_pairs" not in value:
                raise BenchmarkError(
                    f"benchmark file {shown}: category {key!r} is an object without 'data_pairs' (its "
                    f"keys: {', '.join(map(repr, list(value)[:10]))}); expected a list of pairs or "
                    "{'data_pairs': [...]}.")
            if not isinstance(value["data_pairs"], list):
                raise BenchmarkError(f"benchmark file {shown}: category {key!r}: 'data_pairs' is "
                                     f"{_kind(value['data_pairs'])}, expected a list of pairs.")
            groups[key] = value["data_pairs"]
        else:  # scalars next to categories (version, name ...) are file metadata
            info[key] = value
    if not groups:
        raise BenchmarkError(
            f"benchmark file {shown}: unrecognised top-level shape: no key holds a list of pairs (keys: "
            f"{', '.join(map(repr, list(doc)[:10])) or 'none'}). Expected {{category: [pairs]}}, "
            "{category: {'data_pairs': [pairs]}}, {'categories': [{'name', 'data_pairs'}]} or a list "
            "of pairs with a 'category' field.")
    return groups, info


def _first(pair: dict, names: tuple[str, ...], spooled: bool = False) -> tuple[str | None, Any]:
    """The first of `names` present and not null, and its value (read back from the spool unless
    `spooled`: the image field keeps its reference)."""
    for n in names:
        if n in pair and pair[n] is not None:
            return n, (pair[n] if spooled else _materialize(pair[n]))
    return None, None


def _is_blob(key: str, value: Any) -> bool:
    k = key.lower()
    if k.endswith("b64") or k.endswith("base64"):
        return True
    if isinstance(value, str) and (len(value) > _BIG_STRING or _DATA_URL.match(value[:200] or "")):
        return True
    if isinstance(value, _Spooled) and (value.length > _BIG_STRING or _DATA_URL.match(value.head)):
        return True
    if isinstance(value, list) and value and all(isinstance(v, (str, _Spooled)) and _is_blob("", v)
                                                 for v in value):
        return True
    return False


def _parse_pair(raw: Any, category: str, index: int, source: str, base_dir: Path) -> PairSpec:
    default_id = f"{index:04d}"
    spec = PairSpec(category=category, pair_id=default_id, index=index, file_stem="",
                    instruction=None, description=None, source=source)
    if not isinstance(raw, dict):
        spec.file_stem = safe_name(spec.pair_id)
        spec.error = f"{spec.where()} (position {index}): the pair is {_kind(raw)}, not an object"
        spec.metadata["source_format"] = "native"
        return spec
    problems: list[str] = []

    # id
    id_field, pid = _first(raw, ID_FIELDS)
    if id_field is not None:
        set_pair_id(spec, pid, id_field, problems)
    else:
        spec.file_stem = safe_name(spec.pair_id)

    # instruction
    f_ins, ins = _first(raw, INSTRUCTION_FIELDS)
    if f_ins is None:
        problems.append("no edit instruction (field 'edit_instruction' or 'instruction' is missing or "
                        "null)")
    elif not isinstance(ins, str):
        problems.append(f"field {f_ins!r}: must be a string, got {_kind(ins)}")
    elif not ins.strip():
        problems.append(f"field {f_ins!r}: the edit instruction is empty")
    else:
        spec.instruction = ins.strip()

    # description
    f_desc, desc = _first(raw, DESCRIPTION_FIELDS)
    if f_desc is not None:
        if not isinstance(desc, str):
            problems.append(f"field {f_desc!r}: must be a string or null, got {_kind(desc)}")
        else:
            spec.description = desc.strip() or None

    # image
    f_b64, b64 = _first(raw, IMAGE_B64_FIELDS, spooled=True)
    f_path, ipath = _first(raw, IMAGE_PATH_FIELDS)
    if f_b64 is not None:
        spec.image_field = f_b64
        is_text = isinstance(b64, (str, _Spooled))
        if not is_text or _blank(b64):
            problems.append(f"field {f_b64!r}: must be a non-empty base64 string, got "
                            f"{_kind(b64) if not is_text else 'an empty string'}")
        else:
            spec._image_b64 = b64
    elif f_path is not None:
        spec.image_field = f_path
        if not isinstance(ipath, str) or not ipath.strip():
            problems.append(f"field {f_path!r}: must be a non-empty path string, got {ipath!r}")
        else:
            p = Path(ipath).expanduser()
            p = p if p.is_absolute() else base_dir / p
            spec.image_path = str(p)
            if not p.is_file():
                problems.append(f"field {f_path!r}: image file not found: {p}")
    else:
        nulls = [n for n in IMAGE_B64_FIELDS + IMAGE_PATH_FIELDS if n in raw]
        if nulls:
            spec.image_field = nulls[0]
            problems.append(f"field {nulls[0]!r}: image is null")
        else:
            problems.append("no image field (expected 'original_image_b64', 'image_b64' or "
                            "'original_image_path')")

    # extra input images (a list: original_2, original_3 ...) and named extra images ({role: base64})
    if raw.get(REFERENCE_FIELD) is not None:
        refs = raw[REFERENCE_FIELD]
        if not isinstance(refs, list) or not all(isinstance(r, (str, _Spooled)) and not _blank(r) for r in refs):
            problems.append(f"field {REFERENCE_FIELD!r}: must be a list of base64 strings")
        else:
            for i, ref in enumerate(refs):
                spec.add_extra_image(f"{EDITOR_ROLE_PREFIX}{i + 2}", ref, f"{REFERENCE_FIELD}[{i}]")
    if raw.get(NAMED_IMAGES_FIELD) is not None:
        named = raw[NAMED_IMAGES_FIELD]
        if not isinstance(named, dict):
            problems.append(f"field {NAMED_IMAGES_FIELD!r}: must be an object {{role: base64 string}}, got "
                            f"{_kind(named)}")
        else:
            for role, value in named.items():
                label = f"{NAMED_IMAGES_FIELD}[{role!r}]"
                if not isinstance(value, (str, _Spooled)) or _blank(value):
                    problems.append(f"field {label}: must be a non-empty base64 string, got "
                                    f"{_kind(value) if not isinstance(value, str) else 'an empty string'}")
                    continue
                try:
                    spec.add_extra_image(str(role), value, label)
                except ValueError as e:
                    problems.append(f"field {label}: {e}")

    if isinstance(raw, _DupDict):
        problems.append(f"repeated key(s) {', '.join(map(repr, raw.duplicates))} (JSON keeps only the last)")

    # everything else -> metadata (unused synonyms included), blobs left out
    used = {id_field, f_ins, f_desc, spec.image_field, REFERENCE_FIELD, NAMED_IMAGES_FIELD}
    for key, value in raw.items():
        if key in used:
            continue
        if _is_blob(key, value):
            spec.omitted_fields.append(key)
        else:
            spec.metadata[key] = _materialize(value)

    spec.metadata.setdefault("source_format", "native")  # a converted file keeps the format it came from
    if problems:
        spec.error = f"{spec.where()}: " + "; ".join(problems)
    return spec

