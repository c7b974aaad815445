"""The VSE++ triplet ranking loss (Faghri et al., BMVC 2018), the loss Kim et al. trained VSE++ with.

For a batch of B matching pairs (image i ↔ caption i) and the cosine matrix ``S = X Yᵀ``, each positive
pair (i, i) is compared with every negative of the batch in both directions:

- image → text: ``[α + S[i, j] − S[i, i]]₊`` for captions j ≠ i;
- text → image: ``[α + S[j, i] − S[i, i]]₊`` for images j ≠ i.

**Max of hinges** (``max_violation=True``, VSE++'s default and Kim et al.'s setting) keeps only the hardest
negative of each positive in each direction; **sum of hinges** (VSE0, ``max_violation=False``) sums them all.
The loss of the batch is the sum over positives and directions, divided by B for ``reduction="mean"``
(the VSE++ code returns the sum: ``reduction="sum"``).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from .contrastive import check_2d

__all__ = ["triplet_ranking_loss"]


def triplet_ranking_loss(
    image_embeds: Tensor,
    text_embeds: Tensor,
    *,
    margin: float = 0.2,
    max_violation: bool = True,
    reduction: Literal["mean", "sum", "none"] = "mean",
) -> Tensor:
    """VSE++ triplet loss of L2-normalised pairs (B, D) ↔ (B, D); row i of each is the positive pair.

    ``reduction="none"`` returns the (B,) per-positive losses (image → text plus text → image hinges of
    pair i), ``"sum"`` their sum (the VSE++ code's value) and ``"mean"`` their mean. A batch of one pair has
    no negative and a loss of 0.
    """
    check_2d("image_embeds", image_embeds)
    check_2d("text_embeds", text_embeds)
    if image_embeds.shape != text_embeds.shape:
        raise ValueError(
            f"image_embeds {tuple(image_embeds.shape)} and text_embeds {tuple(text_embeds.shape)} must have "
            "the same (B, D) shape: row i of each is one matching pair"
        )
    if not margin >= 0:
        raise ValueError(f"margin must be a number >= 0 (VSE++ uses 0.2), got {margin!r}")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    scores = image_embeds @ text_embeds.t()
    positive = scores.diagonal()
    off_diagonal = ~torch.eye(len(scores), dtype=torch.bool, device=scores.device)
    zero = scores.new_zeros(())
    cost_text = torch.where(off_diagonal, (margin + scores - positive[:, None]).clamp(min=0), zero)
    cost_image = torch.where(off_diagonal, (margin + scores - positive[None, :]).clamp(min=0), zero)
    if max_violation:
        per_pair = cost_text.amax(dim=1) + cost_image.amax(dim=0)
    else:
        per_pair = cost_text.sum(dim=1) + cost_image.sum(dim=0)
    if reduction == "none":
        return per_pair
    return per_pair.sum() if reduction == "sum" else per_pair.mean()
