"""The spurious-aware losses of Yang et al. (ICML 2023): cross-group similarity CS, L_vc, L_lc, L_vs, L_ls,
and the zero-shot class prototypes.

Every function is differentiable and takes raw embeddings: they are L2-normalised inside; ``logit_scale``
is the LOG scale s (see :mod:`hf_spurious.losses.contrastive`). Two functional forms exist for the
in-modal terms:

- ``form="supcon"`` (default, the paper's cross-group similarity CS, a SupCon-style log-softmax);
- ``form="linear"`` (**reference-compat**: the released code's cosine-mean form
  ``-(1/M) sum_pos cos + (1/M) sum_neg cos`` with self-pairs included and no temperature; the code's
  label-indexing bugs (spec §3.B.1) are *not* reproduced).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from .contrastive import check_2d, exp_logit_scale

Form = Literal["supcon", "linear"]
SpuriousForm = Literal["supcon", "linear", "cross_entropy"]
Grouping = Literal["attribute", "class_attribute"]

__all__ = [
    "Form",
    "Grouping",
    "NoPositivesError",
    "SpuriousForm",
    "class_prototypes",
    "cross_group_similarity",
    "image_class_loss",
    "image_spurious_loss",
    "linear_group_similarity",
    "text_class_loss",
    "text_spurious_loss",
    "zero_shot_logits",
]


class NoPositivesError(ValueError):
    """No anchor of a contrastive term has a positive in the batch, so the term is undefined."""


def cross_group_similarity(
    anchors: Tensor,
    candidates: Tensor,
    positive_mask: Tensor,
    logit_scale: Tensor | float,
    exclude_self: bool = True,
    negative_mask: Tensor | None = None,
    *,
    if_no_positives: Literal["raise", "skip"] = "raise",
) -> Tensor | None:
    """The cross-group similarity CS of spec §2.2 (SupCon-style), averaged over positives then anchors.

    For anchor ``i`` with positives ``P(i)`` and negatives ``N(i)``::

        CS_i = -1/|P(i)| * sum_{p in P(i)} log( exp(<a_i,b_p>/tau) / sum_{j in P(i) ∪ N(i)} exp(<a_i,b_j>/tau) )

    ``positive_mask`` / ``negative_mask`` are boolean (N, M); negatives default to every
    non-positive candidate. With ``exclude_self`` (anchors and candidates are the same set, N == M),
    the diagonal is removed from the positives and from the denominator. Anchors without a positive
    are skipped. If *no* anchor has a positive the term is undefined: ``if_no_positives="raise"``
    raises :class:`NoPositivesError`, ``"skip"`` returns ``None`` (never a silent 0).
    """
    check_2d("anchors", anchors)
    check_2d("candidates", candidates)
    n, m = anchors.shape[0], candidates.shape[0]
    pos = positive_mask.to(device=anchors.device, dtype=torch.bool)
    if pos.shape != (n, m):
        raise ValueError(f"positive_mask must have shape {(n, m)}, got {tuple(pos.shape)}")
    if negative_mask is None:
        neg = ~pos
    else:
        neg = negative_mask.to(device=anchors.device, dtype=torch.bool)
        if neg.shape != (n, m):
            raise ValueError(f"negative_mask must have shape {(n, m)}, got {tuple(neg.shape)}")
        if (neg & pos).any():
            raise ValueError("positive_mask and negative_mask overlap; a candidate cannot be both")
    if exclude_self:
        if n != m:
            raise ValueError(
                f"exclude_self=True needs anchors and candidates to be the same set, got {n} vs {m}; "
                "pass exclude_self=False for two different sets"
            )
        eye = torch.eye(n, dtype=torch.bool, device=anchors.device)
        pos, neg = pos & ~eye, neg & ~eye
    n_pos = pos.sum(dim=1)
    valid = n_pos > 0
    if not bool(valid.any()):
        if if_no_positives == "skip":
            return None
        raise NoPositivesError(
            "cross_group_similarity: no anchor has a positive in this batch (every group has a single "
            "member); use larger or group-balanced batches, or if_no_positives='skip'"
        )
    a, b = F.normalize(anchors, dim=-1), F.normalize(candidates, dim=-1)
    logits = exp_logit_scale(logit_scale, a) * a @ b.t()
    log_denom = torch.logsumexp(logits.masked_fill(~(pos | neg), float("-inf")), dim=1, keepdim=True)
    log_prob = (logits - log_denom).masked_fill(~pos, 0.0)
    per_anchor = -log_prob.sum(dim=1)[valid] / n_pos[valid]
    return per_anchor.mean()


def linear_group_similarity(anchors: Tensor, candidates: Tensor, positive_mask: Tensor) -> Tensor:
    """Reference-compat form of the released code (spec §2.3): mean over anchors of
    ``-(1/M) sum_l cos(a_k, b_l)[pos] + (1/M) sum_l cos(a_k, b_l)[not pos]``; self-pairs included,
    ``M`` = number of candidates, no temperature."""
    check_2d("anchors", anchors)
    check_2d("candidates", candidates)
    pos = positive_mask.to(device=anchors.device, dtype=torch.bool)
    if pos.shape != (anchors.shape[0], candidates.shape[0]):
        raise ValueError(f"positive_mask must have shape {(anchors.shape[0], candidates.shape[0])}")
    cos = F.normalize(anchors, dim=-1) @ F.normalize(candidates, dim=-1).t()
    m = candidates.shape[0]
    return ((-(cos * pos).sum(1) + (cos * ~pos).sum(1)) / m).mean()


def _same(labels: Tensor) -> Tensor:
    return labels.view(-1, 1) == labels.view(1, -1)


def _in_modal(
    embeds: Tensor, groups: Tensor, logit_scale: Tensor | float, form: Form, if_no_positives: str
) -> Tensor | None:
    if form == "linear":
        return linear_group_similarity(embeds, embeds, _same(groups))
    if form != "supcon":
        raise ValueError(f"unknown form {form!r}; use 'supcon' or 'linear'")
    return cross_group_similarity(embeds, embeds, _same(groups), logit_scale, if_no_positives=if_no_positives)  # type: ignore[arg-type]


def _check_labels(name: str, values: Tensor | None, n: int, fix: str) -> Tensor:
    if values is None:
        raise ValueError(f"{name} are required for this loss; {fix}")
    values = torch.as_tensor(values)
    if values.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {tuple(values.shape)}")
    if (values < 0).any():
        bad = int((values < 0).nonzero()[0])
        raise ValueError(f"{name}[{bad}] = {int(values[bad])} is missing (negative); {fix}")
    return values


def image_class_loss(
    image_embeds: Tensor,
    labels: Tensor,
    logit_scale: Tensor | float,
    *,
    form: Form = "supcon",
    if_no_positives: Literal["raise", "skip"] = "raise",
) -> Tensor | None:
    """L_vc: images of the same class are positives, other classes negatives (CS(I, I))."""
    check_2d("image_embeds", image_embeds)
    labels = _check_labels("labels", labels, image_embeds.shape[0], "give every image its class label")
    return _in_modal(image_embeds, labels.to(image_embeds.device), logit_scale, form, if_no_positives)


def text_class_loss(
    text_embeds: Tensor,
    logit_scale: Tensor | float,
    *,
    form: Form = "supcon",
) -> Tensor:
    """L_lc over the template x class prompt embeddings ``(T, C, D)``: positives are the same class
    under a *different* template, negatives the other classes (template-based, spec §2.2)."""
    if text_embeds.dim() != 3:
        raise ValueError(
            f"text_embeds must be (templates, classes, dim), got shape {tuple(text_embeds.shape)}"
        )
    t, c, d = text_embeds.shape
    if t < 2 and form == "supcon":
        raise NoPositivesError("text_class_loss needs at least 2 templates (positives are other templates)")
    classes = torch.arange(c, device=text_embeds.device).repeat(t)  # row r = template r // C, class r % C
    out = _in_modal(text_embeds.reshape(t * c, d), classes, logit_scale, form, "raise")
    assert out is not None
    return out


def _groups(labels: Tensor | None, attributes: Tensor, grouping: Grouping) -> Tensor:
    if grouping == "attribute":
        return attributes
    if grouping != "class_attribute":
        raise ValueError(f"unknown grouping {grouping!r}; use 'attribute' or 'class_attribute'")
    labels = _check_labels(
        "labels", labels, attributes.shape[0], "grouping='class_attribute' needs class labels"
    )
    return labels.to(attributes.device) * (int(attributes.max()) + 1) + attributes


def image_spurious_loss(
    image_embeds: Tensor,
    attributes: Tensor | None,
    logit_scale: Tensor | float,
    *,
    labels: Tensor | None = None,
    grouping: Grouping = "attribute",
    form: SpuriousForm = "supcon",
    attribute_prototypes: Tensor | None = None,
    if_no_positives: Literal["raise", "skip"] = "raise",
) -> Tensor | None:
    """L_vs: images with the same spurious-attribute value are positives (spec §3.B.3).

    ``grouping="class_attribute"`` uses (class, attribute) groups instead. ``form="cross_entropy"`` is
    the released code's alternative: cross-entropy classification of the attribute with logits
    ``exp(s) * f . E^T``, ``E`` = ``attribute_prototypes`` (S, D) divided by the Frobenius norm of the
    whole matrix (as the code does).
    """
    check_2d("image_embeds", image_embeds)
    attributes = _check_labels(
        "attributes",
        attributes,
        image_embeds.shape[0],
        "attribute losses need an attribute label for every image",
    ).to(image_embeds.device)
    if form == "cross_entropy":
        if attribute_prototypes is None:
            raise ValueError(
                "form='cross_entropy' needs attribute_prototypes (S, D), e.g. 'bird on land' prompts"
            )
        protos = attribute_prototypes / attribute_prototypes.norm()
        if int(attributes.max()) >= protos.shape[0]:
            raise ValueError(f"attribute {int(attributes.max())} has no prototype ({protos.shape[0]} given)")
        logits = exp_logit_scale(logit_scale, image_embeds) * F.normalize(image_embeds, dim=-1) @ protos.t()
        return F.cross_entropy(logits, attributes)
    return _in_modal(image_embeds, _groups(labels, attributes, grouping), logit_scale, form, if_no_positives)  # type: ignore[arg-type]


def text_spurious_loss(
    class_embeds: Tensor, attribute_embeds: Tensor, labels: Tensor | None = None
) -> Tensor:
    """L_ls: mean ``|cos(e_{t,y}, e_{t',s})|`` between class prompts ``(T, C, D)`` and attribute prompts
    ``(T', S, D)`` over templates t, t' and attribute values s, for each example's class y (spec §3.B.4;
    no template-index bug). Without ``labels`` every class counts once."""
    if class_embeds.dim() != 3 or attribute_embeds.dim() != 3:
        raise ValueError("class_embeds and attribute_embeds must be (templates, classes|attributes, dim)")
    cls = F.normalize(class_embeds, dim=-1)
    att = F.normalize(attribute_embeds, dim=-1).reshape(-1, attribute_embeds.shape[-1])
    per_class = torch.einsum("tcd,kd->tck", cls, att).abs().mean(dim=(0, 2))  # (C,)
    if labels is None:
        return per_class.mean()
    labels = _check_labels("labels", labels, int(torch.as_tensor(labels).numel()), "give class labels")
    return per_class[labels.to(per_class.device)].mean()


def class_prototypes(text_embeds: Tensor) -> Tensor:
    """Zero-shot class weights ``w_c = normalise(mean_t normalise(e_{t,c}))`` from ``(T, C, D)``."""
    return F.normalize(F.normalize(text_embeds, dim=-1).mean(dim=0), dim=-1)


def zero_shot_logits(image_embeds: Tensor, text_embeds: Tensor, logit_scale: Tensor | float) -> Tensor:
    """Classification logits ``exp(s) * f . w_c`` (B, C) from images and ``(T, C, D)`` prompt embeddings."""
    return (
        exp_logit_scale(logit_scale, image_embeds)
        * F.normalize(image_embeds, dim=-1)
        @ class_prototypes(text_embeds).t()
    )
