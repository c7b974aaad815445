"""Discovery of candidate spurious attributes: the accuracy-discrepancy (δ) ranking of spec §2.7.

Per image: is the classifier right (zero-shot with class prompts)? which attributes are present
(an open-vocabulary detector, OWL-ViT via transformers, query ``"a photo of a {word}"``, post-processed
score ≥ 0.1; or given attribute columns such as Waterbirds ``place``)? Then, per class, attributes with at
least ``min_detections`` images and MI(detect, error) > 0, top 5 per class by MI, all sorted by
δ = acc(s = 1) − acc(s = 0) (``hf_spurious.metrics.rank_spurious_attributes``).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from hf_spurious.images import load_rgb
from hf_spurious.metrics import rank_spurious_attributes
from hf_spurious.text.templates import check_template

__all__ = [
    "DEFAULT_QUERY_TEMPLATE",
    "attribute_column_detections",
    "detect_attributes",
    "discover_spurious_attributes",
    "load_detector",
    "most_confused_classes",
]

DEFAULT_QUERY_TEMPLATE = "a photo of a {}"


def load_detector(model_id_or_dir: str | os.PathLike) -> tuple[Any, Any]:
    """An open-vocabulary detector (OWL-ViT / OWLv2) and its processor, from a Hub id or a local folder."""
    from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor  # lazy: transformers

    model = AutoModelForZeroShotObjectDetection.from_pretrained(str(model_id_or_dir)).eval()
    return model, AutoProcessor.from_pretrained(str(model_id_or_dir))


def detect_attributes(
    model: Any,
    processor: Any,
    images: Sequence[Any],
    words: Sequence[str],
    *,
    threshold: float = 0.1,
    template: str = DEFAULT_QUERY_TEMPLATE,
    batch_size: int = 8,
    words_per_pass: int = 64,
) -> np.ndarray:
    """(N, A) bool: word a is detected in image i when a box labelled a scores ≥ ``threshold``.

    Identical to OWL-ViT's ``post_process_object_detection`` with all words as queries at once (each box
    is labelled with its best query, score = sigmoid of that logit), but the words are fed in passes of
    ``words_per_pass`` and the per-box best query is tracked across passes, so any vocabulary size fits.
    """
    if not words:
        raise ValueError("no attribute words to detect")
    check_template(template, "query template")
    if not 0 <= threshold <= 1:
        raise ValueError(f"threshold must lie in [0, 1], got {threshold}")
    queries = [template.format(w) for w in words]
    out = np.zeros((len(images), len(words)), dtype=bool)
    for start in tqdm(range(0, len(images), batch_size), desc="detect attributes", unit="batch"):
        batch = [load_rgb(x) for x in images[start : start + batch_size]]
        best_logit: torch.Tensor | None = None
        best_word: torch.Tensor | None = None
        for w0 in range(0, len(queries), words_per_pass):
            chunk = queries[w0 : w0 + words_per_pass]
            inputs = processor(text=[chunk] * len(batch), images=batch, return_tensors="pt")
            with torch.no_grad():
                logits = model(**inputs).logits  # (B, boxes, len(chunk))
            val, arg = logits.max(dim=-1)
            arg = arg + w0
            if best_logit is None or best_word is None:
                best_logit, best_word = val, arg
            else:
                better = val > best_logit  # strict: ties keep the earlier word, as argmax does
                best_logit = torch.where(better, val, best_logit)
                best_word = torch.where(better, arg, best_word)
        assert best_logit is not None and best_word is not None
        keep = torch.sigmoid(best_logit) >= threshold  # (B, boxes)
        for b in range(len(batch)):
            out[start + b, best_word[b][keep[b]].unique().numpy()] = True
    return out


def most_confused_classes(labels: Sequence[int], logits: np.ndarray) -> dict[int, int]:
    """For each class in ``labels``: the class that most often scores highest among the *other* classes on
    its images (the "confused class" of Yang et al.'s Table 3; ties go to the lower index)."""
    labels = np.asarray(labels, dtype=np.int64)
    shape = np.shape(logits)
    if len(shape) != 2 or shape[0] != labels.shape[0] or shape[1] < 2:
        raise ValueError(f"logits must be (N, C >= 2) for {labels.shape[0]} labels, got shape {shape}")
    other = np.empty(labels.shape[0], dtype=np.int64)
    for start in range(0, labels.shape[0], 4096):  # a copy of one block at a time, not of all the logits
        block = np.array(logits[start : start + 4096], dtype=np.float64)
        block[np.arange(block.shape[0]), labels[start : start + 4096]] = -np.inf
        other[start : start + 4096] = block.argmax(axis=1)
    return {
        int(c): int(np.bincount(other[labels == c], minlength=shape[1]).argmax()) for c in np.unique(labels)
    }


def attribute_column_detections(
    values: Sequence[Any], column: str, value_names: dict[Any, str] | None = None
) -> tuple[np.ndarray, list[str]]:
    """One-hot detections from a given attribute column: (N, V) bool and names ``"column=value"``."""
    if len(values) == 0:
        raise ValueError(f"attribute column {column!r} is empty")
    uniq = sorted(set(values), key=lambda v: (str(type(v)), v))
    names = [f"{column}={value_names.get(v, v) if value_names else v}" for v in uniq]
    index = {v: i for i, v in enumerate(uniq)}
    det = np.zeros((len(values), len(uniq)), dtype=bool)
    det[np.arange(len(values)), [index[v] for v in values]] = True
    return det, names


def read_metadata_column(data_dir: str | os.PathLike, column: str, image_ids: Sequence[str]) -> list[str]:
    """Values of ``column`` in ``<data_dir>/metadata.csv`` (WILDS layout), in the order of ``image_ids``."""
    path = Path(data_dir) / "metadata.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found; --attribute-column needs a WILDS-layout metadata.csv")
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or column not in rows[0]:
        have = sorted(rows[0]) if rows else []
        raise ValueError(f"metadata.csv has no column {column!r}; columns: {have}")
    by_id = {str(r.get("img_id", i)): r[column] for i, r in enumerate(rows)}
    missing = [i for i in image_ids if str(i) not in by_id]
    if missing:
        raise ValueError(f"image {missing[0]!r} is not in metadata.csv")
    return [by_id[str(i)] for i in image_ids]


def discover_spurious_attributes(
    class_ids: Sequence[int],
    predictions: Sequence[int],
    detections: np.ndarray,
    attribute_names: Sequence[str],
    class_names: Sequence[str] | None = None,
    *,
    min_detections: int = 10,
    top_per_class: int = 5,
) -> list[dict[str, Any]]:
    """δ ranking (highest first) from labels, predictions and an (N, A) detection matrix."""
    labels = np.asarray(class_ids, dtype=np.int64)
    preds = np.asarray(predictions, dtype=np.int64)
    if labels.shape != preds.shape:
        raise ValueError(f"{len(preds)} predictions for {len(labels)} labels")
    return rank_spurious_attributes(
        labels,
        preds == labels,
        np.asarray(detections, dtype=bool),
        list(attribute_names),
        class_names=list(class_names) if class_names is not None else None,
        min_detections=min_detections,
        top_per_class=top_per_class,
    )
