"""Classification runner: zero-shot (or fine-tuned) CLIP classification with class prompts, group
accuracies (average, adjusted average, worst group) and GradCAM AIoU over ``ClassificationRecord``s.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from hf_spurious.metrics import group_accuracies

from .aiou import aiou_for_records
from .embedding_cache import embed_queries
from .gradcam import (
    GRADCAM_LAYERS,
    class_text_embeddings,
    gradcam_layer_name,
    is_cnn_tower,
    logit_scale_value,
)

if TYPE_CHECKING:
    from hf_spurious.models.adapters import VisionLanguageAdapter
    from hf_spurious.records import ClassificationRecord

__all__ = ["WATERBIRDS_CLASS_NAMES", "classify_images", "evaluate_classification", "train_group_counts"]

#: Waterbirds labels y = 0, 1 as class names for the prompts.
WATERBIRDS_CLASS_NAMES: tuple[str, ...] = ("landbird", "waterbird")


def classify_images(
    adapter: VisionLanguageAdapter,
    images: Sequence[Any],
    class_names: Sequence[str],
    templates: Sequence[str] | None = None,
    *,
    batch_size: int = 64,
    cache_dir: str | None = None,
    ids: Sequence[str] | None = None,
    model_fingerprint: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Zero-shot predictions: argmax of cosine(image, class prototype). Returns (predictions, (N, C) logits).

    Logits are ``exp(logit_scale) * cosine``; class prototypes average the template embeddings.
    """
    if len(class_names) < 2:
        raise ValueError(f"classification needs at least 2 class names, got {list(class_names)}")
    if cache_dir is not None and model_fingerprint is None:
        model_fingerprint = adapter.fingerprint  # before tokenising (see embedding_cache.embed_gallery)
    text = class_text_embeddings(adapter, class_names, templates).numpy()
    emb = embed_queries(
        adapter, images, cache_dir, ids=ids, batch_size=batch_size, model_fingerprint=model_fingerprint,
        desc="embed images to classify",
    )  # fmt: skip
    emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    logits = logit_scale_value(adapter) * (emb @ text.T)
    return logits.argmax(axis=1), logits


def train_group_counts(records: Sequence[ClassificationRecord], num_groups: int | None = None) -> list[int]:
    """Examples per group in ``records`` (group ids 0..G-1), for the adjusted average accuracy."""
    groups = [int(r.group) for r in records]
    if not groups:
        raise ValueError("no training records to count groups from")
    g = num_groups if num_groups is not None else max(groups) + 1
    return np.bincount(np.asarray(groups), minlength=g).astype(int).tolist()


def _checked_labels(
    records: Sequence[ClassificationRecord], class_names: Sequence[str], metrics: Sequence[str]
) -> np.ndarray:
    """The records' labels, after checking the metric names, that there are records and a name per label."""
    unknown = set(metrics) - {"group", "aiou"}
    if unknown:
        raise ValueError(f"unknown classification metrics {sorted(unknown)}; choose from 'group', 'aiou'")
    if not records:
        raise ValueError("no records to evaluate; check the data directory and split")
    labels = np.asarray([r.label for r in records], dtype=np.int64)
    if labels.max() >= len(class_names):
        raise ValueError(f"label {labels.max()} has no class name; pass {labels.max() + 1} class names")
    return labels


def evaluate_classification(
    adapter: VisionLanguageAdapter,
    records: Sequence[ClassificationRecord],
    class_names: Sequence[str] = WATERBIRDS_CLASS_NAMES,
    templates: Sequence[str] | None = None,
    *,
    metrics: Sequence[str] = ("group", "aiou"),
    train_counts: Sequence[int] | None = None,
    group_names: Sequence[str] | None = None,
    batch_size: int = 32,
    cache_dir: str | None = None,
    overlay_dir: str | None = None,
    max_overlays: int = 8,
    target_layer: torch.nn.Module | str | None = None,
    model_fingerprint: str | None = None,
    compare_layers: Sequence[str] | str = (),
) -> dict[str, Any]:
    """Evaluate a classifier on ``ClassificationRecord``s; returns a JSON-ready dict.

    ``metrics``: ``"group"`` (group accuracies in percent; adjusted average weighted by ``train_counts``)
    and/or ``"aiou"`` (GradCAM AIoU per image, per group, and in the worst-accuracy group; needs masks).
    ``target_layer``: the GradCAM layer (a name of :data:`~hf_spurious.evaluation.gradcam.GRADCAM_LAYERS`,
    a module path, or None for the default); ``results["aiou"]["layer"]`` names it. ``compare_layers``:
    more layers whose AIoU summary goes to ``results["aiou"]["by_layer"]`` (with the main one); ``"auto"``
    = the other named ViT layers (none for a CNN tower).
    """
    labels = _checked_labels(records, class_names, metrics)
    groups = np.asarray([r.group for r in records], dtype=np.int64)
    preds, _ = classify_images(
        adapter,
        [r.image_path for r in records],
        class_names,
        templates,
        batch_size=batch_size,
        cache_dir=cache_dir,
        ids=[r.image_id for r in records],
        model_fingerprint=model_fingerprint,
    )
    out: dict[str, Any] = {
        "num_images": len(records),
        "class_names": list(class_names),
        "accuracy": float(100.0 * (preds == labels).mean()),
    }
    if "group" in metrics:
        out["group"] = group_accuracies(
            preds, labels, groups, train_group_counts=train_counts, group_names=group_names
        )
    if "aiou" in metrics:
        aiou_options = {
            "overlay_dir": overlay_dir,
            "max_overlays": max_overlays,
            "target_layer": target_layer,
        }
        out["aiou"] = _aiou_results(
            adapter, records, class_names, templates, group_names, batch_size=batch_size, **aiou_options
        )
        _compare_layers(out["aiou"], compare_layers, adapter, records, class_names, templates, group_names,
                        batch_size=batch_size, target_layer=target_layer)  # fmt: skip
    out["predictions"] = preds.tolist()
    return out


def _aiou_results(
    adapter: VisionLanguageAdapter,
    records: Sequence[ClassificationRecord],
    class_names: Sequence[str],
    templates: Sequence[str] | None,
    group_names: Sequence[str] | None,
    **options: Any,
) -> dict[str, Any]:
    """:func:`aiou_for_records`, with groups named by ``group_names`` when given."""
    res = aiou_for_records(adapter, records, class_names, templates, **options)
    if group_names is not None:
        res["group_aiou"] = {group_names[g]: v for g, v in res["group_aiou"].items()}
        res["worst_accuracy_group"] = group_names[res["worst_accuracy_group"]]
    return res


_SUMMARY_KEYS = ("aiou", "worst_group_aiou", "min_group_aiou", "group_aiou", "worst_accuracy_group")


def _compare_layers(
    main: dict[str, Any],
    compare: Sequence[str] | str,
    adapter: VisionLanguageAdapter,
    records: Sequence[ClassificationRecord],
    class_names: Sequence[str],
    templates: Sequence[str] | None,
    group_names: Sequence[str] | None,
    *,
    batch_size: int,
    target_layer: torch.nn.Module | str | None,
) -> None:
    """Name the main layer in ``main`` and add ``main["by_layer"]``: the AIoU summary of each layer."""
    model = getattr(adapter, "base_model", None) or adapter.model
    name = main.get("layer") or gradcam_layer_name(model, target_layer)
    main["layer"] = name
    if compare == "auto":
        compare = [] if is_cnn_tower(model) else [n for n in GRADCAM_LAYERS if n != name]
    elif isinstance(compare, str):
        compare = [compare]
    by_layer = {name: {k: main[k] for k in _SUMMARY_KEYS if k in main}}
    for other in compare:
        if other in by_layer:
            continue
        res = _aiou_results(
            adapter, records, class_names, templates, group_names, batch_size=batch_size, target_layer=other
        )
        by_layer[other] = {k: res[k] for k in _SUMMARY_KEYS if k in res}
    main["by_layer"] = by_layer
