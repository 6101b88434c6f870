"""`doctor`: the facts on this CPU machine, a faked two-GPU machine, and the warnings logic.

No GPU here: the CUDA branch runs against monkeypatched torch.cuda functions.
"""

from __future__ import annotations

import json
import platform
import types

import pytest

from src import doctor
from src.doctor import GIB, check_warnings, collect, doctor_main, format_text, version_lt

KEYS = {"python", "platform", "cpu_count", "requested_dtype", "packages", "torch", "cuda", "flash_attn",
        "torchvision", "sdpa", "disk", "memory", "warnings"}


def test_collect_on_this_cpu_machine(tmp_path):
    import torch

    info = collect(output_dir=tmp_path)
    assert KEYS <= set(info)
    assert info["python"]["version"] == platform.python_version()
    assert info["cpu_count"] >= 1
    assert info["torch"]["version"] == torch.__version__
    for name in ("torch", "diffusers", "transformers", "safetensors", "pillow"):
        assert info["packages"][name], name
    assert set(doctor.PACKAGES) == set(info["packages"])
    assert isinstance(info["flash_attn"]["importable"], bool)
    if not torch.cuda.is_available():  # this project's CI machine
        assert info["cuda"]["available"] is False and info["cuda"]["gpus"] == []
        assert info["sdpa"]["applicable"] is False and "not applicable" in info["sdpa"]["note"]
    assert info["disk"]["checked_path"] == str(tmp_path) and info["disk"]["free_bytes"] > 0
    assert info["memory"]["total_bytes"] >= info["memory"]["available_bytes"] > 0
    assert isinstance(info["warnings"], list)
    # the pinned diffusers 0.42.1 + transformers 5.23 drop mm_token_type_ids: flagged, read from the sources
    rope = info["known_issues"]["qwen_image_rope"]
    from src.models.diffusion.qwen_fixes import rope_positions_status

    assert rope == rope_positions_status()
    assert any(w.startswith("known-bad combination") for w in info["warnings"]) == bool(rope["affected"])
    json.loads(json.dumps(info))  # serialisable as is
    text = format_text(info)
    assert "torch" in text and "host RAM" in text and "SDPA" in text


def test_disk_is_measured_on_the_nearest_existing_parent(tmp_path):
    info = collect(output_dir=tmp_path / "not" / "yet" / "there")
    assert info["disk"]["checked_path"] == str(tmp_path)
    assert "nearest existing folder" in format_text(info)


@pytest.fixture
def two_fake_gpus(monkeypatch):
    """torch.cuda reporting an H100 and a V100 (no native bf16), a CUDA 12.4 build and driver 550."""
    import torch

    gpus = [("NVIDIA H100 80GB HBM3", (9, 0), 79 * GIB, 80 * GIB), ("Tesla V100-SXM2-32GB", (7, 0), 30 * GIB, 32 * GIB)]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: gpus[i][0])
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i=0: gpus[i][1])
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda i=0: (gpus[i][2], gpus[i][3]))
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda i=0: types.SimpleNamespace(name=gpus[i][0], total_memory=gpus[i][3],
                                                          major=gpus[i][1][0], minor=gpus[i][1][1]))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: False)
    monkeypatch.setattr(torch.version, "cuda", "12.4")
    monkeypatch.setattr(torch.backends.cudnn, "version", lambda: 90100)
    monkeypatch.setattr(torch._C, "_cuda_getDriverVersion", lambda: 12040, raising=False)
    monkeypatch.setattr(doctor, "nvidia_smi_gpus", lambda: [
        {"index": 0, "name": gpus[0][0], "driver_version": "550.54.15", "total_bytes": 80 * GIB, "free_bytes": 79 * GIB}])
    return gpus


def test_fake_two_gpus(two_fake_gpus, tmp_path):
    info = collect(output_dir=tmp_path, dtype="bfloat16")
    cuda = info["cuda"]
    assert cuda["available"] is True and cuda["runtime_version"] == "12.4" and cuda["cudnn_version"] == 90100
    assert cuda["driver_version"] == "550.54.15" and cuda["driver_source"] in ("nvidia-smi", "pynvml")
    assert cuda["driver_cuda_api"] == "12.4"
    assert [g["name"] for g in cuda["gpus"]] == ["NVIDIA H100 80GB HBM3", "Tesla V100-SXM2-32GB"]
    assert [g["free_bytes"] for g in cuda["gpus"]] == [79 * GIB, 30 * GIB]
    assert [g["total_bytes"] for g in cuda["gpus"]] == [80 * GIB, 32 * GIB]
    assert [g["bf16_native"] for g in cuda["gpus"]] == [True, False]
    assert info["sdpa"]["applicable"] is True
    json.dumps(info)
    text = format_text(info)
    assert "GPUs          2" in text
    assert "[0] NVIDIA H100 80GB HBM3  sm 9.0  79.0 GiB free / 80.0 GiB  bf16" in text
    assert "[1] Tesla V100-SXM2-32GB  sm 7.0  30.0 GiB free / 32.0 GiB  no native bf16" in text
    assert "550.54.15" in text and "supports CUDA <= 12.4" in text and "SDPA          enabled backends" in text
    bf16 = [w for w in info["warnings"] if "bfloat16" in w]
    assert len(bf16) == 1 and "V100" in bf16[0] and "H100" not in bf16[0]
    # float16 requested: no bf16 warning
    assert not [w for w in collect(output_dir=tmp_path, dtype="float16")["warnings"] if "bfloat16" in w]


def test_nvidia_smi_parsing(monkeypatch):
    monkeypatch.setattr(doctor.shutil, "which", lambda name: "/usr/bin/nvidia-smi")
    out = types.SimpleNamespace(returncode=0, stdout="0, NVIDIA A100-SXM4-80GB, 535.104.05, 81920, 81000\n"
                                                     "1, NVIDIA A100-SXM4-80GB, 535.104.05, 81920, 100\n")
    gpus = doctor.nvidia_smi_gpus(run=lambda *a, **k: out)
    assert [g["index"] for g in gpus] == [0, 1]
    assert gpus[0]["driver_version"] == "535.104.05" and gpus[0]["total_bytes"] == 81920 * 1024**2
    assert doctor.nvidia_smi_gpus(run=lambda *a, **k: types.SimpleNamespace(returncode=9, stdout="")) is None

    def boom(*a, **k):
        raise OSError("no driver")

    assert doctor.nvidia_smi_gpus(run=boom) is None
    monkeypatch.setattr(doctor.shutil, "which", lambda name: None)
    assert doctor.nvidia_smi_gpus() is None


# ----------------------------------------------------------------------------- warnings from fake facts


def good_info(**over) -> dict:
    info = {
        "torch": {"version": "2.13.0+cu124", "importable": True},
        "requested_dtype": "bfloat16",
        "packages": {"transformers": "5.23.0", "diffusers": "0.42.1", "accelerate": "1.15.0"},
        "cuda": {"available": True, "runtime_version": "12.4", "driver_version": "550.54.15", "bf16_supported": True,
                 "gpus": [{"index": 0, "name": "H100", "bf16_native": True}], "nvidia_smi_gpus": [],
                 "visible_devices": None},
        "torchvision": {"installed": None, "importable": False, "error": None},
        "flash_attn": {"installed": None, "importable": False, "error": None},
        "disk": {"free_bytes": 500 * GIB, "checked_path": "/data"},
    }
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(info.get(key), dict):
            info[key] = {**info[key], **value}
        else:
            info[key] = value
    return info


def test_no_warnings_for_a_good_setup():
    assert check_warnings(good_info()) == []


@pytest.mark.parametrize("over, needle", [
    ({"cuda": {"available": False, "gpus": [], "visible_devices": ""}}, "CUDA 12.4 build but no GPU"),
    ({"cuda": {"gpus": [{"index": 0, "name": "Tesla T4", "bf16_native": False}]}}, "bfloat16 is requested"),
    ({"torchvision": {"installed": "0.20.0", "importable": False, "error": "RuntimeError: operator torchvision::nms does not exist"}},
     "torchvision 0.20.0 is installed but fails to import"),
    ({"packages": {"transformers": "4.56.2", "diffusers": "0.42.1", "accelerate": "1.15.0"}}, "no Qwen3-VL"),
    ({"packages": {"transformers": "4.57.3", "diffusers": "0.42.1", "accelerate": "1.15.0"}}, "4.57.3 < 5.0.0"),
    ({"packages": {"transformers": "5.23.0", "diffusers": "0.34.0", "accelerate": "1.15.0"}}, "no QwenImageEditPipeline"),
    ({"packages": {"transformers": "5.23.0", "diffusers": "0.35.1", "accelerate": "1.15.0"}},
     "0.35.1 < 0.36.0: no QwenImageEditPlusPipeline"),
    ({"known_issues": {"qwen_image_rope": {"affected": True, "message": "diffusers 0.42.1, transformers 5.23.0: "
                                                                        "QwenImageEditPipeline do not forward"}}},
     "known-bad combination: diffusers 0.42.1"),
    ({"packages": {"transformers": "5.23.0", "diffusers": "0.42.1", "accelerate": None}}, "accelerate is not installed"),
    ({"disk": {"free_bytes": 3 * GIB}}, "< 10 GiB"),
    ({"cuda": {"driver_version": "470.82.01"}}, "older than CUDA 12.x needs (>= 525)"),
    ({"cuda": {"available": False, "runtime_version": None, "gpus": [],
               "nvidia_smi_gpus": [{"index": 0, "name": "A100"}]}}, "CPU-only build"),
    ({"flash_attn": {"installed": "2.7.4", "importable": False, "error": "ImportError: undefined symbol"}},
     "flash-attn 2.7.4 is installed but fails to import"),
])
def test_each_known_bad_combination_warns(over, needle):
    warnings = check_warnings(good_info(**over))
    assert len(warnings) == 1, warnings
    assert needle in warnings[0]


def test_version_comparisons():
    assert version_lt("4.56.2", "4.57.0") and not version_lt("4.57.0", "4.57.0")
    # a source install of the release being prepared (e.g. 4.57.0.dev0 from git) already has the model
    assert not version_lt("4.57.0.dev0", "4.57.0") and not version_lt("2.13.0+cpu", "2.13.0")
    assert version_lt("0.34.0", "0.35.0") and not version_lt("0.35.1", "0.35.0") and not version_lt("5.0.0", "4.57.0")
    assert not version_lt(None, "1.0")  # a missing package is reported separately, not as "older"


# ----------------------------------------------------------------------------- CLI


def test_doctor_main_text_and_json(capsys, tmp_path):
    assert doctor_main(["--output-dir", str(tmp_path)]) == 0
    assert "python" in capsys.readouterr().out
    assert doctor_main(["--json", "--output-dir", str(tmp_path), "--dtype", "float16"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert KEYS <= set(data) and data["requested_dtype"] == "float16"


# ----------------------------------------------------------------------------- doctor --config


def fake_info(gpus: int) -> dict:
    return {"cuda": {"available": gpus > 0, "gpus": [{"index": i, "name": "H100"} for i in range(gpus)]}}


def test_config_check_of_the_default_tiny_config_is_clean():
    from tests.conftest import REPO

    check = doctor.check_config(str(REPO / "config.yaml"), info=fake_info(0))
    assert check["errors"] == [], check
    assert {m["checkpoint"]["source"] for m in check["models"].values()} == {"tiny"}
    assert check["plan"]["compared_with"] == "host (no GPU)" and check["plan"]["residency"] != "does not fit"
    assert "ok" in doctor.format_config_check(check) or check["warnings"]


def test_config_check_finds_devices_and_models_this_machine_lacks(tmp_path, monkeypatch):
    import torch

    from tests.conftest import REPO

    base = str(REPO / "config.yaml")
    cuda = doctor.check_config(base, ["reward_model.init_args.device=cuda"], info=fake_info(0))
    judge_errors = [e for e in cuda["errors"] if e.startswith("judge")]
    assert len(judge_errors) == 1 and "CUDA" in judge_errors[0], cuda["errors"]  # said once
    with monkeypatch.context() as m:  # a two-GPU machine: the model's own check passes, cuda:2 is not there
        m.setattr(torch.cuda, "is_available", lambda: True)
        third = doctor.check_config(base, ["reward_model.init_args.device=cuda:2"], info=fake_info(2))
    assert third["errors"] == ["judge: device 'cuda:2': only 2 GPU(s) are visible (CUDA_VISIBLE_DEVICES)"]
    missing = doctor.check_config(base, [f"diffusion_model.init_args.model_name={tmp_path / 'nope'}"],
                                  info=fake_info(0))
    assert any(e.startswith("editor: model_name") and "does not exist" in e for e in missing["errors"])
    hub = doctor.check_config(base, ["reward_model.init_args.model_name=someone/not-downloaded-vl"],
                              info=fake_info(0))
    assert any("not on disk" in w and "downloads at load" in w for w in hub["warnings"])
    bad = doctor.check_config(base, ["reward_model.class_path=src.models.reward.nothing.Here"], info=fake_info(0))
    assert bad["errors"] and bad["errors"][0].startswith("config:")


def test_doctor_main_with_config_exits_2_on_errors(capsys, tmp_path):
    from tests.conftest import REPO

    args = ["--output-dir", str(tmp_path), "--config", str(REPO / "config.yaml")]
    assert doctor_main(args) == 0
    assert "config" in capsys.readouterr().out
    assert doctor_main(args + ["--set", "reward_model.init_args.device=cuda", "--json"]) == 2
    data = json.loads(capsys.readouterr().out)
    assert data["config_check"]["errors"]
