"""`python main.py smoke --config FILE` on CPU with the tiny models of the default config.yaml."""

from __future__ import annotations

import dataclasses
import json

from tests.conftest import REPO, make_benchmark, write_config


def test_smoke_on_cpu_with_the_tiny_models(tmp_path, capsys):
    from src.cli import main

    out = tmp_path / "smoke"
    code = main(["smoke", "--config", str(REPO / "config.yaml"), "--output-dir", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    result = json.loads((out / "smoke.json").read_text(encoding="utf-8"))
    assert result["ok"] is True
    assert result["versions"]["diffusers"] and result["versions"]["transformers"] and result["versions"]["torch"]
    assert result["gpus"] == []  # CPU machine: no GPU, peak GPU memory unknown
    assert result["rope_positions"]["message"]
    ed, jd = result["editor"], result["judge"]
    assert ed["class"] == "QwenImageEditModel" and ed["model"] == "tiny:qwen-image-edit"
    assert ed["load_seconds"] > 0 and ed["edit_seconds"] > 0 and ed["peak_gpu_bytes"] is None
    assert ed["bit_identical"] is True and ed["reference_max_abs_diff"] == 0 and ed["matches_reference"] is True
    assert ed["predicted"]["peak_bytes"] > ed["predicted"]["weight_bytes"] > 0  # the --plan numbers
    assert jd["status"] == "scored" and 0 <= jd["score"] <= 10 and jd["score_seconds"] > 0
    assert (out / "edit.png").is_file() and (out / "reference.png").is_file()
    assert "model-card reference: max |diff| 0 / 255 -> bit-identical" in printed
    assert "smoke: OK" in printed


def test_smoke_reports_an_edit_that_differs_from_the_model_card(tmp_path, capsys, monkeypatch):
    import src.smoke as smoke
    from src.cli import main

    real = smoke.reference_edit
    # as if the editor's call had drifted from the card's: the reference is made with another seed
    monkeypatch.setattr(smoke, "reference_edit", lambda editor, req: real(editor, dataclasses.replace(req, seed=req.seed + 1)))
    editor = {"class_path": "src.models.diffusion.implementations.qwen_image_edit.QwenImageEditModel",
              "init_args": {"model_name": "tiny:qwen-image-edit", "device": "cpu", "dtype": "float32",
                            "num_inference_steps": 2, "max_area": 1024}}
    config = write_config(tmp_path / "c.yaml", make_benchmark(tmp_path / "b.json", n=1), editor=editor)  # fake judge
    out = tmp_path / "smoke"
    code = main(["smoke", "--config", str(config), "--output-dir", str(out)])
    printed = capsys.readouterr().out
    assert code == 1
    result = json.loads((out / "smoke.json").read_text(encoding="utf-8"))
    assert result["editor"]["matches_reference"] is False and result["editor"]["reference_max_abs_diff"] > 0
    assert "DIFFERS" in printed and "smoke: FAILED" in printed


def test_smoke_records_a_failing_load_and_still_writes_smoke_json(tmp_path, capsys, monkeypatch):
    from src.cli import main
    from src.models.diffusion.implementations.qwen_image_edit import QwenImageEditModel

    def out_of_memory(self):
        raise RuntimeError("CUDA out of memory. Tried to allocate 38.00 GiB")

    monkeypatch.setattr(QwenImageEditModel, "_load", out_of_memory)
    out = tmp_path / "smoke"
    assert main(["smoke", "--config", str(REPO / "config.yaml"), "--output-dir", str(out)]) == 1
    result = json.loads((out / "smoke.json").read_text(encoding="utf-8"))
    assert result["ok"] is False and "judge" not in result
    assert result["editor"]["error"] == "load failed: RuntimeError: CUDA out of memory. Tried to allocate 38.00 GiB"
    assert "FAILED: load failed" in capsys.readouterr().out
