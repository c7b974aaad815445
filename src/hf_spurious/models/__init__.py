"""Model adapters (CLIP, BLIP retrieval), freezing policies and tiny offline test models.

Public names are imported lazily so that ``import hf_spurious.models.tiny`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "VisionLanguageAdapter": "hf_spurious.models.adapters",
    "ClipAdapter": "hf_spurious.models.adapters",
    "BlipRetrievalAdapter": "hf_spurious.models.adapters",
    "UnsupportedModelError": "hf_spurious.models.adapters",
    "RetrievalLoss": "hf_spurious.models.adapters",
    "DEFAULT_LORA_TARGETS": "hf_spurious.models.freezing",
    "load_adapter": "hf_spurious.models.adapters",
    "apply_freezing": "hf_spurious.models.freezing",
    "FreezingSummary": "hf_spurious.models.freezing",
    "FREEZING_POLICIES": "hf_spurious.models.freezing",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'hf_spurious.models' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
