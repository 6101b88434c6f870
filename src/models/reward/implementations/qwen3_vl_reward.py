r"""Qwen3-VL judge (dense `Qwen3VLForConditionalGeneration` or MoE `Qwen3VLMoeForConditionalGeneration`).

`Qwen3VLRewardModel` is `src.models.reward.hf_vlm.HFVLMRewardModel` restricted to the two Qwen3-VL model
types (`MODEL_CLASSES`), with Qwen3-VL's default checkpoint. Everything else is the base's (see hf_vlm.py
for the details):

Prompting
    Each request becomes one conversation, rendered with the checkpoint's own chat template
    (`apply_chat_template(..., add_generation_prompt=True)`):

        system:    request.prompt.system                  (omitted when empty)
        user:      [original image] [edited image] request.prompt.user

    The processor is Qwen3-VL's without its video processor (which needs torchvision), with the PIL
    image processor (src/models/reward/qwen_vl_common.py).

Batching
    A batch (up to `batch_size` requests) is tokenized together with LEFT padding and run in one
    `generate` / forward call; Qwen3-VL's 3D M-RoPE positions are computed per row from the attention
    mask, so padded and unpadded rows score the same (the tests check batch 3 == batch 1). If a batch
    raises, its requests are re-run one by one; a request that still raises becomes `score_failed` with
    the error text (an out-of-memory error is re-raised for the pipeline's batch back-off).

``scoring: generate`` (default)
    Greedy decoding of up to `max_new_tokens` tokens (the checkpoint's sampling defaults reset to
    neutral values); the reply is parsed by the judge `protocol` (`src.models.reward.chat`). An
    unparseable reply is retried up to `max_retries` times by *extending the conversation* (the failed
    reply as an assistant turn, then the user turn `RETRY_INSTRUCTION`), since greedy decoding would
    repeat itself. After the last failure: `score_failed` with the last reply in `raw_reply`.

``scoring: logits``
    ONE forward pass over  `<chat prompt>` + LOGITS_PREFIX + "1",  LOGITS_PREFIX = '{"score": '. Qwen
    tokenizers split numbers into single digits ("10" = "1","0"), so the logits at the last two
    positions give p(.) after the prefix and q(.) after prefix + "1":

        P(k)  = p("k")  for k = 0, 2..9      P(1) = p("1") * (1 - sum_d q("d"))      P(10) = p("1") * q("0")
        mass  = sum_k P(k);   dist = P / mass;   score = sum_k k * dist(k)

    `details={"distribution": {"0": ..., "10": ...}, "mass": mass}`, `raw_reply=None`; a zero or
    non-finite mass is `score_failed`. *Thinking* checkpoints, whose generation prompt ends with
    "<think>\n", get the thinking block closed empty first ("\n</think>\n\n", as Qwen3's
    enable_thinking=False does); Instruct checkpoints get the prefix directly.
"""

from __future__ import annotations

from src.models.reward.chat import RETRY_INSTRUCTION
from src.models.reward.hf_vlm import (
    LOGITS_PREFIX,
    SCORE_HI,
    SCORE_LO,
    SCORING_MODES,
    THINK_CLOSE_EMPTY,
    THINK_OPEN,
    HFVLMRewardModel,
)

MODEL_CLASSES = {
    "qwen3_vl": "Qwen3VLForConditionalGeneration",
    "qwen3_vl_moe": "Qwen3VLMoeForConditionalGeneration",
}


class Qwen3VLRewardModel(HFVLMRewardModel):
    """Scores (original, edited) pairs 0-10 with a Qwen3-VL (dense or MoE) checkpoint."""

    MODEL_CLASSES = MODEL_CLASSES

    def __init__(
        self,
        model_name: str = "Qwen/Qwen3-VL-8B-Instruct",
        device: str = "auto",
        dtype: str = "bfloat16",
        batch_size: int = 1,
        scoring: str = "generate",
        protocol: str | dict = "category_0to10",
        max_new_tokens: int | None = None,
        max_retries: int = 2,
        min_pixels: int | None = None,
        max_pixels: int | str | None = "auto",
        attn_implementation: str | None = None,
        device_map: str | dict | None = None,
        max_memory: dict | None = None,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__(model_name=model_name, device=device, dtype=dtype, batch_size=batch_size,
                         scoring=scoring, protocol=protocol, max_new_tokens=max_new_tokens,
                         max_retries=max_retries, min_pixels=min_pixels, max_pixels=max_pixels,
                         attn_implementation=attn_implementation, device_map=device_map, max_memory=max_memory,
                         cache_dir=cache_dir)


__all__ = [
    "Qwen3VLRewardModel",
    "LOGITS_PREFIX",
    "MODEL_CLASSES",
    "RETRY_INSTRUCTION",
    "SCORE_HI",
    "SCORE_LO",
    "SCORING_MODES",
    "THINK_CLOSE_EMPTY",
    "THINK_OPEN",
]
