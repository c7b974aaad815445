"""AIoU (spec §2.6, Eqs. 8–9) of GradCAM maps over a dataset, with per-group means and overlays."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from hf_spurious.images import load_rgb
from hf_spurious.metrics import aiou_batch, aiou_summary

from .gradcam import (
    ClassSimilarityTarget,
    ViTGradCAM,
    align_masks,
    class_text_embeddings,
    load_mask,
    logit_scale_value,
    pixel_values_for,
    unnormalize,
)
from .plots import save_overlay

if TYPE_CHECKING:
    from hf_spurious.models.adapters import VisionLanguageAdapter
    from hf_spurious.records import ClassificationRecord

__all__ = ["aiou_for_records", "aiou_over_dataset"]


def _group_means(values: np.ndarray, groups: np.ndarray) -> dict[int, float]:
    return {int(g): float(values[groups == g].mean()) for g in np.unique(groups)}


def _checked_labels(
    n: int,
    masks: Sequence[np.ndarray],
    labels: Sequence[int],
    groups: Sequence[int] | None,
    num_classes: int,
) -> np.ndarray:
    """``labels`` as int64 after checking one mask / label / group per image and labels in range."""
    for name, seq in (("masks", masks), ("labels", labels)):
        if len(seq) != n:
            raise ValueError(f"{len(seq)} {name} for {n} images; pass one per image")
    if groups is not None and len(groups) != n:
        raise ValueError(f"{len(groups)} groups for {n} images; pass one per image")
    if n == 0:
        raise ValueError("no images to explain")
    labels_arr = np.asarray(labels, dtype=np.int64)
    if labels_arr.min() < 0 or labels_arr.max() >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes}); got {labels_arr.min()}..{labels_arr.max()}")
    return labels_arr


def _check_mask_sizes(batch: Sequence[Any], masks: Sequence[np.ndarray], start: int) -> None:
    for j, (im, m) in enumerate(zip(batch, masks)):
        hw = (
            (im.size[1], im.size[0])
            if hasattr(im, "size") and not isinstance(im, np.ndarray)
            else np.asarray(im).shape[:2]
        )
        if tuple(np.asarray(m).shape) != tuple(hw):
            raise ValueError(
                f"image {start + j}: mask shape {np.asarray(m).shape} differs from the image size {tuple(hw)}; "
                "masks must be (H, W) at the image's own resolution"
            )


def _explain_batch(
    adapter: VisionLanguageAdapter,
    cam: ViTGradCAM,
    targets: Sequence[ClassSimilarityTarget],
    text: torch.Tensor,
    batch: Sequence[Any],
    masks: Sequence[np.ndarray],
    labels: np.ndarray,
    binarize: bool,
) -> tuple[np.ndarray, np.ndarray, torch.Tensor, torch.Tensor]:
    """Per-image AIoU, zero-shot predictions, (B, C, H, W) maps and the pixel values of one batch."""
    pv = pixel_values_for(adapter, batch)
    maps = cam(pv, targets).cpu()  # (B, C, H, W)
    regions = align_masks(adapter, [np.asarray(m) for m in masks], binarize=binarize)
    with torch.no_grad():
        emb = F.normalize(adapter.encode_images(pv).float(), dim=-1)
        preds = (emb @ text.T.to(emb.device)).argmax(dim=1).cpu().numpy()
    if regions.shape[-2:] != maps.shape[-2:]:
        raise ValueError(
            f"aligned masks {tuple(regions.shape[-2:])} and maps {tuple(maps.shape[-2:])} differ"
        )
    return aiou_batch(maps.numpy(), regions.numpy(), labels), preds, maps, pv


def _save_overlays(
    adapter: VisionLanguageAdapter,
    pv: torch.Tensor,
    maps: torch.Tensor,
    labels: np.ndarray,
    class_names: Sequence[str],
    overlay_dir: str | os.PathLike,
    start: int,
    budget: int,
) -> int:
    """Overlay each image's true-class map for up to ``budget`` images of the batch; returns how many."""
    pictures = unnormalize(adapter, pv)
    count = min(budget, len(labels))
    for j in range(count):
        y = int(labels[j])
        path = Path(overlay_dir) / f"gradcam_{start + j:05d}_{class_names[y]}.png"
        save_overlay(pictures[j], maps[j, y].numpy(), path)
    return count


def _group_results(per_image: np.ndarray, correct: np.ndarray, groups: Sequence[int]) -> dict[str, Any]:
    g = np.asarray(groups, dtype=np.int64)
    group_acc = _group_means(correct.astype(np.float64), g)
    worst = min(group_acc, key=lambda k: (group_acc[k], k))
    summary = aiou_summary(per_image, g, worst_group=worst)
    return {
        "group_aiou": summary["group_aiou"],
        "min_group_aiou": min(summary["group_aiou"].values()),
        "worst_accuracy_group": worst,
        "worst_group_aiou": summary["worst_group_aiou"],
    }


def aiou_over_dataset(
    adapter: VisionLanguageAdapter,
    images: Sequence[Any],
    masks: Sequence[np.ndarray],
    labels: Sequence[int],
    class_names: Sequence[str],
    templates: Sequence[str] | None = None,
    *,
    groups: Sequence[int] | None = None,
    batch_size: int = 16,
    target_layer: torch.nn.Module | str | None = None,
    overlay_dir: str | os.PathLike | None = None,
    max_overlays: int = 8,
    binarize_masks: bool = True,
) -> dict[str, Any]:
    """AIoU (spec §2.6, Eqs. 8–9) of GradCAM maps for every image, with per-group means.

    Each image gets a map for every class; its AIoU compares the true class's map with the best other
    class's map on the object mask (aligned to the network input like the image).

    Returns ``{"layer", "aiou", "per_image_aiou", "predictions", "group_aiou", "min_group_aiou",
    "worst_accuracy_group", "worst_group_aiou"}``: ``worst_group_aiou`` is the mean AIoU within the
    group of lowest zero-shot accuracy (the spec's reading); ``min_group_aiou`` the lowest group mean.
    """
    n = len(images)
    labels_arr = _checked_labels(n, masks, labels, groups, len(class_names))
    text = class_text_embeddings(adapter, class_names, templates)
    scale = logit_scale_value(adapter)
    targets = [ClassSimilarityTarget(text[c], scale) for c in range(len(class_names))]
    cam = ViTGradCAM(adapter, target_layer)
    per_image = np.empty(n, dtype=np.float64)
    preds = np.empty(n, dtype=np.int64)
    saved = 0
    for start in tqdm(range(0, n, batch_size), desc="GradCAM / AIoU", unit="batch"):
        batch = [load_rgb(x) for x in images[start : start + batch_size]]
        batch_masks = masks[start : start + batch_size]
        _check_mask_sizes(batch, batch_masks, start)
        y = labels_arr[start : start + len(batch)]
        scores, p, maps, pv = _explain_batch(
            adapter, cam, targets, text, batch, batch_masks, y, binarize_masks
        )
        preds[start : start + len(batch)] = p
        per_image[start : start + len(batch)] = scores
        if overlay_dir is not None and saved < max_overlays:
            saved += _save_overlays(
                adapter, pv, maps, y, class_names, overlay_dir, start, max_overlays - saved
            )
    out: dict[str, Any] = {
        "layer": cam.layer_name,
        "aiou": float(per_image.mean()),
        "per_image_aiou": per_image.tolist(),
        "predictions": preds.tolist(),
    }
    if groups is not None:
        out.update(_group_results(per_image, preds == labels_arr, groups))
    return out


def aiou_for_records(
    adapter: VisionLanguageAdapter,
    records: Sequence[ClassificationRecord],
    class_names: Sequence[str],
    templates: Sequence[str] | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """:func:`aiou_over_dataset` on ``ClassificationRecord``s (each needs a ``mask_path``)."""
    missing = [r.image_id for r in records if not r.mask_path]
    if missing:
        raise ValueError(f"image {missing[0]!r} has no mask_path; AIoU needs an object mask for every image")
    return aiou_over_dataset(
        adapter,
        [r.image_path for r in records],
        [load_mask(r.mask_path) for r in records],
        [r.label for r in records],
        class_names,
        templates,
        groups=[r.group for r in records],
        **kwargs,
    )
