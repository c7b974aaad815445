"""Evaluation: the chunked exact top-k retrieval engine and embedding cache, the retrieval and
classification runners, GradCAM / AIoU, and spurious-attribute discovery.

Names are imported lazily so ``import hf_spurious.evaluation`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "topk_similarities": "engine",
    "EmbeddingCache": "engine",
    "embed_gallery": "engine",
    "embed_queries": "engine",
    "rerank_with_itm": "engine",
    "fingerprint_captions": "engine",
    "fingerprint_images": "engine",
    "Gallery": "retrieval",
    "RecallSet": "retrieval",
    "RetrievalQueries": "retrieval",
    "evaluate_retrieval": "retrieval",
    "evaluate_recall": "retrieval",
    "classify_images": "classification",
    "evaluate_classification": "classification",
    "train_group_counts": "classification",
    "ViTGradCAM": "gradcam",
    "ClassSimilarityTarget": "gradcam",
    "class_text_embeddings": "gradcam",
    "aiou_over_dataset": "gradcam",
    "aiou_for_records": "gradcam",
    "save_overlay": "gradcam",
    "detect_attributes": "discovery",
    "attribute_column_detections": "discovery",
    "discover_spurious_attributes": "discovery",
    "load_detector": "discovery",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
