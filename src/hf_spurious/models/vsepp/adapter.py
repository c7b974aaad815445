"""The adapter for :class:`~hf_spurious.models.vsepp.VseppModel` (VSE++) onto the common interface.

Mapping: pooled image features = the backbone's output (VGG fc7, or a transformers backbone's pooled
output), image projection = ``img_fc``; pooled text features = the GRU's final state (directions averaged),
text projection = identity (VSE++ has none: the GRU's width is the joint space). The logit scale is the
model's (log) ``logit_scale``, 0 by default: VSE++ ranks by plain cosine. Retrieval loss: the VSE++ triplet
loss (``retrieval_loss = "triplet"``). With cached features (projection-only freezing) only ``img_fc``
and the scale train; the paper's frozen-backbone "VSE++", which also trains the word embeddings and the
GRU, is ``full`` training of a model built with ``finetune_backbone=False`` (its backbone never trains).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from hf_spurious.models.adapters.base import VisionLanguageAdapter

__all__ = ["VseppAdapter"]


class VseppAdapter(VisionLanguageAdapter):
    """``VseppModel``: backbone -> ``img_fc``; words -> GRU; triplet loss; cosine scores."""

    model_kind = "vsepp"
    projection_modules = ("img_fc",)
    scale_parameter = "logit_scale"
    retrieval_loss = "triplet"

    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The backbone's pooled features (B, F) (VGG: fc7)."""
        return self.base_model.backbone_features(pixel_values)

    def project_images(self, features: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """``img_fc`` (B, F) -> (B, D)."""
        emb = self.base_model.img_fc(features)
        return F.normalize(emb, dim=-1) if normalize else emb

    def text_features(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The GRU's final state over the real tokens (B, D)."""
        return self.base_model.text_states(input_ids, attention_mask)

    def project_texts(self, features: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """Identity (VSE++ has no text projection), optionally L2-normalised."""
        return F.normalize(features, dim=-1) if normalize else features

    @property
    def logit_scale(self) -> torch.Tensor:
        """The model's log scale (0: logits are plain cosines, as VSE++ ranks)."""
        return self.base_model.logit_scale

    @property
    def embedding_dim(self) -> int:
        """``config.embed_size`` (1024 in the paper)."""
        return int(self.base_model.config.embed_size)

    @property
    def max_text_length(self) -> int:
        """The tokenizer's ``model_max_length`` (a GRU has no position limit); 64 without a processor."""
        tok = getattr(self.processor, "tokenizer", self.processor)
        return int(getattr(tok, "model_max_length", 64) or 64)

    def embed_image_features(
        self, images: Sequence[Any], batch_size: int = 64, progress: bool = False
    ) -> np.ndarray:
        """Backbone features for a feature cache, float32 (N, F)."""
        fn = self._image_fn(self.image_features)
        width = int(self.base_model.img_fc.in_features)
        return self._map_batches(images, batch_size, fn, width, "image features", progress)

    def embed_text_features(
        self, texts: Sequence[str], batch_size: int = 256, progress: bool = False
    ) -> np.ndarray:
        """GRU states for a feature cache, float32 (N, D)."""
        fn = self._text_fn(self.text_features)
        return self._map_batches(texts, batch_size, fn, self.embedding_dim, "text features", progress)
