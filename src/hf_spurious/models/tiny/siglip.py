"""Tiny random ``SiglipModel`` and ``Siglip2Model`` (NaFlex) with their processors, built offline.

Random test models, never real checkpoints. The logit scale and bias start at SigLIP's published
initialisation (Zhai et al., 2023: ``t = log 10``, ``b = -10``) rather than transformers' zeros, so a tiny
model trained from scratch starts where the paper's do.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

from hf_spurious.models.tiny.siglip_tokenizer import build_siglip2_tokenizer, build_siglip_tokenizer
from hf_spurious.models.tiny.towers import check_sizes, seeded_model, text_ids, tower

__all__ = ["SIGLIP_INIT", "tiny_siglip", "tiny_siglip2"]

SIGLIP_INIT = (math.log(10.0), -10.0)
"""``(logit_scale, logit_bias)`` at initialisation in the SigLIP paper (scale is the log of t = 10)."""


def _towers(
    tok: Any,
    *,
    hidden_size: int,
    num_layers: int,
    num_heads: int,
    max_length: int,
    intermediate_size: int | None,
    vision: dict[str, Any],
) -> dict[str, dict]:
    ids = text_ids(tok)
    text = tower(
        hidden_size,
        num_layers,
        num_heads,
        intermediate_size,
        vocab_size=len(tok),
        max_position_embeddings=max_length,
        **ids,
    )
    return {
        "text_config": text,
        "vision_config": tower(hidden_size, num_layers, num_heads, intermediate_size, **vision),
    }


def _init_scale_bias(model: Any) -> Any:
    with torch.no_grad():
        model.logit_scale.fill_(SIGLIP_INIT[0])
        model.logit_bias.fill_(SIGLIP_INIT[1])
    return model


def tiny_siglip(
    words: Iterable[str] | None = None,
    *,
    image_size: int = 32,
    patch_size: int = 8,
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 4,
    max_length: int = 64,
    intermediate_size: int | None = None,
    seed: int = 0,
) -> tuple[Any, Any]:
    """A random tiny ``SiglipModel`` and its ``SiglipProcessor`` (PIL image processor, T5-style tokenizer).

    The joint space is ``hidden_size`` wide (SigLIP has no image projection; the text head maps to it).
    Texts are padded to ``max_length`` (64, SigLIP's) by the adapter.
    """
    from transformers import (
        SiglipConfig,
        SiglipImageProcessorPil,
        SiglipModel,
        SiglipProcessor,
    )  # lazy: heavy

    check_sizes(image_size, patch_size, hidden_size, num_heads)
    tok = build_siglip_tokenizer(words, model_max_length=max_length)
    towers = _towers(
        tok,
        hidden_size=hidden_size,
        num_layers=num_layers,
        num_heads=num_heads,
        max_length=max_length,
        intermediate_size=intermediate_size,
        vision={"image_size": image_size, "patch_size": patch_size},
    )
    model = _init_scale_bias(seeded_model(SiglipModel, SiglipConfig(**towers), seed))
    image_processor = SiglipImageProcessorPil(size={"height": image_size, "width": image_size})
    return model, SiglipProcessor(image_processor=image_processor, tokenizer=tok)


def tiny_siglip2(
    words: Iterable[str] | None = None,
    *,
    patch_size: int = 8,
    max_num_patches: int = 16,
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 4,
    max_length: int = 64,
    intermediate_size: int | None = None,
    seed: int = 0,
) -> tuple[Any, Any]:
    """A random tiny ``Siglip2Model`` (NaFlex) and its ``Siglip2Processor`` (Gemma-style tokenizer).

    Images keep their aspect ratio and become at most ``max_num_patches`` patches of ``patch_size``
    pixels (16 patches of 8 px: 32 x 32 for a square image); the position-embedding grid holds
    ``max_num_patches`` entries (it must be a square number) and is interpolated to each image's grid.
    """
    from transformers import (  # lazy: heavy optional dependency
        Siglip2Config,
        Siglip2ImageProcessorPil,
        Siglip2Model,
        Siglip2Processor,
    )

    side = math.isqrt(max_num_patches)
    if side * side != max_num_patches:
        raise ValueError(
            f"max_num_patches={max_num_patches} must be a square number (a square position grid)"
        )
    check_sizes(patch_size * side, patch_size, hidden_size, num_heads)
    tok = build_siglip2_tokenizer(words, model_max_length=max_length)
    towers = _towers(
        tok,
        hidden_size=hidden_size,
        num_layers=num_layers,
        num_heads=num_heads,
        max_length=max_length,
        intermediate_size=intermediate_size,
        vision={"patch_size": patch_size, "num_patches": max_num_patches},
    )
    model = _init_scale_bias(seeded_model(Siglip2Model, Siglip2Config(**towers), seed))
    image_processor = Siglip2ImageProcessorPil(patch_size=patch_size, max_num_patches=max_num_patches)
    return model, Siglip2Processor(image_processor=image_processor, tokenizer=tok)
