"""The prompt groups of the classification losses: templates x class names, and attribute prompts."""

from __future__ import annotations

from typing import Any

import torch

from hf_spurious.models.adapters import VisionLanguageAdapter

from .config import SpuriousTrainingArguments
from .features import prompt_features

__all__ = ["prompt_inputs", "prompt_texts"]


def prompt_texts(args: SpuriousTrainingArguments) -> dict[str, list[str]]:
    """Prompt groups, each template-major (row ``r`` = template ``r // n``, name ``r % n``): ``"class"``
    (every class name), ``"attribute"`` (attribute names, for L_ls) and ``"attribute_generic"``
    (attribute prompts, for the cross-entropy L_vs); only the groups an active term needs."""
    texts: dict[str, list[str]] = {}
    if args.task != "classification":
        return texts
    texts["class"] = [t.format(c) for t in args.templates for c in args.class_names]
    if args.text_spurious_weight > 0:
        texts["attribute"] = [t.format(a) for t in args.templates for a in args.attribute_names]
    if args.image_spurious_weight > 0 and args.spurious_form == "cross_entropy":
        texts["attribute_generic"] = [t.format(a) for t in args.templates for a in args.attribute_prompts]
    return texts


def prompt_inputs(
    adapter: VisionLanguageAdapter, args: SpuriousTrainingArguments, processor: Any
) -> dict[str, dict[str, torch.Tensor]]:
    """Per prompt group, the model inputs of its texts: frozen pooled ``features`` when training on
    cached features, else ``input_ids`` / ``attention_mask`` (the text encoder runs every step)."""
    tokenizer = getattr(processor, "tokenizer", processor)
    out: dict[str, dict[str, torch.Tensor]] = {}
    for name, texts in prompt_texts(args).items():
        if args.cached:
            out[name] = {"features": prompt_features(adapter, tokenizer, texts)}
        else:
            enc = tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
            out[name] = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
    return out
