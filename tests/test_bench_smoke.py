"""The bench scripts (bench/) still run: each in its smoke mode (--quick), results to a temp dir.

No timing or target assertions: the benches measure; docs/benchmarks.md reports. This only checks that
each script exits 0 and writes its JSON with the expected top-level keys. The scripts are started
together (most of their time is Python and torch start-up in subprocesses), so the module takes about as
long as the slowest one plus contention, not the sum.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

SCRIPTS = {
    "pipeline_overhead": ["summary", "png_sweep", "attribution_ms_per_pair", "target"],
    "memory_scaling": ["runs", "ratios", "target"],
    "judge_batching": ["rows", "speedups", "target"],
    "resume_cost": ["rows", "target"],
    "two_stage_vs_interleaved": ["summary", "runs"],
    "paper_estimate": ["banner", "inputs", "tables"],
    "report_uncertainty": ["settings", "rows"],
    "gallery_cost": ["rows", "summary"],
    "judge_ordering": ["settings", "rows"],
}


@pytest.fixture(scope="module")
def quick_runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench-results")
    procs = {}
    for name in SCRIPTS:
        log = open(out / f"{name}.log", "w", encoding="utf-8")
        procs[name] = (subprocess.Popen([sys.executable, str(REPO / "bench" / f"{name}.py"), "--quick",
                                         "--results-dir", str(out)], cwd=REPO, stdout=log,
                                        stderr=subprocess.STDOUT), log)
    codes = {}
    for name, (proc, log) in procs.items():
        try:
            codes[name] = proc.wait(timeout=300)
        except subprocess.TimeoutExpired:
            proc.kill()
            codes[name] = "timeout"
        log.close()
    return out, codes


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_bench_script_quick(name, quick_runs):
    out, codes = quick_runs
    log = (out / f"{name}.log").read_text(encoding="utf-8", errors="replace")
    assert codes[name] == 0, log[-4000:]
    doc = json.loads((out / f"{name}.json").read_text(encoding="utf-8"))
    assert doc["bench"] == name and doc["machine"]["logical_cpus"]
    for key in SCRIPTS[name]:
        assert key in doc, key


def test_constant_reward_model():
    from PIL import Image

    from bench.models import ConstantRewardModel
    from src.models.base import JudgePrompt, ModelError, ScoreRequest

    judge = ConstantRewardModel(value=7)
    with pytest.raises(ModelError):
        judge.score([])
    judge.load()
    im = Image.new("RGB", (4, 4))
    req = ScoreRequest(pair_id="p", category="c", original=im, edited=im, instruction="i", description=None,
                       prompt=JudgePrompt(system="", user="u", template="t", template_hash="h"))
    assert [r.score for r in judge.score([req, req])] == [7.0, 7.0]
    with pytest.raises(ModelError):
        ConstantRewardModel(value=11)
