"""Spurious-attribute discovery by accuracy discrepancy (Yang et al., ICML 2023, §4; spec §2.7).

    δ(D, s) = acc(D | s = 1) − acc(D | s = 0)        (percentage points)

Ranking: per class, attributes detected in at least ``min_detections`` of its images whose name is not a
class name, with mutual information (detect; correct) > 0; keep the top ``top_per_class`` by MI; then
sort all kept rows by δ, highest first (ties keep class order, then MI order).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from hf_spurious.metrics.checks import check_labels, check_length, check_ndim, to_numpy


def _as_bool(x: Any, name: str) -> np.ndarray:
    arr = to_numpy(x, name)
    if arr.dtype != bool:
        if arr.dtype.kind == "f" and np.isnan(arr).any():
            raise ValueError(f"`{name}` contains NaN; it must be boolean (0/1).")
        if arr.size and not np.isin(arr, (0, 1)).all():
            raise ValueError(f"`{name}` must be boolean (0/1 values).")
        arr = arr.astype(bool)
    return arr


def accuracy_discrepancy(correct: Any, detected: Any) -> float:
    """δ = acc(correct | detected) − acc(correct | not detected), in percentage points.

    Both subsets must be non-empty.
    """
    c = _as_bool(correct, "correct")
    s = _as_bool(detected, "detected")
    if c.ndim != 1 or s.ndim != 1:
        raise ValueError(f"`correct` and `detected` must be 1-D; got shapes {c.shape} and {s.shape}.")
    check_length(s, c.shape[0], "detected", "correct")
    n_with = int(s.sum())
    if n_with == 0 or n_with == s.size:
        raise ValueError(
            "δ needs examples both with and without the attribute; "
            f"`detected` is {'never' if n_with == 0 else 'always'} true."
        )
    return float(100.0 * (c[s].mean() - c[~s].mean()))


def mutual_information(x: Any, y: Any) -> float:
    """Mutual information (nats) between two discrete label arrays, from their contingency table.

    Exactly 0.0 when the table is exactly independent (checked on integer counts), so ``MI > 0`` is a
    reliable test.
    """
    a = to_numpy(x, "x").ravel()
    b = to_numpy(y, "y").ravel()
    check_length(b, a.shape[0], "y", "x")
    n = a.shape[0]
    if n == 0:
        return 0.0
    _, ai = np.unique(a, return_inverse=True)
    _, bi = np.unique(b, return_inverse=True)
    table = np.zeros((ai.max() + 1, bi.max() + 1), dtype=np.int64)
    np.add.at(table, (ai, bi), 1)
    row = table.sum(axis=1, keepdims=True)
    col = table.sum(axis=0, keepdims=True)
    if np.array_equal(table * n, row * col):
        return 0.0
    nz = table > 0
    joint = table[nz].astype(np.float64)
    expected = (row * col)[nz].astype(np.float64)
    mi = float(np.sum(joint / n * np.log(joint * n / expected)))
    return max(mi, 0.0)


def rank_spurious_attributes(
    class_ids: Any,
    correct: Any,
    detections: Any,
    attribute_names: Sequence[str],
    class_names: Sequence[str] | None = None,
    min_detections: int = 10,
    top_per_class: int = 5,
) -> list[dict[str, Any]]:
    """Rank candidate spurious attributes by δ (spec §2.7).

    Args:
        class_ids: (N,) true class of each image. correct: (N,) whether the model got it right.
        detections: (N, A) bool, attribute a detected in image i.
        attribute_names: the A attribute words. class_names: names of the classes (class ids index it);
            attributes whose word equals a class name are skipped.
        min_detections: minimum images of the class with the attribute. top_per_class: kept per class by MI.

    Returns:
        Rows sorted by δ (highest first), each {"class", "class_id", "attribute", "detections", "images",
        "mutual_information", "accuracy_with", "accuracy_without", "delta"} (accuracies, δ in percent).
    """
    cls = check_labels(class_ids, "class_ids")
    ok = _as_bool(correct, "correct")
    det = _as_bool(detections, "detections")
    _check_discovery_inputs(cls, ok, det, attribute_names, class_names, min_detections, top_per_class)
    banned = set(class_names or ())
    rows: list[dict[str, Any]] = []
    for c in np.unique(cls):
        kept = _class_rows(int(c), cls == c, ok, det, attribute_names, class_names, banned, min_detections)
        kept.sort(key=lambda r: -r["mutual_information"])  # stable: ties keep attribute order
        rows.extend(kept[:top_per_class])
    rows.sort(key=lambda r: -r["delta"])
    return rows


def _check_discovery_inputs(
    cls: np.ndarray,
    ok: np.ndarray,
    det: np.ndarray,
    attribute_names: Sequence[str],
    class_names: Sequence[str] | None,
    min_detections: int,
    top_per_class: int,
) -> None:
    check_ndim(det, 2, "detections", "images, attributes")
    check_length(ok, cls.shape[0], "correct", "class_ids")
    check_length(det, cls.shape[0], "detections", "class_ids")
    check_length(attribute_names, det.shape[1], "attribute_names", "detections columns")
    if min_detections < 1 or top_per_class < 1:
        raise ValueError("`min_detections` and `top_per_class` must be >= 1.")
    if class_names is not None and cls.size and cls.max() >= len(class_names):
        raise ValueError(
            f"`class_ids` holds {int(cls.max())} but `class_names` has {len(class_names)} names."
        )


def _class_rows(
    c: int,
    members: np.ndarray,
    ok: np.ndarray,
    det: np.ndarray,
    attribute_names: Sequence[str],
    class_names: Sequence[str] | None,
    banned: set[str],
    min_detections: int,
) -> list[dict[str, Any]]:
    """One row per attribute of class ``c`` detected often enough and informative about correctness."""
    ok_c, det_c = ok[members], det[members]
    counts = det_c.sum(axis=0)
    kept: list[dict[str, Any]] = []
    for a in np.nonzero(counts >= min_detections)[0]:
        word = attribute_names[a]
        if word in banned:
            continue
        s = det_c[:, a]
        mi = mutual_information(s, ok_c)
        if mi <= 0:
            continue
        acc_with = float(100.0 * ok_c[s].mean())
        acc_without = float(100.0 * ok_c[~s].mean())
        kept.append(
            {
                "class": class_names[c] if class_names is not None else c,
                "class_id": c,
                "attribute": word,
                "detections": int(counts[a]),
                "images": int(members.sum()),
                "mutual_information": mi,
                "accuracy_with": acc_with,
                "accuracy_without": acc_without,
                "delta": acc_with - acc_without,
            }
        )
    return kept
