"""Exact chunked top-k over inner products, never building the dense ``queries x gallery`` matrix.

Queries are processed in blocks of ``query_chunk_size`` rows, and the gallery in chunks of ``chunk_size``
rows, keeping a running top-k per query that is merged with each gallery chunk's top-k.

**Ties** are broken by the lower gallery index (a stable order): among equal similarities the caption
that comes first in the gallery ranks first. The result is therefore exactly the first ``k`` entries of a
stable descending sort of each dense similarity row of the fp32 reference scores (defined in
:mod:`.topk_kernels`: one canonical fp32 kernel per query block).

**Precision.** ``"exact-fp32"`` scores every pair in fp32. ``"exact-bf16"`` (CPU) scores every pair in
bf16, keeps the rows a proven error bound cannot exclude, and re-scores those in fp32
(:mod:`.exact_topk`); its indices and scores are the exact-fp32 ones, bit for bit. ``"auto"`` (default)
takes bf16 only where the CPU has native bf16, the problem is large, and bf16 measures faster.
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from .exact_topk import PRECISIONS, bf16_topk, resolve_precision
from .topk_kernels import ArrayLike, check_finite, check_inputs, fp32_block_topk, resolve_device, rows_fp32

__all__ = ["PRECISIONS", "ArrayLike", "check_finite", "resolve_device", "topk_similarities"]


def topk_similarities(
    queries: ArrayLike,
    gallery: ArrayLike,
    k: int,
    *,
    chunk_size: int = 32768,
    query_chunk_size: int = 1024,
    device: str | torch.device | None = None,
    check: bool = True,
    progress: bool = True,
    precision: str = "auto",
    max_candidates: int = 4096,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` inner products of each query with the gallery, by chunked matrix products.

    ``queries`` (Q, d) and ``gallery`` (G, d) are numpy arrays (memory-mapped ones too) or tensors;
    pass L2-normalised embeddings to rank by cosine. Returns ``(scores, indices)``, both (Q, min(k, G)),
    scores descending, ties broken by the lower gallery index. Runs on ``device`` (default: CUDA when
    present). ``precision``: ``"exact-fp32"``, ``"exact-bf16"`` or ``"auto"`` (same results; see module
    doc); ``max_candidates``: bf16 candidates per query beyond which that query block runs in fp32. Peak
    extra memory is about ``query_chunk_size * chunk_size * 4`` bytes.
    """
    check_inputs(queries, gallery, k, chunk_size, query_chunk_size, check)
    n_q, n_g = int(queries.shape[0]), int(gallery.shape[0])
    k = int(min(k, n_g))
    dev = resolve_device(device)
    mode = resolve_precision(precision, dev, n_q, n_g, int(gallery.shape[1]), query_chunk_size)
    n_blocks = -(-n_q // query_chunk_size)
    steps = n_blocks * -(-n_g // chunk_size)
    bar = tqdm(total=steps, desc=f"top-k ({mode})", unit="chunk", disable=not progress, leave=False)
    with torch.no_grad():
        if mode == "exact-bf16":
            vals, idx, _ = bf16_topk(
                queries, gallery, k, chunk_size=chunk_size, query_chunk_size=query_chunk_size,
                max_candidates=max_candidates, bar=bar,
            )  # fmt: skip
            bar.close()
            return vals.numpy(), idx.numpy()
        out_v = np.empty((n_q, k), dtype=np.float32)
        out_i = np.empty((n_q, k), dtype=np.int64)
        g_all = gallery.float() if torch.is_tensor(gallery) and gallery.device == dev else gallery
        for qs in range(0, n_q, query_chunk_size):
            q = rows_fp32(queries[qs : qs + query_chunk_size], dev)
            v, i = fp32_block_topk(q, g_all, k, chunk_size, on_chunk=lambda: bar.update(1))
            out_v[qs : qs + len(q)] = v.cpu().numpy()
            out_i[qs : qs + len(q)] = i.cpu().numpy()
    bar.close()
    return out_v, out_i
