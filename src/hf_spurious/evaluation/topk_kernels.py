"""Building blocks of the exact top-k engine: input checks, the canonical fp32 score kernel, the per-chunk
top-k with the engine's tie rule, and the exact fp32 pass over one block of queries.

**Ties** are broken by the lower gallery index (a stable order): among equal scores the caption that comes
first in the gallery ranks first, so a result is exactly the first ``k`` entries of a stable descending
sort of each similarity row.

**The fp32 reference score** of a query ``q`` and a gallery row ``g`` is the entry of
:func:`fp32_scores` (one fp32 matrix product) of *q's query block* (the ``query_chunk_size`` rows that
contain it, as the engine splits the queries) with *any* set of gallery rows that contains ``g``. A BLAS
(MKL here) picks its kernel, and so the order of the fp32 additions, from the matrix shapes: the same pair
can differ in the last bits between a product with one query row (a matrix-vector kernel) and one with
many, or between one and many gallery rows. :func:`fp32_scores` therefore never runs a one-row or
one-column product (it duplicates the row and drops the copy), and the value for a pair depends only on
its query block, not on which other gallery rows share the product (checked at run time by
``hf_spurious.evaluation.exact_topk.rescoring_is_bit_stable`` before the two-stage path is used). Both the
exact-fp32 pass and the fp32 verification of the bf16 path score through this one kernel, so the two agree
bit for bit.
"""

from __future__ import annotations

import numpy as np
import torch

ArrayLike = np.ndarray | torch.Tensor

__all__ = [
    "ArrayLike",
    "check_finite",
    "check_inputs",
    "chunk_topk",
    "fp32_block_topk",
    "fp32_scores",
    "merge_topk",
    "resolve_device",
    "rows_fp32",
]


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


def check_inputs(
    queries: ArrayLike, gallery: ArrayLike, k: int, chunk_size: int, query_chunk_size: int, check: bool
) -> None:
    """Validate the engine's arguments; every error names the item and the fix."""
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k <= 0:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if chunk_size <= 0 or query_chunk_size <= 0:
        raise ValueError(f"chunk sizes must be positive, got {chunk_size=} {query_chunk_size=}")
    for x, name in ((queries, "queries"), (gallery, "gallery")):
        if x.ndim != 2:
            raise ValueError(f"{name} must be a 2-D (n, d) array of embeddings, got shape {tuple(x.shape)}")
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


def rows_fp32(block: ArrayLike, device: torch.device) -> torch.Tensor:
    """``block`` (numpy, memory-mapped or tensor) as a float32 tensor on ``device``."""
    if not torch.is_tensor(block):
        arr = np.ascontiguousarray(block, dtype=np.float32)
        block = torch.from_numpy(arr if arr.flags.writeable else arr.copy())
    return block.to(device=device, dtype=torch.float32)


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``device`` as a ``torch.device``; None means CUDA when present, else the CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def fp32_scores(q: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """The canonical fp32 scores ``q @ g.T`` (M, N): never a one-row or one-column product (see module doc)."""
    m, n = q.shape[0], g.shape[0]
    if m == 1:
        q = torch.cat([q, q])
    if n == 1:
        g = torch.cat([g, g])
    sims = q @ g.T
    return sims[:m, :n] if (m == 1 or n == 1) else sims


def lexsort_desc(values: torch.Tensor, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sort each row by value descending, then by index ascending (ties)."""
    by_index = torch.argsort(indices, dim=1, stable=True)
    values, indices = values.gather(1, by_index), indices.gather(1, by_index)
    by_value = torch.argsort(values, dim=1, descending=True, stable=True)
    return values.gather(1, by_value), indices.gather(1, by_value)


def chunk_topk(sims: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-k of each row of ``sims`` with ties broken by lower column index, sorted."""
    n = sims.shape[1]
    if k >= n:
        cols = torch.arange(n, device=sims.device).expand_as(sims)
        return lexsort_desc(sims, cols)
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
    return lexsort_desc(vals, idx)


def merge_topk(
    run_v: torch.Tensor | None, run_i: torch.Tensor | None, v: torch.Tensor, i: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge a running top-k with a new chunk's top-k (global indices), keeping the tie rule."""
    if run_v is None or run_i is None:
        return v[:, :k], i[:, :k]
    vals, idx = lexsort_desc(torch.cat([run_v, v], dim=1), torch.cat([run_i, i], dim=1))
    return vals[:, :k], idx[:, :k]


def fp32_block_topk(
    q: torch.Tensor,
    gallery: ArrayLike,
    k: int,
    chunk_size: int,
    columns: np.ndarray | None = None,
    on_chunk=None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact fp32 top-``k`` of the query block ``q`` over the gallery, chunk by chunk.

    With ``columns`` (ascending gallery indices) only those rows are scored; the scores are the same
    bits as in a full pass (see module doc). ``on_chunk()`` is called after each chunk (progress).
    """
    n = int(gallery.shape[0]) if columns is None else len(columns)
    on_dev = torch.is_tensor(gallery) and gallery.device == q.device
    run_v = run_i = None
    for s in range(0, n, chunk_size):
        if columns is None:
            g = gallery[s : s + chunk_size]
            offset: int | torch.Tensor = s
        else:
            cols = columns[s : s + chunk_size]
            g = (
                gallery[torch.from_numpy(cols).to(gallery.device)]
                if torch.is_tensor(gallery)
                else gallery[cols]
            )
            offset = torch.from_numpy(cols).to(q.device)
        g = g.float() if on_dev else rows_fp32(g, q.device)
        v, i = chunk_topk(fp32_scores(q, g), min(k, g.shape[0]))
        i = i + offset if columns is None else offset[i]  # type: ignore[index]
        run_v, run_i = merge_topk(run_v, run_i, v, i, k)
        if on_chunk is not None:
            on_chunk()
    assert run_v is not None and run_i is not None
    return run_v, run_i
