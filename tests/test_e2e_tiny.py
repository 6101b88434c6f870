"""End to end with the real tiny models (the default config's code path), offline."""

import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from src.cli import main
from tests.conftest import REPO, make_benchmark
from tests.test_config import USER_CONFIG
from tests.test_pipeline import comparable, report_of


def test_default_config_runs_end_to_end(tmp_path):
    out = tmp_path / "outputs"
    code = main(["--config", str(REPO / "config.yaml"), "--output-dir", str(out), "--run-name", "d", "--limit", "1"])
    assert code == 0
    report = report_of(out / "d")
    assert report["run"]["model_loads"] == {"editor": 1, "judge": 1}
    assert list(report["categories"]) == ["物理", "环境", "社会", "因果", "指代"]
    assert [p["status"] for p in report["pairs"]] == ["scored"] * 5
    for p in report["pairs"]:
        assert 0 <= p["score"] <= 10
        assert sum(p["judge_details"]["distribution"].values()) == pytest.approx(1.0)
        assert (out / "d" / p["edited_image"]).is_file()
    # deterministic: the same config and seed give identical edits and scores
    assert main(["--config", str(out / "d" / "config.resolved.yaml"), "--run-name", "d2"]) == 0
    again = report_of(out / "d2")
    assert comparable(again) == comparable(report)


def test_users_config_with_tiny_models(tmp_path):
    data = make_benchmark(tmp_path / "version_2_with_imagesb64.json", n=1)
    cfg = tmp_path / "user.yaml"
    cfg.write_text(USER_CONFIG.format(data=data).replace("Qwen/Qwen-Image-Edit", "tiny:qwen-image-edit")
                   .replace("Qwen/Qwen3-VL-30B-A3B-Instruct", "tiny:qwen3-vl-moe"), encoding="utf-8")
    out = tmp_path / "outputs"
    # the user's file says device: cuda; without a GPU that is a clear error, not a crash ...
    assert main(["--config", str(cfg), "--output-dir", str(out)]) == 2
    # ... and with the device overridden it runs (tiny sizes capped so it takes seconds)
    code = main(["--config", str(cfg), "--output-dir", str(out), "--run-name", "u",
                 "--set", "diffusion_model.init_args.device=auto",
                 "--set", "diffusion_model.init_args.num_inference_steps=2",
                 "--set", "diffusion_model.init_args.max_area=1024",
                 "--set", "reward_model.init_args.max_new_tokens=8",
                 "--set", "reward_model.init_args.max_retries=0"])
    assert code == 3  # it ran, but no pair could be scored (see below): a non-zero exit says so
    report = report_of(out / "u")
    assert report["run"]["model_loads"] == {"editor": 1, "judge": 1}
    # generate mode on a random-weight judge: no parseable reply, recorded as such with its raw text
    assert report["overall"]["failed"]["score_failed"] == 5
    assert all(p["score"] is None and p["judge_raw_reply"] is not None for p in report["pairs"])


def _count(db, table):
    try:
        with sqlite3.connect(db, timeout=1) as conn:
            return conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_default_config_killed_mid_edit_resumes_to_the_same_report(tmp_path):
    out = tmp_path / "outputs"
    base = ["--config", str(REPO / "config.yaml"), "--output-dir", str(out), "--limit", "2"]
    assert main(base + ["--run-name", "ref"]) == 0
    proc = subprocess.Popen([sys.executable, str(REPO / "main.py"), *base, "--run-name", "k"], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())
    deadline = time.time() + 120
    while _count(out / "k" / "state.sqlite", "edits") < 3 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert _count(out / "k" / "state.sqlite", "scores") == 0
    assert main(["--resume", str(out / "k"), "--set", "reward_model.init_args.batch_size=1"]) == 0
    resumed, ref = report_of(out / "k"), report_of(out / "ref")
    a, b = comparable(resumed), comparable(ref)
    for pa, pb in zip(a.pop("pairs"), b.pop("pairs")):  # scores equal to float tolerance across batchings
        assert pa.pop("score") == pytest.approx(pb.pop("score"), abs=1e-4)
        assert pa == pb
    for name in b["categories"]:
        ca, cb = a["categories"][name], b["categories"][name]
        assert (ca["pairs"], ca["scored"], ca["failed"]) == (cb["pairs"], cb["scored"], cb["failed"])
        assert ca["mean"] == pytest.approx(cb["mean"], abs=1e-4)
