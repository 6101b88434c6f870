"""A general local judge: any transformers chat VLM that `AutoModelForImageTextToText` loads.

`TransformersVLMRewardModel` is `src.models.reward.hf_vlm.HFVLMRewardModel` with no restriction on the
model type: `AutoModelForImageTextToText.from_pretrained` picks the class from the checkpoint's config
(Qwen2.5-VL -> `Qwen2_5_VLForConditionalGeneration`, Qwen3-VL -> `Qwen3VLForConditionalGeneration`,
Qwen2-VL, Gemma 3, Idefics3/SmolVLM, LLaVA, ...), and the processor comes from
`load_vlm_processor` (image-only for Qwen-VL-style processors, so torchvision is not needed;
`AutoProcessor` otherwise). Prompting, greedy decoding, retries, batching with left padding and the
two scoring modes (`generate`, `logits`) are the base's; see hf_vlm.py and
docs/models_transformers_vlm.md.

Checked on CPU with the tiny random-weight checkpoints `tiny:qwen2.5-vl` and `tiny:qwen3-vl` only.
"""

from __future__ import annotations

from src.models.reward.hf_vlm import HFVLMRewardModel


class TransformersVLMRewardModel(HFVLMRewardModel):
    """Scores (original, edited) pairs 0-10 with any `AutoModelForImageTextToText` chat VLM."""

    MODEL_CLASSES = None  # AutoModelForImageTextToText chooses

    def __init__(
        self,
        model_name: str = "Qwen/Qwen2.5-VL-7B-Instruct",
        device: str = "auto",
        dtype: str = "bfloat16",
        batch_size: int = 1,
        scoring: str = "generate",
        protocol: str = "category_0to10",
        max_new_tokens: int = 512,
        max_retries: int = 2,
        min_pixels: int | None = None,
        max_pixels: int | None = None,
        attn_implementation: str | None = None,
        trust_remote_code: bool = False,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__(model_name=model_name, device=device, dtype=dtype, batch_size=batch_size,
                         scoring=scoring, protocol=protocol, max_new_tokens=max_new_tokens,
                         max_retries=max_retries, min_pixels=min_pixels, max_pixels=max_pixels,
                         attn_implementation=attn_implementation, trust_remote_code=trust_remote_code,
                         cache_dir=cache_dir)


__all__ = ["TransformersVLMRewardModel"]
