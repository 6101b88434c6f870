"""OpenAICompatibleRewardModel against a scripted chat-completions server on 127.0.0.1, and the
shared chat scoring loop (`src.models.reward.chat`). No other network address is used."""

from __future__ import annotations

import base64
import inspect
import io
import json
import logging
import random
import socket
import time

import pytest
from PIL import Image

from src.models.base import JudgePrompt, ModelError, ScoreRequest
from src.models.reward.chat import (
    RETRY_INSTRUCTION,
    ChatFailure,
    ChatReply,
    conversation,
    score_by_chat,
    without_images,
)
from src.models.reward.implementations.openai_compatible import (
    OpenAICompatibleRewardModel,
    image_data_url,
    parse_retry_after,
)
from tests.openai_server import Reply, ScriptedOpenAIServer, error, ok

KEY_ENV = "IEB_TEST_JUDGE_KEY"
SECRET = "sk-test-5f0c1e9a7b3d4c2e"
CLASS_PATH = "src.models.reward.implementations.openai_compatible.OpenAICompatibleRewardModel"


def noisy_image(seed: int, size=(20, 14)) -> Image.Image:
    rng = random.Random(seed)
    return Image.frombytes("RGB", size, bytes(rng.randrange(256) for _ in range(size[0] * size[1] * 3)))


def make_request(i: int, system: str = "You judge image edits.") -> ScoreRequest:
    prompt = JudgePrompt(system=system, user=f"Rate edit pair-{i} from 0 to 10.", template="t", template_hash="h")
    return ScoreRequest(pair_id=f"p{i}", category="cat", original=noisy_image(2 * i), edited=noisy_image(2 * i + 1),
                        instruction="make it red", description=None, prompt=prompt)


@pytest.fixture
def server(monkeypatch):
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv(KEY_ENV, SECRET)
    srv = ScriptedOpenAIServer().start()
    yield srv
    srv.stop()


@pytest.fixture
def make_judge(server):
    judges = []

    def make(**kwargs) -> OpenAICompatibleRewardModel:
        args = dict(model="test-judge", base_url=server.base_url, api_key_env=KEY_ENV, backoff_s=0.01,
                    timeout_s=5.0)
        args.update(kwargs)
        judge = OpenAICompatibleRewardModel(**args)
        judge.load()
        judges.append(judge)
        return judge

    yield make
    for judge in judges:
        judge.release()


def decode_data_url(url: str) -> Image.Image:
    head, b64 = url.split(",", 1)
    assert head == "data:image/png;base64"
    return Image.open(io.BytesIO(base64.b64decode(b64)))


# ============================================================================ the shared chat loop


def test_conversation_shape_and_retry_turns():
    req = make_request(0)
    msgs = conversation(req, [])
    assert msgs[0] == {"role": "system", "content": "You judge image edits."}
    assert msgs[1]["role"] == "user"
    assert msgs[1]["content"][0] == {"type": "image", "image": req.original}
    assert msgs[1]["content"][1] == {"type": "image", "image": req.edited}
    assert msgs[1]["content"][2] == {"type": "text", "text": req.prompt.user}
    again = conversation(req, ["bad 1", "bad 2"])
    assert [m["role"] for m in again] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert again[2]["content"] == "bad 1" and again[3]["content"] == RETRY_INSTRUCTION
    assert conversation(make_request(0, system=""), [])[0]["role"] == "user"  # empty system left out
    stripped = without_images(msgs)
    assert stripped[1]["content"][:2] == [{"type": "image"}, {"type": "image"}]
    assert msgs[1]["content"][0]["image"] is req.original  # the input is not modified


def test_score_by_chat_retries_only_unparseable():
    requests = [make_request(i) for i in range(3)]
    script = {0: ['{"score": 8}'], 1: ["no idea", "still no", '{"score": 3, "reasoning": "meh"}'],
              2: ["nothing", "nothing", "nothing"]}
    batches = []

    def chat(convs):
        batches.append(len(convs))
        out = []
        for conv in convs:
            i = int(conv[1]["content"][2]["text"].split("pair-")[1].split()[0])
            n_failed = sum(1 for m in conv if m["role"] == "assistant")
            out.append(script[i][n_failed])
        return out

    res = score_by_chat(requests, chat, max_retries=2)
    assert batches == [3, 2, 2]  # one call per round, only the pending ones (0 is done after round 1)
    assert (res[0].status, res[0].score, res[0].attempts) == ("scored", 8.0, 1)
    assert (res[1].status, res[1].score, res[1].attempts, res[1].reasoning) == ("scored", 3.0, 3, "meh")
    assert res[2].status == "score_failed" and res[2].score is None and res[2].attempts == 3
    assert res[2].raw_reply == "nothing" and res[2].error.startswith("could not parse a 0-10 score")


def test_score_by_chat_exceptions_and_details():
    requests = [make_request(i) for i in range(3)]
    rounds = iter([
        [ChatReply("hmm", {"usage": {"total_tokens": 1}}), RuntimeError("socket closed"),
         ChatFailure("the judge refused: no", raw_reply="no", details={"finish_reason": "stop"})],
        [ChatReply('{"score": 5}', {"usage": {"total_tokens": 2}})],
    ])
    res = score_by_chat(requests, lambda convs: next(rounds), max_retries=3)
    assert res[0].status == "scored" and res[0].attempts == 2
    assert res[0].details["usage"] == {"total_tokens": 2}
    assert res[0].details["previous"] == [{"usage": {"total_tokens": 1}}]
    assert res[1].status == "score_failed" and res[1].raw_reply is None
    assert res[1].error == "RuntimeError: socket closed" and res[1].attempts == 1
    assert res[2].status == "score_failed" and res[2].raw_reply == "no"
    assert res[2].error == "the judge refused: no"
    assert res[2].details == {"finish_reason": "stop", "protocol": "category_0to10"}
    with pytest.raises(RuntimeError, match="2 replies for 1"):
        score_by_chat(requests[:1], lambda convs: ["a", "b"], max_retries=0)


# ============================================================================ the HTTP judge


def test_signature_and_config_loader():
    from src.config import resolve_component

    params = inspect.signature(OpenAICompatibleRewardModel.__init__).parameters
    for name, p in params.items():
        if name != "self":
            assert p.default is not inspect.Parameter.empty, name
    assert params["base_url"].default == "http://127.0.0.1:8000/v1"
    assert params["api_key_env"].default == "OPENAI_API_KEY"
    assert params["max_concurrency"].default == 8 and params["transport_retries"].default == 4
    spec = resolve_component("reward_model", {"class_path": CLASS_PATH, "init_args": {
        "model": "Qwen/Qwen3-VL-30B-A3B-Instruct", "max_concurrency": 4, "seed": None}}, "test.yaml")
    judge = spec.build()
    assert judge.model_name == "Qwen/Qwen3-VL-30B-A3B-Instruct" and judge.max_concurrency == 4
    assert spec.init_args["api_key_env"] == "OPENAI_API_KEY"


def test_check_needs_no_gpu_and_needs_a_model():
    judge = OpenAICompatibleRewardModel(model="m", device="cuda", dtype="float16", preflight=False)
    judge.check()  # a remote judge: no CUDA needed
    with pytest.raises(ModelError, match="served model name"):
        OpenAICompatibleRewardModel().check()
    with pytest.raises(ModelError):
        OpenAICompatibleRewardModel(model="m", max_concurrency=0)
    with pytest.raises(ModelError):
        OpenAICompatibleRewardModel(model="m", image_format="bmp")
    with pytest.raises(ModelError, match="before load"):
        judge.score([make_request(0)])


def test_valid_reply_and_what_is_sent(server, make_judge):
    server.push(ok('{"score": 7, "reasoning": "follows the instruction"}'))
    judge = make_judge(seed=123, temperature=0.0, max_tokens=64, device="cuda")
    assert judge.device == "remote" and not judge.on_gpu
    req = make_request(0)
    (res,) = judge.score([req])
    assert res.status == "scored" and res.score == 7.0 and res.attempts == 1
    assert res.reasoning == "follows the instruction"
    assert res.details["usage"] == {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}
    assert res.details["finish_reason"] == "stop" and res.details["transport_attempts"] == 1
    assert res.details["parse_method"] == "json"
    json.dumps(res.details)  # stored as JSON by the pipeline

    (sent,) = server.requests
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {SECRET}"
    body = sent.body
    assert body["model"] == "test-judge" and body["seed"] == 123 and body["temperature"] == 0.0
    assert body["max_tokens"] == 64
    assert body["messages"][0] == {"role": "system", "content": "You judge image edits."}
    parts = body["messages"][1]["content"]
    assert [p["type"] for p in parts] == ["image_url", "image_url", "text"]
    assert parts[2]["text"] == req.prompt.user
    for part, image in zip(parts[:2], (req.original, req.edited)):
        assert part["image_url"]["url"].startswith("data:image/png;base64,")
        decoded = decode_data_url(part["image_url"]["url"])
        assert decoded.size == image.size and decoded.convert("RGB").tobytes() == image.tobytes()


def test_parse_retry_extends_conversation(server, make_judge):
    server.push(ok("The edit looks fine to me."), ok('{"score": 4, "reasoning": "ok"}'))
    (res,) = make_judge(max_retries=2).score([make_request(0)])
    assert res.status == "scored" and res.score == 4.0 and res.attempts == 2
    assert len(server.requests) == 2
    msgs = server.requests[1].body["messages"]
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user"]
    assert msgs[2]["content"] == "The edit looks fine to me." and msgs[3]["content"] == RETRY_INSTRUCTION
    assert msgs[1]["content"][0]["image_url"]["url"].startswith("data:image/png;base64,")
    assert res.details["previous"][0]["transport_attempts"] == 1


def test_parse_failure_keeps_last_reply(server, make_judge):
    server.push(ok("no score here"))
    (res,) = make_judge(max_retries=1).score([make_request(0)])
    assert res.status == "score_failed" and res.score is None and res.attempts == 2
    assert res.raw_reply == "no score here" and len(server.requests) == 2


def test_500_then_200_is_retried(server, make_judge):
    server.push(error(500, "overloaded"), ok('{"score": 6}'))
    judge = make_judge()
    waits = []
    judge._sleep = lambda s: (waits.append(s), time.sleep(s))
    (res,) = judge.score([make_request(0)])
    assert res.status == "scored" and res.score == 6.0 and res.attempts == 1
    assert res.details["transport_attempts"] == 2 and len(server.requests) == 2
    assert len(waits) == 1 and 0.005 <= waits[0] <= 0.01  # backoff_s * (0.5 .. 1.0)


def test_429_honours_retry_after(server, make_judge):
    server.push(error(429, "slow down", headers={"Retry-After": "0.3"}), ok('{"score": 9}'))
    (res,) = make_judge().score([make_request(0)])
    assert res.status == "scored" and res.details["transport_attempts"] == 2
    first, second = server.requests
    assert second.start - first.start >= 0.3


def test_timeout_then_200(server, make_judge):
    server.push(ok('{"score": 2}', delay=1.0), ok('{"score": 3}'))
    judge = make_judge(timeout_s=0.3)
    t0 = time.monotonic()
    (res,) = judge.score([make_request(0)])
    assert res.status == "scored" and res.score == 3.0 and res.details["transport_attempts"] == 2
    assert time.monotonic() - t0 < 1.0  # did not wait for the slow reply


def test_permanent_500_fails_after_transport_retries(server, make_judge):
    server.push(error(503, "down for maintenance"))
    (res,) = make_judge(transport_retries=3).score([make_request(0)])
    assert res.status == "score_failed" and res.score is None and res.raw_reply is None
    assert len(server.requests) == 4
    assert "503" in res.error and "down for maintenance" in res.error and "4 attempts" in res.error
    assert res.details["transport_attempts"] == 4


@pytest.mark.parametrize("status", [400, 401, 404])
def test_4xx_is_not_retried(server, make_judge, status):
    server.push(error(status, "bad things"))
    (res,) = make_judge().score([make_request(0)])
    assert res.status == "score_failed" and len(server.requests) == 1
    assert res.error == f"HTTP {status}: bad things" and res.details["status"] == status


@pytest.mark.parametrize("reply, raw", [
    (Reply(content=None, refusal="I can't help with that."), "I can't help with that."),
    (Reply(content="partial", finish_reason="content_filter"), "partial"),
    (Reply(content=""), ""),
])
def test_refusals_are_recorded_not_retried(server, make_judge, reply, raw):
    server.push(reply)
    (res,) = make_judge(max_retries=2).score([make_request(0)])
    assert res.status == "score_failed" and res.score is None
    assert res.raw_reply == raw and len(server.requests) == 1
    assert res.details["transport_attempts"] == 1


def test_reply_cut_by_max_tokens_is_truncated_never_parsed(server, make_judge):
    # finish_reason "length": the text holds a parseable score, but the reply did not end: not parsed.
    server.push(Reply(content='{"score": 9, "reasoning": "fine"} and then', finish_reason="length"))
    (res,) = make_judge(max_retries=2).score([make_request(0)])
    assert res.status == "score_failed" and res.score is None
    assert res.error.startswith("truncated:") and res.details["reason"] == "truncated"
    assert res.raw_reply.startswith('{"score": 9') and len(server.requests) == 1


def test_connection_refused_fails_cleanly(server):
    with socket.socket() as s:  # a loopback port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    judge = OpenAICompatibleRewardModel(model="m", base_url=f"http://127.0.0.1:{port}/v1", api_key_env=KEY_ENV,
                                        backoff_s=0.01, transport_retries=2, timeout_s=2.0, preflight=False)
    judge.load()
    (res,) = judge.score([make_request(0)])
    judge.release()
    assert res.status == "score_failed" and "connection error" in res.error
    assert res.details["transport_attempts"] == 3


def test_key_is_never_stored_logged_or_written(server, make_judge, caplog, tmp_path):
    caplog.set_level(logging.DEBUG)
    for name in ("openai", "httpx2", "httpcore2", "httpx", "httpcore"):  # the client libraries' own logs too
        caplog.set_level(logging.DEBUG, logger=name)
    server.push(error(502, f"upstream said key={SECRET}"), error(401, f"Incorrect API key provided: {SECRET}"),
                ok('{"score": 5}'))
    judge = make_judge()
    assert "api_key_env" in vars(judge) and vars(judge)["api_key_env"] == KEY_ENV
    results = judge.score([make_request(0)]) + judge.score([make_request(1)])
    assert server.requests[0].headers["authorization"] == f"Bearer {SECRET}"
    assert results[0].status == "score_failed" and SECRET not in results[0].error  # redacted
    assert "HTTP 401: Incorrect API key provided: ***" == results[0].error
    assert "retry 1/4" in caplog.text and "upstream said key=***" in caplog.text
    out = tmp_path / "dump.json"
    out.write_text(json.dumps({"init": {k: v for k, v in vars(judge).items() if not k.startswith("_")},
                               "results": [vars(r) for r in results]}, default=str))
    for text in (repr(judge), str(judge), repr(vars(judge)), caplog.text, out.read_text(), repr(results)):
        assert SECRET not in text
    from src.config import resolve_component

    spec = resolve_component("reward_model", {"class_path": CLASS_PATH, "init_args": {
        "model": "m", "api_key_env": KEY_ENV}}, "t.yaml")
    assert SECRET not in json.dumps(spec.to_dict())


@pytest.mark.parametrize("env", ["unset", None])
def test_placeholder_key_when_env_missing(server, make_judge, monkeypatch, env):
    monkeypatch.delenv(KEY_ENV, raising=False)
    server.push(ok('{"score": 1}'))
    judge = make_judge(api_key_env=KEY_ENV if env == "unset" else None)
    assert judge.score([make_request(0)])[0].status == "scored"
    assert server.requests[0].headers["authorization"] == "Bearer EMPTY"


def test_concurrency_is_bounded_and_order_kept(server, make_judge):
    server.by_key = {f"pair-{i}": [ok(f'{{"score": {i}}}', delay=0.2)] for i in range(8)}
    judge = make_judge(max_concurrency=4, batch_size=8)
    t0 = time.monotonic()
    results = judge.score([make_request(i) for i in range(8)])
    elapsed = time.monotonic() - t0
    assert [r.score for r in results] == [float(i) for i in range(8)]
    assert len(server.requests) == 8
    assert server.max_in_flight <= 4
    assert server.max_in_flight >= 2  # it did run in parallel
    assert elapsed < 1.2, elapsed  # serial would be 1.6 s; 4-wide is ~0.4 s


def test_backoff_is_seeded_capped_and_parses_retry_after():
    a = OpenAICompatibleRewardModel(model="m", seed=5, backoff_s=1.0, max_backoff_s=3.0)
    b = OpenAICompatibleRewardModel(model="m", seed=5, backoff_s=1.0, max_backoff_s=3.0)
    da = [a.backoff_delay(k) for k in range(1, 6)]
    assert da == [b.backoff_delay(k) for k in range(1, 6)]
    assert 0.5 <= da[0] <= 1.0 and 1.0 <= da[1] <= 2.0 and all(d <= 3.0 for d in da)
    assert a.backoff_delay(1, retry_after=2.5) == 2.5 and a.backoff_delay(1, retry_after=100) == 3.0
    assert parse_retry_after({"retry-after": "2"}) == 2.0
    assert parse_retry_after({"retry-after-ms": "250"}) == 0.25
    assert parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0  # in the past
    assert parse_retry_after({}) is None


def test_image_formats():
    img = noisy_image(1)
    assert image_data_url(img, "jpeg").startswith("data:image/jpeg;base64,")
    webp = image_data_url(img, "webp")
    assert Image.open(io.BytesIO(base64.b64decode(webp.split(",", 1)[1]))).convert("RGB").tobytes() == img.tobytes()
