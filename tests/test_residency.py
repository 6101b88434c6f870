"""Residency: the auto policy against fake memory plans; PinnedOffload on CPU and with a faked CUDA path."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from src.models.base import BaseEditModel
from src.residency import (
    PIN_ALIGN,
    PinnedOffload,
    caching_allocator_pinned_bytes,
    choose_residency,
    module_bytes,
    offload_host_need,
    pinned_arena_bytes,
)

GIB = 1024**3


def fake_plan(both_fit, editor_gib=40, judge_gib=60, host_gib=256, gpus=1, fits_alone=(True, True), together=None):
    models = {
        "editor": {"role": "editor", "weight_bytes": None if editor_gib is None else editor_gib * GIB,
                   "fits_alone": fits_alone[0], "target": "cuda:0" if gpus else "host"},
        "judge": {"role": "judge", "weight_bytes": None if judge_gib is None else judge_gib * GIB,
                  "fits_alone": fits_alone[1], "target": "cuda:0" if gpus else "host"},
    }
    return {
        "both_fit": both_fit,
        "together_peak_bytes": together,
        "memory": {"gpus": [{"index": i, "free_bytes": 80 * GIB} for i in range(gpus)],
                   "host_available_bytes": None if host_gib is None else host_gib * GIB},
        "assumptions": {"margin_fraction": 0.10},
        "models": models,
        "residency": "resident" if both_fit else "offload",
    }


@pytest.mark.parametrize("policy, mode, plan, chosen, warns", [
    # auto, two_stage: always release, whatever the plan says
    ("auto", "two_stage", fake_plan(True), "release", False),
    ("auto", "two_stage", None, "release", False),
    # auto, interleaved
    ("auto", "interleaved", fake_plan(True, 10, 20), "resident", False),
    ("auto", "interleaved", fake_plan(False), "offload", False),  # 110 GiB of host copies in 256
    ("auto", "interleaved", fake_plan(False, host_gib=100), "release", True),  # 110 > 100
    ("auto", "interleaved", fake_plan(False, host_gib=None), "offload", True),  # host unknown
    ("auto", "interleaved", fake_plan(None, editor_gib=None), "offload", True),  # checkpoint not measured
    ("auto", "interleaved", None, "offload", True),  # no plan at all
    ("auto", "interleaved", fake_plan(False, gpus=0), "release", True),  # CPU: both would live in host RAM
    ("auto", "interleaved", fake_plan(True, 1, 1, gpus=0), "resident", False),
    ("auto", "interleaved", fake_plan(False, fits_alone=(False, True)), "offload", True),  # editor too big alone
    # explicit policies are kept
    ("release", "interleaved", fake_plan(True), "release", False),
    ("offload", "interleaved", fake_plan(True), "offload", False),
    ("resident", "interleaved", fake_plan(True), "resident", False),
    ("resident", "interleaved", fake_plan(False, together=150 * GIB), "resident", True),  # kept, with a warning
    ("resident", "interleaved", None, "resident", False),
    ("offload", "two_stage", None, "offload", False),
    # two_stage is checked against the plan too (pipeline.choose_residency_for computes it for these)
    ("resident", "two_stage", fake_plan(False, together=150 * GIB), "resident", True),
    ("offload", "two_stage", fake_plan(False, host_gib=64), "offload", True),  # 110 GiB pinned > 64 GiB host
    ("offload", "interleaved", fake_plan(False, host_gib=64), "offload", True),
    ("offload", "two_stage", fake_plan(False), "offload", False),
])
def test_choose_residency(policy, mode, plan, chosen, warns):
    got, reason = choose_residency(policy, mode, plan)
    assert got == chosen, reason
    assert ("WARNING" in reason) == warns, reason
    assert reason


def test_choose_residency_rejects_unknown_values():
    with pytest.raises(ValueError, match="residency"):
        choose_residency("sometimes", "two_stage", None)
    with pytest.raises(ValueError, match="mode"):
        choose_residency("auto", "parallel", None)


def test_offload_host_need_counts_both_models():
    assert offload_host_need(fake_plan(False, 40, 60)) == int(100 * GIB * 1.1)
    assert offload_host_need(fake_plan(False, None, 60)) is None
    pinned = fake_plan(False, 40, 60)
    pinned["models"]["editor"]["pinned_bytes"] = 41 * GIB  # the plan's exact arena size wins over the weights
    assert offload_host_need(pinned) == int(101 * GIB * 1.1)


def test_two_stage_resident_and_offload_are_checked_against_the_plan(monkeypatch):
    from src import pipeline

    seen = []
    monkeypatch.setattr("src.memplan.plan", lambda *a, **k: seen.append(k.get("mode")) or fake_plan(False, host_gib=64))
    cfg = type("Cfg", (), {"residency": "offload", "mode": "two_stage", "editor": None, "judge": None})()
    cfg.editor = cfg.judge = type("Spec", (), {"to_dict": lambda self: {}})()
    got = pipeline.choose_residency_for(cfg)
    assert seen == ["two_stage"] and got["chosen"] == "offload" and got["reason"].startswith("WARNING")
    cfg.residency = "release"  # release needs no plan
    assert pipeline.choose_residency_for(cfg)["chosen"] == "release" and seen == ["two_stage"]


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(8, 4)  # 32 + 4 float32 = 144 bytes
        self.norm = nn.BatchNorm1d(4)  # weight, bias (params), running_mean/var, num_batches_tracked (buffers)
        self.tied = self.lin  # a shared submodule is counted once
        self.eval()

    def forward(self, x):
        return self.norm(self.tied(x))


def expected_bytes(m: nn.Module) -> int:
    params = sum(p.numel() * p.element_size() for p in m.parameters())
    buffers = sum(b.numel() * b.element_size() for b in m.buffers())
    return params + buffers


def test_cpu_offload_restore_are_noops_with_the_bytes_that_would_move():
    torch.manual_seed(0)
    m, m2 = Small(), nn.Linear(3, 3, bias=False)
    x = torch.randn(5, 8)
    y0 = m(x)
    total = (32 + 4) * 4 + (4 + 4) * 4 + (4 + 4) * 4 + 8 + 9 * 4
    assert expected_bytes(m) + expected_bytes(m2) == total == module_bytes([m, m2])
    off = PinnedOffload([m, None, m2], pin=False)
    ptrs = [t.data_ptr() for t in list(m.parameters()) + list(m.buffers())]
    for _ in range(2):
        s, b = off.offload()
        assert b == total and 0 <= s < 1.0
        s, b = off.restore("cpu")
        assert b == total and 0 <= s < 1.0
    assert off.allocations == 0 and off.host == {} and off.arena is None  # nothing copied on CPU
    assert [t.data_ptr() for t in list(m.parameters()) + list(m.buffers())] == ptrs
    assert torch.equal(m(x), y0)


@pytest.fixture
def fake_cuda(monkeypatch):
    """Stand-ins for the CUDA path: 'device' tensors are CPU clones remembered by data_ptr;
    pin_memory() is counted (a real one raises without CUDA)."""
    device_ptrs: set[int] = set()
    calls = {"pin": 0, "to_device": 0, "sync": 0, "registered": set(), "host_empty": 0}

    def to_device(t, device):
        calls["to_device"] += 1
        out = t.clone()
        device_ptrs.add(out.data_ptr())
        return out

    def register(arena):
        calls["pin"] += 1
        calls["registered"].add(arena.data_ptr())
        return True  # "page-locked"

    def unregister(arena):
        calls["registered"].remove(arena.data_ptr())

    monkeypatch.setattr(PinnedOffload, "_on_host", staticmethod(lambda t: t.data_ptr() not in device_ptrs))
    monkeypatch.setattr(PinnedOffload, "_to_device", staticmethod(to_device))
    monkeypatch.setattr(PinnedOffload, "_synchronize", staticmethod(lambda device=None: calls.__setitem__(
        "sync", calls["sync"] + 1)))
    monkeypatch.setattr(PinnedOffload, "_register", staticmethod(register))
    monkeypatch.setattr(PinnedOffload, "_unregister", staticmethod(unregister))
    monkeypatch.setattr("src.residency.empty_host_cache", lambda: calls.__setitem__("host_empty",
                                                                                   calls["host_empty"] + 1))

    def put_on_device(modules):
        for mod in modules:
            for t in list(mod.parameters()) + list(mod.buffers()):
                t.data = to_device(t.data, "cuda")
        calls["to_device"] = 0

    return device_ptrs, calls, put_on_device


def test_fake_cuda_buffers_allocated_once_and_reused(fake_cuda):
    device_ptrs, calls, put_on_device = fake_cuda
    torch.manual_seed(0)
    m = Small()
    x = torch.randn(5, 8)
    y0 = m(x)
    put_on_device([m])
    tensors = list(m.parameters()) + list(m.buffers())
    n = len(tensors)
    ids = [id(t) for t in tensors]
    off = PinnedOffload([m], pin=True)

    s, b = off.offload()
    assert b == expected_bytes(m)
    assert off.allocations == 1 and calls["pin"] == 1 and off.pinned  # ONE arena, page-locked once
    assert off.host_bytes() == pinned_arena_bytes(t.numel() * t.element_size() for t in tensors)
    assert all(t.data_ptr() not in device_ptrs for t in tensors)  # now in host memory
    host_ptrs = sorted(h.data_ptr() for h in off.host.values())
    assert sorted(t.data_ptr() for t in tensors) == host_ptrs  # the module points at the host buffers
    assert torch.equal(m(x), y0)

    s, b = off.restore("cuda")
    assert calls["to_device"] == n  # one host -> device copy per tensor
    assert all(t.data_ptr() in device_ptrs for t in tensors)
    assert calls["sync"] >= 2
    assert torch.equal(m(x), y0)

    with torch.no_grad():  # the weights change on the device; the next offload must carry the change
        m.lin.bias.add_(1.0)
    y1 = m(x)
    off.offload()
    assert off.allocations == 1 and calls["pin"] == 1  # reused: nothing allocated or pinned again
    assert sorted(h.data_ptr() for h in off.host.values()) == host_ptrs  # same buffers (same data_ptr)
    assert sorted(t.data_ptr() for t in tensors) == host_ptrs
    assert torch.equal(m(x), y1)
    assert [id(t) for t in list(m.parameters()) + list(m.buffers())] == ids  # parameters keep their identity
    assert expected_bytes(m) <= off.host_bytes() < expected_bytes(m) + n * PIN_ALIGN
    off.close()
    assert off.host == {} and off.arena is None and calls["registered"] == set() and calls["host_empty"] == 1


def test_arena_sizes_are_exact_and_the_caching_allocator_would_round():
    # Three tensors: 1000, 2 and 4096 bytes -> offsets 0, 1024, 1536 -> end 1536 + 4096.
    assert pinned_arena_bytes([1000, 2, 4096]) == 1536 + 4096
    assert pinned_arena_bytes([]) == 0
    assert caching_allocator_pinned_bytes([1000, 2, 4096]) == 1024 + 2 + 4096
    # A bf16 weight of 3 * 2**29 bytes (1.5 GiB) is pinned as 2 GiB by the caching allocator; exactly here.
    assert caching_allocator_pinned_bytes([3 * 2**29]) == 2**31 and pinned_arena_bytes([3 * 2**29]) == 3 * 2**29


def test_each_tensor_returns_to_the_device_it_came_from(fake_cuda, monkeypatch):
    # A model spread by a device_map over two GPUs: restore() puts every tensor back where it was.
    device_ptrs, calls, put_on_device = fake_cuda
    a, b = nn.Linear(4, 4), nn.Linear(4, 2)
    put_on_device([a, b])
    off = PinnedOffload([a, b], pin=True)
    off.offload()
    assert len(off.devices) == 4
    for key in off.devices:  # the fake device tensors report "cpu": say b came from the second GPU
        off.devices[key] = "cuda:1" if key[0] == 1 else "cuda:0"
    moved = []
    real = PinnedOffload._to_device
    monkeypatch.setattr(PinnedOffload, "_to_device", staticmethod(lambda t, d: moved.append(str(d)) or real(t, d)))
    off.restore("cuda")
    assert moved == ["cuda:0", "cuda:0", "cuda:1", "cuda:1"]


class TorchEditor(BaseEditModel):
    """A model whose weights are one nn.Module, to test the base-class hooks."""

    def __init__(self, device="cpu"):
        super().__init__(model_name="fake", device=device, dtype="float32")
        self.net = None

    def _load(self):
        self.net = Small()

    def _release(self):
        self.net = None

    def torch_modules(self):
        return [] if self.net is None else [self.net]

    def edit(self, requests):
        return []


def test_base_hooks_on_cpu_record_the_bytes_that_would_move():
    m = TorchEditor()
    m.unload_from_gpu()  # not loaded: nothing
    assert m.last_move is None
    m.load()
    m.unload_from_gpu()
    assert m.last_move == {"direction": "offload", "seconds": 0.0, "bytes": expected_bytes(m.net)}
    m.load_to_gpu()
    assert m.last_move["direction"] == "restore" and m.last_move["bytes"] == expected_bytes(m.net)
    assert not m.on_gpu and m._offloader is None  # CPU: no offloader made, nothing moved
    m.release()
    assert not m.loaded


def test_base_hooks_use_pinned_offload_on_cuda(fake_cuda, monkeypatch):
    device_ptrs, calls, put_on_device = fake_cuda
    m = TorchEditor(device="cpu")
    m.load()
    # pretend the model was loaded on a GPU
    m.device, m.on_gpu = "cuda:0", True
    put_on_device(m.torch_modules())
    size = expected_bytes(m.net)

    m.unload_from_gpu()
    assert not m.on_gpu and m.last_move["direction"] == "offload" and m.last_move["bytes"] == size
    off = m._offloader
    allocated = off.allocations
    m.load_to_gpu()
    assert m.on_gpu and m.last_move == {"direction": "restore", "seconds": m.last_move["seconds"], "bytes": size}
    m.load_to_gpu()  # already there
    assert m.last_move["bytes"] == 0
    m.unload_from_gpu()
    assert m._offloader is off and off.allocations == allocated  # the same buffers, reused
    m.release()
    assert m._offloader is None and off.host == {} and off.arena is None  # release drops the pinned arena
    assert calls["registered"] == set() and calls["host_empty"] >= 1  # unregistered, torch's pinned cache emptied


# ----------------------------------------------------------------------------- the real (tiny) models


def test_real_tiny_models_expose_their_modules_and_survive_a_faked_round_trip(fake_cuda, tmp_path_factory):
    """torch_modules() of Qwen-Image-Edit and Qwen3-VL; an offload/restore through PinnedOffload (faked
    device copies, real .data re-pointing) leaves their outputs unchanged."""
    from PIL import Image

    from src.models.base import EditRequest, JudgePrompt, ScoreRequest
    from src.models.diffusion.implementations.qwen_image_edit import QwenImageEditModel
    from src.models.reward.implementations.qwen3_vl_reward import Qwen3VLRewardModel

    device_ptrs, calls, put_on_device = fake_cuda
    cache = str(tmp_path_factory.mktemp("residency-cache"))
    editor = QwenImageEditModel(model_name="tiny:qwen-image-edit", device="cpu", dtype="float32",
                                num_inference_steps=2, max_area=48 * 48, cache_dir=cache)
    judge = Qwen3VLRewardModel(model_name="tiny:qwen3-vl", device="cpu", dtype="float32", scoring="logits",
                               cache_dir=cache)
    assert editor.torch_modules() == [] and judge.torch_modules() == []  # nothing loaded yet
    editor.load()
    judge.load()
    pipe = editor.pipe
    assert editor.torch_modules() == [pipe.transformer, pipe.vae, pipe.text_encoder]
    assert judge.torch_modules() == [judge.model]

    img = Image.new("RGB", (40, 32), (200, 40, 40))
    edit_req = EditRequest(pair_id="a", category="c", image=img, instruction="make it blue", seed=3)
    score_req = ScoreRequest(pair_id="a", category="c", original=img, edited=img, instruction="make it blue",
                             description=None, prompt=JudgePrompt(system="s", user="rate 0-10", template="t",
                                                                  template_hash="h"))
    before_edit = editor.edit([edit_req])[0].image
    before_score = judge.score([score_req])[0]

    for model in (editor, judge):
        model.device, model.on_gpu = "cuda:0", True  # pretend: loaded on a GPU
        put_on_device(model.torch_modules())
        size = module_bytes(model.torch_modules())
        model.unload_from_gpu()
        assert model.last_move["bytes"] == size > 0
        model.load_to_gpu()
        model.unload_from_gpu()  # the second offload reuses the buffers
        assert model._offloader.allocations == 1  # one arena (not page-locked: no CUDA here)
        model.load_to_gpu()
        assert all(t.data_ptr() in device_ptrs for mod in model.torch_modules() for t in mod.parameters())
        model.device = "cpu"  # run the forward on the CPU "device" copies

    import numpy as np

    assert np.array_equal(np.asarray(editor.edit([edit_req])[0].image), np.asarray(before_edit))
    after_score = judge.score([score_req])[0]
    assert after_score.status == before_score.status and after_score.score == pytest.approx(before_score.score)
    editor.release()
    judge.release()
