"""Editor placement (`offload`, `device_map`, `max_memory`, `quantization`; src/models/diffusion/placement.py).

There is no GPU here: the GPU paths are exercised with spies on the real diffusers classes (what
`from_pretrained` receives, whether `.to()` / `enable_*_cpu_offload` are called and with which GPU) around a
real tiny InstructPix2Pix / Qwen-Image-Edit checkpoint loaded on CPU, with the device resolved as CUDA.
Nothing here shows that the placements work on a real GPU (docs/gpu.md says how to check that).
"""

from __future__ import annotations

import pytest

from src.models.base import ModelError
from src.models.diffusion import placement as P

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")


def pix2pix(**kw):
    from src.models.diffusion.implementations.instruct_pix2pix import InstructPix2PixModel

    args = dict(model_name="tiny:instruct-pix2pix", device="cuda", dtype="float32", num_inference_steps=2,
                resolution=32)
    return InstructPix2PixModel(**{**args, **kw})


@pytest.fixture
def gpu_spies(monkeypatch):
    """The device resolves to CUDA; from_pretrained / to / offload calls are recorded, weights stay on CPU."""
    from diffusers import DiffusionPipeline

    calls: dict[str, list] = {"from_pretrained": [], "to": [], "model": [], "sequential": []}
    real = DiffusionPipeline.__dict__["from_pretrained"].__func__

    def from_pretrained(cls, path, **kwargs):
        calls["from_pretrained"].append(kwargs)
        kwargs = {k: v for k, v in kwargs.items() if k not in ("device_map", "max_memory", "quantization_config")}
        return real(cls, path, **kwargs)

    monkeypatch.setattr(DiffusionPipeline, "from_pretrained", classmethod(from_pretrained))
    monkeypatch.setattr(DiffusionPipeline, "to", lambda self, *a, **k: calls["to"].append(a) or self)
    monkeypatch.setattr(DiffusionPipeline, "enable_model_cpu_offload",
                        lambda self, gpu_id=None, **k: calls["model"].append(gpu_id))
    monkeypatch.setattr(DiffusionPipeline, "enable_sequential_cpu_offload",
                        lambda self, gpu_id=None, **k: calls["sequential"].append(gpu_id))
    monkeypatch.setattr("src.models.base.resolve_device", lambda spec: "cuda" if spec == "auto" else str(spec))
    return calls


# ----------------------------------------------------------------------------- config-time validation


@pytest.mark.parametrize("kwargs,message", [
    ({"offload": "modle"}, "did you mean 'model'"),
    ({"offload": 1}, "offload must be one of none, model, sequential"),
    ({"device_map": "auto"}, "device_map must be null or one of balanced, cuda"),
    ({"device_map": "balanced", "offload": "model"}, "cannot be combined"),
    ({"max_memory": {0: "20GiB"}}, "only applies with device_map: balanced"),
    ({"device_map": "balanced", "max_memory": {"gpu0": "20GiB"}}, "max_memory must map GPU indices"),
    ({"offload": "sequential", "device": "cpu"}, "needs a CUDA device"),
    ({"quantization": "nf4"}, "mapping with a 'backend'"),
    ({"quantization": {"backend": "bitsandbytes4bit"}}, "did you mean 'bitsandbytes_4bit'"),
    ({"quantization": {"backend": "bitsandbytes_4bit", "load_in_4bit": True}}, "needs the 'bitsandbytes' package"),
    ({"load_kwargs": {"device_map": "balanced"}}, "use the init_args device_map"),
])
def test_bad_placement_is_a_config_error(kwargs, message):
    from src.models.diffusion.implementations.diffusers_generic import DiffusersEditModel

    base = dict(pipeline_class="StableDiffusionInstructPix2PixPipeline", model_name="tiny:instruct-pix2pix")
    with pytest.raises(ModelError, match=message):
        DiffusersEditModel(**{**base, **kwargs})


def test_quantization_options_are_checked_against_the_backend(monkeypatch):
    monkeypatch.setattr(P, "_installed", lambda module: True)  # as if bitsandbytes were installed
    with pytest.raises(ModelError, match="has no option 'load_in_4bits'; did you mean 'load_in_4bit'"):
        P.check_quantization({"backend": "bitsandbytes_4bit", "load_in_4bits": True})
    with pytest.raises(ModelError, match="components must be a list"):
        P.check_quantization({"backend": "bitsandbytes_4bit", "load_in_4bit": True, "components": "transformer"})


def test_offload_on_a_machine_without_gpu_fails_at_check():
    m = pix2pix(device="auto", offload="model")  # valid config; this machine has no GPU
    with pytest.raises(ModelError, match="offload: model needs a CUDA GPU"):
        m.check()
    pix2pix(device="auto").check()  # the default placement is fine on CPU


# ----------------------------------------------------------------------------- what loading does (spies)


def test_cuda_loads_straight_to_the_gpu(gpu_spies):
    m = pix2pix(device="cuda")
    m.load()
    (kwargs,) = gpu_spies["from_pretrained"]
    assert kwargs["device_map"] == "cuda"  # no host-RAM detour
    assert gpu_spies["to"] == [] and gpu_spies["model"] == []
    m.release()


def test_cuda_n_keeps_the_host_detour(gpu_spies):
    m = pix2pix(device="cuda:1")
    m.load()
    (kwargs,) = gpu_spies["from_pretrained"]
    assert "device_map" not in kwargs  # diffusers 0.42 accepts only "cuda" / "cpu" / "balanced"
    assert gpu_spies["to"] == [("cuda:1",)]
    m.release()


@pytest.mark.parametrize("offload,gpu", [("model", 0), ("sequential", 1)])
def test_offload_modes(gpu_spies, offload, gpu):
    m = pix2pix(device=f"cuda:{gpu}", offload=offload)
    m.load()
    (kwargs,) = gpu_spies["from_pretrained"]
    assert "device_map" not in kwargs
    assert gpu_spies[offload] == [gpu] and gpu_spies["to"] == []
    m.unload_from_gpu()  # accelerate keeps idle weights on the host: nothing to move
    m.load_to_gpu()
    assert gpu_spies["to"] == []
    res = m.edit([_request()])[0]  # the (CPU-resident) pipeline still edits
    assert res.error is None and res.info["offload"] == offload
    m.release()


def test_balanced_device_map_is_never_followed_by_to(gpu_spies):
    m = pix2pix(device="cuda", device_map="balanced", max_memory={0: "20GiB", 1: "20GiB"})
    m.load()  # used to raise outside the try (pipe.to on a device-mapped pipeline) and exit 1
    (kwargs,) = gpu_spies["from_pretrained"]
    assert kwargs["device_map"] == "balanced" and kwargs["max_memory"] == {0: "20GiB", 1: "20GiB"}
    assert gpu_spies["to"] == []
    with pytest.raises(ModelError, match="residency: release"):
        m.unload_from_gpu()
    m.release()


def test_quantization_is_passed_through(gpu_spies):
    from diffusers import PipelineQuantizationConfig

    m = pix2pix(device="cuda")
    m.placement = P.Placement(quantization={"backend": "bitsandbytes_4bit", "components": ["unet"],
                                            "load_in_4bit": True, "bnb_4bit_quant_type": "nf4"})
    m.load()
    (kwargs,) = gpu_spies["from_pretrained"]
    config = kwargs["quantization_config"]
    assert isinstance(config, PipelineQuantizationConfig)
    assert config.quant_backend == "bitsandbytes_4bit" and config.components_to_quantize == ["unet"]
    assert config.quant_kwargs == {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4"}
    assert gpu_spies["to"] == []  # quantized components are placed by diffusers at load time
    m.release()


def test_a_failing_placement_is_a_model_error(gpu_spies, monkeypatch):
    from diffusers import DiffusionPipeline

    def boom(self, *a, **k):
        raise RuntimeError("CUDA error: out of memory")

    monkeypatch.setattr(DiffusionPipeline, "to", boom)
    m = pix2pix(device="cuda:1")
    with pytest.raises(ModelError, match="could not place .* on cuda:1"):
        m.load()


def test_qwen_image_edit_takes_the_same_placement(gpu_spies):
    from src.models.diffusion.implementations.qwen_image_edit import QwenImageEditModel

    m = QwenImageEditModel(model_name="tiny:qwen-image-edit", device="cuda", dtype="float32", max_area=32 * 32,
                           num_inference_steps=2, offload="model")
    m.load()
    assert gpu_spies["model"] == [0] and gpu_spies["to"] == []
    assert m.torch_modules() == []  # PinnedOffload does not fight accelerate's hooks
    m.release()
    with pytest.raises(ModelError, match="cannot be combined"):
        QwenImageEditModel(device_map="balanced", offload="sequential")


def _request():
    from PIL import Image

    from src.models.base import EditRequest

    return EditRequest(pair_id="p", category="c", image=Image.new("RGB", (32, 32), (90, 20, 200)),
                       instruction="make it red", seed=1)
