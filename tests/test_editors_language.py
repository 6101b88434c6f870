"""English-only editors (FLUX.1 Kontext, InstructPix2Pix) warn when a benchmark gives them Chinese instructions."""

from __future__ import annotations

import logging

from src.data import load_benchmark
from src.models.diffusion.languages import has_chinese, instruction_language_warning
from tests.conftest import make_benchmark


def editors():
    from src.models.diffusion.implementations.diffusers_generic import DiffusersEditModel
    from src.models.diffusion.implementations.flux_kontext import FluxKontextModel
    from src.models.diffusion.implementations.instruct_pix2pix import InstructPix2PixModel
    from src.models.diffusion.implementations.qwen_image_edit import QwenImageEditModel
    from src.models.diffusion.implementations.qwen_image_edit_plus import QwenImageEditPlusModel

    return {
        "kontext": FluxKontextModel(), "pix2pix": InstructPix2PixModel(),
        "generic-pix2pix": DiffusersEditModel("StableDiffusionInstructPix2PixPipeline", "x"),
        "qwen": QwenImageEditModel(), "plus": QwenImageEditPlusModel(),
    }


def test_has_chinese():
    assert has_chinese("把天空变成红色") and has_chinese("make it 红")
    assert not has_chinese("make the sky red") and not has_chinese("") and not has_chinese(None)
    assert not has_chinese("café ü ß —")


def test_english_only_editors_warn_on_chinese_instructions(tmp_path):
    bench = load_benchmark(str(make_benchmark(tmp_path / "b.json", categories=["物理", "环境"], n=2)), None, None)
    models = editors()
    for name in ("kontext", "pix2pix", "generic-pix2pix"):
        warning = instruction_language_warning(models[name], bench.iter_pairs())
        assert warning is not None, name
        assert "4 of 4 instructions contain Chinese" in warning
        assert "category '物理', pair '0-0'" in warning
    assert "T5-XXL" in instruction_language_warning(models["kontext"], bench.iter_pairs())
    for name in ("qwen", "plus"):  # Qwen2.5-VL reads Chinese
        assert instruction_language_warning(models[name], bench.iter_pairs()) is None


def test_english_instructions_do_not_warn(tmp_path):
    pairs = [{"pair_id": "e1", "original_image_b64": _png(), "edit_instruction": "make the sky red"}]
    bench = load_benchmark(str(make_benchmark(tmp_path / "b.json", categories=["物理"], n=0,
                                              extra={"物理": pairs})), None, None)
    assert instruction_language_warning(editors()["kontext"], bench.iter_pairs()) is None


def test_the_pipeline_logs_the_warning(tmp_path):
    from src.models.diffusion.implementations.flux_kontext import FluxKontextModel
    from src.pipeline import log, warn_instruction_language

    class Collect(logging.Handler):
        def __init__(self):
            super().__init__(logging.WARNING)
            self.messages = []

        def emit(self, record):
            self.messages.append(record.getMessage())

    bench = load_benchmark(str(make_benchmark(tmp_path / "b.json", categories=["因果"], n=1)), None, None)
    handler = Collect()  # on the logger itself: the console setup of main() may stop propagation
    log.addHandler(handler)
    try:
        warn_instruction_language(FluxKontextModel(), bench)
    finally:
        log.removeHandler(handler)
    assert any("1 of 1 instructions contain Chinese characters" in m for m in handler.messages)


def _png():
    from tests.conftest import png_b64

    return png_b64()
