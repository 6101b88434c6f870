import json
import re

import pytest

from src.prompts import (CATEGORY_TEMPLATES, PromptError, available_templates, render_prompt, template_for_category,
                         template_hash)


def test_builtin_templates_render_with_and_without_description():
    from src.scoring.protocols import PROTOCOLS

    protocol_templates = {q.template for p in PROTOCOLS.values() for q in p.queries if q.template}
    assert set(available_templates()) == {"default", *CATEGORY_TEMPLATES.values(), *protocol_templates}
    for name in ["default", *CATEGORY_TEMPLATES.values()]:
        with_desc = render_prompt(name, instruction="把杯子推倒", description="桌上有一杯水", category="物理", pair_id="p1")
        assert "把杯子推倒" in with_desc.user and "桌上有一杯水" in with_desc.user
        assert '"score"' in with_desc.system and '"score"' in with_desc.user
        without = render_prompt(name, instruction="把杯子推倒", description=None, category="物理", pair_id="p1")
        assert "Description" not in without.user and "None" not in without.user
        assert with_desc.template == name and with_desc.template_hash == without.template_hash


def test_protocol_templates_render():
    for name in ("viescore_sc", "rubric_1to5", "rubric_1to5_knowledge"):
        p = render_prompt(name, instruction="把杯子推倒", description=None, category="物理", pair_id="p1")
        assert "把杯子推倒" in p.user and "JSON" in p.user
    pq = render_prompt("viescore_pq", instruction="把杯子推倒", category="物理", pair_id="p1")
    assert "把杯子推倒" not in pq.user  # perceptual quality looks at the edited image alone
    assert "knowledge" in render_prompt("rubric_1to5_knowledge", instruction="x", category="c", pair_id="p").user
    assert "knowledge" not in render_prompt("rubric_1to5", instruction="x", category="c", pair_id="p").user


def test_category_mapping_overrides_and_default():
    assert template_for_category("物理") == "physics"
    assert template_for_category("指代") == "reference"
    assert template_for_category("unknown category") == "default"
    assert template_for_category("物理", default="default") == "default"
    assert template_for_category("物理", {"物理": "causal"}) == "causal"
    with pytest.raises(PromptError, match="did you mean 'physics'"):
        template_for_category("物理", {"物理": "physic"})


def test_category_criteria_are_in_their_templates():
    assert "物理" in render_prompt("physics", instruction="x", category="物理", pair_id="a").user
    assert "指代" in render_prompt("reference", instruction="x", category="指代", pair_id="a").user


def test_strict_undefined():
    with pytest.raises(PromptError, match="instruction"):
        render_prompt("default", description="d", category="c", pair_id="p")


def test_user_folder_template_and_hash_follows_text(tmp_path, monkeypatch):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "system.j2").write_text("judge", encoding="utf-8")
    (folder / "user.j2").write_text("do {{ instruction }} ({{ category }})", encoding="utf-8")
    p = render_prompt(str(folder), instruction="x", category="c", pair_id="p")
    assert (p.system, p.user) == ("judge", "do x (c)")
    first = template_hash(str(folder))
    assert template_hash(str(folder)) == first
    (folder / "user.j2").write_text("rate {{ instruction }}", encoding="utf-8")
    assert template_hash(str(folder)) != first
    monkeypatch.chdir(tmp_path)
    assert render_prompt("mine", instruction="y", category="c", pair_id="p").user == "rate y"


def test_hash_covers_the_parent_template():
    # physics extends default: its hash must cover default's text too, and differ from default's
    assert template_hash("physics") != template_hash("default")


def test_unknown_template():
    with pytest.raises(PromptError, match="built-in: causal, default"):
        render_prompt("nope", instruction="x", category="c", pair_id="p")



def test_viescore_wording_says_what_the_official_scale_means():
    user = render_prompt("viescore_sc", instruction="x", category="c", pair_id="p").user
    assert "minimal, yet effective edit" in user and "nothing was edited is not an effective edit" in user
    assert "identical" in user  # a failed edit may leave the image unchanged
    assert "nothing else changed" not in user


# ---------------------------------------------------------------- the user's own prompt files

from src.cli import main  # noqa: E402
from src.config import ConfigError, load_config  # noqa: E402
from tests.conftest import make_benchmark, write_config  # noqa: E402


def _judge(protocol):
    return {"class_path": "src.models.reward.implementations.openai_compatible.OpenAICompatibleRewardModel",
            "init_args": {"model": "j", "base_url": "http://127.0.0.1:9/v1", "protocol": protocol}}


def _official_like_clone(root):
    """Files shaped like the public benchmarks' prompt files (our own stand-in text)."""
    (root / "prompts").mkdir(parents=True)
    (root / "prompts" / "tie_rule_SC.txt").write_text(
        "Judge the edit.\nEditing instruction: <instruction>\nscore = [success, overediting]", encoding="utf-8")
    (root / "prompts.json").write_text(json.dumps({"adjust": "Rate <edit_prompt>.\nPrompt Compliance: \n"
                                                             "Visual Seamlessness: \nPhysical & Detail Fidelity: "}),
                                       encoding="utf-8")
    (root / "prompts.py").write_text('import os\nprompt_consist = """Judge {instruct}. Reply {{"consistency_score": '
                                     'n}}"""\n', encoding="utf-8")
    return root


def test_prompt_files_from_a_clone_load_and_render(tmp_path):
    from src.prompts import load_template, template_variables

    clone = _official_like_clone(tmp_path / "clone")
    v = template_variables(instruction="make it red", metadata={"explain_en": "e"})
    sc = load_template(str(clone / "prompts" / "tie_rule_SC.txt")).render(v)
    assert "Editing instruction: make it red" in sc.user and sc.system == ""
    ie = load_template({"user": {"file": str(clone / "prompts.json"), "key": "adjust"}}).render(v)
    assert ie.user.startswith("Rate make it red.")
    kc = load_template({"system": str(clone / "prompts" / "tie_rule_SC.txt"),
                        "user": {"file": str(clone / "prompts.py"), "variable": "prompt_consist"}})
    rendered = kc.render(v)
    assert rendered.user == 'Judge make it red. Reply {"consistency_score": n}'  # {{ }} are literal braces
    assert "prompts.py" in kc.label and kc.hash != load_template("kris_consistency").hash
    # a Python string with <instruction> markers and JSON braces (no format fields) is not a format string
    (clone / "vie.py").write_text('rule = """Editing instruction: <instruction>\n{\n"score" : [1]\n}"""\n',
                                  encoding="utf-8")
    vie = load_template({"user": {"file": str(clone / "vie.py"), "variable": "rule"}}).render(v)
    assert vie.user == 'Editing instruction: make it red\n{\n"score" : [1]\n}'


def test_config_points_at_user_prompt_files(tmp_path):
    clone = _official_like_clone(tmp_path / "clone")
    data = make_benchmark(tmp_path / "b.json", n=1)
    templates = {"viescore_sc": "clone/prompts/tie_rule_SC.txt"}  # relative to the config file's folder
    cfg = load_config(write_config(tmp_path / "c.yaml", data, judge=_judge("viescore"),
                                   prompts={"templates": templates}))
    assert cfg.prompt_templates == {"viescore_sc": str(clone / "prompts" / "tie_rule_SC.txt")}
    folder = tmp_path / "mine" / "viescore_pq"
    folder.mkdir(parents=True)
    (folder / "system.j2").write_text("judge", encoding="utf-8")
    (folder / "user.j2").write_text('Rate the image. {"score": [naturalness, artifacts]}', encoding="utf-8")
    cfg = load_config(write_config(tmp_path / "d.yaml", data, judge=_judge("viescore"), prompts={"dir": "mine"}))
    assert cfg.prompt_dir == str(tmp_path / "mine")


@pytest.mark.parametrize("templates, message", [
    ({"viescore_sc": "clone/prompts.json"}, "prompts.json never mentions 'score'"),
    ({"viescore_sc": {"user": {"file": "clone/prompts.json", "key": "adjst"}}}, "no text under key 'adjst'; did you "
                                                                              "mean 'adjust'"),
    ({"viescore_pq": {"user": {"file": "clone/prompts.py", "variable": "prompt_consistency"}}},
     "assigns no 'prompt_consistency'; did you mean 'prompt_consist'"),
    ({"viescore_sx": "clone/prompts/tie_rule_SC.txt"}, "did you mean 'viescore_sc'"),
    ({"viescore_sc": "clone/missing.txt"}, "unknown prompt template"),
])
def test_bad_prompt_files_are_config_errors(tmp_path, templates, message):
    _official_like_clone(tmp_path / "clone")
    data = make_benchmark(tmp_path / "b.json", n=1)
    path = write_config(tmp_path / "c.yaml", data, judge=_judge("viescore"), prompts={"templates": templates})
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        load_config(path)
    assert str(path) in str(info.value) or "c.yaml" in str(info.value)


def test_reply_schema_is_checked(tmp_path):
    (tmp_path / "pq.txt").write_text("Rate the image naturalness and artifacts.", encoding="utf-8")
    data = make_benchmark(tmp_path / "b.json", n=1)
    path = write_config(tmp_path / "c.yaml", data, judge=_judge("viescore"),
                        prompts={"templates": {"viescore_pq": "pq.txt"}})
    with pytest.raises(ConfigError, match=r"pq\.txt never mentions 'score'"):
        load_config(path)


def test_category_templates_may_use_metadata_and_unknown_variables_are_config_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    good, bad = tmp_path / "good", tmp_path / "bad"
    for folder, text in ((good, "Do {{ instruction }} ({{ metadata.task_type }})"), (bad, "Do {{ instrucion }}")):
        folder.mkdir()
        (folder / "system.j2").write_text("judge", encoding="utf-8")
        (folder / "user.j2").write_text(text, encoding="utf-8")
    data = make_benchmark(tmp_path / "b.json", n=1)
    load_config(write_config(tmp_path / "c.yaml", data, prompts={"categories": {"物理": str(good)}}))
    with pytest.raises(ConfigError, match="unknown variable 'instrucion'"):
        load_config(write_config(tmp_path / "d.yaml", data, prompts={"categories": {"物理": str(bad)}}))
    from src.prompts import template_variables

    v = template_variables(instruction="x", metadata={"task_type": "color_alter"})
    assert render_prompt(str(good), **v).user == "Do x (color_alter)"
