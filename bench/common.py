"""Shared helpers of the bench scripts: machine description, test images, benchmark files, configs,
measured subprocesses, result tables and JSON.

Nothing here is timed itself; the scripts time the things they name.
"""

from __future__ import annotations

import base64
import datetime as _dt
import io
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO / "bench" / "results"
CATEGORIES = ["物理", "环境", "社会", "因果", "指代"]
IDENTITY = "src.models.diffusion.implementations.identity.IdentityEditModel"
CONSTANT = "bench.models.ConstantRewardModel"

if str(REPO) not in sys.path:  # `python bench/x.py` puts bench/ first on sys.path, not the repo
    sys.path.insert(0, str(REPO))


# ----------------------------------------------------------------------------- machine and results


def now_utc() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def git_state() -> dict[str, Any]:
    """HEAD and uncommitted changes under src/ (other people edit src/ while benches run)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src", "main.py"], cwd=REPO,
                               capture_output=True, text=True)
        return {"git_head": head.stdout.strip() or None,
                "src_uncommitted_changes": [line[3:] for line in dirty.stdout.splitlines()]}
    except OSError:  # pragma: no cover
        return {"git_head": None, "src_uncommitted_changes": []}


GIT_AT_START = git_state()  # when the bench script started (the code its subprocesses ran, unless it changed)


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on (no GPU is assumed; torch's view is reported)."""
    info: dict[str, Any] = {
        "date_utc": now_utc(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": _cpu_model(),
        "logical_cpus": os.cpu_count(),
    }
    try:
        import psutil

        info["ram_total_gib"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:  # pragma: no cover
        info["ram_total_gib"] = None
    try:
        from importlib import metadata

        for pkg in ("torch", "transformers", "diffusers", "pillow", "numpy"):
            info[pkg] = metadata.version(pkg)
    except Exception:  # noqa: BLE001  # pragma: no cover
        pass
    try:
        info["loadavg_1_5_15"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover
        pass
    info["git_at_start"] = GIT_AT_START
    info["git_at_end"] = git_state()  # differs from git_at_start if src/ changed during the bench
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        info["cuda_available"] = bool(torch.cuda.is_available())
    return info


def cpu_busy(interval: float = 1.0) -> float:
    """Fraction (0-1) of all CPUs busy over `interval` seconds (other work on this shared machine)."""
    import psutil

    return round(psutil.cpu_percent(interval=interval) / 100.0, 3)


def wait_quiet(max_busy: float = 0.3, timeout_s: float = 30.0) -> float:
    """Wait (up to `timeout_s`) until the machine is mostly idle before a timed run; return the last
    busy fraction seen (recorded next to each timing: other processes on a 2-core box slow everything)."""
    deadline = time.monotonic() + timeout_s
    busy = cpu_busy()
    while busy > max_busy and time.monotonic() < deadline:
        busy = cpu_busy()
    return busy


def save_result(name: str, payload: dict[str, Any], out_dir: Path | None = None) -> Path:
    """bench/results/<name>.json (small: no per-item lists longer than needed)."""
    out_dir = Path(out_dir) if out_dir else RESULTS_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    doc = {"bench": name, "command": "python " + " ".join([os.path.relpath(sys.argv[0], REPO)] + sys.argv[1:]),
           "machine": machine_info(), **payload}
    path.write_text(json.dumps(doc, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return path


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table (also readable in a terminal)."""
    def cell(v: Any) -> str:
        if isinstance(v, float):
            if v == 0:
                return "0"
            if abs(v) >= 100:
                return f"{v:.1f}"
            if abs(v) >= 1:
                return f"{v:.2f}".rstrip("0").rstrip(".")
            return f"{v:.3f}"
        return "-" if v is None else str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


# ----------------------------------------------------------------------------- images and benchmark files


def realistic_image(seed: int, size: int = 512, noise: float = 3.0):
    """A 'photo-like' RGB test image: smooth colour gradients + low-frequency waves, 8-16 filled shapes
    (ellipses, rectangles, polygons, some outlined), a light blur (soft edges), then Gaussian sensor
    noise (sigma `noise` of 255; 3 by default, 0 = a clean, smooth image). Not pure noise (incompressible)
    and not flat colour (trivially compressible)."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    img = np.empty((size, size, 3), np.float32)
    for c in range(3):
        a, b = rng.uniform(-120, 120, 2)
        base = rng.uniform(70, 190)
        fx, fy = rng.uniform(0.3, 2.5, 2)
        phase = rng.uniform(0, 2 * np.pi)
        img[..., c] = base + a * (xx - 0.5) + b * (yy - 0.5) + 25 * np.sin(2 * np.pi * (fx * xx + fy * yy) + phase)
    im = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(8, 17))):
        x0, y0 = rng.integers(-size // 8, size, 2)
        w, h = rng.integers(size // 16, size // 2, 2)
        fill = tuple(int(v) for v in rng.integers(0, 256, 3))
        outline = tuple(int(v) for v in rng.integers(0, 256, 3)) if rng.random() < 0.4 else None
        kind = rng.integers(0, 3)
        if kind == 0:
            draw.ellipse([int(x0), int(y0), int(x0 + w), int(y0 + h)], fill=fill, outline=outline, width=3)
        elif kind == 1:
            draw.rectangle([int(x0), int(y0), int(x0 + w), int(y0 + h)], fill=fill, outline=outline, width=3)
        else:
            pts = [(int(x0 + rng.integers(0, w)), int(y0 + rng.integers(0, h))) for _ in range(int(rng.integers(3, 7)))]
            draw.polygon(pts, fill=fill, outline=outline)
    im = im.filter(ImageFilter.GaussianBlur(1.0))
    if not noise:
        return im
    arr = np.asarray(im).astype(np.float32) + rng.normal(0.0, noise, (size, size, 3)).astype(np.float32)
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "RGB")


def png_bytes(im, level: int = 6) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=level)
    return buf.getvalue()


def make_benchmark(path: Path, n_pairs: int, size: int = 512, unique: int = 50, input_level: int = 6,
                   seed: int = 0, as_paths: bool = False) -> dict[str, Any]:
    """A benchmark JSON file ({category: {"data_pairs": [...]}}, 5 categories) with `n_pairs` pairs of
    size x size PNG originals (base64, PNG level `input_level`). `unique` distinct images are generated and
    reused round-robin (each pair still carries its own copy of the base64 text in the file).
    `as_paths=True`: the originals are PNG files next to the benchmark (`original_image_path`) instead."""
    unique = max(1, min(unique, n_pairs))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    raw_pool = [png_bytes(realistic_image(seed + i, size), input_level) for i in range(unique)]
    if as_paths:
        folder = path.parent / (path.stem + "_images")
        folder.mkdir(exist_ok=True)
        for i, raw in enumerate(raw_pool):
            (folder / f"u{i:03d}.png").write_bytes(raw)
        pool = [f"{folder.name}/u{i:03d}.png" for i in range(unique)]
        field = "original_image_path"
    else:
        pool = [base64.b64encode(raw).decode("ascii") for raw in raw_pool]
        field = "original_image_b64"
    data: dict[str, Any] = {c: {"data_pairs": []} for c in CATEGORIES}
    for i in range(n_pairs):
        cat = CATEGORIES[i % len(CATEGORIES)]
        data[cat]["data_pairs"].append({
            "pair_id": f"p{i:05d}", field: pool[i % unique],
            "edit_instruction": f"把第 {i} 个物体移到左边", "original_description": f"一张测试图片 {i}"})
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False)
    return {"pairs": n_pairs, "image_size": size, "unique_images": unique, "input_png_level": input_level,
            "file_bytes": path.stat().st_size,
            "mean_input_png_bytes": round(sum(len(r) for r in raw_pool) / len(raw_pool)),
            "images": "paths" if as_paths else "base64"}


def write_config(path: Path, data_path: Path, output_dir: Path, editor: dict | None = None,
                 judge: dict | None = None, pipeline: dict | None = None, **top) -> Path:
    """A run config; defaults: the identity editor and the constant judge (instant models)."""
    import yaml

    cfg = {
        "benchmark": {"data_path": str(data_path), "categories": CATEGORIES},
        "diffusion_model": editor or {"class_path": IDENTITY, "init_args": {"batch_size": 1}},
        "reward_model": judge or {"class_path": CONSTANT, "init_args": {"batch_size": 4}},
        "pipeline": {"output_dir": str(output_dir), **(pipeline or {})},
        "seed": 0,
        **top,
    }
    Path(path).write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return Path(path)


def report_of(run_dir: Path) -> dict[str, Any]:
    return json.loads((Path(run_dir) / "report.json").read_text(encoding="utf-8"))


# ----------------------------------------------------------------------------- measured subprocesses


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(extra or {})
    return env


def run_measured(cmd: Sequence[str], log_path: Path | None = None, sample_rss_s: float | None = None,
                 env: dict[str, str] | None = None, cwd: Path = REPO) -> dict[str, Any]:
    """Run `cmd`, return wall seconds, exit code and the child's own rusage (via os.wait4 on its pid):
    `ru_maxrss_bytes` is the kernel's high-water mark of that process's RSS (exact, not sampled).
    With `sample_rss_s`, psutil also samples the RSS every `sample_rss_s` s (a timeline, for where the peak
    happens); without it the parent just blocks in wait4, so the wall time is not disturbed."""
    log_f = open(log_path, "wb") if log_path else subprocess.DEVNULL
    try:
        t0 = time.perf_counter()
        proc = subprocess.Popen(list(cmd), cwd=str(cwd), env=env or child_env(), stdout=log_f, stderr=log_f)
        timeline: list[tuple[float, int]] = []
        if sample_rss_s:
            import psutil

            ps = psutil.Process(proc.pid)
            while True:
                pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                try:
                    timeline.append((round(time.perf_counter() - t0, 3), int(ps.memory_info().rss)))
                except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
                    pass
                time.sleep(sample_rss_s)
        else:
            _, status, ru = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here; keep Popen from waiting again
    finally:
        if log_path:
            log_f.close()
    out = {"wall_s": round(wall, 3), "exit_code": proc.returncode, "user_s": round(ru.ru_utime, 3),
           "sys_s": round(ru.ru_stime, 3), "ru_maxrss_bytes": int(ru.ru_maxrss) * 1024}
    if sample_rss_s:
        out["sampled_peak_rss_bytes"] = max((r for _, r in timeline), default=None)
        out["timeline"] = timeline
    return out


# A WHAT-IF, not the shipped code: `python -c FAST_B64_MAIN <main.py args>` runs the CLI with
# the pairs' base64 decoder (`_decode_b64` as src/data/records.py looks it up) given a fast path (the stdlib decoder with validate=True, which accepts exactly the
# strictly valid standard base64 the slow path would decode to the same bytes); anything else (data: URLs,
# whitespace, url-safe alphabet, missing padding, errors and their messages) still goes to the original.
# Used to measure the fix suggested in docs/benchmarks.md before anyone changed src/ (it landed as 90017d0,
# so today the what-if and the shipped code take the same path; kept for the history in docs/benchmarks.md).
FAST_B64_MAIN = """
import base64, binascii, sys
import src.data.records as _d
_slow = _d._decode_b64
def _fast(value):
    if isinstance(value, str) and not value.startswith("data:"):
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            pass
    return _slow(value)
_d._decode_b64 = _fast
from src.cli import main
sys.exit(main(sys.argv[1:]))
"""


def check_ok(result: dict[str, Any], what: str, log_path: Path | None = None) -> None:
    if result["exit_code"] != 0:
        tail = ""
        if log_path and Path(log_path).is_file():
            tail = "\n".join(Path(log_path).read_text(errors="replace").splitlines()[-30:])
        raise SystemExit(f"{what} failed with exit code {result['exit_code']}\n{tail}")


def mib(n: int | float | None) -> float | None:
    return None if n is None else round(n / 2**20, 1)
