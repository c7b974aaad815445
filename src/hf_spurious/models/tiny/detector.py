"""A tiny random ``OwlViTForObjectDetection`` (open-vocabulary detector) with its processor."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hf_spurious.models.tiny.tokenizer import build_word_tokenizer
from hf_spurious.models.tiny.towers import check_sizes, seeded_model, text_ids, two_towers

__all__ = ["tiny_owlvit"]


def tiny_owlvit(
    words: Iterable[str] | None = None,
    *,
    image_size: int = 32,
    patch_size: int = 8,
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 4,
    max_length: int = 16,
    intermediate_size: int | None = None,
    seed: int = 0,
) -> tuple[Any, Any]:
    """A random tiny ``OwlViTForObjectDetection`` and its ``OwlViTProcessor`` (a random test model).

    Its boxes are meaningless; it exercises the detection and post-processing code paths. OWL-ViT's
    class head needs the projection size to equal the text hidden size, so both are ``hidden_size``.
    """
    from transformers import (  # lazy: heavy optional dependency
        OwlViTConfig,
        OwlViTForObjectDetection,
        OwlViTImageProcessorPil,
        OwlViTProcessor,
    )

    check_sizes(image_size, patch_size, hidden_size, num_heads)
    tok = build_word_tokenizer(words, model_max_length=max_length)
    towers = two_towers(
        tok,
        image_size=image_size,
        patch_size=patch_size,
        hidden_size=hidden_size,
        num_layers=num_layers,
        num_heads=num_heads,
        max_length=max_length,
        intermediate_size=intermediate_size,
        **text_ids(tok),
    )
    model = seeded_model(OwlViTForObjectDetection, OwlViTConfig(**towers, projection_dim=hidden_size), seed)
    image_processor = OwlViTImageProcessorPil(
        size={"height": image_size, "width": image_size},
        crop_size={"height": image_size, "width": image_size},
    )
    return model, OwlViTProcessor(image_processor=image_processor, tokenizer=tok)
