"""SpuriousShapes: the built-in world with known, adjustable co-occurrences, written in the COCO / Karpathy
(retrieval) and WILDS Waterbirds (classification) layouts, with oracle counterfactual renders.

Modules, bottom up: ``config`` (settings, glyph table), ``shapes`` (unit glyph geometry), ``scenes``
(sampling), ``render`` (pixels), ``captions`` (grammars), ``world`` (``World``, ``load_world``),
``layouts`` (file writers), ``generate`` (``generate_world``).

Names are imported on first use, so ``import hf_spurious.world`` stays cheap.
"""

from __future__ import annotations

from hf_spurious._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        ".config": ["WorldConfig", "ClassificationWorldConfig", "GLYPHS", "SHAPES_CLASSES"],
        ".scenes": ["PlacedObject", "Scene", "choose_classes"],
        ".render": ["draw_scene", "object_mask"],
        ".captions": ["NOUNS"],
        ".world": ["World", "load_world"],
        ".generate": ["generate_world"],
    },
)
