"""Readers for the real on-disk formats, each emitting :mod:`hf_spurious.records`: COCO (2014 / 2017, Karpathy
splits, captions files), Flickr30k Entities, Waterbirds (WILDS), the ImageNet
localisation release (Yang et al.'s two-class studies). The SpuriousShapes world is read by these
same readers.

Each reader turns annotation files into validated records and fails with a ``RecordError`` whose message
names the file and the item. File names taken from annotation files are checked: absolute paths and ``..``
components are refused (no path traversal).
"""

from __future__ import annotations

from hf_spurious._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        ".coco": ["read_coco"],
        ".flickr30k": ["read_flickr30k", "parse_entities_sentence"],
        ".waterbirds": ["read_waterbirds"],
        ".imagenet": ["read_imagenet_pair"],
        ".common": ["MissingFileError", "safe_relative"],
    },
)
