"""Spurious-aware contrastive losses (Yang et al., ICML 2023) and the CLIP loss, in pure torch.

- :mod:`~hf_spurious.losses.contrastive`: the symmetric CLIP loss (InfoNCE) and the shared helpers;
- :mod:`~hf_spurious.losses.spurious`: cross-group similarity CS, L_vc, L_lc, L_vs, L_ls, the
  reference-compat linear form and the zero-shot class prototypes;
- :mod:`~hf_spurious.losses.objective`: :class:`SpuriousAwareLoss`, the whole objective as an
  ``nn.Module`` returning named terms;
- :mod:`~hf_spurious.losses.sigmoid` / :mod:`~hf_spurious.losses.triplet`: SigLIP's pairwise sigmoid loss
  and VSE++'s triplet ranking loss (the other retrieval losses ``SpuriousAwareLoss`` can use);
- :mod:`~hf_spurious.losses.distributed`: :func:`gather_rows`, the global negatives under DDP.

Every function takes raw embeddings (L2-normalised inside); every ``logit_scale`` is the LOG scale s
(τ = 1/exp(s)), see :mod:`hf_spurious.losses.contrastive`.
"""

from __future__ import annotations

from .contrastive import clip_contrastive_loss
from .distributed import gather_rows
from .objective import LOG_NAMES, TERMS, SpuriousAwareLoss
from .sigmoid import sigmoid_pairwise_loss
from .spurious import (
    Form,
    Grouping,
    NoPositivesError,
    SpuriousForm,
    class_prototypes,
    cross_group_similarity,
    image_class_loss,
    image_spurious_loss,
    linear_group_similarity,
    text_class_loss,
    text_spurious_loss,
    zero_shot_logits,
)
from .triplet import triplet_ranking_loss

__all__ = [
    "LOG_NAMES",
    "TERMS",
    "Form",
    "Grouping",
    "NoPositivesError",
    "SpuriousAwareLoss",
    "SpuriousForm",
    "class_prototypes",
    "clip_contrastive_loss",
    "cross_group_similarity",
    "gather_rows",
    "image_class_loss",
    "image_spurious_loss",
    "linear_group_similarity",
    "sigmoid_pairwise_loss",
    "text_class_loss",
    "text_spurious_loss",
    "triplet_ranking_loss",
    "zero_shot_logits",
]
