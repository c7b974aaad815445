"""Settings of the SpuriousShapes world: the glyph table, the bird/place constants and the two configs.

``WorldConfig`` describes the retrieval world (COCO / Karpathy layout), ``ClassificationWorldConfig`` the
classification world (WILDS Waterbirds layout). Both are frozen dataclasses whose fields are saved, in
order, in ``world.json``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

SPLITS = ("train", "val", "test")
SPLIT_CODE = {"train": 0, "val": 1, "test": 2, "pretrain": 3}
FORMAT_VERSION = 1


@dataclass(frozen=True)
class GlyphSpec:
    """How one class is drawn and described."""

    coco_id: int
    supercategory: str
    shape: str
    colour: tuple[int, int, int]
    colour_word: str
    texture: str
    upright: bool
    backgrounds: tuple[str, ...]  # backgrounds this class favours


GLYPHS: dict[str, GlyphSpec] = {
    "person": GlyphSpec(1, "person", "plus", (220, 50, 200), "magenta", "solid", True, ()),
    "bicycle": GlyphSpec(2, "vehicle", "bowtie", (175, 175, 195), "silver", "stripes", True, ("road",)),
    "car": GlyphSpec(3, "vehicle", "rectangle", (40, 70, 225), "blue", "checker", True, ("road",)),
    "boat": GlyphSpec(9, "vehicle", "trapezoid", (245, 245, 245), "white", "solid", True, ("water",)),
    "traffic light": GlyphSpec(10, "outdoor", "diamond", (20, 20, 20), "black", "solid", True, ("road",)),
    "bench": GlyphSpec(15, "outdoor", "bar", (128, 128, 0), "olive", "checker", True, ("grass",)),
    "bird": GlyphSpec(16, "animal", "chevron", (60, 60, 60), "gray", "solid", False, ("sky", "water")),
    "dog": GlyphSpec(18, "animal", "square", (240, 140, 30), "golden", "solid", False, ("grass",)),
    "horse": GlyphSpec(19, "animal", "triangle", (130, 75, 35), "brown", "stripes", True, ("grass", "sand")),
    "umbrella": GlyphSpec(28, "accessory", "halfdisc", (130, 40, 180), "purple", "stripes", True, ("sand",)),
    "frisbee": GlyphSpec(34, "sports", "ring", (220, 30, 30), "red", "solid", False, ("grass",)),
    "sports ball": GlyphSpec(37, "sports", "disc", (250, 150, 190), "pink", "dots", False, ("grass",)),
    "kite": GlyphSpec(38, "sports", "kite", (240, 220, 40), "yellow", "solid", True, ("sky",)),
    "surfboard": GlyphSpec(
        42, "sports", "ellipse", (40, 210, 210), "turquoise", "stripes", False, ("water", "sand")
    ),
}

SHAPES_CLASSES = tuple(GLYPHS)
DEFAULT_PAIRS = (
    ("dog", "frisbee"),
    ("horse", "person"),
    ("surfboard", "person"),
    ("car", "traffic light"),
    ("boat", "bird"),
)
RETRIEVAL_BACKGROUNDS = ("grass", "sand", "water", "road", "sky")

BIRD_FAMILIES = ("landbird", "waterbird")  # label y = 0 / 1
BIRD_SHAPES = {"landbird": ("triangle", "kite", "chevron"), "waterbird": ("disc", "ellipse", "egg")}
BIRD_PALETTES = {  # warm colours for landbirds, cool for waterbirds
    "landbird": ((215, 60, 40), (235, 140, 30), (225, 200, 50), (150, 85, 40)),
    "waterbird": ((40, 80, 210), (40, 190, 200), (30, 140, 120), (120, 70, 190)),
}
PLACE_NAMES = ("land", "water")  # attribute place = 0 / 1
PLACE_BACKGROUNDS = {"land": ("grass", "sand"), "water": ("water", "lake")}


_WORLD_PROBABILITIES = (
    "p_partner",
    "p_duplicate",
    "max_overlap",
    "p_background_match",
    "p_co_name",
    "p_relation",
    "p_adjective",
    "p_numeral",
    "p_place",
    "p_prefix",
)
_CLASSIFICATION_PROBABILITIES = (
    "train_agreement",
    "train_waterbird_fraction",
    "colour_informativeness",
    "pretrain_agreement",
    "pretrain_waterbird_fraction",
)


def _freeze(config: Any, *names: str) -> None:
    """Store the named fields of a frozen dataclass as tuples (lists come back from JSON)."""
    for name in names:
        object.__setattr__(config, name, tuple(getattr(config, name)))


_TYPE_WORDS = {"int": "an integer", "float": "a finite number", "bool": "true or false"}
MAX_IMAGE_SIZE = 1024  # a world image is drawn in memory per glyph: keep the side sane


def _type_ok(kind: str, value: Any) -> bool:
    if kind == "bool":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if kind == "int":
        return isinstance(value, int)
    return isinstance(value, (int, float)) and math.isfinite(value)


def _check_types(config: Any) -> None:
    """Every int / float / bool field (and each number of a ``tuple[float, ...]`` field) has its type:
    a ValueError names the field (``--set train_size=abc`` is not a size)."""
    for f in dataclasses.fields(config):
        kind, value = str(f.type), getattr(config, f.name)
        if kind in _TYPE_WORDS and not _type_ok(kind, value):
            raise ValueError(f"{f.name} must be {_TYPE_WORDS[kind]}, got {value!r}")
        if kind.startswith("tuple[float") and (
            not isinstance(value, (tuple, list)) or not all(_type_ok("float", v) for v in value)
        ):
            raise ValueError(f"{f.name} must be a list of finite numbers, got {value!r}")


def _check_counts(config: Any, names: Sequence[str]) -> None:
    """Counts must be >= 0 and the image side in [16, MAX_IMAGE_SIZE] pixels."""
    _check_types(config)
    for name in names:
        if getattr(config, name) < 0:
            raise ValueError(f"{name} must be >= 0, got {getattr(config, name)}")
    if not 16 <= config.image_size <= MAX_IMAGE_SIZE:
        raise ValueError(f"image_size must be in [16, {MAX_IMAGE_SIZE}] pixels, got {config.image_size}")


def _check_unit(config: Any, probabilities: Sequence[str], ranges: dict[str, tuple[float, float]]) -> None:
    """Probabilities must lie in [0, 1]; each range must be ``(min, max)`` inside its bounds."""
    for name in probabilities:
        value = getattr(config, name)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {value}")
    for name, (low, high) in ranges.items():
        value = getattr(config, name)
        if len(value) != 2 or not low <= value[0] <= value[1] <= high:
            raise ValueError(
                f"{name} must be (min, max) with {low} <= min <= max <= {high}, got {tuple(value)}"
            )


def _split_sizes(config: Any) -> dict[str, int]:
    return {"train": config.train_size, "val": config.val_size, "test": config.test_size}


@dataclass(frozen=True)
class WorldConfig:
    """Settings of the retrieval world (COCO / Karpathy layout). Defaults are the calibrated demo ones."""

    train_size: int = 3000
    """Number of train images."""
    val_size: int = 500
    """Number of val images."""
    test_size: int = 500
    """Number of test images."""
    image_size: int = 64
    """Side of the square images, in pixels."""
    seed: int = 0
    """Master seed; every scene is drawn from ``(seed, split, index)``."""
    classes: tuple[str, ...] = SHAPES_CLASSES
    """Classes that may appear (COCO names; a subset of the 14 SpuriousShapes glyphs)."""
    pairs: tuple[tuple[str, str], ...] = DEFAULT_PAIRS
    """Partner pairs ``(anchor, partner)``; a partner must not itself be an anchor."""
    p_partner: float = 0.9
    """P(partner present | anchor present), in every split."""
    min_classes: int = 2
    """Fewest distinct classes per image."""
    max_classes: int = 4
    """Most distinct classes per image."""
    p_duplicate: float = 0.15
    """Probability that a present class has two instances instead of one."""
    object_size_range: tuple[float, float] = (10 / 64, 24 / 64)
    """Glyph diameter as a fraction of the image side (min, max)."""
    max_overlap: float = 0.15
    """Largest accepted box overlap (intersection over the smaller box) when placing a glyph."""
    placement_tries: int = 20
    """Random positions tried per glyph before keeping the least-overlapping one."""
    upright_rotation: float = 20.0
    """Largest rotation in degrees of glyphs that have an up direction (others rotate freely)."""
    p_background_match: float = 0.7
    """Probability that the background is one favoured by a present class (else uniform)."""
    captions_per_image: int = 5
    """Captions written per image."""
    min_named: int = 1
    """Fewest classes a caption names."""
    max_named: int = 3
    """Most classes a caption names."""
    p_co_name: float = 0.75
    """Probability that a named anchor's (or partner's) present pair-mate is named in the same caption."""
    p_relation: float = 0.8
    """Probability that a co-named pair is joined by a relation verb ("a man riding a horse")."""
    p_adjective: float = 0.3
    """Probability of a colour or size adjective in a noun phrase."""
    p_numeral: float = 0.7
    """Probability of a numeral ("two dogs") when a named class has two instances."""
    p_place: float = 0.5
    """Probability of a background phrase ("on the grass")."""
    p_prefix: float = 0.3
    """Probability of a prefix ("a photo of")."""
    outline: bool = True
    """Draw a 1-px dark outline around every glyph."""

    def __post_init__(self) -> None:
        _freeze(self, "classes", "object_size_range")
        object.__setattr__(self, "pairs", tuple(tuple(p) for p in self.pairs))
        _check_counts(self, ("train_size", "val_size", "test_size"))
        self._check_classes()
        if not 1 <= self.min_named <= self.max_named:
            raise ValueError("need 1 <= min_named <= max_named")
        if self.captions_per_image < 1 or self.placement_tries < 1:
            raise ValueError("captions_per_image and placement_tries must be >= 1")
        _check_unit(self, _WORLD_PROBABILITIES, {"object_size_range": (0.01, 1.0)})

    def _check_classes(self) -> None:
        unknown = [c for c in self.classes if c not in GLYPHS]
        if unknown:
            raise ValueError(f"unknown classes {unknown}; choose from {SHAPES_CLASSES}")
        if len(set(self.classes)) != len(self.classes):
            raise ValueError("classes contains duplicates")
        bad = [p for p in self.pairs if len(p) != 2]
        if bad:
            raise ValueError(f"pairs holds (anchor, partner) pairs, got {list(bad[0])}")
        anchors = [a for a, _ in self.pairs]
        for anchor, partner in self.pairs:
            if anchor not in self.classes or partner not in self.classes or anchor == partner:
                raise ValueError(f"pair ({anchor!r}, {partner!r}) must name two different configured classes")
            if partner in anchors:
                raise ValueError(f"pair ({anchor!r}, {partner!r}): a partner cannot also be an anchor")
        if len(set(anchors)) != len(anchors):
            raise ValueError("each anchor may have only one partner")
        if not 1 <= self.min_classes <= self.max_classes <= len(self.classes):
            raise ValueError("need 1 <= min_classes <= max_classes <= number of classes")

    @property
    def sizes(self) -> dict[str, int]:
        """Number of images per split."""
        return _split_sizes(self)


@dataclass(frozen=True)
class ClassificationWorldConfig:
    """Settings of the classification world (WILDS Waterbirds layout) and its captioned pretraining set."""

    train_size: int = 4795
    """Number of train images (Waterbirds has 4,795)."""
    val_size: int = 1200
    """Number of val images, balanced over the four (bird, place) groups."""
    test_size: int = 1200
    """Number of test images, balanced over the four groups."""
    pretrain_size: int = 9600
    """Number of captioned "web" pretraining images in ``pretrain/`` (0 = none)."""
    image_size: int = 64
    """Side of the square images, in pixels."""
    seed: int = 0
    """Master seed; every image is drawn from ``(seed, split, index)``."""
    train_agreement: float = 0.95
    """Share of train images whose place matches the bird (landbird on land, waterbird on water)."""
    train_waterbird_fraction: float = 0.23
    """Share of waterbirds in train (Waterbirds: 1,113 / 4,795)."""
    min_group_size: int = 1
    """Each train group gets at least this many images (when the split is large enough)."""
    colour_informativeness: float = 0.9
    """Probability that a bird is coloured from its own family's palette (warm land, cool water); 0.5 = no cue."""
    alpha_range: tuple[float, float] = (0.42, 0.72)
    """Opacity range of the bird glyph over the background (the texture shows through)."""
    bird_size_range: tuple[float, float] = (14 / 64, 26 / 64)
    """Glyph diameter as a fraction of the image side (min, max)."""
    outline: bool = False
    """Draw a 1-px dark outline around the bird."""
    pretrain_agreement: float = 0.9
    """Share of pretraining images whose place matches the bird."""
    pretrain_waterbird_fraction: float = 0.5
    """Share of waterbirds in the pretraining set."""
    caption_mix: tuple[float, float, float] = (0.75, 0.15, 0.10)
    """Probabilities of pretraining captions naming bird+place, bird only, place only."""
    pretrain_captions_per_image: int = 1
    """Captions per pretraining image."""

    def __post_init__(self) -> None:
        _freeze(self, "alpha_range", "bird_size_range", "caption_mix")
        _check_counts(self, ("train_size", "val_size", "test_size", "pretrain_size", "min_group_size"))
        _check_unit(
            self,
            _CLASSIFICATION_PROBABILITIES,
            {"alpha_range": (0.0, 1.0), "bird_size_range": (0.01, 1.0)},
        )
        if len(self.caption_mix) != 3 or min(self.caption_mix) < 0 or abs(sum(self.caption_mix) - 1) > 1e-6:
            raise ValueError(
                f"caption_mix must be 3 non-negative numbers summing to 1, got {self.caption_mix}"
            )
        if self.pretrain_captions_per_image < 1:
            raise ValueError("pretrain_captions_per_image must be >= 1")

    @property
    def sizes(self) -> dict[str, int]:
        """Number of images per split."""
        return _split_sizes(self)
