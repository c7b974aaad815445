"""The pairwise sigmoid loss of SigLIP (Zhai et al., ICCV 2023), the retrieval loss of SigLIP / SigLIP 2.

For B matching pairs (image i ↔ text i) and the cosine matrix ``C = X̂ Ŷᵀ`` of the L2-normalised
embeddings, every pair is an independent binary problem with logit ``z_ij = t · C_ij + b`` and label
``l_ij = +1`` on the diagonal, ``−1`` elsewhere::

    loss = −(1/B) Σ_i Σ_j log σ(l_ij · z_ij)

(the paper's Algorithm 1, and ``SiglipModel``'s ``return_loss``). ``t`` is the **multiplier** (already
exponentiated: pass ``adapter.logit_scale.exp()``), unlike the CLIP helpers of this package, which take
the log scale; ``b`` is the learnable bias (``adapter.logit_bias()``).

``reduction="none"`` gives a (B,) vector whose mean is the loss: entry i is half the sum over row i
(image i against every text) plus half the sum over column i (text i against every image), so that
per-example weights (Group DRO) treat both directions alike, as the CLIP loss's per-pair form does.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from .contrastive import check_2d

__all__ = ["sigmoid_pairwise_loss"]


def _check_scalar(name: str, value: Tensor | float) -> None:
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise ValueError(f"{name} must be a scalar, got a tensor of shape {tuple(value.shape)}")
    elif not math.isfinite(float(value)):
        raise ValueError(f"{name} must be a finite number, got {value!r}")


def sigmoid_pairwise_loss(
    image_embeds: Tensor,
    text_embeds: Tensor,
    logit_scale: Tensor | float,
    logit_bias: Tensor | float,
    *,
    reduction: Literal["mean", "sum", "none"] = "mean",
) -> Tensor:
    """SigLIP's loss of paired (B, D) embeddings (L2-normalised inside); row i of each is one positive pair.

    ``logit_scale`` is the multiplier t (not its log), ``logit_bias`` the bias b; both scalars (tensors
    keep their gradient). ``"mean"`` is the paper's loss (sum over all B² pairs / B), ``"sum"`` B times it,
    ``"none"`` the (B,) symmetric per-pair split described in the module doc.
    """
    check_2d("image_embeds", image_embeds)
    check_2d("text_embeds", text_embeds)
    if image_embeds.shape[0] != text_embeds.shape[0]:
        raise ValueError(
            f"sigmoid_pairwise_loss needs paired inputs: {image_embeds.shape[0]} images vs "
            f"{text_embeds.shape[0]} texts"
        )
    if image_embeds.shape[0] == 0:
        raise ValueError("sigmoid_pairwise_loss needs at least one (image, text) pair, got an empty batch")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    _check_scalar("logit_scale", logit_scale)
    _check_scalar("logit_bias", logit_bias)
    img, txt = F.normalize(image_embeds, dim=-1), F.normalize(text_embeds, dim=-1)
    scale = logit_scale.reshape(()) if isinstance(logit_scale, Tensor) else logit_scale
    bias = logit_bias.reshape(()) if isinstance(logit_bias, Tensor) else logit_bias
    logits = (img @ txt.t()) * scale + bias
    signs = 2.0 * torch.eye(len(logits), dtype=logits.dtype, device=logits.device) - 1.0
    nll = -F.logsigmoid(signs * logits)  # (B, B): image i (row) vs text j (column)
    if reduction == "none":
        return 0.5 * (nll.sum(dim=1) + nll.sum(dim=0))
    total = nll.sum()
    return total if reduction == "sum" else total / logits.shape[0]
