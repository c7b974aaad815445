"""Recall@K for image–text retrieval (the standard 5K COCO / 1K Flickr30k protocol).

* image → text (``direction="i2t"``): one query per image; a hit when **any** of the image's captions is
  among the top K captions.
* text → image (``direction="t2i"``): one query per caption; a hit when its image is among the top K images.

R@K = 100 · (hits / queries). :func:`recall_at_k` is the one Recall@K (one direction, from (Q, K) ranked
index arrays, e.g. from a chunked top-k engine); :func:`recall_both_directions` adds up both directions and
``rsum``; :func:`recall_at_k_from_similarity` ranks a dense similarity matrix first (by descending score,
ties broken by the lower gallery index, a stable sort). :func:`retrieval_recall` is the generic hit rate
over id lists (the ``retrieval_recall`` evaluate module).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal

import numpy as np

from hf_spurious.metrics.checks import (
    check_feature,
    check_finite,
    check_ks,
    check_labels,
    check_length,
    check_ndim,
    check_ranked,
    to_numpy,
)

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


def recall_both_directions(
    i2t_ranked: Any | None,
    t2i_ranked: Any | None,
    caption_to_image: Any,
    k: int | Iterable[int] = (1, 5, 10),
) -> dict[str, float]:
    """Recall@K image → text and text → image (percent) from ranked index arrays, plus ``rsum``.

    ``i2t_ranked`` (num_images, K) caption indices per image, ``t2i_ranked`` (num_captions, K) image indices
    per caption, as for :func:`recall_at_k` (``None`` leaves a direction out). Returns
    ``{"i2t_r@1": ..., "i2t_r@5": ..., "t2i_r@1": ..., ..., "rsum": sum of those recalls in that order}``.
    """
    ks = check_ks(k)
    out: dict[str, float] = {}
    if i2t_ranked is not None:
        out.update(recall_at_k(i2t_ranked, caption_to_image, ks, direction="i2t"))
    if t2i_ranked is not None:
        out.update(recall_at_k(t2i_ranked, caption_to_image, ks, direction="t2i"))
    out["rsum"] = float(sum(v for key, v in out.items() if "_r@" in key))
    return out


def recall_at_k_from_similarity(
    similarity: Any,
    caption_to_image: Any,
    k: int | Iterable[int] = (1, 5, 10),
    directions: Sequence[Direction] = ("i2t", "t2i"),
) -> dict[str, float]:
    """Recall@K in both directions from a dense (num_images, num_captions) similarity matrix.

    Ranks with :func:`top_k_indices` and scores with :func:`recall_both_directions`: returns
    {"i2t_r@1": ..., "t2i_r@1": ..., "rsum": sum of all recalls} (i2t keys first). Only for test-set sizes
    (5K × 25K); at gallery scale use a chunked top-k engine and :func:`recall_both_directions`.
    """
    ks = check_ks(k)
    unknown = [d for d in directions if d not in ("i2t", "t2i")]
    if unknown:
        raise ValueError(f"`directions` must name 'i2t' and/or 't2i'; got {unknown[0]!r}.")
    sims = to_numpy(similarity, "similarity")
    check_ndim(sims, 2, "similarity", "num_images, num_captions")
    owner = check_labels(caption_to_image, "caption_to_image")
    check_length(owner, sims.shape[1], "caption_to_image", "similarity columns")
    i2t = top_k_indices(sims, max(ks)) if "i2t" in directions else None
    t2i = top_k_indices(sims.T, max(ks)) if "t2i" in directions else None
    return recall_both_directions(i2t, t2i, owner, ks)


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
    check_feature(rows, [["int64"]], "ranked")
    check_feature([list(rel) for rel in relevant], [["int64"]], "relevant")
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
