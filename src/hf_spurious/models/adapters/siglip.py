"""Adapters for ``SiglipModel`` and ``Siglip2Model``: sigmoid-loss towers with a logit scale *and* bias.

**Mapping onto the common interface.**

* Image: SigLIP's ViT has no CLS token; the pooled image embedding is the output of the
  attention-pooling head (``vision_model.head``: a learned probe attends to every patch token of
  ``post_layernorm(last_hidden_state)``, then LayerNorm + MLP). There is no separate image projection, so
  :meth:`SiglipAdapter.image_features` is that pooled output and :meth:`~SiglipAdapter.project_images`
  only normalises. With the ``projection`` freezing policy the image side is therefore fixed; the text
  head, ``logit_scale`` and ``logit_bias`` train.
* Text: the pooled text feature is the final-LayerNorm state at the **last position** (SigLIP pools the
  last token, which with SigLIP's fixed-length padding is a pad token or the last real token); the
  projection is ``text_model.head`` (a Linear).
* Scale and bias: ``logits = logit_scale.exp() * cos + logit_bias`` (Zhai et al., 2023).

**Fixed-length text, no mask.** SigLIP was trained on texts padded to ``max_length`` (64 positions)
*without* a text attention mask (pad tokens are attended, as in big_vision and open_clip), and the pooled
token is the last position, so a text's embedding depends on how far it is padded.
:meth:`~SiglipAdapter.tokenize` pads with ``padding="max_length"``, and :meth:`~SiglipAdapter.text_features`
pads any shorter batch (e.g. from a collator that padded to the longest text) to the same length on the
tokenizer's padding side with its pad id and runs the text tower without a mask, so a text's embedding
never depends on the batch it is in and equals the training-time computation. Longer inputs are an error
(tokenize with truncation).

**SigLIP 2 (NaFlex).** ``Siglip2Model`` takes patch sequences of variable grid size; the
:class:`Siglip2Adapter` wraps its processor so that ``pixel_values`` come out packed into one tensor
(:mod:`.naflex`), and also accepts plain (B, 3, h·p, w·p) pixels (one full grid for the batch), which is
what its :attr:`~Siglip2Adapter.gradcam_image_processor` gives GradCAM / AIoU.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hf_spurious.models.adapters.base import VisionLanguageAdapter
from hf_spurious.models.adapters.naflex import (
    NaflexPackingProcessor,
    SquareImageProcessor,
    pack_naflex,
    patchify,
    unpack_naflex,
    unpatchify,
)

__all__ = [
    "NaflexPackingProcessor",
    "Siglip2Adapter",
    "SiglipAdapter",
    "pack_naflex",
    "unpack_naflex",
]


class SiglipAdapter(VisionLanguageAdapter):
    """``SiglipModel``: attention-pooled images, last-position text, ``logit_scale`` and ``logit_bias``."""

    model_kind = "siglip"
    retrieval_loss = "sigmoid"
    projection_modules = ("text_model.head",)
    scale_parameter = "logit_scale"
    bias_parameter = "logit_bias"

    # --- images ---------------------------------------------------------------------------------
    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """The attention-pooling head's output (B, H_vision) (SigLIP's pooled image embedding)."""
        return self.base_model.vision_model(pixel_values=pixel_values).pooler_output

    def project_images(self, features: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """Identity (SigLIP has no image projection after the pooling head), optionally L2-normalised."""
        return F.normalize(features, dim=-1) if normalize else features

    # --- texts ----------------------------------------------------------------------------------
    @property
    def pad_token_id(self) -> int:
        """The tokenizer's pad id (else the text config's)."""
        tok = getattr(self.processor, "tokenizer", self.processor)
        pad = getattr(tok, "pad_token_id", None)
        if pad is None:
            pad = getattr(self.base_model.config.text_config, "pad_token_id", None)
        if pad is None:
            raise ValueError(
                f"{type(self.base_model).__name__}: no pad token id in the tokenizer or text config; "
                "SigLIP pads every text to a fixed length, so one is needed"
            )
        return int(pad)

    @property
    def padding_side(self) -> str:
        """Which side the tokenizer pads (``"right"`` unless it says otherwise)."""
        tok = getattr(self.processor, "tokenizer", self.processor)
        return str(getattr(tok, "padding_side", "right") or "right")

    def fixed_length(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Pad ids (and mask) to :attr:`max_text_length` on the tokenizer's side, as SigLIP was trained."""
        length = self.max_text_length
        n = int(input_ids.shape[-1])
        if n > length:
            raise ValueError(
                f"text batch of {n} tokens is longer than {type(self.base_model).__name__}'s {length} "
                f"positions; tokenize with truncation=True, max_length={length}"
            )
        if n == length:
            return input_ids, attention_mask
        pad = (length - n, 0) if self.padding_side == "left" else (0, length - n)
        ids = F.pad(input_ids, pad, value=self.pad_token_id)
        mask = None if attention_mask is None else F.pad(attention_mask, pad, value=0)
        return ids, mask

    def text_features(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Final-LayerNorm state at the last of :attr:`max_text_length` positions (B, H_text), before ``head``.

        ``attention_mask`` is accepted for the common interface and ignored: SigLIP and SigLIP 2 were
        trained without a text mask (pad tokens are attended), so the adapter runs them that way.
        """
        ids, _ = self.fixed_length(input_ids, attention_mask)
        return self.base_model.text_model(input_ids=ids).last_hidden_state[:, -1]

    def project_texts(self, features: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """``text_model.head`` (B, H_text) -> (B, D), optionally L2-normalised."""
        emb = self.base_model.text_model.head(features)
        return F.normalize(emb, dim=-1) if normalize else emb

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Texts -> ``{"input_ids", "attention_mask"}`` padded to ``max_length`` (SigLIP's training padding)."""
        tok = getattr(self._require_processor("tokenize"), "tokenizer", self.processor)
        bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
        if bad:
            raise TypeError(f"tokenize expects strings; item {bad[0]} is {texts[bad[0]]!r}")
        enc = tok(
            list(texts),
            padding="max_length",
            truncation=True,
            max_length=self.max_text_length,
            return_tensors="pt",
        )
        mask = enc.get("attention_mask")
        out = {"input_ids": enc["input_ids"].to(self.device)}
        out["attention_mask"] = torch.ones_like(out["input_ids"]) if mask is None else mask.to(self.device)
        return out

    # --- scale, bias, size ----------------------------------------------------------------------
    @property
    def logit_scale(self) -> torch.Tensor:
        """SigLIP's ``logit_scale`` as a scalar (a log scale: logits use its exp)."""
        return self.base_model.logit_scale.reshape(())

    def logit_bias(self) -> torch.Tensor:
        """SigLIP's learnable ``logit_bias`` as a scalar."""
        return self.base_model.logit_bias.reshape(())

    @property
    def embedding_dim(self) -> int:
        """The vision tower's hidden size (= the text head's output size)."""
        return int(self.base_model.config.vision_config.hidden_size)

    # --- GradCAM --------------------------------------------------------------------------------
    cls_tokens = 0
    """SigLIP's ViT has no CLS token: the sequence is the patch grid itself."""
    gradcam_layer = "vision_model.head"
    """GradCAM reads the *input* of the attention-pooling head: the post-LayerNorm patch tokens of the last
    layer, which the pooled embedding attends to (so every patch gets a gradient)."""


class Siglip2Adapter(SiglipAdapter):
    """``Siglip2Model`` (NaFlex): as :class:`SiglipAdapter`, with packed variable-grid ``pixel_values``."""

    model_kind = "siglip2"

    def __init__(self, model: nn.Module, processor: Any = None) -> None:
        if processor is not None and not isinstance(processor, NaflexPackingProcessor):
            processor = NaflexPackingProcessor(processor)
        super().__init__(model, processor)

    @property
    def patch_size(self) -> int:
        """The vision tower's patch size p."""
        return int(self.base_model.config.vision_config.patch_size)

    @property
    def gradcam_image_processor(self) -> SquareImageProcessor:
        """For GradCAM / AIoU: images resized (no crop) to the square grid of ``max_num_patches`` patches,
        as (B, 3, S, S) pixel values (accepted by :meth:`image_features` like packed ones)."""
        return SquareImageProcessor(self._require_processor("GradCAM").image_processor.inner)

    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Packed NaFlex patches (B, N, 3·p·p + 3), or plain (B, 3, h·p, w·p) pixels (one full grid for the
        batch) -> the attention-pooling head's output (B, H_vision)."""
        if pixel_values.ndim == 4:
            patches = patchify(pixel_values, self.patch_size)
            b, n = patches.shape[:2]
            mask = torch.ones(b, n, dtype=torch.long, device=patches.device)
            h, w = (int(x) // self.patch_size for x in pixel_values.shape[-2:])
            grids = torch.tensor([[h, w]] * b, dtype=torch.long, device=patches.device)
        else:
            patches, mask, grids = unpack_naflex(pixel_values)
        vision = self.base_model.vision_model
        return vision(pixel_values=patches, pixel_attention_mask=mask, spatial_shapes=grids).pooler_output

    def preprocess_images(self, images: Sequence[Any]) -> torch.Tensor:
        """Images -> packed NaFlex ``pixel_values`` (N, P, 3·p·p + 3) on the model's device."""
        proc = self._require_processor("preprocess_images")
        out = proc.image_processor(images=list(images), return_tensors="pt")
        return out["pixel_values"].to(self.device)

    def patch_grids(self, pixel_values: torch.Tensor) -> list[tuple[int, int]]:
        """Each image's (h, w) patch grid from the packed ``spatial_shapes`` (tokens beyond h·w are padding)."""
        if pixel_values.ndim == 4:
            return super().patch_grids(pixel_values)
        _, _, grids = unpack_naflex(pixel_values)
        return [(int(h), int(w)) for h, w in grids.tolist()]

    def network_images(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        """Each packed image back as (3, h·p, w·p) pixels (its own aspect ratio; still normalised)."""
        if pixel_values.ndim == 4:
            return list(pixel_values)
        patches, _, _ = unpack_naflex(pixel_values)
        grids = self.patch_grids(pixel_values)
        return [unpatchify(patches[i], grid, self.patch_size) for i, grid in enumerate(grids)]
