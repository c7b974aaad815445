"""hf_spurious: expose and mitigate spurious correlations in vision-language models.

The main names are re-exported here (imported on first use); each lives in its own subpackage:
``vocab``, ``text``, ``synthesis``, ``sources``, ``world``, ``data``, ``metrics``, ``losses``, ``models``, ``training``, ``evaluation``.
"""

from __future__ import annotations

from hf_spurious._lazy import lazy_exports
from hf_spurious.models.vsepp.auto import install_auto_registration as _install_vsepp

__version__ = "0.1.0"

_EXPORTS = {
    ".vocab": ["load_vocabulary"],
    ".synthesis": ["plan_removal", "get_inpainter"],
    ".metrics": [
        "odmap_at_k",
        "removed_mention_rate_at_k",
        "recall_at_k",
        "soft_iou",
        "aiou",
        "group_accuracies",
    ],
    ".losses": ["clip_contrastive_loss", "cross_group_similarity"],
    ".models": ["load_adapter", "apply_freezing"],
    ".training": ["SpuriousAwareTrainer", "SpuriousTrainingArguments"],
    ".data": ["CocoDecorrelated", "Flickr30kDecorrelated", "ShapesDecorrelated"],
    ".world": ["WorldConfig", "ClassificationWorldConfig", "generate_world", "load_world"],
    ".sources": ["read_coco", "read_flickr30k", "read_waterbirds"],
}

__getattr__, __dir__, _lazy_names = lazy_exports(__name__, _EXPORTS)

__all__ = ["__version__", *_lazy_names]

_install_vsepp()  # model_type "vsepp" joins AutoConfig / AutoModel when transformers loads (nothing imported now)
