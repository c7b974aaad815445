"""The decorrelated ``datasets`` builders (COCO, Flickr30k, SpuriousShapes), parquet export with dataset cards,
and ``push_to_hub``.

Names are imported lazily so that ``import hf_spurious.data`` stays cheap.
"""

from __future__ import annotations

from hf_spurious._lazy import lazy_exports

_LAZY = {
    "CocoDecorrelated": ".builders",
    "Flickr30kDecorrelated": ".builders",
    "ShapesDecorrelated": ".builders",
    "DecorrelatedConfig": ".builders",
    "build_gallery": ".builders",
    "generate_in_processes": ".builders",
    "export_parquet": ".export",
    "push_decorrelated_to_hub": ".export",
}

__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
