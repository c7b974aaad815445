"""Exact chunked top-k over inner products, never building the dense ``queries x gallery`` matrix.

Queries are processed in chunks of ``query_chunk_size`` rows, and for each query chunk the gallery is
scanned in chunks of ``chunk_size`` rows, keeping a running top-k per query that is merged with each
gallery chunk's top-k.

**Ties** are broken by the lower gallery index (a stable order): among equal similarities the caption
that comes first in the gallery ranks first. The result is therefore exactly the first ``k`` entries of a
stable descending sort of each dense similarity row.
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

ArrayLike = np.ndarray | torch.Tensor

__all__ = ["ArrayLike", "check_finite", "resolve_device", "topk_similarities"]


def _as_2d(x: ArrayLike, name: str) -> ArrayLike:
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (n, d) array of embeddings, got shape {tuple(x.shape)}")
    return x


def check_finite(x: ArrayLike, name: str, *, chunk_rows: int = 65536) -> None:
    """Raise ``ValueError`` naming the first row of ``x`` that holds a NaN or an infinity."""
    for start in range(0, x.shape[0], chunk_rows):
        block = x[start : start + chunk_rows]
        bad = ~torch.isfinite(block).all(dim=1) if torch.is_tensor(block) else ~np.isfinite(block).all(axis=1)
        if bool(bad.any()):
            row = start + int(np.flatnonzero(np.asarray(bad.cpu() if torch.is_tensor(bad) else bad))[0])
            raise ValueError(
                f"{name} row {row} contains NaN or infinite values; re-embed that item "
                "(a NaN usually means an empty input or a model loaded in the wrong dtype)"
            )


def _to_device(block: ArrayLike, device: torch.device) -> torch.Tensor:
    if not torch.is_tensor(block):
        arr = np.ascontiguousarray(block, dtype=np.float32)
        block = torch.from_numpy(arr if arr.flags.writeable else arr.copy())
    t = block
    return t.to(device=device, dtype=torch.float32)


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``device`` as a ``torch.device``; None means CUDA when present, else the CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _lexsort_desc(values: torch.Tensor, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sort each row by value descending, then by index ascending (ties)."""
    by_index = torch.argsort(indices, dim=1, stable=True)
    values, indices = values.gather(1, by_index), indices.gather(1, by_index)
    by_value = torch.argsort(values, dim=1, descending=True, stable=True)
    return values.gather(1, by_value), indices.gather(1, by_value)


def _chunk_topk(sims: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-k of each row of ``sims`` with ties broken by lower column index, sorted."""
    n = sims.shape[1]
    if k >= n:
        cols = torch.arange(n, device=sims.device).expand_as(sims)
        return _lexsort_desc(sims, cols)
    # Take k+1: when the (k+1)-th value is strictly smaller than the k-th, the top-k *set* is unique.
    vals, idx = torch.topk(sims, k + 1, dim=1, largest=True, sorted=True)
    ambiguous = vals[:, k - 1] == vals[:, k]
    vals, idx = vals[:, :k], idx[:, :k]
    if bool(ambiguous.any()):
        rows = torch.nonzero(ambiguous).squeeze(1)
        sub = sims[rows]
        thr = vals[rows, k - 1 : k]
        greater = sub > thr
        need = k - greater.sum(dim=1, keepdim=True)
        equal = sub == thr
        take = greater | (equal & (torch.cumsum(equal, dim=1) <= need))
        cols = torch.nonzero(take)[:, 1].view(len(rows), k)  # row-major: k columns per row, ascending
        idx[rows] = cols
        vals[rows] = sub.gather(1, cols)
    return _lexsort_desc(vals, idx)


def _merge(
    run_v: torch.Tensor | None, run_i: torch.Tensor | None, v: torch.Tensor, i: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    if run_v is None or run_i is None:
        return v[:, :k], i[:, :k]
    vals, idx = _lexsort_desc(torch.cat([run_v, v], dim=1), torch.cat([run_i, i], dim=1))
    return vals[:, :k], idx[:, :k]


def _check_inputs(
    queries: ArrayLike, gallery: ArrayLike, k: int, chunk_size: int, query_chunk_size: int, check: bool
) -> None:
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k <= 0:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if chunk_size <= 0 or query_chunk_size <= 0:
        raise ValueError(f"chunk sizes must be positive, got {chunk_size=} {query_chunk_size=}")
    _as_2d(queries, "queries")
    _as_2d(gallery, "gallery")
    if queries.shape[1] != gallery.shape[1]:
        raise ValueError(
            f"queries have dimension {queries.shape[1]} but gallery has {gallery.shape[1]}; "
            "embed both with the same model"
        )
    if int(gallery.shape[0]) == 0:
        raise ValueError("the gallery is empty; nothing to retrieve")
    if check:
        check_finite(queries, "queries")
        check_finite(gallery, "gallery")


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
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` inner products of each query with the gallery, by chunked matrix products.

    ``queries`` (Q, d) and ``gallery`` (G, d) are numpy arrays (memory-mapped ones too) or tensors;
    pass L2-normalised embeddings to rank by cosine. Returns ``(scores, indices)``, both (Q, min(k, G)),
    scores descending, ties broken by the lower gallery index. Runs on ``device`` (default: CUDA when
    present). Peak extra memory is about ``query_chunk_size * chunk_size * 4`` bytes.
    """
    _check_inputs(queries, gallery, k, chunk_size, query_chunk_size, check)
    n_q, n_g = int(queries.shape[0]), int(gallery.shape[0])
    k = int(min(k, n_g))
    dev = resolve_device(device)
    out_v = np.empty((n_q, k), dtype=np.float32)
    out_i = np.empty((n_q, k), dtype=np.int64)
    steps = [(qs, gs) for qs in range(0, n_q, query_chunk_size) for gs in range(0, n_g, chunk_size)]
    bar = tqdm(total=len(steps), desc="top-k", unit="chunk", disable=not progress, leave=False)
    gallery_on_device = None
    if torch.is_tensor(gallery) and gallery.device == dev:
        gallery_on_device = gallery.float()
    with torch.no_grad():
        for qs in range(0, n_q, query_chunk_size):
            q = _to_device(queries[qs : qs + query_chunk_size], dev)
            run_v = run_i = None
            for gs in range(0, n_g, chunk_size):
                g = (
                    gallery_on_device[gs : gs + chunk_size]
                    if gallery_on_device is not None
                    else _to_device(gallery[gs : gs + chunk_size], dev)
                )
                sims = q @ g.T
                v, i = _chunk_topk(sims, k)
                run_v, run_i = _merge(run_v, run_i, v, i + gs, k)
                del sims
                bar.update(1)
            assert run_v is not None and run_i is not None
            out_v[qs : qs + len(q)] = run_v.cpu().numpy()
            out_i[qs : qs + len(q)] = run_i.cpu().numpy()
    bar.close()
    return out_v, out_i
