"""Group accuracies (Yang et al., ICML 2023; WILDS Waterbirds conventions). All accuracies are percent.

* group accuracy: accuracy inside each group (e.g. Waterbirds group = 2·y + place);
* average accuracy: accuracy over all examples;
* adjusted average accuracy: Σ_g acc_g · n_g(train) / Σ_g n_g(train), over the groups that have at least
  one evaluated example (weights renormalised over them);
* worst-group accuracy: the minimum over groups with at least one example (ties: the lowest group id).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hf_spurious.metrics.checks import check_finite, check_labels, check_length, to_numpy

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
    train_group_counts: Sequence[int] | Mapping[int, int] | None = None,
    group_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Per-group, average, adjusted-average and worst-group accuracy, in percent.

    Args:
        predictions, labels: (N,) predicted and true class ids.
        groups: (N,) group ids in 0..G-1.
        train_group_counts: training-set size of each group (weights of the adjusted average): a
            sequence indexed by group id, or a mapping group id -> count naming every evaluated group;
            when omitted the adjusted average is the unweighted mean of the group accuracies.
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
    weights = (
        None
        if train_group_counts is None
        else _count_vector(train_group_counts, num_groups, np.unique(grp).tolist())
    )
    if group_names is not None and len(group_names) < num_groups:
        raise ValueError(
            f"`group_names` has {len(group_names)} names but group ids go up to {num_groups - 1}."
        )

    correct = pred == true
    counts = np.bincount(grp, minlength=num_groups)
    hits = np.bincount(grp, weights=correct.astype(np.float64), minlength=num_groups)
    present = np.nonzero(counts > 0)[0]
    acc = hits[present] / counts[present] * 100.0
    adjusted = _adjusted_average(acc, None if weights is None else weights[present])
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


def _adjusted_average(acc: np.ndarray, w: np.ndarray | None) -> float:
    """Mean of the group accuracies ``acc``, weighted by training counts ``w`` when given."""
    if w is None:
        return float(acc.mean())
    if w.sum() <= 0:
        raise ValueError("`train_group_counts` are all zero for the groups present; cannot weight them.")
    return float((acc * w).sum() / w.sum())


def _count_vector(train_group_counts: Any, num_groups: int, evaluated: list[int]) -> np.ndarray:
    """Train counts as a float64 vector over group ids 0..max(num_groups, largest id given) - 1.

    A mapping must name every ``evaluated`` group (a group it leaves out would silently weigh 0)."""
    if isinstance(train_group_counts, Mapping):
        items = list(train_group_counts.items())
        for g, n in items:
            if isinstance(g, bool) or not isinstance(g, (int, np.integer)) or g < 0:
                raise ValueError(
                    f"`train_group_counts` key {g!r} is not a group id; keys must be non-negative ints "
                    "(e.g. {0: 3498, 1: 184, 2: 56, 3: 1057})."
                )
            if isinstance(n, bool) or not isinstance(n, (int, float, np.integer, np.floating)):
                raise ValueError(
                    f"`train_group_counts`[{g}] is {n!r} ({type(n).__name__}); counts must be numbers."
                )
        missing = sorted(set(evaluated) - {int(g) for g, _ in items})
        if missing:
            raise ValueError(
                f"`train_group_counts` has no count for evaluated group(s) {missing}; give every group "
                "a count (0 for a group absent from training)."
            )
        size = max([num_groups] + [int(g) + 1 for g, _ in items])
        weights = np.zeros(size, dtype=np.float64)
        for g, n in items:
            weights[int(g)] = float(n)
    elif isinstance(train_group_counts, (str, bytes)) or (
        not isinstance(train_group_counts, (Sequence, np.ndarray))
        and not hasattr(train_group_counts, "__array__")
    ):
        raise ValueError(
            "`train_group_counts` must be a sequence of counts indexed by group id or a mapping "
            f"group id -> count; got {type(train_group_counts).__name__}."
        )
    else:
        try:
            weights = to_numpy(train_group_counts, "train_group_counts").astype(np.float64)
        except (TypeError, ValueError) as err:
            raise ValueError(
                "`train_group_counts` must be a sequence of numbers (one count per group id) or a mapping "
                f"group id -> count: {err}"
            ) from None
    check_finite(weights, "train_group_counts")
    if weights.ndim != 1 or weights.size < num_groups:
        raise ValueError(
            f"`train_group_counts` must give one count per group; got {weights.size} counts "
            f"for group ids up to {num_groups - 1}."
        )
    if weights.min() < 0:
        raise ValueError("`train_group_counts` must be non-negative.")
    return weights
