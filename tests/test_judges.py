"""Several judges on one run: one report per judge under reports/<judge>/, an index, judge agreement."""

from __future__ import annotations

import json

import pytest

from src.agreement import judge_agreement
from src.compare_labels import LABELS as CMP_LABELS
from src.cli import main
from tests.run_records import judge_spec, write_run

X, Y = "物理", "因果"
KEYS = [(X, "x1"), (X, "x2"), (X, "x3"), (Y, "y1"), (Y, "y2"), (Y, "y3")]
A = dict(zip(KEYS, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]))
B = dict(zip(KEYS, [6.0, 2.0, 3.0, 4.0, 5.0, 1.0]))  # the first and last pair swapped


def read(path):
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def run_two_judges(tmp_path_factory):
    run = tmp_path_factory.mktemp("judges") / "run"
    write_run(run, A, judge=judge_spec("org/judge-a"), judges=[(judge_spec("served-b", served=True), B)])
    return run


def test_each_judge_keeps_its_report_and_the_index_lists_both(run_two_judges):
    run = run_two_judges
    index = read(run / "reports" / "index.json")
    names = [j["name"] for j in index["judges"]]
    assert len(names) == 2 and names[0].startswith("judge-a-") and names[1].startswith("served-b-")
    assert index["latest"] == names[1]
    ra, rb = (read(run / "reports" / n / "report.json") for n in names)
    assert [p["score"] for p in ra["pairs"]] == list(A.values())
    assert [p["score"] for p in rb["pairs"]] == list(B.values())
    top = read(run / "report.json")  # the top-level report is the latest judge's, as before
    assert top["run"]["scoring_fingerprint"] == rb["run"]["scoring_fingerprint"]
    assert [p["score"] for p in top["pairs"]] == list(B.values())
    # the header names the served judge's model (it printed None before)
    assert rb["run"]["judge_name"] == "served-b" and ra["run"]["judge_name"] == "org/judge-a"
    md = (run / "reports" / names[1] / "report.md").read_text(encoding="utf-8")
    assert "OpenAICompatibleRewardModel` (served-b)" in md and "None" not in md.split("\n\n")[1]
    html = (run / "reports" / names[1] / "report.html").read_text(encoding="utf-8")
    assert "(served-b)" in html
    from tests.test_gallery import embedded  # the gallery's data: image paths relative to the run folder

    data = embedded(html)
    assert data["base"] == "../../" and any(img[:2] == ["edited", "images/x1.png"] for row in data["rows"]
                                            for img in row["img"])
    assert (run / "reports" / names[1] / ".." / ".." / "images" / "x1.png").is_file()
    from src.report_labels import LABELS

    top_md = (run / "report.md").read_text(encoding="utf-8")
    assert any(f"[{labels['all_judges']}](reports/index.md)" in top_md for labels in LABELS.values())


def test_agreement_matches_hand_computed_correlations(run_two_judges):
    index = read(run_two_judges / "reports" / "index.json")
    (jp,) = index["agreement"]["judge_pairs"]
    o = jp["overall"]
    # ranks of B: d = [5, 0, 0, 0, 0, -5], sum d^2 = 50: rho = 1 - 6*50 / (6*35) = -3/7
    assert o["n"] == 6 and o["spearman"]["r"] == pytest.approx(-3 / 7)
    # 15 pairs: 9 discordant (5 with the first pair, 4 more with the last), 6 concordant: tau = -3/15
    assert o["kendall"]["r"] == pytest.approx(-0.2)
    assert o["pearson"]["r"] == pytest.approx(-3 / 7)  # the scores are their own ranks
    x = jp["categories"][X]
    # 物理: A = [1, 2, 3], B = [6, 2, 3]: rank d = [2, -1, -1]: rho = 1 - 6*6/(3*8) = -0.5;
    # Pearson = sum(dx dy) / sqrt(sum dx^2 sum dy^2) = -3 / sqrt(2 * 78/9)
    assert x["spearman"]["r"] == pytest.approx(-0.5) and x["pearson"]["r"] == pytest.approx(-3 / (2 * 78 / 9) ** 0.5)
    lo, hi = o["spearman"]["ci95"]
    assert -1 <= lo <= hi <= 1
    top = jp["disagreements"][:2]  # the swapped pairs: percentile ranks 1/6 vs 1 -> 5/6
    assert {(d["category"], d["pair_id"]) for d in top} == {(X, "x1"), (Y, "y3")}
    assert top[0]["disagreement"] == pytest.approx(5 / 6) and len(jp["disagreements"]) == 2  # the rest agree
    md = (run_two_judges / "reports" / "index.md").read_text(encoding="utf-8")
    assert "-0.429" in md and CMP_LABELS["zh"]["disagree_title"] in md  # Chinese categories: Chinese labels
    assert judge_agreement({}) ["judge_pairs"] == []


def test_rescoring_with_a_second_judge_keeps_both_reports(tmp_path, fake_config):
    assert main(["--config", str(fake_config), "--run-name", "r", "--limit", "2"]) == 0
    run = tmp_path / "outputs" / "r"
    first = read(run / "report.json")
    assert main(["--config", str(fake_config), "--resume", str(run), "--stage", "score", "--limit", "2",
                 "--set", "reward_model.init_args.offset=1.0"]) == 0
    index = read(run / "reports" / "index.json")
    assert len(index["judges"]) == 2
    old = read(run / "reports" / index["judges"][0]["name"] / "report.json")
    assert [p["score"] for p in old["pairs"]] == [p["score"] for p in first["pairs"]]
    assert old["run"]["scoring_fingerprint"] == first["run"]["scoring_fingerprint"]
    new = read(run / "report.json")
    assert new["run"]["scoring_fingerprint"] != first["run"]["scoring_fingerprint"]
    (jp,) = index["agreement"]["judge_pairs"]
    assert jp["n"] == 10
    # re-writing the reports with the old judge's config leaves both judges' reports in place
    assert main(["--config", str(fake_config), "--resume", str(run), "--stage", "report", "--limit", "2"]) == 0
    again = read(run / "reports" / "index.json")
    assert {j["name"] for j in again["judges"]} == {j["name"] for j in index["judges"]}
    assert again["latest"] == index["judges"][0]["name"]
