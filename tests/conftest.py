"""Shared fixtures: a session-wide cache for tiny checkpoints and small benchmark files.

Tiny checkpoints are built once per test session into a temporary cache (IEB_CACHE_DIR, inherited
by the `main.py` subprocesses the tests start), never into the user's home.
"""

from __future__ import annotations

import base64
import io
import json
import os
import tempfile
from pathlib import Path

import pytest
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
CATEGORIES = ["物理", "环境", "社会", "因果", "指代"]


def pytest_configure(config):
    if "IEB_CACHE_DIR" not in os.environ:  # a developer may point it at a persistent cache
        os.environ["IEB_CACHE_DIR"] = tempfile.mkdtemp(prefix="ieb-test-cache-")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # trio (selenium's) registers its PRNG with hypothesis, which looks for the PRNG's referrers with
    # gc.get_referrers; that cannot see objects frozen by pytest_collection_finish, so it would warn
    config.addinivalue_line("filterwarnings", "ignore:It looks like `register_random` was passed")
    import torch

    torch.set_num_threads(1)  # tiny models: one thread is several times faster on a 2-core machine


def pytest_collection_finish(session):
    """Freeze what the imports made (torch, diffusers, transformers: hundreds of thousands of tracked
    objects) once the test modules are imported: every `gc.collect()` of a model release then skips them
    (an independent profile of the suite found gc.collect at ~30% of its time). Objects the tests create are
    collected exactly as before; only import-time objects, which live for the whole session, are frozen."""
    import gc

    if len(session.items) >= 100:  # a broad run: it will import them anyway (~225k objects); a few files may not
        import diffusers  # noqa: F401
        import transformers  # noqa: F401
        from diffusers import QwenImageEditPipeline  # noqa: F401  (lazy modules: import what tests build)
        from transformers import Qwen3VLForConditionalGeneration  # noqa: F401
    gc.collect()
    gc.freeze()


def png_b64(color=(200, 30, 30), size=(24, 16)) -> str:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def make_benchmark(path: Path, categories=CATEGORIES, n: int = 3, extra: dict | None = None) -> Path:
    """A benchmark in the user's `{category: {"data_pairs": [...]}}` shape with tiny PNGs."""
    data = {}
    for ci, cat in enumerate(categories):
        pairs = []
        for i in range(n):
            pairs.append({"pair_id": f"{ci}-{i}", "original_image_b64": png_b64((40 * i, 50 * ci, 90), (24 + 8 * i, 16)),
                          "edit_instruction": f"{cat} 编辑 {i}", "original_description": f"描述 {i}"})
        data[cat] = {"data_pairs": pairs}
    for cat, pairs in (extra or {}).items():
        data.setdefault(cat, {"data_pairs": []})["data_pairs"].extend(pairs)
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def write_config(path: Path, data_path: Path, editor: dict | None = None, judge: dict | None = None, **top) -> Path:
    cfg = {
        "benchmark": {"data_path": str(data_path), "categories": top.pop("categories", None)},
        "diffusion_model": editor or {"class_path": "tests.fakes.FakeEditModel", "init_args": {}},
        "reward_model": judge or {"class_path": "tests.fakes.FakeRewardModel", "init_args": {}},
        "pipeline": {"output_dir": str(path.parent / "outputs"), **top.pop("pipeline", {})},
        **top,
    }
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    return path


@pytest.fixture
def bench_file(tmp_path) -> Path:
    return make_benchmark(tmp_path / "bench.json")


@pytest.fixture
def fake_config(tmp_path, bench_file) -> Path:
    return write_config(tmp_path / "config.yaml", bench_file)


@pytest.fixture(scope="session")
def public_benchmarks(tmp_path_factory) -> dict[str, dict]:
    """Tiny GEdit-Bench / KRIS-Bench / RISEBench / ImgEdit files in their real layouts (tests/public_formats.py):
    format -> {"path", "image_root"}. Shared: treat as read-only."""
    from tests.public_formats import write_all

    return write_all(tmp_path_factory.mktemp("public-benchmarks"))


@pytest.fixture(scope="session")
def public_runs(public_benchmarks, tmp_path_factory) -> dict[str, Path]:
    """Each public benchmark run end to end through `python main.py` (in process) with the fake editor and
    judge, format auto-detected: format -> run folder (report.json ...). Shared: treat as read-only."""
    from src.cli import main

    root = tmp_path_factory.mktemp("public-runs")
    runs = {}
    for fmt, spec in public_benchmarks.items():
        cfg = write_config(root / f"{fmt}.yaml", spec["path"])
        sets = [f"benchmark.image_root={spec['image_root']}"] if spec["image_root"] else []
        code = main(["--config", str(cfg), "--run-name", fmt] + [a for s in sets for a in ("--set", s)])
        assert code == 0, f"{fmt}: exit {code}"
        runs[fmt] = root / "outputs" / fmt
    return runs


# Hostile text for the report tests: script tags, a `</script>` that would end an embedding, quotes,
# an HTML comment opener, entities, and ids that look like paths.
EVIL_TEXT = "<script>alert(1)</script></script><!-- \"double\" 'single' &amp; `tick` ../../x"


@pytest.fixture(scope="session")
def gallery_run(tmp_path_factory) -> Path:
    """One finished run with every pair status, a reference image and hostile text (fake models, ~1 s):
    the gallery and browser tests read its report.html."""
    from src.cli import main

    root = tmp_path_factory.mktemp("gallery")
    extra = {"物理": [{"pair_id": "../../evil", "original_image_b64": png_b64((10, 200, 10), (40, 30)),
                       "edit_instruction": EVIL_TEXT, "original_description": EVIL_TEXT},
                      {"pair_id": "ref-1", "original_image_b64": png_b64((0, 0, 250), (32, 32)),
                       "named_images_b64": {"reference": png_b64((250, 250, 0), (32, 32))},
                       "edit_instruction": "把天空变成黄色", "original_description": "蓝色方块"},
                      {"pair_id": "bad-b64", "original_image_b64": "not base64 at all!",
                       "edit_instruction": "broken input"}]}
    data = make_benchmark(root / "bench.json", n=3, extra=extra)
    cfg = write_config(root / "config.yaml", data,
                       editor={"class_path": "tests.fakes.FakeEditModel", "init_args": {"fail_ids": ["1-1"]}},
                       judge={"class_path": "tests.fakes.FakeRewardModel", "init_args": {"fail_ids": ["2-0"]}})
    assert main(["--config", str(cfg), "--run-name", "gallery"]) == 0
    return root / "outputs" / "gallery"
