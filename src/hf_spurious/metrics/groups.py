"""Group accuracies (Yang et al., ICML 2023; WILDS Waterbirds conventions). All accuracies are percent.

* group accuracy: accuracy inside each group (e.g. Waterbirds group = 2·y + place);
* average accuracy: accuracy over all examples;
* adjusted average accuracy: Σ_g acc_g · n_g(train) / Σ_g n_g(train), over the groups that have at least
  one evaluated example (weights renormalised over them);
* worst-group accuracy: the minimum over groups with at least one example (ties: the lowest group id).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ._checks import check_finite, check_labels, check_length, to_numpy

WATERBIRDS_GROUP_NAMES: tuple[str, ...] = (
    "landbird/land",
    "landbird/water",
    "waterbird/land",
    "waterbird/water",
)
WATERBIRDS_TRAIN_GROUP_COUNTS: tuple[int, ...] = (3498, 184, 56, 1057)


def group_accuracies(
    predictions: Any,
    labels: Any,
    groups: Any,
    train_group_counts: Sequence[int] | None = None,
    group_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Per-group, average, adjusted-average and worst-group accuracy, in percent.

    Args:
        predictions, labels: (N,) predicted and true class ids.
        groups: (N,) group ids in 0..G-1.
        train_group_counts: training-set size of each group (weights of the adjusted average); when
            omitted the adjusted average is the unweighted mean of the group accuracies.
        group_names: names of groups 0..G-1, used as keys of "group_accuracy" (else the int ids).

    Returns:
        {"average_accuracy", "adjusted_average_accuracy", "worst_group_accuracy", "worst_group" (name or id),
         "worst_group_id" (int), "group_accuracy": {group: percent}, "group_count": {group: n}} for groups with >= 1 example.
    """
    pred = check_labels(predictions, "predictions")
    true = check_labels(labels, "labels")
    grp = check_labels(groups, "groups")
    check_length(true, pred.shape[0], "labels", "predictions")
    check_length(grp, pred.shape[0], "groups", "predictions")
    if pred.size == 0:
        raise ValueError("`predictions` is empty; group accuracies need at least one example.")
    num_groups = int(grp.max()) + 1
    weights = None
    if train_group_counts is not None:
        weights = to_numpy(train_group_counts, "train_group_counts").astype(np.float64)
        check_finite(weights, "train_group_counts")
        if weights.ndim != 1 or weights.size < num_groups:
            raise ValueError(
                f"`train_group_counts` must give one count per group; got {weights.size} counts "
                f"for group ids up to {num_groups - 1}."
            )
        if weights.min() < 0:
            raise ValueError("`train_group_counts` must be non-negative.")
    if group_names is not None and len(group_names) < num_groups:
        raise ValueError(
            f"`group_names` has {len(group_names)} names but group ids go up to {num_groups - 1}."
        )

    correct = pred == true
    counts = np.bincount(grp, minlength=num_groups)
    hits = np.bincount(grp, weights=correct.astype(np.float64), minlength=num_groups)
    present = np.nonzero(counts > 0)[0]
    acc = hits[present] / counts[present] * 100.0
    if weights is None:
        adjusted = float(acc.mean())
    else:
        w = weights[present]
        if w.sum() <= 0:
            raise ValueError("`train_group_counts` are all zero for the groups present; cannot weight them.")
        adjusted = float((acc * w).sum() / w.sum())
    worst = int(np.argmin(acc))
    key = (lambda g: group_names[g]) if group_names is not None else (lambda g: int(g))
    return {
        "average_accuracy": float(correct.mean() * 100.0),
        "adjusted_average_accuracy": adjusted,
        "worst_group_accuracy": float(acc[worst]),
        "worst_group": key(int(present[worst])),
        "worst_group_id": int(present[worst]),
        "group_accuracy": {key(int(g)): float(a) for g, a in zip(present, acc)},
        "group_count": {key(int(g)): int(counts[g]) for g in present},
    }
