"""Data-parallel runs on CPU (gloo): 2 processes give the report of 1, pair by pair; a rank killed with
SIGKILL mid-edit, then a resume with another number of processes, loses nothing and redoes nothing."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from src.cli import main
from src.distributed import World, merge_shards, open_shard, shard_of
from src.state import EditRecord, State
from tests.conftest import REPO, make_benchmark, write_config


def pairs_of(run: Path) -> list[tuple]:
    report = json.loads((run / "report.json").read_text(encoding="utf-8"))
    out = []
    for p in report["pairs"]:
        sha = hashlib.sha256((run / p["edited_image"]).read_bytes()).hexdigest() if p["edited_image"] else None
        out.append((p["category"], p["pair_id"], p["status"], p["score"], sha))
    return out


def launch(n: int, args: list[str], **kw) -> subprocess.Popen:
    """`accelerate launch --multi_gpu` is torchrun underneath; on a CPU box it starts N gloo processes."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}", "main.py", *args]
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dp")
    data = make_benchmark(tmp / "b.json", n=3)
    cfg = write_config(tmp / "c.yaml", data, editor={"class_path": "tests.fakes.FakeEditModel",
                                                      "init_args": {"fail_ids": ["1-1", "3-0"]}})
    assert main(["--config", str(cfg), "--output-dir", str(tmp / "out"), "--run-name", "one"]) == 0
    return tmp, cfg


def test_two_processes_give_the_one_process_report(runs):
    tmp, cfg = runs
    proc = launch(2, ["--config", str(cfg), "--output-dir", str(tmp / "out"), "--run-name", "two"])
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    one, two = pairs_of(tmp / "out" / "one"), pairs_of(tmp / "out" / "two")
    assert two == one and len(one) == 15
    assert {p[2] for p in one} == {"scored", "edit_failed"}
    report = json.loads((tmp / "out" / "two" / "report.json").read_text(encoding="utf-8"))
    assert report["run"]["invocations"][-1]["world_size"] == 2
    assert not list((tmp / "out" / "two" / "shards").glob("*.sqlite"))  # merged into state.sqlite
    assert (tmp / "out" / "two" / "logs" / "run.rank1.log").is_file()
    assert out.count("report (json):") == 1  # one report, written once, by the main process


def test_kill_one_rank_then_resume_with_another_count(runs):
    tmp, cfg = runs
    run = tmp / "out" / "killed"
    proc = launch(2, ["--config", str(cfg), "--output-dir", str(tmp / "out"), "--run-name", "killed",
                      "--set", "diffusion_model.init_args.delay_s=0.4"])
    try:
        victim, deadline = None, time.monotonic() + 240
        while victim is None and time.monotonic() < deadline:  # rank 1, once it has recorded an edit
            for path in (run / "shards").glob("*rank0001.sqlite"):
                try:
                    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
                        if conn.execute("SELECT COUNT(*) FROM edits").fetchone()[0] >= 2:
                            victim = next(c for c in psutil.Process(proc.pid).children(recursive=True)
                                          if c.environ().get("RANK") == "1")
                except (sqlite3.Error, StopIteration, psutil.Error):
                    pass
            time.sleep(0.1)
        assert victim is not None, "rank 1 never recorded an edit"
        victim.send_signal(signal.SIGKILL)
        out, _ = proc.communicate(timeout=120)  # the launcher stops the other rank
    finally:
        proc.kill()
    assert proc.returncode != 0
    before = {}
    for path in (run / "shards").glob("*.sqlite"):  # what the ranks had recorded when the run died
        with sqlite3.connect(path) as conn:
            for cat, pid, created in conn.execute("SELECT category, pair_id, created_at FROM edits"):
                before[(cat, pid)] = created
    assert before, "nothing was recorded before the kill"

    # resume with one process (another count): the shards are merged first, only the rest is edited
    assert main(["--resume", str(run)]) == 0
    assert pairs_of(run) == pairs_of(tmp / "out" / "one")
    state = State(run / "state.sqlite")
    try:
        after = {(r.category, r.pair_id): r.created_at for r in state.edits()}
    finally:
        state.close()
    assert all(after[key] == created for key, created in before.items())  # nothing edited twice


def test_shares_are_stable_disjoint_and_cover_everything():
    keys = [(c, f"p{i}") for c in ("物理", "环境") for i in range(200)]
    for n in (1, 2, 3, 8):
        shares = [World(rank=r, size=n).share(keys, lambda k: k) for r in range(n)]
        assert sorted(sum(shares, [])) == sorted(keys)
        assert all(len(s) > len(keys) / n / 2 for s in shares)  # roughly even
    assert shard_of("物理", "p7", 4) == shard_of("物理", "p7", 4)


def _edit(pair_id: str, created: float, error: str) -> EditRecord:
    return EditRecord(category="c", pair_id=pair_id, position=0, status="edit_failed", instruction="i",
                      description=None, metadata={}, image_path=None, output_sha256=None, input_sha256=None,
                      seed=1, editor_fingerprint="e", error=error, info={}, seconds=None, created_at=created)


def test_merge_keeps_the_newest_record_and_is_idempotent(tmp_path):
    main_state = State(tmp_path / "state.sqlite")
    main_state.put_edit(_edit("a", 10.0, "main, newer"))
    shard = open_shard(tmp_path / "shards" / "000001-rank0001.sqlite")
    shard.put_edit(_edit("a", 5.0, "shard, older"))
    shard.put_edit(_edit("b", 6.0, "shard only"))
    shard.close()
    copy = (tmp_path / "shards" / "000001-rank0001.sqlite").read_bytes()
    merge_shards(main_state, tmp_path)
    (tmp_path / "shards" / "000001-rank0001.sqlite").write_bytes(copy)  # killed before the delete: merged again
    merge_shards(main_state, tmp_path)
    got = {r.pair_id: r.error for r in main_state.edits()}
    main_state.close()
    assert got == {"a": "main, newer", "b": "shard only"}
    assert not list((tmp_path / "shards").glob("*.sqlite"))
