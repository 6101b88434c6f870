"""Turn a judge's free-text reply into a score, or fail loudly. Never invent a number.

`parse_score(reply, lo=0, hi=10)` tries, in this order, and returns at the first parser that finds a
score (the `method` field of the result names it):

1. ``json``           the whole reply (after cleaning, see below) is a JSON object;
2. ``fenced_json``    a ```json ... ``` (or bare ``` ... ```) fenced block holding an object;
3. ``embedded_json``  a ``{...}`` object somewhere in the text, parsed tolerantly (single quotes,
                      trailing commas, unquoted keys, Python True/False/None);
4. ``regex``          free-text patterns: "Score: 7", "**Overall score**: 7.5", "score of 7",
                      "7/10", "7 out of 10", "评分：8", "得分: 8 分", "我给 8 分";
5. ``bare_number``    the reply is a number and nothing else ("7", "**7**", "7.").

Cleaning before parsing: Unicode NFKC (full-width digits and colons become ASCII), `<think>...</think>`
blocks removed (an unclosed `<think>` drops the rest of the reply; a stray `</think>` drops everything
before it, as Qwen3 thinking templates open the tag in the prompt).

An object's score is read from the first present key of `SCORE_KEYS` (case-insensitive), at the top
level or, failing that, in nested objects; numbers, numeric strings and "7/10" strings are accepted,
booleans are not. The reasoning comes from `REASONING_KEYS`.

Failures (`ScoreParseError`): empty reply; nothing found (refusals included); a value outside
[lo, hi] (11 and -1 fail, they are not clamped); non-finite values; two *different* scores found by
the same parser (e.g. "Score: 3 ... Score: 8", or two JSON objects that disagree); a number that runs
into the end of a reply holding an unclosed ``{`` (truncated JSON: "{"score": 1" may have been "10").

Numbers that only look like the score (from real judges' replies) are not read as one: "a score of 7
out of 15" (another scale), "a score of 10-0" / "7-8" (a range or a pair), "a score of 10 or below
..." (a threshold), "6 for the left image and 7 for ..." (per-image scores). When nothing else in the
reply is a score, the reply fails as ambiguous, naming the reason.

Bounded cost: every step is linear in the reply's length (one-pass brace matching and thinking
removal, possessive quantifiers where a pattern could backtrack); a reply over `MAX_REPLY_CHARS`, an
answer over `MAX_ANSWER_CHARS` once the thinking is removed, or more than `MAX_CANDIDATES` JSON
objects / fenced blocks fail with a message saying so. tests/test_parse_bounds.py times adversarial
replies and fuzzes the parsers with hypothesis.
"""

from __future__ import annotations

import ast
import json
import math
import re
import unicodedata
from dataclasses import dataclass
from typing import Any


class ScoreParseError(ValueError):
    """No valid score could be read from a reply; the message says why."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass
class ParsedScore:
    score: float
    reasoning: str | None
    method: str  # json | fenced_json | embedded_json | regex | bare_number


# Keys are matched case-insensitively, spaces/hyphens treated as underscores; earlier keys win.
SCORE_KEYS = ("score", "overall_score", "final_score", "total_score", "overall", "rating",
              "评分", "得分", "分数", "总分")
REASONING_KEYS = ("reasoning", "reason", "explanation", "rationale", "analysis", "justification",
                  "comment", "理由", "原因", "解释", "分析")

_NUM = r"[+-]?\d+(?:\.\d+)?"
_REFUSAL_RE = re.compile(
    r"^\s*(?:i\s*(?:'m|am)\s*sorry|sorry|i\s*(?:cannot|can't|can\s*not|won't|am\s*unable|'m\s*unable)|"
    r"as\s+an\s+ai|unfortunately|抱歉|对不起|我无法|无法)",
    re.IGNORECASE,
)


# ----------------------------------------------------------------------------- cleaning


# A score reply is a few hundred characters; these caps bound the work spent on a runaway reply (a
# model stuck repeating itself). Everything below them is parsed in linear time.
MAX_REPLY_CHARS = 200_000  # the raw reply, thinking included
MAX_ANSWER_CHARS = 32_000  # what is left once the thinking is removed
MAX_CANDIDATES = 64  # fenced blocks or {...} objects in one answer: more is not a score reply

_THINK_TAG = re.compile(r"<(/?)think>", re.IGNORECASE)


def _strip_thinking(text: str) -> str:
    """Drop `<think>...</think>` blocks in one pass: a closed block becomes a space, a stray `</think>`
    drops everything before it, an unclosed `<think>` drops everything after it."""
    out: list[str] = []
    pos, inside = 0, False
    for tag in _THINK_TAG.finditer(text):
        closing = bool(tag.group(1))
        if not inside and not closing:
            out.append(text[pos:tag.start()])
            inside = True
        elif inside and closing:
            out.append(" ")
            pos, inside = tag.end(), False
        elif not inside and closing:  # the opening tag was part of the prompt
            out, pos = [], tag.end()
        # an opening tag inside a block is part of the thinking
    if not inside:
        out.append(text[pos:])
    return "".join(out)


def _clean(reply: str) -> str:
    if len(reply) > MAX_REPLY_CHARS:
        raise ScoreParseError(f"reply too long to parse: {len(reply)} characters (the cap is {MAX_REPLY_CHARS})")
    text = _strip_thinking(unicodedata.normalize("NFKC", reply)).strip()
    if len(text) > MAX_ANSWER_CHARS:
        raise ScoreParseError(f"answer too long to parse: {len(text)} characters after the thinking block "
                              f"(the cap is {MAX_ANSWER_CHARS})")
    return text


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


# ----------------------------------------------------------------------------- values


def _norm_key(key: Any) -> str:
    return re.sub(r"[\s\-]+", "_", str(key).strip().lower())


def _to_number(value: Any, hi: float) -> float | None:
    """A score value from JSON: number, numeric string, or "7/10" string; None when not a number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        s = value.strip().rstrip("分").strip()
        if re.fullmatch(_NUM, s):
            return float(s)
        m = re.fullmatch(rf"({_NUM})\s*(?:/|out\s+of)\s*({_NUM})", s, re.IGNORECASE)
        if m and float(m.group(2)) == float(hi):
            return float(m.group(1))
    return None


def _find_score_in_obj(obj: Any, hi: float, depth: int = 0) -> tuple[Any, bool]:
    """(raw value, found) for the first score key; nested objects searched only if the top has none."""
    if not isinstance(obj, dict) or depth > 3:
        return None, False
    keys = {_norm_key(k): k for k in obj}
    for key in SCORE_KEYS:
        if key in keys:
            return obj[keys[key]], True
    found = []
    for v in obj.values():
        candidates = v if isinstance(v, list) else [v]
        for c in candidates:
            val, ok = _find_score_in_obj(c, hi, depth + 1)
            if ok:
                found.append(val)
    if len({json.dumps(f, sort_keys=True, default=str) for f in found}) == 1:
        return found[0], True
    if found:
        raise ScoreParseError(f"ambiguous: several nested scores {found!r}")
    return None, False


def _find_reasoning(obj: Any) -> str | None:
    if not isinstance(obj, dict):
        return None
    keys = {_norm_key(k): k for k in obj}
    for key in REASONING_KEYS:
        if key in keys and obj[keys[key]] is not None:
            val = obj[keys[key]]
            return val if isinstance(val, str) else json.dumps(val, ensure_ascii=False)
    for v in obj.values():
        if isinstance(v, dict):
            r = _find_reasoning(v)
            if r is not None:
                return r
    return None


def _check_range(value: float, lo: float, hi: float, where: str) -> float:
    if not math.isfinite(value):
        raise ScoreParseError(f"{where}: score {value!r} is not a finite number")
    if value < lo or value > hi:
        raise ScoreParseError(f"{where}: score {_fmt(value)} is outside [{_fmt(lo)}, {_fmt(hi)}]")
    return value


def _score_from_obj(obj: Any, lo: float, hi: float, where: str) -> float | None:
    """The object's score, None when it has no score key; raises on an invalid value."""
    raw, found = _find_score_in_obj(obj, hi)
    if not found:
        return None
    value = _to_number(raw, hi)
    if value is None:
        raise ScoreParseError(f"{where}: score value {raw!r} is not a number")
    return _check_range(value, lo, hi, where)


# ----------------------------------------------------------------------------- tolerant JSON


def _loads_strict(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _loads_tolerant(text: str) -> Any:
    obj = _loads_strict(text)
    if obj is not None:
        return obj
    fixed = re.sub(r",\s*([}\]])", r"\1", text)  # trailing commas
    fixed = re.sub(r"([{,]\s*+)([A-Za-z_\u4e00-\u9fff][\w\u4e00-\u9fff]*+(?: [\w\u4e00-\u9fff]++)*+)\s*+:",
                   r'\1"\2":', fixed)  # bare keys (possessive: linear time)
    obj = _loads_strict(fixed)
    if obj is not None:
        return obj
    for candidate in (fixed, re.sub(r"\btrue\b", "True", re.sub(r"\bfalse\b", "False",
                                                                 re.sub(r"\bnull\b", "None", fixed)))):
        try:  # single quotes, Python literals
            obj = ast.literal_eval(candidate)
        except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
            continue
        if isinstance(obj, dict):
            return obj
    return None


def _balanced_objects(text: str) -> list[str]:
    """The outermost `{...}` substrings with balanced braces, in one pass (linear time).

    Quotes are respected inside braces (an apostrophe between two letters, "don't", is not a quote;
    a quote left open ends at the line's end). An opening brace that never closes is skipped, so
    objects after or inside it are still found."""
    spans: list[tuple[int, int]] = []
    stack: list[int] = []
    quote = None
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 2
                continue
            if ch == quote or ch == "\n":
                quote = None
        elif ch == "{":
            stack.append(i)
        elif ch == "}":
            if stack:
                spans.append((stack.pop(), i + 1))
        elif ch in "\"'" and stack:
            if not (ch == "'" and 0 < i < n - 1 and text[i - 1].isalnum() and text[i + 1].isalnum()):
                quote = ch
        i += 1
    out, end = [], -1
    for start, stop in sorted(spans):
        if start >= end:  # not inside the previous outermost object
            out.append(text[start:stop])
            end = stop
    return out


def _capped(items: list[str], what: str) -> list[str]:
    if len(items) > MAX_CANDIDATES:
        raise ScoreParseError(f"the reply holds {len(items)} {what} (more than {MAX_CANDIDATES}); not a score reply")
    return items


def fenced_blocks(text: str) -> list[str]:
    """The bodies of ```json ... ``` (or bare ``` ... ```) fenced blocks, stripped."""
    return _capped([b.strip() for b in re.findall(r"```[ \t]*+(?:json5|json|JSON)?[ \t]*+\n?(.*?)```", text,
                                                 flags=re.DOTALL)], "fenced blocks")


def json_objects(text: str) -> list[str]:
    """The outermost balanced `{...}` substrings (see `_balanced_objects`)."""
    return _capped(_balanced_objects(text), "{...} objects")


def _unique_score(values: list[float], where: str) -> float | None:
    distinct = sorted(set(values))
    if len(distinct) > 1:
        raise ScoreParseError(f"ambiguous: {where} found different scores {', '.join(map(_fmt, distinct))}")
    return distinct[0] if distinct else None


# ----------------------------------------------------------------------------- the parsers


def _parse_json(text: str, lo: float, hi: float) -> ParsedScore | None:
    obj = _loads_strict(text)
    if not isinstance(obj, dict):
        return None
    score = _score_from_obj(obj, lo, hi, "json")
    if score is None:
        return None
    return ParsedScore(score, _find_reasoning(obj), "json")


def _parse_fenced(text: str, lo: float, hi: float) -> ParsedScore | None:
    hits = []
    for block in fenced_blocks(text):
        obj = _loads_tolerant(block)
        if not isinstance(obj, dict):
            continue
        score = _score_from_obj(obj, lo, hi, "fenced json")
        if score is not None:
            hits.append((score, _find_reasoning(obj)))
    score = _unique_score([h[0] for h in hits], "fenced json blocks")
    if score is None:
        return None
    return ParsedScore(score, next((r for s, r in hits if r), None), "fenced_json")


def _parse_embedded(text: str, lo: float, hi: float) -> ParsedScore | None:
    hits = []
    for candidate in json_objects(text):
        obj = _loads_tolerant(candidate)
        if not isinstance(obj, dict):
            continue
        score = _score_from_obj(obj, lo, hi, "embedded json")
        if score is not None:
            hits.append((score, _find_reasoning(obj)))
    score = _unique_score([h[0] for h in hits], "embedded json objects")
    if score is None:
        return None
    return ParsedScore(score, next((r for s, r in hits if r), None), "embedded_json")


def _regex_patterns(hi: float) -> list[tuple[re.Pattern, bool]]:
    """(pattern, keyed): `keyed` patterns name a score and a number ("Score: 7"); the number they read
    is checked against what follows it (see `_not_a_score`). Quantifiers next to each other are
    possessive so that a long run of spaces costs linear time."""
    den = re.escape(_fmt(hi))
    key_en = r"(?:(?:overall|final|total)[\s_]++)?(?:score|rating)"
    key_zh = r"(?:最终|综合|总体)?(?:评分|得分|分数|总分|打分)"
    pad = r"[\"'*_\s]*+"
    sep = r"(?:[:=]|(?<=\s)(?:is|of|would\s++be)(?=\s)|为|是)"
    num = rf"(?<![\d.])({_NUM})(?![\d])(?!\.\d)"
    return [
        # "Score: 7", "**Overall score:** 7.5", "score of 7", "rating = 8", '"score": 7' (broken JSON)
        (re.compile(rf"(?<![A-Za-z_]){key_en}{pad}{sep}{pad}{num}", re.IGNORECASE), True),
        # "评分：8", "得分: 8 分", "分数为8"
        (re.compile(rf"{key_zh}{pad}{sep}{pad}{num}"), True),
        # "7/10", "7 / 10", "7 out of 10"
        (re.compile(rf"{num}\s*+(?:/|out\s++of)\s*+{den}(?!\d)(?!\.\d)", re.IGNORECASE), False),
        # "我给 8 分" (not "10分制", "满分10分")
        (re.compile(rf"(?<!满分)(?<!满分\s)(?<!满分为)(?<!满分是){num}\s*+分(?!制|钟|之|数|析|别|开|布|类)"), False),
        # "I would rate it 8", "I'd give it a 7"
        (re.compile(rf"\b(?:rate|give)\s++(?:it|this(?:\s++edit)?|the\s++edit)\s++(?:a\s++|an\s++)?{num}(?!\s*%)",
                    re.IGNORECASE), True),
    ]


_IMAGE_WORDS = r"(?:left|right|first|second|third|top|bottom|original|edited|source|target|input|output)"


def _not_a_score(after: str, hi: float) -> str | None:
    """Why the number a keyed pattern read is not the reply's score, judging by the text right after
    it; None when nothing speaks against it."""
    m = re.match(rf"\s*+(?:/|out\s++of)\s*+({_NUM})", after, re.IGNORECASE)
    if m and float(m.group(1)) != float(hi):
        return f"a score on another scale ('out of {m.group(1)}', expected {_fmt(hi)})"
    if re.match(r"\s*+(?:-|–|—|~|to)\s*+\d", after, re.IGNORECASE):
        return "a range or a pair of numbers, not one score"
    if re.match(r"\s*+(?:or|and)\s++(?:below|above|less|more|lower|higher|under|over|fewer|greater|up|\d)",
                after, re.IGNORECASE):
        return "a threshold ('or below', 'or above'), not a score"
    if re.match(rf"\s*+(?:points?\s++)?(?:for|to)\s++(?:the\s++)?{_IMAGE_WORDS}\b", after, re.IGNORECASE):
        return "a score for one of several images, not one score for the edit"
    return None


def _parse_regex(text: str, lo: float, hi: float) -> ParsedScore | None:
    values: list[float] = []
    rejected: list[str] = []
    unclosed_brace = text.count("{") > text.count("}")
    end = len(text.rstrip())
    for pattern, keyed in _regex_patterns(hi):
        for m in pattern.finditer(text):
            if unclosed_brace and m.end(1) == end:
                raise ScoreParseError(
                    f"truncated reply: score {m.group(1)!r} runs into the end of an unclosed JSON object"
                )
            reason = _not_a_score(text[m.end(1):m.end(1) + 80], hi) if keyed else None
            if reason:
                rejected.append(f"{m.group(0).strip()!r} is {reason}")
                continue
            values.append(float(m.group(1)))
    # a number given per image ("6 for the left image and 7 for the right one") is no score of the edit
    if values and re.search(rf"(?<![\d.]){_NUM}\s*+(?:points?\s++)?for\s++(?:the\s++)?{_IMAGE_WORDS}\s++"
                            r"(?:image|picture|photo|one)", text, re.IGNORECASE):
        raise ScoreParseError("ambiguous: the reply scores several images separately, not the edit")
    score = _unique_score(values, "free text")
    if score is None:
        if rejected:
            raise ScoreParseError(f"ambiguous: {'; '.join(rejected[:3])}")
        return None
    _check_range(score, lo, hi, "free text")
    return ParsedScore(score, text, "regex")


def _parse_bare(text: str, lo: float, hi: float) -> ParsedScore | None:
    m = re.fullmatch(rf"[\s*_\"'`]*+({_NUM})[\s*_\"'`]*+\.?\s*+", text)
    if not m:
        return None
    return ParsedScore(_check_range(float(m.group(1)), lo, hi, "bare number"), None, "bare_number")


_PARSERS = (_parse_json, _parse_fenced, _parse_embedded, _parse_regex, _parse_bare)


def parse_score(reply: str, lo: float = 0, hi: float = 10) -> ParsedScore:
    """Read one score in [lo, hi] from a judge reply; raise `ScoreParseError` when there is none."""
    if reply is None or not isinstance(reply, str):
        raise ScoreParseError(f"reply is not text: {type(reply).__name__}")
    text = _clean(reply)
    if not text:
        raise ScoreParseError("empty reply" if not reply.strip() else "reply holds only thinking, no answer")
    for parser in _PARSERS:
        result = parser(text, float(lo), float(hi))
        if result is not None:
            return result
    if _REFUSAL_RE.search(text):
        raise ScoreParseError(f"refusal, no score: {text[:120]!r}")
    raise ScoreParseError(f"no score found in reply: {text[:120]!r}")
