"""End-to-end runs of the pipeline with the fast fake models (tests/fakes.py)."""

import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from src.cli import main
from src.report import summarize
from tests.conftest import CATEGORIES, REPO, make_benchmark, png_b64, write_config


def run_main(*args) -> int:
    return main([str(a) for a in args])


def only_run(out: Path) -> Path:
    runs = [d for d in out.iterdir() if (d / "state.sqlite").exists()]
    assert len(runs) == 1, runs
    return runs[0]


def report_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "report.json").read_text(encoding="utf-8"))


def comparable(report: dict) -> dict:
    """The part of a report that must not depend on interruptions or batching."""
    pairs = [{k: p[k] for k in ("category", "pair_id", "status", "score", "error", "edited_image", "seed")}
             for p in report["pairs"]]
    return {"pairs": pairs, "categories": report["categories"], "overall": report["overall"]}


def test_full_run_two_stage(tmp_path, fake_config):
    assert run_main("--config", fake_config, "--run-name", "r1") == 0
    run_dir = tmp_path / "outputs" / "r1"
    report = report_of(run_dir)
    assert list(report["categories"]) == CATEGORIES
    assert report["overall"]["pairs"] == 15 and report["overall"]["scored"] == 15
    assert report["run"]["model_loads"] == {"editor": 1, "judge": 1}
    assert report["run"]["model_swaps"] == 1
    for p in report["pairs"]:
        assert (run_dir / p["edited_image"]).is_file()
        assert p["edited_image"].startswith("images/")
    assert (run_dir / "config.resolved.yaml").is_file()
    assert (run_dir / "logs" / "run.log").read_text(encoding="utf-8").count("stage 1/2: edit") == 1
    assert (run_dir / "report.md").is_file() and (run_dir / "report.html").is_file()
    # the resolved config reproduces the run
    assert run_main("--config", run_dir / "config.resolved.yaml", "--run-name", "r2") == 0
    assert comparable(report_of(tmp_path / "outputs" / "r2")) == comparable(report)


def test_report_is_recomputable_from_pairs(tmp_path, fake_config):
    assert run_main("--config", fake_config, "--run-name", "r") == 0
    report = report_of(tmp_path / "outputs" / "r")
    seed = report["uncertainty"]["seed"]
    for cat, stats in report["categories"].items():
        assert summarize([p for p in report["pairs"] if p["category"] == cat], seed=seed) == stats
        scores = [p["score"] for p in report["pairs"] if p["category"] == cat and p["status"] == "scored"]
        assert stats["mean"] == pytest.approx(statistics.fmean(scores))
    overall = {k: v for k, v in report["overall"].items() if not k.startswith("macro_")}
    assert summarize(report["pairs"], seed=seed) == overall
    assert report["overall"]["macro_mean"] == pytest.approx(
        statistics.fmean(c["mean"] for c in report["categories"].values()))


@pytest.mark.parametrize("residency, loads, swaps", [
    ("offload", 1, 2 * len(CATEGORIES) - 1),  # both loaded once, moved off / on the device between categories
    ("release", len(CATEGORIES), 2 * len(CATEGORIES) - 1),  # the user's earlier design: reload at every swap
    ("resident", 1, 0),  # both stay on the device
])
def test_interleaved_mode_same_results(tmp_path, fake_config, residency, loads, swaps):
    assert run_main("--config", fake_config, "--run-name", "two") == 0
    assert run_main("--config", fake_config, "--run-name", "inter", "--set", "pipeline.mode=interleaved",
                    "--set", f"pipeline.residency={residency}") == 0
    two, inter = report_of(tmp_path / "outputs" / "two"), report_of(tmp_path / "outputs" / "inter")
    assert two["run"]["model_loads"] == {"editor": 1, "judge": 1} and two["run"]["model_swaps"] == 1
    assert inter["run"]["model_loads"] == {"editor": loads, "judge": loads}
    assert inter["run"]["model_swaps"] == swaps
    assert inter["run"]["invocations"][-1]["residency"]["chosen"] == residency
    assert comparable(inter) == comparable(two)


def test_batching_does_not_change_results(tmp_path, fake_config):
    assert run_main("--config", fake_config, "--run-name", "b1") == 0
    assert run_main("--config", fake_config, "--run-name", "b3", "--set", "diffusion_model.init_args.batch_size=3",
                    "--set", "reward_model.init_args.batch_size=2") == 0
    assert comparable(report_of(tmp_path / "outputs" / "b1")) == comparable(report_of(tmp_path / "outputs" / "b3"))


def test_per_pair_failures_are_reported_and_others_complete(tmp_path):
    bad = [
        {"pair_id": "bad-b64", "original_image_b64": "@@@not base64@@@", "edit_instruction": "x"},
        {"pair_id": "no-instr", "original_image_b64": png_b64()},
        {"pair_id": "not-image", "original_image_b64": "aGVsbG8gd29ybGQ=", "edit_instruction": "x"},
    ]
    data = make_benchmark(tmp_path / "b.json", extra={"物理": bad})
    cfg = write_config(tmp_path / "c.yaml", data,
                       editor={"class_path": "tests.fakes.FakeEditModel",
                               "init_args": {"fail_ids": ["1-0"], "raise_ids": ["2-1"], "batch_size": 2}},
                       judge={"class_path": "tests.fakes.FakeRewardModel", "init_args": {"fail_ids": ["3-2"]}})
    assert run_main("--config", cfg, "--run-name", "f") == 0
    report = report_of(tmp_path / "outputs" / "f")
    by_id = {p["pair_id"]: p for p in report["pairs"]}
    assert by_id["bad-b64"]["status"] == "invalid_input" and "original_image_b64" in by_id["bad-b64"]["error"]
    assert by_id["no-instr"]["status"] == "invalid_input" and "instruction" in by_id["no-instr"]["error"]
    assert by_id["not-image"]["status"] == "invalid_input"
    assert by_id["1-0"]["status"] == "edit_failed" and "injected" in by_id["1-0"]["error"]
    assert by_id["2-1"]["status"] == "edit_failed"  # the batch raised; retried alone, it raises again
    assert by_id["2-0"]["status"] == "scored"  # its batch mate was retried alone and succeeded
    assert by_id["3-2"]["status"] == "score_failed" and by_id["3-2"]["score"] is None
    assert by_id["3-2"]["judge_raw_reply"] == "I cannot rate this."
    assert report["overall"]["failed"] == {"invalid_input": 3, "edit_failed": 2, "score_failed": 1}
    assert report["overall"]["scored"] == 12
    md = (tmp_path / "outputs" / "f" / "report.md").read_text(encoding="utf-8")
    assert "bad-b64" in md and "injected edit failure" in md


def test_finished_run_resumes_with_no_model_load(tmp_path, fake_config):
    assert run_main("--config", fake_config, "--run-name", "r") == 0
    run_dir = tmp_path / "outputs" / "r"
    before = report_of(run_dir)
    assert run_main("--resume", run_dir) == 0
    after = report_of(run_dir)
    assert after["run"]["invocations"][-1]["model_loads"] == {"editor": 0, "judge": 0}
    assert comparable(after) == comparable(before)
    # --resume without a path picks the newest run in the output folder
    assert run_main("--resume", "--output-dir", tmp_path / "outputs") == 0


def test_resume_redoes_a_deleted_image(tmp_path, fake_config):
    assert run_main("--config", fake_config, "--run-name", "r") == 0
    run_dir = tmp_path / "outputs" / "r"
    before = report_of(run_dir)
    victim = run_dir / before["pairs"][4]["edited_image"]
    victim.unlink()
    assert run_main("--resume", run_dir) == 0
    after = report_of(run_dir)
    assert victim.is_file()
    # the same seed gives the same bytes, so the existing score still belongs to this edit
    assert after["run"]["invocations"][-1]["model_loads"] == {"editor": 1, "judge": 0}
    assert comparable(after) == comparable(before)


def test_changed_editor_is_refused_and_rescoring_makes_new_records(tmp_path, fake_config, capsys):
    assert run_main("--config", fake_config, "--run-name", "r") == 0
    run_dir = tmp_path / "outputs" / "r"
    code = run_main("--config", fake_config, "--resume", run_dir, "--set", "diffusion_model.init_args.model_name=other")
    assert code == 2
    assert "diffusion_model.init_args.model_name: 'fake' -> 'other'" in capsys.readouterr().err
    code = run_main("--config", fake_config, "--resume", run_dir, "--set", "reward_model.init_args.offset=1.0")
    assert code == 2
    assert "--stage score" in capsys.readouterr().err
    old = report_of(run_dir)
    code = run_main("--config", fake_config, "--resume", run_dir, "--stage", "score",
                    "--set", "reward_model.init_args.offset=1.0")
    assert code == 0
    new = report_of(run_dir)
    assert new["run"]["judge"]["init_args"]["offset"] == 1.0
    assert new["run"]["invocations"][-1]["model_loads"] == {"editor": 0, "judge": 1}
    for a, b in zip(old["pairs"], new["pairs"]):
        assert b["score"] == pytest.approx(min(10.0, a["score"] + 1.0))
    with sqlite3.connect(run_dir / "state.sqlite") as conn:  # the old judge's records are kept
        assert conn.execute("SELECT COUNT(*), COUNT(DISTINCT judge_fingerprint) FROM scores").fetchone() == (30, 2)
    # the report of the original judge is still available from its records
    assert run_main("--config", fake_config, "--resume", run_dir, "--stage", "report") == 0
    assert comparable(report_of(run_dir)) == comparable(old)


def test_bad_data_file_exits_2_before_anything(tmp_path, capsys):
    data = tmp_path / "b.json"
    data.write_text('{"物理": {"data_pairs": [ {"pair_id": 1,, } ]}}', encoding="utf-8")
    cfg = write_config(tmp_path / "c.yaml", data)
    assert run_main("--config", cfg) == 2
    err = capsys.readouterr().err
    assert "b.json" in err and "Traceback" not in err
    assert not (tmp_path / "outputs").exists()


def test_unknown_category_lists_known(tmp_path, bench_file, capsys):
    cfg = write_config(tmp_path / "c.yaml", bench_file)
    assert run_main("--config", cfg, "--categories", "物理,环 境") == 2
    err = capsys.readouterr().err
    assert "环 境" in err and "环境" in err


def test_untrusted_text_is_escaped_and_ids_stay_inside(tmp_path):
    evil = [{"pair_id": "../../../evil", "original_image_b64": png_b64(),
             "edit_instruction": "<script>alert(1)</script> | *x*"},
            {"pair_id": "../fail|<i>x</i>", "original_image_b64": png_b64(), "edit_instruction": "x"}]
    data = make_benchmark(tmp_path / "b.json", categories=["../up"], n=1, extra={"../up": evil})
    cfg = write_config(tmp_path / "c.yaml", data, editor={"class_path": "tests.fakes.FakeEditModel",
                                                         "init_args": {"fail_ids": ["../fail|<i>x</i>"]}})
    assert run_main("--config", cfg, "--run-name", "e") == 0
    run_dir = (tmp_path / "outputs" / "e").resolve()
    for path in (tmp_path).rglob("*.png"):
        assert run_dir in path.resolve().parents
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    assert "<script>alert" not in html and "\\u003cscript\\u003ealert(1)" in html  # escaped JSON (tests/test_gallery.py)
    md = (run_dir / "report.md").read_text(encoding="utf-8")
    assert "<i>" not in md and "fail\\|&lt;i&gt;" in md


def test_limit_and_category_selection(tmp_path, fake_config):
    assert run_main("--config", fake_config, "--run-name", "l", "--limit", "1", "--categories", "因果,物理") == 0
    report = report_of(tmp_path / "outputs" / "l")
    assert list(report["categories"]) == ["因果", "物理"]
    assert report["overall"]["pairs"] == 2


def test_cuda_without_gpu_is_a_clear_error(tmp_path, fake_config, capsys):
    assert run_main("--config", fake_config, "--set", "diffusion_model.init_args.device=cuda") == 2
    assert "no CUDA GPU" in capsys.readouterr().err


def _count(db: Path, table: str) -> int:
    try:
        with sqlite3.connect(db, timeout=1) as conn:
            return conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
    except sqlite3.Error:
        return 0


@pytest.mark.parametrize("table, at", [("edits", 4), ("scores", 7)])
def test_sigkill_then_resume_gives_the_same_report(tmp_path, fake_config, table, at):
    assert run_main("--config", fake_config, "--run-name", "ref") == 0
    reference = comparable(report_of(tmp_path / "outputs" / "ref"))
    run_dir = tmp_path / "outputs" / "killed"
    cmd = [sys.executable, str(REPO / "main.py"), "--config", str(fake_config), "--run-name", "killed",
           "--set", "diffusion_model.init_args.delay_s=0.05", "--set", "reward_model.init_args.delay_s=0.05",
           "--set", "diffusion_model.init_args.batch_size=2"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while _count(run_dir / "state.sqlite", table) < at and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 0 < _count(run_dir / "state.sqlite", table) < 15
    # resume with other batch sizes: only missing work is done, nothing duplicated
    assert run_main("--resume", run_dir, "--set", "reward_model.init_args.batch_size=3") == 0
    resumed = report_of(run_dir)
    assert comparable(resumed) == reference
    assert _count(run_dir / "state.sqlite", "edits") == 15 and _count(run_dir / "state.sqlite", "scores") == 15


def test_out_of_memory_halves_the_batch_and_loses_nothing(tmp_path, fake_config):
    assert run_main("--config", fake_config, "--run-name", "ref") == 0
    code = run_main("--config", fake_config, "--run-name", "oom",
                    "--set", "diffusion_model.init_args.batch_size=3", "--set", "diffusion_model.init_args.oom_above=1",
                    "--set", "diffusion_model.init_args.oom_ids=['4-2']",
                    "--set", "reward_model.init_args.batch_size=3", "--set", "reward_model.init_args.oom_above=2")
    assert code == 0
    report = report_of(tmp_path / "outputs" / "oom")
    ref = report_of(tmp_path / "outputs" / "ref")
    by_id = {p["pair_id"]: p for p in report["pairs"]}
    # the pair that does not fit even alone fails, with the error; every other pair is as without OOM
    assert by_id["4-2"]["status"] == "edit_failed" and "out of memory" in by_id["4-2"]["error"]
    for a, b in zip(comparable(report)["pairs"], comparable(ref)["pairs"]):
        if a["pair_id"] != "4-2":
            assert a == b
    inv = report["run"]["invocations"][-1]
    assert inv["batching"]["editor"]["size"] == 1 and inv["batching"]["judge"]["size"] == 1  # 3 -> 3 // 2
    assert any(e["kind"] == "oom" for e in inv["batching"]["editor"]["events"])
    with sqlite3.connect(tmp_path / "outputs" / "oom" / "state.sqlite") as conn:  # nothing run twice, nothing lost
        assert conn.execute("SELECT COUNT(*), COUNT(DISTINCT category || '/' || pair_id) FROM edits").fetchone() == (15, 15)
        assert conn.execute("SELECT COUNT(*) FROM scores").fetchone()[0] == 14


def test_auto_batch_size_grows_until_it_does_not_fit(tmp_path):
    data = make_benchmark(tmp_path / "b.json", categories=["物理"], n=20)
    cfg = write_config(tmp_path / "c.yaml", data)
    code = run_main("--config", cfg, "--run-name", "auto", "--set", "reward_model.init_args.batch_size=auto",
                    "--set", "reward_model.init_args.oom_above=4")
    assert code == 0
    report = report_of(tmp_path / "outputs" / "auto")
    judge = report["run"]["invocations"][-1]["batching"]["judge"]
    assert judge["auto"] is True and max(int(k) for k in judge["sizes_used"]) == 4
    assert any(e["kind"] == "oom" for e in judge["events"])
    assert report["overall"]["scored"] == 20


def test_performance_record_in_report(tmp_path, fake_config):
    assert run_main("--config", fake_config, "--run-name", "p", "--set", "reward_model.init_args.batch_size=2") == 0
    report = report_of(tmp_path / "outputs" / "p")
    perf = report["run"]["performance"]
    assert set(perf["stages"]) == {"edit", "score"}
    score = perf["stages"]["score"]
    assert score["items"] == 15 and len(score["item_s"]) == 15
    assert score["batch_sizes"] == {"2": 5, "1": 5}  # batches stay within a category: 3 pairs = 2 + 1
    assert perf["loads"].keys() == {"editor", "judge"} and perf["swaps"]["count"] == 1
    assert perf["peak_rss_bytes"] > 0
    md = (tmp_path / "outputs" / "p" / "report.md").read_text(encoding="utf-8")
    assert "## 性能" in md and "| score |" in md  # Chinese categories: Chinese labels (report.language: auto)
    assert "| 阶段 | 墙钟时间（秒） |" in md and "| stage |" not in md and "加载: editor" in md  # the table too
