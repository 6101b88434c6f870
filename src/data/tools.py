"""``python main.py validate FILE`` and ``python main.py convert FILE --to jsonl``.

validate: load the benchmark in any supported format (detected, or ``--format``), decode every image
(originals and named extra images) and print one line per problem, naming file, category, pair and field;
then a summary. Exit 0 when clean, 2 when anything is wrong (the file itself, or any pair). A format
made of independent files (KRIS-Bench: one annotation.json per task folder) is checked file by file, so
that one unreadable file does not hide the problems of the others.

convert: write the benchmark in the project's own JSONL format (one pair per line: ``category``,
``pair_id``, ``edit_instruction``, ``original_description`` when there is one, ``original_image_b64`` and
``named_images_b64`` holding the images' original bytes unchanged, then every metadata field under its own
name, ``source_format`` included). The output is written to a temporary file, read back with the native
loader and compared pair by pair (ids, instructions, metadata, image bytes) before it is moved into place, so a
converted file is known to load as the same benchmark. Invalid pairs are not written; they are listed and
the exit code is 2.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import sys
from pathlib import Path

from src.data import FORMATS, BenchmarkError, InvalidPair, PairSpec, detect_format, format_module, load_benchmark


def _parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"python main.py {prog}")
    p.add_argument("path", metavar="FILE", help="benchmark file or folder (any supported format)")
    p.add_argument("--format", default="auto", choices=("auto",) + FORMATS,
                   help="benchmark format (default: detected from the path)")
    p.add_argument("--image-root", help="folder that the benchmark's relative image paths point into "
                                        "(default: the benchmark file's folder)")
    return p


def pair_problems(pair: PairSpec) -> list[str]:
    """Every problem of one pair: its parse-time error, else what decoding its images finds."""
    if pair.error:
        return [pair.error]
    problems = []
    try:
        pair.load_image()
    except InvalidPair as e:
        problems.append(str(e))
    for role in pair.image_roles:
        try:
            pair.load_named_image(role)
        except InvalidPair as e:
            problems.append(str(e))
    return problems


def validate_main(argv: list[str]) -> int:
    args = _parser("validate").parse_args(argv)
    path = Path(args.path).expanduser()
    try:
        fmt = detect_format(path) if args.format == "auto" else args.format
        module = format_module(fmt)
    except BenchmarkError as e:
        print(f"problem: {e}", flush=True)
        return 2
    # a format made of independent files (KRIS-Bench: one annotation.json per task) is checked file by
    # file, so that one broken file does not hide the problems of the others
    parts = module.parts(path) if hasattr(module, "parts") and path.exists() else [path]
    n_problems = n_bad = n_pairs = n_categories = n_unloadable = 0
    for part in parts:
        try:
            bench = load_benchmark(part, format=fmt, image_root=args.image_root)
        except BenchmarkError as e:
            print(f"problem: {e}", flush=True)
            n_problems += 1
            n_unloadable += 1
            continue
        with bench:
            for pair in bench.iter_pairs():
                problems = pair_problems(pair)
                n_bad += bool(problems)
                for text in problems:
                    n_problems += 1
                    print(f"problem: {text}", flush=True)
            n_pairs += len(bench)
            n_categories += len(bench.categories)
    summary = (f"{path} ({fmt}): {n_pairs} pairs in {n_categories} categories; {n_bad} invalid pair(s), "
               f"{n_problems} problem(s)")
    if n_unloadable:
        summary += (f"; {n_unloadable} of {len(parts)} file(s) cannot be loaded" if len(parts) > 1
                    else "; the benchmark cannot be loaded")
    print(summary if n_problems else summary + ": clean.", flush=True)
    return 2 if n_problems else 0


def pair_record(pair: PairSpec) -> dict:
    """A valid pair -> one line of the native JSONL format (images as base64 of their original bytes)."""
    rec: dict = {"category": pair.category, "pair_id": pair.pair_id, "edit_instruction": pair.instruction}
    if pair.description is not None:
        rec["original_description"] = pair.description
    rec["original_image_b64"] = base64.b64encode(pair.image_bytes()).decode("ascii")
    if pair.image_roles:
        rec["named_images_b64"] = {role: base64.b64encode(pair.named_image_bytes(role)).decode("ascii")
                                   for role in pair.image_roles}
    for key, value in pair.metadata.items():
        if key in rec and rec[key] != value:  # e.g. RISEBench's own 'category' equals ours: fine
            raise ValueError(f"{pair.where(key)}: a metadata field has the name of a field of the native format; "
                             "it cannot be written without changing its meaning")
        rec[key] = value
    return rec


def _fingerprint(pair: PairSpec) -> tuple:
    return (pair.category, pair.pair_id, pair.instruction, pair.description,
            json.dumps(pair.metadata, sort_keys=True, ensure_ascii=False),
            hashlib.sha256(pair.image_bytes()).hexdigest(),
            tuple((r, hashlib.sha256(pair.named_image_bytes(r)).hexdigest()) for r in pair.image_roles))


def convert_main(argv: list[str]) -> int:
    p = _parser("convert")
    p.add_argument("--to", required=True, choices=("jsonl",), help="output format: jsonl (the native format)")
    p.add_argument("--out", help="output file (default: FILE with the suffix .jsonl, beside it)")
    p.add_argument("--force", action="store_true", help="replace an existing output file")
    args = p.parse_args(argv)
    src = Path(args.path).expanduser()
    out = Path(args.out).expanduser() if args.out else src.with_name(src.stem + ".jsonl") if src.is_file() \
        else src.with_name(src.name + ".jsonl")
    if out.suffix.lower() not in (".jsonl", ".ndjson"):
        print(f"error: --out {out}: the output is JSON Lines; give a name ending in .jsonl", file=sys.stderr)
        return 2
    if out.exists() and (not args.force or out.resolve() == src.resolve()):
        print(f"error: {out} exists; give another --out{'' if out.resolve() == src.resolve() else ' or --force'}",
              file=sys.stderr)
        return 2
    try:
        bench = load_benchmark(src, format=args.format, image_root=args.image_root)
    except BenchmarkError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    tmp = out.with_name(f".{out.stem}.tmp-{os.getpid()}.jsonl")  # .jsonl: read back as JSONL
    written, skipped, expected = 0, [], []
    try:
        with bench, open(tmp, "w", encoding="utf-8") as f:
            for pair in bench.iter_pairs():
                problems = pair_problems(pair)
                if not problems:
                    try:
                        line = json.dumps(pair_record(pair), ensure_ascii=False)
                    except ValueError as e:
                        problems = [str(e)]
                if problems:
                    skipped.extend(problems)
                    continue
                f.write(line + "\n")
                expected.append(_fingerprint(pair))
                written += 1
        if not written:
            print(f"error: no valid pair in {src}; nothing written", file=sys.stderr)
            for text in skipped:
                print(f"problem: {text}", file=sys.stderr)
            return 2
        with load_benchmark(tmp, format="native") as back:  # read back: the file must mean the same thing
            got = [_fingerprint(q) for q in back.iter_pairs()]
        if got != expected:
            bad = next(i for i, (a, b) in enumerate(zip(got + [None] * len(expected), expected)) if a != b)
            print(f"error: the converted file does not read back as the same benchmark (pair {bad}: "
                  f"{expected[bad][:2]}); nothing written", file=sys.stderr)
            return 2
        os.replace(tmp, out)
    except (OSError, BenchmarkError) as e:
        print(f"error: cannot write {out}: {e}", file=sys.stderr)
        return 2
    finally:
        if tmp.exists():
            tmp.unlink()
    for text in skipped:
        print(f"problem (pair not written): {text}", flush=True)
    print(f"{out}: {written} pairs written ({bench.format} -> jsonl, read back identical)"
          + (f"; {len(skipped)} problem(s), invalid pairs left out" if skipped else ""), flush=True)
    return 2 if skipped else 0
