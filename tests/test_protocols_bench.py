"""Per-benchmark protocols (kris, rise, imgedit): which queries each kind of pair gets, the official
formulas computed by hand, replies in the official formats, several protocols in one run, and a
served judge end to end (KRIS: the reference image and the explanation reach the judge)."""

from __future__ import annotations

import json
import re

import pytest

from src.cli import main
from src.scoring.parse import ScoreParseError
from src.scoring.protocols import (PROTOCOLS, PairContext, ProtocolError, ProtocolSet, parse_values,
                                   resolve_protocols, resolve_roles)
from tests.conftest import make_benchmark, png_b64, write_config
from tests.openai_server import Reply, user_text_and_images
from tests.test_pipeline import report_of
from tests.test_protocols import served  # noqa: F401  (fixture)
from tests.test_transformers_vlm import tiny_cache  # noqa: F401  (fixture)

KRIS, RISE, IMGEDIT = PROTOCOLS["kris"], PROTOCOLS["rise"], PROTOCOLS["imgedit"]


def names(protocol, category, metadata=None, roles=()):
    return [q.name for q in protocol.queries_for(PairContext(category, metadata or {}, tuple(roles)))]


def test_kris_queries_per_task():
    assert names(KRIS, "count_change") == ["consistency", "instruction", "quality"]
    assert names(KRIS, "Biology") == ["consistency", "knowledge", "quality"]  # knowledge: one dual query
    assert names(KRIS, "anomaly_correction") == ["consistency", "instruction_explained", "quality"]
    assert names(KRIS, "viewpoint_change", roles=("reference",)) == ["consistency", "instruction_viewpoint", "quality"]
    assert names(KRIS, "my group", {"task": "multi-element_composition"}) == ["consistency_multi", "instruction_multi",
                                                                              "quality"]
    assert names(KRIS, "temporal_prediction") == ["consistency_temporal", "instruction_temporal", "quality"]
    with pytest.raises(ProtocolError, match="not a KRIS-Bench task"):
        names(KRIS, "物理")
    quality = next(q for q in KRIS.queries if q.name == "quality")
    assert quality.images == ("edited",)  # quality on the edited image alone


def test_rise_queries_follow_the_official_branches():
    assert names(RISE, "temporal_reasoning") == ["consistency", "reasoning", "appearance"]
    assert names(RISE, "causal_reasoning", {"reasoning_img": True}) == ["consistency", "reasoning_with_input",
                                                                       "appearance"]
    assert names(RISE, "spatial_reasoning", roles=("reference",)) == ["consistency_spatial_ref", "reasoning_ref_image",
                                                                     "appearance_spatial"]
    assert names(RISE, "x", {"category": "spatial_reasoning", "consistency_free": True}) == ["reasoning_spatial",
                                                                                            "appearance_spatial"]
    assert names(RISE, "logical_reasoning", {"reference_txt": "B"}) == ["consistency_logical", "reasoning_logical"]
    assert names(RISE, "logical_reasoning", roles=("reference",)) == ["consistency_logical_ref",
                                                                      "reasoning_logical_ref"]
    assert names(RISE, "temporal_reasoning", {"consistency_free": float("nan")})[0] == "consistency"  # NaN = absent


def test_imgedit_queries_per_edit_type():
    assert names(IMGEDIT, "anything", {"edit_type": "adjust"}) == ["adjust"]
    assert names(IMGEDIT, "remove") == ["remove"]
    assert names(IMGEDIT, "alter", {"edit_type": "alter"}) == ["adjust"]  # basic_edit.json's name for it
    query = next(q for q in IMGEDIT.queries if q.name == "compose")
    assert query.dims == ("instruction_compliance", "visual_naturalness", "physical_consistency_fine_detail")
    with pytest.raises(ProtocolError, match="edit_type"):
        names(IMGEDIT, "other")


def test_kris_formula_by_hand():
    ctx = PairContext("biology")
    dims = KRIS.combine_for({"consistency.consistency": 4, "knowledge.instruction": 3, "knowledge.knowledge": 2,
                             "quality.quality": 5}, ctx)
    assert dims == {"consistency": 4, "instruction": 3, "knowledge": 2, "quality": 5, "overall": 3.5}
    dims = KRIS.combine_for({"consistency.consistency": 5, "instruction.instruction": 4, "quality.quality": 3}, ctx)
    assert dims["overall"] == 4 and "knowledge" not in dims


def test_rise_formula_by_hand():
    temporal = PairContext("temporal_reasoning")
    # 0.3*4 + 0.5*5 + 0.2*3 = 1.2 + 2.5 + 0.6 = 4.3
    assert RISE.combine_for({"consistency.consistency": 4, "reasoning.reasoning": 5, "appearance.appearance": 3},
                            temporal)["overall"] == pytest.approx(4.3)
    # R = 1: (0.3*5 + 0.5*1 + 0.2*5) * 0.5 = 3.0 * 0.5 = 1.5
    assert RISE.combine_for({"consistency.consistency": 5, "reasoning.reasoning": 1, "appearance.appearance": 5},
                            temporal)["overall"] == pytest.approx(1.5)
    # R = 1, halved below 1 -> 1: (0.3*1 + 0.5*1 + 0.2*1) * 0.5 = 0.5 -> 1
    assert RISE.combine_for({"consistency.consistency": 1, "reasoning.reasoning": 1, "appearance.appearance": 1},
                            temporal)["overall"] == 1
    # consistency-free: 0.2*4 + 0.8*3 = 0.8 + 2.4 = 3.2
    free = PairContext("spatial_reasoning", {"consistency_free": True})
    assert RISE.combine_for({"reasoning.reasoning": 3, "appearance.appearance": 4}, free)["overall"] == pytest.approx(3.2)
    # logical: 0/1 mapped to 1/5; 0.3*5 + 0.7*1 = 2.2, R = 1 -> 1.1
    logical = PairContext("logical_reasoning", {"reference_txt": "7"})
    dims = RISE.combine_for({"consistency_logical.consistency": 1, "reasoning_logical.reasoning": 0}, logical)
    assert dims["consistency"] == 5 and dims["reasoning"] == 1 and dims["overall"] == pytest.approx(1.1)
    dims = RISE.combine_for({"consistency_logical.consistency": 1, "reasoning_logical.reasoning": 1}, logical)
    assert dims["overall"] == 5 and "appearance" not in dims


def test_imgedit_formula_by_hand():
    dims = IMGEDIT.combine_for({"add.prompt_compliance": 4, "add.visual_naturalness": 3,
                                "add.physical_detail_coherence": 3}, PairContext("add"))
    assert dims["overall"] == pytest.approx(10 / 3)  # not rounded to 3.33 in the record


def q(protocol, name):
    return next(x for x in protocol.queries if x.name == name)


@pytest.mark.parametrize("reply, values", [
    ('{"consistency_score": 4, "reasoning": "kept"}', {"consistency": 4}),  # the official KRIS key
    ("Consistency score: 3", {"consistency": 3}),
    ('{"score": 2, "reasoning": "x"}', {"consistency": 2}),
])
def test_single_value_replies(reply, values):
    assert parse_values(reply, q(KRIS, "consistency")).values == values


def test_official_style_replies():
    assert parse_values('{"instruction_score": 4, "knowledge_score": 2, "instruction_reasoning": "a"}',
                        q(KRIS, "knowledge")).values == {"instruction": 4, "knowledge": 2}
    reply = ("Brief reasoning: the lamp is red but a seam shows.\nPrompt Compliance: 4\nVisual Seamlessness: 3\n"
             "Physical & Detail Fidelity: 3")
    assert parse_values(reply, q(IMGEDIT, "adjust")).values == {
        "prompt_compliance": 4, "visual_seamlessness": 3, "physical_detail_fidelity": 3}
    assert parse_values("The answer matches. **Final Score**: 1", q(RISE, "reasoning_logical")).values == {
        "reasoning": 1}
    with pytest.raises(ScoreParseError, match="outside"):
        parse_values("Final Score: 5", q(RISE, "reasoning_logical"))  # logical tasks are 0/1
    with pytest.raises(ScoreParseError, match="lacks a value for physical_detail_fidelity"):
        parse_values("Prompt Compliance: 4\nVisual Seamlessness: 3", q(IMGEDIT, "adjust"))


def test_roles():
    assert resolve_roles(("original", "original_*", "edited"), ["reference", "original_3", "original_2"]) == (
        "original", "original_2", "original_3", "edited")
    assert resolve_roles(("original", "edited", "reference?"), []) == ("original", "edited")
    with pytest.raises(ValueError, match="'reference' image"):
        resolve_roles(("reference", "edited"), ["original_2"])


def test_several_protocols_in_one_run_spec():
    protocols = resolve_protocols({"default": "viescore", "categories": {"biology": "kris"}})
    assert isinstance(protocols, ProtocolSet) and protocols.for_category("biology").name == "kris"
    assert protocols.for_category("物理").name == "viescore"
    with pytest.raises(ProtocolError, match="did you mean 'kris'"):
        resolve_protocols({"categories": {"biology": "kriss"}})
    with pytest.raises(ProtocolError, match="no protocol for category"):
        resolve_protocols({"categories": {"biology": "kris"}}).for_category("x")


def _kris_benchmark(path):
    ref = png_b64((0, 200, 0), (24, 16))
    extra = {
        "viewpoint_change": [{"pair_id": "v1", "original_image_b64": png_b64((200, 0, 0), (24, 16)),
                              "edit_instruction": "show it from above", "named_images_b64": {"reference": ref}}],
        "biology": [{"pair_id": "b1", "original_image_b64": png_b64((0, 0, 200), (24, 16)),
                     "edit_instruction": "show the leaf in autumn", "explain_en": "chlorophyll breaks down: yellow"},
                    {"pair_id": "b2", "original_image_b64": png_b64((0, 90, 200), (24, 16)),
                     "edit_instruction": "show the frog as a tadpole"}],  # no explanation: fails with a clear error
        "count_change": [{"pair_id": "c1", "original_image_b64": png_b64((90, 90, 0), (24, 16)),
                          "edit_instruction": "add two apples"}],
    }
    return make_benchmark(path, categories=[], extra=extra)


def test_kris_through_the_pipeline_with_a_served_judge(tmp_path, served):  # noqa: F811
    seen = []

    def reply(body):
        text, n_images = user_text_and_images(body)
        seen.append((text, n_images))
        if "VISUAL QUALITY" in text:
            return Reply(content='{"score": 5, "reasoning": "clean"}')
        if "CONSISTENCY" in text:
            return Reply(content='{"consistency_score": 4}')  # the official key is read too
        if "knowledge a correct edit relies on" in text:
            return Reply(content='{"instruction": 3, "knowledge": 2, "reasoning": "half"}')
        if "viewpoint" in text:
            return Reply(content="Score: 2")
        return Reply(content='{"score": 4}')

    served.handler = reply
    data = _kris_benchmark(tmp_path / "kris.json")
    judge = {"class_path": "src.models.reward.implementations.openai_compatible.OpenAICompatibleRewardModel",
             "init_args": {"model": "test-judge", "base_url": served.base_url, "api_key_env": "TEST_JUDGE_KEY",
                           "protocol": "kris", "max_retries": 0, "backoff_s": 0.01, "batch_size": 4}}
    cfg = write_config(tmp_path / "c.yaml", data, judge=judge)
    assert main(["--config", str(cfg), "--run-name", "k"]) == 0
    pairs = {p["pair_id"]: p for p in report_of(tmp_path / "outputs" / "k")["pairs"]}
    assert pairs["b1"]["dimensions"] == {"consistency": 4, "instruction": 3, "knowledge": 2, "quality": 5}
    assert pairs["b1"]["score"] == pytest.approx(3.5)
    assert pairs["v1"]["dimensions"] == {"consistency": 4, "instruction": 2, "quality": 5}
    assert pairs["c1"]["score"] == pytest.approx((4 + 4 + 5) / 3)
    assert pairs["b2"]["status"] == "score_failed" and "explain_en" in pairs["b2"]["error"]
    # the explanation reached the knowledge prompt; the viewpoint judge saw the ground truth as a 3rd image
    assert any("chlorophyll breaks down" in t and n == 2 for t, n in seen)
    assert any("viewpoint" in t and n == 3 and "reference image" in t for t, n in seen)
    assert all(n == 1 for t, n in seen if "VISUAL QUALITY" in t)
    assert "kris_quality" in pairs["c1"]["template"]


def test_rise_from_its_own_file_format_with_a_served_judge(tmp_path, served):  # noqa: F811
    """RISEBench's data_total.json + images (the data reader's test layout) -> rise protocol -> official
    per-sample scores by hand; logical pairs see the reference image and are judged 0/1."""
    from tests.test_data_formats import write_rise

    data = write_rise(tmp_path / "rise")
    seen = []

    def reply(body):
        text, n_images = user_text_and_images(body)
        seen.append((text, n_images))
        if "with 0 or 1" in text:
            return Reply(content='{"score": 1}' if "CONSISTENCY" in text else "Final Score: 0")
        if "APPEARANCE" in text:
            return Reply(content='{"score": 4}')
        heating = "Show it after heating." in text
        if "CONSISTENCY" in text:
            return Reply(content='{"score": 5}' if heating else '{"score": 4}')
        return Reply(content='{"score": 1}' if heating else '{"score": 5}')  # reasoning

    served.handler = reply
    judge = {"class_path": "src.models.reward.implementations.openai_compatible.OpenAICompatibleRewardModel",
             "init_args": {"model": "test-judge", "base_url": served.base_url, "api_key_env": "TEST_JUDGE_KEY",
                           "protocol": "rise", "max_retries": 0, "backoff_s": 0.01, "batch_size": 4}}
    cfg = write_config(tmp_path / "c.yaml", data, judge=judge)
    assert main(["--config", str(cfg), "--run-name", "r"]) == 0
    pairs = {p["pair_id"]: p for p in report_of(tmp_path / "outputs" / "r")["pairs"]}
    # temporal: 0.3*4 + 0.5*5 + 0.2*4 = 4.5
    assert pairs["temporal_reasoning_1"]["score"] == pytest.approx(4.5)
    # causal: R = 1 -> (0.3*5 + 0.5*1 + 0.2*4) * 0.5 = 2.8 * 0.5 = 1.4
    assert pairs["causal_reasoning_1"]["score"] == pytest.approx(1.4)
    # logical: consistency 1 -> 5, reasoning 0 -> 1; (0.3*5 + 0.7*1) * 0.5 = 1.1
    logic = pairs["logical_reasoning_1"]
    assert logic["dimensions"] == {"consistency": 5, "reasoning": 1} and logic["score"] == pytest.approx(1.1)
    assert pairs["spatial_reasoning_1"]["status"] == "invalid_input"
    assert any("Rotten, blackened banana." in t and n == 1 for t, n in seen)  # reference text, edited image only
    assert all(n == 2 for t, n in seen if "with 0 or 1" in t)  # reference image + edited


def test_several_protocols_in_one_run_one_judge_load(tmp_path, served):  # noqa: F811
    def reply(body):
        text, _ = user_text_and_images(body)
        if "VISUAL QUALITY" in text or "CONSISTENCY" in text:
            return Reply(content='{"score": 5}')
        if "knowledge a correct edit relies on" in text:
            return Reply(content='{"instruction": 4, "knowledge": 3}')
        return Reply(content='{"score": 7, "reasoning": "category prompt"}')  # the 物理 category's own prompt

    served.handler = reply
    data = make_benchmark(tmp_path / "b.json", categories=["物理"], n=1, extra={
        "biology": [{"pair_id": "b1", "original_image_b64": png_b64((0, 0, 200), (24, 16)),
                     "edit_instruction": "autumn leaf", "explain_en": "chlorophyll breaks down"}]})
    protocol = {"default": "category_0to10", "categories": {"biology": "kris"}}
    judge = {"class_path": "src.models.reward.implementations.openai_compatible.OpenAICompatibleRewardModel",
             "init_args": {"model": "test-judge", "base_url": served.base_url, "api_key_env": "TEST_JUDGE_KEY",
                           "protocol": protocol, "max_retries": 0, "backoff_s": 0.01}}
    cfg = write_config(tmp_path / "c.yaml", data, judge=judge)
    assert main(["--config", str(cfg), "--run-name", "m"]) == 0
    report = report_of(tmp_path / "outputs" / "m")
    pairs = {p["pair_id"]: p for p in report["pairs"]}
    assert pairs["0-0"]["score"] == 7 and pairs["0-0"]["template"] == "physics"
    assert pairs["b1"]["score"] == pytest.approx((5 + 4 + 3 + 5) / 4) and "kris_knowledge" in pairs["b1"]["template"]
    assert sum(i["model_loads"]["judge"] for i in report["run"]["invocations"]) == 1
    # the scoring fingerprint covers the protocol map: another map is another judge
    from src.config import load_config
    from src.data import load_benchmark
    from src.scoring.judging import scoring_setup

    bench = load_benchmark(data)
    first = scoring_setup(load_config(cfg), bench).fingerprint
    judge["init_args"]["protocol"] = {"default": "category_0to10", "categories": {"biology": "rubric_1to5_knowledge"}}
    other = write_config(tmp_path / "d.yaml", data, judge=judge)
    assert scoring_setup(load_config(other), bench).fingerprint != first


def test_only_the_images_a_query_shows_are_decoded():
    from src.scoring.judging import ScoringSetup

    class Pair:
        category, metadata, image_roles = "count_change", {}, ["reference", "original_2"]
        instruction, description, pair_id = "add apples", None, "p"

        def load_named_image(self, role):
            decoded.append(role)
            return role

    decoded = []
    setup = ScoringSetup({}, {}, {}, "fp", PROTOCOLS["category_0to10"])
    assert setup.images_for(Pair()) == {} and decoded == []  # a corrupt unused image can't fail the pair
    setup.protocols = KRIS
    assert setup.images_for(Pair()) == {} and decoded == []  # count_change shows the original and the edit only
    Pair.category = "viewpoint_change"
    assert setup.images_for(Pair()) == {"reference": "reference"} and decoded == ["reference"]
    Pair.category = "multi-element_composition"
    assert setup.images_for(Pair()) == {"original_2": "original_2"}


def _answer_any_query(body):
    """A judge that answers every protocol query of this project in the form the query asks for."""
    text, _ = user_text_and_images(body)
    lines = re.findall(r"^(.+): <1-5>$", text, re.M)
    if lines:  # ImgEdit "Name: N"
        return Reply(content="Reasoning: fine.\n" + "\n".join(f"{name}: 4" for name in lines))
    if '"score": [' in text:
        return Reply(content='{"score": [7, 8], "reasoning": "ok"}')
    if '"knowledge": <1-5>' in text:
        return Reply(content='{"instruction": 4, "knowledge": 3}')
    if "<0 or 1>" in text:
        return Reply(content='{"score": 1}')
    return Reply(content='{"score": 4, "reasoning": "ok"}')


@pytest.mark.parametrize("fmt, protocol", [("gedit", "viescore"), ("kris", "kris"), ("rise", "rise"),
                                           ("imgedit", "imgedit")])
def test_public_formats_run_with_their_protocol(tmp_path, served, public_benchmarks, fmt, protocol):  # noqa: F811
    """Each benchmark in its real layout, its protocol, a served judge: every edited pair is scored and the
    report's benchmark score finds every dimension it needs in the records."""
    served.handler = _answer_any_query
    spec = public_benchmarks[fmt]
    judge = {"class_path": "src.models.reward.implementations.openai_compatible.OpenAICompatibleRewardModel",
             "init_args": {"model": "test-judge", "base_url": served.base_url, "api_key_env": "TEST_JUDGE_KEY",
                           "protocol": protocol, "max_retries": 0, "backoff_s": 0.01, "batch_size": 8}}
    cfg = write_config(tmp_path / "c.yaml", spec["path"], judge=judge)
    sets = ["--set", f"benchmark.image_root={spec['image_root']}"] if spec["image_root"] else []
    assert main(["--config", str(cfg), "--run-name", fmt, *sets]) == 0
    report = report_of(tmp_path / "outputs" / fmt)
    edited = [p for p in report["pairs"] if p["status"] not in ("invalid_input", "edit_failed")]
    # the KRIS fixture has a folder of the user's own ("my_own_task"): the kris protocol can't place it
    unplaced = [p for p in edited if p["status"] == "score_failed" and "not a KRIS-Bench task" in (p["error"] or "")]
    assert edited and all(p["status"] == "scored" for p in edited if p not in unplaced), [p["error"] for p in edited]
    assert len(unplaced) == (1 if fmt == "kris" else 0)
    headline = report["headline"]
    assert headline["format"] == fmt
    assert not [x for x in headline["problems"] if "dimension" in json.dumps(x)], headline["problems"]


def test_tiny_local_judge_gets_every_image_of_a_protocol_query(tiny_cache):  # noqa: F811
    """The transformers judge (tiny random Qwen3-VL) asks the kris queries with the real processor: the
    viewpoint query carries the ground-truth image as a third image, quality the edited image alone; the
    random model's replies don't parse, so the pair fails with every query's raw reply kept."""
    from PIL import Image

    from src.models.base import JudgePrompt, ScoreRequest
    from src.models.reward.implementations.qwen3_vl_reward import Qwen3VLRewardModel

    model = Qwen3VLRewardModel(model_name="tiny:qwen3-vl", device="cpu", dtype="float32", max_new_tokens=4,
                               cache_dir=tiny_cache, protocol="kris", max_retries=0, batch_size=2)
    model.load()
    calls = []

    class Spy:
        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def __call__(self, *args, **kwargs):
            calls.append([len(images) for images in kwargs["images"]])
            return self.inner(*args, **kwargs)

    model.processor = Spy(model.processor)
    try:
        colors = {"original": "red", "edited": "blue", "reference": "green"}
        images = {k: Image.new("RGB", (32, 32), c) for k, c in colors.items()}
        request = ScoreRequest(pair_id="v1", category="viewpoint_change", original=images["original"],
                               edited=images["edited"], instruction="show it from above", description=None,
                               prompt=JudgePrompt("", "", "default", "h"), named_images={"reference": images["reference"]})
        (result,) = model.score([request])
    finally:
        model.release()
    assert sorted(calls) == [[1], [2], [3]]  # quality, consistency, viewpoint instruction (+ ground truth)
    assert result.status == "score_failed" and result.score is None
    assert set(result.details["queries"]) == {"consistency", "instruction_viewpoint", "quality"}
    assert all(q["raw_reply"] is not None for q in result.details["queries"].values())


def test_a_request_without_rendered_prompts_still_refuses_a_missing_explanation():
    from PIL import Image

    from src.models.base import JudgePrompt, ScoreRequest
    from src.models.reward.chat import score_with_protocol

    image = Image.new("RGB", (8, 8), "red")
    request = ScoreRequest(pair_id="b", category="biology", original=image, edited=image, instruction="autumn",
                           description=None, prompt=JudgePrompt("", "", "default", "h"))
    asked = []
    (result,) = score_with_protocol(KRIS, [request], lambda convs: asked.extend(convs) or ['{"score": 4}'] * len(convs),
                                    max_retries=0)
    assert result.status == "score_failed" and "needs the pair's explanation" in result.error
    assert "None" not in " ".join(str(c) for c in asked)  # the knowledge prompt was never sent without it
