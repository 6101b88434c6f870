"""Every preset in configs/ loads, says what hardware it needs, and runs on tiny models offline."""

import json

import pytest
import yaml

from src.cli import main
from src.config import load_config
from tests.conftest import REPO, make_benchmark
from tests.openai_server import Reply, ScriptedOpenAIServer
from tests.test_pipeline import report_of

PRESETS = sorted((REPO / "configs").glob("*.yaml"))
TINY = {
    "Qwen/Qwen-Image-Edit": "tiny:qwen-image-edit",
    "Qwen/Qwen-Image-Edit-2511": "tiny:qwen-image-edit-plus",
    "black-forest-labs/FLUX.1-Kontext-dev": "tiny:flux-kontext",
    "Qwen/Qwen3-VL-30B-A3B-Instruct": "tiny:qwen3-vl-moe",
    "Qwen/Qwen2.5-VL-72B-Instruct": "tiny:qwen2.5-vl",
}
SPEED = {  # tiny sizes: the caps that make a CPU edit take a fraction of a second
    "num_inference_steps": 2, "max_area": 1024,
}


def test_all_presets_named():
    names = {p.name for p in PRESETS}
    assert {"qwen_image_edit__qwen3_vl.yaml", "qwen_image_edit_plus__qwen3_vl.yaml", "flux_kontext__qwen25vl.yaml",
            "precomputed__openai_viescore.yaml", "identity__qwen3_vl.yaml"} <= names


@pytest.mark.parametrize("preset", PRESETS, ids=[p.stem for p in PRESETS])
def test_preset_loads_and_documents_hardware(preset, tmp_path):
    data = make_benchmark(tmp_path / "b.json")
    cfg = load_config(preset, [f"benchmark.data_path={data}"])
    assert cfg.categories == ["物理", "环境", "社会", "因果", "指代"]
    header = preset.read_text(encoding="utf-8").split("\n\n")[0]
    assert "Hardware" in header


def tiny_overrides(preset, extra_images_dir=None, base_url=None) -> list[str]:
    raw = yaml.safe_load(preset.read_text(encoding="utf-8"))
    out = []
    for key in ("diffusion_model", "reward_model"):
        args = raw[key].get("init_args") or {}
        for name in ("model_name",):
            if args.get(name) in TINY:
                out.append(f"{key}.init_args.{name}={TINY[args[name]]}")
        if "device" in args:
            out.append(f"{key}.init_args.device=auto")
        if key == "diffusion_model":
            out += [f"{key}.init_args.{k}={v}" for k, v in SPEED.items() if k in args or k == "num_inference_steps"
                    and "model_name" in args]
        if key == "reward_model" and "model_name" in args:
            out += [f"{key}.init_args.max_new_tokens=8", f"{key}.init_args.max_retries=0"]
    if extra_images_dir:
        out.append(f"diffusion_model.init_args.images_dir={extra_images_dir}")
    if base_url:
        out += [f"reward_model.init_args.base_url={base_url}", "reward_model.init_args.api_key_env=TEST_KEY"]
    return out


LOCAL = [p for p in PRESETS if "openai" not in p.name and "vllm" not in p.name]


@pytest.mark.parametrize("preset", LOCAL, ids=[p.stem for p in LOCAL])
def test_preset_runs_on_tiny_models(preset, tmp_path):
    data = make_benchmark(tmp_path / "b.json", n=1)
    args = ["--config", str(preset), "--output-dir", str(tmp_path / "out"), "--run-name", "t",
            "--categories", "物理,指代", "--set", f"benchmark.data_path={data}", *sum((["--set", o] for o in
                                                                                  tiny_overrides(preset)), [])]
    code = main(args)
    report = report_of(tmp_path / "out" / "t")
    assert code == (3 if report["overall"]["scored"] == 0 else 0)  # 3: no pair could be scored
    assert report["run"]["model_loads"] == {"editor": 1, "judge": 1}
    statuses = {p["status"] for p in report["pairs"]}
    # random-weight judges in generate mode write no parseable reply: recorded as failures, never scores
    assert statuses <= {"scored", "score_failed"} and report["overall"]["failed"]["edit_failed"] == 0
    assert all((p["score"] is None) == (p["status"] != "scored") for p in report["pairs"])


def test_precomputed_openai_viescore_preset(tmp_path, monkeypatch):
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("TEST_KEY", "sk-test")
    data = make_benchmark(tmp_path / "b.json", n=2)
    edits = tmp_path / "edits"
    for cat, pairs in json.loads(data.read_text(encoding="utf-8")).items():
        (edits / cat).mkdir(parents=True)
        for p in pairs["data_pairs"][:1]:  # the second pair of each category has no edit: edit_failed
            (edits / cat / f"{p['pair_id']}.png").write_bytes(__import__("base64").b64decode(p["original_image_b64"]))
    preset = REPO / "configs" / "precomputed__openai_viescore.yaml"
    served = yaml.safe_load(preset.read_text(encoding="utf-8"))["reward_model"]["init_args"]["model"]
    server = ScriptedOpenAIServer(served_models=[served]).start()  # the judge's preflight checks the name
    try:
        server.handler = lambda body: Reply(content='{"reasoning": "r", "score": [6, 9]}')
        args = ["--config", str(preset), "--output-dir", str(tmp_path / "out"), "--run-name", "p",
                "--set", f"benchmark.data_path={data}",
                *sum((["--set", o] for o in tiny_overrides(preset, edits, server.base_url)), [])]
        assert main(args) == 0
    finally:
        server.stop()
    report = report_of(tmp_path / "out" / "p")
    assert report["run"]["model_loads"] == {"editor": 1, "judge": 1}
    assert report["overall"]["scored"] == 5 and report["overall"]["failed"]["edit_failed"] == 5
    assert all(p["score"] == pytest.approx(6.0) for p in report["pairs"] if p["status"] == "scored")
    failed = [p for p in report["pairs"] if p["status"] == "edit_failed"]
    assert all(str(edits) in p["error"] for p in failed)


@pytest.mark.parametrize("editor", [
    {"class_path": "src.models.diffusion.implementations.instruct_pix2pix.InstructPix2PixModel",
     "init_args": {"model_name": "tiny:instruct-pix2pix", "dtype": "float32", "num_inference_steps": 2,
                   "resolution": 32}},
    {"class_path": "src.models.diffusion.implementations.diffusers_generic.DiffusersEditModel",
     "init_args": {"pipeline_class": "QwenImageEditPipeline", "model_name": "tiny:qwen-image-edit", "dtype": "float32",
                   "call_kwargs": {"num_inference_steps": 2, "height": 32, "width": 32}}},
], ids=["instruct_pix2pix", "diffusers_generic"])
def test_other_editors_run_from_a_config(editor, tmp_path):
    from tests.conftest import write_config

    data = make_benchmark(tmp_path / "b.json", categories=["物理"], n=2)
    judge = {"class_path": "src.models.reward.implementations.transformers_vlm.TransformersVLMRewardModel",
             "init_args": {"model_name": "tiny:qwen2.5-vl", "dtype": "float32", "scoring": "logits"}}
    cfg = write_config(tmp_path / "c.yaml", data, editor=editor, judge=judge)
    assert main(["--config", str(cfg), "--run-name", "e"]) == 0
    report = report_of(tmp_path / "outputs" / "e")
    assert [p["status"] for p in report["pairs"]] == ["scored", "scored"]
    assert report["run"]["model_loads"] == {"editor": 1, "judge": 1}


def test_vllm_preset_builds_the_server_command():
    from src.config import load_config

    preset = REPO / "configs" / "qwen_image_edit__vllm_qwen3_vl.yaml"
    judge = load_config(preset, []).judge.build()
    argv = judge.server_argv(8123)
    assert argv[:3] == ["vllm", "serve", "Qwen/Qwen3-VL-30B-A3B-Instruct"]
    assert argv[argv.index("--port") + 1] == "8123" and argv[argv.index("--host") + 1] == "127.0.0.1"
    assert "--api-key" not in argv and judge.response_format == "json_object"
