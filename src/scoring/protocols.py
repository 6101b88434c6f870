"""Judge protocols: prompt templates + a reply schema + a formula.

A protocol asks the judge one or more *queries* per pair. Each query names its prompt template, the
images the judge sees (in order: "original", "edited", the pair's extra images by role — "reference"
for a ground-truth / reference-answer image, "original_*" for every extra input image, a trailing "?"
for an image that may be absent), the values its reply must hold, and the pairs it applies to (`when`,
from the pair's category, metadata and image roles). The protocol's formula turns the values of the
queries a pair was asked into the pair's dimensions and its overall score. Chosen by every judge's
init_arg `protocol` — a name, or {default: NAME, categories: {CATEGORY: NAME}} for several protocols
in one run (`ProtocolSet`). Templates are the built-in ones unless the config's `prompts.dir` /
`prompts.templates` point at the user's own (src/scoring/judging.py; docs/protocols.md).

- `category_0to10` (default): the category's template (the user's per-category prompts for 物理 /
  环境 / 社会 / 因果 / 指代, or `default`), original + edited image, one 0-10 `score`. overall = score.
- `viescore` (GEdit-Bench / VIEScore "tie"): SC query with the original and the edited image ->
  `score: [editing_success, over_editing]` (0-10 each; over_editing 10 = a minimal, yet effective
  edit — an unchanged image is not effective); PQ query with the edited image only -> `score:
  [naturalness, artifacts]` (0-10; artifacts 10 = none). Per pair `SC = min(SC list)`, `PQ = min(PQ
  list)`, `overall = sqrt(SC * PQ)` — the formula of the VIEScore / GEdit-Bench scripts. Our prompt
  wording is our own; the schema and the formula are theirs.
- `rubric_1to5` (ImgEdit / KRIS-Bench style, one query): separate 1-5 scores for
  `instruction_following`, `consistency` (the unedited regions) and `quality`; overall = their mean;
  `overall_0to100 = (overall - 1) * 25`. `rubric_1to5_knowledge` adds `knowledge` (plausibility).
- `kris` (KRIS-Bench, separate queries as the official metric scripts ask them, one template per
  official prompt): `consistency` (original(s) + edited), `instruction` (the task's variant: with the
  explanation for anomaly correction, with the ground-truth image for viewpoint change, every input
  frame / image for temporal prediction and multi-element composition), for the 10 knowledge tasks one query giving
  `instruction` and `knowledge` with the explanation (`explain_en`), and `quality` on the edited image
  alone; 1-5 each as the judge gave them; overall = their mean (the official summary pools metric
  values per task/group: the report's benchmark-score section, src/scoring/headline.py).
- `rise` (RISEBench): `consistency`, `reasoning` (against the reference answer: text, or the reference
  image for spatial tasks that have one), `appearance` (edited image alone; not for logical tasks);
  1-5, except logical tasks, judged 0/1 and mapped to 1/5 as the official code does (4 * min(s, 1) +
  1; the record holds the mapped values, the raw ones stay in details.queries). overall = the official
  per-sample score 0.3 C + 0.5 R + 0.2 P (consistency-free samples: 0.2 P + 0.8 R; logical: 0.3 C +
  0.7 R), halved but not below 1 when R = 1.
- `imgedit` (ImgEdit basic): one query per edit type (`edit_type`: add, remove, replace, adjust,
  style, action, extract, background, compose) with that type's three 1-5 rubric dimensions, replies
  "Name: N" (JSON also read); dimension names are the snake_case of the official names
  (`prompt_compliance`, `visual_naturalness`, `physical_detail_integrity`, ...); overall = their mean
  (the official script rounds it to 2 decimals; the record keeps it exact).

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
                               _norm_key, _not_a_score, _REFUSAL_RE, REASONING_KEYS, fenced_blocks, json_objects,
                               parse_score)

_NUM = r"[+-]?\d+(?:\.\d+)?"


@dataclass(frozen=True)
class PairContext:
    """What decides which queries a pair gets: its category, its metadata (every original field of the
    benchmark) and the roles of its extra images ("reference", "original_2", ...)."""

    category: str
    metadata: dict = field(default_factory=dict)
    image_roles: tuple[str, ...] = ()


@dataclass(frozen=True)
class Query:
    name: str  # "score" | "sc" | "pq" | "rubric" | "consistency" ...; unique within a protocol
    template: str | None  # prompt template; None = the category's template (the pipeline's prompt)
    images: tuple[str, ...]  # roles of the images the judge sees, in order (see `image_roles_for`)
    dims: tuple[str, ...]  # the values the reply must hold, in order
    lo: float
    hi: float
    list_key: str | None = None  # values come as one JSON list under this key (VIEScore: "score")
    retry: str = ""  # the corrective instruction when a reply can't be parsed
    when: Callable[[PairContext], bool] | None = None  # None: every pair; else the pairs it applies to
    needs: tuple[str, ...] = ("instruction",)  # variables a template for this query must use
    labels: tuple[str, ...] | None = None  # how the reply names the dims (ImgEdit: "Prompt Compliance")

    def applies(self, ctx: PairContext) -> bool:
        return self.when is None or bool(self.when(ctx))

    def reply_names(self) -> tuple[str, ...]:
        """The names a template must mention so that the judge replies what this query parses."""
        if self.list_key:
            return (self.list_key,)
        if len(self.dims) == 1:
            return ("score",) if self.dims[0] == "score" else (self.dims[0], "score")
        return self.labels or self.dims


@dataclass(frozen=True)
class Protocol:
    name: str
    queries: tuple[Query, ...]
    combine: Callable[..., dict[str, float]]  # ("query.dim" values, PairContext | None) -> dims incl. "overall"
    dims: tuple[str, ...]  # the dimensions reported per category (besides overall)
    description: str = ""
    supports_logits: bool = False

    def templates(self, category_template: str) -> list[str]:
        return [q.template or category_template for q in self.queries]

    def queries_for(self, ctx: PairContext) -> tuple[Query, ...]:
        """The queries this pair is asked (a protocol may ask other queries for other kinds of pair)."""
        return tuple(q for q in self.queries if q.applies(ctx))

    def combine_for(self, values: dict[str, float], ctx: PairContext | None) -> dict[str, float]:
        return self.combine(values, ctx)


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
    dim_keys = {_dim_key(k): k for k in obj}
    found = {}
    for i, d in enumerate(query.dims):
        names = [d, f"{d}_score"] + ([_dim_key(query.labels[i])] if query.labels else [])
        # RISE's dimension "reasoning" shares its name with the reply's explanation field: a text value
        # under a reasoning key is the explanation, not the score ({"reasoning": "...", "score": 4})
        hit = next((dim_keys[n] for n in names if n in dim_keys
                    and not (n in REASONING_KEYS and isinstance(obj[dim_keys[n]], str)
                             and _number(obj[dim_keys[n]]) is None)), None)
        if hit is not None:
            found[d] = obj[hit]
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


def _dim_key(key: Any) -> str:
    """"Physical & Detail Integrity" -> "physical_detail_integrity"."""
    return re.sub(r"[\W_]+", "_", str(key).lower()).strip("_")


def _check(values: dict[str, float], query: Query) -> dict[str, float]:
    for dim, v in values.items():
        if not math.isfinite(v) or not query.lo <= v <= query.hi:
            raise ScoreParseError(f"{dim} = {v:g} is outside {query.lo:g}-{query.hi:g}")
    return values


_PAD = r"[*\"'`\s]*+"
_VAL = rf"(?<![\d.])({_NUM})(?![\d])(?!\.\d)"
_LIST = rf"\[\s*+({_NUM}(?:\s*+,\s*+{_NUM})*+)\s*+\]"


def _dim_pattern(label: str) -> str:
    words = re.findall(r"[A-Za-z0-9]+", label)
    return r"(?<![A-Za-z])" + r"[\s_&/-]{0,5}+".join(map(re.escape, words)) + r"(?![A-Za-z])"


def _one_each(found: dict[str, list[float]], what: str) -> dict[str, float]:
    for dim, vals in found.items():
        if len(set(vals)) > 1:
            raise ScoreParseError(f"two different values for {dim} in the reply ({what})")
    return {dim: vals[0] for dim, vals in found.items()}


def _named_values(text: str, query: Query) -> tuple[dict[str, float] | None, list[str]]:
    """Values written next to the dimension names, in one orientation for the whole reply: name first
    ("naturalness: 8", "naturalness 10 artifacts 0", "naturalness is 8") or number first ("10
    naturalness, 3 artifacts"). (values, the dims found) — values only when every dim was found."""
    sep = r"(?:[_\s]*+(?:score|rating)" + _PAD + r")?(?:(?:[:=：]|-(?!\d)|is|was|of|at)" + _PAD + r")?"
    partial: list[str] = []
    complete = []
    for orientation in ("name_first", "number_first"):
        found: dict[str, list[float]] = {}
        for i, dim in enumerate(query.dims):
            name = _dim_pattern(query.labels[i] if query.labels else dim)
            if orientation == "name_first":
                pattern = rf"{name}{_PAD}{sep}{_VAL}"
            else:
                pattern = rf"{_VAL}(?:\s*+/\s*+\d+)?{_PAD}(?:(?:points?|for|in|on)\s++)?{name}"
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


def _parse_single(reply: str, query: Query) -> ParsedValues:
    """One value: a JSON key named after it ("consistency", "consistency_score"), else the shared,
    golden-tested single-score parser ("score", "Final Score: 4", "7/10" ...), else the name in prose."""
    dim = query.dims[0]
    if dim != "score" and isinstance(reply, str):
        text = _clean(reply)
        for method, obj in _json_candidates(text):
            values = _values_from_obj(obj, query)
            if values is not None:
                return ParsedValues(_check(values, query), _find_reasoning(obj), method)
    try:
        parsed: ParsedScore = parse_score(reply, query.lo, query.hi)
    except ScoreParseError as e:
        if dim == "score" or not e.message.startswith("no score found"):
            raise
        named, _ = _named_values(_clean(reply), query)
        if named is None:
            raise
        return ParsedValues(_check(named, query), None, "regex")
    return ParsedValues({dim: float(parsed.score)}, parsed.reasoning, parsed.method)


def _json_candidates(text: str) -> list[tuple[str, Any]]:
    candidates: list[tuple[str, Any]] = [("json", _loads_strict(text))]
    candidates += [("fenced_json", _loads_tolerant(block)) for block in fenced_blocks(text)]
    candidates += [("embedded_json", _loads_tolerant(chunk)) for chunk in json_objects(text)]
    return candidates


def parse_values(reply: str, query: Query) -> ParsedValues:
    """The values of one query's reply, or ScoreParseError. Never fills in a missing value."""
    if len(query.dims) == 1 and not query.list_key:
        return _parse_single(reply, query)
    if not isinstance(reply, str) or not reply.strip():
        raise ScoreParseError("empty reply")
    text = _clean(reply)
    if not text:
        raise ScoreParseError("empty reply after removing the thinking block")
    for method, obj in _json_candidates(text):
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


def _combine_single(values: dict[str, float], ctx: PairContext | None = None) -> dict[str, float]:
    return {"overall": values["score.score"]}


def _combine_viescore(values: dict[str, float], ctx: PairContext | None = None) -> dict[str, float]:
    sc = min(values["sc.editing_success"], values["sc.over_editing"])
    pq = min(values["pq.naturalness"], values["pq.artifacts"])
    return {"editing_success": values["sc.editing_success"], "over_editing": values["sc.over_editing"],
            "naturalness": values["pq.naturalness"], "artifacts": values["pq.artifacts"],
            "SC": sc, "PQ": pq, "overall": math.sqrt(sc * pq)}


def _combine_rubric(values: dict[str, float], ctx: PairContext | None = None) -> dict[str, float]:
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


class ProtocolError(ValueError):
    pass


def _json_retry(fields: str) -> str:
    return f"Your previous reply could not be read. Reply only with JSON {{{fields}, \"reasoning\": \"<one sentence>\"}}"


def _meta_set(value: Any) -> bool:
    """A metadata flag as pandas reads it in the official scripts: present and not null / NaN."""
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _task_key(text: Any) -> str:
    return re.sub(r"[\W_]+", "_", str(text).strip().lower()).strip("_")


def _by_dim(values: dict[str, float]) -> dict[str, float]:
    """"query.dim" -> "dim" (the queries a pair gets never share a dimension)."""
    return {k.split(".", 1)[1]: v for k, v in values.items()}


# ------------------------------------------------------------------ KRIS-Bench
# Which query each of the 22 tasks gets, as the official KRIS-Bench metric scripts split them
# (metrics_common / _view_change / _multi_element / _temporal_prediction / _knowledge).
KRIS_KNOWLEDGE = ("abstract_reasoning", "mathematics", "practical_knowledge", "medicine", "rule_based_reasoning",
                  "biology", "geography", "chemistry", "humanities", "physics")
KRIS_TASKS = {**{t: "common" for t in ("count_change", "color_change", "position_movement", "size_adjustment",
                                        "part_completion", "multi_instruction_execution")},
              "anomaly_correction": "explained", "abnormality_correction": "explained",
              "viewpoint_change": "viewpoint", "multi_element_composition": "multi", "temporal_prediction": "temporal",
              **{t: "knowledge" for t in KRIS_KNOWLEDGE}}


def kris_task(ctx: PairContext) -> tuple[str, str]:
    """(task, kind) of a KRIS-Bench pair: the task is the pair's category or a metadata field naming it."""
    meta = ctx.metadata or {}
    for value in (ctx.category, meta.get("task"), meta.get("sub_task"), meta.get("subtask"), meta.get("category")):
        if value is not None and _task_key(value) in KRIS_TASKS:
            return _task_key(value), KRIS_TASKS[_task_key(value)]
    raise ProtocolError(f"category {ctx.category!r} is not a KRIS-Bench task (the kris protocol asks each task its "
                        f"own queries; known: {', '.join(sorted(KRIS_TASKS))})")


def _kris_kind(*kinds: str) -> Callable[[PairContext], bool]:
    return lambda ctx: kris_task(ctx)[1] in kinds


def _combine_kris(values: dict[str, float], ctx: PairContext | None = None) -> dict[str, float]:
    dims = _by_dim(values)
    return {**dims, "overall": sum(dims.values()) / len(dims)}


_KRIS = Protocol(
    name="kris",
    queries=(
        # one template per prompt of the official scripts, so each can be replaced by the user's copy
        Query("consistency", "kris_consistency", ("original", "edited"), ("consistency",), 1, 5,
              retry=_json_retry('"score": <1-5>'), when=_kris_kind("common", "explained", "viewpoint", "knowledge")),
        Query("consistency_multi", "kris_consistency_multi", ("original", "original_*", "edited"), ("consistency",),
              1, 5, retry=_json_retry('"score": <1-5>'), when=_kris_kind("multi")),
        Query("consistency_temporal", "kris_consistency_temporal", ("original", "original_*", "edited"),
              ("consistency",), 1, 5, retry=_json_retry('"score": <1-5>'), when=_kris_kind("temporal")),
        Query("instruction", "kris_instruction", ("original", "edited"), ("instruction",), 1, 5,
              retry=_json_retry('"score": <1-5>'), when=_kris_kind("common")),
        Query("instruction_multi", "kris_instruction_multi", ("original", "original_*", "edited"), ("instruction",),
              1, 5, retry=_json_retry('"score": <1-5>'), when=_kris_kind("multi")),
        Query("instruction_temporal", "kris_instruction_temporal", ("original", "original_*", "edited"),
              ("instruction",), 1, 5, retry=_json_retry('"score": <1-5>'), when=_kris_kind("temporal")),
        Query("instruction_explained", "kris_instruction_explained", ("original", "edited"), ("instruction",), 1, 5,
              retry=_json_retry('"score": <1-5>'), when=_kris_kind("explained"), needs=("instruction", "explanation")),
        Query("instruction_viewpoint", "kris_instruction_viewpoint", ("original", "edited", "reference?"),
              ("instruction",), 1, 5, retry=_json_retry('"score": <1-5>'), when=_kris_kind("viewpoint")),
        Query("knowledge", "kris_knowledge", ("original", "edited"), ("instruction", "knowledge"), 1, 5,
              retry=_json_retry('"instruction": <1-5>, "knowledge": <1-5>'), when=_kris_kind("knowledge"),
              needs=("instruction", "explanation")),
        Query("quality", "kris_quality", ("edited",), ("quality",), 1, 5, retry=_json_retry('"score": <1-5>'),
              needs=()),
    ),
    combine=_combine_kris, dims=("consistency", "instruction", "quality", "knowledge"),
    description="KRIS-Bench: consistency, instruction (knowledge tasks: instruction + knowledge with the "
                "explanation), quality on the edited image alone; 1-5 each; overall = their mean")


# ------------------------------------------------------------------ RISEBench


def rise_kind(ctx: PairContext) -> str:
    """temporal | causal | spatial | logical, from the pair's `category` field or its category."""
    for value in ((ctx.metadata or {}).get("category"), ctx.category):
        for kind in ("temporal", "causal", "spatial", "logical"):
            if value is not None and kind in str(value).lower():
                return kind
    raise ProtocolError(f"category {ctx.category!r} is not a RISEBench dimension (temporal, causal, spatial or "
                        f"logical reasoning)")


def _rise(kinds: tuple[str, ...], test: Callable[[PairContext], bool] = lambda ctx: True):
    return lambda ctx: rise_kind(ctx) in kinds and test(ctx)


def _has_ref_image(ctx: PairContext) -> bool:
    return "reference" in ctx.image_roles


def _cons_free(ctx: PairContext) -> bool:
    return _meta_set((ctx.metadata or {}).get("consistency_free"))


def _reasoning_img(ctx: PairContext) -> bool:
    return _meta_set((ctx.metadata or {}).get("reasoning_img"))


def _combine_rise(values: dict[str, float], ctx: PairContext | None = None) -> dict[str, float]:
    """The official RISEBench per-sample score. Logical tasks are judged 0/1 and mapped to 1/5 as the
    official code does (4 * min(s, 1) + 1); the others are 1-5. Score = 0.3 C + 0.5 R + 0.2 P
    (consistency-free: 0.2 P + 0.8 R; logical: 0.3 C + 0.7 R), halved (not below 1) when R = 1."""
    dims = _by_dim(values)
    logical = ctx is not None and rise_kind(ctx) == "logical"
    if logical:
        dims = {k: 4 * min(v, 1) + 1 for k, v in dims.items()}
    r, c, p = dims["reasoning"], dims.get("consistency"), dims.get("appearance")
    if logical:
        score = r if c is None else 0.3 * c + 0.7 * r
    elif c is None:
        score = 0.2 * p + 0.8 * r
    else:
        score = 0.3 * c + 0.5 * r + 0.2 * p
    if r == 1:
        score = max(1.0, score * 0.5)
    return {**dims, "overall": score}


_RETRY_15 = _json_retry('"score": <1-5>')
_RETRY_01 = _json_retry('"score": <0 or 1>')
_RISE = Protocol(
    name="rise",
    queries=(
        Query("consistency", "rise_consistency", ("original", "edited"), ("consistency",), 1, 5, retry=_RETRY_15,
              when=_rise(("temporal", "causal"), lambda c: not _cons_free(c))),
        Query("consistency_spatial", "rise_consistency_spatial", ("original", "edited"), ("consistency",), 1, 5,
              retry=_RETRY_15, when=_rise(("spatial",), lambda c: not _cons_free(c) and not _has_ref_image(c))),
        Query("consistency_spatial_ref", "rise_consistency_spatial", ("reference", "edited"), ("consistency",), 1, 5,
              retry=_RETRY_15, when=_rise(("spatial",), lambda c: not _cons_free(c) and _has_ref_image(c))),
        Query("consistency_logical", "rise_consistency_logical", ("original", "edited"), ("consistency",), 0, 1,
              retry=_RETRY_01, when=_rise(("logical",), lambda c: not _cons_free(c) and not _has_ref_image(c)),
              needs=("instruction", "reference")),
        Query("consistency_logical_ref", "rise_consistency_logical_image", ("reference", "edited"), ("consistency",), 0, 1,
              retry=_RETRY_01, when=_rise(("logical",), lambda c: not _cons_free(c) and _has_ref_image(c))),
        # temporal / causal: the reference answer is text; spatial: a reference image when there is one
        Query("reasoning", "rise_reasoning", ("edited",), ("reasoning",), 1, 5, retry=_RETRY_15,
              when=_rise(("temporal", "causal"), lambda c: not _reasoning_img(c)), needs=("instruction", "reference")),
        Query("reasoning_with_input", "rise_reasoning_with_input", ("original", "edited"), ("reasoning",), 1, 5,
              retry=_RETRY_15, when=_rise(("temporal", "causal"), _reasoning_img), needs=("instruction", "reference")),
        Query("reasoning_spatial", "rise_reasoning_spatial", ("edited",), ("reasoning",), 1, 5, retry=_RETRY_15,
              when=_rise(("spatial",), lambda c: not _reasoning_img(c) and not _has_ref_image(c)),
              needs=("instruction", "reference")),
        Query("reasoning_spatial_with_input", "rise_reasoning_spatial_with_input", ("original", "edited"),
              ("reasoning",), 1, 5, retry=_RETRY_15,
              when=_rise(("spatial",), lambda c: _reasoning_img(c) and not _has_ref_image(c)),
              needs=("instruction", "reference")),
        Query("reasoning_ref_image", "rise_reasoning_image", ("reference", "edited"), ("reasoning",), 1, 5,
              retry=_RETRY_15, when=_rise(("spatial",), _has_ref_image)),
        Query("reasoning_logical", "rise_reasoning_logical", ("edited",), ("reasoning",), 0, 1, retry=_RETRY_01,
              when=_rise(("logical",), lambda c: not _has_ref_image(c)), needs=("instruction", "reference")),
        Query("reasoning_logical_ref", "rise_reasoning_logical_image", ("reference", "edited"), ("reasoning",), 0, 1,
              retry=_RETRY_01, when=_rise(("logical",), _has_ref_image)),
        Query("appearance", "rise_appearance", ("edited",), ("appearance",), 1, 5, retry=_RETRY_15, needs=(),
              when=_rise(("temporal", "causal"))),
        Query("appearance_spatial", "rise_appearance_spatial", ("edited",), ("appearance",), 1, 5, retry=_RETRY_15,
              needs=(), when=_rise(("spatial",))),
    ),
    combine=_combine_rise, dims=("consistency", "reasoning", "appearance"),
    description="RISEBench: consistency, reasoning (against the reference answer), appearance; "
                "0.3 C + 0.5 R + 0.2 P, halved when R = 1; logical tasks 0/1 mapped to 1/5")


# ------------------------------------------------------------------ ImgEdit (basic)
# Each edit type's three rubric dimensions, named as the official replies name them ("Name: N").
IMGEDIT_RUBRICS: dict[str, tuple[str, str, str]] = {
    "add": ("Prompt Compliance", "Visual Naturalness", "Physical & Detail Coherence"),
    "remove": ("Prompt Compliance", "Visual Naturalness", "Physical & Detail Integrity"),
    "replace": ("Prompt Compliance", "Visual Naturalness", "Physical & Detail Integrity"),
    "adjust": ("Prompt Compliance", "Visual Seamlessness", "Physical & Detail Fidelity"),
    "style": ("Style Fidelity", "Content Preservation", "Rendering Quality"),
    "action": ("Action Fidelity", "Identity Preservation", "Visual & Anatomical Coherence"),
    "extract": ("Object Identity", "Mask Precision", "Visual Quality"),
    "background": ("Instruction Compliance", "Visual Seamlessness", "Physical Consistency"),
    "compose": ("Instruction Compliance", "Visual Naturalness", "Physical Consistency & Fine Detail"),
}


IMGEDIT_ALIASES = {"alter": "adjust", "change": "adjust"}  # basic_edit.json writes "alter" for attribute edits


def imgedit_type(ctx: PairContext) -> str:
    for value in ((ctx.metadata or {}).get("edit_type"), ctx.category):
        key = IMGEDIT_ALIASES.get(_task_key(value), _task_key(value)) if value is not None else None
        if key in IMGEDIT_RUBRICS:
            return key
    raise ProtocolError(f"category {ctx.category!r}: no ImgEdit edit_type ({', '.join(IMGEDIT_RUBRICS)}) in the "
                        f"pair's metadata or category")


def _combine_imgedit(values: dict[str, float], ctx: PairContext | None = None) -> dict[str, float]:
    """Mean of the three rubric scores (the official step 1 also rounds it to 2 decimals; we keep it exact)."""
    dims = _by_dim(values)
    return {**dims, "overall": sum(dims.values()) / len(dims)}


def _imgedit_query(edit_type: str, labels: tuple[str, ...]) -> Query:
    dims = tuple(_dim_key(label) for label in labels)
    return Query(edit_type, f"imgedit_{edit_type}", ("original", "edited"), dims, 1, 5, labels=labels,
                 retry="Your previous reply could not be read. Reply with one line per score, exactly:\n"
                       + "\n".join(f"{label}: <1-5>" for label in labels),
                 when=lambda ctx, t=edit_type: imgedit_type(ctx) == t)


_IMGEDIT = Protocol(
    name="imgedit",
    queries=tuple(_imgedit_query(t, labels) for t, labels in IMGEDIT_RUBRICS.items()),
    combine=_combine_imgedit,
    dims=tuple(dict.fromkeys(_dim_key(label) for labels in IMGEDIT_RUBRICS.values() for label in labels)),
    description="ImgEdit basic: the edit type's three 1-5 rubric scores ('Name: N' lines); overall = their mean")


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
            Query("pq", "viescore_pq", ("edited",), ("naturalness", "artifacts"), 0, 10, list_key="score", needs=(),
                  retry='Your previous reply was not valid. Reply only with JSON '
                        '{"score": [<naturalness 0-10>, <artifacts 0-10>], "reasoning": "..."}'),
        ),
        combine=_combine_viescore, dims=("SC", "PQ", "editing_success", "over_editing", "naturalness", "artifacts"),
        description="GEdit-Bench VIEScore: SC = min(SC), PQ = min(PQ), overall = sqrt(SC * PQ)"),
    "rubric_1to5": _rubric("rubric_1to5", ("instruction_following", "consistency", "quality")),
    "rubric_1to5_knowledge": _rubric("rubric_1to5_knowledge",
                                     ("instruction_following", "consistency", "quality", "knowledge")),
    "kris": _KRIS,
    "rise": _RISE,
    "imgedit": _IMGEDIT,
}


def get_protocol(name: str) -> Protocol:
    if name not in PROTOCOLS:
        close = difflib.get_close_matches(str(name), list(PROTOCOLS), n=2, cutoff=0.5)
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise ProtocolError(f"unknown protocol {name!r}{hint} (known: {', '.join(PROTOCOLS)})")
    return PROTOCOLS[name]


@dataclass(frozen=True)
class ProtocolSet:
    """Several protocols in one run (one judge load): `categories` maps a category to its protocol,
    `default` serves every other category (None: those categories are an error)."""

    categories: dict[str, Protocol]
    default: Protocol | None

    @property
    def name(self) -> str:
        return "+".join(sorted({p.name for p in self.all()}))

    @property
    def supports_logits(self) -> bool:
        return all(p.supports_logits for p in self.all())

    def all(self) -> list[Protocol]:
        return [*self.categories.values(), *([self.default] if self.default else [])]

    def for_category(self, category: str) -> Protocol:
        if category in self.categories:
            return self.categories[category]
        if self.default is None:
            raise ProtocolError(f"no protocol for category {category!r} (the judge's protocol names "
                                f"{', '.join(map(repr, self.categories))} and no default)")
        return self.default


def resolve_protocols(spec: Any) -> Protocol | ProtocolSet:
    """A judge's `protocol` init_arg: a protocol name, or {default: NAME, categories: {CATEGORY: NAME}}."""
    if isinstance(spec, str):
        return get_protocol(spec)
    if not isinstance(spec, dict):
        raise ProtocolError(f"protocol must be a protocol name or a mapping {{default: NAME, categories: "
                            f"{{CATEGORY: NAME}}}}, got {type(spec).__name__}")
    unknown = set(spec) - {"default", "categories"}
    if unknown:
        raise ProtocolError(f"protocol mapping: unknown key {sorted(unknown)[0]!r} (accepted: default, categories)")
    cats = spec.get("categories") or {}
    if not isinstance(cats, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in cats.items()):
        raise ProtocolError("protocol.categories must map category names to protocol names")
    default = spec.get("default")
    return ProtocolSet({c: get_protocol(n) for c, n in cats.items()},
                       get_protocol(default) if default is not None else None)


def protocol_for(protocols: Protocol | ProtocolSet, category: str) -> Protocol:
    return protocols.for_category(category) if isinstance(protocols, ProtocolSet) else protocols


def resolve_roles(roles: tuple[str, ...], available: Any) -> tuple[str, ...]:
    """The image roles a query names, made concrete for one pair: "original" and "edited" always exist;
    "original_*" stands for every extra input image (original_2, original_3, ... in order); a role
    ending in "?" is left out when the pair lacks it; any other missing role is an error."""
    have = list(available or ())
    out: list[str] = []
    for role in roles:
        if role in ("original", "edited"):
            out.append(role)
        elif role.endswith("*"):
            prefix = role[:-1]
            out += sorted((r for r in have if r.startswith(prefix) and r[len(prefix):].isdigit()),
                          key=lambda r: int(r[len(prefix):]))
        elif role.endswith("?"):
            if role[:-1] in have:
                out.append(role[:-1])
        elif role in have:
            out.append(role)
        else:
            raise ValueError(f"the judge needs the pair's {role!r} image, which the pair does not have "
                             f"(its extra images: {', '.join(map(repr, have)) or 'none'})")
    return tuple(out)


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
