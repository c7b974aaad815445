"""Soft IoU and AIoU of explanation maps (Yang et al., ICML 2023, §5.3, Eqs. 8–9).

    IoU(M, B) = Σ min(M, B) / Σ max(M, B)                     (maps and regions in [0, 1], same shape)
    AIoU      = IoU(M_y, B_y) / (IoU(M_y, B_y) + max_{y'≠y} IoU(M_y', B_y))

Conventions (the paper has no code): an all-zero map against an all-zero region has IoU 0; the region
must not be empty (it is the true object); when every class map misses the region (both IoUs 0) AIoU is
0.5 — the true class is no better than the others. AIoU is a fraction in [0, 1].
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hf_spurious.metrics.checks import check_labels, check_length, check_ndim, check_unit_interval, to_numpy


def soft_iou(maps: Any, regions: Any) -> np.ndarray | float:
    """Soft IoU over the last two axes; ``maps`` and ``regions`` must broadcast, values in [0, 1].

    A single (H, W) pair returns a float; batched inputs return an array of the broadcast leading shape.
    """
    m = to_numpy(maps, "maps").astype(np.float64)
    b = to_numpy(regions, "regions").astype(np.float64)
    if m.ndim < 2 or b.ndim < 2:
        raise ValueError(f"`maps` and `regions` need at least 2 axes (H, W); got {m.shape} and {b.shape}.")
    _check_same_size(m, b)
    check_unit_interval(m, "maps")
    check_unit_interval(b, "regions")
    inter = np.minimum(m, b).sum(axis=(-2, -1))
    union = np.maximum(m, b).sum(axis=(-2, -1))
    iou = np.divide(inter, union, out=np.zeros(np.broadcast(inter, union).shape), where=union > 0)
    return float(iou) if iou.ndim == 0 else iou


def _check_same_size(m: np.ndarray, b: np.ndarray) -> None:
    if m.shape[-2:] != b.shape[-2:]:
        raise ValueError(
            f"`maps` are {m.shape[-2:]} but `regions` are {b.shape[-2:]} (H, W); resize the masks to the maps' size."
        )


def _aiou_from_ious(ious: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """ious (N, C), targets (N,) -> AIoU (N,)."""
    n = ious.shape[0]
    rows = np.arange(n)
    own = ious[rows, targets]
    others = ious.copy()
    others[rows, targets] = -np.inf
    best_other = others.max(axis=1)
    denom = own + best_other
    return np.divide(own, denom, out=np.full(n, 0.5), where=denom > 0)


def aiou_batch(maps: Any, regions: Any, targets: Any) -> np.ndarray:
    """AIoU per image: maps (N, C, H, W), regions (N, H, W), targets (N,) class ids -> (N,) in [0, 1]."""
    m = to_numpy(maps, "maps")
    b = to_numpy(regions, "regions")
    check_ndim(m, 4, "maps", "images, classes, H, W")
    check_ndim(b, 3, "regions", "images, H, W")
    t = check_labels(targets, "targets")
    check_length(b, m.shape[0], "regions", "maps")
    check_length(t, m.shape[0], "targets", "maps")
    if m.shape[1] < 2:
        raise ValueError(
            f"AIoU compares the true class with the others: `maps` need >= 2 classes, got {m.shape[1]}."
        )
    if t.size and t.max() >= m.shape[1]:
        raise ValueError(f"`targets` holds class {int(t.max())} but `maps` have only {m.shape[1]} classes.")
    _check_same_size(m, b)
    check_unit_interval(b.astype(np.float64), "regions")
    empty = np.nonzero(b.reshape(b.shape[0], -1).sum(axis=1) <= 0)[0]
    if empty.size:
        raise ValueError(
            f"`regions`[{int(empty[0])}] is empty; AIoU needs the true object's region (non-zero mask)."
        )
    ious = soft_iou(m, b[:, None, :, :])
    return _aiou_from_ious(np.asarray(ious, dtype=np.float64), t)


def aiou(maps: Any, region: Any, target: int) -> float:
    """AIoU of one image: maps (C, H, W) in [0, 1], region (H, W) in [0, 1], target the true class id."""
    m = to_numpy(maps, "maps")
    b = to_numpy(region, "region")
    check_ndim(m, 3, "maps", "classes, H, W")
    check_ndim(b, 2, "region", "H, W")
    return float(aiou_batch(m[None], b[None], np.array([target]))[0])


def aiou_summary(values: Any, groups: Any, worst_group: int | None = None) -> dict[str, Any]:
    """Average AIoU, AIoU per group and the worst-group AIoU.

    Worst-group AIoU is the mean AIoU inside ``worst_group`` (pass the worst *accuracy* group, as in
    Yang et al. Table 4); without it, the group with the lowest mean AIoU is used.
    """
    v = to_numpy(values, "values").astype(np.float64)
    g = check_labels(groups, "groups")
    if v.ndim != 1:
        raise ValueError(f"`values` must be 1-D; got shape {v.shape}.")
    check_length(g, v.shape[0], "groups", "values")
    check_unit_interval(v, "values")
    if v.size == 0:
        raise ValueError("`values` is empty; AIoU needs at least one image.")
    per_group = {int(x): float(v[g == x].mean()) for x in np.unique(g)}
    if worst_group is None:
        worst_group = min(per_group, key=lambda x: (per_group[x], x))
    elif int(worst_group) not in per_group:
        raise ValueError(f"`worst_group`={worst_group} has no image; groups present: {sorted(per_group)}.")
    return {
        "average_aiou": float(v.mean()),
        "worst_group_aiou": per_group[int(worst_group)],
        "worst_group": int(worst_group),
        "group_aiou": per_group,
    }
