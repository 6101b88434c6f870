"""`python main.py compare`: paired leaderboards of runs built from real records (tests/run_records.py)
and of runs made by the real pipeline with the fake models."""

from __future__ import annotations

import json
import os
import statistics

import pytest

from src.cli import main
from src.compare import CompareError, compare_runs, find_runs
from src.stats import mean_ci, paired_difference
from tests.conftest import make_benchmark, write_config
from tests.run_records import judge_spec, write_run

C = "因果"
P = "物理"
# The case: on 因果, B's own mean is 0.33 above A's, but on the pairs both scored B is 0.50 worse.
A_SCORES = {(C, "c1"): 2.0, (C, "c2"): 5.0, (C, "c3"): 5.0, (C, "c4"): 6.0, (P, "p1"): 7.0, (P, "p2"): 8.0}
B_SCORES = {(C, "c1"): "edit_failed", (C, "c2"): 4.0, (C, "c3"): 5.5, (C, "c4"): 5.0, (P, "p1"): 6.0, (P, "p2"): 9.0}


@pytest.fixture
def two_runs(tmp_path):
    write_run(tmp_path / "runs" / "A", A_SCORES, editor="editor-a")
    write_run(tmp_path / "runs" / "B", B_SCORES, editor="editor-b")
    return tmp_path / "runs"


@pytest.mark.parametrize("missing", ["edit_failed", "absent"])
def test_paired_result_reverses_the_per_run_means(tmp_path, missing):
    b = dict(B_SCORES)
    if missing == "absent":  # B never had the pair (e.g. a --limit run): not in its plan at all
        del b[(C, "c1")]
    write_run(tmp_path / "A", A_SCORES, editor="editor-a")
    write_run(tmp_path / "B", b, editor="editor-b")
    runs, notes = find_runs([tmp_path / "A", tmp_path / "B"])
    assert [r.name for r in runs] == ["A", "B"] and notes == []
    res = compare_runs(runs, seed=0, n_resamples=2000)
    cat = res["categories"][C]
    a, bb = cat["runs"]["A"], cat["runs"]["B"]
    # unpaired means: B looks better by 1/3 ...
    assert a["own"]["mean"] == pytest.approx(18 / 4) and bb["own"]["mean"] == pytest.approx(14.5 / 3)
    assert bb["own"]["mean"] - a["own"]["mean"] == pytest.approx(1 / 3)
    # ... but on the 3 common pairs B is 0.5 worse, and A is the best run
    assert cat["common"] == 3 and cat["best"] == "A" and cat["ranking"] == ["A", "B"]
    assert a["common"]["mean"] == pytest.approx(16 / 3) and bb["common"]["mean"] == pytest.approx(14.5 / 3)
    d = bb["vs_best"]
    assert a["vs_best"] is None and d["n"] == 3 and d["mean_diff"] == pytest.approx(-0.5)
    # paired diffs B - A are [-1, +0.5, -1]: a bootstrap resample mean is -1, -0.5, 0 or 0.5 as it holds
    # 0..3 copies of +0.5 (binomial, p = 1/3): P(mean >= 0) = 7/27, P(mean <= 0) = 1, P(mean = -1) = 8/27
    assert d["ci95"] == [-1.0, 0.5]
    assert d["p_bootstrap"] == pytest.approx(14 / 27, abs=0.05)
    # Wilcoxon signed-rank, exact for n = 3: |d| ranks 1 (the +0.5), 2, 3; W+ = 1; of the 8 sign patterns
    # 2 give W+ <= 1 ({} and {1}): two-sided p = 2 * 2/8
    assert d["p_wilcoxon"] == pytest.approx(0.5)
    # coverage: B scored 3 of its pairs in 因果 + 2 in 物理
    cov = {r["name"]: r for r in res["runs"]}
    assert (cov["A"]["scored"], cov["A"]["common"]) == (6, 5)
    assert cov["B"]["scored"] == 5 and cov["B"]["pairs"] == (6 if missing == "edit_failed" else 5)
    # overall is paired too: 5 common pairs, A 31/5 vs B 29.5/5
    o = res["overall"]
    assert o["common"] == 5 and o["runs"]["A"]["common"]["mean"] == pytest.approx(31 / 5)
    assert o["runs"]["B"]["vs_best"]["mean_diff"] == pytest.approx(-1.5 / 5)
    assert res["warnings"] == [] or all("benchmark fingerprints" in w for w in res["warnings"])


def test_every_number_is_recomputable_from_the_pairs(two_runs, tmp_path):
    assert main(["compare", str(two_runs), "--out", str(tmp_path / "cmp"), "--n-resamples", "500",
                 "--language", "en"]) == 0
    res = json.loads((tmp_path / "cmp" / "compare.json").read_text(encoding="utf-8"))
    assert res["uncertainty"]["seed"] == 0 and res["uncertainty"]["n_resamples"] == 500
    for name, board in [("overall", res["overall"]), *res["categories"].items()]:
        rows = [p for p in res["pairs"] if (name == "overall" or p["category"] == name) and p["common"]]
        assert board["common"] == len(rows)
        for run, e in board["runs"].items():
            values = [p["runs"][run]["score"] for p in rows]
            assert e["common"] == mean_ci(values, seed=0, n_resamples=500)
            if e["vs_best"] is not None:
                best = [p["runs"][board["best"]]["score"] for p in rows]
                assert e["vs_best"] == paired_difference(values, best, seed=0, n_resamples=500)
            own = [p["runs"][run]["score"] for p in res["pairs"] if (name == "overall" or p["category"] == name)
                   and p["runs"][run]["status"] == "scored"]
            assert e["own"]["mean"] == pytest.approx(statistics.fmean(own))
    md = (tmp_path / "cmp" / "compare.md").read_text(encoding="utf-8")
    assert "| 1 | A | 5.33 | [5.00, 6.00] |" in md
    assert "| 2 | B | 4.83 |" in md and "-0.50" in md and "Common pairs: 3 of 4. Best: **A**." in md
    html = (tmp_path / "cmp" / "compare.html").read_text(encoding="utf-8")
    assert html.count('<tr class="pair"') == 6
    assert 'src="../runs/A/images/c2.png"' in html  # images linked relative to the output folder


def test_real_pipeline_runs_found_below_a_folder(tmp_path):
    evil = [{"pair_id": "x<1>", "original_image_b64": make_benchmark.__globals__["png_b64"](),
             "edit_instruction": "<script>alert(1)</script> | *bold*", "original_description": "d"}]
    bench = make_benchmark(tmp_path / "bench.json", categories=["物理", "因果"], n=3, extra={"因果": evil})
    cfg_a = write_config(tmp_path / "a.yaml", bench)
    cfg_b = write_config(tmp_path / "b.yaml", bench, seed=1,
                         editor={"class_path": "tests.fakes.FakeEditModel", "init_args": {"fail_ids": ["1-0"]}})
    assert main(["--config", str(cfg_a), "--run-name", "a"]) == 0
    assert main(["--config", str(cfg_b), "--run-name", "b"]) == 0
    (tmp_path / "outputs" / "empty").mkdir()  # not a run: ignored
    out = tmp_path / "cmp"
    assert main(["compare", str(tmp_path / "outputs"), "--out", str(out), "--n-resamples", "200"]) == 0
    res = json.loads((out / "compare.json").read_text(encoding="utf-8"))
    assert [r["name"] for r in res["runs"]] == ["a", "b"]
    assert res["common_pairs"] == 6  # 7 pairs, one failed in b
    assert {r["name"]: (r["pairs"], r["scored"]) for r in res["runs"]} == {"a": (7, 7), "b": (7, 6)}
    assert res["warnings"] == []  # same judge, same protocol, same benchmark
    html = (out / "compare.html").read_text(encoding="utf-8")
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    md = (out / "compare.md").read_text(encoding="utf-8")
    assert "<script>" not in md and "共同样本对：" in md and '<html lang="zh">' in html  # Chinese categories


def test_warns_on_different_judges_and_protocols(tmp_path):
    write_run(tmp_path / "A", A_SCORES, judge=judge_spec("judge-a"))
    write_run(tmp_path / "B", B_SCORES, judge=judge_spec("judge-b", protocol="viescore", served=True))
    res = compare_runs(find_runs([tmp_path])[0], n_resamples=100)
    text = "\n".join(res["warnings"])
    assert "different judges: A: judge-a, B: judge-b" in text
    assert "different judge protocols: A: category_0to10, B: viescore" in text
    write_run(tmp_path / "C", B_SCORES, judge=judge_spec("judge-a", protocol={"因果": "kris", "default": "viescore"}))
    res = compare_runs(find_runs([tmp_path / "A", tmp_path / "C"])[0], n_resamples=100)
    assert 'different judge protocols: A: category_0to10, C: {"default": "viescore", "因果": "kris"}' in "\n".join(
        res["warnings"])


def test_unfinished_runs_are_skipped_when_searching_and_errors_are_clear(tmp_path, capsys):
    write_run(tmp_path / "A", A_SCORES)
    write_run(tmp_path / "B", B_SCORES)
    rep = json.loads((tmp_path / "B" / "report.json").read_text(encoding="utf-8"))
    rep["overall"]["pending"] = 2
    (tmp_path / "B" / "report.json").write_text(json.dumps(rep), encoding="utf-8")
    runs, notes = find_runs([tmp_path])
    assert [r.name for r in runs] == ["A"] and "not finished (2 pairs pending)" in notes[0]
    assert main(["compare", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "compare needs at least two runs; found 1" in capsys.readouterr().err
    assert main(["compare", str(tmp_path / "nope"), str(tmp_path / "A")]) == 2
    assert "nope: no such file or folder" in capsys.readouterr().err
    (tmp_path / "A" / "report.json").write_text("{", encoding="utf-8")
    with pytest.raises(CompareError, match=r"A/report.json: cannot read the report"):
        find_runs([tmp_path / "A"])


def test_judge_option_compares_the_runs_on_one_judge(tmp_path, capsys):
    j1, j2 = judge_spec("judge-one"), judge_spec("judge-two")
    b_scores = {k: (v + 1 if isinstance(v, float) else v) for k, v in B_SCORES.items()}
    write_run(tmp_path / "A", A_SCORES, judge=j1, judges=[(j2, {k: 1.0 for k in A_SCORES})])
    write_run(tmp_path / "B", B_SCORES, judge=j1, judges=[(j2, b_scores)])
    write_run(tmp_path / "C", B_SCORES, judge=j1)
    (folder,) = [n for n in os.listdir(tmp_path / "C" / "reports") if n.startswith("judge-one-")]
    res = compare_runs(find_runs([tmp_path / "A", tmp_path / "C"])[0], n_resamples=100)
    assert any(f"every run has reports of the judge(s) {folder}: compare them on one judge with --judge NAME" in w
               for w in res["warnings"])
    res = compare_runs(find_runs([tmp_path], judge=folder)[0], n_resamples=100)
    assert not any("scoring fingerprints" in w for w in res["warnings"])
    assert res["categories"][C]["runs"]["B"]["vs_best"]["mean_diff"] == pytest.approx(-0.5)  # judge-one's scores
    assert main(["compare", str(tmp_path / "A"), str(tmp_path / "C"), "--judge", "nobody"]) == 2
    assert f"no reports/nobody/report.json in this run folder (judges with reports: " in capsys.readouterr().err


def test_pairs_with_different_inputs_are_not_common(tmp_path):
    write_run(tmp_path / "A", A_SCORES)
    write_run(tmp_path / "B", B_SCORES)
    path = tmp_path / "B" / "report.json"
    rep = json.loads(path.read_text(encoding="utf-8"))
    for p in rep["pairs"]:
        if p["pair_id"] == "c2":
            p["input_sha256"] = "0" * 64  # B edited another image under the same pair id
    path.write_text(json.dumps(rep, ensure_ascii=False), encoding="utf-8")
    res = compare_runs(find_runs([tmp_path / "A", tmp_path / "B"])[0], n_resamples=100)
    assert res["categories"][C]["common"] == 2
    assert [r["common"] for r in res["pairs"] if r["pair_id"] == "c2"] == [False]
    assert any("1 pair(s) have different input images or instructions in different runs and are not compared: "
               "因果/c2" in w for w in res["warnings"])
