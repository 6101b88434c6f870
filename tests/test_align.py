"""`python main.py align`: judge-human correlations on a synthetic set whose values are computed by hand."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from src.cli import main
from src.stats import _kendall_vec, _spearman_vec, correlations, fisher_mean
from tests.run_records import write_run

X, Y = "物理", "因果"
JUDGE = {(X, "x1"): 1.0, (X, "x2"): 2.0, (X, "x3"): 3.0, (X, "x4"): 4.0,
         (Y, "y1"): 1.0, (Y, "y2"): 2.0, (Y, "y3"): 3.0, (Y, "y4"): 4.0, (Y, "y5"): "score_failed"}
HUMAN = {  # rater -> ratings of x1..x4, y1..y4
    "r1": [1, 2, 3, 4, 1, 3, 2, 4],
    "r2": [2, 1, 4, 3, 2, 3, 1, 4],
}
IDS = ["x1", "x2", "x3", "x4", "y1", "y2", "y3", "y4"]


def ratings_csv(path, extra: str = "") -> str:
    lines = ["pair_id,rater,dimension,score"]
    for rater, values in HUMAN.items():
        lines += [f"{pid},{rater},overall,{v}" for pid, v in zip(IDS, values)]
    path.write_text("\n".join(lines) + "\n" + extra, encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def aligned(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("align")
    write_run(tmp / "run", JUDGE)
    extra = ("y5,r1,overall,3\n"          # the judge failed on y5: not used, counted
             "zz,r1,overall,3\n"          # not in the run
             "x1,r3,overall,good\n"       # not a number
             "x1,r1,overall,5\n")         # rated twice
    csv = ratings_csv(tmp / "ratings.csv", extra)
    assert main(["align", str(tmp / "run"), "--human", csv, "--n-resamples", "300"]) == 0
    return json.loads((tmp / "run" / "align" / "align.json").read_text(encoding="utf-8")), tmp


def test_correlations_equal_the_hand_computed_values(aligned):
    res, _ = aligned
    d = res["dimensions"]["overall"]
    assert d["judge_field"] == "score" and d["pairs"] == 8 and d["not_scored_by_judge"] == 1
    x, y = d["categories"][X], d["categories"][Y]
    # 物理: judge 1 2 3 4, mean human 1.5 1.5 3.5 3.5 -> ranks 1.5 1.5 3.5 3.5:
    # Spearman = Pearson of ranks = 4 / sqrt(5 * 4); Kendall tau-b: 4 concordant, 0 discordant, 2 ties in
    # the humans: 4 / sqrt(6 * (6 - 2))
    assert x["judge_human"]["spearman"]["r"] == pytest.approx(4 / math.sqrt(20))
    assert x["judge_human"]["kendall"]["r"] == pytest.approx(4 / math.sqrt(24))
    # 因果: mean human 1 3 1.5 4 ... r1 = 1 3 2 4, r2 = 2 3 1 4 -> mean 1.5 3 1.5 4, ranks 1.5 3 1.5 4:
    # Spearman = 3 / sqrt(5 * 4.5); Kendall: C = 4, D = 1, one tie: 3 / sqrt(6 * 5)
    assert y["judge_human"]["spearman"]["r"] == pytest.approx(3 / math.sqrt(22.5))
    assert y["judge_human"]["kendall"]["r"] == pytest.approx(3 / math.sqrt(30))
    # human-human (one rater pair per category): 物理 d = [-1, 1, -1, 1]: rho = 1 - 6*4/60 = 0.6, tau = 2/6;
    # 因果 d = [-1, 0, 1, 0]: rho = 1 - 6*2/60 = 0.8, tau = 4/6
    assert x["human_human"]["spearman"] == pytest.approx(0.6) and x["human_human"]["kendall"] == pytest.approx(1 / 3)
    assert y["human_human"]["spearman"] == pytest.approx(0.8) and y["human_human"]["kendall"] == pytest.approx(2 / 3)
    # averaged over the categories with Fisher z, not the plain mean
    cm = d["category_mean"]
    expected = math.tanh((math.atanh(4 / math.sqrt(20)) + math.atanh(3 / math.sqrt(22.5))) / 2)
    assert cm["judge_human"]["spearman"] == pytest.approx(expected)
    assert abs(expected - (4 / math.sqrt(20) + 3 / math.sqrt(22.5)) / 2) > 0.02
    assert cm["human_human"]["spearman"] == pytest.approx(math.tanh((math.atanh(0.6) + math.atanh(0.8)) / 2))
    # pooled over all 8 pairs
    judge = [1, 2, 3, 4, 1, 2, 3, 4]
    human = [(a + b) / 2 for a, b in zip(HUMAN["r1"], HUMAN["r2"])]
    assert d["overall"]["judge_human"]["spearman"]["r"] == pytest.approx(stats.spearmanr(judge, human).statistic)
    lo, hi = d["overall"]["judge_human"]["spearman"]["ci95"]
    assert -1 <= lo <= hi <= 1
    assert res["uncertainty"]["seed"] == 0 and res["uncertainty"]["n_resamples"] == 300


def test_unusable_rows_are_listed_with_their_line(aligned):
    res, tmp = aligned
    problems = "\n".join(res["problems"])
    assert "ratings.csv:19: pair 'zz' is not in the run" in problems
    assert "ratings.csv:20: pair 'x1', rater 'r3': score 'good' is not a number" in problems
    assert "ratings.csv:21: pair 'x1', rater 'r1', dimension 'overall' rated twice" in problems
    md = (tmp / "run" / "align" / "align.md").read_text(encoding="utf-8")
    assert "0.894" in md and "0.632" in md and "类别平均（Fisher z）" in md  # Chinese categories: Chinese labels


def test_bad_ratings_files_are_clear_errors(tmp_path, capsys):
    write_run(tmp_path / "run", JUDGE)
    bad = tmp_path / "bad.csv"
    bad.write_text("pair,rater,dimension,score\nx1,r1,overall,3\n", encoding="utf-8")
    assert main(["align", str(tmp_path / "run"), "--human", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.csv: the ratings need the columns" in err and "'pair_id' (did you mean 'pair'?)" in err
    csv = ratings_csv(tmp_path / "r.csv")
    assert main(["align", str(tmp_path / "run"), "--human", csv, "--dimension", "quality"]) == 2
    assert "no ratings for dimension 'quality'; the ratings have: overall" in capsys.readouterr().err
    assert main(["align", str(tmp_path / "nope"), "--human", csv]) == 2
    assert "no report.json" in capsys.readouterr().err


def test_fisher_mean_and_vectorized_statistics():
    assert fisher_mean([0.5, 0.8]) == pytest.approx(math.tanh((math.atanh(0.5) + math.atanh(0.8)) / 2))
    assert fisher_mean([0.3, None]) == pytest.approx(0.3) and fisher_mean([]) is None
    assert fisher_mean([1.0, 0.2]) == 1.0
    rng = np.random.default_rng(3)
    a, b = rng.integers(0, 5, (40, 12)).astype(float), rng.integers(0, 5, (40, 12)).astype(float)
    want_k = [stats.kendalltau(a[i], b[i]).statistic for i in range(40)]
    want_s = [stats.spearmanr(a[i], b[i]).statistic for i in range(40)]
    np.testing.assert_allclose(_kendall_vec(a, b), want_k, equal_nan=True)
    np.testing.assert_allclose(_spearman_vec(a, b), want_s, equal_nan=True)
    c = correlations([1, 1, 1], [1, 2, 3])  # constant: undefined, not zero
    assert c["spearman"]["r"] is None and c["kendall"]["ci95"] == [None, None]


def test_category_column_and_judge_dimensions(tmp_path):
    write_run(tmp_path / "run", JUDGE)
    rep_path = tmp_path / "run" / "report.json"
    rep = json.loads(rep_path.read_text(encoding="utf-8"))
    for p in rep["pairs"]:  # a judge that recorded an SC dimension: 10 - score (reverses the order)
        if p["status"] == "scored":
            p["dimensions"] = {"SC": 10 - p["score"]}
    rep_path.write_text(json.dumps(rep, ensure_ascii=False), encoding="utf-8")
    lines = ["category,pair_id,rater,dimension,score"]
    for rater, values in HUMAN.items():
        for pid, v in zip(IDS, values):
            cat = X if pid.startswith("x") else Y
            lines += [f"{cat},{pid},{rater},SC,{v}", f"{cat},{pid},{rater},overall,{v}"]
    lines.append(f"{Y},x1,r1,SC,3")  # x1 is not a 因果 pair
    csv = tmp_path / "r.csv"
    csv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert main(["align", str(tmp_path / "run"), "--human", str(csv), "--out", str(tmp_path / "al"),
                 "--n-resamples", "50", "--language", "en"]) == 0
    assert "| mean over categories (Fisher z) |" in (tmp_path / "al" / "align.md").read_text(encoding="utf-8")
    res = json.loads((tmp_path / "al" / "align.json").read_text(encoding="utf-8"))
    sc, overall = res["dimensions"]["SC"], res["dimensions"]["overall"]
    assert sc["judge_field"] == "SC" and overall["judge_field"] == "score"
    for cat in (X, Y):  # the SC dimension is the score reversed: every rank correlation flips sign
        for m in ("spearman", "kendall"):
            assert sc["categories"][cat]["judge_human"][m]["r"] == pytest.approx(
                -overall["categories"][cat]["judge_human"][m]["r"])
    assert any("category '因果', pair 'x1' is not in the run" in p for p in res["problems"])
