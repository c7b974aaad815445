"""Global negatives under data parallelism: gather the rows of every process, keeping the local gradient.

Under DDP each process holds B/N rows of the global batch. :func:`gather_rows` returns the (B, ...) rows of
all processes in rank order; the other processes' rows are constants and this process's rows are its own
tensor, so every process computes the loss of the whole global batch while gradients reach only its own
rows. To make DDP's *average* of the per-process gradients equal the gradient of one process holding the
global batch, the gradient that reaches the local rows is multiplied by the world size N (the sum over the
N processes of the per-row gradients is the full gradient). Parameters that enter the loss on every process
alike (the logit scale, prompt embeddings) get their full gradient on every process and are not scaled, so
this is exact for any mix of gathered and per-process inputs.

Processes may hold different numbers of rows (an uneven last batch): sizes are exchanged first and the
rows padded for the collective, then trimmed. Without an initialised ``torch.distributed`` process group
(or with one process) everything is returned as it is.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["gather_rows", "is_distributed", "world_size"]


def is_distributed() -> bool:
    """A ``torch.distributed`` process group with more than one process is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """Number of processes of the initialised process group (1 without one)."""
    return dist.get_world_size() if is_distributed() else 1


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; backward multiplies the gradient by ``factor``."""

    @staticmethod
    def forward(ctx, x: Tensor, factor: float) -> Tensor:  # type: ignore[override]
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        return grad * ctx.factor, None


def _all_sizes(n: int, device: torch.device) -> list[int]:
    sizes = [torch.zeros(1, dtype=torch.long, device=device) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, torch.tensor([n], dtype=torch.long, device=device))
    return [int(s) for s in sizes]


def gather_rows(*tensors: Tensor | None) -> list[Tensor | None]:
    """Each tensor's rows (dim 0) from every process, in rank order; ``None`` stays ``None``.

    Every process must call this with the same number of tensors, in the same order, with the same
    trailing shapes and dtypes (row counts may differ). A tensor that requires grad keeps this process's
    rows in the graph, their gradient scaled by the world size (see the module docstring); the other rows
    are constants. Without a process group of 2+ processes the tensors come back unchanged.
    """
    if not is_distributed():
        return list(tensors)
    present = [t for t in tensors if t is not None]
    if not present:
        return list(tensors)
    rank, n = dist.get_rank(), dist.get_world_size()
    sizes = _all_sizes(present[0].shape[0], present[0].device)
    out: list[Tensor | None] = []
    for t in tensors:
        if t is None:
            out.append(None)
            continue
        if t.shape[0] != sizes[rank]:
            raise ValueError(
                f"gather_rows: tensors of one call need the same rows ({sizes[rank]} vs {t.shape[0]})"
            )
        out.append(_gather_one(t, sizes, rank, n))
    return out


def _gather_one(t: Tensor, sizes: Sequence[int], rank: int, n: int) -> Tensor:
    longest = max(sizes)
    local = t.detach().contiguous()
    if local.dtype == torch.bool:  # not every backend gathers bool tensors
        return _gather_one(local.to(torch.uint8), sizes, rank, n).bool()
    if local.shape[0] < longest:
        pad = local.new_zeros((longest - local.shape[0], *local.shape[1:]))
        local = torch.cat([local, pad])
    parts = [torch.empty_like(local) for _ in range(n)]
    dist.all_gather(parts, local)
    rows = [p[:s] for p, s in zip(parts, sizes)]
    rows[rank] = _ScaleGrad.apply(t, float(n)) if t.requires_grad else t
    return torch.cat(rows)
