"""Headline numbers (src/scoring/headline.py) against values computed by hand from the official formulas.

Each synthetic set is a report `pairs` list, built so that a wrong aggregation (pooled instead of mean over
task means, a missing halving rule, a failure dropped instead of counted ...) gives a different number.
"""

import math

import pytest

from src.scoring.headline import GEDIT_TASKS, build_headline, detect_format

SEED = 3


def pair(fmt, cat, pid, dims=None, status="scored", **md):
    return {"pair_id": pid, "category": cat, "status": status, "score": None if status != "scored" else 1.0,
            "dimensions": dims if status == "scored" else None, "metadata": {"source_format": fmt, **md}}


def find(entries, group, metric):
    hits = [e for e in entries if e["group"] == group and e["metric"] == metric]
    assert len(hits) == 1, (group, metric, [(e["group"], e["metric"]) for e in entries])
    return hits[0]


def value(entries, group, metric, variant="scored"):
    return find(entries, group, metric)[variant]["value"]


# ----------------------------------------------------------------------------- GEdit


def vie(sc, pq):
    return {"SC": sc, "PQ": pq, "overall": math.sqrt(sc * pq)}


def gedit_pairs():
    pairs = []
    # en: background_change has 3 pairs, the 10 other task types 1 each -> mean over task means != pooled mean
    for i, (sc, pq, inter) in enumerate([(1, 4, True), (4, 9, False), (9, 9, True)]):
        pairs.append(pair("gedit", "background_change/en", f"en-bg-{i}", vie(sc, pq), task_type="background_change",
                          instruction_language="en", Intersection_exist=inter))
    for t in GEDIT_TASKS[1:]:
        pairs.append(pair("gedit", f"{t}/en", f"en-{t}", vie(4, 4), task_type=t, instruction_language="en",
                          Intersection_exist=True))
    # cn: background_change has one scored pair (not in the intersection) and one judge failure (in it)
    pairs.append(pair("gedit", "background_change/cn", "cn-bg-0", vie(10, 10), task_type="background_change",
                      instruction_language="cn", Intersection_exist=False))
    pairs.append(pair("gedit", "background_change/cn", "cn-bg-1", status="score_failed",
                      task_type="background_change", instruction_language="cn", Intersection_exist=True))
    for t in GEDIT_TASKS[1:]:
        pairs.append(pair("gedit", f"{t}/cn", f"cn-{t}", vie(2, 8), task_type=t, instruction_language="cn",
                          Intersection_exist="True"))
    return pairs


def test_gedit_mean_over_task_means_per_language_and_intersection():
    h = build_headline(gedit_pairs(), seed=SEED)
    assert h["format"] == "gedit" and h["problems"] == []
    n = h["numbers"]
    # en: background_change means SC 14/3, PQ 22/3, O (2 + 6 + 9)/3; the 10 others SC = PQ = O = 4
    assert value(n, "en", "SC") == pytest.approx((14 / 3 + 40) / 11)
    assert value(n, "en", "PQ") == pytest.approx((22 / 3 + 40) / 11)
    assert value(n, "en", "O") == pytest.approx((17 / 3 + 40) / 11)
    assert value(n, "en", "SC") != pytest.approx(54 / 13)  # not the pooled mean
    # en intersection: background_change keeps (1, 4) and (9, 9): SC 5, PQ 6.5, O (2 + 9)/2
    assert value(n, "en ∩ intersection", "SC") == pytest.approx(45 / 11)
    assert value(n, "en ∩ intersection", "PQ") == pytest.approx(46.5 / 11)
    assert value(n, "en ∩ intersection", "O") == pytest.approx(45.5 / 11)
    # cn over scored: background_change = the one scored pair (10, 10); others SC 2, PQ 8, O 4
    assert value(n, "cn", "SC") == pytest.approx(30 / 11)
    assert value(n, "cn", "PQ") == pytest.approx(90 / 11)
    assert value(n, "cn", "O") == pytest.approx(50 / 11)
    # cn over all pairs, the failure as 0: background_change SC (10 + 0)/2 = 5
    assert value(n, "cn", "SC", "all_pairs") == pytest.approx(25 / 11)
    assert value(n, "cn", "PQ", "all_pairs") == pytest.approx(85 / 11)
    assert value(n, "cn", "O", "all_pairs") == pytest.approx(45 / 11)
    assert find(n, "cn", "O")["coverage"] == {"scored": 11, "pairs": 12, "fraction": 11 / 12}
    # cn intersection: background_change has only the failure -> averaged over the 10 scored task types;
    # over all pairs it counts as 0
    cn_i = find(n, "cn ∩ intersection", "SC")
    assert cn_i["scored"]["value"] == pytest.approx(2.0) and cn_i["tasks_averaged"] == 10
    assert cn_i["tasks_without_scores"] == ["background_change"]
    assert cn_i["all_pairs"]["value"] == pytest.approx(20 / 11)
    assert value(n, "cn ∩ intersection", "O") == pytest.approx(4.0)
    # per-task breakdown
    b = h["breakdown"]
    assert value(b, "en · background_change", "O") == pytest.approx(17 / 3)
    assert value(b, "cn · background_change", "PQ", "all_pairs") == pytest.approx(5.0)


def test_gedit_bad_metadata_is_reported_not_guessed():
    pairs = gedit_pairs()
    pairs.append(pair("gedit", "x/en", "odd-task", vie(5, 5), task_type="made_up", instruction_language="en",
                      Intersection_exist=True))
    pairs.append(pair("gedit", "color_alter/en", "odd-flag", vie(0, 0), task_type="color_alter",
                      instruction_language="en", Intersection_exist="maybe"))
    pairs.append(pair("gedit", "color_alter/en", "no-vie", {"overall": 3.0}, task_type="color_alter",
                      instruction_language="en", Intersection_exist=False))
    h = build_headline(pairs, seed=SEED)
    text = "\n".join(h["problems"])
    assert "x/en/odd-task: task_type: 'made_up'" in text
    assert "color_alter/en/odd-flag: Intersection_exist: 'maybe'" in text
    assert "color_alter/en/no-vie: dimensions: no SC/PQ" in text
    # odd-flag (0, 0) still counts in the full set; the intersection numbers are unchanged
    assert value(h["numbers"], "en", "SC") == pytest.approx((14 / 3 + 9 * 4 + (4 + 0) / 2) / 11)
    assert value(h["numbers"], "en ∩ intersection", "SC") == pytest.approx(45 / 11)


# ----------------------------------------------------------------------------- KRIS


def kris(cat, pid, status="scored", **dims):
    return pair("kris", cat, pid, dims, status=status)


def kris_pairs():
    return [
        kris("count_change", "1", consistency=5, quality=4, instruction=3),        # 100 75 50
        kris("count_change", "2", consistency=3, quality=3, instruction=1),        # 50 50 0
        kris("color_change", "3", consistency=2, quality=5, instruction=5),        # 25 100 100
        kris("color_change", "4", status="score_failed"),
        kris("viewpoint_change", "5", consistency=4, quality=4, instruction=4),    # 75 75 75
        kris("humanities", "6", consistency=5, quality=5, instruction=5, knowledge=1),  # 100 100 100 0
        kris("humanities", "7", consistency=1, quality=2, instruction=3, knowledge=4),  # 0 25 50 75
        kris("physics", "8", consistency=3, quality=3, instruction=3, knowledge=3),     # 50 50 50 50
        kris("physics", "9", consistency=5, quality=5, instruction=5),                  # KP not given: dropped
        kris("multi-instruction_execution", "10", consistency=1, quality=1, instruction=1, knowledge=5),  # KP ignored
    ]


def test_kris_normalised_sub_task_type_meta_and_overall():
    h = build_headline(kris_pairs(), seed=SEED)
    assert h["format"] == "kris" and h["problems"] == []
    n, b = h["numbers"], h["breakdown"]
    assert value(b, "Attribute Perception · count_change", "VC") == pytest.approx(75)
    assert value(b, "Attribute Perception · count_change", "VQ") == pytest.approx(62.5)
    assert value(b, "Attribute Perception · count_change", "IF") == pytest.approx(25)
    assert value(b, "Attribute Perception · color_change", "VC", "all_pairs") == pytest.approx(12.5)
    assert not [e for e in b if e["metric"] == "AVG"]  # the official summary has no per-sub-task AVG
    assert value(n, "Attribute Perception", "VC") == pytest.approx(175 / 3)
    assert value(n, "Attribute Perception", "VQ") == pytest.approx(75)
    assert value(n, "Attribute Perception", "IF") == pytest.approx(50)
    assert value(n, "Attribute Perception", "AVG") == pytest.approx(550 / 9)
    assert value(n, "Attribute Perception", "AVG", "all_pairs") == pytest.approx(550 / 12)
    assert value(n, "Attribute Perception", "VC", "all_pairs") == pytest.approx(175 / 4)
    assert find(n, "Attribute Perception", "AVG")["coverage"]["fraction"] == pytest.approx(3 / 4)
    assert value(n, "Spatial Perception", "AVG") == pytest.approx(75)
    assert value(n, "Social Science", "KP") == pytest.approx(37.5)
    assert value(n, "Social Science", "AVG") == pytest.approx(450 / 8)
    assert value(n, "Natural Science", "VC") == pytest.approx(75)
    assert value(n, "Natural Science", "KP") == pytest.approx(50)
    assert find(n, "Natural Science", "KP")["coverage"]["scored"] == 1
    assert value(n, "Natural Science", "AVG") == pytest.approx(500 / 7)
    assert value(n, "Instruction Decomposition", "AVG") == pytest.approx(0)
    assert not [e for e in n if e["group"] == "Instruction Decomposition" and e["metric"] == "KP"]
    assert value(n, "Factual Knowledge", "AVG") == pytest.approx(775 / 12)
    assert value(n, "Conceptual Knowledge", "AVG") == pytest.approx(950 / 15)
    assert value(n, "Procedural Knowledge", "AVG") == pytest.approx(0)
    assert value(n, "Overall", "AVG") == pytest.approx(1725 / 30)
    assert value(n, "Overall", "AVG", "all_pairs") == pytest.approx(1725 / 33)
    assert not [e for e in n if e["group"] == "Temporal Prediction"]  # no pairs, no row


def test_kris_sub_task_from_metadata_and_unknown_ones():
    p = pair("kris", "物理-1", "a", {"consistency": 5, "quality": 5, "instruction": 5}, sub_task="physics")
    q = pair("kris", "elsewhere", "b", {"consistency": 5, "quality": 5, "instruction": 5})
    r = pair("kris", "Rule_Based_Reasoning", "c", {"consistency": 3, "quality": 3, "instruction": 3, "knowledge": 3})
    h = build_headline([p, q, r], seed=SEED)
    assert value(h["numbers"], "Natural Science", "VC") == pytest.approx(100)
    assert value(h["numbers"], "Logical Reasoning", "KP") == pytest.approx(50)  # rule-based_reasoning
    assert h["problems"] == ["pair elsewhere/b: sub-task: category 'elsewhere' / metadata name none of the 20 "
                             "KRIS-Bench sub-tasks; left out"]


# ----------------------------------------------------------------------------- RISE


def rise(cat, sub, pid, status="scored", free=None, **dims):
    md = {"category": cat, "subtask": sub}
    if free is not None:
        md["consistency_free"] = free
    return pair("rise", cat, pid, dims, status=status, **md)


def rise_pairs():
    return [
        rise("temporal_reasoning", "Life Progression", "1", consistency=5, reasoning=5, appearance=5),  # 5, complete
        rise("temporal_reasoning", "Life Progression", "2", consistency=4, reasoning=1, appearance=5),  # 2.7 -> 1.35
        rise("causal_reasoning", "State Transition", "3", consistency=2, reasoning=1, appearance=1),    # 1.3 -> 1
        rise("causal_reasoning", "State Transition", "4", free=True, reasoning=5, appearance=5),        # 5, complete
        rise("spatial_reasoning", "Layout Reasoning", "5", consistency=3, reasoning=4, appearance=2),   # 3.3
        rise("spatial_reasoning", "Layout Reasoning", "6", status="score_failed"),
        rise("logical_reasoning", "Puzzle Solving", "7", consistency=5, reasoning=5),                   # 5, complete
        rise("logical_reasoning", "Puzzle Solving", "8", consistency=5, reasoning=1),                   # 2.2 -> 1.1
        rise("logical_reasoning", "Puzzle Solving", "9", consistency=1, reasoning=1),                   # 1 -> 1
    ]


def test_rise_weighted_score_halving_accuracy():
    h = build_headline(rise_pairs(), seed=SEED)
    assert h["format"] == "rise" and h["problems"] == []
    n, b = h["numbers"], h["breakdown"]
    total = 5 + 1.35 + 1 + 5 + 3.3 + 5 + 1.1 + 1
    assert value(n, "Overall", "score") == pytest.approx(total / 8)
    assert value(n, "Overall", "score %") == pytest.approx(25 * (total / 8 - 1))
    assert value(n, "Overall", "score", "all_pairs") == pytest.approx((total + 1) / 9)
    assert value(n, "Overall", "score %", "all_pairs") == pytest.approx(25 * ((total + 1) / 9 - 1))
    assert value(n, "Overall", "accuracy") == pytest.approx(3 / 8)
    acc = find(n, "Overall", "accuracy")
    assert acc["all_pairs"]["value"] == pytest.approx(3 / 9) and acc["official_variant"] == "all_pairs"
    assert value(n, "Temporal", "score") == pytest.approx((5 + 1.35) / 2)
    assert value(n, "Causal", "score") == pytest.approx(3.0)
    assert value(n, "Causal", "accuracy") == pytest.approx(0.5)  # the consistency-free pair is complete
    assert value(n, "Spatial", "score") == pytest.approx(3.3)
    assert value(n, "Spatial", "score", "all_pairs") == pytest.approx(2.15)
    assert value(n, "Logical", "score") == pytest.approx(7.1 / 3)
    assert value(n, "Logical", "accuracy") == pytest.approx(1 / 3)
    assert value(n, "Overall", "reasoning") == pytest.approx(23 / 8)
    assert value(n, "Overall", "consistency") == pytest.approx(25 / 7)  # the consistency-free pair left out
    assert value(n, "Overall", "appearance") == pytest.approx(18 / 5)  # logical pairs have none
    assert value(n, "Overall", "appearance", "all_pairs") == pytest.approx(19 / 6)
    assert not [e for e in n if e["group"] == "Logical" and e["metric"] == "appearance"]
    assert value(b, "Temporal · Life Progression", "score") == pytest.approx(3.175)
    assert value(b, "Logical · Puzzle Solving", "accuracy") == pytest.approx(1 / 3)
    score_pct = find(n, "Overall", "score %")
    lo, hi = find(n, "Overall", "score")["scored"]["ci95"]
    assert score_pct["scored"]["ci95"] == pytest.approx([25 * (lo - 1), 25 * (hi - 1)])


def test_rise_missing_dimension_is_a_failure_not_a_guess():
    pairs = [rise("temporal_reasoning", "Life Progression", "1", consistency=5, reasoning=5),  # no appearance
             rise("temporal_reasoning", "Life Progression", "2", consistency=5, reasoning=3, appearance=5)]
    h = build_headline(pairs, seed=SEED)
    assert h["problems"] == ["pair temporal_reasoning/1: dimensions: no appearance: counted as a failure"]
    assert value(h["numbers"], "Overall", "score") == pytest.approx(0.3 * 5 + 0.5 * 3 + 0.2 * 5)
    assert find(h["numbers"], "Overall", "score")["coverage"]["scored"] == 1


# ----------------------------------------------------------------------------- ImgEdit


def imgedit_pairs():
    return [
        pair("imgedit", "add", "1", {"prompt_compliance": 5, "visual_seamlessness": 4, "physical_detail_fidelity": 4,
                                     "overall": 13 / 3}, edit_type="add"),
        pair("imgedit", "add", "2", {"prompt_compliance": 1, "visual_seamlessness": 1, "physical_detail_fidelity": 1,
                                     "overall": 1.0}, edit_type="add"),
        pair("imgedit", "add", "3", {"prompt_compliance": 4, "visual_seamlessness": 4, "physical_detail_fidelity": 5,
                                     "overall": 13 / 3}, edit_type="add"),
        pair("imgedit", "style", "4", {"style_fidelity": 2, "content_preservation": 5, "rendering_quality": 5,
                                       "overall": 4.0}, edit_type="style"),
        pair("imgedit", "style", "5", status="edit_failed", edit_type="style"),
    ]


def test_imgedit_type_means_with_official_rounding():
    h = build_headline(imgedit_pairs(), seed=SEED)
    n = h["numbers"]
    add = find(n, "add", "score")
    assert add["scored"]["value"] == pytest.approx(29 / 9)  # unrounded: (13/3 + 1 + 13/3) / 3
    assert add["official"] == pytest.approx(3.22)  # (4.33 + 1.00 + 4.33) / 3, rounded as the official scripts do
    style = find(n, "style", "score")
    assert style["scored"]["value"] == pytest.approx(4.0) and style["official"] == pytest.approx(4.0)
    assert style["all_pairs"]["value"] == pytest.approx(2.5)  # the failed edit as 1, the scale's floor
    overall = find(n, "Overall (mean of the type means)", "score")
    assert overall["scored"]["value"] == pytest.approx(65 / 18)
    assert overall["official"] == pytest.approx(3.61)
    assert overall["all_pairs"]["value"] == pytest.approx((29 / 9 + 2.5) / 2)
    assert overall["coverage"] == {"scored": 4, "pairs": 5, "fraction": 0.8}


# ----------------------------------------------------------------------------- choice, uncertainty


def test_format_detection():
    native = [{"pair_id": "a", "category": "c", "status": "scored", "metadata": {"source_format": "native"}}]
    assert detect_format(native) == (None, "the pairs are in the project's own format: no paper-defined "
                                           "benchmark score")
    assert build_headline(native, seed=0) == {"format": None, "reason": detect_format(native)[1]}
    assert detect_format([], None)[0] is None
    mixed = native + [pair("kris", "physics", "b", {})]
    assert "several formats (kris, native)" in detect_format(mixed)[1]
    assert detect_format(native, "kris") == ("kris", None)
    assert "known: gedit, kris, rise, imgedit" in detect_format(native, "krs")[1]


def test_every_number_has_se_ci_and_coverage_deterministically():
    pairs = gedit_pairs() + [pair("gedit", "background_change/en", f"extra-{i}", vie(i % 7, 10 - i % 5),
                                  task_type=t, instruction_language="en", Intersection_exist=bool(i % 2))
                             for i, t in enumerate(GEDIT_TASKS * 2)]
    a = build_headline(pairs, seed=11, n_resamples=400)
    assert a == build_headline(pairs, seed=11, n_resamples=400)
    b = build_headline(pairs, seed=12, n_resamples=400)
    assert [e["scored"]["value"] for e in a["numbers"]] == [e["scored"]["value"] for e in b["numbers"]]
    assert [e["scored"]["ci95"] for e in a["numbers"]] != [e["scored"]["ci95"] for e in b["numbers"]]
    en = find(a["numbers"], "en", "O")
    for variant in ("scored", "all_pairs"):
        lo, hi = en[variant]["ci95"]
        assert lo <= en[variant]["value"] <= hi and en[variant]["se"] > 0
    for e in a["numbers"] + a["breakdown"]:
        assert set(e["coverage"]) == {"scored", "pairs", "fraction"}
        assert e["coverage"]["scored"] <= e["coverage"]["pairs"]


def test_rendered_in_markdown_and_html_with_untrusted_names_escaped():
    from src.report import _env, aggregate

    pairs = rise_pairs() + [rise("causal_reasoning", "<script>alert(1)</script>|x", "10", consistency=5,
                                 reasoning=5, appearance=5)]
    r = aggregate(pairs, ["temporal_reasoning", "causal_reasoning", "spatial_reasoning", "logical_reasoning"],
                  seed=SEED)
    assert r["uncertainty"]["seed"] == SEED and r["headline"]["format"] == "rise"
    from src.report_labels import LABELS

    t = LABELS["en"]
    md = _env(False).get_template("headline.md.j2").render(r=r, t=t)
    overall = find(r["headline"]["numbers"], "Overall", "score")
    lo, hi = overall["scored"]["ci95"]
    assert f"| Overall | score | {overall['scored']['value']:.2f} [{lo:.2f}, {hi:.2f}] |" in md
    assert "| 9/10 |" in md  # coverage next to the number
    assert "<script>" not in md and "&lt;script&gt;" in md and "\\|x" in md
    html = _env(True).get_template("headline.html.j2").render(r=r, t=t)
    assert "<script>" not in html and f"seed {SEED}" in html
    unc = _env(False).get_template("uncertainty.md.j2").render(r=r, t=t)
    c = r["categories"]["causal_reasoning"]
    assert f"| causal\\_reasoning | 3 | {c['mean']:.2f} | [{c['ci95'][0]:.2f}, {c['ci95'][1]:.2f}] |" in unc
    zh = _env(False).get_template("headline.md.j2").render(r=r, t=LABELS["zh"])
    assert "## 基准分数" in zh and "覆盖率" in zh and "<script>" not in zh
    assert "## 不确定性" in _env(False).get_template("uncertainty.md.j2").render(r=r, t=LABELS["zh"])


def test_pairs_never_edited_count_by_their_category():
    # a pair that never reached the editor has no metadata in the report; the category names its group
    pending = {"pair_id": "p", "category": "color_alter_cn", "status": "pending", "score": None,
               "dimensions": None, "metadata": {}}
    h = build_headline(gedit_pairs() + [pending], seed=SEED)
    cn = find(h["numbers"], "cn", "SC")
    assert cn["coverage"] == {"scored": 11, "pairs": 13, "fraction": 11 / 13}
    # color_alter cn: (2 + 0) / 2; background_change cn: (10 + 0) / 2
    assert cn["all_pairs"]["value"] == pytest.approx((5 + 1 + 9 * 2) / 11)
    assert cn["scored"]["value"] == pytest.approx(30 / 11)
    assert h["problems"] == ["pair color_alter_cn/p: Intersection_exist: missing; left out of the intersection subset"]
    img = imgedit_pairs() + [{**pending, "category": "style"}]
    style = find(build_headline(img, seed=SEED)["numbers"], "style", "score")
    assert style["coverage"]["pairs"] == 3 and style["all_pairs"]["value"] == pytest.approx(2.0)


# ----------------------------------------------------------------------------- end to end


def test_served_viescore_judge_run_reports_the_gedit_headline(tmp_path, monkeypatch):
    """A real run on a GEdit-Bench parquet file in the dataset's layout, the fake editor, the
    OpenAI-compatible judge with the viescore protocol against a scripted local server; the headline in
    report.json / report.md equals the hand-computed GEdit numbers."""
    import re

    from tests.conftest import write_config
    from tests.openai_server import ScriptedOpenAIServer, ok
    from tests.public_formats import img_bytes, write_gedit_parquet
    from tests.test_pipeline import report_of, run_main

    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("HEADLINE_TEST_KEY", "k")
    # (task, language, SC the judge gives, Intersection_exist); SC "x" = an unreadable reply
    plan = [("background_change", "en", 4, True), ("background_change", "en", 9, False),
            ("color_alter", "en", 1, True), ("background_change", "cn", 6, True), ("color_alter", "cn", "x", True)]
    rows = []
    for i, (task, lang, sc, inter) in enumerate(plan):
        im = img_bytes(size=(10 + i, 8), color=(30 * i, 90, 120))
        rows.append({"task_type": task, "key": f"k{i}", "instruction": f"edit SC={sc}", "instruction_language": lang,
                     "input_image": {"bytes": im, "path": f"k{i}.png"}, "input_image_raw": {"bytes": im, "path": None},
                     "Intersection_exist": inter})
    bench = write_gedit_parquet(tmp_path / "gedit" / "data" / "train-00000-of-00001.parquet", rows)

    def reply(body):
        parts = [c for m in body["messages"] if m["role"] == "user" for c in m["content"]
                 if isinstance(m["content"], list)]
        text = " ".join(c.get("text", "") for c in parts if c.get("type") == "text")
        images = sum(1 for c in parts if c.get("type") == "image_url")
        if images == 1:  # PQ: the edited image alone
            return ok('{"score": [9, 10], "reasoning": "clean"}')
        sc = re.search(r"SC=(\w+)", text).group(1)
        return ok("no idea" if sc == "x" else f'{{"score": [{sc}, 10], "reasoning": "seen"}}')

    srv = ScriptedOpenAIServer().start()
    srv.handler = reply
    try:
        cfg = write_config(tmp_path / "c.yaml", bench, judge={
            "class_path": "src.models.reward.implementations.openai_compatible.OpenAICompatibleRewardModel",
            "init_args": {"model": "test-judge", "base_url": srv.base_url, "api_key_env": "HEADLINE_TEST_KEY",
                          "protocol": "viescore", "backoff_s": 0.01, "max_retries": 1}}, seed=5)
        assert run_main("--config", cfg, "--run-name", "g") == 0
    finally:
        srv.stop()
    report = report_of(tmp_path / "outputs" / "g")
    h = report["headline"]
    assert h["format"] == "gedit" and report["uncertainty"]["seed"] == 5
    n = h["numbers"]
    # O = sqrt(SC * 9) = 3 sqrt(SC): en background_change (6 + 9)/2, color_alter 3
    assert value(n, "en", "O") == pytest.approx((7.5 + 3) / 2)
    assert value(n, "en", "SC") == pytest.approx((6.5 + 1) / 2)
    assert value(n, "en", "PQ") == pytest.approx(9)
    assert value(n, "en ∩ intersection", "O") == pytest.approx((6 + 3) / 2)
    cn = find(n, "cn", "O")
    assert cn["scored"]["value"] == pytest.approx(math.sqrt(54)) and cn["tasks_without_scores"] == [
        t for t in GEDIT_TASKS if t != "background_change"]
    assert cn["all_pairs"]["value"] == pytest.approx(math.sqrt(54) / 2)
    assert cn["coverage"] == {"scored": 1, "pairs": 2, "fraction": 0.5}
    assert build_headline(report["pairs"], seed=5) == h  # recomputable from the pairs
    md = (tmp_path / "outputs" / "g" / "report.md").read_text(encoding="utf-8")
    assert "## Benchmark score" in md and f"| en | O | {(7.5 + 3) / 2:.2f}" in md


def _scripted_judge(body):
    """Replies of a scripted judge for the kris / rise / imgedit protocols: the values come from a marker
    [[C=5 I=3 ...]] in the pair's instruction; queries that show no instruction (quality, appearance) get
    fixed values (KRIS quality 4, RISE appearance 5); [[fail]] makes every query with the marker unreadable."""
    import json
    import re

    from tests.openai_server import ok

    parts = [c for m in body["messages"] if m["role"] == "user" and isinstance(m["content"], list) for c in m["content"]]
    text = " ".join(c.get("text", "") for c in parts if c.get("type") == "text")
    m = re.search(r"\[\[([^\]]*)\]\]", text)
    marks = dict(kv.split("=") for kv in m.group(1).split() if "=" in kv) if m else {}
    if m and "fail" in m.group(1):
        return ok("I would rather not say.")
    if "Reply in exactly this form" in text:  # ImgEdit: one "Name: N" line per rubric name
        names = re.findall(r"^(.+): <1-5>$", text.split("Reply in exactly this form", 1)[1], flags=re.M)
        values = marks["S"].split(",")
        return ok("Reasoning: scripted\n" + "\n".join(f"{n}: {v}" for n, v in zip(names, values)))
    if "Give two scores" in text:
        return ok(json.dumps({"reasoning": "scripted", "instruction": int(marks["I"]), "knowledge": int(marks["K"])}))
    for word, key, default in (("INSTRUCTION FOLLOWING", "I", None), ("CONSISTENCY", "C", None),
                               ("REASONING", "R", None), ("VISUAL QUALITY", None, 4), ("APPEARANCE", None, 5)):
        if word in text:
            return ok(json.dumps({"reasoning": "scripted", "score": int(marks[key]) if key else default}))
    raise AssertionError(f"unexpected query: {text[:200]}")


def _served_run(tmp_path, monkeypatch, data_path, protocol, image_root=None):
    from tests.conftest import write_config
    from tests.openai_server import ScriptedOpenAIServer
    from tests.test_pipeline import report_of, run_main

    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("HEADLINE_TEST_KEY", "k")
    srv = ScriptedOpenAIServer().start()
    srv.handler = _scripted_judge
    try:
        cfg = write_config(tmp_path / "c.yaml", data_path, judge={
            "class_path": "src.models.reward.implementations.openai_compatible.OpenAICompatibleRewardModel",
            "init_args": {"model": "test-judge", "base_url": srv.base_url, "api_key_env": "HEADLINE_TEST_KEY",
                          "protocol": protocol, "backoff_s": 0.01, "max_retries": 1}}, seed=9)
        sets = ["--set", f"benchmark.image_root={image_root}"] if image_root else []
        assert run_main("--config", cfg, "--run-name", protocol, *sets) == 0
    finally:
        srv.stop()
    report = report_of(tmp_path / "outputs" / protocol)
    assert build_headline(report["pairs"], seed=9) == report["headline"]  # recomputable from the pairs
    assert report["headline"]["problems"] == []
    _served_run.report = report
    return report["headline"]


def test_served_kris_run_headline(tmp_path, monkeypatch):
    import json

    from tests.public_formats import img_bytes

    tasks = {"count_change": {"1": "[[C=5 I=3]]", "2": "[[C=2 I=5]]"},
             "physics": {"3": "[[C=4 I=4 K=2]]", "4": "[[fail]]"}}
    root = tmp_path / "KRIS_Bench"
    for task, recs in tasks.items():
        (root / task).mkdir(parents=True)
        ann = {k: {"ori_img": f"{k}.jpg", "ins_en": f"Edit it {mark}", "explain_en": "Ice melts when heated."}
               for k, mark in recs.items()}
        (root / task / "annotation.json").write_text(json.dumps(ann), encoding="utf-8")
        for k in recs:
            (root / task / f"{k}.jpg").write_bytes(img_bytes(size=(9, 8), fmt="JPEG"))
    h = _served_run(tmp_path, monkeypatch, root, "kris")
    n = h["numbers"]
    # normalised (s - 1) * 25; quality is 4 -> 75 for every scored pair
    assert value(n, "Attribute Perception", "VC") == pytest.approx((100 + 25) / 2)
    assert value(n, "Attribute Perception", "IF") == pytest.approx((50 + 100) / 2)
    assert value(n, "Attribute Perception", "AVG") == pytest.approx((100 + 50 + 75 + 25 + 100 + 75) / 6)
    assert value(n, "Natural Science", "KP") == pytest.approx(25)
    assert value(n, "Natural Science", "AVG") == pytest.approx((75 + 75 + 75 + 25) / 4)
    assert value(n, "Natural Science", "AVG", "all_pairs") == pytest.approx(250 / 8)
    assert value(n, "Overall", "AVG") == pytest.approx(675 / 10)
    assert value(n, "Overall", "AVG", "all_pairs") == pytest.approx(675 / 14)


def test_served_rise_run_headline(tmp_path, monkeypatch):
    import json

    from tests.public_formats import img_bytes

    root = tmp_path / "RISEBench" / "data"
    records = [("temporal_reasoning", "Life Progression", "[[C=5 R=5]]", {"reference": "Ripe."}),
               ("causal_reasoning", "State Transition", "[[C=4 R=1]]", {"reference": "Melted."}),
               ("logical_reasoning", "Puzzle Solving", "[[C=1 R=0]]", {"reference_txt": "B"})]
    data = []
    for i, (cat, sub, mark, extra) in enumerate(records):
        image = f"{cat}_images/{i}.png"
        (root / image).parent.mkdir(parents=True, exist_ok=True)
        (root / image).write_bytes(img_bytes(size=(7, 6)))
        data.append({"index": f"{cat}_{i}", "category": cat, "subtask": sub, "instruction": f"Do it {mark}",
                     "image": image, **extra})
    (root / "data_total.json").write_text(json.dumps(data), encoding="utf-8")
    h = _served_run(tmp_path, monkeypatch, root / "data_total.json", "rise")
    n = h["numbers"]
    # temporal 0.3*5 + 0.5*5 + 0.2*5 = 5 (complete); causal 1.2 + 0.5 + 1.0 = 2.7, R = 1 -> 1.35;
    # logical C 1 -> 5, R 0 -> 1: 1.5 + 0.7 = 2.2, R = 1 -> 1.1
    assert value(n, "Temporal", "score") == pytest.approx(5)
    assert value(n, "Causal", "score") == pytest.approx(1.35)
    assert value(n, "Logical", "score") == pytest.approx(1.1)
    assert value(n, "Overall", "score") == pytest.approx((5 + 1.35 + 1.1) / 3)
    assert value(n, "Overall", "score %") == pytest.approx(25 * ((5 + 1.35 + 1.1) / 3 - 1))
    assert value(n, "Overall", "accuracy") == pytest.approx(1 / 3)
    assert value(n, "Logical", "consistency") == pytest.approx(5)
    # the rise protocol's own per-pair score (the pair's `score`) agrees with the headline's formula
    scores = [p["score"] for p in _served_run.report["pairs"] if p["status"] == "scored"]
    assert sum(scores) / len(scores) == pytest.approx(value(n, "Overall", "score"))


def test_served_imgedit_run_headline(tmp_path, monkeypatch):
    import json

    from tests.public_formats import img_bytes

    images = tmp_path / "originals"
    (images / "animal").mkdir(parents=True)
    doc = {"1": ("add", "S=5,4,4"), "2": ("add", "S=4,4,5"), "3": ("style", "S=2,4,5"), "4": ("style", "fail")}
    basic = {}
    for k, (etype, mark) in doc.items():
        (images / "animal" / f"{k}.jpg").write_bytes(img_bytes(size=(8, 9), fmt="JPEG"))
        basic[k] = {"id": f"animal/{k}.jpg", "prompt": f"Change it [[{mark}]]", "edit_type": etype}
    (tmp_path / "basic_edit.json").write_text(json.dumps(basic), encoding="utf-8")
    h = _served_run(tmp_path, monkeypatch, tmp_path / "basic_edit.json", "imgedit", image_root=images)
    n = h["numbers"]
    assert find(n, "add", "score")["scored"]["value"] == pytest.approx(13 / 3)
    assert find(n, "add", "score")["official"] == pytest.approx(4.33)
    assert find(n, "style", "score")["official"] == pytest.approx(3.67)
    assert find(n, "style", "score")["all_pairs"]["value"] == pytest.approx((11 / 3 + 1) / 2)
    overall = find(n, "Overall (mean of the type means)", "score")
    assert overall["scored"]["value"] == pytest.approx(4.0) and overall["official"] == pytest.approx(4.0)
    assert overall["coverage"] == {"scored": 3, "pairs": 4, "fraction": 0.75}


def test_rise_reasoning_dimension_is_not_read_from_the_explanation_text():
    # the RISE templates ask for {"reasoning": "<sentences>", "score": N}; the dimension is also named reasoning
    from src.scoring.protocols import get_protocol, parse_values

    query = next(q for q in get_protocol("rise").queries if q.dims == ("reasoning",))
    assert parse_values('{"reasoning": "The banana is brown.", "score": 4}', query).values == {"reasoning": 4.0}
    assert parse_values('{"reasoning": 2}', query).values == {"reasoning": 2.0}


def test_problems_are_summarised_by_kind():
    # a judge run with another protocol: every GEdit pair lacks SC/PQ -> one line in the summary
    pairs = [{**p, "dimensions": {"overall": 5.0}} if p["status"] == "scored" else p for p in gedit_pairs()]
    h = build_headline(pairs, seed=SEED)
    assert len(h["problems"]) == 24
    assert h["problem_summary"] == [{"problem": "dimensions: no SC/PQ: the GEdit score needs the viescore protocol; "
                                                "counted as a failure", "pairs": 24, "first": "background_change/en/en-bg-0"}]
    assert find(h["numbers"], "en", "O")["coverage"]["scored"] == 0
    assert value(h["numbers"], "en", "O", "all_pairs") == 0.0
