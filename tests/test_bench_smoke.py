"""The bench scripts (bench/) still run: each in its smoke mode (--quick), results to a temp dir.

No timing or target assertions: the benches measure; docs/benchmarks.md reports. This only checks that
each script exits 0 and writes its JSON with the expected top-level keys.
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
}


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_bench_script_quick(name, tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "bench" / f"{name}.py"), "--quick", "--results-dir",
                           str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads((tmp_path / f"{name}.json").read_text(encoding="utf-8"))
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
