"""The symmetric CLIP contrastive loss (InfoNCE, paper Eq. 1) and the helpers every loss shares.

Every ``logit_scale`` argument in ``hf_spurious.losses`` is the LOG scale s (HF ``CLIPModel.logit_scale``;
temperature τ = 1/exp(s)), not open_clip's exponentiated one: logits are ``exp(s) * cos``
(spec §2.2, §3.B.2); with open_clip's ``logit_scale.exp()`` value pass ``torch.log`` of it.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["check_2d", "clip_contrastive_loss", "exp_logit_scale"]


def exp_logit_scale(logit_scale: Tensor | float, like: Tensor) -> Tensor:
    """``exp(s)`` of a LOG logit scale ``s`` (tensor or float), on ``like``'s device and dtype."""
    s = logit_scale if isinstance(logit_scale, Tensor) else torch.tensor(float(logit_scale))
    return s.to(device=like.device, dtype=like.dtype).exp()


def check_2d(name: str, x: Tensor) -> None:
    """Raise a ``ValueError`` naming ``name`` unless ``x`` is a 2-D (N, D) tensor."""
    if x.dim() != 2:
        raise ValueError(f"{name} must be a 2-D (N, D) tensor, got shape {tuple(x.shape)}")


def clip_contrastive_loss(
    image_embeds: Tensor,
    text_embeds: Tensor,
    logit_scale: Tensor | float,
    *,
    labels: Tensor | None = None,
    reduction: Literal["mean", "none"] = "mean",
) -> Tensor:
    """Symmetric InfoNCE of CLIP (paper Eq. 1): ``(CE(rows) + CE(columns)) / 2`` with targets ``i == j``.

    ``labels`` (optional, shape (N,)): off-diagonal pairs with the same label are removed from both
    softmax denominators (spec §3.B.5 option; off by default, as in the released code).
    ``reduction="none"`` returns the per-pair loss ``(CE(row i) + CE(column i)) / 2`` (for Group DRO).
    """
    check_2d("image_embeds", image_embeds)
    check_2d("text_embeds", text_embeds)
    if image_embeds.shape[0] != text_embeds.shape[0]:
        raise ValueError(
            f"clip_contrastive_loss needs paired inputs: {image_embeds.shape[0]} images vs {text_embeds.shape[0]} texts"
        )
    img, txt = F.normalize(image_embeds, dim=-1), F.normalize(text_embeds, dim=-1)
    logits = exp_logit_scale(logit_scale, img) * img @ txt.t()
    n = logits.shape[0]
    target = torch.arange(n, device=logits.device)
    if labels is not None:
        same = labels.view(-1, 1) == labels.view(1, -1)
        same.fill_diagonal_(False)
        logits = logits.masked_fill(same, float("-inf"))
    per_pair = 0.5 * (
        F.cross_entropy(logits, target, reduction="none")
        + F.cross_entropy(logits.t(), target, reduction="none")
    )
    return per_pair if reduction == "none" else per_pair.mean()
