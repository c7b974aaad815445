"""One interface over CLIP-style and BLIP-retrieval models: encoders, projections, logit scale, ITM.

:class:`VisionLanguageAdapter` (:mod:`.base`) is the protocol every caller relies on;
:class:`ClipAdapter` (:mod:`.clip`) wraps ``CLIPModel`` (and any model with CLIP's shape: ``vision_model``,
``text_model``, ``visual_projection``, ``text_projection``, ``logit_scale``); :class:`BlipRetrievalAdapter`
(:mod:`.blip`) wraps ``BlipForImageTextRetrieval`` (and anything with its shape: ``vision_model``,
``text_encoder``, ``vision_proj``, ``text_proj``, ``itm_head``); :class:`SiglipAdapter` /
:class:`Siglip2Adapter` (:mod:`.siglip`) wrap ``SiglipModel`` / ``Siglip2Model`` (sigmoid loss, logit bias).
``hf_spurious.models.load_adapter`` picks the right one for a model, hub id or folder using the table in
:mod:`hf_spurious.models.registry`.
"""

from __future__ import annotations

from hf_spurious.models.adapters.base import RetrievalLoss, UnsupportedModelError, VisionLanguageAdapter
from hf_spurious.models.adapters.blip import (
    BLIP_MAX_TEXT_TOKENS,
    BLIP_TEMP_KEY,
    BLIP_TEMP_RANGE,
    BlipRetrievalAdapter,
)
from hf_spurious.models.adapters.clip import ClipAdapter
from hf_spurious.models.adapters.siglip import Siglip2Adapter, SiglipAdapter

__all__ = [
    "BLIP_MAX_TEXT_TOKENS",
    "BLIP_TEMP_KEY",
    "BLIP_TEMP_RANGE",
    "BlipRetrievalAdapter",
    "ClipAdapter",
    "RetrievalLoss",
    "Siglip2Adapter",
    "SiglipAdapter",
    "UnsupportedModelError",
    "VisionLanguageAdapter",
]
