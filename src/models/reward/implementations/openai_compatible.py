"""A judge behind an HTTP endpoint that speaks the OpenAI chat-completions API.

vLLM (`vllm serve <model>`), SGLang, or a hosted model: `POST {base_url}/chat/completions` with the
conversation of `src.models.reward.chat.conversation` (system, then one user turn holding the original
image, the edited image and the prompt text). Images go as base64 data URLs
(`data:image/png;base64,...`). Parsing and corrective retries are `score_by_chat`, shared with the
local judges, so a reply is read exactly as the Qwen3-VL judge reads it and a score is never invented.

Keys: `api_key_env` is the NAME of an environment variable. Its value is read when the client is made
(`load()`) and when error texts are redacted; it is never an attribute of this object, never logged,
never written (init_args — what a run saves — hold only the variable's name). When the variable is
unset or empty (or `api_key_env` is null) the key is the placeholder "EMPTY", which local servers
that don't check keys accept (vLLM without `--api-key`). The `openai.OpenAI` client holds the key in
memory while loaded, because it sends it.

Transport (per request, in a thread pool of `max_concurrency`): timeouts, connection errors, HTTP 408,
429 and 5xx are retried up to `transport_retries` times, waiting
`min(max_backoff_s, backoff_s * 2**k) * (0.5 + 0.5 * u)` (u from a RNG seeded with `seed`, k = 0, 1,
...) or, when the server sends `Retry-After` / `retry-after-ms`, that long (capped at max_backoff_s).
Other 4xx (400, 401, 403, 404, 422 ...) are not retried: the request is `score_failed` with the
status and message. A refusal — finish_reason "content_filter", `message.refusal` set, or empty
content — is `score_failed` with the refusal text as `raw_reply`, not retried. A reply cut by `max_tokens`
(finish_reason "length") is `score_failed` with `details["reason"] = "truncated"`, never parsed, not retried.

`ScoreResult.details = {"usage": {...}, "finish_reason": ..., "transport_attempts": n, "parse_method":
..., "structured_output": ...}` for the last call of a request; earlier calls of the same request (parse
retries) are in `details["previous"]`.

Preflight (`preflight: true`, the default): `check()` — which the pipeline runs before the editor loads —
and `load()` ask the server `GET {base_url}/models` (the served model must be listed; a wrong name gets a
did-you-mean) and send one tiny text request (auth, chat endpoint, and `response_format` when set). A dead
server, a wrong key or a wrong model name is a ModelError (exit 2, one line) before hours of editing.

Structured output (`response_format: json_object`): every request asks the server for a JSON object
(OpenAI JSON mode; vLLM's guided decoding), the first line of defence against unparseable replies. The
reply is still parsed and checked like any other; `details["structured_output"]` records what was asked.

`scoring: logits` (protocol category_0to10 only): the same next-token math as the local judges
(src/models/reward/hf_vlm.py): two requests per pair with the assistant turn prefilled with the
forced prefix `{"score": ` and then `{"score": 1` (`continue_final_message`, vLLM's chat extension),
`max_tokens: 1`, `logprobs` with `top_logprobs`; p and q are read from the top log-probabilities of the
digit tokens "0".."9" (a digit missing from the top list counts 0: its mass is recorded as
`details["top_mass"]`). The expected score over 0..10 is the score; the distribution is recorded.

Transport settings (`base_url`, `max_concurrency`, `timeout_s`, retries and backoff, `preflight`) are
not part of the judge's identity (src/config.py NON_SEMANTIC_ARGS): moving the server or changing its
concurrency does not re-score a run.
"""

from __future__ import annotations

import base64
import difflib
import email.utils
import io
import logging
import math
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any, Callable

from PIL import Image

from src.models.base import BaseRewardModel, ModelError, ScoreRequest, ScoreResult
from src.models.reward.chat import ChatFailure, ChatReply, combine_passes, resolve_protocol, score_with_protocol

log = logging.getLogger(__name__)

SCORE_LO, SCORE_HI = 0, 10
PLACEHOLDER_KEY = "EMPTY"
IMAGE_FORMATS = {"png": ("PNG", "image/png"), "jpeg": ("JPEG", "image/jpeg"), "jpg": ("JPEG", "image/jpeg"),
                 "webp": ("WEBP", "image/webp")}
RETRY_STATUS = frozenset({408, 429})  # plus every 5xx
REFUSAL_FINISH_REASONS = frozenset({"content_filter"})
RESPONSE_FORMATS = frozenset({None, "json_object"})
SCORING_MODES = ("generate", "logits")
PREFLIGHT_TEXT = 'This is a connection check. Reply with the JSON object {"ok": true} and nothing else.'


def image_data_url(image: Image.Image, image_format: str = "png") -> str:
    """`data:image/<fmt>;base64,...` of an RGB copy of `image` (PNG and WEBP lossless, JPEG q=95)."""
    fmt, mime = IMAGE_FORMATS[image_format.lower()]
    buf = io.BytesIO()
    img = image.convert("RGB")
    if fmt == "JPEG":
        img.save(buf, format=fmt, quality=95)
    elif fmt == "WEBP":
        img.save(buf, format=fmt, lossless=True)
    else:
        img.save(buf, format=fmt)
    return f"data:{mime};base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"


def parse_retry_after(headers: Any) -> float | None:
    """Seconds to wait from `retry-after-ms`, `retry-after` (seconds or an HTTP date); None if absent."""
    if headers is None:
        return None
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            return max(0.0, float(ms) / 1000.0)
    except (TypeError, ValueError):
        pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        pass
    try:
        when = email.utils.parsedate_to_datetime(str(value))
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


class _Permanent(Exception):
    """A request that must not be retried by transport (4xx, refusal, malformed response)."""

    def __init__(self, failure: ChatFailure) -> None:
        super().__init__(failure.message)
        self.failure = failure


class OpenAICompatibleRewardModel(BaseRewardModel):
    """Scores (original, edited) pairs 0-10 with a VLM served behind an OpenAI-compatible API."""

    uses_torch_rng = False  # no torch randomness: the run need not import torch to seed it

    def __init__(
        self,
        model: str = "",
        base_url: str = "http://127.0.0.1:8000/v1",
        api_key_env: str | None = "OPENAI_API_KEY",
        max_concurrency: int = 8,
        timeout_s: float = 120.0,
        max_retries: int = 2,
        protocol: str | dict = "category_0to10",
        num_pass: int = 1,
        transport_retries: int = 4,
        backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
        temperature: float = 0.0,
        seed: int | None = 0,
        max_tokens: int = 512,
        image_format: str = "png",
        extra_body: dict | None = None,
        response_format: str | None = None,
        scoring: str = "generate",
        top_logprobs: int = 20,
        preflight: bool = True,
        batch_size: int = 8,
        model_name: str | None = None,
        device: str = "auto",
        dtype: str = "bfloat16",
        cache_dir: str | None = None,
    ) -> None:
        super().__init__(model_name=model_name or model, device=device, dtype=dtype, batch_size=batch_size,
                         cache_dir=cache_dir)
        if response_format not in RESPONSE_FORMATS:
            raise ModelError(f"response_format must be null or one of {', '.join(sorted(RESPONSE_FORMATS - {None}))}, "
                             f"got {response_format!r}")
        if scoring not in SCORING_MODES:
            raise ModelError(f"scoring must be one of {', '.join(SCORING_MODES)}, got {scoring!r}")
        if isinstance(top_logprobs, bool) or not isinstance(top_logprobs, int) or not 10 <= top_logprobs <= 20:
            raise ModelError(f"top_logprobs must be an integer from 10 to 20 (every digit must fit), got {top_logprobs!r}")
        if not isinstance(preflight, bool):
            raise ModelError(f"preflight must be true or false, got {preflight!r}")
        for name, value, minimum in (("max_concurrency", max_concurrency, 1), ("max_retries", max_retries, 0),
                                     ("transport_retries", transport_retries, 0), ("max_tokens", max_tokens, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ModelError(f"{name} must be an integer >= {minimum}, got {value!r}")
        for name, value in (("timeout_s", timeout_s), ("backoff_s", backoff_s), ("max_backoff_s", max_backoff_s),
                            ("temperature", temperature)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ModelError(f"{name} must be a non-negative number, got {value!r}")
        if timeout_s <= 0:
            raise ModelError(f"timeout_s must be positive, got {timeout_s!r}")
        if str(image_format).lower() not in IMAGE_FORMATS:
            raise ModelError(f"image_format must be one of png, jpeg, webp, got {image_format!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ModelError(f"seed must be an integer or null, got {seed!r}")
        if extra_body is not None and not isinstance(extra_body, dict):
            raise ModelError(f"extra_body must be a mapping or null, got {extra_body!r}")
        self.model = model
        self.base_url = base_url
        self.api_key_env = api_key_env
        self.max_concurrency = max_concurrency
        self.timeout_s = float(timeout_s)
        self.max_retries = max_retries
        self.protocol = protocol
        self._protocol = resolve_protocol(protocol, scoring)
        if scoring == "logits" and num_pass > 1:
            raise ModelError("num_pass > 1 samples replies; scoring: logits reads one distribution (use num_pass: 1)")
        self.response_format = response_format
        self.scoring = scoring
        self.top_logprobs = top_logprobs
        self.preflight = preflight
        if isinstance(num_pass, bool) or not isinstance(num_pass, int) or num_pass < 1:
            raise ModelError(f"num_pass must be a positive integer, got {num_pass!r}")
        if num_pass > 1 and temperature == 0:
            raise ModelError("num_pass > 1 averages independent samples: set temperature > 0 (at temperature 0 "
                             "every pass gives the same reply)")
        self.num_pass = num_pass
        self._pass = 0  # the pass being asked; the request seed is seed + pass
        self.transport_retries = transport_retries
        self.backoff_s = float(backoff_s)
        self.max_backoff_s = float(max_backoff_s)
        self.temperature = float(temperature)
        self.seed = seed
        self.max_tokens = max_tokens
        self.image_format = str(image_format).lower()
        self.extra_body = dict(extra_body) if extra_body else None
        self._client: Any = None
        self._rng = random.Random(0 if seed is None else seed)  # backoff jitter only
        self._rng_lock = threading.Lock()
        self._sleep: Callable[[float], None] = time.sleep  # tests may record the waits

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(model={self.model!r}, base_url={self.base_url!r}, "
                f"api_key_env={self.api_key_env!r})")

    # ------------------------------------------------------------------ life cycle

    def check(self) -> None:
        """Configuration, then (with `preflight`) the server: listed model and one tiny request. No CUDA."""
        self._check_config()
        if self.preflight:  # the pipeline calls check() before the editor loads: a dead server fails now
            import openai

            client = openai.OpenAI(api_key=self._api_key(), base_url=self.base_url, timeout=min(self.timeout_s, 30.0),
                                   max_retries=0)
            try:
                self.run_preflight(client)
            finally:
                client.close()

    def _check_config(self) -> None:
        """Configuration only (no network)."""
        if not self.model:
            raise ModelError("OpenAICompatibleRewardModel needs `model`: the served model name "
                             "(e.g. the id given to `vllm serve`, see GET {base_url}/models)")
        if not str(self.base_url).startswith(("http://", "https://")):
            raise ModelError(f"base_url must start with http:// or https://, got {self.base_url!r}")
        try:
            import openai  # noqa: F401
        except ImportError as exc:  # pragma: no cover - a dependency of the project
            raise ModelError("the `openai` package is needed for OpenAICompatibleRewardModel: "
                             "pip install openai") from exc

    def run_preflight(self, client: Any) -> None:
        """GET /models (the served model must be listed) and one tiny chat request; a ModelError otherwise."""
        import openai

        where = f"judge server {self.base_url}"
        try:
            served = [m.id for m in client.models.list()]
        except openai.APIStatusError as exc:
            if exc.status_code != 404:  # some servers have no /models: the tiny request below still checks
                raise ModelError(self._redact(f"{where}: GET /models failed with HTTP {exc.status_code}: "
                                              f"{_status_message(exc)}")) from None
            served = None
        except (openai.APIConnectionError, openai.APITimeoutError) as exc:
            raise ModelError(self._redact(f"{where} is not reachable ({type(exc).__name__}{_cause(exc)}); start "
                                          "the server or fix base_url (or set preflight: false)")) from None
        if served is not None and self.model not in served:
            close = difflib.get_close_matches(self.model, served, n=1, cutoff=0.3)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ModelError(f"{where} does not serve model {self.model!r}; it serves {served}{hint}")
        kwargs: dict[str, Any] = {"model": self.model, "max_tokens": 16, "temperature": 0.0,
                                  "messages": [{"role": "user", "content": PREFLIGHT_TEXT}]}
        if self.response_format:
            kwargs["response_format"] = {"type": self.response_format}
        if self.extra_body:
            kwargs["extra_body"] = dict(self.extra_body)
        try:
            client.chat.completions.create(**kwargs)
        except openai.APIStatusError as exc:
            hint = " (the server may not support response_format: set response_format: null)" \
                if self.response_format and exc.status_code in (400, 422) else ""
            raise ModelError(self._redact(f"{where}: a test request failed with HTTP {exc.status_code}: "
                                          f"{_status_message(exc)}{hint}")) from None
        except (openai.APIConnectionError, openai.APITimeoutError) as exc:
            raise ModelError(self._redact(f"{where}: a test request failed ({type(exc).__name__}{_cause(exc)})")) \
                from None

    def load(self) -> None:
        if self.loaded:
            return
        self._check_config()  # the server is checked by _load's preflight
        self.device = "remote"  # never cuda: nothing to move on or off a GPU here
        self._load()
        self.loaded = True
        self.on_gpu = False

    def _load(self) -> None:
        import openai

        self._client = openai.OpenAI(api_key=self._api_key(), base_url=self.base_url, timeout=self.timeout_s,
                                     max_retries=0)  # transport retries are ours (backoff, Retry-After)
        log.info("judge %s at %s (key from %s)", self.model, self.base_url,
                 f"${self.api_key_env}" if self._key_from_env() else "placeholder")
        if self.preflight:  # the server may have gone away while the editor ran
            try:
                self.run_preflight(self._client)
            except ModelError:
                self._release()
                raise

    def release(self) -> None:
        """Close the client. No GPU or weights to free, so no gc / torch import (base class does that)."""
        if self.loaded:
            self._release()
        self.loaded = False
        self.on_gpu = False

    def _release(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    # ------------------------------------------------------------------ keys

    def _key_from_env(self) -> bool:
        return bool(self.api_key_env and os.environ.get(self.api_key_env))

    def _api_key(self) -> str:
        if self.api_key_env:
            value = os.environ.get(self.api_key_env)
            if value:
                return value
        return PLACEHOLDER_KEY

    def _redact(self, text: str) -> str:
        key = self._api_key()
        if key != PLACEHOLDER_KEY and len(key) >= 4 and key in text:
            text = text.replace(key, "***")
        return text

    # ------------------------------------------------------------------ scoring

    def score(self, requests: list[ScoreRequest]) -> list[ScoreResult]:
        if not self.loaded or self._client is None:
            raise ModelError("OpenAICompatibleRewardModel.score() called before load()")
        urls: dict[int, str] = {}  # id(image) -> data URL; the requests keep the images alive
        lock = threading.Lock()

        def url_of(image: Image.Image) -> str:
            with lock:
                cached = urls.get(id(image))
            if cached is None:
                cached = image_data_url(image, self.image_format)
                with lock:
                    urls[id(image)] = cached
            return cached

        def chat(conversations: list[list[dict[str, Any]]]) -> list[ChatReply | Exception]:
            workers = max(1, min(self.max_concurrency, len(conversations)))
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="judge-http") as pool:
                return list(pool.map(lambda conv: self._chat_one(conv, url_of), conversations))

        if self.scoring == "logits":
            return self._score_logits(requests, url_of)

        passes = []
        for self._pass in range(self.num_pass):  # self-ensembling: independent samples, seed + pass
            passes.append(score_with_protocol(self._protocol, requests, chat, self.max_retries))
        self._pass = 0
        return combine_passes(passes)

    def _messages(self, conversation: list[dict[str, Any]], url_of: Callable[[Image.Image], str]) -> list[dict]:
        out = []
        for message in conversation:
            content = message["content"]
            if isinstance(content, list):
                parts = []
                for part in content:
                    if part.get("type") == "image":
                        parts.append({"type": "image_url", "image_url": {"url": url_of(part["image"])}})
                    else:
                        parts.append(dict(part))
                content = parts
            out.append({"role": message["role"], "content": content})
        return out

    def _request_kwargs(self, messages: list[dict]) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"model": self.model, "messages": messages, "temperature": self.temperature,
                                  "max_tokens": self.max_tokens}
        if self.seed is not None:
            kwargs["seed"] = self.seed + self._pass
        if self.response_format:
            kwargs["response_format"] = {"type": self.response_format}
        if self.extra_body:
            kwargs["extra_body"] = dict(self.extra_body)
        return kwargs

    def backoff_delay(self, retry: int, retry_after: float | None = None) -> float:
        """Seconds to wait before transport retry number `retry` (1, 2, ...)."""
        if retry_after is not None and math.isfinite(retry_after):
            return min(self.max_backoff_s, max(0.0, retry_after))
        with self._rng_lock:
            u = self._rng.random()
        return min(self.max_backoff_s, self.backoff_s * 2 ** (retry - 1)) * (0.5 + 0.5 * u)

    def _score_logits(self, requests: list[ScoreRequest], url_of: Callable[[Image.Image], str]) -> list[ScoreResult]:
        """Expected 0-10 score from the digits' top log-probabilities (see the module doc)."""
        import torch

        from src.models.reward.chat import conversation
        from src.models.reward.hf_vlm import LOGITS_PREFIX, digit_distribution, distribution_result

        calls = [(conversation(r), prefix) for r in requests for prefix in (LOGITS_PREFIX, LOGITS_PREFIX + "1")]
        workers = max(1, min(self.max_concurrency, len(calls)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="judge-http") as pool:
            replies = list(pool.map(lambda c: self._chat_one(c[0], url_of, logits_prefix=c[1]), calls))
        results = []
        for i in range(len(requests)):
            first, second = replies[2 * i], replies[2 * i + 1]
            failed = next((r for r in (first, second) if isinstance(r, Exception)), None)
            if failed is not None:
                results.append(ScoreResult(status="score_failed", score=None, error=str(failed),
                                           raw_reply=getattr(failed, "raw_reply", None),
                                           details=dict(getattr(failed, "details", {}) or {})))
                continue
            p = torch.tensor([[first.details["top"].get(str(d), 0.0) for d in range(10)]], dtype=torch.float64)
            q = torch.tensor([[second.details["top"].get(str(d), 0.0) for d in range(10)]], dtype=torch.float64)
            res = distribution_result(digit_distribution(p, q)[0])
            res.details.update(top_mass=[float(p.sum()), float(q.sum())], usage=[first.details["usage"],
                               second.details["usage"]], transport_attempts=[first.details["transport_attempts"],
                               second.details["transport_attempts"]])
            results.append(res)
        return results

    def _chat_one(self, conversation: list[dict[str, Any]], url_of: Callable[[Image.Image], str],
                  logits_prefix: str | None = None) -> ChatReply | Exception:
        """One request with transport retries: a reply, or the exception that ended it.

        With `logits_prefix`, the assistant turn is prefilled with it and the reply's `details["top"]`
        maps each top next token to its probability (logits scoring)."""
        import openai

        try:
            kwargs = self._request_kwargs(self._messages(conversation, url_of))
            if logits_prefix is not None:
                kwargs["messages"].append({"role": "assistant", "content": logits_prefix})
                kwargs.pop("response_format", None)  # the prefill continues a JSON object already begun
                kwargs.update(max_tokens=1, logprobs=True, top_logprobs=self.top_logprobs, temperature=0.0)
                kwargs["extra_body"] = {**kwargs.get("extra_body", {}), "continue_final_message": True,
                                        "add_generation_prompt": False}
        except Exception as exc:  # noqa: BLE001 - e.g. an image that can't be encoded
            return ChatFailure(f"could not build the request: {type(exc).__name__}: {exc}")
        attempt = 0
        while True:
            attempt += 1
            retry_after: float | None = None
            try:
                completion = self._client.chat.completions.create(**kwargs)
                if logits_prefix is not None:
                    return self._logprobs_reply(completion, attempt)
                return self._reply(completion, attempt)
            except _Permanent as exc:
                return exc.failure
            except openai.APIStatusError as exc:
                status = exc.status_code
                error = self._redact(f"HTTP {status}: {_status_message(exc)}")
                if not (status in RETRY_STATUS or status >= 500):
                    return ChatFailure(error, details={"status": status, "transport_attempts": attempt})
                retry_after = parse_retry_after(getattr(exc.response, "headers", None))
            except openai.APITimeoutError:
                error = f"timed out after {self.timeout_s:g} s"
            except openai.APIConnectionError as exc:
                error = self._redact(f"connection error: {exc}{_cause(exc)}")
            except Exception as exc:  # noqa: BLE001 - anything else is not a transport problem
                return ChatFailure(self._redact(f"{type(exc).__name__}: {exc}"),
                                   details={"transport_attempts": attempt})
            if attempt > self.transport_retries:
                return ChatFailure(f"gave up after {attempt} attempts: {error}",
                                   details={"transport_attempts": attempt})
            delay = self.backoff_delay(attempt, retry_after)
            log.warning("judge request failed (%s); retry %d/%d in %.2f s", error, attempt, self.transport_retries,
                        delay)
            self._sleep(delay)

    def _reply(self, completion: Any, attempt: int) -> ChatReply:
        choices = getattr(completion, "choices", None) or []
        usage = getattr(completion, "usage", None)
        details: dict[str, Any] = {
            "usage": usage.model_dump(exclude_none=True) if hasattr(usage, "model_dump") else (usage or {}),
            "finish_reason": None, "transport_attempts": attempt, "structured_output": self.response_format,
        }
        if not choices:
            raise _Permanent(ChatFailure("the response has no choices", details=details))
        choice = choices[0]
        message = choice.message
        details["finish_reason"] = choice.finish_reason
        content = message.content if message is not None else None
        refusal = getattr(message, "refusal", None) if message is not None else None
        if refusal:
            raise _Permanent(ChatFailure(f"the judge refused: {refusal}", raw_reply=refusal, details=details))
        if choice.finish_reason in REFUSAL_FINISH_REASONS:
            raise _Permanent(ChatFailure(f"the judge refused (finish_reason {choice.finish_reason!r})",
                                         raw_reply=content or "", details=details))
        if choice.finish_reason == "length":  # cut by max_tokens: never parsed, never retried
            details["reason"] = "truncated"
            raise _Permanent(ChatFailure(
                f"truncated: the reply reached max_tokens ({self.max_tokens}) before it ended (finish_reason "
                "'length') and is not parsed; raise max_tokens (thinking judges need thousands)",
                raw_reply=content or "", details=details))
        if not content or not content.strip():
            raise _Permanent(ChatFailure(f"empty reply (finish_reason {choice.finish_reason!r})",
                                         raw_reply=content or "", details=details))
        return ChatReply(content, details)


    def _logprobs_reply(self, completion: Any, attempt: int) -> ChatReply:
        """The top next-token probabilities of a one-token completion, as `details["top"]`."""
        usage = getattr(completion, "usage", None)
        details: dict[str, Any] = {
            "usage": usage.model_dump(exclude_none=True) if hasattr(usage, "model_dump") else (usage or {}),
            "transport_attempts": attempt,
        }
        choices = getattr(completion, "choices", None) or []
        content = getattr(choices[0].logprobs, "content", None) if choices and choices[0].logprobs else None
        if not content:
            raise _Permanent(ChatFailure("the server returned no logprobs (logits scoring needs `logprobs` and "
                                         "`top_logprobs`; vLLM: --max-logprobs >= top_logprobs)", details=details))
        top: dict[str, float] = {}
        for entry in content[0].top_logprobs or []:
            if entry.token not in top:  # the first (highest) entry of a token string counts
                top[entry.token] = math.exp(entry.logprob)
        details["top"] = top
        return ChatReply(choices[0].message.content or "", details)


def _status_message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])[:500]
        if isinstance(body.get("message"), str):
            return body["message"][:500]
    return str(getattr(exc, "message", exc))[:500]


def _cause(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__
    return f" ({type(cause).__name__}: {cause})" if cause is not None else ""


__all__ = ["OpenAICompatibleRewardModel", "image_data_url", "parse_retry_after", "PLACEHOLDER_KEY"]
