"""GEdit-Bench (stepfun-ai/GEdit-Bench on the Hugging Face hub), read from the dataset's own files.

Accepted paths: a ``.parquet`` file (the hub repository's ``data/train-*.parquet``), an ``.arrow`` file (what
the ``datasets`` library keeps in its cache), or a folder holding such files at any depth (a clone of the
dataset repository, a hub-cache snapshot, or a ``datasets`` cache folder such as
``~/.cache/huggingface/datasets/stepfun-ai___ge_dit-bench``). When one folder level holds parquet files
they are used, else the arrow files; files from two different folders (two cached versions) are refused
with the list, so that no pair is read twice. Nothing is downloaded: point at a local copy.

Columns used: ``task_type``, ``key``, ``instruction``, ``instruction_language``, ``input_image`` (the image
struct ``{bytes, path}`` of the ``datasets`` Image feature) and ``Intersection_exist``. Each row becomes a
pair in category ``f"{task_type}_{instruction_language}"`` (task type x language, e.g.
``background_change_en``) with id ``key``; the original image is ``input_image`` (``input_image_raw``, the
unresized upload, is not used). Every column except the image structs is kept in ``metadata`` under its
own name (``task_type``, ``key``, ``instruction``, ``instruction_language``, ``Intersection_exist`` ...),
with ``metadata["source_format"] = "gedit"``.

Rows are read in small batches and each image is moved to the benchmark's spool at once, so memory stays
about one batch whatever the size of the files. Needs ``pyarrow`` (in requirements.txt).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from src.data.errors import BenchmarkError
from src.data.public import b64_source, build_pair, file_source
from src.data.records import PairSpec
from src.data.spool import _Spool

NAME = "gedit"
SUFFIXES = (".parquet", ".arrow")
REQUIRED_COLUMNS = ("task_type", "key", "instruction", "instruction_language", "input_image")
IMAGE_COLUMNS = ("input_image", "input_image_raw")
UNUSED_COLUMNS = ("input_image_raw",)  # image blobs not used (listed in omitted_fields when the file has them)
_BATCH_ROWS = 8
_MAX_SCAN = 10_000  # files looked at when searching a folder


def detect(p: Path) -> bool:
    if p.is_file():
        return p.suffix.lower() in SUFFIXES
    return p.is_dir() and bool(_data_files(p, strict=False))


def _data_files(p: Path, strict: bool = True, shown: str = "") -> list[Path]:
    """The parquet (else arrow) files under folder `p`, all from one folder."""
    found: dict[str, list[Path]] = {".parquet": [], ".arrow": []}
    for n, f in enumerate(p.rglob("*")):
        if n > _MAX_SCAN:
            break
        if f.suffix.lower() in found and f.is_file() and not f.name.startswith("."):
            found[f.suffix.lower()].append(f)
    files = found[".parquet"] or found[".arrow"]
    # `datasets` caches hold extra arrow files for other splits/caches ("cache-*.arrow"): use the data ones
    files = sorted(f for f in files if not f.name.startswith("cache-"))
    folders = sorted({str(f.parent) for f in files})
    if strict and len(folders) > 1:
        raise BenchmarkError(
            f"benchmark folder {shown} holds GEdit-Bench files in {len(folders)} folders ({', '.join(folders[:5])}"
            f"{' ...' if len(folders) > 5 else ''}): several copies or versions? Point benchmark.data_path at "
            "one of them.")
    return files


def _batches(f: Path, shown: str) -> Iterator[list[dict]]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - pinned in requirements.txt
        raise BenchmarkError("reading GEdit-Bench needs the pyarrow package: pip install -r requirements.txt") from None
    try:
        if f.suffix.lower() == ".parquet":
            pf = pq.ParquetFile(f)
            names = pf.schema_arrow.names
            _check_columns(names, f, shown)
            # the unused full-size uploads (input_image_raw) are not even read: only the columns we keep
            columns = [n for n in names if n not in UNUSED_COLUMNS]
            for batch in pf.iter_batches(batch_size=_BATCH_ROWS, columns=columns):
                yield batch.to_pylist()
            return
        with open(f, "rb") as fh:  # `datasets` writes the arrow IPC *stream* format; accept the file format too
            try:
                reader = pa.ipc.open_stream(fh)
            except pa.ArrowInvalid:
                fh.seek(0)
                reader = pa.ipc.open_file(fh)
                _check_columns(reader.schema.names, f, shown)
                for i in range(reader.num_record_batches):
                    yield from _small(reader.get_batch(i))
                return
            _check_columns(reader.schema.names, f, shown)
            for batch in reader:
                yield from _small(batch)
    except BenchmarkError:
        raise
    except (OSError, ValueError) as e:  # pyarrow's errors (ArrowInvalid, ArrowIOError ...) derive from these
        raise BenchmarkError(f"benchmark file {f} is not a readable parquet/arrow file: {e}") from None


def _small(batch) -> Iterator[list[dict]]:
    keep = [n for n in batch.schema.names if n not in UNUSED_COLUMNS]
    batch = batch.select(keep)
    for start in range(0, batch.num_rows, _BATCH_ROWS):
        yield batch.slice(start, _BATCH_ROWS).to_pylist()


def _check_columns(names: list[str], f: Path, shown: str) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        raise BenchmarkError(f"benchmark file {f} is not GEdit-Bench data: no column(s) "
                             f"{', '.join(map(repr, missing))} (it has: {', '.join(map(repr, names[:20]))}).")


def read(p: Path, shown: str, spool: _Spool, image_root: Path | None = None) -> tuple[dict[str, list[PairSpec]], dict]:
    files = [p] if p.is_file() else _data_files(p, shown=shown)
    if not files:
        raise BenchmarkError(f"benchmark folder {shown} has no .parquet or .arrow file (GEdit-Bench).")
    groups: dict[str, list[PairSpec]] = {}
    for f in files:
        source = f.name
        omitted = [c for c in IMAGE_COLUMNS if c in _column_names(f)]
        for rows in _batches(f, shown):
            for row in rows:
                _add(groups, row, source, spool, image_root or f.parent, omitted)
    return groups, {"files": [str(f) for f in files]}


def _column_names(f: Path) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        if f.suffix.lower() == ".parquet":
            return pq.read_schema(f).names
        with open(f, "rb") as fh:
            try:
                return pa.ipc.open_stream(fh).schema.names
            except pa.ArrowInvalid:
                fh.seek(0)
                return pa.ipc.open_file(fh).schema.names
    except (OSError, ValueError):
        return []  # _batches reports the error


def _add(groups: dict[str, list[PairSpec]], row: dict, source: str, spool: _Spool, base: Path,
         omitted: list[str]) -> None:
    task, lang = row.get("task_type"), row.get("instruction_language")
    category = f"{task}_{lang}" if isinstance(task, str) and isinstance(lang, str) and task and lang else "unknown"
    specs = groups.setdefault(category, [])
    index = len(specs)
    problems: list[str] = []
    if category == "unknown":
        problems.append(f"fields 'task_type' / 'instruction_language' must be non-empty strings, got "
                        f"{task!r} / {lang!r}")
    image = _image(row.get("input_image"), spool, base, problems)
    specs.append(build_pair(fmt=NAME, source=source, category=category, index=index, raw=row,
                            pair_id=row.get("key"), id_field="key", instruction=row.get("instruction"),
                            instruction_field="instruction", image=image, image_field="input_image",
                            problems=problems, omit=IMAGE_COLUMNS))
    spec = specs[-1]  # the image columns of the file (input_image_raw is not even read), then any other blob
    spec.omitted_fields = list(omitted) + [k for k in spec.omitted_fields if k not in omitted]


def _image(value: Any, spool: _Spool, base: Path, problems: list[str]):
    """The `datasets` Image struct {bytes, path} -> a source: the bytes, else the file at path."""
    if isinstance(value, dict):
        if isinstance(value.get("bytes"), (bytes, bytearray)) and value["bytes"]:
            return b64_source(bytes(value["bytes"]), spool)
        if value.get("path"):
            return file_source(value["path"], base, "input_image", problems)
        problems.append("field 'input_image': the image has neither bytes nor a path (image is null)")
        return None
    if isinstance(value, (bytes, bytearray)) and value:
        return b64_source(bytes(value), spool)
    problems.append("field 'input_image': image is null" if value is None else
                    f"field 'input_image': expected the image struct {{bytes, path}}, got {type(value).__name__}")
    return None
