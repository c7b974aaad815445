"""The adapter for ``CLIPModel`` and any model of its shape."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hf_spurious.models.adapters.base import VisionLanguageAdapter

__all__ = ["ClipAdapter"]


class ClipAdapter(VisionLanguageAdapter):
    """``CLIPModel`` (or same shape): pooled = ``*_model(...).pooler_output``; scale = ``logit_scale``."""

    model_kind = "clip"
    projection_modules = ("visual_projection", "text_projection")
    scale_parameter = "logit_scale"

    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The vision tower's ``pooler_output`` (B, H_vision)."""
        return self.base_model.vision_model(pixel_values=pixel_values).pooler_output

    def project_images(self, features: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """``visual_projection`` (B, H_vision) -> (B, D)."""
        emb = self.base_model.visual_projection(features)
        return F.normalize(emb, dim=-1) if normalize else emb

    def text_features(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The text tower's ``pooler_output`` (B, H_text): the state at the first eos token."""
        return self.base_model.text_model(input_ids=input_ids, attention_mask=attention_mask).pooler_output

    def project_texts(self, features: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """``text_projection`` (B, H_text) -> (B, D)."""
        emb = self.base_model.text_projection(features)
        return F.normalize(emb, dim=-1) if normalize else emb

    @property
    def logit_scale(self) -> torch.Tensor:
        """CLIP's own ``logit_scale`` parameter (a log scale; CLIP multiplies cosines by its exp)."""
        return self.base_model.logit_scale

    @property
    def embedding_dim(self) -> int:
        """``visual_projection.out_features``."""
        return int(self.base_model.visual_projection.out_features)
