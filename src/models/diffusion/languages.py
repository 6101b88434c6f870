"""Which editors read only English instructions, and the warning when a benchmark gives them Chinese ones.

An editor's instruction goes through its text encoder. Qwen-Image-Edit (all versions) encodes it with
Qwen2.5-VL, which is trained on Chinese and English. FLUX.1 Kontext encodes it with T5-XXL (English C4
pre-training; its SentencePiece vocabulary has almost no CJK pieces) and CLIP ViT-L/14 (English captions,
77 tokens); InstructPix2Pix with the CLIP ViT-L/14 text encoder of Stable Diffusion 1.5. Chinese text
becomes mostly unknown / byte-fallback tokens for these encoders: the edit then barely depends on the
instruction. That is a property of the model, not a bug to fix here - but a benchmark of Chinese
instructions (物理/环境/社会/因果/指代 ...) run on such an editor measures that, and the run should say so
before it starts. `instruction_language_warning(editor, pairs)` gives that warning (or None); the
pipeline logs it when it checks the models of a new run, and `smoke` prints it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

# Pipeline class -> its English-only text encoder(s), as shown in the warning.
ENGLISH_ONLY_TEXT_ENCODERS = {
    "FluxKontextPipeline": "T5-XXL + CLIP ViT-L/14 (English-only)",
    "FluxKontextInpaintPipeline": "T5-XXL + CLIP ViT-L/14 (English-only)",
    "StableDiffusionInstructPix2PixPipeline": "CLIP ViT-L/14 (English-only)",
    "StableDiffusionXLInstructPix2PixPipeline": "two CLIP text encoders (English-only)",
}


def english_only_encoder(editor: Any) -> str | None:
    """The English-only text encoder of `editor` (a description), or None when it reads other languages
    or is not known to be English-only."""
    return ENGLISH_ONLY_TEXT_ENCODERS.get(getattr(editor, "pipeline_class", None) or "")


def has_chinese(text: str | None) -> bool:
    """True if `text` contains CJK ideographs (Chinese characters; also used in Japanese)."""
    return bool(text) and any("\u4e00" <= ch <= "\u9fff" or "\u3400" <= ch <= "\u4dbf" or "\uf900" <= ch <= "\ufaff"
                              for ch in text)


def instruction_language_warning(editor: Any, pairs: Iterable[Any]) -> str | None:
    """A warning when an English-only editor gets instructions with Chinese characters (see module doc).

    `pairs`: objects with `instruction`, `category`, `pair_id` (the benchmark's PairSpecs)."""
    encoder = english_only_encoder(editor)
    if encoder is None:
        return None
    total, chinese, example = 0, 0, None
    for pair in pairs:
        if getattr(pair, "instruction", None) is None:
            continue
        total += 1
        if has_chinese(pair.instruction):
            chinese += 1
            example = example or f"category {pair.category!r}, pair {pair.pair_id!r}"
    if not chinese:
        return None
    return (f"{type(editor).__name__} encodes instructions with {encoder}, but {chinese} of {total} instructions "
            f"contain Chinese characters (first: {example}); those edits will barely follow their instructions. "
            "Translate the instructions or use a multilingual editor (Qwen-Image-Edit).")
