"""The decorrelated ``datasets`` builders (COCO, Flickr30k, SpuriousShapes), parquet export with dataset cards,
and ``push_to_hub``.

Names are imported lazily so that ``import hf_spurious.data`` stays cheap.
"""

from __future__ import annotations

from hf_spurious._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        ".builders": [
            "CocoDecorrelated",
            "Flickr30kDecorrelated",
            "ShapesDecorrelated",
            "DecorrelatedConfig",
            "build_gallery",
            "generate_in_processes",
        ],
        ".export": ["export_parquet", "push_decorrelated_to_hub"],
    },
)
