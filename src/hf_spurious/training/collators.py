"""Collators: image–caption pairs (retrieval, D ∪ D′) and labelled images with attributes (classification).

Rows are dicts (a ``datasets.Dataset`` row or a plain dict). Images may be a PIL image, a file path,
an ``{"bytes": ..., "path": ...}`` dict (the ``datasets.Image`` storage form) or an ``HxWx3`` uint8 array.
Rows that carry cached features (``image_features`` / ``text_features``, see
:mod:`hf_spurious.training.features`) are stacked instead of being processed, and so are rows that carry
preprocessed ``pixel_values`` (the image processor's output for one image, e.g. from ``dataset.map``):
only their captions are tokenized.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from hf_spurious.images import load_rgb
from hf_spurious.records import group_id

MISSING = -1  # attribute value of an example without an attribute label


def _stack(rows: Sequence[dict[str, Any]], key: str) -> torch.Tensor:
    return torch.stack([torch.as_tensor(np.asarray(r[key]), dtype=torch.float32) for r in rows])


def _int_column(rows: Sequence[dict[str, Any]], key: str, default: int | None = None) -> torch.Tensor:
    values = []
    for i, r in enumerate(rows):
        v = r.get(key, default)
        if v is None:
            if default is None:
                raise KeyError(f"row {i} has no {key!r}; every classification example needs it")
            v = default
        values.append(int(v))
    return torch.tensor(values, dtype=torch.long)


def _cached_features(rows: Sequence[dict[str, Any]], keys: Sequence[str]) -> dict[str, torch.Tensor] | None:
    """The batch's cached feature columns ``keys`` stacked, or None when its rows hold images."""
    if not rows:
        raise ValueError("empty batch")
    if "image_features" not in rows[0]:
        return None
    return {key: _stack(rows, key) for key in keys}


@dataclass
class RetrievalCollator:
    """Image–caption pairs -> ``pixel_values``, ``input_ids``, ``attention_mask``, ``is_counterfactual``.

    Columns: ``image`` (or preprocessed ``pixel_values``) and ``caption``, or cached ``image_features`` and
    ``text_features``; optional ``is_counterfactual`` (bool, D′ rows) and ``image_id`` (for eval Recall@K;
    mapped to ``image_index`` by the trainer). ``processor`` is the model's processor (its ``tokenizer`` handles the captions).
    """

    processor: Any = None
    max_length: int | None = None
    image_key: str = "image"
    caption_key: str = "caption"

    def __call__(self, rows: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        out = _cached_features(rows, ("image_features", "text_features"))
        if out is None:
            out = self._encode(rows)
        out["is_counterfactual"] = torch.tensor([bool(r.get("is_counterfactual", False)) for r in rows])
        if "image_index" in rows[0]:
            out["image_index"] = _int_column(rows, "image_index")
        return out

    def _encode(self, rows: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Tokenised captions and pixel values (preprocessed rows are stacked, raw images processed)."""
        if self.processor is None:
            raise ValueError("RetrievalCollator needs a processor for raw images and captions")
        text = {
            "text": [str(r[self.caption_key]) for r in rows],
            "return_tensors": "pt",
            "padding": True,
            "truncation": True,
            "max_length": self.max_length,
        }
        if "pixel_values" in rows[0]:
            raw = [i for i, r in enumerate(rows) if "pixel_values" not in r]
            if raw:
                raise ValueError(
                    f"row {raw[0]} has no 'pixel_values' but row 0 has: a batch must be all preprocessed "
                    "images or all raw images"
                )
            enc = dict(getattr(self.processor, "tokenizer", self.processor)(**text))
            enc["pixel_values"] = _stack(rows, "pixel_values")
        else:
            images = [load_rgb(r[self.image_key], f"row {i}") for i, r in enumerate(rows)]
            enc = self.processor(images=images, **text)
        return {key: enc[key] for key in ("pixel_values", "input_ids", "attention_mask")}


@dataclass
class ClassificationCollator:
    """Labelled images -> ``pixel_values`` (or ``image_features``), ``labels``, ``attributes``, ``groups``.

    Columns: ``image`` (or cached ``image_features``), ``label``, optional ``attribute`` (missing -> -1;
    an attribute loss then raises naming the example) and optional ``group`` (default
    :func:`hf_spurious.records.group_id`, -1 when the attribute is missing).
    """

    processor: Any = None
    num_attributes: int = 2
    image_key: str = "image"

    def __call__(self, rows: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        out = _cached_features(rows, ("image_features",))
        if out is None:
            if self.processor is None:
                raise ValueError("ClassificationCollator needs a processor for raw images")
            images = [load_rgb(r[self.image_key], f"row {i}") for i, r in enumerate(rows)]
            out = {"pixel_values": self.processor(images=images, return_tensors="pt")["pixel_values"]}
        labels = _int_column(rows, "label")
        attributes = _int_column(rows, "attribute", default=MISSING)
        if "group" in rows[0]:
            groups = _int_column(rows, "group", default=MISSING)
        else:
            groups = torch.tensor(
                [
                    group_id(y, a, self.num_attributes) if a >= 0 else MISSING
                    for y, a in zip(labels.tolist(), attributes.tolist())
                ],
                dtype=torch.long,
            )
        out.update(labels=labels, attributes=attributes, groups=groups)
        return out
