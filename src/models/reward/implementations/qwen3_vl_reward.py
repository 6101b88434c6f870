r"""Qwen3-VL judge (dense `Qwen3VLForConditionalGeneration` or MoE `Qwen3VLMoeForConditionalGeneration`).

Each request becomes one conversation, rendered with the checkpoint's own chat template
(`apply_chat_template(..., add_generation_prompt=True)`):

    system:    request.prompt.system                  (omitted when empty)
    user:      [original image] [edited image] request.prompt.user

A batch (up to `batch_size` requests) is tokenized together with LEFT padding and run in one
`generate` / forward call; Qwen3-VL's 3D M-RoPE positions are computed per row from the attention
mask, so padded and unpadded rows score the same (the tests check batch 3 == batch 1).

Two scoring modes (`scoring`):

``generate`` (default)
    Greedy decoding (`do_sample=False`; the checkpoint's sampling defaults temperature/top_p/top_k and
    any repetition penalty are reset to neutral values, so it is plain argmax decoding) of up to
    `max_new_tokens` tokens; only the new tokens are decoded and `src.scoring.parse.parse_score(reply,
    0, 10)` reads the score. A reply that can't be parsed is retried up to `max_retries` times. Greedy
    decoding is deterministic, so re-asking the same prompt would return the same reply; a retry
    therefore *extends the conversation*: the failed reply is appended as an assistant turn followed
    by the user turn `RETRY_INSTRUCTION` (reply only with `{"score": <0-10>, "reasoning": ...}`).
    `attempts` counts the generations made for the request (1 + retries used). After the last
    failure the result is `score_failed` with the last reply in `raw_reply`, never a score.
    The parse/retry loop is `src.models.reward.chat.score_by_chat`, shared with the other chat judges.

``logits``
    No decoding: ONE forward pass over  `<chat prompt with generation prompt>` + LOGITS_PREFIX + "1",
    where LOGITS_PREFIX = '{"score": ' (an assistant reply forced up to the score's first digit).
    Qwen tokenizers split numbers into single digits, so "10" is the two tokens "1","0". With a
    causal LM, the logits at the last two positions give both needed distributions at once (the same
    numbers as a second decoding step on the "1" branch, without a second pass):

        p(.)  = softmax(logits at the position of the prefix's last token)   next token after prefix
        q(.)  = softmax(logits at the position of the appended "1")          next token after prefix+"1"

        P(k)  = p("k")                                  for k in 0, 2, 3, ..., 9
        P(1)  = p("1") * (1 - sum_{d=0..9} q("d"))      "1" not followed by another digit
        P(10) = p("1") * q("0")                          "1" followed by "0"
        mass  = sum_{k=0..10} P(k)                       (probability mass on valid scores)
        dist  = P / mass                                 (renormalised over {0..10})
        score = sum_k k * dist(k)                        (expected value)

    "1" followed by 1-9 (11..19) counts for no score; "0" is taken as 0 whatever follows; a decimal
    point after a digit counts for that digit. Probabilities are computed in float32 from the model's
    logits. The result holds `details={"distribution": {"0": ..., "10": ...}, "mass": mass}` and
    `raw_reply=None`. A non-finite or zero mass is a `score_failed`.
    For *Thinking* checkpoints, whose generation prompt ends with "<think>\n", the thinking block is
    closed empty first ("<think>\n" + "\n</think>\n\n", as Qwen3's enable_thinking=False does) and
    the prefix follows; Instruct checkpoints (generation prompt "<|im_start|>assistant\n") get the
    prefix directly.

Errors: if a batch raises, its requests are re-run one by one; a request that still raises becomes
`score_failed` with the error text.
"""

from __future__ import annotations

import copy
import logging
import math
from typing import Any

from src.batching import is_oom
from src.models.base import (
    BaseRewardModel,
    ModelError,
    ScoreRequest,
    ScoreResult,
    free_memory,
    parse_dtype,
)
from src.models.reward.chat import RETRY_INSTRUCTION, conversation, resolve_protocol, score_with_protocol, without_images

log = logging.getLogger(__name__)

SCORE_LO, SCORE_HI = 0, 10
LOGITS_PREFIX = '{"score": '
THINK_OPEN = "<think>\n"
THINK_CLOSE_EMPTY = "\n</think>\n\n"
SCORING_MODES = ("generate", "logits")
MODEL_CLASSES = {
    "qwen3_vl": "Qwen3VLForConditionalGeneration",
    "qwen3_vl_moe": "Qwen3VLMoeForConditionalGeneration",
}


class Qwen3VLRewardModel(BaseRewardModel):
    """Scores (original, edited) pairs 0-10 with a Qwen3-VL (dense or MoE) checkpoint."""

    def __init__(
        self,
        model_name: str = "Qwen/Qwen3-VL-8B-Instruct",
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
        cache_dir: str | None = None,
    ) -> None:
        super().__init__(model_name=model_name, device=device, dtype=dtype, batch_size=batch_size,
                         cache_dir=cache_dir)
        if scoring not in SCORING_MODES:
            raise ModelError(f"scoring must be one of {', '.join(SCORING_MODES)}, got {scoring!r}")
        if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ModelError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")
        if not isinstance(max_retries, int) or max_retries < 0:
            raise ModelError(f"max_retries must be a non-negative integer, got {max_retries!r}")
        for name, value in (("min_pixels", min_pixels), ("max_pixels", max_pixels)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ModelError(f"{name} must be a positive integer or null, got {value!r}")
        if min_pixels is not None and max_pixels is not None and min_pixels > max_pixels:
            raise ModelError(f"min_pixels ({min_pixels}) exceeds max_pixels ({max_pixels})")
        self.scoring = scoring
        self.protocol = protocol
        self._protocol = resolve_protocol(protocol, scoring)
        self.max_new_tokens = max_new_tokens
        self.max_retries = max_retries
        self.min_pixels = min_pixels
        self.max_pixels = max_pixels
        self.attn_implementation = attn_implementation
        self.model: Any = None
        self.processor: Any = None
        self._images_kwargs: dict[str, Any] = {}
        self._digit_ids: list[int] = []
        self._generation_config: Any = None

    # ------------------------------------------------------------------ life cycle

    def _load(self) -> None:
        import transformers
        from transformers import AutoConfig

        from src.models.reward.qwen_vl_common import image_size_kwargs, load_qwen_vl_processor

        dtype = parse_dtype(self.dtype_name)
        path = self.resolved_model_path()
        hub_kwargs: dict[str, Any] = {"cache_dir": self.cache_dir} if self.cache_dir else {}
        try:
            config = AutoConfig.from_pretrained(path, **hub_kwargs)
        except Exception as exc:  # noqa: BLE001 - surfaced as a clear configuration error
            raise ModelError(f"cannot load the config of {self.model_name!r} ({path}): {exc}") from exc
        class_name = MODEL_CLASSES.get(config.model_type)
        if class_name is None:
            raise ModelError(f"{self.model_name!r} is a {config.model_type!r} checkpoint; "
                             f"Qwen3VLRewardModel supports model types {', '.join(MODEL_CLASSES)}")
        model_cls = getattr(transformers, class_name)
        load_kwargs: dict[str, Any] = dict(hub_kwargs, dtype=dtype)
        if self.attn_implementation:
            load_kwargs["attn_implementation"] = self.attn_implementation
        if str(self.device).startswith("cuda"):
            load_kwargs["device_map"] = self.device  # straight to the GPU, no full host copy
        try:
            model = model_cls.from_pretrained(path, **load_kwargs)
            processor = load_qwen_vl_processor(path, cache_dir=self.cache_dir)
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"cannot load {self.model_name!r} ({path}): {exc}") from exc
        if not str(self.device).startswith("cuda"):
            model = model.to(self.device)
        model.eval()
        try:
            self._images_kwargs = image_size_kwargs(processor, self.min_pixels, self.max_pixels)
        except ValueError as exc:
            raise ModelError(str(exc)) from exc
        if self.scoring == "logits":
            self._digit_ids = self._check_digit_tokens(processor.tokenizer)
        self._generation_config = self._greedy_generation_config(model, processor.tokenizer)
        self.model, self.processor = model, processor
        log.info("loaded %s (%s) on %s as %s", self.model_name, class_name, self.device, dtype)

    def _release(self) -> None:
        self.model = None
        self.processor = None
        self._generation_config = None
        free_memory(self.device)

    def _to(self, device: str) -> None:  # pragma: no cover - GPU-only path
        self.model.to(device)

    def torch_modules(self) -> list:
        """The model, moved by PinnedOffload in unload_from_gpu / load_to_gpu."""
        return [] if self.model is None else [self.model]

    def check(self) -> None:
        super().check()
        if self.scoring not in SCORING_MODES:
            raise ModelError(f"scoring must be one of {', '.join(SCORING_MODES)}, got {self.scoring!r}")

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _check_digit_tokens(tokenizer) -> list[int]:
        """Token ids of "0".."9"; the logits mode needs single-token digits that never merge."""
        ids = []
        for d in range(10):
            enc = tokenizer.encode(str(d), add_special_tokens=False)
            if len(enc) != 1:
                raise ModelError(f"tokenizer encodes digit {d} as {enc}; logits scoring needs one token per digit")
            ids.append(enc[0])
        prefix = tokenizer.encode(LOGITS_PREFIX, add_special_tokens=False)
        for tail in ("1", "10"):
            enc = tokenizer.encode(LOGITS_PREFIX + tail, add_special_tokens=False)
            if enc[: len(prefix)] != prefix or enc[len(prefix):] != [ids[int(c)] for c in tail]:
                raise ModelError(f"tokenizer merges {LOGITS_PREFIX!r} with the score digits; logits scoring "
                                 "needs the prefix and each digit as separate tokens")
        return ids

    def _greedy_generation_config(self, model, tokenizer):
        cfg = copy.deepcopy(model.generation_config)
        cfg.do_sample = False
        cfg.num_beams = 1
        # Neutral values, not None: generate() fills None fields from the checkpoint's own (sampling)
        # generation_config and would then warn that temperature/top_p/top_k are ignored.
        neutral = cfg._get_default_generation_params()
        for name in ("temperature", "top_p", "top_k", "typical_p", "repetition_penalty"):
            setattr(cfg, name, neutral.get(name))
        cfg.min_p = None
        cfg.max_new_tokens = self.max_new_tokens
        if cfg.pad_token_id is None:
            cfg.pad_token_id = tokenizer.pad_token_id
        return cfg

    @staticmethod
    def _messages(request: ScoreRequest, history: list[str] | None = None) -> list[dict[str, Any]]:
        # The shared conversation (src.models.reward.chat), images as placeholders: the processor
        # renders the template as text and takes the images separately (`_encode`).
        return without_images(conversation(request, history or []))

    def _prompt_text(self, request: ScoreRequest, history: list[str] | None = None) -> str:
        return self.processor.apply_chat_template(
            self._messages(request, history), tokenize=False, add_generation_prompt=True
        )

    def _logits_prompt_text(self, request: ScoreRequest) -> str:
        """Chat prompt + forced assistant prefix, ending with the "1" token (see the module doc)."""
        text = self._prompt_text(request)
        if text.endswith(THINK_OPEN):  # Thinking templates open <think>: close it empty, as Qwen3 does
            text += THINK_CLOSE_EMPTY
        return text + LOGITS_PREFIX + "1"

    def _encode(self, texts: list[str], requests: list[ScoreRequest]):
        images = [[image.convert("RGB") for image in r.images()] for r in requests]
        inputs = self.processor(text=texts, images=images, padding=True, padding_side="left",
                                return_tensors="pt", **self._images_kwargs)
        inputs.pop("token_type_ids", None)
        return inputs.to(self.model.device)

    def _decode_replies(self, new_tokens) -> list[str]:
        """Decode the generated tokens (prompt already cut off) of each row to text."""
        return self.processor.batch_decode(new_tokens, skip_special_tokens=True,
                                           clean_up_tokenization_spaces=False)

    def _generate(self, requests: list[ScoreRequest], histories: list[list[str]]) -> list[str]:
        import torch

        texts = [self._prompt_text(r, h) for r, h in zip(requests, histories)]
        inputs = self._encode(texts, requests)
        with torch.inference_mode():
            out = self.model.generate(**inputs, generation_config=self._generation_config)
        return self._decode_replies(out[:, inputs["input_ids"].shape[1]:])

    # ------------------------------------------------------------------ scoring

    def score(self, requests: list[ScoreRequest]) -> list[ScoreResult]:
        if not self.loaded or self.model is None:
            raise ModelError("Qwen3VLRewardModel.score() called before load()")
        results: list[ScoreResult] = []
        for start in range(0, len(requests), self.batch_size):
            chunk = requests[start:start + self.batch_size]
            try:
                results.extend(self._score_batch(chunk))
            except Exception as exc:  # noqa: BLE001 - one bad batch must not stop the run
                if is_oom(exc):
                    raise  # the pipeline's AdaptiveBatcher frees memory, halves the batch and retries
                log.warning("batch of %d failed (%s: %s); retrying one by one", len(chunk), type(exc).__name__, exc)
                free_memory(self.device)
                for request in chunk:
                    try:
                        results.extend(self._score_batch([request]))
                    except Exception as exc1:  # noqa: BLE001
                        log.warning("pair %s failed: %s: %s", request.pair_id, type(exc1).__name__, exc1)
                        free_memory(self.device)
                        results.append(ScoreResult(status="score_failed", score=None,
                                                   error=f"{type(exc1).__name__}: {exc1}"))
        return results

    def _score_batch(self, requests: list[ScoreRequest]) -> list[ScoreResult]:
        if self.scoring == "logits":
            return self._score_logits(requests)
        return self._score_generate(requests)

    def _score_generate(self, requests: list[ScoreRequest]) -> list[ScoreResult]:
        # Parsing and corrective retries are shared with every chat judge (score_by_chat); this model
        # only answers a batch of (request, history) items, rendering them with `_prompt_text`.
        def chat(items: list[tuple[ScoreRequest, list[str]]]) -> list[str]:
            return self._generate([r for r, _ in items], [h for _, h in items])

        return score_with_protocol(self._protocol, requests, chat, self.max_retries,
                             build=lambda request, history: (request, history))

    def _score_logits(self, requests: list[ScoreRequest]) -> list[ScoreResult]:
        import torch

        texts = [self._logits_prompt_text(r) for r in requests]
        inputs = self._encode(texts, requests)
        ids = inputs["input_ids"]
        if not bool((ids[:, -1] == self._digit_ids[1]).all()):
            raise RuntimeError("logits scoring: the prompt does not end with the '1' token (tokenization changed)")
        with torch.inference_mode():
            out = self.model(**inputs, use_cache=False, logits_to_keep=2)
        logits = out.logits[:, -2:, :].float()
        p = torch.softmax(logits[:, 0, :], dim=-1)  # next token after the prefix
        q = torch.softmax(logits[:, 1, :], dim=-1)  # next token after prefix + "1"
        digits = torch.tensor(self._digit_ids, device=p.device)
        p_d = p[:, digits]  # (B, 10)
        q_d = q[:, digits]
        probs = torch.zeros(len(requests), 11, dtype=torch.float64)
        for k in range(10):
            probs[:, k] = p_d[:, k].double().cpu()
        p1 = p_d[:, 1].double().cpu()
        q_digit = q_d.sum(dim=-1).double().cpu().clamp(0.0, 1.0)
        probs[:, 1] = p1 * (1.0 - q_digit)
        probs[:, 10] = p1 * q_d[:, 0].double().cpu()
        results = []
        for row in probs:
            mass = float(row.sum())
            if not math.isfinite(mass) or mass <= 0.0:
                results.append(ScoreResult(status="score_failed", score=None,
                                           error=f"no probability mass on score tokens (mass={mass})",
                                           details={"mass": mass}))
                continue
            dist = row / mass
            score = float(sum(k * float(dist[k]) for k in range(11)))
            results.append(ScoreResult(
                status="scored", score=min(max(score, float(SCORE_LO)), float(SCORE_HI)), raw_reply=None,
                details={"distribution": {str(k): float(dist[k]) for k in range(11)}, "mass": mass},
            ))
        return results


__all__ = ["Qwen3VLRewardModel", "LOGITS_PREFIX", "RETRY_INSTRUCTION"]
