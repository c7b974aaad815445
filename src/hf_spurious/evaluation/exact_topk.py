"""Exact top-k faster than fp32: bf16 candidates with a proven error bound, then fp32 verification.

**Stage 1** scores every (query, gallery row) pair with a bf16 matrix product (fp32 accumulation, bf16
output) and keeps, per query, every row whose bf16 score ``b`` could still be in the fp32 top-k.
**Stage 2** re-scores only the kept rows with the canonical fp32 kernel (:func:`.topk_kernels.fp32_scores`,
the same query block as the exact-fp32 pass) and takes the exact top-k with the engine's tie rule, so the
indices *and* the scores equal the exact-fp32 result bit for bit.

**The bound.** Let ``s`` be the fp32 reference score of ``q`` and ``g`` and ``q~ = bf16(q)``,
``dq = q - q~`` (likewise ``g~``, ``dg``); ``u = 2^-8`` is the bf16 unit roundoff, ``v = 2^-24`` the fp32
one, ``gamma_d = d v / (1 - d v)``.

1. Input rounding: ``q.g - q~.g~ = dq.g + q~.dg``, so ``|q.g - q~.g~| <= |dq| |g| + |q~| |dg|``
   (Cauchy-Schwarz; ``|dq|`` is the *measured* norm of the query's rounding error, ``|dg|`` is bounded by
   ``u |g| + sqrt(d) 2^-126`` for a whole gallery chunk, which saves a pass over the gallery; this is the
   ``sum |q_i||g_i| (2u + u^2)`` term made sharper and valid for embeddings of any norm).
2. Accumulation: the products of bf16 numbers are exact in fp32; the fp32 sum of ``d`` terms, in any order,
   errs by at most ``gamma_d sum |q~_i g~_i| <= gamma_d |q~| |g~|``.
3. Output: rounding the fp32 sum to bf16 errs by at most ``u |b|`` (round to nearest, relative to ``b``).
4. The fp32 reference itself errs from ``q.g`` by at most ``gamma_d |q| |g|``.
5. Flushing of subnormals (AMX / oneDNN run with FTZ/DAZ) costs at most
   ``2^-126 (sqrt(d) (|q~| + |g~|) + 2d + 1)``.

With ``e = (1) + (2) + (4) + (5)`` (per query and per gallery chunk, from the chunk's largest ``|g|`` and
``|dg|``, all in float64 and inflated by ``2^-30`` to cover their own rounding):
``b - u|b| - e <= s <= b + u|b| + e``. If ``L`` is the k-th largest lower bound ``b - u|b| - e`` over
distinct rows, then the k-th best fp32 score ``s_k >= L``, and every row of the fp32 top-k (ties included)
has ``s >= s_k >= L``, hence ``b + u|b| + e >= L``: keeping exactly those rows is safe. For unit-norm
embeddings the window ``2e + 2u|b|`` is about ``2.2 u + 2 u |b|``, ~0.01-0.02 in cosine.

Stage 1 takes block maxima over ``select_block`` columns to find ``L`` and the candidate blocks cheaply
(the k-th largest block maximum is a lower bound of the k-th largest ``b``). A query whose candidate set
passes ``max_candidates`` sends its whole query block to the exact-fp32 pass (re-scoring must use the same
query block for the bits to agree), as does a block whose candidates cover half the gallery, and a block
whose height the BLAS handles with shape-dependent bits (:func:`rescoring_is_bit_stable`; with MKL this
happens for small products, e.g. fewer than 8 query rows at d <= 128).
"""

from __future__ import annotations

import functools
import math
import time

import numpy as np
import torch

from .topk_kernels import ArrayLike, fp32_block_topk, fp32_scores, rows_fp32

__all__ = ["PRECISIONS", "bf16_error_terms", "bf16_topk", "hardware_bf16", "resolve_precision"]

PRECISIONS = ("exact-fp32", "exact-bf16", "auto")
U_BF16 = 2.0**-8
U_FP32 = 2.0**-24
_SLACK = 1.0 + 2.0**-30
#: Below this many multiply-adds, auto stays with fp32 (the probes and selection do not pay off).
AUTO_MIN_WORK = 2**33


def _gamma(d: int) -> float:
    return d * U_FP32 / (1.0 - d * U_FP32)


def _split(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``bf16(x)`` and upper bounds (float64) of the row norms of ``x`` and of ``x - bf16(x)``.

    The rounding error ``x - bf16(x)`` is exact in fp32; the fp32 norms err by far less than the
    ``2^-10`` they are inflated by."""
    xb = x.to(torch.bfloat16)
    up = 1.0 + 2.0**-10
    norm = torch.linalg.vector_norm(x, dim=1).double() * up
    return xb, norm, torch.linalg.vector_norm(x - xb.float(), dim=1).double() * up


def _split_chunk(g: torch.Tensor) -> tuple[torch.Tensor, float, float]:
    """``bf16(g)``, the largest row norm ``|g|`` and a bound on the largest ``|g - bf16(g)|`` of a gallery chunk.

    The rounding error is bounded, not measured (one pass over the chunk instead of three): round to nearest
    errs by at most ``u |x|`` per normal element, and by less than ``2^-126`` per element that is subnormal
    (flushed or not), so ``|g - bf16(g)| <= u |g| + sqrt(d) 2^-126``."""
    gmax = float(torch.linalg.vector_norm(g, dim=1).max()) * (1.0 + 2.0**-10)
    return g.to(torch.bfloat16), gmax, U_BF16 * gmax + math.sqrt(g.shape[1]) * 2.0**-126


def bf16_error_terms(q_norm, q_err, g_norm, g_err, d: int):
    """``e`` of the module doc for query norms ``|q|``, ``|dq|`` and gallery norms ``|g|``, ``|dg|``
    (tensors or floats; broadcast). ``|b - s| <= u|b| + e`` for the bf16 output ``b``."""
    qt, gt = q_norm + q_err, g_norm + g_err  # |q~| <= |q| + |dq|
    e_in = q_err * g_norm + qt * g_err
    e_acc = _gamma(d) * (qt * gt + q_norm * g_norm)
    e_flush = 2.0**-126 * (math.sqrt(d) * (qt + gt) + 2 * d + 1)
    return (e_in + e_acc + e_flush) * _SLACK


def _lower(b: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    return b - U_BF16 * b.abs() - e


def _below(y: torch.Tensor) -> torch.Tensor:
    """Smallest ``b`` with ``b + u|b| >= y`` (inverse of an increasing map), as float32 rounded down."""
    b = torch.where(y >= 0, y / (1 + U_BF16), y / (1 - U_BF16)) * (1 - 2.0**-40)
    b32 = b.float()
    return torch.where(b32.double() > b, torch.nextafter(b32, torch.tensor(-math.inf)), b32)


class _Block:
    """Stage-1 state of one query block: bf16 rows, norms, candidates (row, column, upper bound)."""

    def __init__(self, start: int, q: torch.Tensor, k: int) -> None:
        self.start, self.fallback = start, False
        self.qb, self.qn, self.qe = _split(q)
        self.lo = torch.full((q.shape[0], k), -math.inf, dtype=torch.float64)
        self.rows: list[torch.Tensor] = []
        self.cols: list[torch.Tensor] = []
        self.ub: list[torch.Tensor] = []

    def prune(self, max_candidates: int) -> None:
        if not self.rows:
            return
        rows, cols, ub = torch.cat(self.rows), torch.cat(self.cols), torch.cat(self.ub)
        keep = ub >= self.lo[rows, -1]
        rows, cols, ub = rows[keep], cols[keep], ub[keep]
        self.rows, self.cols, self.ub = [rows], [cols], [ub]
        if len(rows) and int(torch.bincount(rows).max()) > max_candidates:
            self.fallback = True
            self.rows, self.cols, self.ub = [], [], []


def _block_max(b: torch.Tensor, blk: int) -> torch.Tensor:
    """Row maxima of ``nb = width // blk`` strided blocks (block ``j``: columns ``j + t nb``, ``t < blk``)
    plus one block of the remaining columns, as float32 (a strided max runs ~3x faster than a
    contiguous one)."""
    nb = b.shape[1] // blk
    if blk == 1:
        return b.float()
    parts = [b[:, : nb * blk].unflatten(1, (blk, nb)).amax(dim=1)] if nb else []
    if nb * blk < b.shape[1]:
        parts.append(b[:, nb * blk :].amax(dim=1, keepdim=True))
    return torch.cat(parts, dim=1).float()


def _block_columns(j: torch.Tensor, blk: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Columns (n, blk) of the blocks ``j`` of :func:`_block_max` (clamped) and which are real."""
    nb = width // blk
    start = torch.where(j < nb, j, nb * blk)
    step = torch.where(j < nb, nb, 1)
    cols = start[:, None] + torch.arange(blk)[None, :] * step[:, None]
    valid = cols < width
    return cols.clamp_(max=width - 1), valid


def _stage1_chunk(state: _Block, gb: torch.Tensor, e: torch.Tensor, gs: int, k: int, blk: int) -> None:
    """Score one gallery chunk in bf16, raise the running k-th lower bound, collect candidates."""
    b = state.qb @ gb.T
    bm = _block_max(b, blk)
    top = torch.topk(bm, min(k, bm.shape[1]), dim=1).values.double()
    lo = torch.cat([state.lo, _lower(top, e[:, None])], dim=1)
    state.lo = torch.topk(lo, state.lo.shape[1], dim=1).values
    thr = _below(state.lo[:, -1] - e)
    r, j = torch.nonzero(bm >= thr[:, None], as_tuple=True)
    if not len(r):
        return
    cols, valid = _block_columns(j, blk, b.shape[1])
    vals = b[r[:, None], cols].float()
    take = valid & (vals >= thr[r][:, None])
    rows = r[:, None].expand_as(cols)[take]
    bsel = vals[take].double()
    state.rows.append(rows)
    state.cols.append(cols[take] + gs)
    state.ub.append(bsel + U_BF16 * bsel.abs() + e[rows])


def bf16_topk(
    queries: ArrayLike,
    gallery: ArrayLike,
    k: int,
    *,
    chunk_size: int,
    query_chunk_size: int,
    max_candidates: int = 4096,
    select_block: int = 32,
    bar=None,
) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Two-stage exact top-``k`` on the CPU (see module doc); returns ``(scores, indices, stats)``.

    ``stats``: ``candidates`` (mean rows re-scored per query), ``fallback_blocks`` (query blocks that ran
    the exact-fp32 pass instead).
    """
    cpu = torch.device("cpu")
    n_q, n_g, d = int(queries.shape[0]), int(gallery.shape[0]), int(gallery.shape[1])
    blocks = [
        _Block(s, rows_fp32(queries[s : s + query_chunk_size], cpu), k)
        for s in range(0, n_q, query_chunk_size)
    ]
    for gs in range(0, n_g, chunk_size):
        gb, gmax, emax = _split_chunk(rows_fp32(gallery[gs : gs + chunk_size], cpu))
        blk = select_block if gb.shape[0] >= 4 * k * select_block else 1
        for st in blocks:
            if not st.fallback:
                e = bf16_error_terms(st.qn, st.qe, gmax, emax, d)
                _stage1_chunk(st, gb, e, gs, k, blk)
                st.prune(max_candidates)
            if bar is not None:
                bar.update(1)
    out_v = torch.empty((n_q, k), dtype=torch.float32)
    out_i = torch.empty((n_q, k), dtype=torch.int64)
    stats = {"candidates": 0.0, "fallback_blocks": 0}
    for st in blocks:
        q = rows_fp32(queries[st.start : st.start + query_chunk_size], cpu)
        st.prune(max_candidates)
        cols = torch.unique(torch.cat(st.cols)).numpy() if st.cols else np.empty(0, np.int64)
        unstable = not rescoring_is_bit_stable(len(q), d, torch.get_num_threads())
        if st.fallback or unstable or len(cols) * 2 > n_g:
            stats["fallback_blocks"] += 1
            v, i = fp32_block_topk(q, gallery, k, chunk_size)
        else:
            stats["candidates"] += float(sum(len(r) for r in st.rows))
            v, i = fp32_block_topk(q, gallery, k, chunk_size, columns=cols)
        out_v[st.start : st.start + len(q)], out_i[st.start : st.start + len(q)] = v, i
    stats["candidates"] /= max(n_q, 1)
    return out_v, out_i, stats


def hardware_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX512-BF16 / AMX) through oneDNN."""
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


@functools.lru_cache(maxsize=32)
def rescoring_is_bit_stable(m: int, d: int, threads: int) -> bool:
    """Whether a fp32 score of an ``m``-row query block is the same bits whatever gallery rows share the
    product (the property stage 2 relies on), on random data of this shape."""
    gen = torch.Generator().manual_seed(m * 7919 + d)
    q, g = torch.randn(m, d, generator=gen), torch.randn(2048, d, generator=gen)
    full = fp32_scores(q, g)
    for n in (1, 2, 3, 5, 17, 64, 129, 1000):
        cols = torch.randperm(2048, generator=gen)[:n].sort().values
        if not torch.equal(fp32_scores(q, g[cols]), full[:, cols]):
            return False
    return True


@functools.lru_cache(maxsize=8)
def bf16_speedup(d: int, threads: int) -> float:
    """Measured fp32 / bf16 time ratio of a 512 x 8192 x ``d`` product (median of 3; one-time probe)."""
    q, g = torch.randn(512, d), torch.randn(8192, d)
    qb, gb = q.bfloat16(), g.bfloat16()

    def median(f) -> float:
        f()
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            f()
            times.append(time.perf_counter() - t0)
        return sorted(times)[1]

    return median(lambda: q @ g.T) / median(lambda: qb @ gb.T)


def resolve_precision(precision: str, device: torch.device, n_q: int, n_g: int, d: int, qchunk: int) -> str:
    """``"exact-fp32"`` or ``"exact-bf16"`` for this call; ``auto`` picks bf16 only on a CPU with native
    bf16, for a large enough problem, where the re-scoring is bit-stable and bf16 measures >= 1.7x faster."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "exact-fp32":
        return precision
    if precision == "exact-bf16":
        if device.type != "cpu":
            raise ValueError(
                "precision='exact-bf16' runs on the CPU only; use 'exact-fp32' (or 'auto') on a GPU"
            )
        return precision
    threads = torch.get_num_threads()
    if device.type != "cpu" or n_q * n_g * d < AUTO_MIN_WORK or not hardware_bf16():
        return "exact-fp32"
    if rescoring_is_bit_stable(min(qchunk, n_q), d, threads) and bf16_speedup(d, threads) >= 1.7:
        return "exact-bf16"
    return "exact-fp32"
