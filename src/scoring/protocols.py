"""Judge protocols: prompt templates + a reply schema + a formula.

A protocol asks the judge one or more *queries* per pair. Each query names its prompt template, the
images the judge sees (in order) and the values its reply must hold; the protocol's formula turns
the values of all queries into the pair's dimensions and its overall score. Chosen by every judge's
init_arg `protocol`:

- `category_0to10` (default): the category's template (the user's per-category prompts for 物理 /
  环境 / 社会 / 因果 / 指代, or `default`), original + edited image, one 0-10 `score`. overall = score.
- `viescore` (GEdit-Bench / VIEScore "tie"): SC query with the original and the edited image ->
  `score: [editing_success, over_editing]` (0-10 each; over_editing 10 = nothing changed that should
  not have); PQ query with the edited image only -> `score: [naturalness, artifacts]` (0-10; artifacts
  10 = none). Per pair `SC = min(SC list)`, `PQ = min(PQ list)`, `overall = sqrt(SC * PQ)` — the
  formula of the VIEScore / GEdit-Bench scripts. Our prompt wording is our own; the schema and the
  formula are theirs.
- `rubric_1to5` (ImgEdit / KRIS-Bench style): one query, separate 1-5 scores for
  `instruction_following`, `consistency` (the unedited regions) and `quality`; overall = their mean;
  `overall_0to100 = (overall - 1) * 25`. `rubric_1to5_knowledge` adds `knowledge` (plausibility).

Parsing (`parse_values`): strict JSON, then a fenced block, then a tolerant JSON repair of an
embedded object, then free text. Accepted besides `{"score": [7, 8]}` and objects keyed by the
dimension names: a bare list `[7, 8]` (list queries; one distinct list of the right length), labels
`score1: 7, score2: 8`, and the dimension names with numbers in prose in one orientation for the whole
reply ("naturalness 10 artifacts 0", "10 naturalness, 3 artifacts", "naturalness is 8 and artifacts
is 2"). `"score": 7` where a list is needed fails saying so; "8 out of 15" and "7-8" next to a name
fail as ambiguous (see src/scoring/parse.py). A value outside its range is a failure, not a clamp; a
reply without every required value is a failure. Nothing is ever filled in.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from src.scoring.parse import (ParsedScore, ScoreParseError, _clean, _find_reasoning, _loads_strict, _loads_tolerant,
                               _norm_key, _not_a_score, _REFUSAL_RE, fenced_blocks, json_objects, parse_score)

_NUM = r"[+-]?\d+(?:\.\d+)?"


@dataclass(frozen=True)
class Query:
    name: str  # "score" | "sc" | "pq" | "rubric"
    template: str | None  # prompt template; None = the category's template (the pipeline's prompt)
    images: tuple[str, ...]  # roles of the images the judge sees, in order: "original", "edited"
    dims: tuple[str, ...]  # the values the reply must hold, in order
    lo: float
    hi: float
    list_key: str | None = None  # values come as one JSON list under this key (VIEScore: "score")
    retry: str = ""  # the corrective instruction when a reply can't be parsed


@dataclass(frozen=True)
class Protocol:
    name: str
    queries: tuple[Query, ...]
    combine: Callable[[dict[str, float]], dict[str, float]]  # "query.dim" values -> dims incl. "overall"
    dims: tuple[str, ...]  # the dimensions reported per category (besides overall)
    description: str = ""
    supports_logits: bool = False

    def templates(self, category_template: str) -> list[str]:
        return [q.template or category_template for q in self.queries]


@dataclass
class ParsedValues:
    values: dict[str, float]
    reasoning: str | None
    method: str


# ----------------------------------------------------------------------------- parsing


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and re.fullmatch(_NUM, value.strip()):
        return float(value.strip())
    return None


def _list_values(raw: list, query: Query, where: str) -> dict[str, float]:
    if len(raw) != len(query.dims):
        raise ScoreParseError(f"{where} must list {len(query.dims)} values ({', '.join(query.dims)}), got {len(raw)}")
    nums = [_number(v) for v in raw]
    if any(n is None for n in nums):
        raise ScoreParseError(f"{where} holds a value that is not a number: {raw!r}")
    return dict(zip(query.dims, nums))  # type: ignore[arg-type]


def _must_be_list(query: Query, value: Any) -> ScoreParseError:
    return ScoreParseError(f"'{query.list_key}' must be a list of {len(query.dims)} values "
                           f"[{', '.join(query.dims)}]; the reply gives a single value ({value!r})")


def _values_from_obj(obj: Any, query: Query) -> dict[str, float] | None:
    """The query's values from a parsed JSON value; None when it holds none of them."""
    if isinstance(obj, list) and query.list_key:  # a bare list: [7, 8]
        return _list_values(obj, query, "the list") if obj else None
    if not isinstance(obj, dict):
        return None
    keys = {_norm_key(k): k for k in obj}
    found = {d: obj[keys[d]] for d in query.dims if d in keys}
    if query.list_key and not found:
        raw = obj.get(keys.get(query.list_key, ""), None)
        if isinstance(raw, list):
            return _list_values(raw, query, f"'{query.list_key}'")
        labelled = {}
        for i in range(1, len(query.dims) + 1):
            k = keys.get(f"{query.list_key}{i}", keys.get(f"{query.list_key}_{i}"))
            if k is not None:
                labelled[i] = obj[k]
        if labelled:  # {"score1": 7, "score2": 8}
            found = {query.dims[i - 1]: v for i, v in labelled.items()}
        elif query.list_key in keys:
            raise _must_be_list(query, raw)
    if not found:
        return None
    values = {d: _number(v) for d, v in found.items()}
    missing = [d for d in query.dims if values.get(d) is None]
    if missing:
        raise ScoreParseError(f"reply lacks a numeric value for {', '.join(missing)}")
    return values  # type: ignore[return-value]


def _check(values: dict[str, float], query: Query) -> dict[str, float]:
    for dim, v in values.items():
        if not math.isfinite(v) or not query.lo <= v <= query.hi:
            raise ScoreParseError(f"{dim} = {v:g} is outside {query.lo:g}-{query.hi:g}")
    return values


_PAD = r"[*\"'`\s]*+"
_VAL = rf"(?<![\d.])({_NUM})(?![\d])(?!\.\d)"
_LIST = rf"\[\s*+({_NUM}(?:\s*+,\s*+{_NUM})*+)\s*+\]"


def _dim_pattern(dim: str) -> str:
    return r"(?<![A-Za-z])" + r"[\s_-]*+".join(map(re.escape, dim.split("_"))) + r"(?![A-Za-z])"


def _one_each(found: dict[str, list[float]], what: str) -> dict[str, float]:
    for dim, vals in found.items():
        if len(set(vals)) > 1:
            raise ScoreParseError(f"two different values for {dim} in the reply ({what})")
    return {dim: vals[0] for dim, vals in found.items()}


def _named_values(text: str, query: Query) -> tuple[dict[str, float] | None, list[str]]:
    """Values written next to the dimension names, in one orientation for the whole reply: name first
    ("naturalness: 8", "naturalness 10 artifacts 0", "naturalness is 8") or number first ("10
    naturalness, 3 artifacts"). (values, the dims found) — values only when every dim was found."""
    sep = r"(?:(?:score|rating)" + _PAD + r")?(?:(?:[:=：]|-(?!\d)|is|was|of|at)" + _PAD + r")?"
    partial: list[str] = []
    complete = []
    for orientation in ("name_first", "number_first"):
        found: dict[str, list[float]] = {}
        for dim in query.dims:
            if orientation == "name_first":
                pattern = rf"{_dim_pattern(dim)}{_PAD}{sep}{_VAL}"
            else:
                pattern = rf"{_VAL}(?:\s*+/\s*+\d+)?{_PAD}(?:(?:points?|for|in|on)\s++)?{_dim_pattern(dim)}"
            for m in re.finditer(pattern, text, re.IGNORECASE):
                if orientation == "name_first":
                    reason = _not_a_score(text[m.end(1):m.end(1) + 80], query.hi)
                    if reason:
                        raise ScoreParseError(f"ambiguous: {m.group(0).strip()!r} is {reason}")
                found.setdefault(dim, []).append(float(m.group(1)))
        if len(found) == len(query.dims):
            complete.append(_one_each(found, orientation.replace("_", " ")))
        elif len(found) > len(partial):
            partial = list(found)
    if len(complete) == 2 and complete[0] != complete[1]:
        raise ScoreParseError("ambiguous: the numbers before and after the dimension names disagree")
    return (complete[0] if complete else None), partial


def _regex_values(text: str, query: Query) -> dict[str, float] | None:
    """Values from free text. List queries: `"score": [7, 8]`, `score1: 7, score2: 8`, the dimension
    names with numbers, then one bare `[7, 8]`. Other queries: the dimension names with numbers."""
    if query.list_key:
        key = re.escape(query.list_key)
        lists = re.findall(rf"(?<![A-Za-z]){key}{_PAD}[:=]{_PAD}{_LIST}", text, re.IGNORECASE)
        if lists:
            if len(set(lists)) > 1:
                raise ScoreParseError(f"two different '{query.list_key}' lists in the reply")
            return _list_values(re.findall(_NUM, lists[0]), query, f"'{query.list_key}'")
        labels: dict[int, list[float]] = {}
        for m in re.finditer(rf"(?<![A-Za-z]){key}\s*+_?\s*+([1-9])(?!\d){_PAD}[:=]{_PAD}{_VAL}", text,
                             re.IGNORECASE):
            labels.setdefault(int(m.group(1)), []).append(float(m.group(2)))
        if labels:
            wanted = set(range(1, len(query.dims) + 1))
            if set(labels) != wanted:
                raise ScoreParseError(f"the reply labels {', '.join(f'{query.list_key}{i}' for i in sorted(labels))}; "
                                      f"expected {', '.join(f'{query.list_key}{i}' for i in sorted(wanted))} "
                                      f"({', '.join(query.dims)})")
            return _one_each({query.dims[i - 1]: v for i, v in labels.items()}, "labels")
    named, partial = _named_values(text, query)
    if named is not None:
        return named
    if query.list_key:
        bare = {tuple(float(x) for x in re.findall(_NUM, body))
                for body in re.findall(rf"(?<![\w\]]){_LIST}", text)}
        fitting = {b for b in bare if len(b) == len(query.dims)}
        if len(fitting) > 1:
            raise ScoreParseError(f"ambiguous: several lists of {len(query.dims)} numbers in the reply")
        if fitting:
            return dict(zip(query.dims, next(iter(fitting))))
        single = re.search(rf"(?<![A-Za-z]){re.escape(query.list_key)}{_PAD}[:=]{_PAD}{_VAL}", text, re.IGNORECASE)
        if single and not partial:
            raise _must_be_list(query, float(single.group(1)))
    if partial:
        missing = [d for d in query.dims if d not in partial]
        raise ScoreParseError(f"reply lacks a value for {', '.join(missing)}")
    return None


def parse_values(reply: str, query: Query) -> ParsedValues:
    """The values of one query's reply, or ScoreParseError. Never fills in a missing value."""
    if len(query.dims) == 1 and not query.list_key:  # a single score: the shared, golden-tested parser
        parsed: ParsedScore = parse_score(reply, query.lo, query.hi)
        return ParsedValues({query.dims[0]: float(parsed.score)}, parsed.reasoning, parsed.method)
    if not isinstance(reply, str) or not reply.strip():
        raise ScoreParseError("empty reply")
    text = _clean(reply)
    if not text:
        raise ScoreParseError("empty reply after removing the thinking block")
    candidates: list[tuple[str, Any]] = [("json", _loads_strict(text))]
    candidates += [("fenced_json", _loads_tolerant(block)) for block in fenced_blocks(text)]
    candidates += [("embedded_json", _loads_tolerant(chunk)) for chunk in json_objects(text)]
    for method, obj in candidates:
        values = _values_from_obj(obj, query)
        if values is not None:
            return ParsedValues(_check(values, query), _find_reasoning(obj), method)
    if text.count("{") > text.count("}") and re.search(r"\d\s*$", text):
        raise ScoreParseError("the reply ends inside an unclosed JSON object (truncated?); its last value may be cut")
    values = _regex_values(text, query)
    if values is not None:
        return ParsedValues(_check(values, query), None, "regex")
    if _REFUSAL_RE.search(text):
        raise ScoreParseError("the judge declined to score")
    raise ScoreParseError(f"no {', '.join(query.dims)} values found in the reply")


# ----------------------------------------------------------------------------- the protocols

_BOTH = ("original", "edited")
_RETRY_SCORE = 'Your previous reply did not contain a valid score. Reply only with JSON {"score": <0-10>, "reasoning": "<one sentence>"}'


def _combine_single(values: dict[str, float]) -> dict[str, float]:
    return {"overall": values["score.score"]}


def _combine_viescore(values: dict[str, float]) -> dict[str, float]:
    sc = min(values["sc.editing_success"], values["sc.over_editing"])
    pq = min(values["pq.naturalness"], values["pq.artifacts"])
    return {"editing_success": values["sc.editing_success"], "over_editing": values["sc.over_editing"],
            "naturalness": values["pq.naturalness"], "artifacts": values["pq.artifacts"],
            "SC": sc, "PQ": pq, "overall": math.sqrt(sc * pq)}


def _combine_rubric(values: dict[str, float]) -> dict[str, float]:
    dims = {k.split(".", 1)[1]: v for k, v in values.items()}
    overall = sum(dims.values()) / len(dims)
    return {**dims, "overall": overall, "overall_0to100": (overall - 1.0) * 25.0}


def _rubric(name: str, dims: tuple[str, ...]) -> Protocol:
    example = ", ".join(f'"{d}": <1-5>' for d in dims)
    return Protocol(
        name=name,
        queries=(Query("rubric", name, _BOTH, dims, 1, 5,
                       retry=f'Your previous reply did not contain valid scores. Reply only with JSON '
                             f'{{{example}, "reasoning": "<one sentence>"}}'),),
        combine=_combine_rubric, dims=(*dims, "overall_0to100"),
        description="1-5 per dimension; overall = mean; overall_0to100 = (overall - 1) * 25")


PROTOCOLS: dict[str, Protocol] = {
    "category_0to10": Protocol(
        name="category_0to10",
        queries=(Query("score", None, _BOTH, ("score",), 0, 10, retry=_RETRY_SCORE),),
        combine=_combine_single, dims=(), supports_logits=True,
        description="the category's prompt; one 0-10 score"),
    "viescore": Protocol(
        name="viescore",
        queries=(
            Query("sc", "viescore_sc", _BOTH, ("editing_success", "over_editing"), 0, 10, list_key="score",
                  retry='Your previous reply was not valid. Reply only with JSON '
                        '{"score": [<editing success 0-10>, <over-editing 0-10>], "reasoning": "..."}'),
            Query("pq", "viescore_pq", ("edited",), ("naturalness", "artifacts"), 0, 10, list_key="score",
                  retry='Your previous reply was not valid. Reply only with JSON '
                        '{"score": [<naturalness 0-10>, <artifacts 0-10>], "reasoning": "..."}'),
        ),
        combine=_combine_viescore, dims=("SC", "PQ", "editing_success", "over_editing", "naturalness", "artifacts"),
        description="GEdit-Bench VIEScore: SC = min(SC), PQ = min(PQ), overall = sqrt(SC * PQ)"),
    "rubric_1to5": _rubric("rubric_1to5", ("instruction_following", "consistency", "quality")),
    "rubric_1to5_knowledge": _rubric("rubric_1to5_knowledge",
                                     ("instruction_following", "consistency", "quality", "knowledge")),
}


class ProtocolError(ValueError):
    pass


def get_protocol(name: str) -> Protocol:
    if name not in PROTOCOLS:
        close = difflib.get_close_matches(str(name), list(PROTOCOLS), n=2, cutoff=0.5)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise ProtocolError(f"unknown protocol {name!r}{hint} (known: {', '.join(PROTOCOLS)})")
    return PROTOCOLS[name]


@dataclass
class QueryAnswer:
    """What one query of one pair produced (kept in the score record's details)."""

    ok: bool
    values: dict[str, float] = field(default_factory=dict)
    raw_reply: str | None = None
    reasoning: str | None = None
    method: str | None = None
    error: str | None = None
    attempts: int = 0
    details: dict[str, Any] = field(default_factory=dict)
