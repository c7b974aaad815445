"""Re-ranking of dual-encoder candidates with an image-text matching (ITM) head (BLIP)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from hf_spurious.images import load_rgb

if TYPE_CHECKING:
    from hf_spurious.models.adapters import VisionLanguageAdapter

__all__ = ["RERANK_SCORES", "itm_pair_scores", "rerank_with_itm"]

#: How a re-ranked candidate is scored: ``"itm"`` = the ITM head's match probability alone (default);
#: ``"itm+itc"`` = that probability plus the dual-encoder (ITC) cosine similarity of the pair, the sum
#: BLIP's own retrieval evaluation ranks by (it adds the ITM head's match logit to the cosine).
RERANK_SCORES: tuple[str, ...] = ("itm", "itm+itc")
RerankScore = Literal["itm", "itm+itc"]


def itm_pair_scores(
    adapter: VisionLanguageAdapter, images: Sequence[Any], texts: Sequence[str], *, batch_size: int = 64
) -> np.ndarray:
    """ITM match probability of each (image_i, text_i) pair, float64 (N,), in batches without grad."""
    if len(images) != len(texts):
        raise ValueError(f"ITM scores pairs: got {len(images)} images and {len(texts)} texts")
    out = []
    with torch.no_grad():
        for s in range(0, len(texts), batch_size):
            pv = adapter.preprocess_images(list(images[s : s + batch_size]))
            enc = adapter.tokenize(list(texts[s : s + batch_size]))
            out.append(adapter.itm_scores(pv, enc["input_ids"], enc["attention_mask"]).float().cpu().numpy())
    return np.concatenate(out).astype(np.float64) if out else np.zeros(0)


def _one_image_itm_scores(
    adapter: VisionLanguageAdapter, image: Any, texts: Sequence[str], batch_size: int
) -> np.ndarray:
    """ITM probabilities of one image against many texts, the image encoded once (as BLIP's own evaluation
    does) when the adapter exposes ``image_states`` / ``itm_scores_from_states``."""
    if not hasattr(adapter, "itm_scores_from_states"):
        return itm_pair_scores(adapter, [image] * len(texts), texts, batch_size=batch_size)
    out = []
    with torch.no_grad():
        states = adapter.image_states(adapter.preprocess_images([image]))
        for s in range(0, len(texts), batch_size):
            enc = adapter.tokenize(list(texts[s : s + batch_size]))
            scores = adapter.itm_scores_from_states(states, enc["input_ids"], enc["attention_mask"])
            out.append(scores.float().cpu().numpy())
    return np.concatenate(out).astype(np.float64) if out else np.zeros(0)


def rerank_with_itm(
    adapter: VisionLanguageAdapter,
    images: Sequence[Any],
    captions: Sequence[str],
    indices: np.ndarray,
    top_n: int = 16,
    *,
    query: str = "image",
    batch_size: int = 64,
    score: RerankScore = "itm",
    itc_scores: np.ndarray | None = None,
) -> np.ndarray:
    """Re-rank each query's first ``top_n`` candidates by ``adapter.itm_scores`` (BLIP's ITM head).

    ``query="image"``: rows of ``indices`` are images and hold caption indices; ``query="text"``: rows are
    captions and hold image indices. Candidates past ``top_n`` keep their order; equal ITM scores keep
    the similarity order. ``score="itm+itc"`` ranks by ITM probability + ``itc_scores`` (the (Q, K)
    cosine similarities of the candidates, as returned with ``indices``). Returns the re-ordered (Q, K)
    index array.
    """
    if not hasattr(adapter, "itm_scores"):
        raise ValueError(
            "this adapter has no ITM head (itm_scores); ITM re-ranking needs a BLIP retrieval model"
        )
    if top_n <= 0:
        raise ValueError(f"top_n must be positive, got {top_n}")
    if query not in ("image", "text"):
        raise ValueError(f"query must be 'image' or 'text', got {query!r}")
    if score not in RERANK_SCORES:
        raise ValueError(f"score must be one of {list(RERANK_SCORES)}, got {score!r}")
    if score == "itm+itc" and (itc_scores is None or np.shape(itc_scores) != indices.shape):
        raise ValueError(
            "score='itm+itc' needs itc_scores: the candidates' cosine similarities, same shape as indices "
            f"{indices.shape}"
        )
    n_rows = len(images) if query == "image" else len(captions)
    if n_rows != indices.shape[0]:
        raise ValueError(f"{n_rows} {query} queries for {indices.shape[0]} rows of candidate indices")
    out = indices.copy()
    n = min(top_n, indices.shape[1])
    for q in tqdm(range(n_rows), desc="ITM re-rank", unit="query", leave=False):
        cand = indices[q, :n]
        if query == "image":
            texts = [captions[int(j)] for j in cand]
            scores = _one_image_itm_scores(adapter, load_rgb(images[q]), texts, batch_size)
        else:
            pair_images = [load_rgb(images[int(j)]) for j in cand]
            scores = itm_pair_scores(adapter, pair_images, [captions[q]] * n, batch_size=batch_size)
        if scores.shape[0] != n:
            raise ValueError(f"itm_scores returned {scores.shape[0]} scores for {n} pairs")
        if score == "itm+itc":
            scores = scores + np.asarray(itc_scores[q, :n], dtype=np.float64)
        out[q, :n] = cand[np.argsort(-scores, kind="stable")]
    return out
