"""Tiny random-weight `FluxKontextPipeline` checkpoint (real architecture, toy sizes).

Real classes, built from configs with `torch.manual_seed(0)` before each component, float32 weights,
written with `pipe.save_pretrained` (safetensors) and laid out like the hub checkpoint
`black-forest-labs/FLUX.1-Kontext-dev`:

    model_index.json   transformer/ vae/ text_encoder/ tokenizer/ text_encoder_2/ tokenizer_2/ scheduler/
                       (image_encoder / feature_extractor: null, as in the real one)

Kept from the real checkpoint: the latent layout (an `AutoencoderKL` with 16 latent channels, four levels
= 8x spatial compression, no quant convs, FLUX's shift/scaling factors; a `FluxTransformer2DModel` with
in_channels 64 = 16 latent channels packed 2x2, patch size 1, guidance embedding on, as Kontext-dev is
guidance-distilled), the two text encoders (CLIP-L -> pooled projection, T5 v1.1 encoder with gated-GELU
-> joint attention), the tokenizer classes (`CLIPTokenizer`, 77 tokens; `T5TokenizerFast`, 512 tokens)
and the real scheduler config (FlowMatchEuler, dynamic shifting). Shrunk: widths, depths (1 double + 1
single block, 2-layer encoders), head counts and vocabularies (CLIP: byte alphabet, no merges; T5: a
~200-piece character-level Unigram model built with `tokenizers`, unknown characters -> <unk>).
"""

from __future__ import annotations

import string
from pathlib import Path

from src.models.tiny._common import float32_weights, tiny_autoencoder_kl, update_model_index

T5_D_MODEL = 32
T5_MAX_LENGTH = 512
TRANSFORMER_HEADS = 2
TRANSFORMER_HEAD_DIM = 16
AXES_DIMS_ROPE = (4, 6, 6)  # must sum to the head dim; real (16, 56, 56) for 128
LATENT_CHANNELS = 16

# black-forest-labs/FLUX.1-Kontext-dev scheduler/scheduler_config.json
SCHEDULER_CONFIG = {
    "base_image_seq_len": 256,
    "base_shift": 0.5,
    "max_image_seq_len": 4096,
    "max_shift": 1.15,
    "num_train_timesteps": 1000,
    "shift": 3.0,
    "use_dynamic_shifting": True,
}


def build_t5_tokenizer(model_max_length: int = T5_MAX_LENGTH):
    """A `T5TokenizerFast` (tokenizers Unigram backend, SentencePiece-style `▁` word boundaries).

    Pieces: <pad> 0, </s> 1, <unk> 2 (the real ids), then every printable ASCII character with and
    without the word-start marker. No <extra_id_*> sentinels (the text encoder never sees them).
    """
    from transformers import T5TokenizerFast

    pieces: list[tuple[str, float]] = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    for ch in string.ascii_letters + string.digits + string.punctuation:
        pieces.append(("▁" + ch, -3.0))
        pieces.append((ch, -3.5))
    return T5TokenizerFast(vocab=pieces, extra_ids=0, model_max_length=model_max_length)


def _t5_encoder(tokenizer):
    import torch
    from transformers import T5Config, T5EncoderModel

    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=T5_D_MODEL,
        d_kv=8,
        d_ff=2 * T5_D_MODEL,
        num_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=32,
        feed_forward_proj="gated-gelu",  # T5 v1.1 (the XXL encoder FLUX uses)
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    return T5EncoderModel(config).eval()


@float32_weights
def build(out_dir: Path) -> None:
    """Write the tiny checkpoint into `out_dir` (an existing, empty directory)."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxKontextPipeline, FluxTransformer2DModel

    from src.models.tiny.instruct_pix2pix import CLIP_HIDDEN, build_clip_text_encoder, build_clip_tokenizer

    torch.manual_seed(0)
    # Real: 19 double + 38 single blocks, 24 heads x 128, joint_attention_dim 4096, pooled 768.
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=LATENT_CHANNELS * 4,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=TRANSFORMER_HEAD_DIM,
        num_attention_heads=TRANSFORMER_HEADS,
        joint_attention_dim=T5_D_MODEL,
        pooled_projection_dim=CLIP_HIDDEN,
        guidance_embeds=True,
        axes_dims_rope=AXES_DIMS_ROPE,
    )

    vae = tiny_autoencoder_kl(  # seeds itself
        sample_size=1024,
        latent_channels=LATENT_CHANNELS,
        use_quant_conv=False,
        use_post_quant_conv=False,
        shift_factor=0.1159,
        scaling_factor=0.3611,
    )

    scheduler = FlowMatchEulerDiscreteScheduler(**SCHEDULER_CONFIG)
    tokenizer = build_clip_tokenizer()
    text_encoder = build_clip_text_encoder(tokenizer)  # seeds itself
    tokenizer_2 = build_t5_tokenizer()
    text_encoder_2 = _t5_encoder(tokenizer_2)  # seeds itself

    pipe = FluxKontextPipeline(
        scheduler=scheduler,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer_2,
        transformer=transformer,
        image_encoder=None,
        feature_extractor=None,
    )
    pipe.save_pretrained(out_dir, safe_serialization=True)

    # transformers 5 saves the fast T5 tokenizer under its unified name `T5Tokenizer`; the real
    # model_index.json says `T5TokenizerFast` (an alias in transformers 5), so write what the hub has.
    update_model_index(out_dir, tokenizer_2=["transformers", "T5TokenizerFast"])
