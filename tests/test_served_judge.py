"""Served judges, checked before the run; structured output; logits from top log-probabilities; and the
vLLM judge that the run starts and stops itself (a fake `vllm serve` script on 127.0.0.1 stands in)."""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from src.cli import main
from src.models.base import ModelError
from src.models.reward.implementations.openai_compatible import OpenAICompatibleRewardModel
from src.models.reward.implementations.vllm_server import VLLMServerRewardModel
from tests.conftest import REPO, make_benchmark, write_config
from tests.openai_server import Reply, ScriptedOpenAIServer, error
from tests.test_openai_judge import KEY_ENV, SECRET, make_request, server  # noqa: F401 - the same server fixture

FAKE_VLLM = [sys.executable, str(REPO / "tests" / "fake_vllm_server.py")]
OPENAI = "src.models.reward.implementations.openai_compatible.OpenAICompatibleRewardModel"
VLLM = "src.models.reward.implementations.vllm_server.VLLMServerRewardModel"


def judge_at(server, **kw) -> OpenAICompatibleRewardModel:
    return OpenAICompatibleRewardModel(**{"model": "test-judge", "base_url": server.base_url, "api_key_env": KEY_ENV,
                                          "backoff_s": 0.01, "timeout_s": 5.0, **kw})


def dead_url() -> str:
    with socket.socket() as s:  # a loopback port with nobody listening
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/v1"


# ----------------------------------------------------------------------------- preflight


def test_preflight_lists_models_and_sends_one_tiny_request(server):
    judge_at(server).check()
    paths = [c.path for c in server.checks]
    assert paths == ["/v1/models", "/v1/chat/completions"] and server.requests == []
    assert server.checks[1].body["max_tokens"] <= 16 and server.checks[1].headers["authorization"] == f"Bearer {SECRET}"


def test_preflight_wrong_model_name_says_what_is_served(server):
    server.served_models = ["Qwen/Qwen3-VL-8B-Instruct"]
    with pytest.raises(ModelError, match=r"does not serve model 'Qwen/Qwen3-VL-8B-Instrut'.*did you mean "
                                         r"'Qwen/Qwen3-VL-8B-Instruct'"):
        judge_at(server, model="Qwen/Qwen3-VL-8B-Instrut").check()


def test_preflight_dead_server_wrong_key_and_no_models_route(server):
    with pytest.raises(ModelError, match="is not reachable.*preflight: false"):
        judge_at(server, base_url=dead_url()).check()
    server.api_key = "the-right-key"
    with pytest.raises(ModelError, match="HTTP 401") as exc:
        judge_at(server).check()
    assert SECRET not in str(exc.value)
    server.api_key = None
    server.served_models = None  # a server without GET /models: the tiny request still checks it
    judge_at(server).check()


def test_preflight_rejected_response_format_points_at_the_setting(server):
    server.preflight_reply = error(400, "response_format is not supported")
    with pytest.raises(ModelError, match="HTTP 400.*set response_format: null"):
        judge_at(server, response_format="json_object").check()


def test_dead_server_fails_the_run_before_the_editor_loads(tmp_path, server, capsys):
    data = make_benchmark(tmp_path / "b.json", categories=["物理"], n=2)
    judge = {"class_path": OPENAI, "init_args": {"model": "test-judge", "base_url": dead_url(),
                                                 "api_key_env": KEY_ENV}}
    cfg = write_config(tmp_path / "c.yaml", data, judge=judge)
    assert main(["--config", str(cfg), "--run-name", "dead"]) == 2
    assert "is not reachable" in capsys.readouterr().err
    assert not (tmp_path / "outputs" / "dead" / "state.sqlite").exists()  # nothing edited, nothing to resume


# ----------------------------------------------------------------------------- identity, structured output


def test_transport_settings_do_not_force_a_rescore(tmp_path, server):
    data = make_benchmark(tmp_path / "b.json", categories=["物理"], n=2)
    server.handler = lambda body: Reply(content='{"score": 6, "reasoning": "r"}')
    judge = {"class_path": OPENAI, "init_args": {"model": "test-judge", "base_url": server.base_url,
                                                 "api_key_env": KEY_ENV, "max_concurrency": 2, "timeout_s": 30}}
    cfg = write_config(tmp_path / "c.yaml", data, judge=judge)
    assert main(["--config", str(cfg), "--run-name", "r"]) == 0
    assert len(server.requests) == 2
    other = ScriptedOpenAIServer().start()  # the same model, moved to another port, other transport settings
    try:
        other.handler = server.handler
        run = tmp_path / "outputs" / "r"
        assert main(["--config", str(cfg), "--resume", str(run), "--stage", "score",
                     "--set", f"reward_model.init_args.base_url={other.base_url}",
                     "--set", "reward_model.init_args.max_concurrency=5",
                     "--set", "reward_model.init_args.timeout_s=99",
                     "--set", "reward_model.init_args.transport_retries=1"]) == 0
        assert other.requests == []  # nothing re-scored
    finally:
        other.stop()
    report = json.loads((run / "report.json").read_text(encoding="utf-8"))
    assert [p["score"] for p in report["pairs"]] == [6.0, 6.0]


def test_structured_output_is_asked_and_recorded(server):
    server.push(Reply(content='{"score": 4, "reasoning": "r"}'))
    judge = judge_at(server, response_format="json_object")
    judge.load()
    (res,) = judge.score([make_request(0)])
    judge.release()
    assert res.status == "scored" and res.score == 4.0
    assert server.requests[0].body["response_format"] == {"type": "json_object"}
    assert res.details["structured_output"] == "json_object"
    plain = judge_at(server)
    assert "response_format" not in plain._request_kwargs([])


# ----------------------------------------------------------------------------- logits from logprobs


def test_logits_scoring_from_top_logprobs_matches_the_formula(server):
    p = {"7": 0.5, "8": 0.2, "1": 0.2, "3": 0.1}  # after '{"score": '
    q = {"0": 0.6, ",": 0.3, "5": 0.1}  # after '{"score": 1'

    def handler(body):
        prefix = body["messages"][-1]["content"]
        assert body["messages"][-1]["role"] == "assistant" and body["continue_final_message"] is True
        assert body["max_tokens"] == 1 and body["logprobs"] is True and body["top_logprobs"] == 20
        dist = q if prefix.endswith("1") else p
        return Reply(content="", top_logprobs={t: math.log(v) for t, v in dist.items()})

    server.handler = handler
    judge = judge_at(server, scoring="logits", response_format="json_object")
    judge.load()
    (res,) = judge.score([make_request(0)])
    judge.release()
    # By hand: P(7)=.5 P(8)=.2 P(3)=.1; "1" then a digit: q(0)+q(5)=.7 -> P(1)=.2*.3=.06, P(10)=.2*.6=.12;
    # mass = .5+.2+.1+.06+.12 = .98; score = (7*.5 + 8*.2 + 3*.1 + 1*.06 + 10*.12) / .98
    expected = (3.5 + 1.6 + 0.3 + 0.06 + 1.2) / 0.98
    assert res.status == "scored" and res.score == pytest.approx(expected, abs=1e-9)
    assert res.details["distribution"]["10"] == pytest.approx(0.12 / 0.98)
    assert res.details["mass"] == pytest.approx(0.98) and res.details["top_mass"] == pytest.approx([1.0, 0.7])
    assert all("response_format" not in r.body for r in server.requests)  # the prefill begins the JSON itself


def test_logits_scoring_without_logprobs_fails_with_the_reason(server):
    server.handler = lambda body: Reply(content="7")
    judge = judge_at(server, scoring="logits")
    judge.load()
    (res,) = judge.score([make_request(0)])
    judge.release()
    assert res.status == "score_failed" and "no logprobs" in res.error and res.score is None


def test_logits_scoring_needs_a_single_score_protocol():
    with pytest.raises(ModelError, match="scoring: logits"):
        OpenAICompatibleRewardModel(model="m", scoring="logits", protocol="viescore")


# ----------------------------------------------------------------------------- the managed vLLM judge


def vllm_judge(tmp_path, monkeypatch, *extra, **kw) -> VLLMServerRewardModel:
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("FAKE_VLLM_STATE", str(tmp_path / "fake_state.json"))
    args = {"model": "org/judge-7b", "command": FAKE_VLLM, "extra_args": list(extra), "startup_timeout_s": 60,
            "shutdown_timeout_s": 5, "backoff_s": 0.01}
    args.update(kw)
    return VLLMServerRewardModel(**args)


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:  # a zombie (not yet reaped by its parent) is gone too
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


def test_managed_judge_starts_scores_and_stops(tmp_path, monkeypatch):
    judge = vllm_judge(tmp_path, monkeypatch, tensor_parallel_size=2, max_pixels=401408, scoring="generate")
    judge.load()
    try:
        state = json.loads((tmp_path / "fake_state.json").read_text())
        argv = state["argv"]
        assert argv[0] == "org/judge-7b" and argv[argv.index("--host") + 1] == "127.0.0.1"
        assert argv[argv.index("--tensor-parallel-size") + 1] == "2"
        assert json.loads(argv[argv.index("--limit-mm-per-prompt") + 1]) == {"image": 2}
        assert json.loads(argv[argv.index("--mm-processor-kwargs") + 1]) == {"max_pixels": 401408}
        assert state["key_on_command_line"] is False  # the key goes through VLLM_API_KEY
        results = judge.score([make_request(i) for i in range(3)])
        assert [r.status for r in results] == ["scored"] * 3
        assert all(r.details["structured_output"] == "json_object" for r in results)
        again = judge.score([make_request(i) for i in range(3)])
        assert [r.score for r in again] == [r.score for r in results]  # deterministic per edit
    finally:
        judge.release()
    assert gone(state["pid"]) and judge.server_pid is None


def test_managed_judge_logits_through_the_server(tmp_path, monkeypatch):
    judge = vllm_judge(tmp_path, monkeypatch, scoring="logits")
    judge.load()
    try:
        argv = json.loads((tmp_path / "fake_state.json").read_text())["argv"]
        assert argv[argv.index("--max-logprobs") + 1] == "20"
        (res,) = judge.score([make_request(0)])
    finally:
        judge.release()
    # fake server: p = {7: .5, 8: .25, 1: .125, 6: .0625, 0: .0625}, q = {0: .75, ",": .25}
    mass = 0.5 + 0.25 + 0.0625 + 0.0625 + 0.125  # P(1) + P(10) = p(1)
    expected = (7 * 0.5 + 8 * 0.25 + 6 * 0.0625 + 1 * 0.125 * 0.25 + 10 * 0.125 * 0.75) / mass
    assert res.status == "scored" and res.score == pytest.approx(expected)


def test_managed_judge_crash_and_timeout_are_clear_and_leave_no_process(tmp_path, monkeypatch):
    with pytest.raises(ModelError, match=r"exited with code 1 before it was ready(.|\n)*CUDA out of memory"):
        vllm_judge(tmp_path, monkeypatch, "--fake-mode", "crash").load()
    judge = vllm_judge(tmp_path, monkeypatch, "--fake-mode", "never-ready", startup_timeout_s=1.5)
    with pytest.raises(ModelError, match=r"not ready after 1.5 s"):
        judge.load()
    assert gone(json.loads((tmp_path / "fake_state.json").read_text())["pid"])
    with pytest.raises(ModelError, match="not found: install vLLM"):
        VLLMServerRewardModel(command=["no-such-vllm-binary", "serve"]).check()


def test_managed_judge_is_killed_when_it_ignores_sigterm(tmp_path, monkeypatch):
    judge = vllm_judge(tmp_path, monkeypatch, "--fake-mode", "ignore-term", shutdown_timeout_s=0.5)
    judge.load()
    pid = json.loads((tmp_path / "fake_state.json").read_text())["pid"]
    t0 = time.monotonic()
    judge.release()
    assert gone(pid) and time.monotonic() - t0 < 10


def test_managed_judge_run_scores_and_ctrl_c_leaves_no_server(tmp_path, monkeypatch):
    """A whole run with the managed judge (the editor is released before the server starts); then a
    process interrupted by SIGINT while its judge server is up: the server is gone afterwards."""
    data = make_benchmark(tmp_path / "b.json", categories=["物理"], n=2)
    judge = {"class_path": VLLM, "init_args": {"model": "org/judge-7b", "command": FAKE_VLLM, "startup_timeout_s": 60,
                                               "shutdown_timeout_s": 5}}
    cfg = write_config(tmp_path / "c.yaml", data, judge=judge)
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("FAKE_VLLM_STATE", str(tmp_path / "state.json"))
    assert main(["--config", str(cfg), "--output-dir", str(tmp_path / "o"), "--run-name", "ok"]) == 0
    report = json.loads((tmp_path / "o" / "ok" / "report.json").read_text(encoding="utf-8"))
    assert [p["status"] for p in report["pairs"]] == ["scored", "scored"]
    assert report["run"]["model_loads"] == {"editor": 1, "judge": 1}
    assert gone(json.loads((tmp_path / "state.json").read_text())["pid"])
    log_text = (tmp_path / "o" / "ok" / "logs" / "run.log").read_text(encoding="utf-8")
    assert "judge server: INFO fake vllm: serving org/judge-7b" in log_text  # the server's output is in the run log

    (tmp_path / "state.json").unlink()
    script = tmp_path / "interrupt.py"
    script.write_text(textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(REPO)!r})
        from src.models.reward.implementations.vllm_server import VLLMServerRewardModel
        judge = VLLMServerRewardModel(model="org/judge-7b", command={FAKE_VLLM!r}, startup_timeout_s=60,
                                      shutdown_timeout_s=5)
        judge.load()
        print("READY", flush=True)
        time.sleep(120)  # interrupted here; nothing releases the judge explicitly
    """))
    for sig in (signal.SIGINT, signal.SIGKILL):  # Ctrl-C: atexit stops it; kill -9: PR_SET_PDEATHSIG does
        child = subprocess.Popen([sys.executable, str(script)], env=dict(os.environ), stdout=subprocess.PIPE,
                                 text=True)
        try:
            assert child.stdout.readline().strip() == "READY"
            pid = json.loads((tmp_path / "state.json").read_text())["pid"]
            assert not gone(pid)
            child.send_signal(sig)
            child.wait(timeout=30)
        finally:
            child.kill()
            child.stdout.close()
        deadline = time.monotonic() + 10
        while not gone(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert gone(pid), f"the judge server outlived its parent after {sig.name}"
