"""Judge protocols: golden parsing cases, hand-computed formulas, and a served judge end to end."""

import json
import math
from pathlib import Path

import pytest

from src.cli import main
from src.models.base import JudgePrompt, ScoreRequest
from src.models.reward.chat import score_with_protocol
from src.scoring.parse import ScoreParseError
from src.scoring.protocols import PROTOCOLS, ProtocolError, get_protocol, parse_values
from tests.conftest import make_benchmark, write_config
from tests.openai_server import Reply, ScriptedOpenAIServer, user_text_and_images
from tests.test_pipeline import report_of

GOLDEN = json.loads((Path(__file__).parent / "golden" / "protocol_cases.json").read_text(encoding="utf-8"))
QUERIES = {"sc": PROTOCOLS["viescore"].queries[0], "pq": PROTOCOLS["viescore"].queries[1],
           "rubric": PROTOCOLS["rubric_1to5"].queries[0],
           **{f"{p}_{q.name}": q for p in ("kris", "rise", "imgedit") for q in PROTOCOLS[p].queries}}


@pytest.mark.parametrize("case", GOLDEN, ids=[f"{i}-{c['query']}" for i, c in enumerate(GOLDEN)])
def test_golden_replies(case):
    query = QUERIES[case["query"]]
    if "values" in case:
        assert parse_values(case["reply"], query).values == {k: float(v) for k, v in case["values"].items()}
    else:
        with pytest.raises(ScoreParseError) as e:
            parse_values(case["reply"], query)
        assert case["error"] in e.value.message


def test_viescore_formula_by_hand():
    combine = PROTOCOLS["viescore"].combine
    dims = combine({"sc.editing_success": 8, "sc.over_editing": 6, "pq.naturalness": 9, "pq.artifacts": 4})
    assert dims["SC"] == 6 and dims["PQ"] == 4
    assert dims["overall"] == pytest.approx(math.sqrt(24))  # 4.898979...
    assert combine({"sc.editing_success": 0, "sc.over_editing": 10, "pq.naturalness": 10,
                    "pq.artifacts": 10})["overall"] == 0


def test_rubric_formula_by_hand():
    dims = PROTOCOLS["rubric_1to5"].combine({"rubric.instruction_following": 4, "rubric.consistency": 5,
                                            "rubric.quality": 3})
    assert dims["overall"] == 4 and dims["overall_0to100"] == 75
    dims = PROTOCOLS["rubric_1to5_knowledge"].combine({"rubric.instruction_following": 1, "rubric.consistency": 2,
                                                      "rubric.quality": 2, "rubric.knowledge": 1})
    assert dims["overall"] == 1.5 and dims["overall_0to100"] == 12.5


def test_unknown_protocol_teaches():
    with pytest.raises(ProtocolError, match="did you mean 'viescore'"):
        get_protocol("viescor")


def _request(i, original, edited):
    return ScoreRequest(pair_id=f"p{i}", category="物理", original=original, edited=edited, instruction=f"edit {i}",
                        description=None, prompt=JudgePrompt("sys", f"user {i}", "default", "h"))


def test_protocol_queries_images_retries_and_failure(tmp_path):
    from PIL import Image

    original, edited = Image.new("RGB", (8, 8), "red"), Image.new("RGB", (8, 8), "blue")
    seen = []

    def chat(conversations):
        out = []
        for conv in conversations:
            user = conv[1 if conv[0]["role"] == "system" else 0]
            images = [p["image"] for p in user["content"] if p["type"] == "image"]
            text = user["content"][-1]["text"]
            seen.append((len(images), "naturalness" in text, len(conv)))
            if "p1" in str([m for m in conv]) or "edit 1" in text:
                out.append("no idea")  # the SC reply of p1 never parses
            elif "naturalness" in text:
                out.append('{"score": [9, 4]}' if len(conv) > 2 else "garbled")  # PQ parses on retry
            else:
                out.append('{"score": [8, 6], "reasoning": "fine"}')
        return out

    results = score_with_protocol(PROTOCOLS["viescore"], [_request(0, original, edited), _request(1, original, edited)],
                                  chat, max_retries=1)
    ok, failed = results
    assert ok.status == "scored" and ok.score == pytest.approx(math.sqrt(6 * 4))
    assert ok.details["dimensions"] == {"editing_success": 8, "over_editing": 6, "naturalness": 9, "artifacts": 4,
                                        "SC": 6, "PQ": 4}
    assert ok.details["queries"]["pq"]["attempts"] == 2
    assert "[sc]" in ok.raw_reply and "[pq]" in ok.raw_reply
    assert failed.status == "score_failed" and failed.score is None
    assert failed.error.startswith("sc: could not parse editing_success, over_editing")
    assert "no idea" in failed.raw_reply
    # SC sees both images; PQ sees the edited image only
    assert (2, False, 2) in seen and (1, True, 2) in seen


@pytest.fixture
def served(monkeypatch):
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("TEST_JUDGE_KEY", "sk-test-not-a-real-key")
    srv = ScriptedOpenAIServer().start()
    yield srv
    srv.stop()


def test_viescore_through_the_pipeline_with_a_served_judge(tmp_path, served):
    """Scripted SC / PQ replies per pair -> the report's numbers equal hand-computed GEdit numbers."""
    scripted = {"0-0": ([8, 6], [9, 4]), "0-1": ([10, 10], [10, 9]), "1-0": ([3, 7], [8, 8])}

    def reply(body):
        text, n_images = user_text_and_images(body)
        for pid, (sc, pq) in scripted.items():
            if n_images == 2 and f"{['物理', '环境'][int(pid[0])]} 编辑 {pid[-1]}" in text:
                return Reply(content=json.dumps({"reasoning": "r", "score": sc}))
        if n_images == 1:  # the PQ prompt holds no instruction: answer from a queue in plan order
            return Reply(content=json.dumps({"reasoning": "r", "score": pq_queue.pop(0)}))
        return Reply(content="I cannot judge this.")

    pq_queue = []
    data = make_benchmark(tmp_path / "b.json", categories=["物理", "环境"], n=2)
    judge = {"class_path": "src.models.reward.implementations.openai_compatible.OpenAICompatibleRewardModel",
             "init_args": {"model": "test-judge", "base_url": served.base_url, "api_key_env": "TEST_JUDGE_KEY",
                           "protocol": "viescore", "max_retries": 0, "backoff_s": 0.01, "batch_size": 1,
                           "max_concurrency": 1}}
    cfg = write_config(tmp_path / "c.yaml", data, judge=judge)
    # with batch_size 1 the judge asks SC then PQ for each pair in plan order
    order = ["0-0", "0-1", "1-0", "1-1"]
    pq_queue.extend([scripted[p][1] for p in order if p in scripted] + [[5, 5]])
    served.handler = reply
    assert main(["--config", str(cfg), "--run-name", "v"]) == 0
    report = report_of(tmp_path / "outputs" / "v")
    by_id = {p["pair_id"]: p for p in report["pairs"]}
    assert by_id["0-0"]["score"] == pytest.approx(math.sqrt(min(8, 6) * min(9, 4)))
    assert by_id["0-1"]["score"] == pytest.approx(math.sqrt(10 * 9))
    assert by_id["1-0"]["score"] == pytest.approx(math.sqrt(3 * 8))
    assert by_id["1-1"]["status"] == "score_failed" and by_id["1-1"]["score"] is None
    assert "I cannot judge this." in by_id["1-1"]["judge_raw_reply"]
    assert by_id["0-0"]["dimensions"]["SC"] == 6 and by_id["0-0"]["template"] == "viescore_sc+viescore_pq"
    phys = report["categories"]["物理"]
    assert phys["mean"] == pytest.approx((math.sqrt(24) + math.sqrt(90)) / 2)
    assert phys["dimensions"]["SC"]["mean"] == pytest.approx(8)
    assert report["categories"]["环境"]["judge_coverage"] == 0.5
    md = (tmp_path / "outputs" / "v" / "report.md").read_text(encoding="utf-8")
    assert "SC" in md and "naturalness" in md
    assert "sk-test-not-a-real-key" not in "".join(p.read_text(errors="ignore") for p in
                                                   (tmp_path / "outputs" / "v").rglob("*") if p.is_file()
                                                   and p.suffix in (".json", ".md", ".html", ".yaml", ".log"))


def test_num_pass_self_ensembling_with_a_served_judge(served):
    from PIL import Image

    from src.models.reward.implementations.openai_compatible import OpenAICompatibleRewardModel

    replies = {0: '{"score": [8, 6]}', 1: '{"score": [6, 6]}', 2: '{"score": [10, 8]}'}
    pq = '{"score": [9, 9]}'

    def reply(body):
        if user_text_and_images(body)[1] == 1:
            return Reply(content=pq)
        return Reply(content=replies[body["seed"] - 100])

    served.handler = reply
    judge = OpenAICompatibleRewardModel(model="test-judge", base_url=served.base_url, api_key_env="TEST_JUDGE_KEY",
                                        protocol="viescore", num_pass=3, temperature=0.7, seed=100, backoff_s=0.01)
    judge.load()
    try:
        image = Image.new("RGB", (8, 8), "red")
        (result,) = judge.score([_request(0, image, image)])
    finally:
        judge.release()
    per_pass = [math.sqrt(6 * 9), math.sqrt(6 * 9), math.sqrt(8 * 9)]
    assert result.status == "scored" and result.score == pytest.approx(sum(per_pass) / 3)
    assert [p["score"] for p in result.details["passes"]] == pytest.approx(per_pass)
    assert result.details["dimensions"]["SC"] == pytest.approx((6 + 6 + 8) / 3)
    with pytest.raises(Exception, match="temperature > 0"):
        OpenAICompatibleRewardModel(model="j", num_pass=2, temperature=0.0)
