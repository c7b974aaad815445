"""Retrieval runner: ODmAP@k and removed-mention rate on counterfactual queries, Recall@K on a test set.

Protocol (spec §1.6–1.7, ``docs/protocol.md``): image → text retrieval of counterfactual query images
against a caption gallery (train + val + test captions of the source dataset); a caption is relevant when
it names no removed class and at least one present class. Recall@K uses the original test images and
their captions (standard 5K COCO / 1K Flickr30k protocol), both directions.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from .engine import embed_gallery, embed_queries, rerank_with_itm, topk_similarities

__all__ = ["Gallery", "RecallSet", "RetrievalQueries", "evaluate_recall", "evaluate_retrieval"]


@dataclass
class RetrievalQueries:
    """Counterfactual query images with the classes removed from and kept in each."""

    images: Sequence[Any]  # paths, PIL images or HxWx3 uint8 arrays
    removed_classes: Sequence[frozenset[str] | Sequence[str]]
    present_classes: Sequence[frozenset[str] | Sequence[str]]
    ids: Sequence[str] | None = None
    source_image_ids: Sequence[str] | None = None

    def __post_init__(self) -> None:
        n = len(self.images)
        for name in ("removed_classes", "present_classes", "ids", "source_image_ids"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise ValueError(f"{len(value)} {name} for {n} query images; pass one per image")
        if n == 0:
            raise ValueError("no query images; the counterfactual split is empty")


@dataclass
class Gallery:
    """Caption gallery with its caption → class matrix (bool (G, C), columns = ``class_names``)."""

    captions: Sequence[str]
    classes: np.ndarray
    class_names: Sequence[str]

    def __post_init__(self) -> None:
        self.classes = np.asarray(self.classes)
        if self.classes.dtype != bool:
            raise ValueError(f"the gallery class matrix must be boolean, got {self.classes.dtype}")
        if self.classes.shape != (len(self.captions), len(self.class_names)):
            raise ValueError(
                f"gallery class matrix has shape {self.classes.shape}, expected "
                f"({len(self.captions)} captions, {len(self.class_names)} classes)"
            )
        if not self.captions:
            raise ValueError("the caption gallery is empty")


@dataclass
class RecallSet:
    """A retrieval test set: images, their captions and the image index of each caption."""

    images: Sequence[Any]
    captions: Sequence[str]
    caption_to_image: Sequence[int]
    image_ids: Sequence[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.caption_to_image) != len(self.captions):
            raise ValueError(
                f"{len(self.caption_to_image)} caption_to_image entries for {len(self.captions)} captions"
            )
        owner = np.asarray(self.caption_to_image)
        if owner.size and (owner.min() < 0 or owner.max() >= len(self.images)):
            raise ValueError(f"caption_to_image must index the {len(self.images)} images")


def _cache_options(adapter: Any, cache_dir: Any, model_fingerprint: str | None) -> dict[str, Any]:
    if cache_dir is None:
        return {"cache_dir": None}
    return {"cache_dir": cache_dir, "model_fingerprint": model_fingerprint or adapter.fingerprint}


def _pair_scores(q_emb: np.ndarray, g_emb: np.ndarray, ranked: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """Dual-encoder similarity of each query with each of its ranked candidates, (Q, K)."""
    out = np.empty(ranked.shape, dtype=np.float32)
    for s in range(0, ranked.shape[0], chunk):
        cand = np.asarray(g_emb)[ranked[s : s + chunk]]
        out[s : s + chunk] = np.einsum("qd,qkd->qk", np.asarray(q_emb[s : s + chunk]), cand)
    return out


def evaluate_recall(
    adapter: Any,
    recall_set: RecallSet,
    k: Sequence[int] = (1, 5, 10),
    *,
    cache_dir: str | os.PathLike | None = None,
    rerank_top_n: int | None = None,
    chunk_size: int = 32768,
    device: str | None = None,
    batch_size: int = 64,
    model_fingerprint: str | None = None,
) -> dict[str, float]:
    """Recall@K image → text and text → image (percent) plus ``rsum``, via the chunked engine."""
    from hf_spurious.metrics import recall_at_k

    kmax = max(k)
    opts = _cache_options(adapter, cache_dir, model_fingerprint)
    img = embed_queries(adapter, recall_set.images, ids=recall_set.image_ids, batch_size=batch_size, **opts)
    txt = embed_gallery(adapter, list(recall_set.captions), batch_size=batch_size, **opts)
    owner = np.asarray(recall_set.caption_to_image, dtype=np.int64)
    _, i2t = topk_similarities(img, txt, kmax, chunk_size=chunk_size, device=device)
    _, t2i = topk_similarities(txt, img, kmax, chunk_size=chunk_size, device=device)
    if rerank_top_n:
        i2t = rerank_with_itm(adapter, recall_set.images, recall_set.captions, i2t, rerank_top_n)
        t2i = rerank_with_itm(
            adapter, recall_set.images, recall_set.captions, t2i, rerank_top_n, query="text"
        )
    if i2t.shape[1] < kmax or t2i.shape[1] < kmax:
        raise ValueError(f"k={kmax} exceeds the test set ({len(recall_set.images)} images); lower k")
    out: dict[str, float] = {}
    out.update(recall_at_k(i2t, owner, k, direction="i2t"))
    out.update(recall_at_k(t2i, owner, k, direction="t2i"))
    out["rsum"] = float(sum(v for key, v in out.items() if "_r@" in key))
    return out


def evaluate_retrieval(
    adapter: Any,
    queries: RetrievalQueries,
    gallery: Gallery,
    k: Sequence[int] = (1, 5, 10),
    recall_pairs: RecallSet | None = None,
    *,
    present_rule: Literal["any", "all"] = "any",
    normalizer: Literal["k", "min_k_r"] = "k",
    cache_dir: str | os.PathLike | None = None,
    rerank_top_n: int | None = None,
    chunk_size: int = 32768,
    device: str | None = None,
    batch_size: int = 64,
    top_captions: int = 5,
    model_fingerprint: str | None = None,
) -> dict[str, Any]:
    """Run the retrieval evaluation; returns a JSON-ready dict.

    Keys: ``"odmap"`` ({"odmap@k": percent}), ``"removed_mention_rate"``, ``"recall"`` (when
    ``recall_pairs`` is given), ``"num_queries"``, ``"gallery_size"``, ``"settings"`` and
    ``"per_query"`` (each query's top captions with score, relevance and whether it names a removed class).
    With ``rerank_top_n`` (BLIP), the first candidates are re-ranked by the ITM head.
    """
    from hf_spurious.metrics import odmap_at_k, removed_mention_rate_at_k

    ks = tuple(int(x) for x in k)
    if not ks or min(ks) <= 0:
        raise ValueError(f"k must be positive integers, got {k!r}")
    kmax = max(ks)
    if kmax > len(gallery.captions):
        raise ValueError(f"k={kmax} exceeds the gallery of {len(gallery.captions)} captions; lower k")
    opts = _cache_options(adapter, cache_dir, model_fingerprint)
    q_emb = embed_queries(adapter, queries.images, ids=queries.ids, batch_size=batch_size, **opts)
    g_emb = embed_gallery(adapter, list(gallery.captions), batch_size=batch_size, **opts)
    depth = max(kmax, rerank_top_n or 0, top_captions)
    scores, ranked = topk_similarities(
        q_emb, g_emb, min(depth, len(gallery.captions)), chunk_size=chunk_size, device=device
    )
    if rerank_top_n:
        ranked = rerank_with_itm(adapter, queries.images, gallery.captions, ranked, rerank_top_n)
        scores = _pair_scores(q_emb, g_emb, ranked)
    removed = [frozenset(x) for x in queries.removed_classes]
    present = [frozenset(x) for x in queries.present_classes]
    common = {"class_names": list(gallery.class_names)}
    odmap = odmap_at_k(
        ranked,
        gallery.classes,
        removed,
        present,
        k=ks,
        present_rule=present_rule,
        normalizer=normalizer,
        return_per_query=True,
        **common,
    )
    mention = removed_mention_rate_at_k(
        ranked, gallery.classes, removed, k=ks, return_per_query=True, **common
    )
    result: dict[str, Any] = {
        "odmap": {key: v for key, v in odmap.items() if key.startswith("odmap@")},
        "removed_mention_rate": {
            key: v for key, v in mention.items() if key.startswith("removed_mention_rate@")
        },
        "num_queries": len(queries.images),
        "gallery_size": len(gallery.captions),
        "settings": {
            "k": list(ks),
            "present_rule": present_rule,
            "normalizer": normalizer,
            "rerank_top_n": rerank_top_n,
            "fingerprint": opts.get("model_fingerprint"),
        },
    }
    if recall_pairs is not None:
        result["recall"] = evaluate_recall(
            adapter,
            recall_pairs,
            ks,
            cache_dir=cache_dir,
            rerank_top_n=rerank_top_n,
            chunk_size=chunk_size,
            device=device,
            batch_size=batch_size,
            model_fingerprint=opts.get("model_fingerprint"),
        )
    result["per_query"] = _per_query(queries, gallery, ranked, scores, odmap, mention, ks, top_captions)
    return result


def _per_query(
    queries: RetrievalQueries,
    gallery: Gallery,
    ranked: np.ndarray,
    scores: np.ndarray,
    odmap: dict[str, Any],
    mention: dict[str, Any],
    ks: tuple[int, ...],
    top: int,
) -> list[dict[str, Any]]:
    relevance = odmap["relevance"]
    names_removed = mention["mentions_removed"]
    n_top = min(top, ranked.shape[1], relevance.shape[1])
    rows = []
    for q in range(ranked.shape[0]):
        row: dict[str, Any] = {
            "query": q,
            "id": None if queries.ids is None else str(queries.ids[q]),
            "source_image_id": None if queries.source_image_ids is None else str(queries.source_image_ids[q]),
            "removed_classes": sorted(queries.removed_classes[q]),
            "present_classes": sorted(queries.present_classes[q]),
            "ap": {f"ap@{kk}": float(odmap[f"ap@{kk}"][q]) for kk in ks},
            "top": [
                {
                    "rank": r + 1,
                    "gallery_index": int(ranked[q, r]),
                    "caption": gallery.captions[int(ranked[q, r])],
                    "score": None if np.isnan(scores[q, r]) else float(scores[q, r]),
                    "relevant": bool(relevance[q, r]),
                    "names_removed": bool(names_removed[q, r]),
                }
                for r in range(n_top)
            ],
        }
        rows.append(row)
    return rows
