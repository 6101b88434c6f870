import pytest

from src.prompts import (CATEGORY_TEMPLATES, PromptError, available_templates, render_prompt, template_for_category,
                         template_hash)


def test_builtin_templates_render_with_and_without_description():
    protocol_templates = {"viescore_sc", "viescore_pq", "rubric_1to5", "rubric_1to5_knowledge"}
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
