"""Spurious-aware fine-tuning: ``SpuriousTrainingArguments``, ``SpuriousAwareTrainer``, the trainable adapter
module, collators, sampling, Group DRO, cached frozen features and the evaluation metrics."""

from __future__ import annotations

from hf_spurious._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        ".config": ["SpuriousTrainingArguments"],
        ".trainer": ["SpuriousAwareTrainer"],
        ".model": ["TrainableAdapter", "SpuriousModel", "prepare_adapter"],  # SpuriousModel: deprecated name
        ".rows": [
            "dataset_groups",
            "classification_rows",
            "retrieval_rows",
            "counterfactual_rows",
            "training_pairs",
        ],
        ".metrics": ["retrieval_recall_metrics", "group_metrics"],
        ".collators": ["RetrievalCollator", "ClassificationCollator"],
        ".samplers": ["GroupBalancedSampler", "group_weights", "global_draw_size"],
        ".group_dro": ["GroupDRO"],
        ".features": ["cache_features", "compute_features", "prompt_features", "content_digest"],
        ".hooks": ["TemperatureClamp"],
    },
)
