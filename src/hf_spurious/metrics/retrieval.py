"""Recall@K for image–text retrieval (the standard 5K COCO / 1K Flickr30k protocol).

* image → text (``direction="i2t"``): one query per image; a hit when **any** of the image's captions is
  among the top K captions.
* text → image (``direction="t2i"``): one query per caption; a hit when its image is among the top K images.

R@K = 100 · (hits / queries). Rankings come either as (Q, K) index arrays (e.g. from a chunked top-k engine)
or from a similarity matrix, ranked here by descending score with ties broken by the lower gallery index
(a stable sort).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal

import numpy as np

from ._checks import check_finite, check_ks, check_labels, check_length, check_ranked, to_numpy

Direction = Literal["i2t", "t2i"]


def top_k_indices(scores: Any, k: int, chunk_size: int = 1024) -> np.ndarray:
    """(Q, N) scores -> (Q, k) int64 indices, highest score first, ties broken by the lower index."""
    sims = to_numpy(scores, "scores")
    if sims.ndim != 2:
        raise ValueError(f"`scores` must be a 2-D (queries, items) matrix; got shape {sims.shape}.")
    (k,) = check_ks(k)
    if k > sims.shape[1]:
        raise ValueError(f"k={k} exceeds the {sims.shape[1]} items to rank; lower k.")
    check_finite(sims, "scores")
    out = np.empty((sims.shape[0], k), dtype=np.int64)
    for start in range(0, sims.shape[0], chunk_size):
        block = -sims[start : start + chunk_size].astype(np.float64)
        out[start : start + chunk_size] = np.argsort(block, axis=1, kind="stable")[:, :k]
    return out


def recall_at_k(
    ranked: Any,
    caption_to_image: Any,
    k: int | Iterable[int] = (1, 5, 10),
    direction: Direction = "i2t",
    return_per_query: bool = False,
) -> dict[str, Any]:
    """Recall@K in percent from ranked index arrays.

    Args:
        ranked: for "i2t", (num_images, K) caption indices per image query; for "t2i", (num_captions, K)
            image indices per caption query. Best first, K >= max(k).
        caption_to_image: (num_captions,) the image index of each caption (images are 0..num_images-1).
        direction: "i2t" or "t2i".
        return_per_query: also return "hits@k" bool arrays.

    Returns:
        {"i2t_r@1": float, ...} (keys prefixed with the direction).
    """
    ks = check_ks(k)
    if direction not in ("i2t", "t2i"):
        raise ValueError(f"`direction` must be 'i2t' or 't2i'; got {direction!r}.")
    owner = check_labels(caption_to_image, "caption_to_image")
    if direction == "i2t":
        ranked_arr = check_ranked(ranked, "ranked", owner.shape[0], max(ks))
        num_images = ranked_arr.shape[0]
        if owner.size and owner.max() >= num_images:
            raise ValueError(
                f"`caption_to_image` names image {int(owner.max())} but `ranked` has only {num_images} "
                "image queries (one row per image)."
            )
        hit_rank = owner[ranked_arr] == np.arange(num_images)[:, None]
    else:
        ranked_arr = check_ranked(ranked, "ranked", None, max(ks))
        check_length(ranked_arr, owner.shape[0], "ranked", "caption_to_image")
        hit_rank = ranked_arr == owner[:, None]
    return _hits_to_recall(hit_rank, ks, direction, return_per_query)


def _hits_to_recall(
    hit_rank: np.ndarray, ks: tuple[int, ...], prefix: str, per_query: bool
) -> dict[str, Any]:
    if hit_rank.shape[0] == 0:
        raise ValueError("there are no queries; a recall over zero queries is undefined.")
    seen = np.logical_or.accumulate(hit_rank, axis=1)
    out: dict[str, Any] = {}
    for kk in ks:
        hits = seen[:, kk - 1]
        out[f"{prefix}_r@{kk}"] = float(100.0 * hits.mean())
        if per_query:
            out[f"hits@{kk}"] = hits
    return out


def recall_at_k_from_similarity(
    similarity: Any,
    caption_to_image: Any,
    k: int | Iterable[int] = (1, 5, 10),
    directions: Sequence[Direction] = ("i2t", "t2i"),
) -> dict[str, float]:
    """Recall@K in both directions from a dense (num_images, num_captions) similarity matrix.

    Returns {"i2t_r@1": ..., "t2i_r@1": ..., "rsum": sum of all recalls}. Only for test-set sizes
    (5K × 25K); at gallery scale use a chunked top-k engine and :func:`recall_at_k`.
    """
    ks = check_ks(k)
    sims = to_numpy(similarity, "similarity")
    if sims.ndim != 2:
        raise ValueError(f"`similarity` must be (num_images, num_captions); got shape {sims.shape}.")
    owner = check_labels(caption_to_image, "caption_to_image")
    check_length(owner, sims.shape[1], "caption_to_image", "similarity columns")
    out: dict[str, float] = {}
    for direction in directions:
        scores = sims if direction == "i2t" else sims.T
        ranked = top_k_indices(scores, max(ks))
        out.update(recall_at_k(ranked, owner, ks, direction=direction))
    out["rsum"] = float(sum(v for key, v in out.items() if "_r@" in key))
    return out


def retrieval_recall(
    ranked: Sequence[Sequence[int]] | Any, relevant: Sequence[Iterable[int]], k: Any = (1, 5, 10)
) -> dict[str, float]:
    """Generic hit rate: percent of queries with at least one relevant id among their top k.

    ``ranked``: per query, item ids best first (each with at least max(k) ids, all distinct);
    ``relevant``: per query, the set of relevant ids. Returns {"recall@1": float, ...}.
    """
    ks = check_ks(k)
    rows = [list(r) for r in ranked]
    check_length(relevant, len(rows), "relevant", "ranked")
    kmax = max(ks)
    for i, row in enumerate(rows):
        if len(row) < kmax:
            raise ValueError(
                f"`ranked`[{i}] lists {len(row)} ids but k={kmax} was asked; rank more items or lower k."
            )
    matrix = check_ranked(
        np.array([row[:kmax] for row in rows], dtype=np.int64).reshape(len(rows), kmax), "ranked", None, kmax
    )
    hit_rank = np.zeros(matrix.shape, dtype=bool)
    for i, rel in enumerate(relevant):
        rel_ids = np.fromiter((int(x) for x in rel), dtype=np.int64)
        hit_rank[i] = np.isin(matrix[i], rel_ids)
    return {key.replace("q_r@", "recall@"): v for key, v in _hits_to_recall(hit_rank, ks, "q", False).items()}
