"""Model adapters (CLIP, BLIP retrieval), freezing policies and tiny offline test models.

Public names are imported lazily so that ``import hf_spurious.models.tiny`` stays light.
"""

from __future__ import annotations

from hf_spurious._lazy import lazy_exports

_EXPORTS = {
    "VisionLanguageAdapter": "hf_spurious.models.adapters",
    "ClipAdapter": "hf_spurious.models.adapters",
    "BlipRetrievalAdapter": "hf_spurious.models.adapters",
    "UnsupportedModelError": "hf_spurious.models.adapters",
    "RetrievalLoss": "hf_spurious.models.adapters",
    "DEFAULT_LORA_TARGETS": "hf_spurious.models.freezing",
    "load_adapter": "hf_spurious.models.loading",
    "apply_freezing": "hf_spurious.models.freezing",
    "FreezingSummary": "hf_spurious.models.freezing",
    "FREEZING_POLICIES": "hf_spurious.models.freezing",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
