"""Model adapters (CLIP, BLIP retrieval, SigLIP / SigLIP 2; the table: :mod:`.registry`), freezing policies, real-size random-weight models (:mod:`.real_size`) and tiny offline test models.

Public names are imported lazily so that ``import hf_spurious.models.tiny`` stays light.
"""

from __future__ import annotations

from hf_spurious._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        ".adapters": [
            "VisionLanguageAdapter",
            "ClipAdapter",
            "BlipRetrievalAdapter",
            "UnsupportedModelError",
            "RetrievalLoss",
            "SiglipAdapter",
            "Siglip2Adapter",
        ],
        ".freezing": ["DEFAULT_LORA_TARGETS", "apply_freezing", "FreezingSummary", "FREEZING_POLICIES"],
        ".loading": ["load_adapter"],
        ".registry": ["FAMILIES", "ModelFamily", "supported_summary"],
        ".real_size": ["REAL_SIZE_MODELS", "build_real_size", "real_size_config"],
    },
)
