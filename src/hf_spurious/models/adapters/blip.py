"""The adapter for ``BlipForImageTextRetrieval`` (and its shape): contrastive towers, a temperature, ITM."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hf_spurious.models.adapters.base import RetrievalLoss, VisionLanguageAdapter

__all__ = ["BLIP_TEMP_KEY", "BLIP_TEMP_RANGE", "BlipRetrievalAdapter"]

BLIP_TEMP_KEY = "temp"
"""Name of the ITC temperature parameter the BLIP adapter registers on the model (BLIP's own name)."""
BLIP_TEMP_RANGE = (0.001, 0.5)
"""BLIP clamps its temperature to this range during training (``temp.clamp_(0.001, 0.5)``)."""
BLIP_MAX_TEXT_TOKENS = 35
"""BLIP's retrieval code tokenizes every caption with ``max_length=35`` (ITC, ITM and evaluation)."""


class BlipRetrievalAdapter(VisionLanguageAdapter):
    """``BlipForImageTextRetrieval`` (or same shape).

    Pooled features are the CLS states: image ``vision_model(...)[0][:, 0]``, text
    ``text_encoder(input_ids, attention_mask)`` (unimodal mode, no cross-attention) ``[:, 0]``, exactly as
    the model's own ``use_itm_head=False`` forward computes them.

    **Temperature.** BLIP trains its contrastive (ITC) loss with a learnable temperature ``temp``
    (logits = cos / temp), which the transformers port does not keep. The adapter registers it on the
    model as the parameter ``temp`` so that it is trained, saved and counted like any weight. Its value
    comes from a ``temp`` tensor in the checkpoint when present (written by this adapter's or a
    ``Trainer``'s ``save_pretrained``), otherwise from ``exp(-config.logit_scale_init_value)`` (0.07, BLIP's
    initial value). :attr:`logit_scale` is ``-log(temp)``, so ``logit_scale.exp() == 1 / temp``.
    """

    model_kind = "blip-retrieval"
    has_itm = True
    projection_modules = ("vision_proj", "text_proj")
    scale_parameter = BLIP_TEMP_KEY

    def __init__(self, model: nn.Module, processor: Any = None, temp: float | None = None) -> None:
        super().__init__(model, processor)
        base = self.base_model
        if not isinstance(getattr(base, BLIP_TEMP_KEY, None), nn.Parameter):
            if temp is None:
                temp = math.exp(-float(getattr(base.config, "logit_scale_init_value", math.log(1 / 0.07))))
            if not temp > 0:
                raise ValueError(f"BLIP temperature must be positive, got {temp}")
            ref = next(base.parameters())
            base.register_parameter(
                BLIP_TEMP_KEY, nn.Parameter(torch.tensor(float(temp), dtype=ref.dtype, device=ref.device))
            )

    @property
    def temp(self) -> nn.Parameter:
        """BLIP's scalar ITC temperature parameter (registered on the model)."""
        return getattr(self.base_model, BLIP_TEMP_KEY)

    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The vision tower's CLS state (B, H_vision)."""
        return self.base_model.vision_model(pixel_values=pixel_values)[0][:, 0]

    def _image_states(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.base_model.vision_model(pixel_values=pixel_values)[0]

    def image_states(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The vision tower's token states (B, 1 + grid², H): the ITM head's cross-attention input."""
        return self._image_states(pixel_values)

    @property
    def max_text_length(self) -> int:
        """At most :data:`BLIP_MAX_TEXT_TOKENS` (35), as BLIP's retrieval code tokenizes."""
        return min(super().max_text_length, BLIP_MAX_TEXT_TOKENS)

    def project_images(self, features: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """``vision_proj`` (B, H_vision) -> (B, D)."""
        emb = self.base_model.vision_proj(features)
        return F.normalize(emb, dim=-1) if normalize else emb

    def text_features(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The unimodal text encoder's CLS state (B, H_text)."""
        out = self.base_model.text_encoder(input_ids=input_ids, attention_mask=attention_mask)
        return out.last_hidden_state[:, 0]

    def project_texts(self, features: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """``text_proj`` (B, H_text) -> (B, D)."""
        emb = self.base_model.text_proj(features)
        return F.normalize(emb, dim=-1) if normalize else emb

    @property
    def logit_scale(self) -> torch.Tensor:
        """``-log(temp)`` (differentiable in ``temp``); ``logit_scale.exp() == 1 / temp``."""
        return -torch.log(self.temp)

    @property
    def embedding_dim(self) -> int:
        """``vision_proj.out_features``."""
        return int(self.base_model.vision_proj.out_features)

    def clamp_temperature(self) -> None:
        """Clamp ``temp`` in place to BLIP's training range (call after an optimizer step if wanted)."""
        with torch.no_grad():
            self.temp.clamp_(*BLIP_TEMP_RANGE)

    # --- image-text matching ----------------------------------------------------------------------
    def _itm_logits(
        self, image_states: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor | None
    ) -> torch.Tensor:
        atts = torch.ones(image_states.shape[:-1], dtype=torch.long, device=image_states.device)
        out = self.base_model.text_encoder(
            input_ids=input_ids,
            attention_mask=attention_mask,
            encoder_hidden_states=image_states,
            encoder_attention_mask=atts,
        )
        return self.base_model.itm_head(out.last_hidden_state[:, 0])

    def itm_scores(
        self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``P(match)`` of each pair (image_i, text_i): softmax of the ITM head, column 1. Shape (B,)."""
        if pixel_values.shape[0] != input_ids.shape[0]:
            raise ValueError(
                f"itm_scores scores pairs: got {pixel_values.shape[0]} images and {input_ids.shape[0]} texts"
            )
        logits = self._itm_logits(self._image_states(pixel_values), input_ids, attention_mask)
        return logits.softmax(dim=-1)[:, 1]

    def itm_scores_from_states(
        self, image_states: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """:meth:`itm_scores` with the image encoded once (:meth:`image_states`); a (1, T, H) state is
        broadcast over all the texts (re-ranking one image query's candidates). Shape (B,)."""
        if image_states.shape[0] == 1 and input_ids.shape[0] > 1:
            image_states = image_states.expand(input_ids.shape[0], -1, -1)
        if image_states.shape[0] != input_ids.shape[0]:
            raise ValueError(
                f"itm_scores_from_states scores pairs: got {image_states.shape[0]} image states and "
                f"{input_ids.shape[0]} texts"
            )
        return self._itm_logits(image_states, input_ids, attention_mask).softmax(dim=-1)[:, 1]

    def itm_loss(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        ids: torch.Tensor | Sequence[int] | None = None,
        generator: torch.Generator | None = None,
    ) -> RetrievalLoss:
        """BLIP's retrieval-mode training loss on a batch of B (image_i, text_i) pairs.

        * ITC: cross-entropy of ``cos / temp`` (both directions, averaged) against soft targets that
          spread the mass uniformly over the pairs with the same ``ids`` (default: all distinct).
        * ITM: the ITM head on B positives, B texts with a hard-negative image and B images with a
          hard-negative text (label 1 for positives, 0 for negatives); negatives are sampled with
          probability ``softmax(ITC similarities)`` restricted to different ``ids`` (no gradient).

        No momentum encoder / queue (BLIP's distillation is left out). Returns ``RetrievalLoss``.
        """
        b = pixel_values.shape[0]
        if input_ids.shape[0] != b:
            raise ValueError(f"itm_loss needs paired inputs: got {b} images and {input_ids.shape[0]} texts")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        idx = torch.arange(b) if ids is None else torch.as_tensor(ids).reshape(-1)
        if idx.shape[0] != b:
            raise ValueError(f"ids must have one entry per pair ({b}), got {idx.shape[0]}")
        idx = idx.to(pixel_values.device)
        same = idx[:, None] == idx[None, :]
        if bool(same.all()):
            raise ValueError("itm_loss needs at least two distinct ids in the batch to draw negatives")

        image_states = self._image_states(pixel_values)
        img = self.project_images(image_states[:, 0], normalize=True)
        txt = self.encode_texts(input_ids, attention_mask)
        scale = self.logit_scale.exp()
        sim_i2t = scale * img @ txt.t()
        sim_t2i = sim_i2t.t()
        targets = same.float() / same.float().sum(dim=1, keepdim=True)
        loss_i2t = -(F.log_softmax(sim_i2t, dim=1) * targets).sum(dim=1).mean()
        loss_t2i = -(F.log_softmax(sim_t2i, dim=1) * targets).sum(dim=1).mean()
        itc = (loss_i2t + loss_t2i) / 2

        neg_image, neg_text = _hard_negatives(sim_i2t, sim_t2i, same, generator)
        ids_all = torch.cat([input_ids, input_ids, input_ids[neg_text]])
        att_all = torch.cat([attention_mask, attention_mask, attention_mask[neg_text]])
        states_all = torch.cat([image_states, image_states[neg_image], image_states])
        logits = self._itm_logits(states_all, ids_all, att_all)
        labels = torch.cat([torch.ones(b), torch.zeros(2 * b)]).long().to(logits.device)
        itm = F.cross_entropy(logits, labels)
        return RetrievalLoss(loss=itc + itm, itc=itc, itm=itm)


@torch.no_grad()
def _hard_negatives(
    sim_i2t: torch.Tensor, sim_t2i: torch.Tensor, same: torch.Tensor, generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """One negative image per text and one negative text per image, each (B,), drawn with probability
    ``softmax(similarity)`` over the pairs of a different id."""
    w_i2t = F.softmax(sim_i2t.float(), dim=1).masked_fill(same, 0)
    w_t2i = F.softmax(sim_t2i.float(), dim=1).masked_fill(same, 0)
    # Rows whose probabilities underflowed to 0: fall back to uniform over the valid negatives.
    for w in (w_i2t, w_t2i):
        dead = w.sum(dim=1) <= 0
        w[dead] = (~same[dead]).float()
    neg_image = torch.multinomial(w_t2i.cpu(), 1, generator=generator).squeeze(1).to(same.device)
    neg_text = torch.multinomial(w_i2t.cpu(), 1, generator=generator).squeeze(1).to(same.device)
    return neg_image, neg_text
