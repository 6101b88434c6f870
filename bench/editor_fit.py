"""Which editor placement fits a 24 / 48 / 80 / 141 GB card, from the memory plan (`--plan`) numbers.

    python bench/editor_fit.py        # prints the table of docs/gpu.md, writes bench/results/editor_fit.json

No weights and no GPU: header-only safetensors checkpoints with the real parameter counts and the real
config.json sizes (Qwen/Qwen-Image-Edit, as tests/test_memplan.py builds them) go through
`src.memplan.plan` exactly as `python main.py --config FILE --plan` does, for batch size 1 at the
pipeline's own 1024x1024 working area (`max_area: null`). From the plan's weights per component and its
activation estimate:

    none        peak = plan's estimated peak          = (all weights + activations) * 1.10 + 1 GiB
    model       peak = (largest component + activations) * 1.10 + 1 GiB     (one component on the GPU at a time)
    sequential  peak = (largest layer-group ~ 1 GiB + activations) * 1.10 + 1 GiB   (weights stream per layer)
    nf4         `quantization: bitsandbytes_4bit` of transformer + text encoder: 0.5 byte/param + ~6 % for
                block scales (bnb nf4 with double quantization); the VAE stays bf16

Host RAM: `model` and `sequential` keep all weights in host RAM (pinned by accelerate) -> RAM >= weights.
These are estimates of the same kind as the plan's (docs/memory_plan.md): not measured on a GPU.
FLUX.1 Kontext and InstructPix2Pix rows use parameter counts from their model cards with the same
formulas and an activation allowance stated in the output (the plan has no header-only copies of them).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

GIB = 1024**3
CARDS_GB = (24, 48, 80, 141)  # marketing GB = 10^9 bytes
SEQUENTIAL_GROUP = 1 * GIB
NF4_BYTES_PER_PARAM = 0.5 * 1.06

# bf16 parameters from the model cards (FLUX.1-Kontext-dev: 12B transformer, T5-XXL encoder 4.76B,
# CLIP-L 123M, VAE 84M; InstructPix2Pix = SD 1.5: UNet 860M, CLIP-L text 123M, VAE 84M) and activation
# allowances at 1024x1024 (Kontext: 8192 image tokens + 512 text tokens through 57 blocks of width 3072)
# and 512x512 (SD 1.5).
OTHERS = {
    "FLUX.1-Kontext-dev": {"params": {"transformer": 11.9e9, "text_encoder_2": 4.76e9, "text_encoder": 0.123e9,
                                      "vae": 0.084e9}, "activations": 3 * GIB, "nf4": ("transformer", "text_encoder_2")},
    "InstructPix2Pix": {"params": {"unet": 0.86e9, "text_encoder": 0.123e9, "vae": 0.084e9},
                        "activations": 2 * GIB, "nf4": ()},
}


def peak(weights: float, activations: float) -> float:
    from src.memplan import CONTEXT_BYTES, MARGIN_FRACTION

    return (weights + activations) * (1 + MARGIN_FRACTION) + CONTEXT_BYTES


def rows_for(name: str, components: dict[str, float], activations: float, nf4: tuple[str, ...],
             plan_peak: float | None = None) -> list[dict]:
    total = sum(components.values())
    rows = [{"editor": name, "placement": "offload: none", "peak_bytes": plan_peak or peak(total, activations),
             "host_bytes": 0},
            {"editor": name, "placement": "offload: model", "peak_bytes": peak(max(components.values()), activations),
             "host_bytes": total},
            {"editor": name, "placement": "offload: sequential", "peak_bytes": peak(SEQUENTIAL_GROUP, activations),
             "host_bytes": total}]
    if nf4:
        quant = {k: (v / 2 * NF4_BYTES_PER_PARAM if k in nf4 else v) for k, v in components.items()}  # v is bf16 bytes
        rows.append({"editor": name, "placement": f"quantization nf4 ({'+'.join(nf4)}), offload: none",
                     "peak_bytes": peak(sum(quant.values()), activations), "host_bytes": 0})
        rows.append({"editor": name, "placement": f"quantization nf4 ({'+'.join(nf4)}), offload: model",
                     "peak_bytes": peak(max(quant.values()), activations), "host_bytes": sum(quant.values())})
    for r in rows:
        r["fits"] = {f"{gb} GB": r["peak_bytes"] <= gb * 1e9 for gb in CARDS_GB}
    return rows


def qwen_rows() -> list[dict]:
    from src.memplan import plan
    from tests.test_memplan import make_big_editor

    with tempfile.TemporaryDirectory() as tmp:
        path = make_big_editor(Path(tmp) / "qwen-image-edit")
        spec = {"class_path": "src.models.diffusion.implementations.qwen_image_edit.QwenImageEditModel",
                "init_args": {"model_name": str(path), "dtype": "bfloat16", "device": "cuda", "max_area": None}}
        judge = {"class_path": "tests.fakes.FakeRewardModel", "init_args": {}}
        result = plan(spec, judge, gpu_free_bytes=[80 * 10**9], host_available_bytes=512 * GIB)
    entry = result["models"]["editor"]
    components = {c["name"]: c["weight_bytes"] for c in entry["components"]}
    one = next(e for e in entry["batch_estimates"] if e["batch_size"] == 1)
    activations = one.get("activation_bytes") or entry.get("activation_bytes")
    return rows_for("Qwen-Image-Edit (2509/2511 alike)", components, activations, ("transformer", "text_encoder"),
                    plan_peak=one["peak_alone_bytes"])


def main() -> int:
    rows = qwen_rows()
    for name, spec in OTHERS.items():
        rows += rows_for(name, {k: v * 2 for k, v in spec["params"].items()}, spec["activations"], spec["nf4"])
    header = "| editor | placement | est. GPU peak | host RAM held | " + " | ".join(f"{g} GB" for g in CARDS_GB) + " |"
    lines = [header, "|" + "---|" * (4 + len(CARDS_GB))]
    for r in rows:
        marks = " | ".join("yes" if r["fits"][f"{g} GB"] else "no" for g in CARDS_GB)
        lines.append(f"| {r['editor']} | {r['placement']} | {r['peak_bytes'] / GIB:.1f} GiB | "
                     f"{r['host_bytes'] / GIB:.1f} GiB | {marks} |")
    print("\n".join(lines))
    out = REPO / "bench" / "results" / "editor_fit.json"
    out.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
