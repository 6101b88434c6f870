"""Tiny random-weight `StableDiffusionInstructPix2PixPipeline` checkpoint (real architecture, toy sizes).

Real classes, built from configs with `torch.manual_seed(0)` before each component, float32 weights,
written with `pipe.save_pretrained` (safetensors) and laid out like the hub checkpoint
`timbrooks/instruct-pix2pix`:

    model_index.json   unet/ vae/ text_encoder/ tokenizer/ scheduler/   (safety_checker: null)

Kept from the real checkpoint (Stable Diffusion 1.5 layout): a UNet with 8 input channels (4 noise
latents + 4 image latents) and 4 output channels, four resolution levels (three cross-attention down
blocks + one plain), an `AutoencoderKL` with 4 latent channels, four levels (8x spatial compression,
`vae_scale_factor` 8) and scaling factor 0.18215, a `CLIPTextModel` + `CLIPTokenizer` (77 tokens), and
the SD scheduler betas. Shrunk: widths (8-32), layers per block (1), text encoder depth (2) and the
vocabulary (CLIP's byte-level BPE alphabet with no merges, 514 tokens; see `build_clip_tokenizer`).

The safety checker and its feature extractor are left out (`requires_safety_checker: false`), as in
the usual research usage `from_pretrained(..., safety_checker=None)`. The scheduler saved is a
`PNDMScheduler` with the SD 1.5 config; `InstructPix2PixModel` swaps in the model card's
`EulerAncestralDiscreteScheduler` at load time (its `scheduler` init_arg).
"""

from __future__ import annotations

from pathlib import Path

from src.models.tiny._common import float32_weights, tiny_autoencoder_kl

CLIP_HIDDEN = 32
CLIP_MAX_LENGTH = 77  # CLIP's context length, as in every SD / FLUX checkpoint

# Stable Diffusion 1.x betas (shared by the real checkpoint's scheduler configs).
SD_SCHEDULER_CONFIG = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "skip_prk_steps": True,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "prediction_type": "epsilon",
}


def build_clip_tokenizer(model_max_length: int = CLIP_MAX_LENGTH):
    """A `transformers.CLIPTokenizer` over CLIP's byte alphabet with no merges (514 tokens).

    Same class, pre-tokenization (lowercasing, byte-level, `</w>` end-of-word suffix) and special tokens
    as the real tokenizer; every byte is a token, so any text (Chinese included) encodes without <unk>.
    """
    from transformers import CLIPTokenizer

    from src.models.tiny.tokenizer import _bytes_to_unicode

    chars = sorted(_bytes_to_unicode().values(), key=ord)
    vocab: dict[str, int] = {}
    for ch in chars:
        vocab[ch] = len(vocab)
    for ch in chars:
        vocab[ch + "</w>"] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=model_max_length)


def build_clip_text_encoder(tokenizer, hidden: int = CLIP_HIDDEN):
    """A 2-layer `CLIPTextModel` whose special token ids match `tokenizer` (seeded, eval mode)."""
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=CLIP_MAX_LENGTH,
        projection_dim=hidden,
        hidden_act="quick_gelu",  # CLIP ViT-L/14's activation
        bos_token_id=tokenizer.convert_tokens_to_ids("<|startoftext|>"),
        eos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        pad_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
    )
    torch.manual_seed(0)
    return CLIPTextModel(config).eval()


@float32_weights
def build(out_dir: Path) -> None:
    """Write the tiny checkpoint into `out_dir` (an existing, empty directory)."""
    import torch
    from diffusers import PNDMScheduler, StableDiffusionInstructPix2PixPipeline, UNet2DConditionModel

    torch.manual_seed(0)
    # Real: block_out_channels (320, 640, 1280, 1280), layers_per_block 2, cross_attention_dim 768, 8 heads.
    unet = UNet2DConditionModel(
        sample_size=64,
        in_channels=8,
        out_channels=4,
        block_out_channels=(8, 16, 16, 32),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=CLIP_HIDDEN,
        attention_head_dim=2,
        norm_num_groups=4,
    )

    vae = tiny_autoencoder_kl(sample_size=256, latent_channels=4, scaling_factor=0.18215)  # seeds itself

    scheduler = PNDMScheduler(**SD_SCHEDULER_CONFIG)
    tokenizer = build_clip_tokenizer()
    text_encoder = build_clip_text_encoder(tokenizer)

    pipe = StableDiffusionInstructPix2PixPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        image_encoder=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(out_dir, safe_serialization=True)
