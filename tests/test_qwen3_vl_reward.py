"""Qwen3VLRewardModel on the tiny random-weight Qwen3-VL checkpoints (dense and MoE), CPU only.

The judge is the shared HFVLMRewardModel restricted to Qwen3-VL; the checks shared with the general
judge's tests live in tests/test_transformers_vlm.py.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from PIL import Image

from src.models.base import JudgePrompt, ScoreRequest
from src.models.reward import chat
from src.models.reward.hf_vlm import THINKING_MAX_NEW_TOKENS
from src.models.reward.implementations.qwen3_vl_reward import (
    LOGITS_PREFIX,
    RETRY_INSTRUCTION,
    Qwen3VLRewardModel,
)
from src.models.tiny import resolve_model_path
from src.scoring.parse import parse_score
from tests.test_transformers_vlm import (
    all_finished,
    check_truncated_replies_fail,
    check_truncation_follows_eos,
    check_batch_equals_single,
    check_batch_exception_falls_back_to_single,
    check_cuda_without_gpu_is_a_model_error,
    check_invalid_arguments,
    check_logits_results,
    check_pixel_budget,
    check_retry_extends_the_conversation,
    check_unparseable_replies_fail,
    check_valid_reply_is_scored,
)

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
    assert params["max_new_tokens"].default is None  # 512, or 8192 for thinking checkpoints (at load)
    assert params["max_retries"].default == 2
    assert params["min_pixels"].default is None and params["max_pixels"].default == "auto"
    assert params["device_map"].default is None and params["max_memory"].default is None


@pytest.mark.parametrize("arch", ARCHS)
def test_logits_mode_scores(tiny_cache, arch):
    model = make_model(tiny_cache, model_name=arch, scoring="logits", batch_size=2)
    expected_class = "Qwen3VLMoeForConditionalGeneration" if arch.endswith("moe") else "Qwen3VLForConditionalGeneration"
    assert type(model.model).__name__ == expected_class
    assert not hasattr(model.processor, "video_processor")
    check_logits_results(model.score([make_request(0), make_request(1)]), 2)
    model.release()
    assert model.model is None and model.processor is None


@pytest.mark.parametrize("arch", ARCHS)
def test_logits_deterministic_and_batch_equals_single(tiny_cache, arch):
    batched = make_model(tiny_cache, model_name=arch, scoring="logits", batch_size=3)
    single = make_model(tiny_cache, model_name=arch, scoring="logits", batch_size=1)
    check_batch_equals_single(batched, single, [make_request(i) for i in range(3)])


def test_logits_prompt_ends_with_forced_prefix(tiny_cache):
    model = make_model(tiny_cache, scoring="logits")
    text = model._prompt_text(make_request(0))
    assert text.endswith("<|im_start|>assistant\n")
    assert LOGITS_PREFIX == '{"score": '


def test_generate_random_model_fails_after_retries(tiny_cache, monkeypatch):
    model = make_model(tiny_cache, scoring="generate", max_retries=2, batch_size=2)
    check_truncated_replies_fail(model, model.score([make_request(0), make_request(1)]))
    check_truncation_follows_eos(model)
    all_finished(model, monkeypatch)
    check_unparseable_replies_fail(model.score([make_request(0), make_request(1)]), attempts=3)


@pytest.fixture(scope="session")
def thinking_checkpoint(tiny_cache, tmp_path_factory):
    """tiny:qwen3-vl with a Qwen3-VL-Thinking-style generation prompt ("<|im_start|>assistant\n<think>\n");
    the other files are links to the tiny checkpoint's."""
    src = Path(resolve_model_path("tiny:qwen3-vl", cache_dir=tiny_cache))
    out = tmp_path_factory.mktemp("qwen3-vl-thinking")
    for f in src.iterdir():
        if f.name != "chat_template.jinja" and not f.name.startswith("."):
            (out / f.name).symlink_to(f)
    template = (src / "chat_template.jinja").read_text()
    assert "'<|im_start|>assistant\\n'" in template
    (out / "chat_template.jinja").write_text(template.replace("'<|im_start|>assistant\\n'",
                                                              "'<|im_start|>assistant\\n<think>\\n'"))
    return str(out)


def test_thinking_checkpoint_only_the_text_after_think_is_an_answer(thinking_checkpoint, monkeypatch):
    model = make_model(None, model_name=thinking_checkpoint, scoring="generate", max_new_tokens=None, max_retries=0)
    assert model.thinking is True and model.new_tokens == THINKING_MAX_NEW_TOKENS == 8192
    assert model._generation_config.max_new_tokens == 8192
    assert model._prompt_text(make_request(0)).endswith("<think>\n")
    model._generation_config.max_new_tokens = 2  # the replies are substituted below: keep generate() short
    replies = ['The edit looks like {"score": 3} at first.\n</think>\n\n{"score": 8, "reasoning": "red"}',
               'Still thinking: {"score": 9, "reasoning": "premature"}']  # no </think>: no answer
    all_finished(model, monkeypatch)
    it = iter(replies)
    monkeypatch.setattr(model, "_decode_replies", lambda tokens: [next(it) for _ in range(len(tokens))])
    done, open_block = model.score([make_request(0), make_request(1)])
    assert done.status == "scored" and done.score == 8.0 and done.reasoning == "red"
    assert done.raw_reply == "<think>\n" + replies[0]  # the block as the model saw it, opened by the template
    assert open_block.status == "score_failed" and open_block.score is None
    assert open_block.raw_reply == "<think>\n" + replies[1] and "thinking" in open_block.error
    assert parse_score(replies[1]).score == 9.0  # the same text would be an answer without the opened block
    model.release()


def test_thinking_reply_cut_by_max_new_tokens_is_truncated(thinking_checkpoint):
    # The random model never closes its thinking block within 5 tokens: truncated, whatever it says.
    model = make_model(None, model_name=thinking_checkpoint, scoring="generate", max_new_tokens=5)
    (res,) = model.score([make_request(0)])
    assert res.status == "score_failed" and res.details["reason"] == "truncated"
    assert res.raw_reply.startswith("<think>\n") and res.attempts == 1
    model.release()


def test_generate_valid_reply_is_scored(tiny_cache, monkeypatch):
    model = make_model(tiny_cache, scoring="generate", batch_size=2)
    check_valid_reply_is_scored(model, monkeypatch, [make_request(0), make_request(1)])


def test_generate_retry_adds_corrective_turn(tiny_cache, monkeypatch):
    model = make_model(tiny_cache, scoring="generate", max_retries=2)
    # The valid reply comes after a thinking block, which the parser skips.
    check_retry_extends_the_conversation(model, monkeypatch, make_request(0),
                                         '<think>hmm</think>{"score": 4, "reasoning": "ok"}')
    assert RETRY_INSTRUCTION is chat.RETRY_INSTRUCTION  # re-exported: the turn the shared check looks for


def test_batch_exception_falls_back_to_single(tiny_cache, monkeypatch):
    model = make_model(tiny_cache, scoring="logits", batch_size=3)
    check_batch_exception_falls_back_to_single(model, monkeypatch, [make_request(i) for i in range(3)])


def test_pixel_budget_is_passed_to_image_processor(tiny_cache):
    small = make_model(tiny_cache, scoring="logits", max_pixels=16 * 16)
    req = make_request(1)
    check_pixel_budget(small, req, small._prompt_text(req))


def test_invalid_arguments():
    check_invalid_arguments(Qwen3VLRewardModel)


def test_cuda_without_gpu_is_a_model_error(tiny_cache):
    model = Qwen3VLRewardModel(model_name="tiny:qwen3-vl", device="cuda", dtype="float32", cache_dir=tiny_cache)
    check_cuda_without_gpu_is_a_model_error(model)
