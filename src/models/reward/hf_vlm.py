r"""The shared base of the local Hugging Face chat-VLM judges: `HFVLMRewardModel`.

A subclass picks the model class (`MODEL_CLASSES`, or `AutoModelForImageTextToText` when it is None)
and, if it needs to, the processor (`_load_processor`); everything else is here:

Prompting
    Each request (one query of the judge's `protocol`, see src/models/reward/chat.py) becomes one
    conversation, rendered as text by the checkpoint's own chat template
    (`apply_chat_template(..., add_generation_prompt=True)`):

        system:    prompt.system                             (omitted when empty)
        user:      [image] [image] prompt.user               (the query's images, e.g. original, edited)

    The images are passed to the processor separately. Templates that only read list content
    (`[{"type": "text", ...}]`, e.g. Idefics3 / LLaVA) get the string turns as text parts; which form a
    template needs is decided once at load by rendering a probe conversation.

Batching
    Up to `batch_size` requests are tokenized together with LEFT padding and run in one `generate` /
    forward call. If a batch raises, its requests are re-run one by one; a request that still raises
    becomes `score_failed` with the error text.

``scoring: generate`` (default)
    Greedy decoding: `do_sample=False`, and the checkpoint's sampling defaults (temperature, top_p,
    top_k, typical_p, repetition_penalty, min_p) are reset to neutral values, so it is plain argmax
    decoding of up to `max_new_tokens` tokens. Only the new tokens are decoded; the reply is parsed by
    the protocol (`score_with_protocol`). An unparseable reply is asked again up to `max_retries` times
    by *extending* the conversation (the failed reply as an assistant turn, then the corrective user
    turn), since greedy decoding would repeat itself. After the last failure: `score_failed` with the
    last reply in `raw_reply` — a score is never invented.

Thinking and truncation (generate)
    A reply that ends without an end-of-sequence token was cut by `max_new_tokens`: it is a
    `ChatFailure` with `details["reason"] = "truncated"` (the record is `score_failed`, the cut text in
    `raw_reply`), never parsed and not retried (greedy decoding would cut it again). When the chat
    template opens a thinking block (generation prompt ending in "<think>\n", the Qwen3-VL-*-Thinking
    checkpoints; `self.thinking`), the reply text is "<think>\n" + the generated text, so the parser
    reads only what follows "</think>"; a reply without "</think>" holds no answer. `max_new_tokens: null`
    (default) is DEFAULT_MAX_NEW_TOKENS (512), or THINKING_MAX_NEW_TOKENS (8192) for thinking checkpoints.

Sticky CUDA errors (src/device_errors.py: illegal memory access, device-side assert, ECC) are re-raised,
never turned into per-pair failures: the pipeline stops the stage.

``scoring: logits``
    ONE forward pass over  `<chat prompt>` + LOGITS_PREFIX + "1",  LOGITS_PREFIX = '{"score": '. The
    tokenizer must split numbers into single digits ("10" = "1","0"; checked at load, a ModelError
    otherwise), and the logits at the last two positions give

        p(.)  = softmax(logits after the prefix)          q(.) = softmax(logits after prefix + "1")
        P(k)  = p("k")  for k = 0, 2..9      P(1) = p("1") * (1 - sum_d q("d"))      P(10) = p("1") * q("0")
        mass  = sum_k P(k);   dist = P / mass;   score = sum_k k * dist(k)

    computed in float32/float64 from the model's logits. `details = {"distribution": {"0": ..., "10":
    ...}, "mass": mass}`, `raw_reply = None`; a zero or non-finite mass is `score_failed`. Thinking
    templates whose generation prompt ends with "<think>\n" get the thinking block closed empty first.

Processor (`load_vlm_processor`)
    Processors built like Qwen-VL's (image processor, tokenizer, video processor) are loaded
    image-only, without the video processor that needs torchvision (src/models/reward/qwen_vl_common.py),
    with the PIL image processor whatever is installed; every other model uses `AutoProcessor`.

To make a judge for one family: subclass, set `MODEL_CLASSES = {model_type: transformers class name}`
and give `__init__` the family's default `model_name` (see the Qwen3-VL judge, Qwen3VLRewardModel);
TransformersVLMRewardModel is this class unrestricted, with this constructor as is.
"""

from __future__ import annotations

import copy
import inspect
import json
import logging
import math
from typing import Any, ClassVar

from src.batching import is_oom
from src.device_errors import is_sticky_device_error
from src.models.base import (
    BaseRewardModel,
    ModelError,
    ScoreRequest,
    ScoreResult,
    free_memory,
    parse_dtype,
)
from src.models.reward.chat import ChatFailure, conversation, resolve_protocol, score_with_protocol, without_images

log = logging.getLogger(__name__)

SCORE_LO, SCORE_HI = 0, 10
LOGITS_PREFIX = '{"score": '
THINK_OPEN = "<think>\n"
THINK_CLOSE_EMPTY = "\n</think>\n\n"
SCORING_MODES = ("generate", "logits")
# max_new_tokens: null resolves at load: a JSON score with one sentence of reasoning fits in 512 tokens; a
# thinking checkpoint (Qwen3-VL-*-Thinking) reasons first, often for thousands of tokens.
DEFAULT_MAX_NEW_TOKENS = 512
THINKING_MAX_NEW_TOKENS = 8192
# Sampling knobs reset to their neutral values for greedy decoding (see greedy_generation_config).
SAMPLING_FIELDS = ("temperature", "top_p", "top_k", "typical_p", "repetition_penalty")


# ----------------------------------------------------------------------------- processor


def processor_class_name(path: str, model_type: str | None, hub_kwargs: dict[str, Any] | None = None) -> str | None:
    """The processor class a checkpoint names, found as `AutoProcessor` does: `processor_class` in
    processor_config.json, preprocessor_config.json or tokenizer_config.json, else the model type's
    default processor. None when neither says."""
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES
    from transformers.utils import cached_file

    for filename in ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json"):
        try:
            resolved = cached_file(path, filename, _raise_exceptions_for_missing_entries=False,
                                   _raise_exceptions_for_connection_errors=False, **(hub_kwargs or {}))
        except Exception:  # noqa: BLE001 - an unreadable file just doesn't name a class
            resolved = None
        if not resolved:
            continue
        try:
            with open(resolved, encoding="utf-8") as fh:
                name = json.load(fh).get("processor_class")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(name, str) and name:
            return name
    name = PROCESSOR_MAPPING_NAMES.get(model_type) if model_type else None
    return name if isinstance(name, str) else None


def load_vlm_processor(path: str, *, model_type: str | None = None, cache_dir: str | None = None,
                       trust_remote_code: bool = False):
    """Processor (tokenizer + image processor + chat template) of a chat VLM checkpoint.

    Qwen-VL-style processors (with a video processor) load image-only (no torchvision needed, PIL image
    processor); others through `AutoProcessor`. The tokenizer pads on the left and has a pad token.
    """
    from transformers import AutoProcessor, ProcessorMixin
    from transformers.models.auto.processing_auto import processor_class_from_name

    from src.models.reward.qwen_vl_common import load_image_only_processor

    hub_kwargs: dict[str, Any] = {"cache_dir": cache_dir} if cache_dir else {}
    name = processor_class_name(path, model_type, hub_kwargs)
    cls = processor_class_from_name(name) if name else None
    processor = None
    if cls is not None and isinstance(cls, type) and "video_processor" in cls.get_attributes():
        try:
            processor = load_image_only_processor(path, cls, cache_dir=cache_dir, trust_remote_code=trust_remote_code)
        except ValueError as exc:  # not built like a Qwen-VL processor: AutoProcessor below
            log.info("no image-only %s (%s); using AutoProcessor", name, exc)
    if processor is None:
        if trust_remote_code:
            hub_kwargs["trust_remote_code"] = True
        try:
            processor = AutoProcessor.from_pretrained(path, **hub_kwargs)
        except ImportError as exc:
            if "torchvision" in str(exc).lower():
                raise ModelError(f"the processor of {path!r} ({name or 'unknown class'}) needs torchvision, which "
                                 "this project does not install, and has no image-only variant here") from exc
            raise
    if not isinstance(processor, ProcessorMixin):
        raise ModelError(f"{path!r} has no multimodal processor (AutoProcessor gave a "
                         f"{type(processor).__name__}); is it a vision-language checkpoint?")
    tokenizer = processor.tokenizer
    if processor.chat_template is None:
        processor.chat_template = getattr(tokenizer, "chat_template", None)
    if processor.chat_template is None:
        raise ModelError(f"checkpoint {path!r} has no chat template")
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return processor


# ----------------------------------------------------------------------------- helpers


def check_digit_tokens(tokenizer) -> list[int]:
    """Token ids of "0".."9"; the logits mode needs single-token digits that never merge with each
    other or with LOGITS_PREFIX ("10" must be "1","0")."""
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
            raise ModelError(f"tokenizer merges {LOGITS_PREFIX!r} with the score digits (or digits with each "
                             "other); logits scoring needs the prefix and each digit as separate tokens")
    return ids


def greedy_generation_config(model, tokenizer, max_new_tokens: int):
    """The checkpoint's generation config turned into plain greedy decoding of `max_new_tokens`."""
    cfg = copy.deepcopy(model.generation_config)
    cfg.do_sample = False
    cfg.num_beams = 1
    # Neutral values, not None: generate() fills None fields from the checkpoint's own (sampling)
    # generation_config and would then warn that temperature/top_p/top_k are ignored.
    neutral = cfg._get_default_generation_params()
    for name in SAMPLING_FIELDS:
        setattr(cfg, name, neutral.get(name))
    cfg.min_p = None
    cfg.max_new_tokens = max_new_tokens
    if cfg.pad_token_id is None:
        cfg.pad_token_id = tokenizer.pad_token_id
    if cfg.eos_token_id is None:
        cfg.eos_token_id = tokenizer.eos_token_id
    return cfg


def digit_distribution(p_digits, q_digits):
    """P(0..10) (float64, shape (B, 11)) from p = P(digit | prefix) and q = P(digit | prefix + "1"),
    each (B, 10) over the tokens "0".."9" (see the module doc)."""
    import torch

    p_d = p_digits.double().cpu()
    q_d = q_digits.double().cpu()
    probs = torch.zeros(p_d.shape[0], 11, dtype=torch.float64)
    probs[:, :10] = p_d
    q_digit = q_d.sum(dim=-1).clamp(0.0, 1.0)
    probs[:, 1] = p_d[:, 1] * (1.0 - q_digit)  # "1" not followed by another digit
    probs[:, 10] = p_d[:, 1] * q_d[:, 0]  # "1" followed by "0"
    return probs


def distribution_result(row) -> ScoreResult:
    """The ScoreResult of one row of `digit_distribution` (expected score; failed on zero mass)."""
    mass = float(row.sum())
    if not math.isfinite(mass) or mass <= 0.0:
        return ScoreResult(status="score_failed", score=None,
                           error=f"no probability mass on score tokens (mass={mass})", details={"mass": mass})
    dist = row / mass
    score = float(sum(k * float(dist[k]) for k in range(11)))
    return ScoreResult(status="scored", score=min(max(score, float(SCORE_LO)), float(SCORE_HI)), raw_reply=None,
                       details={"distribution": {str(k): float(dist[k]) for k in range(11)}, "mass": mass})


def _as_text_parts(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """String turns as `[{"type": "text", "text": ...}]` (for templates that only read list content)."""
    return [{**m, "content": [{"type": "text", "text": m["content"]}]} if isinstance(m["content"], str) else m
            for m in messages]


_PROBE_TEXTS = ("PROBE-SYSTEM-1", "PROBE-USER-2", "PROBE-RETRY-3")


def _probe_messages() -> list[dict[str, Any]]:
    s, u, r = _PROBE_TEXTS
    return [{"role": "system", "content": s},
            {"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": u}]},
            {"role": "assistant", "content": "a reply"},
            {"role": "user", "content": r}]


def chat_content_style(processor) -> str:
    """"string" when the chat template renders string turns (the form the Qwen templates take), else
    "parts" when it renders them as text parts; a ModelError when neither keeps the prompt's text."""
    errors = []
    for style in ("string", "parts"):
        messages = _probe_messages() if style == "string" else _as_text_parts(_probe_messages())
        try:
            text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        except Exception as exc:  # noqa: BLE001 - e.g. a template without a system role
            errors.append(f"{style}: {type(exc).__name__}: {exc}")
            continue
        missing = [t for t in _PROBE_TEXTS if t not in text]
        if not missing:
            return style
        errors.append(f"{style}: the rendered prompt lacks {missing}")
    raise ModelError("the checkpoint's chat template cannot render the judge's conversation (system turn, two "
                     "images + text, assistant reply, corrective user turn): " + "; ".join(errors))


# max_pixels: "auto" = the checkpoint's own budget capped at 1024 * 1024 pixels per image: the Qwen-Image
# editors' working area, so a 1024x1024 edit reaches Qwen3-VL unresized (1,024 tokens; Qwen2.5-VL, 28 px
# patches, ~1,296) and the original is shown at the same budget. The checkpoints' own budgets (12.8 MP,
# 16.7 MP) turn a 12 MP photo into ~12-16k tokens per image.
AUTO_MAX_PIXELS = 1024 * 1024
DEVICE_MAPS = ("auto", "balanced", "balanced_low_0", "sequential")
_SIZE_RE = r"^\s*\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KIB|MIB|GIB|TIB)\s*$"


def check_device_map(device: str, device_map: Any, max_memory: Any) -> None:
    """Config-time checks of `device_map` / `max_memory` (ModelError with the fix)."""
    import re

    if device_map is None:
        if max_memory is not None:
            raise ModelError("max_memory caps what device_map puts on each device; set device_map (e.g. auto) too")
        return
    if isinstance(device_map, str):
        if device_map not in DEVICE_MAPS:
            raise ModelError(f"device_map must be one of {', '.join(DEVICE_MAPS)} or a mapping module -> device, "
                             f"got {device_map!r}")
    elif isinstance(device_map, dict):
        if not device_map or not all(isinstance(k, str) for k in device_map):
            raise ModelError("a device_map mapping needs module names (strings) as keys, e.g. {'': 0}")
    else:
        raise ModelError(f"device_map must be a string or a mapping, got {type(device_map).__name__}")
    if str(device) not in ("auto", "cuda"):
        raise ModelError(f"device_map spreads the model over the visible GPUs; use device: auto (or cuda) with it, "
                         f"not {device!r} (restrict GPUs with CUDA_VISIBLE_DEVICES or max_memory)")
    if max_memory is None:
        return
    if not isinstance(max_memory, dict) or not max_memory:
        raise ModelError("max_memory must be a mapping device -> size, e.g. {0: 70GiB, 1: 70GiB, cpu: 200GiB}")
    for key, value in max_memory.items():
        ok_key = (isinstance(key, int) and not isinstance(key, bool) and key >= 0) or key in ("cpu", "disk", "mps")
        if not ok_key:
            raise ModelError(f"max_memory key {key!r}: use a GPU index (0, 1, ...), cpu or disk")
        ok_value = (isinstance(value, int) and not isinstance(value, bool) and value > 0) or (
            isinstance(value, str) and re.match(_SIZE_RE, value.upper()) is not None)
        if not ok_value:
            raise ModelError(f"max_memory[{key!r}] = {value!r}: use bytes (an integer) or a size such as 70GiB")


def pixel_budget(processor) -> tuple[int, int] | None:
    """(min_pixels, max_pixels) of an image processor that sizes images by a pixel budget (size
    shortest_edge/longest_edge, the Qwen-VL family), else None (min_pixels/max_pixels mean nothing to it)."""
    size = getattr(getattr(processor, "image_processor", None), "size", None)
    if size is None:
        return None
    get = size.get if isinstance(size, dict) else (lambda k: getattr(size, k, None))
    lo, hi = get("shortest_edge"), get("longest_edge")
    return (int(lo), int(hi)) if lo is not None and hi is not None else None


def opens_thinking(processor, content_style: str = "string") -> bool:
    """True when the chat template's generation prompt opens a thinking block (ends with "<think>\n",
    as the Qwen3-VL-*-Thinking templates do): the reply then starts inside it, and only the text after
    "</think>" is an answer."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": "x"}]
    if content_style == "parts":
        messages = _as_text_parts(messages)
    try:
        text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except Exception:  # noqa: BLE001 - a template that needs more than one user turn: the probe decides
        return False
    return str(text).endswith(THINK_OPEN)


# ----------------------------------------------------------------------------- the judge


class HFVLMRewardModel(BaseRewardModel):
    """Scores (original, edited) pairs 0-10 with a local transformers chat VLM (see the module doc)."""

    # model_type -> transformers class name; None: AutoModelForImageTextToText picks the class.
    MODEL_CLASSES: ClassVar[dict[str, str] | None] = None

    def __init__(
        self,
        model_name: str = "Qwen/Qwen2.5-VL-7B-Instruct",
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
        trust_remote_code: bool = False,
        device_map: str | dict | None = None,
        max_memory: dict | None = None,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__(model_name=model_name, device=device, dtype=dtype, batch_size=batch_size,
                         cache_dir=cache_dir)
        check_device_map(device, device_map, max_memory)
        if scoring not in SCORING_MODES:
            raise ModelError(f"scoring must be one of {', '.join(SCORING_MODES)}, got {scoring!r}")
        if max_new_tokens is not None and (not isinstance(max_new_tokens, int) or isinstance(max_new_tokens, bool)
                                           or max_new_tokens < 1):
            raise ModelError(f"max_new_tokens must be a positive integer or null (auto), got {max_new_tokens!r}")
        if not isinstance(max_retries, int) or isinstance(max_retries, bool) or max_retries < 0:
            raise ModelError(f"max_retries must be a non-negative integer, got {max_retries!r}")
        for name, value in (("min_pixels", min_pixels), ("max_pixels", max_pixels)):
            if name == "max_pixels" and value == "auto":
                continue
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ModelError(f"{name} must be a positive integer or null" + (' or "auto"' if name == "max_pixels"
                                 else "") + f", got {value!r}")
        cap = AUTO_MAX_PIXELS if max_pixels == "auto" else max_pixels
        if min_pixels is not None and cap is not None and min_pixels > cap:
            raise ModelError(f"min_pixels ({min_pixels}) exceeds max_pixels ({max_pixels}"
                             + (f" = {AUTO_MAX_PIXELS}" if max_pixels == "auto" else "") + ")")
        if not isinstance(trust_remote_code, bool):
            raise ModelError(f"trust_remote_code must be true or false, got {trust_remote_code!r}")
        self.scoring = scoring
        self.protocol = protocol
        self._protocol = resolve_protocol(protocol, scoring)
        self.max_new_tokens = max_new_tokens
        self.max_retries = max_retries
        self.min_pixels = min_pixels
        self.max_pixels = max_pixels
        self.attn_implementation = attn_implementation
        self.trust_remote_code = trust_remote_code
        self.device_map = device_map
        self.max_memory = max_memory
        self.hf_device_map: dict[str, Any] | None = None  # where accelerate put each module (device_map)
        self.model: Any = None
        self.processor: Any = None
        self.model_class_name: str | None = None
        self._images_kwargs: dict[str, Any] = {}
        self._digit_ids: list[int] = []
        self._generation_config: Any = None
        self._content_style = "string"
        self._forward_params: frozenset[str] = frozenset()
        self.thinking = False  # set at load: the chat template opens a <think> block
        self.new_tokens = max_new_tokens or DEFAULT_MAX_NEW_TOKENS  # max_new_tokens resolved at load

    # ------------------------------------------------------------------ hooks for subclasses

    def _model_class(self, config) -> type:
        """The class whose `from_pretrained` loads the checkpoint (from `MODEL_CLASSES` or the Auto class)."""
        import transformers

        if self.MODEL_CLASSES is None:
            return transformers.AutoModelForImageTextToText
        class_name = self.MODEL_CLASSES.get(config.model_type)
        if class_name is None:
            raise ModelError(f"{self.model_name!r} is a {config.model_type!r} checkpoint; {type(self).__name__} "
                             f"supports model types {', '.join(self.MODEL_CLASSES)}")
        return getattr(transformers, class_name)

    def _load_processor(self, path: str, config):
        return load_vlm_processor(path, model_type=getattr(config, "model_type", None), cache_dir=self.cache_dir,
                                  trust_remote_code=self.trust_remote_code)

    # ------------------------------------------------------------------ life cycle

    def _hub_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"cache_dir": self.cache_dir} if self.cache_dir else {}
        if self.trust_remote_code:
            kwargs["trust_remote_code"] = True
        return kwargs

    def _load(self) -> None:
        from transformers import AutoConfig

        from src.models.reward.qwen_vl_common import image_size_kwargs

        dtype = parse_dtype(self.dtype_name)
        path = self.resolved_model_path()
        hub_kwargs = self._hub_kwargs()
        try:
            config = AutoConfig.from_pretrained(path, **hub_kwargs)
        except Exception as exc:  # noqa: BLE001 - surfaced as a clear configuration error
            raise ModelError(f"cannot load the config of {self.model_name!r} ({path}): {exc}") from exc
        model_cls = self._model_class(config)
        load_kwargs: dict[str, Any] = dict(hub_kwargs, dtype=dtype)
        if self.attn_implementation:
            load_kwargs["attn_implementation"] = self.attn_implementation
        load_kwargs.update(self._placement_kwargs())
        try:
            model = model_cls.from_pretrained(path, **load_kwargs)
            processor = self._load_processor(path, config)
        except ModelError:
            raise
        except Exception as exc:  # noqa: BLE001
            hint = ""
            if self.MODEL_CLASSES is None and "Unrecognized configuration class" in str(exc):
                hint = " (AutoModelForImageTextToText has no class for this model type: not a chat VLM?)"
            raise ModelError(f"cannot load {self.model_name!r} ({path}): {exc}{hint}") from exc
        if self.device_map is not None:  # placed by accelerate; no .to() after a device_map
            # transformers sets hf_device_map only when the map spans several devices (it then dispatches)
            self.hf_device_map = dict(getattr(model, "hf_device_map", None) or {"": str(model.device)})
            log.info("%s placed with device_map %r over %s", self.model_name, self.device_map,
                     sorted({str(d) for d in self.hf_device_map.values()}) or [str(model.device)])
        elif not str(self.device).startswith("cuda"):
            model = model.to(self.device)
        model.eval()
        max_pixels = self.max_pixels
        if max_pixels == "auto":  # processors with a pixel budget (Qwen-VL family): at most 1024*1024
            budget = pixel_budget(processor)
            max_pixels = min(AUTO_MAX_PIXELS, budget[1]) if budget else None
        try:
            self._images_kwargs = image_size_kwargs(processor, self.min_pixels, max_pixels)
        except (ValueError, AttributeError) as exc:
            raise ModelError(f"min_pixels/max_pixels need an image processor with a pixel budget "
                             f"(size shortest_edge/longest_edge, as Qwen-VL's): {exc}") from exc
        if self.scoring == "logits":
            self._digit_ids = check_digit_tokens(processor.tokenizer)
        self._content_style = chat_content_style(processor)
        self.thinking = opens_thinking(processor, self._content_style)
        self.new_tokens = self.max_new_tokens or (THINKING_MAX_NEW_TOKENS if self.thinking else DEFAULT_MAX_NEW_TOKENS)
        if self.thinking and self.scoring == "generate" and self.new_tokens < THINKING_MAX_NEW_TOKENS:
            log.warning("%s is a thinking checkpoint (its chat template opens <think>) and max_new_tokens is %d: "
                        "replies cut before their answer are recorded as truncated; %d or more is advised",
                        self.model_name, self.new_tokens, THINKING_MAX_NEW_TOKENS)
        self._generation_config = greedy_generation_config(model, processor.tokenizer, self.new_tokens)
        self._forward_params = frozenset(inspect.signature(model.forward).parameters)
        self.model, self.processor = model, processor
        self.model_class_name = type(model).__name__
        log.info("loaded %s (%s, %s) on %s as %s", self.model_name, self.model_class_name,
                 type(processor).__name__, self.device, dtype)

    def _placement_kwargs(self) -> dict[str, Any]:
        """`from_pretrained` placement: `device_map` (+ `max_memory`) as configured, spread by accelerate;
        else straight onto the one CUDA device (no full host copy); nothing on CPU (moved with .to())."""
        if self.device_map is not None:
            kwargs: dict[str, Any] = {"device_map": self.device_map}
            if self.max_memory:
                kwargs["max_memory"] = dict(self.max_memory)
            return kwargs
        if str(self.device).startswith("cuda"):
            return {"device_map": self.device}
        return {}

    def _release(self) -> None:
        self.hf_device_map = None
        self.model = None
        self.processor = None
        self._generation_config = None  # release() collects garbage and empties the CUDA cache next

    def _to(self, device: str) -> None:  # pragma: no cover - GPU-only path
        self.model.to(device)

    def torch_modules(self) -> list:
        """The model, moved by PinnedOffload in unload_from_gpu / load_to_gpu."""
        return [] if self.model is None else [self.model]

    def check(self) -> None:
        super().check()
        if self.scoring not in SCORING_MODES:
            raise ModelError(f"scoring must be one of {', '.join(SCORING_MODES)}, got {self.scoring!r}")

    # ------------------------------------------------------------------ prompts and tensors

    @staticmethod
    def _messages(request: ScoreRequest, history: list[str] | None = None) -> list[dict[str, Any]]:
        # The shared conversation (src.models.reward.chat), images as placeholders: the processor
        # renders the template as text and takes the images separately (`_encode`).
        return without_images(conversation(request, history or []))

    def _prompt_text(self, request: ScoreRequest, history: list[str] | None = None) -> str:
        messages = self._messages(request, history)
        if self._content_style == "parts":
            messages = _as_text_parts(messages)
        return self.processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

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
        if "token_type_ids" not in self._forward_params:  # Qwen's tokenizer adds them; the model takes none
            inputs.pop("token_type_ids", None)
        inputs = inputs.to(self.model.device)
        return inputs.to(self.model.dtype)  # floating tensors only (pixel values), as the vision tower expects

    def _decode_replies(self, new_tokens) -> list[str]:
        """Decode the generated tokens (prompt already cut off) of each row to text."""
        return self.processor.batch_decode(new_tokens, skip_special_tokens=True,
                                           clean_up_tokenization_spaces=False)

    def _eos_ids(self) -> set[int]:
        ids = self._generation_config.eos_token_id
        ids = set(ids if isinstance(ids, (list, tuple)) else [ids])
        ids.add(self.processor.tokenizer.eos_token_id)
        return {int(i) for i in ids if i is not None}

    def _rows_finished(self, new_tokens) -> list[bool]:
        """Per row: did generation end with an end-of-sequence token (False: cut by max_new_tokens)."""
        eos = self._eos_ids()
        return [any(int(t) in eos for t in row.tolist()) for row in new_tokens]

    def _generate(self, requests: list[ScoreRequest], histories: list[list[str]]) -> list[str | ChatFailure]:
        """One reply per request: its text, or a `ChatFailure` (reason "truncated") for a reply cut by
        `max_new_tokens`, which is never parsed. When the chat template opened a thinking block
        (generation prompt ending in "<think>\n"), the reply is "<think>\n" + the generated text, so
        the parser only reads what follows "</think>" (a reply with no "</think>" holds no answer)."""
        import torch

        texts = [self._prompt_text(r, h) for r, h in zip(requests, histories)]
        inputs = self._encode(texts, requests)
        with torch.inference_mode():
            out = self.model.generate(**inputs, generation_config=self._generation_config)
        new_tokens = out[:, inputs["input_ids"].shape[1]:]
        replies: list[str | ChatFailure] = []
        for text, prompt, finished in zip(self._decode_replies(new_tokens), texts, self._rows_finished(new_tokens)):
            if prompt.endswith(THINK_OPEN):  # the thinking block was opened by the template, not the model
                text = THINK_OPEN + text
            if not finished:
                replies.append(ChatFailure(
                    f"truncated: the reply reached max_new_tokens ({self.new_tokens}) without an end-of-sequence "
                    "token and is not parsed; raise max_new_tokens (thinking judges need thousands)",
                    raw_reply=text, details={"reason": "truncated", "max_new_tokens": self.new_tokens}))
            else:
                replies.append(text)
        return replies

    # ------------------------------------------------------------------ scoring

    def score(self, requests: list[ScoreRequest]) -> list[ScoreResult]:
        if not self.loaded or self.model is None:
            raise ModelError(f"{type(self).__name__}.score() called before load()")
        results: list[ScoreResult] = []
        for start in range(0, len(requests), self.batch_size):
            chunk = requests[start:start + self.batch_size]
            try:
                results.extend(self._score_batch(chunk))
            except Exception as exc:  # noqa: BLE001 - one bad batch must not stop the run
                if is_oom(exc) or is_sticky_device_error(exc):
                    raise  # OOM: the pipeline's AdaptiveBatcher halves the batch; sticky CUDA error: the stage stops
                log.warning("batch of %d failed (%s: %s); retrying one by one", len(chunk), type(exc).__name__, exc)
                free_memory(self.device)
                for request in chunk:
                    try:
                        results.extend(self._score_batch([request]))
                    except Exception as exc1:  # noqa: BLE001
                        if is_sticky_device_error(exc1):
                            raise
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
        # Parsing, corrective retries and multi-query protocols are shared with every chat judge
        # (src.models.reward.chat); this model only answers a batch of (request, history) items.
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
        kwargs: dict[str, Any] = {"use_cache": False}
        if "logits_to_keep" in self._forward_params:
            kwargs["logits_to_keep"] = 2
        with torch.inference_mode():
            out = self.model(**inputs, **kwargs)
        logits = out.logits[:, -2:, :].float()
        p = torch.softmax(logits[:, 0, :], dim=-1)  # next token after the prefix
        q = torch.softmax(logits[:, 1, :], dim=-1)  # next token after prefix + "1"
        digits = torch.tensor(self._digit_ids, device=p.device)
        probs = digit_distribution(p[:, digits], q[:, digits])
        return [distribution_result(row) for row in probs]


__all__ = [
    "HFVLMRewardModel",
    "LOGITS_PREFIX",
    "SCORING_MODES",
    "check_digit_tokens",
    "chat_content_style",
    "digit_distribution",
    "distribution_result",
    "greedy_generation_config",
    "load_vlm_processor",
    "processor_class_name",
]
