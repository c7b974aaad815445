"""The one schema every reader emits: scenes for retrieval, labelled images for classification.

Records validate themselves on construction, so a bad annotation fails where it is read, with a
message that names the image and says what to fix.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

BoxPolicy = Literal["clip", "reject"]


class RecordError(ValueError):
    """An annotation that cannot become a record; the message names the item and the fix."""


@dataclass(frozen=True)
class Phrase:
    """A span of a caption, ``text == caption[start:end]``, with the classes it refers to (may be empty)."""

    text: str
    start: int
    end: int
    classes: frozenset[str] = frozenset()


@dataclass(frozen=True)
class ObjectBox:
    """One object instance: ``bbox`` is ``(x, y, w, h)`` in pixels (COCO convention)."""

    bbox: tuple[float, float, float, float]
    category: str
    segmentation: tuple[tuple[float, ...], ...] | None = None  # polygons, flat [x0, y0, x1, y1, ...]

    @property
    def xyxy(self) -> tuple[float, float, float, float]:
        x, y, w, h = self.bbox
        return (x, y, x + w, y + h)


def _four_numbers(bbox: object, where: str) -> tuple[float, float, float, float]:
    """``bbox`` as 4 floats; anything else (None, 3 values, text) is a ``RecordError`` naming the box."""
    shown = repr(bbox) if len(repr(bbox)) <= 80 else repr(bbox)[:77] + "..."
    fix = "give the box as 4 numbers [x, y, w, h] or drop the annotation"
    if isinstance(bbox, (str, bytes, dict)) or not hasattr(bbox, "__len__") or len(bbox) != 4:
        raise RecordError(f"{where}: a box needs 4 numbers [x, y, w, h], got {shown}; {fix}")
    out = []
    for v in bbox:
        try:
            if isinstance(v, bool):
                raise TypeError(v)
            out.append(float(v))
        except (TypeError, ValueError):
            raise RecordError(f"{where}: box {shown} holds {v!r}, not a number; {fix}") from None
    return out[0], out[1], out[2], out[3]


def fit_box(
    bbox: Sequence[float], width: int, height: int, *, where: str, policy: BoxPolicy = "clip"
) -> tuple[float, float, float, float]:
    """Return ``bbox`` inside a ``width`` x ``height`` image, clipped or rejected per ``policy``.

    A box with no area inside the image (or NaN, or negative size) is always rejected.
    """
    x, y, w, h = _four_numbers(bbox, where)
    if not all(math.isfinite(v) for v in (x, y, w, h)) or w < 0 or h < 0:
        raise RecordError(f"{where}: invalid box {[x, y, w, h]} (non-finite or negative size)")
    x0, y0, x1, y1 = max(x, 0.0), max(y, 0.0), min(x + w, float(width)), min(y + h, float(height))
    if x1 <= x0 or y1 <= y0:
        raise RecordError(
            f"{where}: box {[x, y, w, h]} lies outside the {width}x{height} image; fix or drop the annotation"
        )
    inside = (x0, y0, x1 - x0, y1 - y0)
    if inside != (x, y, w, h) and policy == "reject":
        raise RecordError(
            f"{where}: box {[x, y, w, h]} extends outside the {width}x{height} image "
            "(use box_policy='clip' to clip it)"
        )
    return inside


def _check_captions(captions: Iterable[str], where: str) -> tuple[str, ...]:
    out = tuple(captions)
    for i, caption in enumerate(out):
        if not isinstance(caption, str) or not caption.strip():
            raise RecordError(f"{where}: caption {i} is empty; remove it from the annotation file")
    return out


@dataclass(frozen=True)
class SceneRecord:
    """An image with its object boxes and captions (COCO, Flickr30k, SpuriousShapes retrieval)."""

    image_id: str
    image_path: str
    width: int
    height: int
    objects: tuple[ObjectBox, ...]
    captions: tuple[str, ...]
    split: str
    caption_phrases: tuple[tuple[Phrase, ...], ...] | None = None  # annotated phrases per caption (Flickr30k)
    source: str = ""

    def __post_init__(self) -> None:
        where = f"image {self.image_id!r}"
        if self.width <= 0 or self.height <= 0:
            raise RecordError(f"{where}: image size {self.width}x{self.height} is not positive")
        object.__setattr__(self, "captions", _check_captions(self.captions, where))
        object.__setattr__(self, "objects", tuple(self.objects))
        for obj in self.objects:
            if fit_box(obj.bbox, self.width, self.height, where=where, policy="reject") != tuple(obj.bbox):
                raise RecordError(f"{where}: box {obj.bbox} is not inside the image")
        if self.caption_phrases is not None and len(self.caption_phrases) != len(self.captions):
            raise RecordError(
                f"{where}: {len(self.caption_phrases)} phrase lists for {len(self.captions)} captions"
            )

    @classmethod
    def build(
        cls,
        *,
        image_id: str | int,
        image_path: str,
        width: int,
        height: int,
        objects: Iterable[tuple[Sequence[float], str] | ObjectBox],
        captions: Iterable[str],
        split: str,
        known_classes: Iterable[str] | None = None,
        box_policy: BoxPolicy = "clip",
        caption_phrases: Sequence[Sequence[Phrase]] | None = None,
        source: str = "",
    ) -> SceneRecord:
        """Validate raw annotations into a record: boxes fitted per ``box_policy``, classes checked."""
        where = f"image {str(image_id)!r}"
        known = None if known_classes is None else frozenset(known_classes)
        fitted = []
        for obj in objects:
            if not isinstance(obj, ObjectBox):
                obj = ObjectBox(_four_numbers(obj[0], where), obj[1])
            if known is not None and obj.category not in known:
                raise RecordError(
                    f"{where}: unknown class {obj.category!r}; add it to the vocabulary or drop the object"
                )
            box = fit_box(obj.bbox, width, height, where=where, policy=box_policy)
            fitted.append(ObjectBox(box, obj.category, obj.segmentation))
        phrases = None if caption_phrases is None else tuple(tuple(p) for p in caption_phrases)
        return cls(
            image_id=str(image_id),
            image_path=str(image_path),
            width=int(width),
            height=int(height),
            objects=tuple(fitted),
            captions=tuple(captions),
            split=split,
            caption_phrases=phrases,
            source=source,
        )

    @property
    def classes(self) -> frozenset[str]:
        return frozenset(o.category for o in self.objects)


def group_id(label: int, attribute: int, num_attributes: int) -> int:
    """Group of a (class, spurious attribute) pair: ``label * num_attributes + attribute``.

    Waterbirds (two places): 0 landbird/land, 1 landbird/water, 2 waterbird/land, 3 waterbird/water.
    Raises ``ValueError`` for a negative label or an attribute outside ``[0, num_attributes)``.
    """
    label, attribute, num_attributes = int(label), int(attribute), int(num_attributes)
    if num_attributes < 1:
        raise ValueError(f"num_attributes must be >= 1, got {num_attributes}")
    if label < 0:
        raise ValueError(f"label {label} is negative; class ids start at 0")
    if not 0 <= attribute < num_attributes:
        raise ValueError(f"attribute {attribute} outside [0, {num_attributes}); check the attribute labels")
    return label * num_attributes + attribute


@dataclass(frozen=True)
class ClassificationRecord:
    """A labelled image with a spurious attribute (Waterbirds, SpuriousShapes classification).

    ``group = label * num_attributes + attribute`` (Waterbirds: 0 landbird/land, 1 landbird/water,
    2 waterbird/land, 3 waterbird/water).
    """

    image_id: str
    image_path: str
    label: int
    attribute: int
    split: str
    mask_path: str | None = None
    num_attributes: int = 2
    group: int = field(init=False)

    def __post_init__(self) -> None:
        where = f"image {self.image_id!r}"
        if self.label < 0:
            raise RecordError(f"{where}: label {self.label} is negative")
        if not 0 <= self.attribute < self.num_attributes:
            raise RecordError(
                f"{where}: attribute {self.attribute} outside [0, {self.num_attributes}); check the metadata"
            )
        object.__setattr__(self, "group", group_id(self.label, self.attribute, self.num_attributes))
