"""An offline byte-level BPE tokenizer with the Qwen special tokens.

Real Qwen2/Qwen2.5/Qwen3 tokenizers are byte-level BPE with ~150k tokens and digits split one per
token. The tiny checkpoints need the same *kind* of tokenizer (same class, same special tokens, same
digit behaviour) but cannot download one, so we build one here from the 256 byte symbols and no
merges: every byte is a token, "10" is "1","0" exactly as with the real tokenizer.
"""

from __future__ import annotations

from functools import lru_cache

# The special tokens the Qwen-VL chat templates and processors rely on, in the order of the real
# tokenizer's added tokens.
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
NON_SPECIAL_ADDED = ["<think>", "</think>"]

# A Qwen-VL style chat template: images and text in user turns, generation prompt for the assistant.
QWEN_VL_CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}{%- for content in message['content'] -%}"
    "{%- if content['type'] == 'image' or 'image' in content -%}"
    "{{- '<|vision_start|><|image_pad|><|vision_end|>' -}}"
    "{%- elif content['type'] == 'text' -%}{{- content['text'] -}}"
    "{%- endif -%}{%- endfor -%}{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)


@lru_cache(maxsize=1)
def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable-unicode table, which Qwen's byte-level BPE also uses."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def vocab_size() -> int:
    return 256 + len(SPECIAL_TOKENS) + len(NON_SPECIAL_ADDED)


def build_qwen_tokenizer(model_max_length: int = 32768):
    """Return a `transformers.Qwen2Tokenizer` (fast, tokenizers backend) over the byte alphabet."""
    from transformers import Qwen2Tokenizer

    vocab = {ch: i for i, ch in enumerate(sorted(_bytes_to_unicode().values(), key=ord))}
    tok = Qwen2Tokenizer(
        vocab=vocab,
        merges=[],
        unk_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        model_max_length=model_max_length,
        padding_side="left",
    )
    return _with_qwen_specials(tok)


def _with_qwen_specials(tok):
    """The Qwen special and added tokens, the Qwen-VL chat template and left padding on a tokenizer."""
    from transformers import AddedToken

    tok.add_special_tokens(
        {"additional_special_tokens": [AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS]}
    )
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in NON_SPECIAL_ADDED])
    tok.chat_template = QWEN_VL_CHAT_TEMPLATE
    tok.padding_side = "left"
    return tok


def special_token_ids(tok) -> dict[str, int]:
    """The ids a Qwen-VL config needs, read from a tokenizer built by `build_qwen_tokenizer`."""
    ids = {
        "image_token_id": tok.convert_tokens_to_ids("<|image_pad|>"),
        "video_token_id": tok.convert_tokens_to_ids("<|video_pad|>"),
        "vision_start_token_id": tok.convert_tokens_to_ids("<|vision_start|>"),
        "vision_end_token_id": tok.convert_tokens_to_ids("<|vision_end|>"),
        "pad_token_id": tok.convert_tokens_to_ids("<|endoftext|>"),
        "eos_token_id": tok.convert_tokens_to_ids("<|im_end|>"),
    }
    missing = [k for k, v in ids.items() if v is None or v == tok.unk_token_id]
    if missing:  # pragma: no cover - build_qwen_tokenizer adds all of them
        raise RuntimeError(f"tiny Qwen tokenizer lacks special tokens for {missing}")
    return ids


# ----------------------------------------------------------------------------- a trained BPE (bench judge)

# Where build_bpe_qwen_tokenizer's corpus comes from: the project's own text (prompt templates, docs,
# READMEs in English and Chinese, source docstrings and comments, configs), read at build time, plus every
# CJK Unified Ideograph U+4E00..U+9FFF on a line of its own (twice, so each reaches min_frequency 2): like
# a real Qwen vocabulary, every common Chinese character is then one token, not three byte tokens.
BPE_CORPUS_GLOBS = ("src/prompts/templates/**/*.j2", "docs/**/*.md", "README*.md", "src/**/*.py", "configs/**/*.yaml")
CJK_RANGE = (0x4E00, 0x9FFF)


def bpe_corpus(root=None) -> list[str]:
    """The training texts of `build_bpe_qwen_tokenizer`: every file matching BPE_CORPUS_GLOBS under the
    repository root, in sorted path order (deterministic for a given checkout), then the CJK characters."""
    from pathlib import Path

    root = Path(root) if root else Path(__file__).resolve().parents[3]
    paths = sorted({p for g in BPE_CORPUS_GLOBS for p in root.glob(g) if p.is_file()})
    cjk = "\n".join(chr(c) for c in range(CJK_RANGE[0], CJK_RANGE[1] + 1))
    return [p.read_text(encoding="utf-8", errors="replace") for p in paths] + [cjk, cjk]


def build_bpe_qwen_tokenizer(texts: list[str], vocab_size: int, model_max_length: int = 32768):
    """A `transformers.Qwen2Tokenizer` whose byte-level BPE merges are trained here on `texts` (the
    `tokenizers` trainer, one thread), with Qwen2's own normalizer and pre-tokenizer (its split regex:
    digits one per token, so "10" is "1","0"), the Qwen special tokens and the Qwen-VL chat template.

    Unlike `build_qwen_tokenizer` (one token per byte), words become one or a few tokens, so prompts
    have realistic token counts. The vocabulary has at most `vocab_size` entries (fewer when the corpus
    runs out of pairs to merge); the trainer is deterministic for the same texts."""
    import json
    import os

    os.environ.setdefault("RAYON_NUM_THREADS", "1")  # read when the trainer's thread pool starts
    from tokenizers import Tokenizer, models, trainers
    from transformers import Qwen2Tokenizer

    template = Qwen2Tokenizer(vocab={ch: i for i, ch in enumerate(sorted(_bytes_to_unicode().values(), key=ord))},
                              merges=[])
    inner = template.backend_tokenizer
    tokenizer = Tokenizer(models.BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tokenizer.normalizer = inner.normalizer
    tokenizer.pre_tokenizer = inner.pre_tokenizer
    budget = vocab_size - len(SPECIAL_TOKENS) - len(NON_SPECIAL_ADDED)
    trainer = trainers.BpeTrainer(vocab_size=budget, min_frequency=2, show_progress=False,
                                  initial_alphabet=sorted(_bytes_to_unicode().values(), key=ord), special_tokens=[])
    tokenizer.train_from_iterator(texts, trainer=trainer)
    model = json.loads(tokenizer.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    tok = Qwen2Tokenizer(vocab=model["vocab"], merges=merges, unk_token=None, eos_token="<|im_end|>",
                         pad_token="<|endoftext|>", model_max_length=model_max_length, padding_side="left")
    return _with_qwen_specials(tok)
