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

    # The constructor is the base's: its signature and defaults (model_name "Qwen/Qwen2.5-VL-7B-Instruct",
    # trust_remote_code False, ...) are this judge's init_args.


__all__ = ["TransformersVLMRewardModel"]
