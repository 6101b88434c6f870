"""Qwen-Image-Edit on the tiny random-weight checkpoint (real architecture, CPU, no network).

The checkpoint is built once per session into a temporary cache and loaded through the same
`QwenImageEditPipeline.from_pretrained` path as a hub checkpoint. Edits run at a capped working area
(`max_area`) with 2 steps, so each takes a fraction of a second.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from src.models.base import EditRequest, ModelError

MAX_AREA = 48 * 48
STEPS = 2


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory) -> str:
    from src.models.tiny import resolve_model_path

    cache = str(tmp_path_factory.mktemp("qie-cache"))
    resolve_model_path("tiny:qwen-image-edit", cache_dir=cache)
    return cache


@pytest.fixture(scope="session")
def tiny_path(tiny_cache) -> Path:
    from src.models.tiny import resolve_model_path

    return Path(resolve_model_path("tiny:qwen-image-edit", cache_dir=tiny_cache))


def make_model(cache: str, **overrides):
    from src.models.diffusion.implementations.qwen_image_edit import QwenImageEditModel

    args = dict(model_name="tiny:qwen-image-edit", device="cpu", dtype="float32", num_inference_steps=STEPS,
                max_area=MAX_AREA, cache_dir=cache, batch_size=3)
    args.update(overrides)
    return QwenImageEditModel(**args)


@pytest.fixture(scope="session")
def model(tiny_cache):
    m = make_model(tiny_cache)
    m.check()
    m.load()
    yield m
    m.release()


def picture(w: int, h: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    arr = np.zeros((h, w, 3), np.uint8)
    arr[: h // 2] = rng.integers(0, 255, 3)
    arr[h // 2:] = rng.integers(0, 255, 3)
    arr[:, : w // 3, 2] = 240
    return Image.fromarray(arr, "RGB")


def request(pair_id: str, w: int, h: int, seed: int, instruction: str = "make the sky red", **kw) -> EditRequest:
    return EditRequest(pair_id=pair_id, category="物理", image=picture(w, h, seed), instruction=instruction,
                       seed=seed, **kw)


def pixels(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.int16)


def poison(model):
    """Make the model's pipeline fail every call whose prompts contain POISON; returns the call sizes."""
    real_pipe = model.pipe
    seen: list[int] = []

    class FlakyPipe:
        def __getattr__(self, name):
            return getattr(real_pipe, name)

        def __call__(self, **kwargs):
            prompts = kwargs["prompt"]
            prompts = [prompts] if isinstance(prompts, str) else prompts  # one request: the model card's str
            seen.append(len(prompts))
            if any("POISON" in p for p in prompts):
                raise RuntimeError("boom")
            return real_pipe(**kwargs)

    model.pipe = FlakyPipe()
    return seen


def assert_same_float32_weights(a_dir: Path, b_dir: Path, subfolders) -> None:
    """The safetensors weights of two builds of a tiny checkpoint are float32 and identical."""
    from safetensors.numpy import load_file

    for sub in subfolders:
        (a,) = sorted((a_dir / sub).glob("*.safetensors"))
        (b,) = sorted((b_dir / sub).glob("*.safetensors"))
        ta, tb = load_file(a), load_file(b)
        assert ta.keys() == tb.keys()
        for key in ta:
            assert ta[key].dtype == np.float32, key
            np.testing.assert_array_equal(ta[key], tb[key], err_msg=f"{sub}:{key}")


# ----------------------------------------------------------------------------- checkpoint


def test_tiny_checkpoint_looks_like_the_real_one(tiny_path):
    from src.models.tiny.tokenizer import build_qwen_tokenizer, vocab_size

    index = json.loads((tiny_path / "model_index.json").read_text())
    assert index["_class_name"] == "QwenImageEditPipeline"
    assert index["processor"] == ["transformers", "Qwen2VLProcessor"]
    assert index["text_encoder"] == ["transformers", "Qwen2_5_VLForConditionalGeneration"]
    for sub in ("transformer", "vae", "text_encoder"):
        assert list((tiny_path / sub).glob("*.safetensors")), sub
    assert (tiny_path / "processor" / "preprocessor_config.json").exists()
    total = sum(f.stat().st_size for f in tiny_path.rglob("*") if f.is_file())
    assert total < 8_000_000

    config = json.loads((tiny_path / "text_encoder" / "config.json").read_text())
    tok = build_qwen_tokenizer()
    assert config["text_config"]["vocab_size"] >= vocab_size()
    assert config["image_token_id"] == tok.convert_tokens_to_ids("<|image_pad|>")
    assert config["video_token_id"] == tok.convert_tokens_to_ids("<|video_pad|>")
    assert config["vision_start_token_id"] == tok.convert_tokens_to_ids("<|vision_start|>")
    assert config["vision_end_token_id"] == tok.convert_tokens_to_ids("<|vision_end|>")


def test_tiny_build_is_deterministic(tiny_path, tmp_path):
    from src.models.tiny.qwen_image_edit import build

    build(tmp_path)
    assert_same_float32_weights(tiny_path, tmp_path, ("transformer", "vae", "text_encoder"))


def test_image_only_processor_reads_a_legacy_processor_folder(tmp_path):
    """The real checkpoint's processor/ has min_pixels/max_pixels keys and no `size`."""
    from src.models.diffusion.implementations.qwen_image_edit import load_image_only_processor
    from src.models.tiny.tokenizer import build_qwen_tokenizer

    folder = tmp_path / "processor"
    folder.mkdir()
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "min_pixels": 3136, "max_pixels": 12845056, "patch_size": 14, "temporal_patch_size": 2, "merge_size": 2,
        "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
        "image_processor_type": "Qwen2VLImageProcessor", "processor_class": "Qwen2VLProcessor",
    }))
    build_qwen_tokenizer().save_pretrained(folder)
    proc = load_image_only_processor(str(tmp_path))
    assert proc.image_processor.size["longest_edge"] == 12845056
    assert proc.image_processor.size["shortest_edge"] == 3136
    assert not hasattr(proc, "video_processor")
    out = proc(text=["<|vision_start|><|image_pad|><|vision_end|>hi"], images=[picture(64, 32, 0)],
               padding=True, return_tensors="pt")
    grid = out["image_grid_thw"][0].tolist()
    n_tokens = grid[0] * grid[1] * grid[2] // 4
    assert int((out["input_ids"][0] == proc.image_token_id).sum()) == n_tokens
    assert out["pixel_values"].shape[0] == grid[0] * grid[1] * grid[2]


# ----------------------------------------------------------------------------- editing


def test_edit_batch_sizes_and_info(model):
    from src.models.diffusion.implementations.qwen_image_edit import working_size

    reqs = [request("wide", 48, 32, 1), request("tall", 32, 48, 2), request("square", 40, 40, 3),
            request("wide2", 48, 32, 4, "add a small boat")]
    results = model.edit(reqs)
    assert len(results) == 4
    for req, res in zip(reqs, results):
        assert res.error is None, res.error
        assert isinstance(res.image, Image.Image) and res.image.mode == "RGB"
        expected = working_size(req.image.size, MAX_AREA)
        assert res.image.size == expected
        assert (res.info["width"], res.info["height"]) == expected
        assert res.info["num_inference_steps"] == STEPS
        assert res.info["true_cfg_scale"] == 4.0 and res.info["cfg_active"] is True
        assert res.info["seed"] == req.seed
    assert [r.image.size for r in results] == [(64, 32), (32, 64), (64, 64), (64, 32)]
    # wide + wide2 share a working size and ran as one batch; the others alone
    assert [r.info["batch"] for r in results] == [2, 1, 1, 2]


def test_seed_determinism(model):
    a = model.edit([request("p", 48, 32, 7)])[0].image
    b = model.edit([request("p", 48, 32, 7)])[0].image
    c = model.edit([request("p", 48, 32, 8)])[0].image  # different seed (and picture)
    other = request("p", 48, 32, 7)
    other.seed = 9
    d = model.edit([other])[0].image  # same picture, different seed
    assert np.array_equal(pixels(a), pixels(b))
    assert not np.array_equal(pixels(a), pixels(c))
    assert not np.array_equal(pixels(a), pixels(d))


def test_batch_matches_one_by_one(model):
    """Not bit-identical: in a batch the shorter prompt is padded and attention is masked (see module doc)."""
    reqs = [request("a", 48, 32, 11, "make it red"), request("b", 48, 32, 12, "replace the background with a beach")]
    batched = model.edit(reqs)
    assert [r.info["batch"] for r in batched] == [2, 2]
    for req, res in zip(reqs, batched):
        single = model.edit([req])[0]
        assert single.info["batch"] == 1
        diff = np.abs(pixels(single.image) - pixels(res.image))
        assert diff.max() <= 3, diff.max()  # of 255
        assert diff.mean() < 0.5


def _count_transformer_calls(model):
    calls = []
    handle = model.pipe.transformer.register_forward_hook(lambda *a: calls.append(1))
    return calls, handle


@pytest.mark.parametrize("overrides,active", [
    ({}, True),
    ({"true_cfg_scale": 1.0}, False),
    ({"negative_prompt": None}, False),
])
def test_cfg_on_and_off(tiny_cache, overrides, active):
    m = make_model(tiny_cache, **overrides)
    m.load()
    assert m.cfg_active is active
    calls, handle = _count_transformer_calls(m)
    try:
        res = m.edit([request("x", 48, 32, 5)])[0]
    finally:
        handle.remove()
        m.release()
    assert res.error is None and res.image.size == (64, 32)
    assert res.info["cfg_active"] is active
    assert len(calls) == STEPS * (2 if active else 1)


def test_failing_request_does_not_kill_the_batch(tiny_cache):
    m = make_model(tiny_cache, batch_size=2)
    m.load()
    seen = poison(m)  # fails any call that contains the poisoned prompt
    reqs = [request("ok", 48, 32, 1), request("bad", 48, 32, 2, "POISON"),
            EditRequest("two", "物理", picture(48, 32, 3), "merge", 3, extra_images=[picture(48, 32, 4)])]
    try:
        ok, bad, two = m.edit(reqs)
    finally:
        m.release()
    assert seen == [2, 1, 1]  # the batch, then one by one
    assert ok.error is None and ok.image is not None
    assert bad.image is None and "boom" in bad.error
    assert two.image is None and "one input image" in two.error


def test_release_and_reload(tiny_cache):
    m = make_model(tiny_cache)
    m.load()
    assert m.pipe is not None and m.loaded
    m.release()
    assert m.pipe is None and not m.loaded
    with pytest.raises(ModelError):
        m.edit([request("x", 48, 32, 1)])
    m.load()
    assert m.edit([request("x", 48, 32, 1)])[0].image is not None
    m.release()


def test_bfloat16_is_loaded_as_bfloat16(tiny_cache):
    import torch

    m = make_model(tiny_cache, dtype="bfloat16")
    m.load()
    try:
        assert m.pipe.transformer.dtype == torch.bfloat16
        assert m.pipe.text_encoder.dtype == torch.bfloat16
        assert m.pipe.vae.dtype == torch.bfloat16
        res = m.edit([request("x", 48, 32, 1)])[0]
    finally:
        m.release()
    assert res.error is None and res.image.size == (64, 32)


# ----------------------------------------------------------------------------- configuration


def test_cuda_without_gpu_is_a_model_error(tiny_cache):
    m = make_model(tiny_cache, device="cuda")
    with pytest.raises(ModelError, match="CUDA"):
        m.check()
    with pytest.raises(ModelError):
        m.load()


@pytest.mark.parametrize("bad", [{"max_area": 100}, {"max_area": 1.5}, {"num_inference_steps": 0},
                                 {"true_cfg_scale": "4"}, {"negative_prompt": 3}, {"batch_size": 0}])
def test_bad_init_args(bad):
    from src.models.diffusion.implementations.qwen_image_edit import QwenImageEditModel

    with pytest.raises(ModelError):
        QwenImageEditModel(**bad)


def test_defaults_are_the_real_model():
    import inspect

    from src.models.diffusion.implementations.qwen_image_edit import QwenImageEditModel

    params = inspect.signature(QwenImageEditModel.__init__).parameters
    assert params["model_name"].default == "Qwen/Qwen-Image-Edit"
    assert params["max_area"].default is None
    assert params["true_cfg_scale"].default == 4.0
    assert params["negative_prompt"].default == " "
    m = QwenImageEditModel()
    assert m.pipe is None and not m.loaded  # constructing loads nothing


def test_working_area_hook():
    import diffusers.pipelines.qwenimage.pipeline_qwenimage_edit as edit_module

    from src.models.diffusion.implementations.qwen_image_edit import capped_area, check_area_hook, working_size

    check_area_hook()
    original = edit_module.calculate_dimensions
    assert working_size((40, 40), None) == (1024, 1024)  # upstream behaviour without a cap
    assert working_size((40, 40), 2 * 1024 * 1024) == (1024, 1024)  # a cap never enlarges
    assert working_size((512, 256), 256 * 256) == (352, 192)
    with capped_area(None) as uses:
        assert uses is None and edit_module.calculate_dimensions is original
    with capped_area(256 * 256) as uses:
        assert edit_module.calculate_dimensions(1024 * 1024, 2.0)[:2] == (352, 192)
        assert uses == [1024 * 1024]
    assert edit_module.calculate_dimensions is original
