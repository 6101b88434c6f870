"""The gallery: originals and thumbnails in the run folder, and the data behind report.html.

Files (all inside the run folder, all named by the sha256 of the image bytes, so ids and category
names never become paths, an image used by several pairs is stored once, and nothing is ever stale):

    originals/<sha256>.<ext>   the benchmark's original image, byte for byte (PNG/JPEG/WebP/GIF/BMP;
                               any other format is stored as PNG), and the pair's extra images
                               (e.g. a reference answer) as PNG
    thumbs/<sha256>.webp       256 px thumbnails of originals, extra images and edits
    gallery.json               which files belong to which pair (category, pair_id, role)

Thumbnails of each edit and its original, and the copy of the original, are made earlier by the edit
stage's writer thread (`write_thumbnail`, `store_original`; src/writer.py) from the images and bytes in
memory; the report stage indexes them and makes any that are missing.

Who writes them: the *report stage* (`materialize`, called by the pipeline just before the reports),
because it is the one stage that always runs, also for runs made before the gallery existed; the
benchmark file is loaded then anyway. `--stage report` alone does not read the benchmark file: it
writes missing thumbnails only (a plain `--resume` copies missing originals). Every file is written once (skipped when it
exists) and atomically (temporary name, then rename). An original is copied only when its bytes still
hash to the `input_sha256` recorded with the edit — a benchmark file that changed since is never shown
as the input of an old edit. The run folder is then self-contained: report.html, report.json and
these folders can be moved or zipped together.

`attach` adds the file paths to the report's pairs (relative to the run folder); `html_context`
turns a report into what report.html.j2 renders: the rows as escaped JSON for a small vanilla-JS
gallery (filters, sort, search, pages of 50 rows: 10,000 pairs stay fast), and inline-SVG charts.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps

from src.report_labels import LABELS, resolve_language

log = logging.getLogger("ieb")

THUMB_PX = 256
THUMB_QUALITY = 70
INDEX_FILE = "gallery.json"
WEB_FORMATS = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp", "GIF": "gif", "BMP": "bmp"}
RAW_REPLY_CHARS = 2000  # the HTML keeps this much of a raw judge reply; report.json keeps it all


# ============================================================================ files in the run folder


def _write_once(path: Path, data: bytes) -> bool:
    """Atomically create `path` unless it exists. Returns True when written."""
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:  # a full disk, an interrupt: leave no half-written temporary file behind
        tmp.unlink(missing_ok=True)
        raise
    return True


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _store_original(run_dir: Path, raw: bytes, sha: str) -> str:
    """Copy an image into originals/ (as is when browsers show its format, else as PNG)."""
    with Image.open(io.BytesIO(raw)) as im:
        ext = WEB_FORMATS.get(im.format or "")
        if ext is None:
            buf = io.BytesIO()
            im.convert("RGB").save(buf, format="PNG")
            raw, ext = buf.getvalue(), "png"
    rel = f"originals/{sha}.{ext}"
    _write_once(run_dir / rel, raw)
    return rel


def stored_original(run_dir: Path, sha: str) -> str | None:
    """The path of the original with this sha256 if it is in originals/ already (any stored format)."""
    for ext in dict.fromkeys(WEB_FORMATS.values()):
        rel = f"originals/{sha}.{ext}"
        if (run_dir / rel).is_file():
            return rel
    return None


def store_original(run_dir: Path, raw: bytes, sha: str) -> str | None:
    """The edit stage's copy of an original: the very bytes that were edited (`sha` is their sha256),
    written once. Like a thumbnail, a failure is logged and left to the report stage. None on failure."""
    try:
        return stored_original(run_dir, sha) or _store_original(run_dir, raw, sha)
    except Exception as e:  # noqa: BLE001 - a picture must never fail an edit
        log.warning("gallery: original %s not copied yet (%s); the report stage retries", sha[:12], e)
        return None


def _png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="PNG")
    return buf.getvalue()


def thumb_path(sha: str) -> str:
    return f"thumbs/{sha}.webp"


def thumbnail_bytes(image: Image.Image) -> bytes:
    """The WebP thumbnail (at most THUMB_PX on a side) of an image already decoded and oriented."""
    im = image.convert("RGB")
    im.thumbnail((THUMB_PX, THUMB_PX))
    buf = io.BytesIO()
    im.save(buf, format="WEBP", quality=THUMB_QUALITY, method=4)
    return buf.getvalue()


def write_thumbnail(run_dir: Path, image: Image.Image, sha: str) -> str | None:
    """thumbs/<sha>.webp from an image in memory (written once). Used by the edit stage's writer thread
    (src/writer.py) for each edit and its original, so the report stage finds them made; a thumbnail is
    a cache file: any failure is logged and the report stage makes it later. None on failure."""
    rel = thumb_path(sha)
    try:
        if not (run_dir / rel).exists():
            _write_once(run_dir / rel, thumbnail_bytes(image))
    except Exception as e:  # noqa: BLE001 - a picture must never fail an edit
        log.warning("gallery: no thumbnail %s yet (%s); the report stage retries", rel, e)
        return None
    return rel


def make_thumbnail(run_dir: Path, source_rel: str, sha: str) -> str | None:
    """thumbs/<sha>.webp for the image file at `source_rel` (written once); None when it cannot be read.
    EXIF orientation is applied, as browsers apply it to the full image and as the models saw it."""
    rel = thumb_path(sha)
    if (run_dir / rel).exists():
        return rel
    try:
        with Image.open(run_dir / source_rel) as im:
            im.draft("RGB", (THUMB_PX, THUMB_PX))  # JPEG: decode at reduced size
            data = thumbnail_bytes(ImageOps.exif_transpose(im))
    except (OSError, ValueError) as e:
        log.warning("gallery: no thumbnail for %s (%s)", source_rel, e)
        return None
    _write_once(run_dir / rel, data)
    return rel


def _extra_images(pair) -> list[tuple[str, Image.Image]]:
    """The pair's named extra images as (role, image): further edit inputs (``original_2`` ...) and
    judge-only images such as ``reference`` (src/data.py: PairSpec.named_images)."""
    return list(pair.named_images().items())


def load_index(run_dir: Path) -> dict[tuple[str, str], dict[str, Any]]:
    path = run_dir / INDEX_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {(e["category"], e["pair_id"]): e for e in data["pairs"]}
    except (ValueError, KeyError, TypeError) as e:
        log.warning("gallery: %s is unreadable (%s); it is rebuilt", path, e)
        return {}


def materialize(state, bench, run_dir: Path) -> dict[str, int]:
    """Copy originals and extra images into the run folder and write the thumbnails (report stage).

    `bench` None (`--stage report`, which does not read the benchmark file): only missing thumbnails
    are written, from the files already in the run folder. Pairs whose image cannot be read, or whose
    benchmark image changed since it was edited, are skipped with a warning: the gallery then shows
    "no image" for them; no result is touched.
    """
    index = load_index(run_dir)
    edits = state.edit_map()
    counts = {"originals": 0, "thumbnails": 0, "skipped": 0}
    changed = False
    for pair in (bench.iter_pairs() if bench is not None else ()):
        key = (pair.category, pair.pair_id)
        rec = edits.get(key)
        if rec is None or rec.input_sha256 is None:
            continue  # not edited yet, or invalid input: nothing reliable to show
        entry = index.get(key)
        if entry is not None and entry.get("input_sha256") == rec.input_sha256 \
                and all((run_dir / f["path"]).is_file() for f in entry["files"]):
            continue
        try:
            stored = stored_original(run_dir, rec.input_sha256)  # named by the sha256 of its bytes
            if stored is None:  # not copied by the edit stage (an older run, or a failed copy)
                raw = pair._raw_image()  # the benchmark's bytes, unchanged
                if _sha256(raw) != rec.input_sha256:
                    log.warning("gallery: %s: the benchmark image changed since it was edited; not copied",
                                pair.where())
                    counts["skipped"] += 1
                    continue
                stored = _store_original(run_dir, raw, rec.input_sha256)
            files = [{"role": "original", "path": stored, "sha256": rec.input_sha256}]
            for role, image in _extra_images(pair):
                data = _png_bytes(image)
                sha = _sha256(data)
                files.append({"role": role, "path": f"originals/{sha}.png", "sha256": sha})
                _write_once(run_dir / files[-1]["path"], data)
        except Exception as e:  # noqa: BLE001 - the report must not fail because of one picture
            log.warning("gallery: %s: original not copied (%s)", pair.where(), e)
            counts["skipped"] += 1
            continue
        index[key] = {"category": pair.category, "pair_id": pair.pair_id, "input_sha256": rec.input_sha256,
                      "files": files}
        changed = True
        counts["originals"] += 1
    # thumbnails of every original / extra image in the folder and of every edit (written once)
    sources = [(f["path"], f["sha256"]) for e in index.values() for f in e["files"]]
    sources += [(r.image_path, r.output_sha256) for r in edits.values() if r.status == "edited" and r.output_sha256]
    for rel, sha in sources:
        if not (run_dir / thumb_path(sha)).exists() and (run_dir / rel).is_file():
            counts["thumbnails"] += make_thumbnail(run_dir, rel, sha) is not None
    if changed:
        data = json.dumps({"version": 1, "pairs": list(index.values())}, ensure_ascii=False, indent=1)
        tmp = run_dir / f".{INDEX_FILE}.tmp-{os.getpid()}"
        tmp.write_text(data, encoding="utf-8")
        os.replace(tmp, run_dir / INDEX_FILE)
    log.info("gallery: %d pairs' originals indexed, %d thumbnails written now (the edit stage writes most of "
             "them), %d skipped", counts["originals"], counts["thumbnails"], counts["skipped"])
    return counts


def attach(pairs: list[dict[str, Any]], edits: dict, run_dir: Path) -> None:
    """Add `original_image`, `extra_images` [{role, path}] and `thumbnails` {role: path} to report pairs
    (paths relative to the run folder; only files that exist). `edits` is `State.edit_map()`."""
    index = load_index(run_dir)
    for p in pairs:
        entry = index.get((p["category"], p["pair_id"])) or {"files": []}
        thumbs: dict[str, str] = {}
        original, extra = None, []
        for f in entry["files"]:
            if not (run_dir / f["path"]).is_file():
                continue
            if f["role"] == "original":
                original = f["path"]
            else:
                extra.append({"role": f["role"], "path": f["path"]})
            if (run_dir / thumb_path(f["sha256"])).is_file():
                thumbs[f["role"]] = thumb_path(f["sha256"])
        rec = edits.get((p["category"], p["pair_id"]))
        sha = rec.output_sha256 if rec is not None else None
        if p.get("edited_image") and sha and (run_dir / thumb_path(sha)).is_file():
            thumbs["edited"] = thumb_path(sha)
        p.update(original_image=original, extra_images=extra, thumbnails=thumbs)


# ============================================================================ report.html


def _script_json(obj: Any) -> str:
    """JSON that is safe inside <script type="application/json">: no '<', '>' or '&' at all, so no
    `</script>` or `<!--` can end or change the element, whatever the untrusted text contains."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return (text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _clean_number(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v


def _readable_reasoning(p: dict[str, Any]) -> list[list[str]]:
    """The judge's reasoning as (heading, text) blocks: one per query for multi-query protocols."""
    details = p.get("judge_details") or {}
    blocks = []
    for name, q in (details.get("queries") or {}).items():
        if not isinstance(q, dict):
            continue
        values = ", ".join(f"{k} {_fmt(v)}" for k, v in (q.get("values") or {}).items())
        text = q.get("reasoning") or q.get("error") or ""
        if values or text:
            blocks.append([f"{name}" + (f" ({values})" if values else ""), str(text)])
    if not blocks and p.get("judge_reasoning"):
        blocks.append(["", str(p["judge_reasoning"])])
    if not blocks and p.get("judge_raw_reply"):  # a JSON reply without a reasoning field: its fields
        try:
            obj = json.loads(p["judge_raw_reply"])
        except ValueError:
            obj = None
        if isinstance(obj, dict):
            blocks.extend([str(k), v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)]
                          for k, v in obj.items())
    return blocks


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.2f}".rstrip("0").rstrip(".") if math.isfinite(v) else "–"
    return str(v)


def _rows(report: dict[str, Any], categories: list[str]) -> list[dict[str, Any]]:
    cat_index = {c: i for i, c in enumerate(categories)}
    rows = []
    for n, p in enumerate(report["pairs"]):
        images = []
        if p.get("original_image"):
            images.append(["original", p["original_image"], (p.get("thumbnails") or {}).get("original")])
        if p.get("edited_image"):
            images.append(["edited", p["edited_image"], (p.get("thumbnails") or {}).get("edited")])
        for e in p.get("extra_images") or []:
            images.append([e["role"], e["path"], (p.get("thumbnails") or {}).get(e["role"])])
        raw = p.get("judge_raw_reply")
        dims = {k: _clean_number(v) for k, v in (p.get("dimensions") or {}).items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)}
        rows.append({"n": n, "c": cat_index[p["category"]], "id": p["pair_id"], "s": p["status"],
                     "v": _clean_number(p.get("score")), "d": dims, "i": p.get("instruction") or "",
                     "t": p.get("description") or "", "e": p.get("error") or "",
                     "r": _readable_reasoning(p), "a": p.get("judge_attempts"),
                     "j": (raw[:RAW_REPLY_CHARS] if raw else ""), "jt": bool(raw and len(raw) > RAW_REPLY_CHARS),
                     "img": images})
    return rows


def _nice_max(value: float) -> float:
    for top in (1, 5, 10, 100):
        if value <= top:
            return float(top)
    return float(10 ** math.ceil(math.log10(value)))


def bar_chart(report: dict[str, Any], categories: list[str]) -> dict[str, Any]:
    """Geometry of the per-category bar chart (means, and 95% CI error bars when the report has them)."""
    cats = report["categories"]
    values = [(c, cats[c].get("mean"), cats[c].get("ci95")) for c in categories]
    highs = [v for _, m, ci in values for v in ([m] + (list(ci) if ci else [])) if isinstance(v, (int, float))]
    top = _nice_max(max(highs)) if highs and max(highs) > 0 else 10.0
    width, height, left, bottom, bar_w, gap = 0, 220, 44, 40, 46, 24
    plot_h = height - bottom - 12
    y = lambda v: 12 + plot_h * (1 - max(0.0, min(v, top)) / top)  # noqa: E731
    bars = []
    for i, (name, mean, ci) in enumerate(values):
        x = left + gap + i * (bar_w + gap)
        bar = {"name": name, "x": x, "w": bar_w, "cx": x + bar_w / 2, "mean": mean, "label": _fmt(mean) if
               mean is not None else "–", "y": y(mean) if mean is not None else None,
               "h": (y(0) - y(mean)) if mean is not None else 0, "ci": None}
        if ci and all(isinstance(v, (int, float)) for v in ci):
            bar["ci"] = {"lo": y(ci[0]), "hi": y(ci[1]), "text": f"[{_fmt(ci[0])}, {_fmt(ci[1])}]"}
        bars.append(bar)
    width = left + gap + len(values) * (bar_w + gap)
    ticks = [{"y": y(top * k / 5), "label": _fmt(top * k / 5)} for k in range(6)]
    return {"width": max(width, 200), "height": height, "left": left, "base": y(0), "bars": bars, "ticks": ticks,
            "has_ci": any(b["ci"] for b in bars)}


def histogram(report: dict[str, Any]) -> dict[str, Any]:
    """Geometry of the score histogram: 10 equal bins over [0, nice max] (the last bin is closed)."""
    scores = [p["score"] for p in report["pairs"] if p["status"] == "scored" and isinstance(p.get("score"), (int, float))
              and math.isfinite(p["score"])]
    lo = min(0.0, min(scores)) if scores else 0.0
    hi = _nice_max(max(scores)) if scores and max(scores) > 0 else 10.0
    nbins = 10
    counts = [0] * nbins
    for s in scores:
        counts[min(nbins - 1, max(0, int((s - lo) / (hi - lo) * nbins)))] += 1
    peak = max(counts) or 1
    left, bottom, plot_h, bin_w = 44, 40, 168, 36
    bins = []
    for i, n in enumerate(counts):
        h = plot_h * n / peak
        a, b = lo + (hi - lo) * i / nbins, lo + (hi - lo) * (i + 1) / nbins
        bins.append({"x": left + i * bin_w, "w": bin_w - 2, "y": 12 + plot_h - h, "h": h, "n": n,
                     "range": f"[{_fmt(a)}, {_fmt(b)}{']' if i == nbins - 1 else ')'}"})
    return {"width": left + nbins * bin_w + 12, "height": 12 + plot_h + bottom, "base": 12 + plot_h, "bins": bins,
            "left": left, "peak": peak, "lo": _fmt(lo), "hi": _fmt(hi), "n": len(scores)}


def perf_table(perf: dict[str, Any] | None, labels: dict[str, str] | None = None) -> dict[str, Any] | None:
    """The performance table of report.md (src/perf.py: format_table) as header, rows and a note, in the
    report's language."""
    if not perf or not perf.get("stages"):
        return None
    from src.perf import format_table

    lines = format_table(perf, labels).split("\n")
    cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines if line.startswith("|")]
    note = " ".join(line for line in lines if line and not line.startswith("|"))
    return {"header": cells[0], "rows": cells[2:], "note": note.replace("`", "")}


def language_of(report: dict[str, Any]) -> str:
    setting = ((report["run"].get("report") or {}).get("language"))
    return resolve_language(setting, report["categories"].keys())


def html_context(report: dict[str, Any], html_path: Path, run_dir: Path) -> dict[str, Any]:
    """Everything report.html.j2 needs beyond the report itself."""
    categories = list(report["categories"])
    lang = language_of(report)
    labels = LABELS[lang]
    base = os.path.relpath(run_dir, html_path.parent).replace(os.sep, "/")
    data = {"base": "" if base == "." else base + "/", "categories": categories,
            "statuses": ["scored", "invalid_input", "edit_failed", "score_failed", "pending"],
            "labels": labels, "rows": _rows(report, categories)}
    return {"t": labels, "lang": lang, "data_json": _script_json(data), "bars": bar_chart(report, categories),
            "hist": histogram(report), "perf": perf_table(report["run"].get("performance"), labels)}
