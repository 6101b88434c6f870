"""Hardening (issue 11): no code from run folders, failures retryable, writes atomic, one process per run,
environment faults as one line, resume exact about what changed. Fast: fake models, 2 categories x 2 pairs."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from src.cli import main
from src.config import ConfigError, load_config
from tests.conftest import REPO, make_benchmark, png_b64, write_config

CATS = ["物理", "环境"]


def run_main(*args) -> int:
    return main([str(a) for a in args])


def report_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "report.json").read_text(encoding="utf-8"))


def comparable(report: dict) -> dict:
    pairs = [{k: p[k] for k in ("category", "pair_id", "status", "score", "error", "edited_image", "seed")}
             for p in report["pairs"]]
    return {"pairs": pairs, "overall": report["overall"]}


def loads(report: dict) -> dict:
    return report["run"]["invocations"][-1]["model_loads"]


@pytest.fixture
def small(tmp_path) -> Path:
    """A config over a 2 x 2 benchmark with the fake models; its run folders go to tmp_path/outputs."""
    bench = make_benchmark(tmp_path / "bench.json", categories=CATS, n=2)
    return write_config(tmp_path / "config.yaml", bench)


@pytest.fixture
def finished(tmp_path, small) -> Path:
    assert run_main("--config", small, "--run-name", "r") == 0
    return tmp_path / "outputs" / "r"


def no_orphans(root: Path) -> None:
    assert not [p for p in root.rglob("*") if ".tmp-" in p.name]


# ----------------------------------------------------------------------------- security


def _plant_payload(run_dir: Path, marker: Path) -> None:
    (run_dir / "payload.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('pwned')\n"
        "from src.models.base import BaseEditModel\nclass Foo(BaseEditModel):\n    pass\n", encoding="utf-8")


def test_run_folder_code_is_never_imported(tmp_path, finished, monkeypatch, capsys):
    marker = tmp_path / "pwned.txt"
    _plant_payload(finished, marker)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))  # `outputs` importable, as the current folder is for main.py
    cfg_file = finished / "config.resolved.yaml"
    cfg = yaml.safe_load(cfg_file.read_text(encoding="utf-8"))
    cfg["diffusion_model"]["class_path"] = "outputs.r.payload.Foo"
    cfg_file.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    # a shared run folder whose config was pointed at its own code: refused, nothing of it runs
    assert run_main("--resume", finished, "--stage", "report") == 2
    assert "not trusted" in capsys.readouterr().err
    assert run_main("--resume", finished, "--stage", "report", "--trust-run-config") == 2
    assert "never imported" in capsys.readouterr().err
    # the user's own config naming code inside an output folder is refused as well
    own = yaml.safe_load((tmp_path / "config.yaml").read_text(encoding="utf-8"))
    own["diffusion_model"]["class_path"] = "outputs.r.payload.Foo"
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump(own, allow_unicode=True), encoding="utf-8")
    with pytest.raises(ConfigError, match="never imported"):
        load_config(tmp_path / "mine.yaml")
    assert not marker.exists()


def test_run_folder_config_may_only_name_project_classes(tmp_path, finished, capsys):
    """Even a class path outside any run folder needs the user's word when it comes from a run folder."""
    pkg = tmp_path / "elsewhere"
    pkg.mkdir()
    marker = tmp_path / "pwned.txt"
    _plant_payload(pkg, marker)
    sys.path.insert(0, str(tmp_path))
    try:
        for cfg_path in (finished / "config.resolved.yaml",):
            cfg = yaml.safe_load(cfg_path.read_text(encoding="utf-8"))
            cfg["diffusion_model"]["class_path"] = "elsewhere.payload.Foo"
            cfg_path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
        with pytest.raises(ConfigError, match="outside this project's packages"):
            load_config(finished / "config.resolved.yaml", trusted=False)
        assert not marker.exists()
        assert run_main("--resume", finished, "--stage", "report") == 2  # edited config: refused up front
        assert "--trust-run-config" in capsys.readouterr().err
        assert not marker.exists()
    finally:
        sys.path.remove(str(tmp_path))


def test_a_name_that_is_no_class_is_refused_without_importing(small, capsys):
    with pytest.raises(ConfigError, match="has no class 'Foo'"):
        load_config(small, ["diffusion_model.class_path=this.Foo"])
    assert "Zen of Python" not in capsys.readouterr().out
    assert "this" not in sys.modules


def test_pasted_api_key_is_refused_and_never_echoed(tmp_path, small, capsys):
    key = "sk-proj-AbCdEf0123456789XyZ0123456789abcd"
    judge = {"class_path": "src.models.reward.implementations.openai_compatible.OpenAICompatibleRewardModel",
             "init_args": {"model": "m", "base_url": "http://127.0.0.1:9/v1", "api_key_env": key}}
    cfg = write_config(tmp_path / "key.yaml", tmp_path / "bench.json", judge=judge)
    assert run_main("--config", cfg, "--run-name", "k") == 2
    err = capsys.readouterr().err
    assert "api_key_env" in err and "looks like a key" in err and key not in err and key[:12] not in err
    assert not (tmp_path / "outputs" / "k").exists()
    for name in ("OPENAI_API_KEY", "MY_KEY_2", "openai_api_key"):
        judge["init_args"]["api_key_env"] = name
        write_config(tmp_path / "ok.yaml", tmp_path / "bench.json", judge=judge)
        load_config(tmp_path / "ok.yaml")


@pytest.mark.parametrize("kwargs", [{"trust_remote_code": True}, {"custom_pipeline": "lpw_stable_diffusion"}])
def test_remote_code_needs_allow_remote_code(tmp_path, kwargs):
    editor = {"class_path": "src.models.diffusion.implementations.diffusers_generic.DiffusersEditModel",
              "init_args": {"pipeline_class": "StableDiffusionInstructPix2PixPipeline", "model_name": "x/y",
                            "load_kwargs": kwargs}}
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "b.json", editor=editor)
    with pytest.raises(ConfigError, match="allow_remote_code: true"):
        load_config(cfg)
    allowed = load_config(cfg, ["allow_remote_code=true"])
    assert allowed.to_dict()["allow_remote_code"] is True
    out = tmp_path / "saved.yaml"  # a run folder's copy cannot allow it on its own
    out.write_text(yaml.safe_dump(allowed.to_dict(), allow_unicode=True), encoding="utf-8")
    with pytest.raises(ConfigError, match="not trusted"):
        load_config(out, trusted=False)


def test_allow_remote_code_is_recorded_in_the_report(finished):
    assert report_of(finished)["run"]["allow_remote_code"] is False


# ----------------------------------------------------------------------------- retry and repair


def test_judge_outage_exits_3_then_retry_failed_scores(tmp_path, small, capsys):
    outage = tmp_path / "judge-down"
    outage.write_text("")
    judge = {"class_path": "tests.fakes.FlakyRewardModel", "init_args": {"outage_file": str(outage)}}
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "bench.json", judge=judge)
    assert run_main("--config", cfg, "--run-name", "o") == 3
    assert "no pair could be scored (4 score failed" in capsys.readouterr().err
    run_dir = tmp_path / "outputs" / "o"
    outage.unlink()  # the server is back
    assert run_main("--resume", run_dir) == 3  # a plain resume treats the failures as done ...
    assert run_main("--resume", run_dir, "--stage", "score", "--retry-failed", "edit") == 3  # ... and so do edits
    assert run_main("--resume", run_dir, "--retry-failed", "score") == 0
    report = report_of(run_dir)
    assert report["overall"]["scored"] == 4 and loads(report) == {"editor": 0, "judge": 1}


def test_failed_edits_are_retried(tmp_path, small, capsys):
    outage = tmp_path / "mount-down"
    outage.write_text("")
    editor = {"class_path": "tests.fakes.FlakyEditModel", "init_args": {"outage_file": str(outage)}}
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "bench.json", editor=editor)
    assert run_main("--config", cfg, "--run-name", "e", "--stage", "edit") == 3
    assert "no pair could be edited (0 invalid input, 4 edit failed)" in capsys.readouterr().err
    run_dir = tmp_path / "outputs" / "e"
    outage.unlink()
    assert run_main("--resume", run_dir, "--retry-failed") == 0
    report = report_of(run_dir)
    assert report["overall"]["scored"] == 4 and loads(report) == {"editor": 1, "judge": 1}


def test_retry_failed_needs_resume(small):
    assert run_main("--config", small, "--retry-failed") == 2


def test_corrupted_image_is_re_edited(finished):
    before = report_of(finished)
    victim = finished / before["pairs"][1]["edited_image"]
    good = victim.read_bytes()
    victim.write_bytes(good[:-20] + b"\0" * 20)  # same size, damaged tail
    assert run_main("--resume", finished) == 0
    after = report_of(finished)
    assert victim.read_bytes() == good  # same seed, same bytes: the existing score still belongs to it
    assert loads(after) == {"editor": 1, "judge": 0}
    assert comparable(after) == comparable(before)


# ----------------------------------------------------------------------------- one process per run folder


def _start_time(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]


def test_run_folder_lock_names_the_holder_and_stale_locks_are_taken_over(finished, capsys):
    holder = subprocess.Popen(["sleep", "60"])
    try:
        lock = {"host": socket.gethostname(), "pid": holder.pid, "start_time": _start_time(holder.pid),
                "since": "now"}
        (finished / "run.lock").write_text(json.dumps(lock), encoding="utf-8")
        assert run_main("--resume", finished) == 2
        err = capsys.readouterr().err
        assert f"in use by process {holder.pid} on host {socket.gethostname()!r}" in err
        assert run_main("--resume", finished, "--stage", "report") == 2
    finally:
        holder.kill()
        holder.wait()
    assert run_main("--resume", finished) == 0  # the holder died: its lock is stale
    assert "stale lock" in capsys.readouterr().err
    assert not (finished / "run.lock").exists()  # released on exit
    lock["host"] = "another-host"  # cannot be checked from here: refused, with how to remove it
    (finished / "run.lock").write_text(json.dumps(lock), encoding="utf-8")
    assert run_main("--resume", finished) == 2
    assert "if that process is gone, delete" in capsys.readouterr().err


def _wait_for(path: Path, proc: subprocess.Popen, what: str) -> None:
    deadline = time.time() + 300  # generous: a loaded shared machine starts Python slowly
    while not path.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    assert path.exists(), f"{what} never happened (exit {proc.poll()})"


def test_second_process_is_refused_and_sigterm_is_handled_like_ctrl_c(tmp_path, small, capsys):
    """A run held inside its first edit: a second process on its folder is refused, naming it; then SIGTERM
    ends it with 143, its invocation closed and its lock released; a resume finishes with one more load."""
    hold = tmp_path / "hold"
    hold.write_text("")
    editor = {"class_path": "tests.fakes.FlakyEditModel", "init_args": {"hold_file": str(hold)}}
    cfg = write_config(tmp_path / "h.yaml", tmp_path / "bench.json", editor=editor)
    cmd = [sys.executable, str(REPO / "main.py"), "--config", str(cfg), "--run-name", "twin"]
    first = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    run_dir = tmp_path / "outputs" / "twin"
    try:
        _wait_for(Path(str(hold) + ".reached"), first, "the first edit")
        assert run_main("--resume", run_dir) == 2
        assert f"in use by process {first.pid}" in capsys.readouterr().err
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=120) == 143
    finally:
        first.kill()
    err = first.stderr.read()
    assert "terminated (SIGTERM)" in err and f"--resume {run_dir}" in err and "Traceback" not in err
    assert not (run_dir / "run.lock").exists()
    hold.unlink()
    assert run_main("--resume", run_dir) == 0
    report = report_of(run_dir)
    first_inv = report["run"]["invocations"][0]
    assert first_inv["finished_at"] is not None and first_inv["interrupted_by"] == "Terminated"
    assert [i["model_loads"] for i in report["run"]["invocations"]] == [{"editor": 1, "judge": 0},
                                                                        {"editor": 1, "judge": 1}]
    assert report["overall"]["scored"] == 4


# ----------------------------------------------------------------------------- atomic writes, faults


class _FullDisk:
    """`open` for writing that creates the file, then fails as a full disk does."""

    def __init__(self, match: str = ""):
        self.calls = 0
        self.match = match

    def __call__(self, path, mode="r", *a, **kw):
        f = open(path, mode, *a, **kw)
        if "w" in mode and self.match in str(path):
            self.calls += 1
            real_write = f.write

            def write(data):
                real_write(data[: len(data) // 2])
                raise OSError(errno.ENOSPC, "No space left on device", str(path))

            f.write = write
        return f


def test_full_disk_during_report_keeps_the_old_report(finished, monkeypatch, capsys):
    before = (finished / "report.json").read_bytes()
    full = _FullDisk()
    monkeypatch.setattr("src.state.open", full, raising=False)
    assert run_main("--resume", finished, "--stage", "report") == 2
    err = capsys.readouterr().err
    assert full.calls and "disk full" in err and "Traceback" not in err
    assert (finished / "report.json").read_bytes() == before  # the valid report is still there
    no_orphans(finished)


def test_full_disk_during_edit_is_one_line_and_resumable(tmp_path, small, monkeypatch, capsys):
    full = _FullDisk(".png.tmp-")
    monkeypatch.setattr("src.state.open", full, raising=False)
    assert run_main("--config", small, "--run-name", "f") == 2
    err = capsys.readouterr().err
    run_dir = tmp_path / "outputs" / "f"
    assert f"disk full while writing {run_dir}" in err and f"--resume {run_dir}" in err and "Traceback" not in err
    no_orphans(run_dir)
    monkeypatch.undo()  # space freed
    assert run_main("--resume", run_dir) == 0
    assert report_of(run_dir)["overall"]["scored"] == 4


def test_full_disk_before_anything_is_recorded(tmp_path, small, monkeypatch, capsys):
    monkeypatch.setattr("src.state.open", _FullDisk(), raising=False)
    assert run_main("--config", small, "--run-name", "g") == 2
    err = capsys.readouterr().err
    assert "disk full" in err and "--resume" not in err and "run it again" in err
    no_orphans(tmp_path / "outputs")


def test_unwritable_output_folder_is_one_line(tmp_path, small, monkeypatch, capsys):
    blocker = tmp_path / "blocked"
    blocker.write_text("a file where the output folder should be")
    assert run_main("--config", small, "--output-dir", blocker) == 2
    assert "a file is in the way" in capsys.readouterr().err

    def denied(self, *a, **kw):  # as root chmod does not block writes; a read-only mount says EROFS
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "mkdir", denied)
    assert run_main("--config", small, "--output-dir", tmp_path / "ro") == 2
    err = capsys.readouterr().err
    assert "read-only file system" in err and "Traceback" not in err


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_damaged_state_file_is_one_line(finished, damage, capsys):
    db = finished / "state.sqlite"
    data = db.read_bytes()
    for extra in ("state.sqlite-wal", "state.sqlite-shm"):
        (finished / extra).unlink(missing_ok=True)
    if damage == "truncate":
        db.write_bytes(data[: len(data) // 2])
    else:
        db.write_bytes(data[:100] + os.urandom(len(data) - 100))
    assert run_main("--resume", finished) == 2
    err = capsys.readouterr().err
    assert "state.sqlite" in err and ("damaged" in err or "integrity" in err) and "Traceback" not in err


# ----------------------------------------------------------------------------- resume is exact


def test_kill_between_config_and_state_is_resumable(tmp_path, small, monkeypatch):
    """A kill right after the run folder got its config, before state.sqlite exists."""
    import src.pipeline as pipeline

    class Killed(BaseException):
        pass

    def die(*a, **kw):
        raise Killed()

    monkeypatch.setattr(pipeline, "State", die)
    with pytest.raises(Killed):
        run_main("--config", small, "--run-name", "w")
    monkeypatch.undo()
    run_dir = tmp_path / "outputs" / "w"
    assert (run_dir / "config.resolved.yaml").is_file() and not (run_dir / "state.sqlite").exists()
    assert run_main("--resume", run_dir) == 0
    assert report_of(run_dir)["overall"]["scored"] == 4


def test_missing_config_is_restored_from_the_records(finished):
    (finished / "config.resolved.yaml").unlink()
    assert run_main("--resume", finished) == 0
    assert (finished / "config.resolved.yaml").is_file()


def test_kill_inside_the_setup_window_is_resumable(tmp_path, small):
    """SIGKILL as soon as the run folder appears (setup: lock, config, state.sqlite), then continue: with
    --resume when a run folder was made, else a new run of the same name. Same report as an unkilled run.
    (The exact moment between the config and state.sqlite is test_kill_between_config_and_state_...)"""
    assert run_main("--config", small, "--run-name", "ref") == 0
    reference = comparable(report_of(tmp_path / "outputs" / "ref"))
    run_dir = tmp_path / "outputs" / "k"
    cmd = [sys.executable, str(REPO / "main.py"), "--config", str(small), "--run-name", run_dir.name]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(run_dir, proc, "the run folder")
    finally:
        proc.kill()
        proc.wait()
    if (run_dir / "config.resolved.yaml").exists() or (run_dir / "state.sqlite").exists():
        assert run_main("--resume", run_dir) == 0
    else:
        assert run_main("--config", small, "--run-name", run_dir.name) == 0
    assert comparable(report_of(run_dir)) == reference


def test_changed_description_is_refused(tmp_path, finished, capsys):
    data = json.loads((tmp_path / "bench.json").read_text(encoding="utf-8"))
    data["环境"]["data_pairs"][1]["original_description"] = "another description"
    (tmp_path / "bench.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    for stage in ("all", "score"):
        assert run_main("--resume", finished, "--stage", stage) == 2
        err = capsys.readouterr().err
        assert "'环境', pair '1-1'" in err and "description" in err


def test_changed_extra_image_is_refused(tmp_path, capsys):
    """Extra images (reference, original_N) reach the judge or the editor: a changed one is a changed pair."""
    from tests.conftest import png_b64

    bench = make_benchmark(tmp_path / "bench.json", categories=CATS, n=2)
    data = json.loads(bench.read_text(encoding="utf-8"))
    data[CATS[0]]["data_pairs"][1]["named_images_b64"] = {"reference": png_b64((1, 2, 3))}
    bench.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    cfg = write_config(tmp_path / "config.yaml", bench)
    assert run_main("--config", cfg, "--run-name", "x") == 0
    data[CATS[0]]["data_pairs"][1]["named_images_b64"] = {"reference": png_b64((9, 9, 9))}
    bench.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    for stage in ("all", "score"):
        assert run_main("--resume", tmp_path / "outputs" / "x", "--stage", stage) == 2
        err = capsys.readouterr().err
        assert f"{CATS[0]!r}, pair '0-1'" in err and "extra image(s) reference differ" in err


def test_removed_pairs_are_reported(tmp_path, finished, capsys):
    data = json.loads((tmp_path / "bench.json").read_text(encoding="utf-8"))
    del data["物理"]["data_pairs"][0]
    (tmp_path / "bench.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    assert run_main("--resume", finished) == 0
    assert "1 pair(s) of this run are no longer in" in capsys.readouterr().err
    report = report_of(finished)
    assert report["run"]["removed_pairs"] == [["物理", "0-0"]]
    assert report["overall"]["pairs"] == 3


def test_subset_with_resume_is_for_this_invocation_only(tmp_path, small):
    assert run_main("--config", small, "--run-name", "s", "--stage", "edit") == 0
    run_dir = tmp_path / "outputs" / "s"
    assert run_main("--resume", run_dir, "--categories", "环境", "--limit", "1") == 0
    saved = yaml.safe_load((run_dir / "config.resolved.yaml").read_text(encoding="utf-8"))
    assert saved["benchmark"]["categories"] is None and saved["benchmark"]["limit"] is None
    report = report_of(run_dir)
    assert report["overall"]["pairs"] == 4 and report["overall"]["scored"] == 1
    assert run_main("--resume", run_dir) == 0  # the next plain resume does the rest
    assert report_of(run_dir)["overall"]["scored"] == 4


def test_resume_without_path_uses_the_configs_output_dir(tmp_path, finished, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # no ./outputs here
    assert run_main("--resume", "--config", tmp_path / "config.yaml") == 0
    assert len(report_of(finished)["run"]["invocations"]) == 2


def test_relative_prompt_folder_is_saved_resolvable(tmp_path, monkeypatch):
    cfg_dir = tmp_path / "cfg"
    (cfg_dir / "my_prompt").mkdir(parents=True)
    for name in ("system.j2", "user.j2"):
        (cfg_dir / "my_prompt" / name).write_text("Rate {{ instruction }} 0-10.", encoding="utf-8")
    bench = make_benchmark(tmp_path / "bench.json", categories=CATS, n=1)
    cfg = write_config(cfg_dir / "c.yaml", bench, prompts={"categories": {"物理": "my_prompt"}})
    monkeypatch.chdir(tmp_path)  # not the config's folder
    loaded = load_config(cfg)
    assert loaded.prompt_categories["物理"] == str((cfg_dir / "my_prompt").resolve())
    assert run_main("--config", cfg, "--run-name", "p") == 0
    run_dir = cfg_dir / "outputs" / "p"
    monkeypatch.chdir(tmp_path / "outputs" if (tmp_path / "outputs").exists() else cfg_dir / "outputs")
    assert run_main("--resume", run_dir, "--stage", "report") == 0


@pytest.mark.parametrize("name", ["tiny:nope", "/nonexistent/model"])
def test_wrong_model_name_is_found_before_the_run_folder_exists(tmp_path, small, name, capsys):
    editor = "src.models.diffusion.implementations.qwen_image_edit.QwenImageEditModel"
    assert run_main("--config", small, "--run-name", "m", "--set", f"diffusion_model.class_path={editor}",
                    "--set", f"diffusion_model.init_args={{model_name: '{name}', device: cpu, dtype: float32}}") == 2
    assert name in capsys.readouterr().err
    assert not (tmp_path / "outputs" / "m").exists()


def test_stage_report_does_not_need_the_benchmark_file(tmp_path, finished):
    before = report_of(finished)
    (tmp_path / "bench.json").unlink()
    assert run_main("--resume", finished, "--stage", "report") == 0
    assert comparable(report_of(finished)) == comparable(before)


# ----------------------------------------------------------------------------- bounded input


def test_overlong_instruction_is_invalid_input_before_any_model(tmp_path):
    long = {"pair_id": "long", "original_image_b64": png_b64(),
            "edit_instruction": "把" * 9000}
    data = make_benchmark(tmp_path / "b.json", categories=CATS, n=1, extra={"物理": [long]})
    cfg = write_config(tmp_path / "c.yaml", data)
    assert run_main("--config", cfg, "--run-name", "l") == 0
    report = report_of(tmp_path / "outputs" / "l")
    by_id = {p["pair_id"]: p for p in report["pairs"]}
    assert by_id["long"]["status"] == "invalid_input"
    assert "category '物理', pair 'long'" in by_id["long"]["error"]
    assert "9,000 characters; the limit is 8,192 (pipeline.max_instruction_chars)" in by_id["long"]["error"]
    assert report["overall"]["scored"] == 2  # the valid pairs complete
    assert run_main("--config", cfg, "--run-name", "l2", "--set", "pipeline.max_instruction_chars=10000") == 0
    assert report_of(tmp_path / "outputs" / "l2")["overall"]["scored"] == 3


def test_model_families_bring_their_own_instruction_limit():
    from src.limits import instruction_limit
    from src.models.diffusion.implementations.qwen_image_edit import QwenImageEditModel
    from src.models.diffusion.implementations.qwen_image_edit_plus import QwenImageEditPlusModel
    from tests.fakes import FakeEditModel, FakeRewardModel

    for editor in (QwenImageEditModel, QwenImageEditPlusModel):
        limit, why = instruction_limit(8192, editor, FakeRewardModel)
        assert limit == 2048 and "4,096 rotary positions" in why
    assert instruction_limit(8192, FakeEditModel, FakeRewardModel)[0] == 8192
    assert instruction_limit(1000, QwenImageEditModel, FakeRewardModel)[0] == 1000

    class Short(FakeRewardModel):
        max_instruction_chars = 300

    assert instruction_limit(8192, FakeEditModel(), Short())[0] == 300


def test_run_folder_config_cannot_choose_a_program_to_start(tmp_path, small):
    judge = {"class_path": "src.models.reward.implementations.vllm_server.VLLMServerRewardModel",
             "init_args": {"model": "org/judge", "command": ["sh", "-c", "touch pwned"]}}
    cfg = write_config(tmp_path / "v.yaml", tmp_path / "bench.json", judge=judge)
    load_config(cfg)  # the user's own config may (tests start a fake server this way)
    with pytest.raises(ConfigError, match="starts a program"):
        load_config(cfg, trusted=False)
    judge["init_args"] = {"model": "org/judge", "extra_args": ["--trust-remote-code"]}
    write_config(cfg, tmp_path / "bench.json", judge=judge)
    with pytest.raises(ConfigError, match="allow_remote_code: true"):
        load_config(cfg)
