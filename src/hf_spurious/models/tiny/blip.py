"""Tiny random BLIP models (image-text retrieval and captioner) with their processors."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hf_spurious.models.tiny.tokenizer import build_bert_tokenizer
from hf_spurious.models.tiny.towers import seeded_model, two_towers

__all__ = ["tiny_blip_captioner", "tiny_blip_retrieval"]


def tiny_blip_retrieval(
    words: Iterable[str] | None = None,
    *,
    image_size: int = 32,
    patch_size: int = 8,
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 4,
    projection_dim: int = 16,
    max_length: int = 32,
    intermediate_size: int | None = None,
    seed: int = 0,
) -> tuple[Any, Any]:
    """A random tiny ``BlipForImageTextRetrieval`` and its ``BlipProcessor`` (a random test model)."""
    from transformers import BlipForImageTextRetrieval  # lazy: heavy optional dependency

    return _tiny_blip(
        BlipForImageTextRetrieval,
        words,
        image_size=image_size,
        patch_size=patch_size,
        hidden_size=hidden_size,
        num_layers=num_layers,
        num_heads=num_heads,
        projection_dim=projection_dim,
        max_length=max_length,
        intermediate_size=intermediate_size,
        seed=seed,
    )


def tiny_blip_captioner(
    words: Iterable[str] | None = None,
    *,
    image_size: int = 32,
    patch_size: int = 8,
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 4,
    max_length: int = 32,
    intermediate_size: int | None = None,
    seed: int = 0,
) -> tuple[Any, Any]:
    """A random tiny ``BlipForConditionalGeneration`` captioner and its ``BlipProcessor`` (a random test model).

    Its captions are random words from the vocabulary (pass ``max_new_tokens`` to ``generate``). It runs in
    ``pipeline("image-text-to-text", model=dir)`` (transformers 5 has no "image-to-text" task any more).
    """
    from transformers import BlipForConditionalGeneration  # lazy: heavy optional dependency

    return _tiny_blip(
        BlipForConditionalGeneration,
        words,
        image_size=image_size,
        patch_size=patch_size,
        hidden_size=hidden_size,
        num_layers=num_layers,
        num_heads=num_heads,
        projection_dim=hidden_size,
        max_length=max_length,
        intermediate_size=intermediate_size,
        seed=seed,
    )


def _tiny_blip(
    model_class: type,
    words: Iterable[str] | None,
    *,
    image_size: int,
    hidden_size: int,
    projection_dim: int,
    max_length: int,
    seed: int,
    **sizes: Any,
) -> tuple[Any, Any]:
    """Build ``model_class`` from a tiny BLIP config with a word-list BERT tokenizer, seeded; with its processor."""
    from transformers import (  # lazy: transformers is heavy to import
        BlipConfig,
        BlipImageProcessorPil,
        BlipProcessor,
    )  # lazy: heavy optional dependency

    tok = build_bert_tokenizer(words, model_max_length=max_length)
    towers = two_towers(
        tok,
        image_size=image_size,
        hidden_size=hidden_size,
        max_length=max_length,
        **sizes,
        encoder_hidden_size=hidden_size,
        bos_token_id=tok.bos_token_id,
        pad_token_id=tok.pad_token_id,
        sep_token_id=tok.sep_token_id,
        eos_token_id=tok.sep_token_id,
        # BLIP's default 1e-10 makes every image embed alike; random tests need distinct embeddings.
        vision_extra={"initializer_range": 0.02},
    )
    config = BlipConfig(**towers, projection_dim=projection_dim, image_text_hidden_size=projection_dim)
    image_processor = BlipImageProcessorPil(size={"height": image_size, "width": image_size})
    return seeded_model(model_class, config, seed), BlipProcessor(
        image_processor=image_processor, tokenizer=tok
    )
