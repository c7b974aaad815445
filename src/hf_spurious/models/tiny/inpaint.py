"""A tiny random Stable Diffusion inpainting pipeline (it paints noise)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hf_spurious.models.tiny.tokenizer import build_word_tokenizer
from hf_spurious.models.tiny.towers import seeded, text_ids

__all__ = ["inpaint_pipeline", "tiny_inpaint_pipeline"]


def tiny_inpaint_pipeline(
    seed: int = 0,
    *,
    words: Iterable[str] | None = None,
    max_length: int = 16,
    block_out_channels: tuple[int, int] = (16, 32),
    cross_attention_dim: int = 32,
) -> Any:
    """A random tiny ``StableDiffusionInpaintPipeline`` (a random test pipeline; it paints noise).

    UNet with 9 input channels, a 2-block VAE (scale factor 2), a tiny CLIP text encoder and a DDIM
    scheduler; it runs 2 steps on a 64x64 image in a fraction of a second.
    """
    from diffusers import DDIMScheduler  # lazy: heavy optional dependency

    tok = build_word_tokenizer(words, model_max_length=max_length)
    with seeded(seed):  # one seeded stream, drawn in this order: UNet, VAE, text encoder
        unet = _unet(block_out_channels, cross_attention_dim)
        vae = _vae(block_out_channels)
        text_encoder = _text_encoder(tok, cross_attention_dim, max_length)
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    return inpaint_pipeline(unet, vae, text_encoder, tok, scheduler)


def inpaint_pipeline(unet: Any, vae: Any, text_encoder: Any, tokenizer: Any, scheduler: Any) -> Any:
    """A ``StableDiffusionInpaintPipeline`` of these parts in eval mode, without safety checker or progress bar."""
    from diffusers import StableDiffusionInpaintPipeline  # lazy: heavy optional dependency

    pipe = StableDiffusionInpaintPipeline(
        vae=vae.eval(),
        text_encoder=text_encoder.eval(),
        tokenizer=tokenizer,
        unet=unet.eval(),
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _unet(block_out_channels: tuple[int, int], cross_attention_dim: int) -> Any:
    """A 2-block conditional UNet with 9 input channels (latents, mask, masked-image latents)."""
    from diffusers import UNet2DConditionModel  # lazy: heavy optional dependency

    return UNet2DConditionModel(
        block_out_channels=block_out_channels,
        layers_per_block=1,
        sample_size=32,
        in_channels=9,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=cross_attention_dim,
        attention_head_dim=8,
        norm_num_groups=8,
    )


def _vae(block_out_channels: tuple[int, int]) -> Any:
    """A 2-block ``AutoencoderKL`` with 4 latent channels (scale factor 2)."""
    from diffusers import AutoencoderKL  # lazy: heavy optional dependency

    return AutoencoderKL(
        block_out_channels=block_out_channels,
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        norm_num_groups=8,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        sample_size=64,
    )


def _text_encoder(tok: Any, hidden_size: int, max_length: int) -> Any:
    """A 2-layer ``CLIPTextModel`` over ``tok``'s vocabulary."""
    from transformers import CLIPTextConfig, CLIPTextModel  # lazy: heavy optional dependency

    return CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tok),
            hidden_size=hidden_size,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=max_length,
            **text_ids(tok),
        )
    )
