"""SpuriousShapes: the built-in world with known, adjustable co-occurrences, written in the COCO / Karpathy
(retrieval) and WILDS Waterbirds (classification) layouts, with oracle counterfactual renders.

Modules, bottom up: ``config`` (settings, glyph table), ``shapes`` (unit glyph geometry), ``scenes``
(sampling), ``render`` (pixels), ``captions`` (grammars), ``world`` (``World``, ``load_world``),
``layouts`` (file writers), ``generate`` (``generate_world``).

Names are imported on first use, so ``import hf_spurious.world`` stays cheap.
"""

from __future__ import annotations

from hf_spurious._lazy import lazy_exports

_EXPORTS = {
    "WorldConfig": ".config",
    "ClassificationWorldConfig": ".config",
    "GLYPHS": ".config",
    "SHAPES_CLASSES": ".config",
    "PlacedObject": ".scenes",
    "Scene": ".scenes",
    "choose_classes": ".scenes",
    "draw_scene": ".render",
    "object_mask": ".render",
    "NOUNS": ".captions",
    "World": ".world",
    "load_world": ".world",
    "generate_world": ".generate",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
