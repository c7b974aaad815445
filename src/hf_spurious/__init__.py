"""hf_spurious: expose and mitigate spurious correlations in vision-language models.

The main names are re-exported here (imported on first use); each lives in its own subpackage:
``vocab``, ``text``, ``synthesis``, ``sources``, ``world``, ``data``, ``metrics``, ``losses``, ``models``, ``training``, ``evaluation``.
"""

from __future__ import annotations

from hf_spurious._lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS = {
    "load_vocabulary": "hf_spurious.vocab",
    "plan_removal": "hf_spurious.synthesis",
    "get_inpainter": "hf_spurious.synthesis",
    "odmap_at_k": "hf_spurious.metrics",
    "removed_mention_rate_at_k": "hf_spurious.metrics",
    "recall_at_k": "hf_spurious.metrics",
    "soft_iou": "hf_spurious.metrics",
    "aiou": "hf_spurious.metrics",
    "group_accuracies": "hf_spurious.metrics",
    "clip_contrastive_loss": "hf_spurious.losses",
    "cross_group_similarity": "hf_spurious.losses",
    "load_adapter": "hf_spurious.models",
    "apply_freezing": "hf_spurious.models",
    "SpuriousAwareTrainer": "hf_spurious.training",
    "SpuriousTrainingArguments": "hf_spurious.training",
    "CocoDecorrelated": "hf_spurious.data",
    "Flickr30kDecorrelated": "hf_spurious.data",
    "ShapesDecorrelated": "hf_spurious.data",
    "WorldConfig": "hf_spurious.world",
    "ClassificationWorldConfig": "hf_spurious.world",
    "generate_world": "hf_spurious.world",
    "load_world": "hf_spurious.world",
    "read_coco": "hf_spurious.sources",
    "read_flickr30k": "hf_spurious.sources",
    "read_waterbirds": "hf_spurious.sources",
}

__all__ = ["__version__", *sorted(_EXPORTS)]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
