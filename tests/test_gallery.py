"""The gallery's files and report.html's data, without a browser (tests/test_browser.py has one)."""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
from pathlib import Path

import pytest
import yaml
from PIL import Image

from src.cli import main
from src.gallery import bar_chart, histogram
from src.report import write_html
from src.report_labels import resolve_language
from tests.conftest import EVIL_TEXT, make_benchmark, write_config

DATA_RE = re.compile(r'<script type="application/json" id="ieb-data">(.*?)</script>', re.S)


def report_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "report.json").read_text(encoding="utf-8"))


def embedded(html: str) -> dict:
    found = DATA_RE.findall(html)
    assert len(found) == 1
    return json.loads(found[0])


def synthetic_report(n: int, seed: int = 0) -> dict:
    """A report.json-shaped dict with `n` pairs (no images), for rendering tests."""
    rng = random.Random(seed)
    cats = ["物理", "环境", "社会", "因果", "指代"]
    pairs = []
    for i in range(n):
        status = rng.choices(["scored", "score_failed", "edit_failed"], [90, 7, 3])[0]
        score = round(rng.uniform(0, 10), 3) if status == "scored" else None
        pairs.append({"pair_id": f"p{i}", "category": cats[i % 5], "instruction": f"编辑 {i} {EVIL_TEXT}",
                      "description": "d", "status": status, "score": score, "error": None if score is not None
                      else "failed", "edited_image": None, "original_image": None, "extra_images": [],
                      "thumbnails": {}, "judge_raw_reply": '{"score": 1}', "judge_reasoning": "r",
                      "judge_attempts": 1, "judge_details": {}, "dimensions": {"SC": 1.0, "PQ": 2.0}})
    agg = {"pairs": n, "scored": 0, "failed": {"invalid_input": 0, "edit_failed": 0, "score_failed": 0},
           "pending": 0, "mean": 5.0, "std": 1.0, "median": 5.0, "min": 0.0, "max": 10.0, "dimensions": {},
           "macro_mean": 5.0}
    if n <= 200:  # the real aggregates (bootstrap CIs included); for 10,000 pairs that costs seconds
        from src.report import aggregate

        aggregates = aggregate(pairs, cats, seed=seed)
    else:
        from src import stats

        aggregates = {"overall": agg, "categories": {c: dict(agg) for c in cats}, "uncertainty": stats.describe(seed),
                      "headline": {"format": None, "reason": "a synthetic report for a rendering test"}}
    return {**aggregates, "pairs": pairs, "run": {"name": "synthetic", "editor": {"class_path": "E", "init_args": {}},
                    "judge": {"class_path": "J", "init_args": {}}, "judge_name": "J", "mode": "two_stage", "seed": 0,
                    "model_loads": {"editor": 1, "judge": 1}, "model_swaps": 1, "performance": None,
                    "report": {"language": "auto"}}}


def test_originals_and_thumbnails_are_in_the_run_folder(gallery_run):
    report = report_of(gallery_run)
    pairs = {p["pair_id"]: p for p in report["pairs"]}
    bench = json.loads((gallery_run.parent.parent / "bench.json").read_text(encoding="utf-8"))
    import base64

    for p in report["pairs"]:
        for rel in [p["original_image"], p["edited_image"], *(e["path"] for e in p["extra_images"]),
                    *p["thumbnails"].values()]:
            if rel is not None:
                path = (gallery_run / rel).resolve()
                assert gallery_run.resolve() in path.parents and path.is_file(), rel
    # the original is the benchmark's bytes, unchanged
    raw = base64.b64decode(next(x for x in bench["物理"]["data_pairs"] if x["pair_id"] == "0-1")["original_image_b64"])
    assert (gallery_run / pairs["0-1"]["original_image"]).read_bytes() == raw
    assert pairs["0-1"]["original_image"] == f"originals/{hashlib.sha256(raw).hexdigest()}.png"
    # thumbnails: WebP, at most 256 px, one per image
    for p in report["pairs"]:
        if p["status"] in ("scored", "score_failed"):
            assert set(p["thumbnails"]) == {"original", "edited"} | {e["role"] for e in p["extra_images"]}
        for rel in p["thumbnails"].values():
            with Image.open(gallery_run / rel) as im:
                assert im.format == "WEBP" and max(im.size) <= 256
    assert [e["role"] for e in pairs["ref-1"]["extra_images"]] == ["reference"]
    with Image.open(gallery_run / pairs["ref-1"]["extra_images"][0]["path"]) as im:
        assert im.convert("RGB").getpixel((0, 0)) == (250, 250, 0)
    # edit failed: the original is there, no edit; invalid input: nothing
    assert pairs["1-1"]["status"] == "edit_failed" and pairs["1-1"]["original_image"] and not pairs["1-1"]["edited_image"]
    assert pairs["bad-b64"]["status"] == "invalid_input" and pairs["bad-b64"]["original_image"] is None


def test_files_are_written_once_and_the_folder_is_portable(gallery_run, tmp_path):
    import shutil

    moved = tmp_path / "moved"
    shutil.copytree(gallery_run, moved)
    files = sorted(p for p in (moved / "thumbs").iterdir()) + sorted((moved / "originals").iterdir())
    mtimes = {p: p.stat().st_mtime_ns for p in files}
    config = moved / "config.resolved.yaml"
    assert main(["--resume", str(moved), "--stage", "report"]) == 0
    assert {p: p.stat().st_mtime_ns for p in files} == mtimes  # nothing rewritten
    assert sorted(p for p in (moved / "thumbs").iterdir()) + sorted((moved / "originals").iterdir()) == files
    # a thumbnail that is gone is written again by --stage report (which does not read the benchmark),
    # and only that one; an original that is gone comes back with a plain resume (which reads it)
    files[0].unlink()
    assert main(["--resume", str(moved), "--stage", "report", "--config", str(config)]) == 0
    assert files[0].is_file() and all(p.stat().st_mtime_ns == mtimes[p] for p in files[1:])
    original = next(p for p in files if p.parent.name == "originals")
    original.unlink()
    assert main(["--resume", str(moved), "--stage", "report"]) == 0
    assert not original.exists()
    assert main(["--resume", str(moved)]) == 0
    assert original.is_file() and all(p.stat().st_mtime_ns == mtimes[p] for p in files[1:] if p != original)
    # every image path in the html data is relative and resolves inside the moved folder
    data = embedded((moved / "report.html").read_text(encoding="utf-8"))
    assert data["base"] == ""
    for row in data["rows"]:
        for _, full, thumb in row["img"]:
            for rel in (full, thumb):
                assert not rel.startswith(("/", "..")) and (moved / rel).is_file()


def test_untrusted_text_stays_escaped(gallery_run):
    html = (gallery_run / "report.html").read_text(encoding="utf-8")
    assert "<script>alert" not in html and "<!--" not in html.split("<body>", 1)[1]
    assert html.count("</script>") == 2  # the data block's and the script's own: nothing closes early
    data = embedded(html)
    rows = {r["id"]: r for r in data["rows"]}
    assert rows["../../evil"]["i"] == EVIL_TEXT and rows["../../evil"]["t"] == EVIL_TEXT
    assert "innerHTML" not in html and "insertAdjacentHTML" not in html and "document.write" not in html


def test_readable_reasoning_and_failures(gallery_run):
    data = embedded((gallery_run / "report.html").read_text(encoding="utf-8"))
    rows = {r["id"]: r for r in data["rows"]}
    scored = next(r for r in data["rows"] if r["s"] == "scored")
    assert scored["r"] == [["", "hash"]]  # the reasoning as text, not a JSON block
    assert rows["2-0"]["s"] == "score_failed" and rows["2-0"]["e"] == "could not parse a 0-10 score"
    assert rows["2-0"]["j"] == "I cannot rate this."  # the raw reply kept for the reader
    assert "not valid base64" in rows["bad-b64"]["e"]


def test_chinese_labels_and_lang(gallery_run, tmp_path):
    html = (gallery_run / "report.html").read_text(encoding="utf-8")
    assert '<html lang="zh-CN">' in html and "图像编辑评测报告" in html and "各类别平均分" in html
    md = (gallery_run / "report.md").read_text(encoding="utf-8")
    assert md.startswith("# 图像编辑评测报告") and "## 性能" in md
    data = make_benchmark(tmp_path / "b.json", n=1)
    cfg = write_config(tmp_path / "c.yaml", data, report={"language": "en"})
    assert main(["--config", str(cfg), "--run-name", "en"]) == 0
    html = (tmp_path / "outputs" / "en" / "report.html").read_text(encoding="utf-8")
    assert '<html lang="en">' in html and "Mean score per category" in html
    assert (tmp_path / "outputs" / "en" / "report.md").read_text(encoding="utf-8").startswith(
        "# Image-edit benchmark report")
    assert resolve_language("auto", ["physics", "env"]) == "en"
    assert resolve_language("auto", ["physics", "物理"]) == "zh"


def test_bad_report_language_is_a_config_error(tmp_path, capsys):
    data = make_benchmark(tmp_path / "b.json", n=1)
    cfg = write_config(tmp_path / "c.yaml", data, report={"language": "cn"})
    assert main(["--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "report.language must be one of auto, en, zh" in err and "Traceback" not in err


def test_bar_chart_error_bars_and_histogram_counts():
    report = synthetic_report(40, seed=3)
    report["categories"]["物理"].update(mean=6.0, ci95=[5.0, 7.5])
    report["categories"]["环境"].update(mean=2.0, ci95=[1.0, 3.0])
    report["categories"]["社会"].update(mean=None)
    report["categories"]["社会"].pop("ci95", None)
    chart = bar_chart(report, list(report["categories"]))
    bars = {b["name"]: b for b in chart["bars"]}
    assert chart["has_ci"] and bars["社会"]["y"] is None and bars["社会"]["ci"] is None
    # scale 0..10 over the plot height: y(v) = 12 + plot_h * (1 - v / 10), plot_h = 220 - 40 - 12 = 168
    y = lambda v: 12 + 168 * (1 - v / 10)  # noqa: E731
    assert bars["物理"]["y"] == pytest.approx(y(6.0)) and bars["物理"]["h"] == pytest.approx(168 * 0.6)
    assert bars["物理"]["ci"]["lo"] == pytest.approx(y(5.0)) and bars["物理"]["ci"]["hi"] == pytest.approx(y(7.5))
    hist = histogram(report)
    scores = [p["score"] for p in report["pairs"] if p["status"] == "scored"]
    expected = [sum(1 for s in scores if k <= s < k + 1 or (k == 9 and s == 10)) for k in range(10)]
    assert [b["n"] for b in hist["bins"]] == expected and hist["n"] == len(scores)


def test_ci_column_when_the_report_has_intervals(tmp_path):
    report = synthetic_report(60)  # real bootstrap CIs from src.report.aggregate
    path = tmp_path / "report.html"
    write_html(report, {"r": report, "failures": []}, path, tmp_path)
    html = path.read_text(encoding="utf-8")
    for agg in report["categories"].values():
        lo, hi = agg["ci95"]
        assert f"{lo:.2f}–{hi:.2f}" in html  # the summary table's CI column
    lo, hi = report["overall"]["ci95"]
    assert html.count(f"{lo:.2f}–{hi:.2f}") >= 2  # the overall line and the overall row
    assert html.count('class="err"') == 3 * 5  # an error bar (3 lines) per category
    assert "误差线：95% 置信区间" in html


def test_html_in_a_subfolder_points_back_at_the_run_folder(gallery_run, tmp_path):
    report = report_of(gallery_run)
    sub = tmp_path / "reports" / "judge-x"
    sub.mkdir(parents=True)
    write_html(report, {"r": report, "failures": []}, sub / "report.html", gallery_run)
    data = embedded((sub / "report.html").read_text(encoding="utf-8"))
    assert data["base"] == os.path.relpath(gallery_run, sub) + "/"
    row = next(r for r in data["rows"] if r["img"])
    assert (sub / (data["base"] + row["img"][0][1])).resolve().is_file()


def test_chinese_readme_is_linked_and_matches_the_english_one():
    from src.config import SECTION_KEYS, TOP_KEYS
    from tests.conftest import REPO

    en = (REPO / "README.md").read_text(encoding="utf-8")
    zh = (REPO / "README.zh-CN.md").read_text(encoding="utf-8")
    assert "(README.zh-CN.md)" in en and "(README.md)" in zh
    blocks = lambda text: re.findall(r"```(\w*)\n(.*?)```", text, re.S)  # noqa: E731
    # the two commands (run, tests) and the command-line synopsis are the English README's, verbatim
    en_bash = [b for lang, b in blocks(en) if lang == "bash"]
    for command in (en_bash[0], en_bash[1]):
        assert command in zh, f"README.zh-CN.md lacks the command {command!r} of README.md"
    synopsis = next(b for lang, b in blocks(en) if b.startswith("python main.py --config FILE"))
    assert synopsis in zh, "README.zh-CN.md: copy README.md's command-line synopsis (and describe new options)"
    # the config block is a complete, valid config shape: the same keys as the English one
    zh_cfg = yaml.safe_load(next(b for lang, b in blocks(zh) if lang == "yaml"))
    en_cfg = yaml.safe_load(next(b for lang, b in blocks(en) if lang == "yaml"))
    hint = "README.zh-CN.md's config block must show the same keys as README.md's"
    assert set(zh_cfg) == set(en_cfg) and set(zh_cfg) <= TOP_KEYS, (hint, set(zh_cfg) ^ set(en_cfg))
    for section, keys in SECTION_KEYS.items():
        assert set(zh_cfg[section]) == set(en_cfg[section]) and set(zh_cfg[section]) <= keys, \
            (hint, section, set(zh_cfg[section]) ^ set(en_cfg[section]))


def test_reasoning_blocks_for_multi_query_and_json_replies():
    from src.gallery import _readable_reasoning

    viescore = {"judge_reasoning": "[sc] joined", "judge_raw_reply": "[sc]\n{...}", "judge_details": {"queries": {
        "sc": {"reasoning": "the cup fell over", "values": {"editing": 8.0, "over_editing": 7.5}},
        "pq": {"reasoning": None, "error": "no JSON object", "values": {}}}}}
    assert _readable_reasoning(viescore) == [["sc (editing 8, over_editing 7.5)", "the cup fell over"],
                                             ["pq", "no JSON object"]]
    bare = {"judge_reasoning": None, "judge_details": {}, "judge_raw_reply": '{"score": 7, "why": "<b>ok</b>"}'}
    assert _readable_reasoning(bare) == [["score", "7"], ["why", "<b>ok</b>"]]  # text; the page escapes it
    assert _readable_reasoning({"judge_raw_reply": "not json", "judge_details": None}) == []
