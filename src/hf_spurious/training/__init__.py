"""Spurious-aware fine-tuning: ``SpuriousTrainingArguments``, ``SpuriousAwareTrainer``, collators, sampling,
Group DRO and cached frozen features."""

from __future__ import annotations

from hf_spurious._lazy import lazy_exports

_EXPORTS = {
    "SpuriousTrainingArguments": "hf_spurious.training.config",
    "SpuriousAwareTrainer": "hf_spurious.training.trainer",
    "SpuriousModel": "hf_spurious.training.trainer",
    "dataset_groups": "hf_spurious.training.trainer",
    "retrieval_recall_metrics": "hf_spurious.training.trainer",
    "RetrievalCollator": "hf_spurious.training.collators",
    "ClassificationCollator": "hf_spurious.training.collators",
    "GroupBalancedSampler": "hf_spurious.training.samplers",
    "group_weights": "hf_spurious.training.samplers",
    "GroupDRO": "hf_spurious.training.group_dro",
    "cache_features": "hf_spurious.training.features",
    "compute_features": "hf_spurious.training.features",
    "prompt_features": "hf_spurious.training.features",
    "classification_rows": "hf_spurious.training.data",
    "retrieval_rows": "hf_spurious.training.data",
    "counterfactual_rows": "hf_spurious.training.data",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
