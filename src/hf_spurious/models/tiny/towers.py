"""What every tiny model builder shares: size checks, tower configs, token ids and seeded construction."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

__all__ = ["check_sizes", "seeded", "seeded_model", "text_ids", "tower", "two_towers"]


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Deterministic weight initialisation without touching the caller's global RNG state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def seeded_model(model_class: Any, config: Any, seed: int) -> nn.Module:
    """``model_class(config)`` initialised under :func:`seeded` (``seed``), in eval mode."""
    with seeded(seed):
        model = model_class(config)
    return model.eval()


def check_sizes(image_size: int, patch_size: int, hidden_size: int, num_heads: int) -> None:
    """Raise ``ValueError`` unless patches tile the image and heads divide the hidden size."""
    if image_size % patch_size:
        raise ValueError(f"image_size={image_size} must be a multiple of patch_size={patch_size}")
    if hidden_size % num_heads:
        raise ValueError(f"hidden_size={hidden_size} must be a multiple of num_heads={num_heads}")


def text_ids(tok: Any) -> dict[str, int]:
    """The tokenizer's bos / eos / pad ids as text-config keywords."""
    return {
        "bos_token_id": tok.bos_token_id,
        "eos_token_id": tok.eos_token_id,
        "pad_token_id": tok.pad_token_id,
    }


def tower(
    hidden_size: int, num_layers: int, num_heads: int, intermediate_size: int | None, **extra: Any
) -> dict:
    """One transformer tower's config (text or vision): sizes, MLP width 4 x hidden unless given, extras."""
    return dict(
        hidden_size=hidden_size,
        intermediate_size=intermediate_size or 4 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        **extra,
    )


def two_towers(
    tok: Any,
    *,
    image_size: int,
    patch_size: int,
    hidden_size: int,
    num_layers: int,
    num_heads: int,
    max_length: int,
    intermediate_size: int | None,
    text_hidden_size: int | None = None,
    text_num_layers: int | None = None,
    vision_extra: dict[str, Any] | None = None,
    **text_extra: Any,
) -> dict[str, dict]:
    """``text_config`` and ``vision_config`` of a two-tower model (CLIP, BLIP, OWL-ViT), sizes checked.

    The text tower reads ``tok``'s vocabulary up to ``max_length`` positions; its hidden size and depth
    default to the vision tower's. ``text_extra`` / ``vision_extra`` add keys to one tower.
    """
    check_sizes(image_size, patch_size, hidden_size, num_heads)
    t_hidden = text_hidden_size or hidden_size
    check_sizes(image_size, patch_size, t_hidden, num_heads)
    return {
        "text_config": tower(
            t_hidden,
            text_num_layers or num_layers,
            num_heads,
            intermediate_size,
            vocab_size=len(tok),
            max_position_embeddings=max_length,
            **text_extra,
        ),
        "vision_config": tower(
            hidden_size,
            num_layers,
            num_heads,
            intermediate_size,
            image_size=image_size,
            patch_size=patch_size,
            **(vision_extra or {}),
        ),
    }
