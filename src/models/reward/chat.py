"""The model-independent part of "generate" scoring, shared by every chat judge.

A chat judge answers a conversation with text; `score_by_chat` turns that into `ScoreResult`s:

1. every request gets the conversation `conversation(request, [])`:

       system:  request.prompt.system                       (left out when empty)
       user:    [original image] [edited image] request.prompt.user

2. `chat_fn` answers all pending conversations at once (one batch, one call);
3. each reply goes through `src.scoring.parse.parse_score(reply, lo, hi)`;
4. requests whose reply can't be parsed are asked again, at most `max_retries` more times. The
   conversation is *extended*, not repeated (greedy / temperature-0 decoding would give the same
   reply again): the failed reply becomes an assistant turn, followed by the user turn
   `RETRY_INSTRUCTION`. Only the unparseable requests are sent again.

After the last failure the result is `score_failed` with the last reply in `raw_reply` — a score is
never invented. `attempts` counts the chat calls made for the request.

`chat_fn(items) -> list[str | ChatReply | Exception]`, one item per conversation, same order:

- `str`: the reply text;
- `ChatReply(text, details)`: the reply text plus per-call details (usage, finish reason, ...), which
  end up in `ScoreResult.details` (those of earlier calls for the same request go to
  `details["previous"]`);
- an `Exception`: the request failed for good (transport gave up, the server refused, ...). It is
  recorded (`score_failed`, `error` = the exception text) and NOT retried here — transport retries
  are the caller's job. A `ChatFailure` may carry the text the judge did send (e.g. a refusal) in
  `raw_reply`, and `details`.

If `chat_fn` itself raises, the exception propagates (callers retry a failing batch one by one).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from src.models.base import ScoreRequest, ScoreResult
from src.scoring.parse import ScoreParseError, parse_score

RETRY_INSTRUCTION = (
    'Your previous reply did not contain a valid score. Reply only with JSON '
    '{"score": <0-10>, "reasoning": "<one sentence>"}'
)


@dataclass
class ChatReply:
    """A reply's text plus details of the call that produced it (kept in ScoreResult.details)."""

    text: str
    details: dict[str, Any] = field(default_factory=dict)


class ChatFailure(Exception):
    """A request that failed for good; `raw_reply` is whatever text the judge sent (a refusal, "")."""

    def __init__(self, message: str, raw_reply: str | None = None, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.raw_reply = raw_reply
        self.details = dict(details or {})


def conversation(request: ScoreRequest, history: list[str] | None = None) -> list[dict[str, Any]]:
    """OpenAI-style messages with PIL images (`{"type": "image", "image": <PIL.Image>}` parts).

    `history` holds the earlier replies that could not be parsed; each becomes an assistant turn
    followed by the corrective user turn `RETRY_INSTRUCTION`. The system message is left out when the
    prompt's system text is empty (chat templates would otherwise render an empty system block).
    """
    messages: list[dict[str, Any]] = []
    if request.prompt.system:
        messages.append({"role": "system", "content": request.prompt.system})
    messages.append({"role": "user", "content": [
        {"type": "image", "image": request.original},
        {"type": "image", "image": request.edited},
        {"type": "text", "text": request.prompt.user},
    ]})
    for reply in history or []:
        messages.append({"role": "assistant", "content": reply})
        messages.append({"role": "user", "content": RETRY_INSTRUCTION})
    return messages


def without_images(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same messages with image parts reduced to `{"type": "image"}` placeholders (for processors
    that render the chat template as text and take the images separately)."""
    out = []
    for message in messages:
        content = message["content"]
        if isinstance(content, list):
            content = [{"type": "image"} if part.get("type") == "image" else dict(part) for part in content]
        out.append({**message, "content": content})
    return out


def _num(x: float) -> str:
    return f"{float(x):g}"


def score_by_chat(
    requests: list[ScoreRequest],
    chat_fn: Callable[[list[Any]], list[str | ChatReply | BaseException]],
    max_retries: int,
    lo: float = 0,
    hi: float = 10,
    *,
    build: Callable[[ScoreRequest, list[str]], Any] = conversation,
) -> list[ScoreResult]:
    """Score `requests` by chatting (see the module doc); one result per request, same order.

    `build(request, history)` makes what `chat_fn` receives for one request; the default is
    `conversation`. A judge that renders prompts itself may pass e.g. `lambda r, h: (r, h)`.
    """
    if not isinstance(max_retries, int) or max_retries < 0:
        raise ValueError(f"max_retries must be a non-negative integer, got {max_retries!r}")
    n = len(requests)
    results: list[ScoreResult | None] = [None] * n
    histories: list[list[str]] = [[] for _ in range(n)]
    calls: list[list[dict[str, Any]]] = [[] for _ in range(n)]  # details of each call, per request
    errors: list[str] = [""] * n
    pending = list(range(n))
    for attempt in range(1, max_retries + 2):
        if not pending:
            break
        replies = chat_fn([build(requests[i], list(histories[i])) for i in pending])
        if len(replies) != len(pending):
            raise RuntimeError(f"chat_fn returned {len(replies)} replies for {len(pending)} conversations")
        still = []
        for i, reply in zip(pending, replies):
            if isinstance(reply, BaseException):
                details = dict(getattr(reply, "details", None) or {})
                message = getattr(reply, "message", None) if isinstance(reply, ChatFailure) else None
                results[i] = ScoreResult(
                    status="score_failed", score=None, raw_reply=getattr(reply, "raw_reply", None),
                    error=message or f"{type(reply).__name__}: {reply}", attempts=attempt,
                    details=_with_previous(details, calls[i]),
                )
                continue
            if isinstance(reply, ChatReply):
                text, details = reply.text, dict(reply.details)
            else:
                text, details = reply, {}
            try:
                parsed = parse_score(text, lo, hi)
            except ScoreParseError as exc:
                histories[i].append(text if isinstance(text, str) else repr(text))
                calls[i].append(details)
                errors[i] = exc.message
                still.append(i)
                continue
            details["parse_method"] = parsed.method
            results[i] = ScoreResult(status="scored", score=float(parsed.score), raw_reply=text,
                                     reasoning=parsed.reasoning, attempts=attempt,
                                     details=_with_previous(details, calls[i]))
        pending = still
    for i in pending:
        last = calls[i].pop() if calls[i] else {}
        results[i] = ScoreResult(status="score_failed", score=None, raw_reply=histories[i][-1],
                                 error=f"could not parse a {_num(lo)}-{_num(hi)} score: {errors[i]}",
                                 attempts=max_retries + 1, details=_with_previous(last, calls[i]))
    return results  # type: ignore[return-value]


def _with_previous(details: dict[str, Any], previous: list[dict[str, Any]]) -> dict[str, Any]:
    """`details` of the last call, plus those of the earlier calls when any of them had details."""
    if any(previous):
        details = dict(details, previous=list(previous))
    return details


__all__ = ["RETRY_INSTRUCTION", "ChatReply", "ChatFailure", "conversation", "without_images", "score_by_chat"]
