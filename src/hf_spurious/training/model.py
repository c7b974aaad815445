"""The module the Trainer trains: an adapter prepared for training (scale, freezing) behind one ``forward``."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn
from transformers.utils import logging

from hf_spurious.models import apply_freezing, load_adapter
from hf_spurious.models.adapters import VisionLanguageAdapter

from .config import SpuriousTrainingArguments

logger = logging.get_logger(__name__)

__all__ = ["SpuriousModel", "TrainableAdapter", "load_checkpoint_weights", "prepare_adapter"]


class TrainableAdapter(nn.Module):
    """One ``forward`` over an adapter, so the Trainer (and DDP) see a single module.

    Parameters live in ``self.model`` (the Hugging Face model, or its peft wrapper). ``forward`` takes raw
    inputs (``pixel_values`` / ``input_ids``) or cached pooled features (``image_features`` /
    ``text_features``) and prompt groups, and returns projected (unnormalised) embeddings.
    """

    def __init__(self, adapter: VisionLanguageAdapter) -> None:
        super().__init__()
        self.model = adapter.model
        object.__setattr__(self, "adapter", adapter)  # not a submodule: its parameters are self.model's

    @property
    def config(self) -> Any:
        return getattr(self.model, "config", None)

    @property
    def model_tags(self) -> list[str] | None:
        """The wrapped model's tags (``Trainer.push_to_hub`` copies them into the card)."""
        return getattr(self.model, "model_tags", None)

    def _images(
        self, pixel_values: torch.Tensor | None, image_features: torch.Tensor | None
    ) -> torch.Tensor | None:
        if image_features is None and pixel_values is None:
            return None
        feats = image_features if image_features is not None else self.adapter.image_features(pixel_values)
        return self.adapter.project_images(feats)

    def _texts(
        self, ids: torch.Tensor | None, mask: torch.Tensor | None, feats: torch.Tensor | None
    ) -> torch.Tensor | None:
        if feats is None and ids is None:
            return None
        feats = feats if feats is not None else self.adapter.text_features(ids, mask)
        return self.adapter.project_texts(feats)

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        image_features: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        text_features: torch.Tensor | None = None,
        prompts: dict[str, dict[str, torch.Tensor]] | None = None,
    ) -> dict[str, Any]:
        out: dict[str, Any] = {
            "image_embeds": self._images(pixel_values, image_features),
            "text_embeds": self._texts(input_ids, attention_mask, text_features),
            "prompt_embeds": {
                name: self._texts(p.get("input_ids"), p.get("attention_mask"), p.get("features"))
                for name, p in (prompts or {}).items()
            },
        }
        scale = self.adapter.logit_scale
        # a copy made inside forward: DDP must see the parameter used through this module's graph only once
        out["logit_scale"] = scale.clone() if isinstance(scale, torch.Tensor) else torch.tensor(float(scale))
        bias_of = getattr(self.adapter, "logit_bias", None)  # SigLIP's sigmoid-loss bias; None elsewhere
        bias = bias_of() if callable(bias_of) else None
        out["logit_bias"] = bias.clone() if isinstance(bias, torch.Tensor) else bias
        return out


class SpuriousModel(TrainableAdapter):
    """Deprecated name of :class:`TrainableAdapter` (removed in hf_spurious 0.3)."""

    def __init__(self, adapter: VisionLanguageAdapter) -> None:
        warnings.warn(
            "SpuriousModel is deprecated and will be removed in hf_spurious 0.3; use TrainableAdapter",
            FutureWarning,
            stacklevel=2,
        )
        super().__init__(adapter)


def _init_logit_scale(adapter: VisionLanguageAdapter, value: float) -> None:
    with torch.no_grad():
        if isinstance(adapter.logit_scale, nn.Parameter):  # CLIP: log scale s
            adapter.logit_scale.fill_(value)
        elif isinstance(getattr(adapter, "temp", None), nn.Parameter):  # BLIP: temp = exp(-s)
            adapter.temp.fill_(math.exp(-value))
        else:
            raise ValueError("logit_scale_init needs a learnable logit scale or temperature parameter")


def prepare_adapter(model: Any, args: SpuriousTrainingArguments) -> VisionLanguageAdapter:
    """The adapter of ``model`` (an adapter, a Hugging Face model, a model id or directory) with the logit
    scale initialised and the parameters frozen as ``args`` say."""
    adapter = model if hasattr(model, "project_images") else load_adapter(model)
    if args.logit_scale_init is not None:
        _init_logit_scale(adapter, args.logit_scale_init)
    summary = apply_freezing(
        adapter,
        policy=args.freeze_policy,
        lora_target_modules=args.lora_target_modules,
        lora_r=args.lora_r,
        lora_alpha=args.lora_alpha,
    )
    logger.info(f"freezing: {summary}")
    if args.train_text_embeddings:
        text = getattr(adapter.base_model, "text_model", None)
        if text is None or not hasattr(text, "embeddings") or not hasattr(text, "final_layer_norm"):
            raise ValueError("train_text_embeddings needs a CLIP-shaped text tower (text_model.embeddings)")
        text.embeddings.requires_grad_(True)
        text.final_layer_norm.requires_grad_(True)
    if not args.learn_logit_scale:
        for p in (adapter.logit_scale, getattr(adapter, "temp", None)):
            if isinstance(p, nn.Parameter):
                p.requires_grad_(False)
    return adapter


def load_checkpoint_weights(inner: nn.Module, checkpoint: str | Path) -> None:
    """Load a checkpoint's ``adapter_model.safetensors`` (peft) or ``model.safetensors`` into ``inner``."""
    adapter_file = Path(checkpoint, "adapter_model.safetensors")
    if adapter_file.exists():
        from peft import set_peft_model_state_dict  # lazy: peft is an optional dependency

        set_peft_model_state_dict(inner, load_file(str(adapter_file)))
        return
    weights = Path(checkpoint, "model.safetensors")
    if not weights.exists():
        raise ValueError(f"no model.safetensors or adapter_model.safetensors in checkpoint {checkpoint}")
    result = inner.load_state_dict(load_file(str(weights)), strict=False)
    if result.unexpected_keys:
        raise ValueError(f"checkpoint {checkpoint} has unexpected weights {result.unexpected_keys[:5]}")
