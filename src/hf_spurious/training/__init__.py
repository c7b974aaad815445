"""Spurious-aware fine-tuning: ``SpuriousTrainingArguments``, ``SpuriousAwareTrainer``, the trainable adapter
module, collators, sampling, Group DRO, cached frozen features and the evaluation metrics."""

from __future__ import annotations

from hf_spurious._lazy import lazy_exports

_EXPORTS = {
    "SpuriousTrainingArguments": "hf_spurious.training.config",
    "SpuriousAwareTrainer": "hf_spurious.training.trainer",
    "TrainableAdapter": "hf_spurious.training.model",
    "SpuriousModel": "hf_spurious.training.model",  # deprecated name of TrainableAdapter
    "prepare_adapter": "hf_spurious.training.model",
    "dataset_groups": "hf_spurious.training.rows",
    "retrieval_recall_metrics": "hf_spurious.training.metrics",
    "group_metrics": "hf_spurious.training.metrics",
    "RetrievalCollator": "hf_spurious.training.collators",
    "ClassificationCollator": "hf_spurious.training.collators",
    "GroupBalancedSampler": "hf_spurious.training.samplers",
    "group_weights": "hf_spurious.training.samplers",
    "GroupDRO": "hf_spurious.training.group_dro",
    "cache_features": "hf_spurious.training.features",
    "compute_features": "hf_spurious.training.features",
    "prompt_features": "hf_spurious.training.features",
    "classification_rows": "hf_spurious.training.rows",
    "retrieval_rows": "hf_spurious.training.rows",
    "counterfactual_rows": "hf_spurious.training.rows",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
