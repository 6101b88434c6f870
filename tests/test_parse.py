"""Golden tests for `src.scoring.parse.parse_score` (cases in tests/golden/parse_cases.json).

A case is {"name", "reply", "score", optional "method", optional "reasoning"} for a reply that must
parse, or {"name", "reply", "error"} for one that must raise ScoreParseError whose message contains
`error` (case-insensitive).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from src.scoring.parse import ParsedScore, ScoreParseError, parse_score

CASES = json.loads((Path(__file__).parent / "golden" / "parse_cases.json").read_text(encoding="utf-8"))


def test_enough_cases():
    assert len(CASES) >= 30
    assert len({c["name"] for c in CASES}) == len(CASES)
    assert sum("error" in c for c in CASES) >= 10


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_golden(case):
    if "error" in case:
        with pytest.raises(ScoreParseError) as info:
            parse_score(case["reply"])
        assert case["error"].lower() in info.value.message.lower(), info.value.message
        return
    result = parse_score(case["reply"])
    assert isinstance(result, ParsedScore)
    assert result.score == pytest.approx(case["score"])
    if "method" in case:
        assert result.method == case["method"]
    if "reasoning" in case:
        assert result.reasoning == case["reasoning"]


def test_custom_range():
    assert parse_score('{"score": 4}', lo=1, hi=5).score == 4
    assert parse_score("3/5", lo=1, hi=5).score == 3
    with pytest.raises(ScoreParseError):
        parse_score('{"score": 7}', lo=1, hi=5)
    with pytest.raises(ScoreParseError):
        parse_score("0", lo=1, hi=5)


def test_not_text():
    with pytest.raises(ScoreParseError):
        parse_score(None)  # type: ignore[arg-type]
