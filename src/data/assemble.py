"""The checks every format shares once its pairs are parsed: unique ids and file names per category,
distinct category directories, at least one pair; then the category selection and the limit."""

from __future__ import annotations

import difflib
import logging
from pathlib import Path

from src.data.errors import BenchmarkError
from src.data.images import safe_name
from src.data.records import Benchmark, PairSpec
from src.data.spool import _Spool

log = logging.getLogger("src.data")


def _did_you_mean(name: str, options: list[str]) -> str:
    close = difflib.get_close_matches(name, options, n=1, cutoff=0.5)
    return f" Did you mean {close[0]!r}?" if close else ""


def check_pairs(pairs: dict[str, list[PairSpec]], shown: str) -> None:
    """Raise `BenchmarkError` for duplicate ids / file names in a category, colliding categories, no pairs."""
    for cat, specs in pairs.items():
        seen_ids: dict[str, int] = {}
        seen_stems: dict[str, PairSpec] = {}
        for s in specs:
            if s.pair_id in seen_ids:
                raise BenchmarkError(
                    f"benchmark file {shown}: category {cat!r} has two pairs with id {s.pair_id!r} "
                    f"(positions {seen_ids[s.pair_id]} and {s.index}); pair ids must be unique within a "
                    "category (pairs without an id get their position, zero-padded to 4 digits).")
            seen_ids[s.pair_id] = s.index
            key = s.file_stem.casefold()
            if key in seen_stems:
                other = seen_stems[key]
                raise BenchmarkError(
                    f"benchmark file {shown}: category {cat!r}: pair ids {other.pair_id!r} and "
                    f"{s.pair_id!r} give the same file name {s.file_stem!r} (compared ignoring case, as "
                    "on Windows/macOS file systems); rename one of them.")
            seen_stems[key] = s

    cat_stems: dict[str, str] = {}
    for cat in pairs:
        key = safe_name(cat).casefold()
        if key in cat_stems:
            raise BenchmarkError(f"benchmark file {shown}: categories {cat_stems[key]!r} and {cat!r} give "
                                 "the same directory name; rename one of them.")
        cat_stems[key] = cat

    if not any(pairs.values()):
        raise BenchmarkError(f"benchmark file {shown} has no pairs (categories: "
                             f"{', '.join(map(repr, pairs)) or 'none'}).")


def assemble(p: Path, shown: str, spool: _Spool, pairs: dict[str, list[PairSpec]], info: dict,
             categories: list[str] | None, limit: int | None, fmt: str) -> Benchmark:
    """Checked pairs -> the `Benchmark` with the selected categories (in the asked order) and limit."""
    check_pairs(pairs, shown)
    all_categories = list(pairs)
    if categories:
        selected: list[str] = []
        for name in categories:
            name = str(name)
            if name not in pairs:
                raise BenchmarkError(
                    f"category {name!r} is not in benchmark file {shown}; it has: "
                    f"{', '.join(map(repr, all_categories))}.{_did_you_mean(name, all_categories)}")
            if name not in selected:
                selected.append(name)
    else:
        selected = all_categories
    chosen = {c: (pairs[c][:limit] if limit else pairs[c]) for c in selected}
    n_bad = sum(1 for c in selected for s in chosen[c] if s.error)
    if n_bad:
        log.info("%s: %d pair(s) are invalid and will be reported as such", shown, n_bad)
    return Benchmark(path=str(p), categories=selected, pairs=chosen, all_categories=all_categories,
                     info=info, format=fmt, _spool=spool)
