import textwrap

import pytest
import yaml

from src.config import ConfigError, load_config
from tests.conftest import make_benchmark, write_config

USER_CONFIG = """
benchmark:
  data_path: "{data}"
  categories: ["物理", "环境", "社会", "因果", "指代"]
diffusion_model:
  class_path: "src.models.diffusion.implementations.qwen_image_edit.QwenImageEditModel"
  params: {{model_name: "Qwen/Qwen-Image-Edit", device: "cuda", dtype: "bfloat16"}}
reward_model:
  class_path: "src.models.reward.implementations.qwen3_vl_reward.Qwen3VLRewardModel"
  params: {{model_name: "Qwen/Qwen3-VL-30B-A3B-Instruct", device: "auto", dtype: "bfloat16"}}
"""


def test_users_config_loads_unchanged(tmp_path):
    data = make_benchmark(tmp_path / "version_2_with_imagesb64.json")
    path = tmp_path / "user.yaml"
    path.write_text(USER_CONFIG.format(data=data), encoding="utf-8")
    cfg = load_config(path)
    assert cfg.categories == ["物理", "环境", "社会", "因果", "指代"]
    assert cfg.editor.init_args["model_name"] == "Qwen/Qwen-Image-Edit"
    assert cfg.editor.init_args["device"] == "cuda"
    assert cfg.judge.init_args["model_name"] == "Qwen/Qwen3-VL-30B-A3B-Instruct"
    # defaults from the constructor are filled in: the resolved config is complete
    assert "num_inference_steps" in cfg.editor.init_args
    assert cfg.mode == "two_stage"


def test_resolved_config_round_trips(tmp_path, fake_config):
    cfg = load_config(fake_config, ["seed=7", "diffusion_model.init_args.batch_size=2"])
    out = tmp_path / "resolved.yaml"
    out.write_text(yaml.safe_dump(cfg.to_dict(), allow_unicode=True), encoding="utf-8")
    again = load_config(out)
    assert again.to_dict() == cfg.to_dict()
    assert again.fingerprint() == cfg.fingerprint()
    assert again.seed == 7 and again.editor.init_args["batch_size"] == 2


def test_set_overrides_params_synonym(tmp_path, bench_file):
    path = tmp_path / "c.yaml"
    path.write_text(textwrap.dedent(f"""
        benchmark: {{data_path: "{bench_file}"}}
        diffusion_model: {{class_path: tests.fakes.FakeEditModel, params: {{batch_size: 1}}}}
        reward_model: {{class_path: tests.fakes.FakeRewardModel}}
    """), encoding="utf-8")
    cfg = load_config(path, ["diffusion_model.params.batch_size=3", "reward_model.init_args.offset=0.5"])
    assert cfg.editor.init_args["batch_size"] == 3
    assert cfg.judge.init_args["offset"] == 0.5


@pytest.mark.parametrize("override, message", [
    ("diffusion_model.class_path=src.models.diffusion.implementations.qwen_image_edit.QwenImageEditModle",
     "did you mean 'src.models.diffusion.implementations.qwen_image_edit.QwenImageEditModel'"),
    ("diffusion_model.class_path=src.models.diffusion.implementations.nope.Model", "unknown class_path"),
    ("reward_model.class_path=tests.fakes.FakeEditModel", "is not a BaseRewardModel subclass"),
    ("diffusion_model.init_args.batchsize=2", "did you mean 'batch_size'"),
    ("diffusion_model.init_args.batch_size=two", "batch_size must be int"),
    ("pipeline.mode=interleave", "did you mean 'interleaved'"),
    ("pipline.mode=two_stage", "did you mean 'pipeline'"),
    ("benchmark.categroies=[a]", "did you mean 'categories'"),
    ("benchmark.limit=0", "benchmark.limit must be a positive integer"),
    ("seed=-1", "seed must be a non-negative integer"),
    ("prompts.default=nonexistent_template", "prompts"),
    ("notakey", "--set expects key=value"),
])
def test_bad_config_teaches(fake_config, override, message):
    with pytest.raises(ConfigError) as e:
        load_config(fake_config, [override])
    assert message in str(e.value)


def test_missing_and_malformed_files(tmp_path, bench_file):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("benchmark: [unclosed", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    empty = tmp_path / "empty.yaml"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(ConfigError, match="empty"):
        load_config(empty)
    nojudge = tmp_path / "nojudge.yaml"
    nojudge.write_text(f"benchmark: {{data_path: '{bench_file}'}}\n"
                       "diffusion_model: {class_path: tests.fakes.FakeEditModel}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="reward_model is missing"):
        load_config(nojudge)


def test_relative_data_path_is_relative_to_config(tmp_path):
    (tmp_path / "sub").mkdir()
    make_benchmark(tmp_path / "sub" / "b.json")
    cfg_path = write_config(tmp_path / "sub" / "c.yaml", "b.json")
    assert load_config(cfg_path).data_path == str((tmp_path / "sub" / "b.json").resolve())


def test_fingerprint_ignores_speed_only_args(fake_config):
    a = load_config(fake_config)
    b = load_config(fake_config, ["diffusion_model.init_args.batch_size=4", "reward_model.init_args.batch_size=2"])
    c = load_config(fake_config, ["reward_model.init_args.offset=1.0"])
    assert a.editor.fingerprint() == b.editor.fingerprint()
    assert a.judge.fingerprint() == b.judge.fingerprint()
    assert a.judge.fingerprint() != c.judge.fingerprint()


def test_constructor_checks_run_at_config_time(tmp_path, fake_config):
    qwen = "src.models.reward.implementations.qwen3_vl_reward.Qwen3VLRewardModel"
    with pytest.raises(ConfigError, match="reward_model.init_args: scoring: logits reads one 0-10 score"):
        load_config(fake_config, [f"reward_model.class_path={qwen}", "reward_model.init_args={scoring: logits, "
                                  "protocol: viescore}"])
    with pytest.raises(ConfigError, match="did you mean 'viescore'"):
        load_config(fake_config, [f"reward_model.class_path={qwen}", "reward_model.init_args={protocol: viescor}"])
