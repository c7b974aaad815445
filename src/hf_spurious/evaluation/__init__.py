"""Evaluation: the chunked exact top-k retrieval engine and embedding cache, the retrieval and
classification runners, GradCAM / AIoU, and spurious-attribute discovery.

Names are imported lazily so ``import hf_spurious.evaluation`` stays cheap.
"""

from __future__ import annotations

from hf_spurious._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        ".topk": ["topk_similarities"],
        ".exact_topk": ["bf16_topk", "resolve_precision"],
        ".embedding_cache": [
            "EmbeddingCache",
            "embed_gallery",
            "embed_queries",
            "fingerprint_captions",
            "fingerprint_images",
        ],
        ".rerank": ["rerank_with_itm"],
        ".retrieval_sets": ["Gallery", "RecallSet", "RetrievalQueries"],
        ".retrieval": ["bidirectional_recall", "evaluate_retrieval", "evaluate_recall"],
        ".classification": ["classify_images", "evaluate_classification", "train_group_counts"],
        ".gradcam": ["ViTGradCAM", "ClassSimilarityTarget", "class_text_embeddings"],
        ".aiou": ["aiou_over_dataset", "aiou_for_records"],
        ".plots": ["save_overlay"],
        ".discovery": [
            "detect_attributes",
            "attribute_column_detections",
            "discover_spurious_attributes",
            "load_detector",
        ],
    },
)
