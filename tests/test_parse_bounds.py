"""Bounded cost: the reply parsers take linear time on long, adversarial replies, refuse runaway
replies with a clear error, and never crash, invent or clamp on random text (hypothesis fuzz)."""

from __future__ import annotations

import re
import time
import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from src.scoring.parse import MAX_ANSWER_CHARS, MAX_REPLY_CHARS, ScoreParseError, parse_score
from src.scoring.protocols import PROTOCOLS, parse_values

# one query of each reply shape (the single "score" query is parse_score itself): a list under "score",
# named values, one named value (JSON key / "score" / prose), "Name: N" labels
QUERIES = [PROTOCOLS["viescore"].queries[0], PROTOCOLS["rubric_1to5_knowledge"].queries[0],
           next(q for q in PROTOCOLS["kris"].queries if q.name == "consistency"),
           next(q for q in PROTOCOLS["kris"].queries if q.name == "knowledge"),
           next(q for q in PROTOCOLS["imgedit"].queries if q.name == "compose"),
           next(q for q in PROTOCOLS["rise"].queries if q.name == "reasoning_logical")]
BOUND_S = 2.0  # each of these took 10-60 s with the quadratic parser; linear parsing takes < 0.1 s

# each unit repeated to ~20,000 characters
ADVERSARIAL = ["{", "Score" + " " * 20000 + "x", "score " + "\t" * 20000 + "x", "a{", "{x}", "<think>", "```",
               "score: ", "[1,", "naturalness:" + " " * 20000, "{'a': 1}", "\"", "x' ", ",a" + " " * 20000,
               "{a" + " " * 20000 + "x", "7" + " " * 20000 + "x"]


def _timed(fn, text):
    t0 = time.perf_counter()
    try:
        fn(text)
    except ScoreParseError:
        pass
    return time.perf_counter() - t0


@pytest.mark.parametrize("unit", ADVERSARIAL, ids=[repr(u[:12]) for u in ADVERSARIAL])
def test_long_adversarial_replies_parse_in_linear_time(unit):
    text = unit * max(1, 20000 // len(unit))
    assert _timed(parse_score, text) < BOUND_S
    for query in QUERIES:
        assert _timed(lambda t: parse_values(t, query), text) < BOUND_S


def test_runaway_replies_are_refused_by_size():
    with pytest.raises(ScoreParseError, match="reply too long"):
        parse_score("{" * (MAX_REPLY_CHARS + 1))
    with pytest.raises(ScoreParseError, match="answer too long"):
        parse_values("x" * (MAX_ANSWER_CHARS + 1), PROTOCOLS["viescore"].queries[0])
    # a long thinking block is fine: the cap on the answer applies after it is removed
    assert parse_score("<think>" + "hmm " * 20000 + "</think>{\"score\": 6}").score == 6
    with pytest.raises(ScoreParseError, match="holds 100 fenced blocks"):
        parse_score("```x```" * 100)


TOKENS = ["{", "}", "[", "]", ",", ":", " ", "\n", "\"", "'", "score", "Score", "score1", "score2", "rating",
          "7", "10", "3.5", "-1", "11", "out of", "/", "-", "or below", "for the left image", "naturalness",
          "artifacts", "editing success", "over-editing", "instruction_following", "consistency", "quality", "is",
          "consistency_score", "Final Score", "Prompt Compliance", "Visual Naturalness", "knowledge", "0", "5",
          "<think>", "</think>", "```", "```json", "评分", "分", "：", "**", "I'm sorry", "NaN", "true", "and"]


def _numbers(text: str) -> set[float]:
    return {float(x) for x in re.findall(r"\d+(?:\.\d+)?", unicodedata.normalize("NFKC", text))}


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.lists(st.sampled_from(TOKENS), max_size=60).map("".join), st.text(max_size=300)))
def test_fuzz_parsers_never_crash_invent_or_clamp(text):
    """Random text: a ScoreParseError or a value in range that is written in the reply; fast."""
    t0 = time.perf_counter()
    try:
        parsed = parse_score(text)
    except ScoreParseError:
        pass
    else:
        assert 0 <= parsed.score <= 10 and parsed.score in _numbers(text)
    for query in QUERIES:
        try:
            values = parse_values(text, query).values
        except ScoreParseError:
            continue
        assert set(values) == set(query.dims)
        for v in values.values():
            assert query.lo <= v <= query.hi and v in _numbers(text)
    assert time.perf_counter() - t0 < BOUND_S
