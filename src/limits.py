"""Input limits: an instruction longer than a model can take is the pair's `invalid_input`, found when the
pair is loaded for the editor — not an error deep inside the model (a 65k-character instruction used to
fail in Qwen-Image-Edit's transformer with "size of tensor a (65276) must match ...", and to cost minutes
in the judge).

The limit of a run is the smallest of:
- `pipeline.max_instruction_chars` (default 8192): a cap for every model, since every model sees the
  instruction (the editor as its prompt, the judge inside its prompt);
- the editor's and the judge's own limit: a `max_instruction_chars` attribute on the model object when the
  class defines one, else the family table below.

Limits are in characters, not tokens, so they can be checked without loading a tokenizer. They are set so
that the worst common case (CJK text: about one token per character) still fits:
- Qwen-Image-Edit / -Plus: the transformer's rotary table has 4,096 positions shared by the prompt tokens
  (after an offset of up to 64 for a 1024² image) and the text encoder's vision tokens (up to ~1,326 at
  1024²) and its 34-token template: 2,048 characters leaves room for all of them.
"""

from __future__ import annotations

DEFAULT_MAX_INSTRUCTION_CHARS = 8192

# class name (anywhere in the model's MRO) -> (max characters, why)
FAMILY_LIMITS: dict[str, tuple[int, str]] = {
    "QwenImageEditModel": (2048, "Qwen-Image-Edit's transformer has 4,096 rotary positions for prompt and image "
                                 "tokens"),
    "QwenImageEditPlusModel": (2048, "Qwen-Image-Edit-Plus's transformer has 4,096 rotary positions for prompt "
                                     "and image tokens"),
}


def model_limit(model) -> tuple[int, str] | None:
    """A model's own limit: a model object or class."""
    kind = model if isinstance(model, type) else type(model)
    own = getattr(model, "max_instruction_chars", None)
    if isinstance(own, int) and not isinstance(own, bool) and own > 0:
        return own, f"{kind.__name__}.max_instruction_chars"
    for cls in kind.__mro__:
        if cls.__name__ in FAMILY_LIMITS:
            return FAMILY_LIMITS[cls.__name__]
    return None


def instruction_limit(cap: int | None, *models) -> tuple[int, str]:
    """The run's limit (characters) and where it comes from."""
    best = (cap or DEFAULT_MAX_INSTRUCTION_CHARS, "pipeline.max_instruction_chars")
    for model in models:
        limit = model_limit(model) if model is not None else None
        if limit is not None and limit[0] < best[0]:
            kind = model if isinstance(model, type) else type(model)
            best = (limit[0], f"{kind.__name__}: {limit[1]}")
    return best


def check_instruction(instruction: str | None, limit: tuple[int, str]) -> str | None:
    """None when the instruction fits, else the pair's error message."""
    if instruction is None or len(instruction) <= limit[0]:
        return None
    return (f"the instruction is {len(instruction):,} characters; the limit is {limit[0]:,} "
            f"({limit[1]}); shorten it (or raise pipeline.max_instruction_chars if every model can take it)")
