"""A tiny random VSE++ (:class:`~hf_spurious.models.vsepp.VseppModel`) with its processor."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from hf_spurious.models.tiny.towers import seeded_model
from hf_spurious.models.tiny.words import DEFAULT_WORDS

__all__ = ["tiny_vsepp"]


def tiny_vsepp(
    captions: Iterable[str] | None = None,
    *,
    image_size: int = 32,
    vgg_layers: Sequence[int | str] = (8, "M", 16, "M"),
    fc_size: int = 32,
    embed_size: int = 16,
    word_dim: int = 16,
    num_layers: int = 1,
    bidirectional: bool = True,
    finetune_backbone: bool = True,
    min_count: int = 1,
    max_length: int = 32,
    seed: int = 0,
) -> tuple[Any, Any]:
    """A random tiny ``VseppModel`` (small VGG, GRU) and its processor (word tokenizer from ``captions``).

    A random test model, never a real one. ``captions`` default to the built-in word list (each word
    once, hence ``min_count=1``); VSE++ itself keeps words seen at least 4 times. The image processor
    resizes straight to ``image_size`` (no 256/224 margin) and normalises with ImageNet statistics.
    """
    from hf_spurious.models.vsepp.configuration import VseppConfig  # lazy: heavy
    from hf_spurious.models.vsepp.modeling import VseppModel
    from hf_spurious.models.vsepp.tokenizer import build_vsepp_processor, build_vsepp_tokenizer

    texts = list(DEFAULT_WORDS if captions is None else captions)
    tok = build_vsepp_tokenizer(texts, min_count=min_count, model_max_length=max_length)
    config = VseppConfig(
        embed_size=embed_size,
        vgg_layers=list(vgg_layers),
        vgg_fc_size=fc_size,
        vgg_dropout=0.0,
        finetune_backbone=finetune_backbone,
        image_size=image_size,
        vocab_size=len(tok),
        word_dim=word_dim,
        num_layers=num_layers,
        bidirectional=bidirectional,
        pad_token_id=tok.pad_token_id,
    )
    model = seeded_model(VseppModel, config, seed)
    return model, build_vsepp_processor(tok, image_size=image_size, resize=image_size)
