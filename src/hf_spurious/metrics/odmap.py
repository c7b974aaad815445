"""ODmAP@k (Kim et al., CVPRW 2023, §3.2) and the removed-object mention rate.

A query q is a counterfactual image x' with removed classes R_q and present classes P_q. Each gallery
caption g carries the set M(g) of classes its phrases mention. Then

    rel_q(g) = [M(g) ∩ R_q = ∅] and [M(g) ∩ P_q ≠ ∅]     (present_rule="any", the default)
    rel_q(g) = [M(g) ∩ R_q = ∅] and [P_q ⊆ M(g)], P_q ≠ ∅  (present_rule="all")
    AP@k(q)  = (1/N) Σ_{i<=k} rel_q(i) · Prec_q(i),  N = k (normalizer="k") or min(k, R_q) ("min_k_r")
    ODmAP@k  = 100 · mean_q AP@k(q)

where R_q (``relevant_counts``) is the number of relevant captions in the whole gallery. A query with an
empty present set has no relevant caption. See ``docs/protocol.md`` for the full protocol.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal

import numpy as np

from hf_spurious.metrics.checks import check_finite, check_ks, check_length, check_ranked, to_numpy

ClassSets = Sequence[Iterable[str]]


def _is_matrix(x: Any) -> bool:
    return isinstance(x, np.ndarray) or (hasattr(x, "detach") and hasattr(x, "shape"))


def _as_name_set(item: Any, where: str) -> frozenset[str]:
    if isinstance(item, str):
        raise ValueError(
            f"{where} is the string {item!r}; pass a list or set of class names, e.g. [{item!r}]."
        )
    if item is None:
        return frozenset()
    names = frozenset(item)
    for name in names:
        if not isinstance(name, str):
            raise ValueError(f"{where} holds {name!r} ({type(name).__name__}); class names must be strings.")
    return names


def class_matrix(
    class_sets: ClassSets, class_names: Sequence[str] | None = None, *, name: str = "class_sets"
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Turn a list of class-name sets into a bool (N, C) matrix over ``class_names``.

    Without ``class_names`` the columns are the sorted union of all names. Unknown names raise.
    """
    sets = [_as_name_set(item, f"`{name}`[{i}]") for i, item in enumerate(class_sets)]
    names = tuple(class_names) if class_names is not None else tuple(sorted(set().union(*sets)))
    column = _column_index(names)
    matrix = np.zeros((len(sets), len(names)), dtype=bool)
    for i, item in enumerate(sets):
        for cls in item:
            if cls not in column:
                raise _unknown(cls, f"`{name}`[{i}]", names)
            matrix[i, column[cls]] = True
    return matrix, names


def _column_index(names: Sequence[str]) -> dict[str, int]:
    column = {n: i for i, n in enumerate(names)}
    if len(column) != len(names):
        raise ValueError("`class_names` holds a duplicate name; each class must appear once.")
    return column


def _unknown(cls: str, where: str, names: Sequence[str]) -> ValueError:
    shown = ", ".join(repr(n) for n in list(names)[:12]) + (", ..." if len(names) > 12 else "")
    return ValueError(
        f"{where} names the unknown class {cls!r}; known classes are [{shown}]. "
        "Use the vocabulary's class names (or pass matching `class_names`)."
    )


def _resolve(
    gallery_classes: Any,
    class_names: Sequence[str] | None,
    query_sets: Sequence[ClassSets],
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Return the gallery class matrix and the class names (columns)."""
    if _is_matrix(gallery_classes):
        matrix = to_numpy(gallery_classes, "gallery_classes")
        if matrix.ndim != 2:
            raise ValueError(
                f"`gallery_classes` matrix must be 2-D (gallery, classes); got shape {matrix.shape}."
            )
        if class_names is None:
            raise ValueError("`gallery_classes` is a matrix: pass `class_names` naming its columns.")
        if len(class_names) != matrix.shape[1]:
            raise ValueError(
                f"`class_names` has {len(class_names)} names but `gallery_classes` has {matrix.shape[1]} columns."
            )
        check_finite(matrix.astype(np.float64) if matrix.dtype.kind == "f" else matrix, "gallery_classes")
        if matrix.dtype != bool:
            if not np.isin(matrix, (0, 1)).all():
                raise ValueError("`gallery_classes` must be a bool (or 0/1) matrix.")
            matrix = matrix.astype(bool)
        _column_index(class_names)
        return matrix, tuple(class_names)
    if isinstance(gallery_classes, (str, bytes)):
        raise ValueError(
            "`gallery_classes` must be a bool matrix or a list of class-name sets, not a string."
        )
    sets = list(gallery_classes)
    if class_names is None:
        union: set[str] = set()
        for i, item in enumerate(sets):
            union |= _as_name_set(item, f"`gallery_classes`[{i}]")
        for qname, qsets in zip(("removed_classes", "present_classes"), query_sets):
            for i, item in enumerate(qsets):
                union |= _as_name_set(item, f"`{qname}`[{i}]")
        class_names = sorted(union)
    return class_matrix(sets, class_names, name="gallery_classes")


def _query_masks(
    removed_classes: ClassSets, present_classes: ClassSets, names: tuple[str, ...]
) -> tuple[np.ndarray, np.ndarray]:
    removed, _ = class_matrix(list(removed_classes), names, name="removed_classes")
    present, _ = class_matrix(list(present_classes), names, name="present_classes")
    return removed, present


def _relevance_from_mentions(
    mentions: np.ndarray, removed: np.ndarray, present: np.ndarray, present_rule: str
) -> np.ndarray:
    """Relevance of gathered gallery rows. mentions (Q, K, C); removed/present (Q, C) -> bool (Q, K)."""
    names_removed = (mentions & removed[:, None, :]).any(axis=2)
    present_hits = (mentions & present[:, None, :]).sum(axis=2)
    n_present = present.sum(axis=1)[:, None]
    if present_rule == "any":
        ok_present = present_hits > 0
    else:
        ok_present = (present_hits == n_present) & (n_present > 0)
    return ~names_removed & ok_present


def _require_queries(ranked: np.ndarray) -> None:
    if ranked.shape[0] == 0:
        raise ValueError("`retrieved` has no queries; a mean over zero queries is undefined.")


def _check_rule(present_rule: str) -> None:
    if present_rule not in ("any", "all"):
        raise ValueError(f"`present_rule` must be 'any' or 'all'; got {present_rule!r}.")


def count_relevant(
    gallery_classes: Any,
    removed_classes: ClassSets,
    present_classes: ClassSets,
    *,
    present_rule: Literal["any", "all"] = "any",
    class_names: Sequence[str] | None = None,
) -> np.ndarray:
    """R_q: the number of relevant captions in the whole gallery for each query, as int64 (Q,).

    Groups the gallery by distinct class sets, so the cost is (distinct queries × distinct sets × classes
    named by the query), never (queries × gallery).
    """
    _check_rule(present_rule)
    check_length(present_classes, len(removed_classes), "present_classes", "removed_classes")
    matrix, names = _resolve(gallery_classes, class_names, (removed_classes, present_classes))
    removed, present = _query_masks(removed_classes, present_classes, names)
    return _count_relevant_masks(matrix, removed, present, present_rule)


def _count_relevant_masks(
    matrix: np.ndarray, removed: np.ndarray, present: np.ndarray, rule: str
) -> np.ndarray:
    """R_q per query: loop over distinct (removed, present) query pairs, vectorised over distinct gallery sets."""
    out = np.zeros(removed.shape[0], dtype=np.int64)
    if matrix.shape[0] == 0 or removed.shape[0] == 0:
        return out
    packed = np.packbits(matrix, axis=1)
    keys = np.ascontiguousarray(packed).view(np.dtype((np.void, packed.shape[1]))).ravel()
    _, first, counts = np.unique(keys, return_index=True, return_counts=True)
    columns = np.ascontiguousarray(matrix[first].T)  # (C, U): one contiguous row per class
    cache: dict[tuple[tuple[int, ...], tuple[int, ...]], int] = {}
    for q in range(removed.shape[0]):
        key = (tuple(np.flatnonzero(removed[q])), tuple(np.flatnonzero(present[q])))
        if key not in cache:
            cache[key] = _count_one(columns, counts, key[0], key[1], rule)
        out[q] = cache[key]
    return out


def _count_one(columns: np.ndarray, counts: np.ndarray, removed: tuple, present: tuple, rule: str) -> int:
    if not present:
        return 0
    ok = columns[list(present)].any(axis=0) if rule == "any" else columns[list(present)].all(axis=0)
    if removed:
        ok &= ~columns[list(removed)].any(axis=0)
    return int(counts[ok].sum())


def odmap_at_k(
    retrieved: Any,
    gallery_classes: Any,
    removed_classes: ClassSets,
    present_classes: ClassSets,
    k: int | Iterable[int] = (1, 5, 10),
    present_rule: Literal["any", "all"] = "any",
    normalizer: Literal["k", "min_k_r"] = "k",
    class_names: Sequence[str] | None = None,
    relevant_counts: Any = None,
    return_per_query: bool = False,
) -> dict[str, Any]:
    """ODmAP@k in percent for each k.

    Args:
        retrieved: (Q, K) gallery indices ranked best first, K >= max(k) (extra columns are ignored).
        gallery_classes: bool (G, C) matrix of the classes each caption mentions (with ``class_names``),
            or a list of G sets of class names.
        removed_classes / present_classes: per query, the class names removed from / kept in the image.
        k: cut-off(s). present_rule: "any" (default) or "all". normalizer: "k" (default) or "min_k_r".
        relevant_counts: R_q per query for "min_k_r"; computed from the gallery when not given.
        return_per_query: also return "ap@k" arrays (fractions in [0, 1]), "relevance" (Q, max k) bool
            and, for "min_k_r", "relevant_counts".

    Returns:
        {"odmap@1": float, ...} (percent), plus the per-query arrays when asked.
    """
    ks = check_ks(k)
    _check_rule(present_rule)
    if normalizer not in ("k", "min_k_r"):
        raise ValueError(f"`normalizer` must be 'k' or 'min_k_r'; got {normalizer!r}.")
    matrix, names = _resolve(gallery_classes, class_names, (removed_classes, present_classes))
    ranked = check_ranked(retrieved, "retrieved", matrix.shape[0], max(ks))
    check_length(removed_classes, ranked.shape[0], "removed_classes", "retrieved")
    check_length(present_classes, ranked.shape[0], "present_classes", "retrieved")
    removed, present = _query_masks(removed_classes, present_classes, names)
    _require_queries(ranked)

    rel = _relevance_from_mentions(matrix[ranked], removed, present, present_rule)
    ap = _average_precision(rel, ks)
    out: dict[str, Any] = {}
    counts = None
    if normalizer == "min_k_r":
        counts = _relevant_counts_or_compute(relevant_counts, matrix, removed, present, present_rule, rel)
    for kk in ks:
        if counts is None:
            ap_k = ap[kk] / kk
        else:
            denom = np.minimum(kk, counts)
            ap_k = np.divide(ap[kk], denom, out=np.zeros_like(ap[kk]), where=denom > 0)
        out[f"odmap@{kk}"] = float(100.0 * ap_k.mean())
        if return_per_query:
            out[f"ap@{kk}"] = ap_k
    if return_per_query:
        out["relevance"] = rel
        if counts is not None:
            out["relevant_counts"] = counts
    return out


def _average_precision(rel: np.ndarray, ks: tuple[int, ...]) -> dict[int, np.ndarray]:
    """Un-normalised Σ_{i<=k} rel(i)·Prec(i) for each k, as float64 (Q,)."""
    r = rel.astype(np.float64)
    ranks = np.arange(1, r.shape[1] + 1, dtype=np.float64)
    precision = np.cumsum(r, axis=1) / ranks
    summed = np.cumsum(r * precision, axis=1)
    return {kk: summed[:, kk - 1].copy() for kk in ks}


def _relevant_counts_or_compute(
    relevant_counts: Any,
    matrix: np.ndarray,
    removed: np.ndarray,
    present: np.ndarray,
    rule: str,
    rel: np.ndarray,
) -> np.ndarray:
    if relevant_counts is None:
        return _count_relevant_masks(matrix, removed, present, rule)
    counts = to_numpy(relevant_counts, "relevant_counts")
    if counts.shape != (rel.shape[0],):
        raise ValueError(f"`relevant_counts` must have shape ({rel.shape[0]},); got {counts.shape}.")
    check_finite(counts.astype(np.float64), "relevant_counts")
    if counts.size and (counts.min() < 0 or not np.all(np.equal(np.mod(counts, 1), 0))):
        raise ValueError("`relevant_counts` must hold non-negative integers.")
    counts = counts.astype(np.int64)
    found = rel.sum(axis=1)
    bad = np.nonzero(found > counts)[0]
    if bad.size:
        q = int(bad[0])
        raise ValueError(
            f"`relevant_counts`[{q}] = {counts[q]} but {found[q]} relevant captions were found in that query's "
            "ranking; the counts must cover the whole gallery (omit them to compute them)."
        )
    return counts


def removed_mention_rate_at_k(
    retrieved: Any,
    gallery_classes: Any,
    removed_classes: ClassSets,
    k: int | Iterable[int] = (1, 5, 10),
    class_names: Sequence[str] | None = None,
    return_per_query: bool = False,
) -> dict[str, Any]:
    """Percent of queries whose top-k captions name at least one removed class.

    Returns {"removed_mention_rate@1": float, ...}; with ``return_per_query`` also
    "mentions_removed" (Q, max k) bool: whether the caption at each rank names a removed class.
    """
    ks = check_ks(k)
    matrix, names = _resolve(gallery_classes, class_names, (removed_classes,))
    ranked = check_ranked(retrieved, "retrieved", matrix.shape[0], max(ks))
    check_length(removed_classes, ranked.shape[0], "removed_classes", "retrieved")
    removed, _ = class_matrix(list(removed_classes), names, name="removed_classes")
    _require_queries(ranked)
    names_removed = (matrix[ranked] & removed[:, None, :]).any(axis=2)
    seen = np.logical_or.accumulate(names_removed, axis=1)
    out: dict[str, Any] = {}
    for kk in ks:
        out[f"removed_mention_rate@{kk}"] = float(100.0 * seen[:, kk - 1].mean())
    if return_per_query:
        out["mentions_removed"] = names_removed
    return out
