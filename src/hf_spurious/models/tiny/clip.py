"""A tiny random ``CLIPModel`` with its processor."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hf_spurious.models.tiny.tokenizer import build_word_tokenizer
from hf_spurious.models.tiny.towers import check_sizes, seeded_model, text_ids, two_towers

__all__ = ["tiny_clip"]


def tiny_clip(
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
    text_hidden_size: int | None = None,
    text_num_layers: int | None = None,
    seed: int = 0,
) -> tuple[Any, Any]:
    """A random tiny ``CLIPModel`` and its ``CLIPProcessor`` (PIL image processor, word tokenizer).

    A random test model, never a real one. Sizes are parameters (the demo uses e.g. 64 px, patch 8,
    hidden 128, 4 layers). ``text_hidden_size`` / ``text_num_layers`` default to the vision sizes and
    ``intermediate_size`` to 4 × hidden. The text config's bos/eos/pad ids are the tokenizer's; eos is
    never 2, so CLIP pools the text at the first eos token.
    """
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPProcessor  # lazy: heavy

    check_sizes(image_size, patch_size, hidden_size, num_heads)
    tok = build_word_tokenizer(words, model_max_length=max_length)
    ids = text_ids(tok)
    if ids["eos_token_id"] == 2:  # pragma: no cover - impossible with the byte base vocabulary
        raise AssertionError("eos id 2 would turn on CLIP's legacy argmax pooling")
    towers = two_towers(
        tok,
        image_size=image_size,
        patch_size=patch_size,
        hidden_size=hidden_size,
        num_layers=num_layers,
        num_heads=num_heads,
        max_length=max_length,
        intermediate_size=intermediate_size,
        text_hidden_size=text_hidden_size,
        text_num_layers=text_num_layers,
        **ids,
    )
    model = seeded_model(CLIPModel, CLIPConfig(**towers, projection_dim=projection_dim), seed)
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    return model, CLIPProcessor(image_processor=image_processor, tokenizer=tok)
