"""A tiny random ResNet CLIP (:class:`~hf_spurious.models.clip_resnet.ClipResNetModel`) with its processor."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from hf_spurious.models.tiny.tokenizer import build_word_tokenizer
from hf_spurious.models.tiny.towers import seeded_model, text_ids, tower

__all__ = ["tiny_clip_resnet"]


def tiny_clip_resnet(
    words: Iterable[str] | None = None,
    *,
    image_size: int = 64,
    width: int = 8,
    layers: Sequence[int] = (1, 1, 1, 1),
    heads: int = 4,
    projection_dim: int = 16,
    text_hidden_size: int = 32,
    text_num_layers: int = 2,
    text_num_heads: int = 4,
    max_length: int = 32,
    seed: int = 0,
) -> tuple[Any, Any]:
    """A random tiny ``ClipResNetModel`` and its ``CLIPProcessor`` (PIL image processor, word tokenizer).

    A random test model, never a real one: the real geometry is ``resnet_clip_config("rn50")``. At the
    default 64 px the last-stage grid is 2 x 2 of ``width * 32`` channels.
    """
    from transformers import CLIPImageProcessorPil, CLIPProcessor  # lazy: heavy

    from hf_spurious.models.clip_resnet import ClipResNetConfig, ClipResNetModel  # lazy: heavy

    tok = build_word_tokenizer(words, model_max_length=max_length)
    text = tower(
        text_hidden_size,
        text_num_layers,
        text_num_heads,
        None,
        vocab_size=len(tok),
        max_position_embeddings=max_length,
        **text_ids(tok),
    )
    vision = dict(
        layers=list(layers), width=width, heads=heads, image_size=image_size, output_dim=projection_dim
    )
    config = ClipResNetConfig(text_config=text, vision_config=vision, projection_dim=projection_dim)
    model = seeded_model(ClipResNetModel, config, seed)
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    return model, CLIPProcessor(image_processor=image_processor, tokenizer=tok)
