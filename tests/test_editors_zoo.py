"""The editor zoo on tiny random-weight checkpoints of the real pipelines (CPU, no network).

Families: Qwen-Image-Edit-2509/2511 (QwenImageEditPlusPipeline), FLUX.1 Kontext, InstructPix2Pix, the
generic `DiffusersEditModel`, plus the model-free `PrecomputedEditModel` and `IdentityEditModel`.
Tiny checkpoints are built once per session into a temporary cache and loaded through the same
`<Pipeline>.from_pretrained` path as hub checkpoints; edits use 2 steps at 32-64 px. Torch runs with one
intra-op thread here: at these toy sizes threads only add synchronisation, and on a shared 2-core box
two threads per process made every edit ~7x slower.
"""

from __future__ import annotations

import gc
import inspect
import json
import weakref
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from src.models.base import EditRequest, ModelError
from tests.test_qwen_image_edit import assert_same_float32_weights, picture, pixels, poison, request

STEPS = 2
QWEN_AREA = 48 * 48
KONTEXT_AREA = 48 * 32
ARCHS = ("qwen-image-edit", "qwen-image-edit-plus", "flux-kontext", "instruct-pix2pix")

# diffusers' EulerAncestralDiscreteScheduler calls np.array(tensor, copy=False) (numpy 2 deprecation).
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")


# ----------------------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def zoo_cache(tmp_path_factory) -> str:
    from src.models.tiny import resolve_model_path

    cache = str(tmp_path_factory.mktemp("zoo-cache"))
    for arch in ARCHS:
        resolve_model_path(f"tiny:{arch}", cache_dir=cache)
    return cache


def tiny_path(cache: str, arch: str) -> Path:
    from src.models.tiny import resolve_model_path

    return Path(resolve_model_path(f"tiny:{arch}", cache_dir=cache))


def plus(cache, **overrides):
    from src.models.diffusion.implementations.qwen_image_edit_plus import QwenImageEditPlusModel

    args = dict(model_name="tiny:qwen-image-edit-plus", device="cpu", dtype="float32", num_inference_steps=STEPS,
                max_area=QWEN_AREA, cache_dir=cache, batch_size=2)
    return QwenImageEditPlusModel(**{**args, **overrides})


def kontext(cache, **overrides):
    from src.models.diffusion.implementations.flux_kontext import FluxKontextModel

    args = dict(model_name="tiny:flux-kontext", device="cpu", dtype="float32", num_inference_steps=STEPS,
                max_area=KONTEXT_AREA, auto_resize=False, cache_dir=cache, batch_size=2)
    return FluxKontextModel(**{**args, **overrides})


def pix2pix(cache, **overrides):
    from src.models.diffusion.implementations.instruct_pix2pix import InstructPix2PixModel

    args = dict(model_name="tiny:instruct-pix2pix", device="cpu", dtype="float32", num_inference_steps=STEPS,
                resolution=64, cache_dir=cache, batch_size=2)
    return InstructPix2PixModel(**{**args, **overrides})


def generic(cache, **overrides):
    from src.models.diffusion.implementations.diffusers_generic import DiffusersEditModel

    args = dict(pipeline_class="QwenImageEditPipeline", model_name="tiny:qwen-image-edit", device="cpu",
                dtype="float32", cache_dir=cache, batch_size=2,
                call_kwargs={"num_inference_steps": STEPS, "true_cfg_scale": 4.0, "negative_prompt": " "})
    return DiffusersEditModel(**{**args, **overrides})


FACTORIES = {"plus": plus, "kontext": kontext, "pix2pix": pix2pix}


@pytest.fixture(scope="session")
def loaded(zoo_cache):
    """One loaded editor per family, shared by the tests that do not change its settings."""
    models = {}
    for name, factory in FACTORIES.items():
        m = factory(zoo_cache)
        m.check()
        m.load()
        models[name] = m
    yield models
    for m in models.values():
        m.release()


# ----------------------------------------------------------------------------- tiny checkpoints


@pytest.mark.parametrize("arch,pipeline,weights", [
    ("qwen-image-edit-plus", "QwenImageEditPlusPipeline", ("transformer", "vae", "text_encoder")),
    ("flux-kontext", "FluxKontextPipeline", ("transformer", "vae", "text_encoder", "text_encoder_2")),
    ("instruct-pix2pix", "StableDiffusionInstructPix2PixPipeline", ("unet", "vae", "text_encoder")),
])
def test_tiny_checkpoints_are_small_deterministic_and_like_the_hub(zoo_cache, tmp_path, arch, pipeline, weights):
    import importlib

    from src.models.tiny import TINY_BUILDERS

    path = tiny_path(zoo_cache, arch)
    index = json.loads((path / "model_index.json").read_text())
    assert index["_class_name"] == pipeline
    total = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    assert total < 5_000_000, total

    module, func = TINY_BUILDERS[arch].split(":")
    getattr(importlib.import_module(module), func)(tmp_path)  # a second build, byte-identical weights
    assert_same_float32_weights(path, tmp_path, weights)


def test_tiny_checkpoint_details(zoo_cache):
    plus_dir = tiny_path(zoo_cache, "qwen-image-edit-plus")
    assert json.loads((plus_dir / "model_index.json").read_text())["processor"] == ["transformers", "Qwen2VLProcessor"]
    assert json.loads((plus_dir / "transformer" / "config.json").read_text())["zero_cond_t"] is True  # 2511
    flux = json.loads((tiny_path(zoo_cache, "flux-kontext") / "model_index.json").read_text())
    assert flux["tokenizer_2"] == ["transformers", "T5TokenizerFast"]
    assert flux["image_encoder"] == [None, None]
    assert json.loads((tiny_path(zoo_cache, "flux-kontext") / "transformer" / "config.json").read_text())[
        "guidance_embeds"] is True
    ip2p = json.loads((tiny_path(zoo_cache, "instruct-pix2pix") / "model_index.json").read_text())
    assert ip2p["safety_checker"] == [None, None]
    assert json.loads((tiny_path(zoo_cache, "instruct-pix2pix") / "unet" / "config.json").read_text())[
        "in_channels"] == 8


# ----------------------------------------------------------------------------- shared behaviour, every family


@pytest.mark.parametrize("family", sorted(FACTORIES))
def test_same_seed_same_pixels(loaded, family):
    m = loaded[family]
    a = m.edit([request("p", 48, 32, 7)])[0]
    b = m.edit([request("p", 48, 32, 7)])[0]
    other = request("p", 48, 32, 7)
    other.seed = 9
    c = m.edit([other])[0]
    assert a.error is None and b.error is None and c.error is None, (a.error, b.error, c.error)
    assert np.array_equal(pixels(a.image), pixels(b.image))
    assert not np.array_equal(pixels(a.image), pixels(c.image))
    assert a.info["seed"] == 7 and c.info["seed"] == 9


@pytest.mark.parametrize("family", sorted(FACTORIES))
def test_failing_request_does_not_kill_the_batch(zoo_cache, family):
    m = FACTORIES[family](zoo_cache, batch_size=2)
    m.load()
    seen = poison(m)
    try:
        ok, bad, ok2 = m.edit([request("ok", 48, 32, 1), request("bad", 48, 32, 2, "POISON"),
                               request("ok2", 48, 32, 3)])
    finally:
        m.release()
    assert ok.error is None and ok.image is not None
    assert ok2.error is None and ok2.image is not None
    assert bad.image is None and "boom" in bad.error and bad.info["seed"] == 2
    if family == "plus":
        assert seen == [1, 1, 1]  # the Plus pipeline takes one prompt per call
    else:
        assert seen == [2, 1, 1, 1]  # the batch, then one by one; the third request alone


@pytest.mark.parametrize("family", sorted(FACTORIES))
def test_release_frees_the_pipeline(zoo_cache, family):
    m = FACTORIES[family](zoo_cache)
    m.load()
    ref = weakref.ref(m.pipe)
    m.release()
    gc.collect()
    assert m.pipe is None and not m.loaded
    assert ref() is None, "something still holds the released pipeline"
    with pytest.raises(ModelError):
        m.edit([request("x", 48, 32, 1)])
    m.load()  # and it can come back
    assert m.edit([request("x", 48, 32, 1)])[0].image is not None
    m.release()


def test_extra_images_fail_alone_where_unsupported(loaded):
    for family in ("kontext", "pix2pix"):
        ok, two = loaded[family].edit([request("ok", 48, 32, 1),
                                       request("two", 48, 32, 2, extra_images=[picture(32, 32, 5)])])
        assert ok.error is None
        assert two.image is None and "one input image" in two.error


def test_editors_load_through_the_config(tmp_path):
    from src.config import resolve_component

    impl = "src.models.diffusion.implementations"
    specs = {
        f"{impl}.qwen_image_edit_plus.QwenImageEditPlusModel": {"max_area": 262144, "negative_prompt": None},
        f"{impl}.flux_kontext.FluxKontextModel": {"auto_resize": False, "max_area": 262144},
        f"{impl}.instruct_pix2pix.InstructPix2PixModel": {"resolution": None, "scheduler": None},
        f"{impl}.diffusers_generic.DiffusersEditModel": {
            "pipeline_class": "QwenImageEditPipeline", "model_name": "Qwen/Qwen-Image-Edit",
            "call_kwargs": {"num_inference_steps": 30}},
        f"{impl}.precomputed.PrecomputedEditModel": {"images_dir": str(tmp_path), "path_template": None},
        f"{impl}.identity.IdentityEditModel": {},
    }
    for class_path, init_args in specs.items():
        spec = resolve_component("diffusion_model", {"class_path": class_path, "init_args": init_args}, "test")
        model = spec.build()
        assert not model.loaded
        assert json.dumps(spec.init_args)  # resolved args are plain YAML/JSON values


@pytest.mark.parametrize("class_path,defaults", [
    ("qwen_image_edit_plus.QwenImageEditPlusModel",
     {"model_name": "Qwen/Qwen-Image-Edit-2511", "num_inference_steps": 40, "true_cfg_scale": 4.0,
      "negative_prompt": " ", "max_area": None, "guidance_scale": None}),
    ("flux_kontext.FluxKontextModel",
     {"model_name": "black-forest-labs/FLUX.1-Kontext-dev", "num_inference_steps": 28, "guidance_scale": 2.5,
      "true_cfg_scale": 1.0, "negative_prompt": None, "max_area": 1024 * 1024, "auto_resize": True}),
    ("instruct_pix2pix.InstructPix2PixModel",
     {"model_name": "timbrooks/instruct-pix2pix", "num_inference_steps": 20, "guidance_scale": 7.5,
      "image_guidance_scale": 1.5, "resolution": 512, "scheduler": "EulerAncestralDiscreteScheduler",
      "safety_checker": False}),
])
def test_defaults_are_the_published_usage(class_path, defaults):
    import importlib

    module, name = class_path.rsplit(".", 1)
    cls = getattr(importlib.import_module(f"src.models.diffusion.implementations.{module}"), name)
    params = inspect.signature(cls.__init__).parameters
    assert {k: params[k].default for k in defaults} == defaults
    assert params["device"].default == "auto" and params["dtype"].default == "bfloat16"
    m = cls()
    assert m.pipe is None and not m.loaded  # constructing loads nothing


# ----------------------------------------------------------------------------- Qwen-Image-Edit Plus


def test_plus_sizes_extra_images_and_info(loaded):
    from src.models.diffusion.implementations.qwen_image_edit_plus import working_size

    m = loaded["plus"]
    single, tall, with_ref = m.edit([
        request("single", 48, 32, 1),
        request("tall", 32, 48, 2),
        request("ref", 48, 32, 1, extra_images=[picture(32, 48, 8), picture(40, 40, 9)]),
    ])
    for res in (single, tall, with_ref):
        assert res.error is None, res.error
        assert res.info["batch"] == 1 and res.info["num_inference_steps"] == STEPS
        assert res.info["cfg_active"] is True and res.info["negative_prompt"] == " "
    assert single.image.size == working_size((48, 32), QWEN_AREA) == (64, 32)
    assert tall.image.size == (32, 64)
    # sized from the original (first) image, not from the last reference image as upstream would
    assert with_ref.image.size == (64, 32)
    assert single.info["num_input_images"] == 1 and with_ref.info["num_input_images"] == 3
    # same picture and seed: the reference images change the result
    assert not np.array_equal(pixels(single.image), pixels(with_ref.image))


def test_plus_area_hook_is_restored_and_used():
    import diffusers.pipelines.qwenimage.pipeline_qwenimage_edit_plus as plus_module

    from src.models.diffusion.implementations.qwen_image_edit_plus import capped_area, check_area_hook, working_size

    check_area_hook()
    original = plus_module.calculate_dimensions
    assert working_size((40, 40), None) == (1024, 1024)
    assert working_size((512, 256), 256 * 256) == (352, 192)
    with capped_area(None) as uses:
        assert uses is None and plus_module.calculate_dimensions is original
    with capped_area(256 * 256) as uses:
        assert plus_module.calculate_dimensions(384 * 384, 1.0) == (256, 256)
        assert plus_module.calculate_dimensions(1024 * 1024, 500.0)[1] == 32  # never a 0 px side
        assert uses == [384 * 384, 1024 * 1024]
    assert plus_module.calculate_dimensions is original


def test_plus_bad_init_args():
    from src.models.diffusion.implementations.qwen_image_edit_plus import QwenImageEditPlusModel

    for bad in ({"max_area": 100}, {"num_inference_steps": 0}, {"true_cfg_scale": "4"}, {"negative_prompt": 1}):
        with pytest.raises(ModelError):
            QwenImageEditPlusModel(**bad)


# ----------------------------------------------------------------------------- FLUX.1 Kontext


def test_kontext_sizes_batches_and_info(loaded):
    m = loaded["kontext"]
    reqs = [request("wide", 48, 32, 1), request("tall", 32, 48, 2), request("wide2", 50, 33, 3, "add a boat")]
    wide, tall, wide2 = m.edit(reqs)
    for res in (wide, tall, wide2):
        assert res.error is None, res.error
        assert res.info["guidance_scale"] == 2.5 and res.info["cfg_active"] is False
        assert res.info["auto_resize"] is False and res.info["max_area"] == KONTEXT_AREA
    # the input's aspect ratio at ~max_area pixels, multiples of 16 (not the pipeline's square default)
    assert wide.image.size == (48, 32) and tall.image.size == (32, 48) and wide2.image.size == (48, 32)
    assert (wide.info["condition_width"], wide.info["condition_height"]) == (48, 32)
    assert [r.info["batch"] for r in (wide, tall, wide2)] == [2, 1, 2]


def test_kontext_batch_matches_one_by_one(loaded):
    m = loaded["kontext"]
    reqs = [request("a", 48, 32, 11, "make it red"), request("b", 48, 32, 12, "replace the background with a beach")]
    batched = m.edit(reqs)
    for req, res in zip(reqs, batched):
        single = m.edit([req])[0]
        diff = np.abs(pixels(single.image) - pixels(res.image))
        assert diff.max() <= 3, diff.max()


def test_kontext_output_size_arithmetic():
    from src.models.diffusion.implementations.flux_kontext import condition_size, output_size

    assert output_size((4000, 3000), 1024 * 1024) == (1168, 880)
    assert output_size((48, 32), 1024 * 1024) == (1248, 832)  # a target: small inputs are enlarged
    assert condition_size((4000, 3000), (1168, 880), auto_resize=True) == (1184, 880)
    assert condition_size((4000, 3000), (1168, 880), auto_resize=False) == (1168, 880)


def test_kontext_auto_resize_and_true_cfg(zoo_cache):
    m = kontext(zoo_cache, auto_resize=True, true_cfg_scale=2.0, negative_prompt="blurry")
    m.load()
    calls = []
    handle = m.pipe.transformer.register_forward_hook(lambda *a: calls.append(1))
    try:
        res = m.edit([request("x", 48, 32, 5)])[0]
    finally:
        handle.remove()
        m.release()
    assert res.error is None and res.image.size == (48, 32)
    # the pipeline conditions on the Kontext training resolution nearest to 3:2
    assert (res.info["condition_width"], res.info["condition_height"]) == (1248, 832)
    assert res.info["cfg_active"] is True and res.info["negative_prompt"] == "blurry"
    assert len(calls) == 2 * STEPS


# ----------------------------------------------------------------------------- InstructPix2Pix


def test_pix2pix_sizes_scheduler_and_info(loaded):
    from diffusers import EulerAncestralDiscreteScheduler

    m = loaded["pix2pix"]
    assert isinstance(m.pipe.scheduler, EulerAncestralDiscreteScheduler)  # the model card's sampler
    assert m.pipe.safety_checker is None
    wide, tall = m.edit([request("wide", 48, 32, 1), request("tall", 30, 50, 2)])
    assert wide.error is None and tall.error is None
    assert wide.image.size == (64, 40)  # longer side -> resolution 64, multiples of 8
    assert tall.image.size == (40, 64)
    assert wide.info["image_guidance_scale"] == 1.5 and wide.info["guidance_scale"] == 7.5
    assert wide.info["scheduler"] == "EulerAncestralDiscreteScheduler" and wide.info["safety_checker"] is False


def test_pix2pix_working_size_policy():
    from src.models.diffusion.implementations.instruct_pix2pix import InstructPix2PixModel, working_size

    assert working_size((1024, 768), 512) == (512, 384)
    assert working_size((30, 50), 64) == (40, 64)
    assert working_size((50, 33), None) == (48, 32)  # the pipeline's own: floor to multiples of 8
    params = inspect.signature(InstructPix2PixModel.__init__).parameters
    assert params["resolution"].default == 512 and params["num_inference_steps"].default == 20


def test_pix2pix_keeps_the_checkpoint_scheduler_and_bfloat16(zoo_cache):
    import torch
    from diffusers import PNDMScheduler

    m = pix2pix(zoo_cache, scheduler=None, dtype="bfloat16", negative_prompt="blurry")
    m.load()
    try:
        assert isinstance(m.pipe.scheduler, PNDMScheduler)
        assert m.pipe.unet.dtype == torch.bfloat16 and m.pipe.text_encoder.dtype == torch.bfloat16
        res = m.edit([request("x", 48, 32, 1)])[0]
    finally:
        m.release()
    assert res.error is None and res.image.size == (64, 40) and res.info["negative_prompt"] == "blurry"


# ----------------------------------------------------------------------------- generic diffusers editor


def test_generic_matches_the_dedicated_qwen_editor(zoo_cache):
    """DiffusersEditModel("QwenImageEditPipeline") == QwenImageEditModel with the same settings."""
    from src.models.diffusion.implementations.qwen_image_edit import QwenImageEditModel, capped_area

    g = generic(zoo_cache, call_kwargs={"num_inference_steps": STEPS, "true_cfg_scale": 4.0, "negative_prompt": " ",
                                        "height": 32, "width": 64})
    g.check()
    g.load()
    d = QwenImageEditModel(model_name="tiny:qwen-image-edit", device="cpu", dtype="float32", num_inference_steps=STEPS,
                           max_area=QWEN_AREA, cache_dir=zoo_cache)
    d.load()
    try:
        reqs = [request("a", 48, 32, 1), request("b", 48, 32, 2, "add a boat"),
                request("two", 48, 32, 3, extra_images=[picture(32, 32, 4)])]
        with capped_area(QWEN_AREA):  # the generic editor has no area option; cap the pipeline as the test setup
            a, b, two = g.edit(reqs)
        ref = d.edit([reqs[0]])[0]
    finally:
        g.release()
        d.release()
    assert a.error is None and b.error is None, (a.error, b.error)
    assert a.info["batch"] == 2 and a.info["pipeline"] == "QwenImageEditPipeline"
    assert a.info["call_kwargs"]["negative_prompt"] == " "
    assert a.image.size == ref.image.size == (64, 32)
    assert np.abs(pixels(a.image) - pixels(ref.image)).max() <= 3  # batched vs single: padded prompts
    assert two.image is None and "one input image" in two.error


def test_generic_configuration_errors(zoo_cache):
    from src.models.diffusion.implementations.diffusers_generic import DiffusersEditModel

    with pytest.raises(ModelError, match="did you mean 'QwenImageEditPipeline'"):
        DiffusersEditModel(pipeline_class="QwenImageEditPipelin", model_name="x").check()
    with pytest.raises(ModelError, match="does not take image"):
        DiffusersEditModel(pipeline_class="FluxPipeline", model_name="x").check()
    with pytest.raises(ModelError, match="num_inference_steps"):
        DiffusersEditModel(pipeline_class="QwenImageEditPipeline", model_name="x",
                           call_kwargs={"num_inference_step": 4}).check()
    with pytest.raises(ModelError, match="may not set"):
        DiffusersEditModel(pipeline_class="QwenImageEditPipeline", model_name="x", call_kwargs={"generator": 1})
    with pytest.raises(ModelError, match="did you mean 'EulerDiscreteScheduler'"):
        DiffusersEditModel(pipeline_class="QwenImageEditPipeline", model_name="x",
                           scheduler="EulerDiscreteSchedular").check()
    with pytest.raises(ModelError, match="tiny"):
        generic(zoo_cache, model_name="tiny:nope").load()


# ----------------------------------------------------------------------------- precomputed and identity


def _save(path: Path, color, size=(24, 16), fmt=None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, format=fmt)


def test_precomputed_finds_png_jpg_webp_and_reports_missing(tmp_path):
    from src.models.diffusion.implementations.precomputed import PrecomputedEditModel

    root = tmp_path / "edits"
    _save(root / "物理" / "a.png", (200, 10, 10))
    _save(root / "物理" / "b.jpg", (10, 200, 10))
    _save(root / "物理" / "c.webp", (10, 10, 200))
    _save(root / "物理" / "d.jpeg", (10, 10, 10))
    _save(root / "物理" / "e.png", (1, 1, 1))
    _save(root / "物理" / "e.jpg", (1, 1, 1))
    m = PrecomputedEditModel(images_dir=str(root))
    m.check()
    m.load()
    a, b, c, d, missing, ambiguous = m.edit([request(x, 8, 8, 1) for x in ("a", "b", "c", "d", "zz", "e")])
    assert a.error is None and a.image.getpixel((0, 0)) == (200, 10, 10) and a.info["path"] == "物理/a.png"
    assert b.error is None and b.info["format"] == "JPEG" and b.image.size == (24, 16)
    assert c.error is None and c.info["format"] == "WEBP" and c.image.mode == "RGB"
    assert d.error is None and d.info["path"] == "物理/d.jpeg"
    assert missing.image is None
    assert str(root / "物理" / "zz.png") in missing.error and str(root / "物理" / "zz.webp") in missing.error
    assert ambiguous.image is None and "ambiguous" in ambiguous.error
    m.release()
    assert not m.loaded


def test_precomputed_template_and_path_traversal(tmp_path):
    from src.models.diffusion.implementations.precomputed import PrecomputedEditModel

    root = tmp_path / "edits"
    _save(root / "flat" / "a.png", (5, 6, 7))
    _save(tmp_path / "secret.png", (0, 0, 0))
    m = PrecomputedEditModel(images_dir=str(root), path_template="flat/{pair_id}.png")
    m.load()
    ok, missing, escape = m.edit([request("a", 8, 8, 1), request("b", 8, 8, 1), request("../../secret", 8, 8, 1)])
    assert ok.error is None and ok.image.getpixel((0, 0)) == (5, 6, 7)
    assert missing.image is None and str(root / "flat" / "b.png") in missing.error
    assert escape.image is None and "outside images_dir" in escape.error

    outside = PrecomputedEditModel(images_dir=str(root), path_template="../{pair_id}.png")
    outside.load()
    (res,) = outside.edit([request("secret", 8, 8, 1)])
    assert res.image is None and "outside images_dir" in res.error

    default = PrecomputedEditModel(images_dir=str(root))
    default.load()
    absolute = EditRequest(pair_id="x", category=str(tmp_path), image=picture(8, 8, 1), instruction="i", seed=1)
    (res,) = default.edit([absolute])
    assert res.image is None and "outside images_dir" in res.error


def test_precomputed_configuration_errors(tmp_path):
    from src.models.diffusion.implementations.precomputed import PrecomputedEditModel

    with pytest.raises(ModelError, match="not a directory"):
        PrecomputedEditModel(images_dir=str(tmp_path / "nope")).load()
    with pytest.raises(ModelError, match="placeholder"):
        PrecomputedEditModel(images_dir=str(tmp_path), path_template="{category}/{id}.png")
    with pytest.raises(ModelError, match="placeholder"):
        PrecomputedEditModel(images_dir=str(tmp_path), path_template="{pair_id.__class__}.png")


def test_identity_returns_the_input(tmp_path):
    from src.models.diffusion.implementations.identity import IdentityEditModel

    m = IdentityEditModel()
    with pytest.raises(ModelError):
        m.edit([request("x", 8, 8, 1)])
    m.check()
    m.load()
    reqs = [request("x", 40, 24, 1), request("y", 8, 8, 2)]
    results = m.edit(reqs)
    for req, res in zip(reqs, results):
        assert res.error is None and res.image is not req.image
        assert np.array_equal(pixels(res.image), pixels(req.image))
        assert res.info["identity"] is True
    m.unload_from_gpu()
    m.release()
    assert not m.loaded
