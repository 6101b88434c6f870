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

from dataclasses import dataclass, field, replace
from typing import Any, Callable

from src.models.base import ScoreRequest, ScoreResult
from src.scoring.parse import ScoreParseError
from src.scoring.protocols import (PairContext, ParsedValues, Protocol, ProtocolError, ProtocolSet, Query, QueryAnswer,
                                   parse_values, protocol_for, resolve_protocols, resolve_roles)

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
        *({"type": "image", "image": image} for image in request.images()),
        {"type": "text", "text": request.prompt.user},
    ]})
    for reply in history or []:
        messages.append({"role": "assistant", "content": reply})
        messages.append({"role": "user", "content": request.prompt.retry or RETRY_INSTRUCTION})
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


def ask(
    requests: list[ScoreRequest],
    chat_fn: Callable[[list[Any]], list[str | ChatReply | BaseException]],
    parse: Callable[[str], ParsedValues],
    max_retries: int,
    *,
    build: Callable[[ScoreRequest, list[str]], Any] = conversation,
    what: str = "the reply",
) -> list[QueryAnswer]:
    """Ask every request once, re-ask (at most `max_retries` times) those whose reply `parse` rejects.

    One `QueryAnswer` per request, same order. `build(request, history)` makes what `chat_fn`
    receives for one request; the default is `conversation`.
    """
    if not isinstance(max_retries, int) or max_retries < 0:
        raise ValueError(f"max_retries must be a non-negative integer, got {max_retries!r}")
    n = len(requests)
    answers: list[QueryAnswer | None] = [None] * n
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
                answers[i] = QueryAnswer(ok=False, raw_reply=getattr(reply, "raw_reply", None),
                                         error=message or f"{type(reply).__name__}: {reply}", attempts=attempt,
                                         details=_with_previous(details, calls[i]))
                continue
            text, details = (reply.text, dict(reply.details)) if isinstance(reply, ChatReply) else (reply, {})
            try:
                parsed = parse(text)
            except ScoreParseError as exc:
                histories[i].append(text if isinstance(text, str) else repr(text))
                calls[i].append(details)
                errors[i] = exc.message
                still.append(i)
                continue
            details["parse_method"] = parsed.method
            answers[i] = QueryAnswer(ok=True, values=parsed.values, raw_reply=text, reasoning=parsed.reasoning,
                                     method=parsed.method, attempts=attempt, details=_with_previous(details, calls[i]))
        pending = still
    for i in pending:
        last = calls[i].pop() if calls[i] else {}
        answers[i] = QueryAnswer(ok=False, raw_reply=histories[i][-1], error=f"could not parse {what}: {errors[i]}",
                                 attempts=max_retries + 1, details=_with_previous(last, calls[i]))
    return answers  # type: ignore[return-value]


def pair_context(request: ScoreRequest) -> PairContext:
    return PairContext(request.category, dict(request.metadata or {}), tuple(request.named_images or {}))


def query_request(request: ScoreRequest, query: Query) -> ScoreRequest:
    """The request as one query of a protocol asks it: the query's prompt, images and retry text.

    The pipeline renders every query's prompt into `request.prompts` (with the pair's metadata and the
    user's prompt files); a request without it (tests, direct use) renders the built-in template here.
    Raises ValueError when the pair lacks an image the query shows the judge."""
    roles = resolve_roles(query.images, request.named_images)
    if query.name in (request.prompts or {}):
        prompt = replace(request.prompts[query.name], retry=query.retry)
    elif query.template is None:
        prompt = replace(request.prompt, retry=query.retry)
    else:
        from src.prompts import render_prompt

        variables = prompt_variables(request, roles)
        lacking = [n for n in query.needs if variables.get(n) in (None, "")]
        if lacking:
            raise ValueError(f"the {query.name!r} query needs the pair's {lacking[0]}, which is missing or empty")
        prompt = replace(render_prompt(query.template, **variables), retry=query.retry)
    return replace(request, prompt=prompt, image_roles=roles)


def score_with_protocol(
    protocol: Protocol | ProtocolSet,
    requests: list[ScoreRequest],
    chat_fn: Callable[[list[Any]], list[str | ChatReply | BaseException]],
    max_retries: int,
    *,
    build: Callable[[ScoreRequest, list[str]], Any] = conversation,
) -> list[ScoreResult]:
    """Ask each request the queries its protocol asks that pair, then combine (see src/scoring/protocols.py).

    Requests that share a query are asked together (one batch per query). A pair is `scored` only
    when every query it was asked parsed; otherwise `score_failed`, naming the query, with every raw
    reply kept — a score is never invented.
    """
    plans: list[tuple[Protocol | None, tuple[Query, ...], PairContext, str | None]] = []
    for request in requests:
        ctx = pair_context(request)
        try:
            chosen = protocol_for(protocol, request.category)
            plans.append((chosen, chosen.queries_for(ctx), ctx, None))
        except ProtocolError as e:
            plans.append((None, (), ctx, str(e)))
    answers: list[dict[str, QueryAnswer]] = [{} for _ in requests]
    groups: dict[tuple[str, str], list[int]] = {}
    for i, (chosen, queries, _, _) in enumerate(plans):
        for query in queries:
            groups.setdefault((chosen.name, query.name), []).append(i)
    for (pname, qname), indices in groups.items():
        query = next(q for q in plans[indices[0]][1] if q.name == qname)
        subs, asked = [], []
        for i in indices:
            try:
                subs.append(query_request(requests[i], query))
                asked.append(i)
            except (ValueError, KeyError) as e:  # a missing image or metadata field: this pair fails
                answers[i][qname] = QueryAnswer(ok=False, error=f"cannot ask {qname!r}: {e}")
        if subs:
            for i, answer in zip(asked, ask(subs, chat_fn, lambda text, q=query: parse_values(text, q), max_retries,
                                            build=build, what=_what(query))):
                answers[i][qname] = answer
    results = []
    for i, (chosen, queries, ctx, error) in enumerate(plans):
        if chosen is None or not queries:
            results.append(ScoreResult(status="score_failed", score=None, attempts=0,
                                       error=error or f"protocol {chosen.name!r} asks this pair nothing"))
            continue
        results.append(_combine(chosen, queries, [answers[i][q.name] for q in queries], ctx))
    return results


def _what(query: Query) -> str:
    if len(query.dims) == 1:
        return f"a {_num(query.lo)}-{_num(query.hi)} score"
    return f"{', '.join(query.dims)} ({_num(query.lo)}-{_num(query.hi)} each)"


def _combine(protocol: Protocol, queries: tuple[Query, ...], answers: list[QueryAnswer],
             ctx: PairContext | None = None) -> ScoreResult:
    attempts = sum(a.attempts for a in answers)
    if len(queries) == 1:  # one query: its reply and details are the record's own
        raw, reasoning, details = answers[0].raw_reply, answers[0].reasoning, dict(answers[0].details)
    else:
        raw = "\n\n".join(f"[{q.name}]\n{a.raw_reply}" for q, a in zip(queries, answers) if a.raw_reply is not None) or None
        reasoning = "\n".join(f"[{q.name}] {a.reasoning}" for q, a in zip(queries, answers) if a.reasoning) or None
        details = {"queries": {q.name: {"raw_reply": a.raw_reply, "reasoning": a.reasoning, "values": a.values,
                                        "attempts": a.attempts, "error": a.error, **a.details}
                               for q, a in zip(queries, answers)}}
    details["protocol"] = protocol.name
    failed = [(q, a) for q, a in zip(queries, answers) if not a.ok]
    if failed:
        error = "; ".join(a.error if len(queries) == 1 else f"{q.name}: {a.error}" for q, a in failed)
        return ScoreResult(status="score_failed", score=None, raw_reply=raw, reasoning=reasoning, error=error,
                           attempts=attempts, details=details)
    values = {f"{q.name}.{dim}": v for q, a in zip(queries, answers) for dim, v in a.values.items()}
    try:
        dims = protocol.combine_for(values, ctx)
    except (ProtocolError, KeyError, ValueError) as e:
        return ScoreResult(status="score_failed", score=None, raw_reply=raw, reasoning=reasoning, attempts=attempts,
                           error=f"the {protocol.name} formula cannot combine {values}: {e}", details=details)
    if protocol.dims:
        details["dimensions"] = {k: v for k, v in dims.items() if k != "overall"}
    return ScoreResult(status="scored", score=float(dims["overall"]), raw_reply=raw, reasoning=reasoning,
                       attempts=attempts, details=details)


def combine_passes(passes: list[list[ScoreResult]]) -> list[ScoreResult]:
    """Self-ensembling: the mean of `num_pass` independent passes, every pass kept in `details["passes"]`.

    A pair is `scored` only when every pass scored it (a mean over fewer passes would weigh pairs
    differently); otherwise it is `score_failed`, naming the failed passes, with all raw replies.
    """
    if len(passes) == 1:
        return passes[0]
    out = []
    for results in zip(*passes):
        raw = "\n\n".join(f"[pass {k}]\n{r.raw_reply}" for k, r in enumerate(results) if r.raw_reply is not None) or None
        details: dict[str, Any] = {"num_pass": len(results), "passes": [
            {"status": r.status, "score": r.score, "raw_reply": r.raw_reply, "reasoning": r.reasoning,
             "error": r.error, "attempts": r.attempts, "details": r.details} for r in results]}
        attempts = sum(r.attempts for r in results)
        failed = [k for k, r in enumerate(results) if r.status != "scored"]
        if failed:
            errors = "; ".join(f"pass {k}: {results[k].error}" for k in failed)
            out.append(ScoreResult(status="score_failed", score=None, raw_reply=raw, error=errors, attempts=attempts,
                                   details=details))
            continue
        dims = [r.details.get("dimensions") or {} for r in results]
        if dims[0]:
            details["dimensions"] = {k: sum(d[k] for d in dims) / len(dims) for k in dims[0]}
        out.append(ScoreResult(status="scored", score=sum(r.score for r in results) / len(results), raw_reply=raw,
                               reasoning=results[0].reasoning, attempts=attempts, details=details))
    return out


def resolve_protocol(name: Any, scoring: str = "generate") -> Protocol | ProtocolSet:
    """The protocol(s) a judge's `protocol` init_arg names (a name, or {default, categories} for several
    protocols in one run); `logits` scoring needs single-score protocols."""
    from src.models.base import ModelError

    try:
        protocol = resolve_protocols(name)
    except ProtocolError as e:
        raise ModelError(str(e)) from None
    if scoring == "logits" and not protocol.supports_logits:
        raise ModelError(f"scoring: logits reads one 0-10 score from the next-token distribution; protocol "
                         f"{name!r} asks for several values — use scoring: generate, or protocol: category_0to10")
    return protocol


def score_by_chat(
    requests: list[ScoreRequest],
    chat_fn: Callable[[list[Any]], list[str | ChatReply | BaseException]],
    max_retries: int,
    lo: float = 0,
    hi: float = 10,
    *,
    build: Callable[[ScoreRequest, list[str]], Any] = conversation,
) -> list[ScoreResult]:
    """One `lo`-`hi` score per request from the request's own prompt (the category_0to10 protocol)."""
    query = Query("score", None, ("original", "edited"), ("score",), lo, hi)
    protocol = Protocol("category_0to10", (query,), lambda v, ctx=None: {"overall": v["score.score"]}, ())
    answers = ask(requests, chat_fn, lambda text: parse_values(text, query), max_retries, build=build,
                  what=_what(query))
    return [_combine(protocol, (query,), [answer]) for answer in answers]


def _with_previous(details: dict[str, Any], previous: list[dict[str, Any]]) -> dict[str, Any]:
    """`details` of the last call, plus those of the earlier calls when any of them had details."""
    if any(previous):
        details = dict(details, previous=list(previous))
    return details


def prompt_variables(request: ScoreRequest, roles: tuple[str, ...] | None = None) -> dict[str, Any]:
    from src.prompts import template_variables

    return template_variables(instruction=request.instruction, description=request.description,
                              category=request.category, pair_id=request.pair_id, metadata=request.metadata,
                              image_roles=roles if roles is not None else request.image_roles)


__all__ = ["RETRY_INSTRUCTION", "ChatReply", "ChatFailure", "conversation", "without_images", "ask",
           "score_by_chat", "score_with_protocol", "combine_passes"]
