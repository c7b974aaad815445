"""Readers for the real formats, the SpuriousShapes world, and the decorrelated `datasets` builders.

Names are imported lazily so that ``import hf_spurious.data`` stays cheap.
"""

from __future__ import annotations

from hf_spurious._lazy import lazy_exports

_LAZY = {
    "read_coco": ".readers",
    "read_flickr30k": ".readers",
    "read_waterbirds": ".readers",
    "WorldConfig": ".world",
    "ClassificationWorldConfig": ".world",
    "generate_world": ".world",
    "load_world": ".world",
    "CocoDecorrelated": ".builders",
    "Flickr30kDecorrelated": ".builders",
    "ShapesDecorrelated": ".builders",
    "DecorrelatedConfig": ".builders",
    "build_gallery": ".builders",
    "export_parquet": ".hub",
    "push_decorrelated_to_hub": ".hub",
    "dataset_repo_id": ".hub",
}

__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
