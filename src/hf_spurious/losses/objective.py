"""``SpuriousAwareLoss``: the fine-tuning objective of Yang et al. (ICML 2023) as one module of named terms.

The terms (keys of :meth:`SpuriousAwareLoss.forward`'s dict; paper names where the paper has one):

=================  ==========================================================  ==================
key                term                                                        logged as
=================  ==========================================================  ==================
``L_CLIP``         symmetric CLIP contrastive loss (Eq. 1)                     ``clip_loss``
``zero_shot_ce``   cross-entropy on the zero-shot class logits (ERM baseline)  ``class_ce_loss``
``L_vc``           image-image contrastive loss over classes                   ``image_class_loss``
``L_lc``           prompt-prompt contrastive loss over classes                 ``text_class_loss``
``L_vs``           image contrastive loss over spurious-attribute groups       ``image_spurious_loss``
``L_ls``           mean ``|cos|`` of class and attribute prompts               ``text_spurious_loss``
``L_itm``          BLIP's image-text matching loss (retrieval)                 ``itm_loss``
=================  ==========================================================  ==================

``L_CLIP`` and ``zero_shot_ce`` are per-example losses: their weighted sum is returned under
``"per_example"`` (what ERM averages and Group DRO reweights); the other terms are batch-level and are
added, weighted, by :meth:`SpuriousAwareLoss.add_batch_terms`.

``retrieval_loss`` chooses the retrieval L_CLIP term: ``"clip"`` (symmetric InfoNCE), ``"sigmoid"`` (SigLIP's
pairwise sigmoid loss, with the model's ``logit_bias``) or ``"triplet"`` (VSE++'s hinge loss); it is still
logged as ``clip_loss``. With ``gather_global_negatives`` and an initialised process group of N > 1
processes, the rows of every process (embeddings, labels, attributes, groups) are gathered first
(:func:`hf_spurious.losses.distributed.gather_rows`), so every term sees the global batch's negatives and
every process computes the global batch's loss; the gradient that reaches the local rows is scaled by N, so
after DDP's gradient averaging it equals one process with the global batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .contrastive import clip_contrastive_loss, exp_logit_scale
from .distributed import gather_rows, is_distributed
from .sigmoid import sigmoid_pairwise_loss
from .spurious import (
    class_prototypes,
    image_class_loss,
    image_spurious_loss,
    text_class_loss,
    text_spurious_loss,
    zero_shot_logits,
)
from .triplet import triplet_ranking_loss

#: every term, in the order it is computed (and added to the loss)
TERMS = ("L_CLIP", "zero_shot_ce", "L_vc", "L_lc", "L_vs", "L_ls", "L_itm")
#: the name each term is logged under (``<name>_loss``, ``skipped_<name>``)
LOG_NAMES = {
    "L_CLIP": "clip",
    "zero_shot_ce": "class_ce",
    "L_vc": "image_class",
    "L_lc": "text_class",
    "L_vs": "image_spurious",
    "L_ls": "text_spurious",
    "L_itm": "itm",
}
PER_EXAMPLE_TERMS = ("L_CLIP", "zero_shot_ce")
RETRIEVAL_TERMS = ("L_CLIP", "L_itm")
#: the constructor argument holding each term's weight, in the order of :data:`TERMS`
WEIGHT_NAMES = tuple(f"{LOG_NAMES[t].replace('class_ce', 'zero_shot_ce')}_weight" for t in TERMS)
#: the retrieval losses ``L_CLIP`` can be
RETRIEVAL_LOSSES = ("clip", "sigmoid", "triplet")

__all__ = [
    "LOG_NAMES",
    "PER_EXAMPLE_TERMS",
    "RETRIEVAL_LOSSES",
    "RETRIEVAL_TERMS",
    "TERMS",
    "SpuriousAwareLoss",
]


class SpuriousAwareLoss(nn.Module):
    """L_CLIP + zero-shot CE + L_vc + L_lc + L_vs + L_ls (classification) or L_CLIP + L_itm (retrieval).

    The constructor takes the weights and behaviour flags only (a term with weight 0 is not computed);
    ``forward`` takes the embeddings of one batch. ``contrastive_form`` (``"supcon"`` | ``"linear"``)
    is the form of L_vc / L_lc / L_vs, ``spurious_form`` (``"contrastive"`` | ``"cross_entropy"``) and
    ``spurious_grouping`` (``"attribute"`` | ``"class_attribute"``) choose L_vs, ``mask_same_class_in_clip``
    drops same-class pairs from the L_CLIP denominators, ``if_no_positives`` (``"raise"`` | ``"skip"``)
    says what a contrastive term without a positive pair does (skipped terms are ``None``).
    ``retrieval_loss`` (``"clip"`` | ``"sigmoid"`` | ``"triplet"``, with ``triplet_margin`` and
    ``triplet_max_violation``) is the retrieval L_CLIP; ``gather_global_negatives`` gathers the rows of
    every process first (see the module docstring; a no-op without a process group).
    """

    def __init__(
        self,
        task: Literal["classification", "retrieval"] = "classification",
        *,
        clip_weight: float = 1.0,
        zero_shot_ce_weight: float = 0.0,
        image_class_weight: float = 0.0,
        text_class_weight: float = 0.0,
        image_spurious_weight: float = 0.0,
        text_spurious_weight: float = 0.0,
        itm_weight: float = 0.0,
        contrastive_form: Literal["supcon", "linear"] = "supcon",
        spurious_form: Literal["contrastive", "cross_entropy"] = "contrastive",
        spurious_grouping: Literal["attribute", "class_attribute"] = "attribute",
        mask_same_class_in_clip: bool = False,
        if_no_positives: Literal["raise", "skip"] = "raise",
        retrieval_loss: Literal["clip", "sigmoid", "triplet"] = "clip",
        triplet_margin: float = 0.2,
        triplet_max_violation: bool = True,
        gather_global_negatives: bool = False,
    ) -> None:
        super().__init__()
        if task not in ("classification", "retrieval"):
            raise ValueError(f"task must be 'classification' or 'retrieval', got {task!r}")
        if retrieval_loss not in RETRIEVAL_LOSSES:
            raise ValueError(f"retrieval_loss must be one of {RETRIEVAL_LOSSES}, got {retrieval_loss!r}")
        if not (math.isfinite(triplet_margin) and triplet_margin >= 0):
            raise ValueError(
                f"triplet_margin must be a finite number >= 0 (VSE++: 0.2), got {triplet_margin}"
            )
        self.task = task
        self.retrieval_loss = retrieval_loss
        self.triplet_margin = float(triplet_margin)
        self.triplet_max_violation = bool(triplet_max_violation)
        self.gather_global_negatives = bool(gather_global_negatives)
        weights = (
            clip_weight,
            zero_shot_ce_weight,
            image_class_weight,
            text_class_weight,
            image_spurious_weight,
            text_spurious_weight,
            itm_weight,
        )
        self.weights = {term: float(w) for term, w in zip(TERMS, weights)}
        for name, w in zip(WEIGHT_NAMES, self.weights.values()):
            if not (math.isfinite(w) and w >= 0):
                raise ValueError(f"{name} must be >= 0 and finite (allowed: [0, inf)), got {w}")
        allowed = RETRIEVAL_TERMS if task == "retrieval" else TERMS[:-1]
        self.active = tuple(t for t in TERMS if self.weights[t] > 0 and t in allowed)
        if not self.active:
            raise ValueError("every loss weight is 0; set at least clip_weight or zero_shot_ce_weight > 0")
        self.contrastive_form = contrastive_form
        self.spurious_form = spurious_form
        self.spurious_grouping = spurious_grouping
        self.mask_same_class_in_clip = mask_same_class_in_clip
        self.if_no_positives = if_no_positives

    def forward(
        self,
        image_embeds: Tensor,
        text_embeds: Tensor | None,
        logit_scale: Tensor | float,
        *,
        labels: Tensor | None = None,
        attributes: Tensor | None = None,
        class_embeds: Tensor | None = None,
        attribute_embeds: Tensor | None = None,
        attribute_prompt_embeds: Tensor | None = None,
        itm_loss: Callable[[], Tensor | None] | None = None,
        logit_bias: Tensor | float | None = None,
        groups: Tensor | None = None,
    ) -> dict[str, Tensor | None]:
        """The active terms of one batch, keyed as :data:`TERMS`, after ``"per_example"`` and ``"groups"``.

        Retrieval: ``image_embeds`` / ``text_embeds`` (B, D) of the pairs; ``logit_bias`` (the sigmoid
        loss's bias b); ``itm_loss`` returns BLIP's ITM loss, or ``None`` to skip it for this batch (called
        after L_CLIP, only when L_itm is active; never gathered). Classification: ``labels`` (B,),
        ``attributes`` (B,), prompt embeddings ``class_embeds`` (T, C, D), ``attribute_embeds``
        (T, S, D, for L_ls) and ``attribute_prompt_embeds`` (T, S', D, for the cross-entropy L_vs); the
        attribute prompts may also be given as template-major (T * S, D) rows.
        ``"per_example"`` is the weighted per-example loss, or ``None`` when no such term is active;
        ``"groups"`` holds the ``groups`` (B,) aligned with it. Under global negatives (:meth:`gathers`)
        both cover the global batch, the rows of every process in rank order.
        """
        if self.gathers():
            image_embeds, text_embeds, labels, attributes, groups = gather_rows(
                image_embeds, text_embeds, labels, attributes, groups
            )
        if self.task == "retrieval":
            out = self._retrieval_terms(image_embeds, text_embeds, logit_scale, logit_bias, itm_loss)
            return {"per_example": out.pop("per_example"), "groups": groups, **out}
        out = self._per_example_terms(image_embeds, logit_scale, labels, class_embeds)
        out = {"per_example": out.pop("per_example"), "groups": groups, **out}
        out.update(
            self._batch_terms(
                image_embeds,
                logit_scale,
                labels,
                attributes,
                class_embeds,
                attribute_embeds,
                attribute_prompt_embeds,
            )
        )
        return out

    def gathers(self) -> bool:
        """Whether :meth:`forward` gathers the rows of every process (global negatives are on and a
        process group of 2+ processes is initialised)."""
        return self.gather_global_negatives and is_distributed()

    def add_batch_terms(self, loss: Tensor, terms: dict[str, Tensor | None]) -> Tensor:
        """``loss`` (the reduced per-example part) plus each computed batch-level term times its weight,
        in the order of ``terms``."""
        for name, value in terms.items():
            if value is not None and name in self.weights and name not in PER_EXAMPLE_TERMS:
                loss = loss + self.weights[name] * value
        return loss

    def _retrieval_terms(
        self,
        image_embeds: Tensor,
        text_embeds: Tensor | None,
        logit_scale: Tensor | float,
        logit_bias: Tensor | float | None,
        itm_loss: Callable[[], Tensor | None] | None,
    ) -> dict[str, Tensor | None]:
        out: dict[str, Tensor | None] = {"per_example": None}
        if "L_CLIP" in self.active:
            if text_embeds is None:
                raise ValueError("retrieval L_CLIP needs text_embeds (B, D)")
            w = self.weights["L_CLIP"]
            out["per_example"] = w * self._retrieval_loss(image_embeds, text_embeds, logit_scale, logit_bias)
            out["L_CLIP"] = out["per_example"].mean() / w
        if "L_itm" in self.active:
            if itm_loss is None:
                raise ValueError("L_itm is active: pass itm_loss, a callable returning BLIP's ITM loss")
            out["L_itm"] = itm_loss()
        return out

    def _retrieval_loss(
        self, img: Tensor, txt: Tensor, s: Tensor | float, bias: Tensor | float | None
    ) -> Tensor:
        """The per-pair (B,) retrieval loss of :attr:`retrieval_loss` (its mean is the batch loss)."""
        if self.retrieval_loss == "clip":
            return clip_contrastive_loss(img, txt, s, reduction="none")
        img, txt = F.normalize(img, dim=-1), F.normalize(txt, dim=-1)
        if self.retrieval_loss == "triplet":
            return triplet_ranking_loss(
                img,
                txt,
                margin=self.triplet_margin,
                max_violation=self.triplet_max_violation,
                reduction="none",
            )
        if bias is None:
            raise ValueError(
                "retrieval_loss='sigmoid' needs logit_bias (the sigmoid loss's learnable bias b; SigLIP "
                "adapters return it from logit_bias())"
            )
        return sigmoid_pairwise_loss(img, txt, exp_logit_scale(s, img), bias, reduction="none")

        scale = exp_logit_scale(s, img)
        bias_t = bias if isinstance(bias, Tensor) else torch.tensor(float(bias))
        return sigmoid_pairwise_loss(img, txt, scale, bias_t.to(img)).expand(img.shape[0])

    def _per_example_terms(
        self, img: Tensor, s: Tensor | float, labels: Tensor | None, class_embeds: Tensor | None
    ) -> dict[str, Tensor | None]:
        if labels is None or class_embeds is None:
            raise ValueError("classification terms need labels (B,) and class_embeds (T, C, D)")
        terms: dict[str, Tensor | None] = {}
        parts = []
        if "L_CLIP" in self.active:
            protos = class_prototypes(class_embeds)[labels]
            mask = labels if self.mask_same_class_in_clip else None
            clip = clip_contrastive_loss(img, protos, s, labels=mask, reduction="none")
            terms["L_CLIP"] = clip.mean()
            parts.append(self.weights["L_CLIP"] * clip)
        if "zero_shot_ce" in self.active:
            ce = F.cross_entropy(zero_shot_logits(img, class_embeds, s), labels, reduction="none")
            terms["zero_shot_ce"] = ce.mean()
            parts.append(self.weights["zero_shot_ce"] * ce)
        return {"per_example": torch.stack(parts).sum(0) if parts else None, **terms}

    def _batch_terms(
        self,
        img: Tensor,
        s: Tensor | float,
        labels: Tensor,
        attributes: Tensor | None,
        class_embeds: Tensor,
        attribute_embeds: Tensor | None,
        attribute_prompt_embeds: Tensor | None,
    ) -> dict[str, Tensor | None]:
        terms: dict[str, Tensor | None] = {}
        skip, form = self.if_no_positives, self.contrastive_form
        if "L_vc" in self.active:
            terms["L_vc"] = image_class_loss(img, labels, s, form=form, if_no_positives=skip)  # type: ignore[arg-type]
        if "L_lc" in self.active:
            terms["L_lc"] = text_class_loss(class_embeds, s, form=form)  # type: ignore[arg-type]
        if "L_vs" in self.active:
            if self.spurious_form == "cross_entropy":
                if attribute_prompt_embeds is None:
                    raise ValueError("the cross-entropy L_vs needs attribute_prompt_embeds (T, S, D)")
                generic = _by_template(attribute_prompt_embeds, class_embeds.shape[0])
                protos = F.normalize(generic, dim=-1).mean(0)  # mean of normalised template embeddings
                terms["L_vs"] = image_spurious_loss(
                    img, attributes, s, form="cross_entropy", attribute_prototypes=protos
                )
            else:
                terms["L_vs"] = image_spurious_loss(
                    img,
                    attributes,
                    s,
                    labels=labels,
                    grouping=self.spurious_grouping,  # type: ignore[arg-type]
                    form=form,  # type: ignore[arg-type]
                    if_no_positives=skip,  # type: ignore[arg-type]
                )
        if "L_ls" in self.active:
            if attribute_embeds is None:
                raise ValueError("L_ls needs attribute_embeds (T, S, D)")
            attr_text = _by_template(attribute_embeds, class_embeds.shape[0])
            terms["L_ls"] = text_spurious_loss(class_embeds, attr_text, labels)
        return terms


def _by_template(embeds: Tensor, num_templates: int) -> Tensor:
    """``(T, S, D)`` prompt embeddings from template-major ``(T * S, D)`` rows (or ``(T, S, D)`` as is).

    The reshape happens where the term uses it, so the autograd graph is built in the same order as
    before the losses became a module (the order gradients are accumulated in)."""
    return embeds.reshape(num_templates, -1, embeds.shape[-1])
