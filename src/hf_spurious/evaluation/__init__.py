"""Evaluation: the chunked exact top-k retrieval engine and embedding cache, the retrieval and
classification runners, GradCAM / AIoU, and spurious-attribute discovery.

Names are imported lazily so ``import hf_spurious.evaluation`` stays cheap.
"""

from __future__ import annotations

from hf_spurious._lazy import lazy_exports

_EXPORTS = {
    "topk_similarities": ".topk",
    "EmbeddingCache": ".embedding_cache",
    "embed_gallery": ".embedding_cache",
    "embed_queries": ".embedding_cache",
    "fingerprint_captions": ".embedding_cache",
    "fingerprint_images": ".embedding_cache",
    "rerank_with_itm": ".rerank",
    "Gallery": ".retrieval_sets",
    "RecallSet": ".retrieval_sets",
    "RetrievalQueries": ".retrieval_sets",
    "bidirectional_recall": ".retrieval",
    "evaluate_retrieval": ".retrieval",
    "evaluate_recall": ".retrieval",
    "classify_images": ".classification",
    "evaluate_classification": ".classification",
    "train_group_counts": ".classification",
    "ViTGradCAM": ".gradcam",
    "ClassSimilarityTarget": ".gradcam",
    "class_text_embeddings": ".gradcam",
    "aiou_over_dataset": ".aiou",
    "aiou_for_records": ".aiou",
    "save_overlay": ".plots",
    "detect_attributes": ".discovery",
    "attribute_column_detections": ".discovery",
    "discover_spurious_attributes": ".discovery",
    "load_detector": ".discovery",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
