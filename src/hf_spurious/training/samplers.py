"""Group-balanced sampling (the WILDS ``uniform_over_groups`` loader used by Yang et al.)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler


def group_weights(groups: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """Per-example weight ``1 / |group|``, so every non-empty group has the same total mass."""
    g = torch.as_tensor(list(groups) if not isinstance(groups, torch.Tensor) else groups, dtype=torch.long)
    if g.dim() != 1 or g.numel() == 0:
        raise ValueError("groups must be a non-empty 1-D sequence of group ids")
    if (g < 0).any():
        bad = int((g < 0).nonzero()[0])
        raise ValueError(
            f"example {bad} has no group (id {int(g[bad])}); every example needs label and attribute"
        )
    counts = torch.bincount(g)
    return 1.0 / counts[g].double()


def global_draw_size(num_examples: int, global_batch: int) -> int:
    """Draws per epoch: ``num_examples`` rounded up to whole global batches (``global_batch`` = per-process
    batch x processes), so that every process gets only whole batches of the one global draw and none is
    padded with repeated draws (accelerate's ``even_batches``). The trainer uses it with 2+ processes only
    (one process keeps ``num_examples`` draws, a partial last batch included)."""
    if num_examples <= 0 or global_batch <= 0:
        raise ValueError(f"need num_examples > 0 and global_batch > 0, got {num_examples}, {global_batch}")
    return -(-num_examples // global_batch) * global_batch


class GroupBalancedSampler(Sampler[int]):
    """Draws ``num_samples`` (default ``len(groups)``) indices per epoch **with replacement**, each example
    with probability proportional to ``1 / |group|``. Seeded by ``(seed, epoch)``; the Trainer calls
    :meth:`set_epoch` each epoch, so every process of a distributed run draws the same sequence, of which
    accelerate's data loader gives process r the batches r, r + N, ... (disjoint shares of one draw; size
    the draw with :func:`global_draw_size` so no process is padded)."""

    def __init__(
        self, groups: Sequence[int] | torch.Tensor, num_samples: int | None = None, seed: int = 0
    ) -> None:
        self.weights = group_weights(groups)
        self.num_samples = int(num_samples if num_samples is not None else len(self.weights))
        if self.num_samples <= 0:
            raise ValueError(f"num_samples must be positive, got {self.num_samples}")
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[int]:
        gen = torch.Generator().manual_seed(self.seed + 1_000_003 * self.epoch)
        yield from torch.multinomial(self.weights, self.num_samples, replacement=True, generator=gen).tolist()

    def __len__(self) -> int:
        return self.num_samples
