"""Online Group DRO (Sagawa et al., ICLR 2020), as in WILDS' ``GroupDRO`` algorithm."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor


class GroupDRO:
    """Keeps adversarial group weights ``q`` and turns per-example losses into the robust loss.

    Each step: per-group mean losses ``L_g`` over the groups present in the batch; adjusted losses
    ``L_g + C / sqrt(n_g)`` (``n_g`` = training count of group g, ``C`` = generalisation adjustment);
    ``q_g <- q_g * exp(eta * adjusted L_g)`` for present groups, then ``q <- q / sum(q)``; the loss is
    ``sum_g q_g L_g`` (``q`` treated as a constant).
    """

    def __init__(
        self, group_counts: Sequence[int], step_size: float = 0.01, generalization_adjustment: float = 0.0
    ) -> None:
        counts = torch.as_tensor(list(group_counts), dtype=torch.float64)
        if counts.dim() != 1 or counts.numel() == 0:
            raise ValueError("group_counts must be a non-empty list of training counts per group")
        self.group_counts = counts
        self.step_size = float(step_size)
        self.adjustment = float(generalization_adjustment)
        self.q = torch.full((counts.numel(),), 1.0 / counts.numel(), dtype=torch.float64)

    @property
    def num_groups(self) -> int:
        return int(self.q.numel())

    def group_losses(self, losses: Tensor, groups: Tensor) -> tuple[Tensor, Tensor]:
        """Mean loss per group (0 where absent) and a mask of the groups present in the batch."""
        sums, counts = self._stats(losses, groups)
        return sums / counts.clamp(min=1), counts > 0

    def loss(
        self,
        losses: Tensor,
        groups: Tensor,
        update: bool = True,
        all_reduce: Callable[[Tensor], Tensor] | None = None,
    ) -> Tensor:
        """Robust loss of one batch; updates ``q`` when ``update`` (training steps only).

        ``all_reduce`` (sum over processes) makes the ``q`` update use the group means of the global
        batch, so every process of a distributed run keeps the same ``q``.
        """
        group_loss, _ = self.group_losses(losses, groups)
        if update:
            stats = self._stats(losses.detach(), groups)
            if all_reduce is not None:
                stats = all_reduce(stats)
            sums, counts = stats[0].double().cpu(), stats[1].double().cpu()
            present_all = counts > 0
            adjusted = sums / counts.clamp(min=1)
            if self.adjustment:
                adjusted = adjusted + self.adjustment / self.group_counts.clamp(min=1).sqrt()
            step = torch.where(present_all, self.step_size * adjusted, torch.zeros_like(adjusted))
            q = self.q * torch.exp(step)
            self.q = q / q.sum()
        return (self.q.to(group_loss) * group_loss).sum()

    def _stats(self, losses: Tensor, groups: Tensor) -> Tensor:
        """(2, G): per-group loss sums and counts of this batch."""
        groups = groups.to(losses.device).long()
        if groups.numel() and (int(groups.min()) < 0 or int(groups.max()) >= self.num_groups):
            raise ValueError(
                f"group ids must lie in [0, {self.num_groups}), got {groups.unique().tolist()}; "
                "every example needs a class label and an attribute"
            )
        sums = torch.zeros(self.num_groups, dtype=losses.dtype, device=losses.device).index_add(
            0, groups, losses
        )
        counts = torch.bincount(groups, minlength=self.num_groups).to(losses.dtype)
        return torch.stack([sums, counts])

    def state_dict(self) -> dict[str, list[float]]:
        return {"q": self.q.tolist()}

    def load_state_dict(self, state: dict[str, list[float]]) -> None:
        q = torch.as_tensor(state["q"], dtype=torch.float64)
        if q.shape != self.q.shape:
            raise ValueError(f"Group DRO state has {q.numel()} groups, expected {self.num_groups}")
        self.q = q
