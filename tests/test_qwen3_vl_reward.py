"""Qwen3VLRewardModel on the tiny random-weight Qwen3-VL checkpoints (dense and MoE), CPU only."""

from __future__ import annotations

import inspect

import pytest
from PIL import Image

from src.models.base import JudgePrompt, ModelError, ScoreRequest
from src.models.reward.implementations.qwen3_vl_reward import (
    LOGITS_PREFIX,
    RETRY_INSTRUCTION,
    Qwen3VLRewardModel,
)
from src.models.tiny import resolve_model_path

ARCHS = ["tiny:qwen3-vl", "tiny:qwen3-vl-moe"]


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory):
    cache = tmp_path_factory.mktemp("ieb-cache")
    for arch in ARCHS:
        resolve_model_path(arch, cache_dir=str(cache))
    return str(cache)


def make_request(i: int) -> ScoreRequest:
    # Different image sizes and prompt lengths, so a batch needs (left) padding.
    original = Image.new("RGB", (48, 40), (20 * i, 120, 40))
    edited = Image.new("RGB", (32 + 8 * i, 48), (200, 30 * i, 10))
    prompt = JudgePrompt(system="You judge image edits.", user="Rate the edit from 0 to 10." + " Really." * (3 * i),
                         template="t", template_hash="h")
    return ScoreRequest(pair_id=f"p{i}", category="cat", original=original, edited=edited,
                        instruction="make it red", description=None, prompt=prompt)


def make_model(cache: str, **kwargs) -> Qwen3VLRewardModel:
    args = dict(model_name="tiny:qwen3-vl", device="cpu", dtype="float32", max_new_tokens=6, cache_dir=cache)
    args.update(kwargs)
    model = Qwen3VLRewardModel(**args)
    model.load()
    return model


def test_signature_defaults():
    params = inspect.signature(Qwen3VLRewardModel.__init__).parameters
    assert params["model_name"].default == "Qwen/Qwen3-VL-8B-Instruct"
    assert params["scoring"].default == "generate"
    assert params["max_new_tokens"].default == 512
    assert params["max_retries"].default == 2
    assert params["min_pixels"].default is None and params["max_pixels"].default is None


@pytest.mark.parametrize("arch", ARCHS)
def test_logits_mode_scores(tiny_cache, arch):
    model = make_model(tiny_cache, model_name=arch, scoring="logits", batch_size=2)
    expected_class = "Qwen3VLMoeForConditionalGeneration" if arch.endswith("moe") else "Qwen3VLForConditionalGeneration"
    assert type(model.model).__name__ == expected_class
    assert not hasattr(model.processor, "video_processor")
    results = model.score([make_request(0), make_request(1)])
    assert len(results) == 2
    for r in results:
        assert r.status == "scored", r.error
        assert 0.0 <= r.score <= 10.0
        assert r.raw_reply is None
        dist = r.details["distribution"]
        assert list(dist) == [str(k) for k in range(11)]
        assert sum(dist.values()) == pytest.approx(1.0, abs=1e-9)
        assert all(v >= 0 for v in dist.values())
        assert 0.0 < r.details["mass"] <= 1.0
        assert r.score == pytest.approx(sum(int(k) * v for k, v in dist.items()))
    model.release()
    assert model.model is None and model.processor is None


@pytest.mark.parametrize("arch", ARCHS)
def test_logits_deterministic_and_batch_equals_single(tiny_cache, arch):
    requests = [make_request(i) for i in range(3)]
    batched = make_model(tiny_cache, model_name=arch, scoring="logits", batch_size=3)
    first = batched.score(requests)
    again = batched.score(requests)
    assert [r.score for r in first] == [r.score for r in again]
    single = make_model(tiny_cache, model_name=arch, scoring="logits", batch_size=1)
    one_by_one = single.score(requests)
    for b, s in zip(first, one_by_one):
        assert b.score == pytest.approx(s.score, abs=1e-4)
        for k in b.details["distribution"]:
            assert b.details["distribution"][k] == pytest.approx(s.details["distribution"][k], abs=1e-5)


def test_logits_prompt_ends_with_forced_prefix(tiny_cache):
    model = make_model(tiny_cache, scoring="logits")
    text = model._prompt_text(make_request(0))
    assert text.endswith("<|im_start|>assistant\n")
    assert LOGITS_PREFIX == '{"score": '


def test_generate_random_model_fails_after_retries(tiny_cache):
    model = make_model(tiny_cache, scoring="generate", max_retries=2, batch_size=2)
    results = model.score([make_request(0), make_request(1)])
    for r in results:
        assert r.status == "score_failed" and r.score is None
        assert isinstance(r.raw_reply, str)
        assert r.attempts == 3
        assert r.error.startswith("could not parse a 0-10 score")


def test_generate_valid_reply_is_scored(tiny_cache, monkeypatch):
    model = make_model(tiny_cache, scoring="generate", batch_size=2)
    monkeypatch.setattr(model, "_decode_replies",
                        lambda tokens: ['{"score": 7, "reasoning": "follows the instruction"}'] * len(tokens))
    results = model.score([make_request(0), make_request(1)])
    for r in results:
        assert r.status == "scored"
        assert r.score == 7.0
        assert r.reasoning == "follows the instruction"
        assert r.attempts == 1
        assert r.raw_reply == '{"score": 7, "reasoning": "follows the instruction"}'


def test_generate_retry_adds_corrective_turn(tiny_cache, monkeypatch):
    model = make_model(tiny_cache, scoring="generate", max_retries=2)
    replies = iter(["I think it is fine", '<think>hmm</think>{"score": 4, "reasoning": "ok"}'])
    monkeypatch.setattr(model, "_decode_replies", lambda tokens: [next(replies) for _ in range(len(tokens))])
    prompts = []
    original = model._prompt_text

    def record(request, history=None):
        text = original(request, history)
        prompts.append(text)
        return text

    monkeypatch.setattr(model, "_prompt_text", record)
    (result,) = model.score([make_request(0)])
    assert result.status == "scored" and result.score == 4.0 and result.attempts == 2
    assert RETRY_INSTRUCTION not in prompts[0]
    assert "I think it is fine" in prompts[1] and RETRY_INSTRUCTION in prompts[1]


def test_batch_exception_falls_back_to_single(tiny_cache, monkeypatch):
    model = make_model(tiny_cache, scoring="logits", batch_size=3)
    real = model._score_batch

    def flaky(requests):
        if len(requests) > 1 or requests[0].pair_id == "p1":
            raise RuntimeError("boom")
        return real(requests)

    monkeypatch.setattr(model, "_score_batch", flaky)
    results = model.score([make_request(i) for i in range(3)])
    assert [r.status for r in results] == ["scored", "score_failed", "scored"]
    assert results[1].score is None and "boom" in results[1].error


def test_pixel_budget_is_passed_to_image_processor(tiny_cache):
    small = make_model(tiny_cache, scoring="logits", max_pixels=16 * 16)
    req = make_request(1)
    inputs = small._encode([small._prompt_text(req)], [req])
    assert inputs["image_grid_thw"].prod(dim=-1).tolist() == [4, 4]  # 2x2 patches each = 1 token


def test_invalid_arguments():
    with pytest.raises(ModelError):
        Qwen3VLRewardModel(scoring="sample")
    with pytest.raises(ModelError):
        Qwen3VLRewardModel(max_retries=-1)
    with pytest.raises(ModelError):
        Qwen3VLRewardModel(min_pixels=100, max_pixels=10)


def test_cuda_without_gpu_is_a_model_error(tiny_cache):
    import torch

    if torch.cuda.is_available():
        pytest.skip("machine has a GPU")
    model = Qwen3VLRewardModel(model_name="tiny:qwen3-vl", device="cuda", dtype="float32", cache_dir=tiny_cache)
    with pytest.raises(ModelError):
        model.check()
    with pytest.raises(ModelError):
        model.load()
