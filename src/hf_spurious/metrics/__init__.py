"""Core metrics (pure numpy, no I/O): ODmAP@k, removed-mention rate, Recall@K, AIoU, group accuracies, δ.

Units: ODmAP, mention rates, recalls, accuracies and δ are **percent**; per-query AP, IoU and AIoU are
fractions in [0, 1]. The protocol is documented in ``docs/protocol.md``.
"""

from .aiou import aiou, aiou_batch, aiou_summary, soft_iou
from .discovery import accuracy_discrepancy, mutual_information, rank_spurious_attributes
from .groups import WATERBIRDS_GROUP_NAMES, WATERBIRDS_TRAIN_GROUP_COUNTS, group_accuracies
from .odmap import class_matrix, count_relevant, odmap_at_k, removed_mention_rate_at_k
from .retrieval import (
    recall_at_k,
    recall_at_k_from_similarity,
    recall_both_directions,
    retrieval_recall,
    top_k_indices,
)

__all__ = [
    "WATERBIRDS_GROUP_NAMES",
    "WATERBIRDS_TRAIN_GROUP_COUNTS",
    "accuracy_discrepancy",
    "aiou",
    "aiou_batch",
    "aiou_summary",
    "class_matrix",
    "count_relevant",
    "group_accuracies",
    "mutual_information",
    "odmap_at_k",
    "rank_spurious_attributes",
    "recall_at_k",
    "recall_at_k_from_similarity",
    "recall_both_directions",
    "removed_mention_rate_at_k",
    "retrieval_recall",
    "soft_iou",
    "top_k_indices",
]
