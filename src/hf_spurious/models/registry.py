"""The supported model families in one table: ``model_type`` -> model class, adapter, retrieval loss.

:data:`FAMILIES` is the single place that says which checkpoints :func:`hf_spurious.models.load_adapter`
accepts and how each maps onto the common :class:`~hf_spurious.models.adapters.VisionLanguageAdapter`
interface. Classes are named as ``"module:Class"`` strings and imported on demand, so reading the table
costs nothing. A model instance is matched by class (``isinstance``), then by shape (the attributes in
:attr:`ModelFamily.shape`); a checkpoint by its config's ``model_type`` (and ``architectures`` where a
family accepts only some heads). Anything else raises
:class:`~hf_spurious.models.adapters.UnsupportedModelError` listing :func:`supported_summary`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from hf_spurious.models.adapters.base import UnsupportedModelError

__all__ = [
    "FAMILIES",
    "ModelFamily",
    "adapter_class_for",
    "family_for_config",
    "family_for_model",
    "supported_model_types",
    "supported_summary",
]

RETRIEVAL_LOSSES = ("clip", "sigmoid", "triplet")
"""Retrieval losses a family can name (see :mod:`hf_spurious.losses`)."""


def _import(path: str) -> Any:
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class ModelFamily:
    """One supported model family (a row of :data:`FAMILIES`)."""

    model_type: str
    """``config.model_type`` of its checkpoints."""
    model_class: str
    """``"module:Class"`` of the model class loaded for a checkpoint."""
    adapter: str
    """``"module:Class"`` of the adapter that maps it onto the common interface."""
    retrieval_loss: str
    """The loss it was trained with and fine-tunes with by default (``"clip"``, ``"sigmoid"``, ``"triplet"``)."""
    notes: str
    """How it maps onto the interface (pooled features, projections, scale), shown in errors and docs."""
    shape: tuple[str, ...] = ()
    """Attributes that make any model instance count as this family (duck typing); empty = class only."""
    architectures: tuple[str, ...] = ()
    """If set, the only ``config.architectures`` accepted (e.g. BLIP's retrieval head)."""

    def __post_init__(self) -> None:
        if self.retrieval_loss not in RETRIEVAL_LOSSES:
            raise ValueError(
                f"family {self.model_type!r}: retrieval_loss {self.retrieval_loss!r} is not one of "
                f"{', '.join(RETRIEVAL_LOSSES)}"
            )

    @property
    def class_name(self) -> str:
        """The model class's name (no import)."""
        return self.model_class.partition(":")[2]

    def load_model_class(self) -> type:
        """Import and return the model class (registers custom Auto classes as a side effect)."""
        return _import(self.model_class)

    def load_adapter_class(self) -> type:
        """Import and return the adapter class."""
        return _import(self.adapter)

    def describe(self) -> str:
        """One line for error messages: class, model_type and duck-typed shape."""
        text = f"{self.class_name} (model_type {self.model_type!r}"
        if self.shape:
            text += "; or a model with attributes " + ", ".join(self.shape)
        return text + ")"


_ADAPTERS = "hf_spurious.models.adapters"
_CLIP_SHAPE = ("vision_model", "text_model", "visual_projection", "text_projection", "logit_scale")
_BLIP_SHAPE = ("vision_model", "text_encoder", "vision_proj", "text_proj", "itm_head")

FAMILIES: tuple[ModelFamily, ...] = (
    ModelFamily(
        "clip",
        "transformers:CLIPModel",
        f"{_ADAPTERS}:ClipAdapter",
        "clip",
        "pooled = each tower's pooler_output (image CLS, text first eos); projections "
        "visual_projection / text_projection; logit_scale (log)",
        shape=_CLIP_SHAPE,
    ),
    ModelFamily(
        "clip_resnet",
        "hf_spurious.models.clip_resnet:ClipResNetModel",
        f"{_ADAPTERS}:ClipAdapter",
        "clip",
        "CLIP RN50 / RN101 / RN50x4 ... (see hf-spurious convert-openclip): CLIP's shape, image pooled by "
        "the ResNet's attention pool",
    ),
    ModelFamily(
        "blip",
        "transformers:BlipForImageTextRetrieval",
        f"{_ADAPTERS}:BlipRetrievalAdapter",
        "clip",
        "pooled = CLS states (text encoder in unimodal mode); projections vision_proj / text_proj; "
        "learnable temperature temp registered on the model; ITM head for re-ranking",
        shape=_BLIP_SHAPE,
        architectures=("BlipForImageTextRetrieval",),
    ),
    ModelFamily(
        "siglip",
        "transformers:SiglipModel",
        f"{_ADAPTERS}:SiglipAdapter",
        "sigmoid",
        "image pooled by the attention-pooling head (no CLS token, no separate image projection); "
        "text = last position of a max_length-padded sequence, projected by text_model.head; "
        "logit_scale (log) and logit_bias",
    ),
    ModelFamily(
        "siglip2",
        "transformers:Siglip2Model",
        f"{_ADAPTERS}:Siglip2Adapter",
        "sigmoid",
        "as SigLIP, with NaFlex images (variable patch grids: the adapter packs pixel_attention_mask "
        "and spatial_shapes into pixel_values)",
    ),
    ModelFamily(
        "vsepp",
        "hf_spurious.models.vsepp.modeling:VseppModel",
        "hf_spurious.models.vsepp.adapter:VseppAdapter",
        "triplet",
        "VSE++: image pooled = VGG fc7 (or a transformers backbone's pooled output), projected by img_fc; "
        "text = GRU final state (no projection); cosine scores (logit_scale 0)",
    ),
)
"""Every supported family, in matching order (first match wins)."""


def supported_summary() -> str:
    """The supported families as one ``; ``-separated string (used in every unsupported-model error)."""
    return "; ".join(f.describe() for f in FAMILIES)


def supported_model_types() -> str:
    """The supported ``model_type`` values as a phrase for help texts: ``"clip, ..., siglip2 or vsepp"``."""
    types = [f.model_type for f in FAMILIES]
    return ", ".join(types[:-1]) + " or " + types[-1]


def family_for_config(config: Any, where: str) -> ModelFamily:
    """The family of a checkpoint's config, or :class:`UnsupportedModelError` naming ``where``."""
    model_type = getattr(config, "model_type", None)
    architectures = list(getattr(config, "architectures", None) or [])
    for family in FAMILIES:
        if family.model_type != model_type:
            continue
        if family.architectures and architectures and not set(architectures) & set(family.architectures):
            raise UnsupportedModelError(
                f"{where} is a {model_type.upper()} {architectures[0]} checkpoint; retrieval needs a "
                f"{' or '.join(family.architectures)} checkpoint"
                + (" (e.g. Salesforce/blip-itm-base-coco)" if model_type == "blip" else "")
            )
        return family
    raise UnsupportedModelError(
        f"{where} has model_type {model_type!r} ({', '.join(architectures) or 'no architectures'}); "
        "supported: " + supported_summary()
    )


def family_for_model(model: Any) -> ModelFamily:
    """The family of a model instance: by class first, then by shape; else :class:`UnsupportedModelError`."""
    for family in FAMILIES:
        try:
            cls = family.load_model_class()
        except (ImportError, AttributeError):  # pragma: no cover - an older transformers without the class
            continue
        if isinstance(model, cls):
            return family
    for family in FAMILIES:
        if family.shape and all(hasattr(model, a) for a in family.shape):
            return family
    raise UnsupportedModelError(
        f"no vision-language adapter for {type(model).__name__}; supported: " + supported_summary()
    )


def adapter_class_for(model: Any) -> type:
    """The adapter class for a model instance (see :func:`family_for_model`)."""
    return family_for_model(model).load_adapter_class()
