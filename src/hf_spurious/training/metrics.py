"""The Trainer's evaluation metrics: group accuracies (classification) and Recall@K (retrieval)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from transformers import EvalPrediction

from hf_spurious.evaluation import bidirectional_recall
from hf_spurious.metrics import group_accuracies

__all__ = ["group_metrics", "retrieval_recall_metrics"]


def group_metrics(pred: EvalPrediction, train_group_counts: Sequence[int] | None = None) -> dict[str, float]:
    """Average, adjusted average and worst-group accuracy plus ``group_<g>_accuracy`` of zero-shot logits.

    ``pred.predictions``: (N, C) logits; ``pred.label_ids``: (N, 2) class label and group id per example
    (group -1: no attribute, left out). ``train_group_counts`` weights the adjusted average (spec §2.6).
    """
    logits, labels = np.asarray(pred.predictions), np.asarray(pred.label_ids)
    keep = labels[:, 1] >= 0
    if not keep.any():
        raise ValueError("no evaluation example has a group; eval rows need 'attribute' labels")
    res = group_accuracies(logits[keep].argmax(-1), labels[keep, 0], labels[keep, 1], train_group_counts)
    out = {
        k: float(v)
        for k, v in res.items()
        if k != "worst_group" and isinstance(v, (int, float, np.number)) and not isinstance(v, bool)
    }
    out.update({f"group_{g}_accuracy": float(v) for g, v in res.get("group_accuracy", {}).items()})
    return out


def retrieval_recall_metrics(
    embeddings: np.ndarray,
    image_index: np.ndarray,
    ks: tuple[int, ...] = (1, 5, 10),
    device: str | torch.device | None = "cpu",
) -> dict[str, float]:
    """Recall@K (i2t and t2i, percent) of eval pairs from exact chunked top-k.

    ``embeddings`` (N, 2d): each pair's L2-normalised image embedding then caption embedding;
    ``image_index`` (N,): the image each caption belongs to (pairs of one image share it; its first
    pair's image embedding stands for the image). Scored by
    :func:`hf_spurious.evaluation.bidirectional_recall` (ties: lower index first); K larger than the
    number of images is left out, and so is its ``rsum``.
    """
    owner = np.asarray(image_index).astype(np.int64).reshape(-1)
    emb = np.asarray(embeddings, dtype=np.float32)
    if emb.ndim != 2 or emb.shape[1] % 2 or emb.shape[0] != owner.shape[0]:
        raise ValueError(
            f"embeddings must be (N, 2d) image+caption rows for N={owner.shape[0]} pairs, got {emb.shape}"
        )
    d = emb.shape[1] // 2
    _, first, caption_to_image = np.unique(owner, return_index=True, return_inverse=True)
    images, texts = emb[first, :d], emb[:, d:]
    ks = tuple(k for k in ks if k <= len(first))
    if not ks:
        raise ValueError("Recall@K needs at least one image in the eval set")
    out = bidirectional_recall(images, texts, caption_to_image, ks, device=device, progress=False)
    out.pop("rsum")
    return out
