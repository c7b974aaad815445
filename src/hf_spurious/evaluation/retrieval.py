"""Retrieval runner: ODmAP@k and removed-mention rate on counterfactual queries, Recall@K on a test set.

Protocol (spec §1.6–1.7, ``docs/protocol.md``): image → text retrieval of counterfactual query images
against a caption gallery (train + val + test captions of the source dataset); a caption is relevant when
it names no removed class and at least one present class. Recall@K uses the original test images and
their captions (standard 5K COCO / 1K Flickr30k protocol), both directions.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from hf_spurious.metrics import odmap_at_k, recall_both_directions, removed_mention_rate_at_k

from .embedding_cache import embed_gallery, embed_queries
from .rerank import RerankScore, rerank_with_itm
from .retrieval_sets import Gallery, LazyImages, RecallSet, RetrievalQueries
from .topk import ArrayLike, topk_similarities

if TYPE_CHECKING:
    from hf_spurious.models.adapters import VisionLanguageAdapter

__all__ = [
    "Gallery",
    "LazyImages",
    "RecallSet",
    "RetrievalQueries",
    "bidirectional_recall",
    "evaluate_recall",
    "evaluate_retrieval",
]

#: ``rerank(ranked, query)`` re-orders (Q, K) candidate indices; ``query`` is "image" (i2t) or "text" (t2i).
Rerank = Callable[[np.ndarray, str], np.ndarray]


def _cache_options(
    adapter: VisionLanguageAdapter, cache_dir: Any, model_fingerprint: str | None
) -> dict[str, Any]:
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


def bidirectional_recall(
    image_embeds: ArrayLike,
    text_embeds: ArrayLike,
    caption_to_image: Sequence[int] | np.ndarray,
    k: Sequence[int] = (1, 5, 10),
    *,
    chunk_size: int = 32768,
    device: str | torch.device | None = None,
    progress: bool = False,
    rerank: Rerank | None = None,
    rerank_depth: int = 0,
    precision: str = "auto",
) -> dict[str, float]:
    """Recall@K (percent) image → text and text → image plus ``rsum``, from embeddings.

    Both directions rank by exact chunked top-k (ties: lower index first; ``precision`` as in
    :func:`~hf_spurious.evaluation.topk.topk_similarities`, same results); ``rerank(ranked, query)``
    (e.g. BLIP's ITM head) may re-order each direction's candidates (``query`` "image", then "text");
    it receives the first ``max(max(k), rerank_depth)`` candidates of each query (fewer when the gallery
    is smaller), so a re-ranker of depth N can lift a caption from rank N into the top k.
    Scored by :func:`hf_spurious.metrics.recall_both_directions`.
    """
    kmax = max(k)
    opts: dict[str, Any] = {
        "chunk_size": chunk_size, "device": device, "progress": progress, "precision": precision,
    }  # fmt: skip
    depth = max(kmax, int(rerank_depth or 0)) if rerank is not None else kmax
    _, i2t = topk_similarities(image_embeds, text_embeds, depth, **opts)  # capped at the gallery size
    _, t2i = topk_similarities(text_embeds, image_embeds, depth, **opts)
    if rerank is not None:
        i2t = rerank(i2t, "image")
        t2i = rerank(t2i, "text")
    if i2t.shape[1] < kmax or t2i.shape[1] < kmax:
        raise ValueError(f"k={kmax} exceeds the test set ({image_embeds.shape[0]} images); lower k")
    owner = np.asarray(caption_to_image, dtype=np.int64)
    return recall_both_directions(i2t, t2i, owner, k)


def evaluate_recall(
    adapter: VisionLanguageAdapter,
    recall_set: RecallSet,
    k: Sequence[int] = (1, 5, 10),
    *,
    cache_dir: str | os.PathLike | None = None,
    rerank_top_n: int | None = None,
    chunk_size: int = 32768,
    device: str | None = None,
    batch_size: int = 64,
    model_fingerprint: str | None = None,
    precision: str = "auto",
    rerank_score: RerankScore = "itm",
) -> dict[str, float]:
    """Recall@K image → text and text → image (percent) plus ``rsum``, via the chunked engine
    (``precision``: ``"exact-fp32"``, ``"exact-bf16"`` or ``"auto"``; the results do not depend on it).

    With ``rerank_top_n`` (BLIP) each query's first ``max(max(k), rerank_top_n)`` candidates are fetched
    and the first ``rerank_top_n`` re-ranked by the ITM head, scored by ``rerank_score`` (``"itm"``: match
    probability; ``"itm+itc"``: probability + cosine similarity, as BLIP's evaluation)."""
    opts = _cache_options(adapter, cache_dir, model_fingerprint)
    img = embed_queries(
        adapter, recall_set.images, ids=recall_set.image_ids, batch_size=batch_size,
        desc="embed Recall@K test images", **opts,
    )  # fmt: skip
    txt = embed_gallery(
        adapter, list(recall_set.captions), batch_size=batch_size, desc="embed Recall@K test captions", **opts
    )

    def itm(ranked: np.ndarray, query: str) -> np.ndarray:
        itc = None
        if rerank_score == "itm+itc":
            itc = _pair_scores(img, txt, ranked) if query == "image" else _pair_scores(txt, img, ranked)
        return rerank_with_itm(
            adapter, recall_set.images, recall_set.captions, ranked, rerank_top_n or 0, query=query,
            score=rerank_score, itc_scores=itc,
        )  # fmt: skip

    return bidirectional_recall(
        img,
        txt,
        recall_set.caption_to_image,
        k,
        chunk_size=chunk_size,
        device=device,
        progress=True,
        rerank=itm if rerank_top_n else None,
        rerank_depth=rerank_top_n or 0,
        precision=precision,
    )


def _rank_queries(
    adapter: VisionLanguageAdapter,
    queries: RetrievalQueries,
    gallery: Gallery,
    depth: int,
    opts: dict[str, Any],
    *,
    rerank_top_n: int | None,
    chunk_size: int,
    device: str | None,
    batch_size: int,
    precision: str = "auto",
    rerank_score: RerankScore = "itm",
) -> tuple[np.ndarray, np.ndarray]:
    """Each query's first ``depth`` gallery captions and their scores, (Q, depth) each."""
    q_emb = embed_queries(adapter, queries.images, ids=queries.ids, batch_size=batch_size, **opts)
    g_emb = embed_gallery(adapter, list(gallery.captions), batch_size=batch_size, **opts)
    scores, ranked = topk_similarities(
        q_emb, g_emb, min(depth, len(gallery.captions)), chunk_size=chunk_size, device=device,
        precision=precision,
    )  # fmt: skip
    if rerank_top_n:
        ranked = rerank_with_itm(
            adapter, queries.images, gallery.captions, ranked, rerank_top_n, score=rerank_score,
            itc_scores=scores if rerank_score == "itm+itc" else None,
        )  # fmt: skip
        scores = _pair_scores(q_emb, g_emb, ranked)
    return ranked, scores


def _gallery_ks(k: Sequence[int], gallery: Gallery) -> tuple[int, ...]:
    ks = tuple(int(x) for x in k)
    if not ks or min(ks) <= 0:
        raise ValueError(f"k must be positive integers, got {k!r}")
    if max(ks) > len(gallery.captions):
        raise ValueError(f"k={max(ks)} exceeds the gallery of {len(gallery.captions)} captions; lower k")
    return ks


def evaluate_retrieval(
    adapter: VisionLanguageAdapter,
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
    precision: str = "auto",
    rerank_score: RerankScore = "itm",
) -> dict[str, Any]:
    """Run the retrieval evaluation; returns a JSON-ready dict.

    Keys: ``"odmap"`` ({"odmap@k": percent}), ``"removed_mention_rate"``, ``"recall"`` (when
    ``recall_pairs`` is given), ``"num_queries"``, ``"gallery_size"``, ``"settings"`` and
    ``"per_query"`` (each query's top captions with score, relevance and whether it names a removed class).
    With ``rerank_top_n`` (BLIP), the first candidates are re-ranked by the ITM head, scored by
    ``rerank_score`` (``"itm"`` or ``"itm+itc"``, see :data:`~hf_spurious.evaluation.rerank.RERANK_SCORES`);
    Recall@K re-ranks the same depth. ``precision``
    (``"exact-fp32"``, ``"exact-bf16"``, ``"auto"``) picks the top-k engine's arithmetic; the rankings and
    scores are the same for all three.
    """
    ks = _gallery_ks(k, gallery)
    opts = _cache_options(adapter, cache_dir, model_fingerprint)
    run = {
        "rerank_top_n": rerank_top_n, "chunk_size": chunk_size, "device": device, "batch_size": batch_size,
        "precision": precision, "rerank_score": rerank_score,
    }  # fmt: skip
    depth = max(max(ks), rerank_top_n or 0, top_captions)
    ranked, scores = _rank_queries(adapter, queries, gallery, depth, opts, **run)
    odmap, mention = _score(ranked, queries, gallery, ks, present_rule, normalizer)
    result: dict[str, Any] = {
        "odmap": {key: v for key, v in odmap.items() if key.startswith("odmap@")},
        "removed_mention_rate": {
            key: v for key, v in mention.items() if key.startswith("removed_mention_rate@")
        },
        "num_queries": len(queries.images),
        "gallery_size": len(gallery.captions),
        "settings": {
            "k": list(ks), "present_rule": present_rule, "normalizer": normalizer, "rerank_top_n": rerank_top_n,
            "rerank_score": rerank_score if rerank_top_n else None, "precision": precision,
            "fingerprint": opts.get("model_fingerprint"),
        },
    }  # fmt: skip
    if recall_pairs is not None:
        fingerprint = opts.get("model_fingerprint")
        result["recall"] = evaluate_recall(
            adapter, recall_pairs, ks, cache_dir=cache_dir, model_fingerprint=fingerprint, **run
        )
    result["per_query"] = _per_query(queries, gallery, ranked, scores, odmap, mention, ks, top_captions)
    return result


def _score(
    ranked: np.ndarray,
    queries: RetrievalQueries,
    gallery: Gallery,
    ks: tuple[int, ...],
    present_rule: Literal["any", "all"],
    normalizer: Literal["k", "min_k_r"],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """ODmAP@k and the removed-mention rate of the ranked captions, with their per-query parts."""
    removed = [frozenset(x) for x in queries.removed_classes]
    present = [frozenset(x) for x in queries.present_classes]
    names = {"class_names": list(gallery.class_names), "return_per_query": True}
    odmap = odmap_at_k(
        ranked,
        gallery.classes,
        removed,
        present,
        k=ks,
        present_rule=present_rule,
        normalizer=normalizer,
        **names,
    )
    mention = removed_mention_rate_at_k(ranked, gallery.classes, removed, k=ks, **names)
    return odmap, mention


def _per_query(
    queries: RetrievalQueries,
    gallery: Gallery,
    ranked: np.ndarray,
    scores: np.ndarray,
    odmap: Mapping[str, Any],
    mention: Mapping[str, Any],
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
