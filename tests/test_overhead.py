"""Per-pair overhead fixes (docs/benchmarks.md section 1): SQLite durability level, no torch import for
torch-free runs, the template hash computed once per template."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from src import prompts
from src.models.base import ModelError, check_dtype, resolve_device
from src.state import State

REPO = Path(__file__).resolve().parents[1]


def test_run_state_is_wal_normal_and_shard_files_stay_full(tmp_path):
    state = State(tmp_path / "state.sqlite")
    try:
        assert state.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert state.conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    finally:
        state.close()
    shard = State(tmp_path / "shard.sqlite", journal_mode="DELETE")
    try:
        assert shard.conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        assert shard.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    finally:
        shard.close()


def test_dtype_and_device_checks_without_torch():
    assert check_dtype("bf16") == "bfloat16" and check_dtype("torch.float32") == "float32"
    with pytest.raises(ModelError, match="unknown dtype 'int3'"):
        check_dtype("int3")
    assert resolve_device("cpu") == "cpu"


def test_template_hash_is_cached_and_follows_an_included_file(tmp_path, monkeypatch):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "system.j2").write_text("judge", encoding="utf-8")
    (folder / "base.j2").write_text("rate {{ instruction }}", encoding="utf-8")
    (folder / "user.j2").write_text('{% include "mine/base.j2" %} now', encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    first = prompts.template_hash("mine")
    calls = []
    real = prompts._source_with_parents
    monkeypatch.setattr(prompts, "_source_with_parents", lambda *a, **k: calls.append(a[1]) or real(*a, **k))
    assert prompts.template_hash("mine") == first
    assert calls == []  # served from the cache: nothing re-read or re-parsed
    base = folder / "base.j2"
    base.write_text("score {{ instruction }}", encoding="utf-8")  # same size, new text
    st = base.stat()
    os.utime(base, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000))
    assert prompts.template_hash("mine") != first
    assert calls  # the changed include was read again


def test_run_with_torch_free_models_never_imports_torch(tmp_path):
    sys.path.insert(0, str(REPO))
    from bench.common import make_benchmark, write_config

    make_benchmark(tmp_path / "bench.json", 5, 32, unique=2)
    cfg = write_config(tmp_path / "config.yaml", tmp_path / "bench.json", tmp_path / "out")
    code = ("import sys; from src.cli import main; rc = main(sys.argv[1:]); "
            "print('TORCH', 'torch' in sys.modules); sys.exit(rc)")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    p = subprocess.run([sys.executable, "-c", code, "--config", str(cfg), "--run-name", "r"], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "TORCH False" in p.stdout
    report = json.loads((tmp_path / "out" / "r" / "report.json").read_text(encoding="utf-8"))
    assert sorted(r["status"] for r in report["pairs"]) == ["scored"] * 5
