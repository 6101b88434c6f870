"""Reference equivalence: each editor's edit of a pair equals the upstream pipeline called as its model card
calls it (one image, same seed), bit for bit, on the tiny random-weight checkpoints (CPU, 32 px, 2 steps).

The reference side is written here by hand from the model cards, not built with the editors' code:
    Qwen-Image-Edit   pipe(image=img, prompt=p, generator=seed, true_cfg_scale=4.0, negative_prompt=" ",
                      num_inference_steps=N)
    Qwen-Image-Edit-2509/2511   pipe(image=[img], ..., guidance_scale=1.0, num_images_per_prompt=1)
    FLUX.1 Kontext    pipe(image=img, prompt=p, guidance_scale=2.5) + generator, steps and the output size
    InstructPix2Pix   EulerAncestral scheduler, pipe(p, image=img, num_inference_steps=N,
                      image_guidance_scale=1) + generator
Tiny-run deviations, applied to both sides alike: 2 steps; the Qwen pipelines' hard-coded 1024*1024
working area is capped by replacing the module's `calculate_dimensions` in the test (not with the
editors' own hook); Kontext gets `height`/`width`/`max_area` for a 32x32 output.

Rope positions: the Qwen reference is *corrected* the way diffusers PR #14189 corrects it - the text
encoder receives the processor's own `mm_token_type_ids` (computed here by the processor's
`create_mm_token_type_ids`, independently of src/models/diffusion/qwen_fixes.py).
"""

from __future__ import annotations

import contextlib
import importlib

import numpy as np
import pytest
from PIL import Image

from src.models.base import EditRequest

STEPS = 2
SIDE = 32
SEED = 1234
PROMPT = "make the sky red"

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")


def picture(w: int, h: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    arr[: h // 2, :, 0] = 250
    return Image.fromarray(arr, "RGB")


def pixels(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("RGB"), dtype=np.int16)


def request(w=SIDE, h=SIDE, seed=SEED, instruction=PROMPT, pic_seed=7) -> EditRequest:
    return EditRequest(pair_id="p", category="物理", image=picture(w, h, pic_seed), instruction=instruction, seed=seed)


def gen(seed=SEED):
    import torch

    return torch.Generator(device="cpu").manual_seed(seed)  # the state torch.manual_seed(seed) gives


@contextlib.contextmanager
def area_cap(module_name: str, cap: int):
    """The tiny-run cap of a Qwen pipeline's working area, applied by the test (see module doc)."""
    module = importlib.import_module(module_name)
    original = module.calculate_dimensions

    def capped(target_area, ratio):
        return original(min(target_area, cap), ratio)

    module.calculate_dimensions = capped
    try:
        yield
    finally:
        module.calculate_dimensions = original


def forward_processor_field(pipe):
    """Diffusers PR #14189's correction on a reference pipeline: the processor's mm_token_type_ids go to the
    text encoder. Returns the list of position_ids the language model received."""
    import torch

    def add_field(module, args, kwargs):
        if kwargs.get("image_grid_thw") is not None and kwargs.get("mm_token_type_ids") is None:
            ids = pipe.processor.create_mm_token_type_ids(kwargs["input_ids"].tolist())
            kwargs["mm_token_type_ids"] = torch.tensor(ids, dtype=torch.int32)
        return args, kwargs

    pipe.text_encoder.register_forward_pre_hook(add_field, with_kwargs=True)
    return record_positions(pipe)


def record_positions(pipe) -> list:
    seen: list = []
    pipe.text_encoder.model.language_model.register_forward_pre_hook(
        lambda m, a, k: seen.append(k.get("position_ids")), with_kwargs=True)
    return seen


def load_reference(pipeline_class: str, arch: str, **extra):
    """The upstream pipeline as a model card loads it (float32 here; processor: the image-only one, as the
    checkpoint's full processor needs torchvision)."""
    import diffusers

    from src.models.tiny import resolve_model_path

    path = resolve_model_path(f"tiny:{arch}")
    if "Qwen" in pipeline_class:
        from src.models.diffusion.implementations.qwen_image_edit import load_image_only_processor

        extra["processor"] = load_image_only_processor(path)
    pipe = getattr(diffusers, pipeline_class).from_pretrained(path, **extra)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def loaded(model):
    model.check()
    model.load()
    return model


# ----------------------------------------------------------------------------- shared session fixtures


@pytest.fixture(scope="session")
def qwen_pair():
    """(the project's QwenImageEditModel, the upstream QwenImageEditPipeline with the PR #14189 correction)."""
    from src.models.diffusion.implementations.qwen_image_edit import QwenImageEditModel

    ours = loaded(QwenImageEditModel(model_name="tiny:qwen-image-edit", device="cpu", dtype="float32",
                                     num_inference_steps=STEPS, max_area=SIDE * SIDE, batch_size=2))
    ref = load_reference("QwenImageEditPipeline", "qwen-image-edit")
    ref_positions = forward_processor_field(ref)
    yield ours, ref, ref_positions
    ours.release()


def qwen_reference(ref, req: EditRequest):
    with area_cap("diffusers.pipelines.qwenimage.pipeline_qwenimage_edit", SIDE * SIDE):
        return ref(image=req.image, prompt=req.instruction, generator=gen(req.seed), true_cfg_scale=4.0,
                   negative_prompt=" ", num_inference_steps=STEPS).images[0]


# ----------------------------------------------------------------------------- Qwen-Image-Edit


def test_qwen_image_edit_equals_the_model_card_call(qwen_pair):
    ours, ref, _ = qwen_pair
    req = request(40, 24)  # resized to the capped working size 32x32 for the VAE and the text encoder
    mine = ours.edit([req])[0]
    assert mine.error is None, mine.error
    expected = qwen_reference(ref, req)
    assert mine.image.size == expected.size == (SIDE, SIDE)
    assert np.array_equal(pixels(mine.image), pixels(expected))


def test_qwen_text_encoder_inputs_and_3d_positions(qwen_pair):
    """The text encoder sees the image at the working size, and the language model gets the 3D rope
    positions of the corrected reference, which are (checked by hand) not the sequential fallback."""
    import torch

    ours, ref, ref_positions = qwen_pair
    seen_inputs: list = []
    handle = ours.pipe.text_encoder.register_forward_pre_hook(
        lambda m, a, k: seen_inputs.append(dict(k)), with_kwargs=True)
    positions = record_positions(ours.pipe)
    try:
        req = request(40, 24, instruction="add a boat")
        assert ours.edit([req])[0].error is None
    finally:
        handle.remove()
    ref_positions.clear()
    qwen_reference(ref, req)
    assert len(positions) == len(ref_positions) == 2  # prompt and " " (true CFG)
    for mine, theirs in zip(positions, ref_positions):
        assert torch.equal(mine, theirs)
    # the processor's view of the working-size image: 32x32 -> smart_resize to 56x56 -> 4x4 patches
    inputs = seen_inputs[0]
    assert inputs["image_grid_thw"].tolist() == [[1, 4, 4]]
    image_id = ours.pipe.text_encoder.config.image_token_id
    ids = inputs["input_ids"][0]
    start = int((ids == image_id).nonzero()[0])
    assert int((ids == image_id).sum()) == 4  # 4x4 patches merged 2x2
    pos = positions[0][:, 0]
    # by hand: text 0..start-1, then the 2x2 image grid at (t, h, w) = start + (0, i, j), then text from start+2
    assert pos[:, :start].tolist() == [list(range(start))] * 3
    assert pos[:, start:start + 4].tolist() == [[start] * 4, [start, start, start + 1, start + 1],
                                                [start, start + 1, start, start + 1]]
    assert pos[:, start + 4].tolist() == [start + 2] * 3
    sequential = torch.arange(ids.numel())
    assert not torch.equal(pos[0], sequential)  # what diffusers 0.42.1 + transformers 5.23 give uncorrected


def test_qwen_batched_text_encoder_sees_each_image_as_a_single_call_would(qwen_pair):
    """A batch of two: each image reaches the text encoder at the working size (not the original size that
    `VaeImageProcessor.resize` leaves a list at), and the edits match one-by-one within the padding tolerance."""
    ours, _, _ = qwen_pair
    seen: list = []
    handle = ours.pipe.text_encoder.register_forward_pre_hook(
        lambda m, a, k: seen.append(k["pixel_values"].clone()), with_kwargs=True)
    try:
        reqs = [request(40, 24, seed=1, instruction="make it red", pic_seed=1),
                request(40, 24, seed=2, instruction="replace the background with a beach", pic_seed=2)]
        batched = ours.edit(reqs)
        batch_pixels = seen[0]
        singles = [ours.edit([r])[0] for r in reqs]
        single_pixels = [seen[2], seen[4]]  # prompt encodings of each single call (CFG adds a second)
    finally:
        handle.remove()
    assert [r.info["batch"] for r in batched] == [2, 2]
    half = batch_pixels.shape[0] // 2
    assert np.array_equal(batch_pixels[:half].numpy(), single_pixels[0].numpy())
    assert np.array_equal(batch_pixels[half:].numpy(), single_pixels[1].numpy())
    for b, s in zip(batched, singles):
        diff = np.abs(pixels(b.image) - pixels(s.image))
        assert diff.max() <= 3 and diff.mean() < 0.5, (diff.max(), diff.mean())


def test_generic_qwen_pipeline_equals_the_model_card_call(qwen_pair):
    from src.models.diffusion.implementations.diffusers_generic import DiffusersEditModel

    _, ref, _ = qwen_pair
    g = loaded(DiffusersEditModel(pipeline_class="QwenImageEditPipeline", model_name="tiny:qwen-image-edit",
                                  device="cpu", dtype="float32", call_kwargs={
                                      "num_inference_steps": STEPS, "true_cfg_scale": 4.0, "negative_prompt": " "}))
    try:
        req = request(40, 24, seed=5)
        with area_cap("diffusers.pipelines.qwenimage.pipeline_qwenimage_edit", SIDE * SIDE):
            mine = g.edit([req])[0]
    finally:
        g.release()
    assert mine.error is None, mine.error
    assert np.array_equal(pixels(mine.image), pixels(qwen_reference(ref, req)))


# ----------------------------------------------------------------------------- Qwen-Image-Edit-2509/2511


def test_qwen_image_edit_plus_equals_the_model_card_call():
    from src.models.diffusion.implementations.qwen_image_edit_plus import QwenImageEditPlusModel

    ours = loaded(QwenImageEditPlusModel(model_name="tiny:qwen-image-edit-plus", device="cpu", dtype="float32",
                                         num_inference_steps=STEPS, max_area=SIDE * SIDE))
    ref = load_reference("QwenImageEditPlusPipeline", "qwen-image-edit-plus")
    ref_positions = forward_processor_field(ref)
    positions = record_positions(ours.pipe)
    try:
        req = request(40, 24, seed=9)
        mine = ours.edit([req])[0]
        with area_cap("diffusers.pipelines.qwenimage.pipeline_qwenimage_edit_plus", SIDE * SIDE):
            expected = ref(image=[req.image], prompt=req.instruction, generator=gen(req.seed), true_cfg_scale=4.0,
                           negative_prompt=" ", num_inference_steps=STEPS, guidance_scale=1.0,
                           num_images_per_prompt=1).images[0]
    finally:
        ours.release()
    assert mine.error is None, mine.error
    assert np.array_equal(pixels(mine.image), pixels(expected))
    assert len(positions) == len(ref_positions) == 2
    assert all((a == b).all() for a, b in zip(positions, ref_positions))


# ----------------------------------------------------------------------------- FLUX.1 Kontext


def test_flux_kontext_equals_the_model_card_call():
    from src.models.diffusion.implementations.flux_kontext import FluxKontextModel

    ours = loaded(FluxKontextModel(model_name="tiny:flux-kontext", device="cpu", dtype="float32",
                                   num_inference_steps=STEPS, max_area=SIDE * SIDE))  # auto_resize as upstream
    ref = load_reference("FluxKontextPipeline", "flux-kontext")
    try:
        req = request(seed=3)
        mine = ours.edit([req])[0]
    finally:
        ours.release()
    expected = ref(image=req.image, prompt=req.instruction, guidance_scale=2.5, generator=gen(req.seed),
                   num_inference_steps=STEPS, height=SIDE, width=SIDE, max_area=SIDE * SIDE).images[0]
    assert mine.error is None, mine.error
    assert mine.image.size == (SIDE, SIDE)
    assert np.array_equal(pixels(mine.image), pixels(expected))


# ----------------------------------------------------------------------------- InstructPix2Pix


def test_instruct_pix2pix_equals_the_model_card_call():
    from diffusers import EulerAncestralDiscreteScheduler

    from src.models.diffusion.implementations.instruct_pix2pix import InstructPix2PixModel

    ours = loaded(InstructPix2PixModel(model_name="tiny:instruct-pix2pix", device="cpu", dtype="float32",
                                       num_inference_steps=STEPS, image_guidance_scale=1.0, resolution=SIDE))
    ref = load_reference("StableDiffusionInstructPix2PixPipeline", "instruct-pix2pix", safety_checker=None)
    ref.scheduler = EulerAncestralDiscreteScheduler.from_config(ref.scheduler.config)
    try:
        req = request(seed=4)
        mine = ours.edit([req])[0]
    finally:
        ours.release()
    expected = ref(req.instruction, image=req.image, num_inference_steps=STEPS, image_guidance_scale=1,
                   generator=gen(req.seed)).images[0]
    assert mine.error is None, mine.error
    assert np.array_equal(pixels(mine.image), pixels(expected))


# ----------------------------------------------------------------------------- the doctor's check


def test_rope_positions_status_of_the_installed_versions(monkeypatch):
    """diffusers 0.42.1 + transformers 5.23 (the pins) are affected; a diffusers that forwards the field is not."""
    from diffusers.pipelines.qwenimage import pipeline_qwenimage_edit, pipeline_qwenimage_edit_plus

    from src.models.diffusion import qwen_fixes

    status = qwen_fixes.rope_positions_status()
    assert status["affected"] is True and status["fixed_here"] is True
    assert status["pipelines"]["QwenImageEditPipeline"] is False
    assert "#14194" in status["message"]

    def fixed(self, prompt=None, image=None, device=None, dtype=None):  # what PR #14189 does
        model_inputs = self.processor(text=prompt, images=image)
        return self.text_encoder(mm_token_type_ids=model_inputs.get("mm_token_type_ids"))

    for module, name in ((pipeline_qwenimage_edit, "QwenImageEditPipeline"),
                         (pipeline_qwenimage_edit_plus, "QwenImageEditPlusPipeline")):
        monkeypatch.setattr(getattr(module, name), "_get_qwen_prompt_embeds", fixed)
    monkeypatch.setattr(qwen_fixes, "QWEN_EDIT_PIPELINES", qwen_fixes.QWEN_EDIT_PIPELINES[:2])
    status = qwen_fixes.rope_positions_status()
    assert status["affected"] is False and "not affected" in status["message"]
