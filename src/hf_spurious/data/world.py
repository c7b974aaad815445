"""SpuriousShapes: a procedurally drawn world with known, adjustable spurious structure.

Two variants, each written in a real on-disk format so the ordinary readers serve them:

- retrieval (``WorldConfig``): COCO-named glyphs on textured backgrounds with partner pairs
  (dog -> frisbee, ...) of strength ``p_partner``; COCO ``instances``/``captions`` files and a Karpathy
  ``dataset_coco.json``;
- classification (``ClassificationWorldConfig``): landbird/waterbird glyphs on land/water places in the
  WILDS Waterbirds layout (``metadata.csv``, images, ``segmentations/``), plus an optional captioned
  "web" pretraining set.

Every scene is a pure function of ``(seed, split, index)``, so ``load_world(dir).render_without(...)``
redraws the same scene minus some classes: the oracle counterfactual.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from hf_spurious.images import encode_png

from ._draw import (
    SHAPES,
    draw_background,
    draw_glyph,
    outline_mask,
    place_polygon,
    polygon_area,
    polygon_mask,
)
from ._grammar import NOUNS, CaptionSettings, make_caption

SPLITS = ("train", "val", "test")
_SPLIT_CODE = {"train": 0, "val": 1, "test": 2, "pretrain": 3}
_FORMAT_VERSION = 1


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
BIRD_WORDS = {"landbird": ("landbird", "land bird"), "waterbird": ("waterbird", "water bird")}
PLACE_WORDS = {
    "grass": ("grass", "field", "meadow"),
    "sand": ("sand", "dunes", "desert"),
    "water": ("ocean", "sea", "waves"),
    "lake": ("lake", "pond", "lagoon"),
}


def _check_prob(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")


def _check_range(name: str, value: Sequence[float], low: float, high: float) -> None:
    if len(value) != 2 or not low <= value[0] <= value[1] <= high:
        raise ValueError(f"{name} must be (min, max) with {low} <= min <= max <= {high}, got {tuple(value)}")


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
        object.__setattr__(self, "classes", tuple(self.classes))
        object.__setattr__(self, "pairs", tuple(tuple(p) for p in self.pairs))
        object.__setattr__(self, "object_size_range", tuple(self.object_size_range))
        for name in ("train_size", "val_size", "test_size"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.image_size < 16:
            raise ValueError(f"image_size must be >= 16, got {self.image_size}")
        unknown = [c for c in self.classes if c not in GLYPHS]
        if unknown:
            raise ValueError(f"unknown classes {unknown}; choose from {SHAPES_CLASSES}")
        if len(set(self.classes)) != len(self.classes):
            raise ValueError("classes contains duplicates")
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
        if not 1 <= self.min_named <= self.max_named:
            raise ValueError("need 1 <= min_named <= max_named")
        if self.captions_per_image < 1 or self.placement_tries < 1:
            raise ValueError("captions_per_image and placement_tries must be >= 1")
        for name in (
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
        ):
            _check_prob(name, getattr(self, name))
        _check_range("object_size_range", self.object_size_range, 0.01, 1.0)

    @property
    def sizes(self) -> dict[str, int]:
        return {"train": self.train_size, "val": self.val_size, "test": self.test_size}


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
        object.__setattr__(self, "alpha_range", tuple(self.alpha_range))
        object.__setattr__(self, "bird_size_range", tuple(self.bird_size_range))
        object.__setattr__(self, "caption_mix", tuple(self.caption_mix))
        for name in ("train_size", "val_size", "test_size", "pretrain_size", "min_group_size"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.image_size < 16:
            raise ValueError(f"image_size must be >= 16, got {self.image_size}")
        for name in (
            "train_agreement",
            "train_waterbird_fraction",
            "colour_informativeness",
            "pretrain_agreement",
            "pretrain_waterbird_fraction",
        ):
            _check_prob(name, getattr(self, name))
        _check_range("alpha_range", self.alpha_range, 0.0, 1.0)
        _check_range("bird_size_range", self.bird_size_range, 0.01, 1.0)
        if len(self.caption_mix) != 3 or min(self.caption_mix) < 0 or abs(sum(self.caption_mix) - 1) > 1e-6:
            raise ValueError(
                f"caption_mix must be 3 non-negative numbers summing to 1, got {self.caption_mix}"
            )
        if self.pretrain_captions_per_image < 1:
            raise ValueError("pretrain_captions_per_image must be >= 1")

    @property
    def sizes(self) -> dict[str, int]:
        return {"train": self.train_size, "val": self.val_size, "test": self.test_size}


# ---------------------------------------------------------------------------------------------- scenes


@dataclass(frozen=True, eq=False)
class PlacedObject:
    """One drawn glyph instance: class, polygon (outer, optional hole) and paint."""

    category: str
    outer: np.ndarray = field(repr=False)
    inner: np.ndarray | None = field(repr=False)
    colour: tuple[float, float, float]
    texture: str = "solid"
    texture_angle: float = 0.0
    texture_period: float = 4.0
    texture_phase: float = 0.0
    alpha: float = 1.0
    outline: bool = True

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        """(x, y, w, h) of the outer polygon."""
        x0, y0 = self.outer.min(axis=0)
        x1, y1 = self.outer.max(axis=0)
        return (float(x0), float(y0), float(x1 - x0), float(y1 - y0))


@dataclass(frozen=True, eq=False)
class Scene:
    """Everything needed to draw one image: background kind and noise seed, objects in drawing order."""

    background: str
    background_seed: int
    objects: tuple[PlacedObject, ...]
    size: int
    label: int | None = None  # classification only
    place: int | None = None  # classification only

    @property
    def counts(self) -> dict[str, int]:
        return dict(Counter(o.category for o in self.objects))


def _rng(seed: int, split: str, index: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, _SPLIT_CODE[split], index, stream])


def choose_classes(
    rng: np.random.Generator,
    classes: Sequence[str],
    pairs: Sequence[tuple[str, str]],
    p_partner: float,
    target: int,
    max_classes: int,
) -> list[str]:
    """Draw the distinct classes of one scene so that P(partner | anchor) = ``p_partner`` exactly.

    Classes are visited in random order. An anchor is eligible only while its partner is undecided
    (not present, not excluded) and there is room for the partner; eligibility is settled *before* the
    partner coin is flipped, so the coin alone decides the partner.
    """
    partner_of = dict(pairs)
    chosen: list[str] = []
    excluded: set[str] = set()
    for idx in rng.permutation(len(classes)):
        cls = classes[int(idx)]
        if len(chosen) >= target:
            break
        if cls in chosen or cls in excluded:
            continue
        partner = partner_of.get(cls)
        if partner is None:
            chosen.append(cls)
            continue
        if partner in chosen or partner in excluded or len(chosen) + 2 > max_classes:
            continue
        if rng.random() < p_partner:
            chosen += [cls, partner]
        else:
            chosen.append(cls)
            excluded.add(partner)
    return chosen


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    smaller = max(min(a[2] * a[3], b[2] * b[3]), 1e-9)
    return ix * iy / smaller


def _place(
    rng: np.random.Generator,
    shape: str,
    size: int,
    size_range: tuple[float, float],
    upright: bool,
    max_rotation: float,
    taken: list[tuple[float, ...]],
    max_overlap: float,
    tries: int,
) -> tuple[np.ndarray, np.ndarray | None, float]:
    unit_outer, unit_inner = SHAPES[shape]
    radius = rng.uniform(*size_range) * size / 2
    angle = rng.uniform(-max_rotation, max_rotation) if upright else rng.uniform(0.0, 360.0)
    best: tuple[float, np.ndarray] | None = None
    for _ in range(tries):
        center = rng.uniform(radius, size - radius, size=2)
        outer = place_polygon(unit_outer, center, radius, angle)
        x0, y0 = outer.min(axis=0)
        x1, y1 = outer.max(axis=0)
        box = (x0, y0, x1 - x0, y1 - y0)
        worst = max((_overlap(box, t) for t in taken), default=0.0)
        if best is None or worst < best[0]:
            best = (worst, center)
        if worst <= max_overlap:
            break
    assert best is not None
    center = best[1]
    outer = place_polygon(unit_outer, center, radius, angle)
    inner = None if unit_inner is None else place_polygon(unit_inner, center, radius, angle)
    x0, y0 = outer.min(axis=0)
    x1, y1 = outer.max(axis=0)
    taken.append((x0, y0, x1 - x0, y1 - y0))
    return outer, inner, angle


def sample_retrieval_scene(config: WorldConfig, split: str, index: int) -> Scene:
    """The scene of image ``index`` of ``split``: a pure function of ``(config, split, index)``."""
    rng = _rng(config.seed, split, index, 0)
    target = int(rng.integers(config.min_classes, config.max_classes + 1))
    present = choose_classes(rng, config.classes, config.pairs, config.p_partner, target, config.max_classes)
    instances = [c for c in present for _ in range(2 if rng.random() < config.p_duplicate else 1)]
    favoured = sorted({b for c in present for b in GLYPHS[c].backgrounds})
    if favoured and rng.random() < config.p_background_match:
        background = favoured[int(rng.integers(len(favoured)))]
    else:
        background = RETRIEVAL_BACKGROUNDS[int(rng.integers(len(RETRIEVAL_BACKGROUNDS)))]
    background_seed = int(rng.integers(2**63))
    taken: list[tuple[float, ...]] = []
    objects = []
    for idx in rng.permutation(len(instances)):
        cls = instances[int(idx)]
        spec = GLYPHS[cls]
        outer, inner, angle = _place(
            rng,
            spec.shape,
            config.image_size,
            config.object_size_range,
            spec.upright,
            config.upright_rotation,
            taken,
            config.max_overlap,
            config.placement_tries,
        )
        jitter = rng.uniform(0.88, 1.12)
        radius = float(np.ptp(outer[:, 0]) + np.ptp(outer[:, 1])) / 4
        objects.append(
            PlacedObject(
                category=cls,
                outer=outer,
                inner=inner,
                colour=tuple(float(min(255.0, c * jitter)) for c in spec.colour),
                texture=spec.texture,
                texture_angle=angle,
                texture_period=max(3.0, radius * 0.6),
                texture_phase=float(rng.random()),
                outline=config.outline,
            )
        )
    return Scene(background, background_seed, tuple(objects), config.image_size)


def _group_arrays(
    n: int,
    rng: np.random.Generator,
    *,
    balanced: bool,
    agreement: float,
    waterbird_fraction: float,
    min_group: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Labels and places for a split: exact group counts, shuffled deterministically."""
    if balanced:
        groups = np.arange(n) % 4
    else:
        n1 = round(n * waterbird_fraction)
        groups_list = []
        for label, n_label in ((0, n - n1), (1, n1)):
            minority = round(n_label * (1 - agreement))
            if 0 < agreement < 1 and n_label >= 2 * min_group:
                minority = min(max(minority, min_group), n_label - min_group)
            groups_list += [label * 2 + (1 - label)] * minority + [label * 2 + label] * (n_label - minority)
        groups = np.array(groups_list, dtype=np.int64)
    groups = groups[rng.permutation(n)]
    return groups // 2, groups % 2


def sample_bird_scene(
    config: ClassificationWorldConfig, split: str, index: int, label: int, place: int
) -> Scene:
    """One classification image: a bird of family ``label`` on a background of place ``place``."""
    rng = _rng(config.seed, split, index, 0)
    family = BIRD_FAMILIES[label]
    background = PLACE_BACKGROUNDS[PLACE_NAMES[place]][int(rng.integers(2))]
    background_seed = int(rng.integers(2**63))
    shapes = BIRD_SHAPES[family]
    shape = shapes[int(rng.integers(len(shapes)))]
    palette_family = family if rng.random() < config.colour_informativeness else BIRD_FAMILIES[1 - label]
    palette = BIRD_PALETTES[palette_family]
    colour = np.array(palette[int(rng.integers(len(palette)))], np.float64) * rng.uniform(0.88, 1.12)
    outer, inner, _ = _place(rng, shape, config.image_size, config.bird_size_range, False, 0.0, [], 1.0, 1)
    alpha = float(rng.uniform(*config.alpha_range))
    obj = PlacedObject(
        category=family,
        outer=outer,
        inner=inner,
        colour=tuple(float(min(255.0, c)) for c in colour),
        alpha=alpha,
        outline=config.outline,
    )
    return Scene(background, background_seed, (obj,), config.image_size, label=label, place=place)


def draw_scene(scene: Scene, removed: Iterable[str] = ()) -> np.ndarray:
    """Render a scene (RGB uint8, HxWx3), skipping objects whose class is in ``removed``."""
    removed = frozenset(removed)
    img = draw_background(scene.background, scene.size, np.random.default_rng(scene.background_seed))
    for obj in scene.objects:
        if obj.category in removed:
            continue
        draw_glyph(
            img,
            obj.outer,
            obj.inner,
            obj.colour,
            texture=obj.texture,
            texture_angle=obj.texture_angle,
            texture_period=obj.texture_period,
            texture_phase=obj.texture_phase,
            alpha=obj.alpha,
            outline=(15, 15, 15) if obj.outline else None,
        )
    return img


def object_mask(obj: PlacedObject, size: int) -> np.ndarray:
    """Boolean mask of one glyph's filled polygon (without its outline)."""
    return polygon_mask(obj.outer, obj.inner, size)


def annotation_box(obj: PlacedObject, size: int) -> list[float]:
    """COCO box ``[x, y, w, h]`` holding every pixel drawn for ``obj`` (fill and outline), inside the image.

    Pixel ``i`` covers ``[i, i + 1)``, so a box made of the polygon's extents alone can miss the last row
    or column of the rasterised glyph; the box is the union of both.
    """
    x, y, w, h = obj.bbox
    drawn = object_mask(obj, size)
    if obj.outline:
        drawn = drawn | outline_mask(obj.outer, obj.inner, size)
    rows, cols = np.nonzero(drawn)
    x0, y0, x1, y1 = x, y, x + w, y + h
    if rows.size:
        x0, y0 = min(x0, cols.min()), min(y0, rows.min())
        x1, y1 = max(x1, cols.max() + 1.0), max(y1, rows.max() + 1.0)
    x0, y0, x1, y1 = max(x0, 0.0), max(y0, 0.0), min(x1, float(size)), min(y1, float(size))
    return [round(float(x0), 2), round(float(y0), 2), round(float(x1 - x0), 2), round(float(y1 - y0), 2)]


# ---------------------------------------------------------------------------------------------- world


def _karpathy_tokens(raw: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", raw.lower())


def _dump_json(obj: Any, path: Path) -> None:
    path.write_text(json.dumps(obj, separators=(",", ":"), ensure_ascii=False))


def _image_ids(sizes: dict[str, int]) -> dict[str, int]:
    """First image id of each split (ids are unique across splits, starting at 1)."""
    first, out = 1, {}
    for split in SPLITS:
        out[split] = first
        first += sizes[split]
    return out


class World:
    """A generated world read back from its ``world.json``: redraws any scene, with or without classes."""

    def __init__(self, config: WorldConfig | ClassificationWorldConfig, root: Path | None = None):
        self.config = config
        self.root = root
        self.variant = "retrieval" if isinstance(config, WorldConfig) else "classification"

    @cached_property
    def _first_ids(self) -> dict[str, int]:
        return _image_ids(self.config.sizes)

    def index_of(self, split: str, image_id: int | str) -> int:
        """Position of ``image_id`` within ``split``; raises KeyError when it is not there."""
        sizes = dict(self.config.sizes)
        if isinstance(self.config, ClassificationWorldConfig):
            sizes["pretrain"] = self.config.pretrain_size
        if split not in sizes:
            raise KeyError(f"unknown split {split!r}; choose one of {sorted(sizes)}")
        first = 1 if split == "pretrain" else self._first_ids[split]
        index = int(image_id) - first
        if not 0 <= index < sizes[split]:
            raise KeyError(f"image id {image_id} is not in split {split!r}")
        return index

    def image_ids(self, split: str) -> list[int]:
        """All image ids of ``split`` in file order."""
        if split == "pretrain":
            return list(range(1, getattr(self.config, "pretrain_size", 0) + 1))
        first = self._first_ids[split]
        return list(range(first, first + self.config.sizes[split]))

    def _groups(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        cache = self.__dict__.setdefault("_group_cache", {})
        if split not in cache:
            cfg = self.config
            assert isinstance(cfg, ClassificationWorldConfig)
            if split == "pretrain":
                n, agreement, frac, balanced = (
                    cfg.pretrain_size,
                    cfg.pretrain_agreement,
                    cfg.pretrain_waterbird_fraction,
                    False,
                )
            else:
                n, agreement, frac = cfg.sizes[split], cfg.train_agreement, cfg.train_waterbird_fraction
                balanced = split != "train"
            rng = np.random.default_rng([cfg.seed, _SPLIT_CODE[split]])
            cache[split] = _group_arrays(
                n,
                rng,
                balanced=balanced,
                agreement=agreement,
                waterbird_fraction=frac,
                min_group=cfg.min_group_size,
            )
        return cache[split]

    def scene(self, split: str, image_id: int | str) -> Scene:
        """The drawn content of one image."""
        index = self.index_of(split, image_id)
        if isinstance(self.config, WorldConfig):
            return sample_retrieval_scene(self.config, split, index)
        labels, places = self._groups(split)
        return sample_bird_scene(self.config, split, index, int(labels[index]), int(places[index]))

    def render(self, split: str, image_id: int | str) -> np.ndarray:
        """The original image (identical to the written PNG)."""
        return draw_scene(self.scene(split, image_id))

    def render_without(self, split: str, image_id: int | str, removed_classes: Iterable[str]) -> np.ndarray:
        """The oracle counterfactual: the same scene with every object of ``removed_classes`` left out."""
        removed = frozenset([removed_classes] if isinstance(removed_classes, str) else removed_classes)
        known = set(GLYPHS) | set(BIRD_FAMILIES)
        unknown = removed - known
        if unknown:
            raise ValueError(f"unknown classes {sorted(unknown)}; choose from {sorted(known)}")
        return draw_scene(self.scene(split, image_id), removed)

    def masks(self, split: str, image_id: int | str) -> list[tuple[str, np.ndarray]]:
        """(class, boolean mask) of every object in drawing order, each as if drawn alone."""
        scene = self.scene(split, image_id)
        return [(o.category, object_mask(o, scene.size)) for o in scene.objects]


def load_world(out_dir: str | Path) -> World:
    """Read ``world.json`` written by ``generate_world`` and return a ``World`` that redraws its scenes."""
    path = Path(out_dir) / "world.json"
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{path}: no world.json; generate the world with `hf-spurious world`"
        ) from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: invalid JSON ({err})") from None
    cls = {"retrieval": WorldConfig, "classification": ClassificationWorldConfig}.get(meta.get("variant"))
    if cls is None:
        raise ValueError(f"{path}: unknown variant {meta.get('variant')!r}")
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {k: _tupled(v) for k, v in meta["config"].items() if k in names}
    return World(cls(**kwargs), Path(out_dir))


def _tupled(value: Any) -> Any:
    return tuple(_tupled(v) for v in value) if isinstance(value, list) else value


def _area(obj: PlacedObject) -> float:
    hole = 0.0 if obj.inner is None else polygon_area(obj.inner)
    return round(polygon_area(obj.outer) - hole, 2)


def _polygon_flat(obj: PlacedObject, size: int) -> list[float]:
    """COCO polygon of a glyph; a hole is joined to the outline by a zero-width slit (one polygon)."""
    points = obj.outer
    if obj.inner is not None:
        inner = obj.inner[::-1]
        start = int(np.argmin(np.linalg.norm(inner - obj.outer[0], axis=1)))
        inner = np.roll(inner, -start, axis=0)
        points = np.concatenate([obj.outer, obj.outer[:1], inner, inner[:1]])
    clipped = np.clip(points, 0, size)
    return [round(float(v), 2) for v in clipped.reshape(-1)]


def _write_retrieval(config: WorldConfig, out: Path) -> dict[str, Any]:
    world = World(config, out)
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    settings = CaptionSettings(
        min_named=config.min_named,
        max_named=config.max_named,
        p_co_name=config.p_co_name,
        p_relation=config.p_relation,
        p_adjective=config.p_adjective,
        p_numeral=config.p_numeral,
        p_place=config.p_place,
        p_prefix=config.p_prefix,
    )
    categories = [
        {"id": GLYPHS[c].coco_id, "name": c, "supercategory": GLYPHS[c].supercategory}
        for c in sorted(config.classes, key=lambda c: GLYPHS[c].coco_id)
    ]
    colours = {c: g.colour_word for c, g in GLYPHS.items()}
    karpathy: list[dict[str, Any]] = []
    ann_id = sent_id = 1
    stats: dict[str, Any] = {"images": {}, "class_counts": {}, "instance_counts": {}, "background_counts": {}}
    pair_stats = {f"{a}->{p}": Counter() for a, p in config.pairs}
    total = sum(config.sizes.values())
    bar = tqdm(total=total, desc="SpuriousShapes", unit="img", disable=None)
    for split in SPLITS:
        img_dir = out / "images" / split
        img_dir.mkdir(parents=True, exist_ok=True)
        images, instances, captions = [], [], []
        class_counts: Counter[str] = Counter()
        instance_counts: Counter[str] = Counter()
        backgrounds: Counter[str] = Counter()
        for index, image_id in enumerate(world.image_ids(split)):
            scene = sample_retrieval_scene(config, split, index)
            file_name = f"{image_id:012d}.png"
            (img_dir / file_name).write_bytes(encode_png(draw_scene(scene)))
            images.append({"id": image_id, "file_name": file_name, "width": scene.size, "height": scene.size})
            for obj in scene.objects:
                box = annotation_box(obj, scene.size)
                instances.append(
                    {
                        "id": ann_id,
                        "image_id": image_id,
                        "category_id": GLYPHS[obj.category].coco_id,
                        "bbox": box,
                        "area": _area(obj),
                        "iscrowd": 0,
                        "segmentation": [_polygon_flat(obj, scene.size)],
                    }
                )
                ann_id += 1
            counts = scene.counts
            class_counts.update(counts.keys())
            instance_counts.update(counts)
            backgrounds[scene.background] += 1
            cap_rng = _rng(config.seed, split, index, 1)
            sentences = []
            for _ in range(config.captions_per_image):
                raw, named = make_caption(counts, colours, scene.background, config.pairs, cap_rng, settings)
                captions.append({"id": sent_id, "image_id": image_id, "caption": raw})
                sentences.append(
                    {"tokens": _karpathy_tokens(raw), "raw": raw, "imgid": len(karpathy), "sentid": sent_id}
                )
                sent_id += 1
                if split == "train":
                    _count_naming(pair_stats, config.pairs, counts, named)
            if split == "train":
                _count_pairs(pair_stats, config.pairs, counts)
            karpathy.append(
                {
                    "filepath": f"images/{split}",
                    "sentids": [s["sentid"] for s in sentences],
                    "filename": file_name,
                    "imgid": len(karpathy),
                    "split": split,
                    "sentences": sentences,
                    "cocoid": image_id,
                }
            )
            bar.update(1)
        info = {"description": f"SpuriousShapes retrieval world, seed {config.seed}", "version": "1.0"}
        _dump_json(
            {
                "info": info,
                "licenses": [],
                "images": images,
                "annotations": instances,
                "categories": categories,
            },
            out / "annotations" / f"instances_{split}.json",
        )
        _dump_json(
            {"info": info, "licenses": [], "images": images, "annotations": captions},
            out / "annotations" / f"captions_{split}.json",
        )
        stats["images"][split] = len(images)
        stats["class_counts"][split] = dict(sorted(class_counts.items()))
        stats["instance_counts"][split] = dict(sorted(instance_counts.items()))
        stats["background_counts"][split] = dict(sorted(backgrounds.items()))
    bar.close()
    _dump_json({"images": karpathy, "dataset": "coco"}, out / "dataset_coco.json")
    stats["captions"] = sent_id - 1
    stats["pairs"] = {name: _pair_summary(c) for name, c in pair_stats.items()}
    return stats


def _count_pairs(
    pair_stats: dict[str, Counter], pairs: Sequence[tuple[str, str]], counts: dict[str, int]
) -> None:
    for anchor, partner in pairs:
        c = pair_stats[f"{anchor}->{partner}"]
        c["anchor"] += anchor in counts
        c["partner"] += partner in counts
        c["both"] += anchor in counts and partner in counts


def _count_naming(
    pair_stats: dict[str, Counter],
    pairs: Sequence[tuple[str, str]],
    counts: dict[str, int],
    named: frozenset[str],
) -> None:
    for anchor, partner in pairs:
        if anchor in counts and partner in counts and (anchor in named or partner in named):
            c = pair_stats[f"{anchor}->{partner}"]
            c["named_either"] += 1
            c["named_both"] += anchor in named and partner in named
            c["anchor_only_captions"] += anchor in named and partner not in named


def _pair_summary(c: Counter) -> dict[str, Any]:
    def ratio(a: int, b: int) -> float | None:
        return round(a / b, 4) if b else None

    return {
        "p_partner_given_anchor": ratio(c["both"], c["anchor"]),
        "p_anchor_given_partner": ratio(c["both"], c["partner"]),
        "anchor_images": c["anchor"],
        "partner_images": c["partner"],
        "co_named_rate": ratio(c["named_both"], c["named_either"]),
        "anchor_only_captions": c["anchor_only_captions"],
    }


def _bird_caption(scene: Scene, kind: int, rng: np.random.Generator) -> str:
    family = BIRD_FAMILIES[scene.label or 0]
    bird = BIRD_WORDS[family][int(rng.integers(2))]
    place = PLACE_WORDS[scene.background][int(rng.integers(3))]
    art = "an" if bird[0] in "aeiou" else "a"
    if kind == 0:
        templates = (
            f"a photo of {art} {bird} on the {place}",
            f"{art} {bird} standing by the {place}",
            f"{art} {bird} near the {place}",
            f"a picture of {art} {bird} and the {place}",
        )
    elif kind == 1:
        templates = (f"a photo of {art} {bird}", f"{art} {bird}", f"a picture of {art} {bird}")
    else:
        templates = (f"a photo of the {place}", f"the {place}", f"a view of the {place}")
    return templates[int(rng.integers(len(templates)))]


def _write_classification(config: ClassificationWorldConfig, out: Path) -> dict[str, Any]:
    world = World(config, out)
    total = sum(config.sizes.values()) + config.pretrain_size
    bar = tqdm(total=total, desc="SpuriousShapes (classification)", unit="img", disable=None)
    rows = []
    groups: dict[str, dict[str, int]] = {}
    for split_code, split in enumerate(SPLITS):
        counter: Counter[str] = Counter()
        for image_id in world.image_ids(split):
            scene = world.scene(split, image_id)
            assert scene.label is not None and scene.place is not None
            family = BIRD_FAMILIES[scene.label]
            rel = f"{family}/{image_id:06d}.png"
            (out / family).mkdir(parents=True, exist_ok=True)
            (out / "segmentations" / family).mkdir(parents=True, exist_ok=True)
            (out / rel).write_bytes(encode_png(draw_scene(scene)))
            mask = object_mask(scene.objects[0], scene.size)
            (out / "segmentations" / rel).write_bytes(encode_png(mask.astype(np.uint8) * 255))
            rows.append((image_id, rel, scene.label, split_code, scene.place))
            counter[f"{family}/{PLACE_NAMES[scene.place]}"] += 1
            bar.update(1)
        groups[split] = dict(sorted(counter.items()))
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["img_id", "img_filename", "y", "split", "place"])
    writer.writerows(rows)
    (out / "metadata.csv").write_text(buf.getvalue())
    summary: dict[str, Any] = {"images": {s: config.sizes[s] for s in SPLITS}, "groups": groups}
    if config.pretrain_size:
        summary["pretrain"] = _write_pretrain(world, out / "pretrain", bar)
    bar.close()
    return summary


def _write_pretrain(world: World, root: Path, bar: Any) -> dict[str, Any]:
    config = world.config
    assert isinstance(config, ClassificationWorldConfig)
    (root / "images").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    groups: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    sent_id = 1
    for index, image_id in enumerate(world.image_ids("pretrain")):
        scene = world.scene("pretrain", image_id)
        assert scene.label is not None and scene.place is not None
        file_name = f"{image_id:06d}.png"
        (root / "images" / file_name).write_bytes(encode_png(draw_scene(scene)))
        images.append(
            {
                "id": image_id,
                "file_name": file_name,
                "width": scene.size,
                "height": scene.size,
                "y": scene.label,
                "place": scene.place,
            }
        )
        groups[f"{BIRD_FAMILIES[scene.label]}/{PLACE_NAMES[scene.place]}"] += 1
        rng = _rng(config.seed, "pretrain", index, 1)
        for _ in range(config.pretrain_captions_per_image):
            kind = int(rng.choice(3, p=np.asarray(config.caption_mix)))
            kinds[("bird+place", "bird", "place")[kind]] += 1
            annotations.append(
                {"id": sent_id, "image_id": image_id, "caption": _bird_caption(scene, kind, rng)}
            )
            sent_id += 1
        bar.update(1)
    info = {"description": f"SpuriousShapes web pretraining set, seed {config.seed}", "version": "1.0"}
    _dump_json(
        {"info": info, "licenses": [], "images": images, "annotations": annotations}, root / "captions.json"
    )
    return {
        "images": len(images),
        "groups": dict(sorted(groups.items())),
        "caption_kinds": dict(sorted(kinds.items())),
    }


def generate_world(config: WorldConfig | ClassificationWorldConfig, out_dir: str | Path) -> dict[str, Any]:
    """Write a world to ``out_dir`` in its real on-disk layout and return a summary of what was drawn.

    Same config (and seed) -> byte-identical files. The config is saved in ``world.json``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if isinstance(config, WorldConfig):
        variant, summary = "retrieval", _write_retrieval(config, out)
    elif isinstance(config, ClassificationWorldConfig):
        variant, summary = "classification", _write_classification(config, out)
    else:
        raise TypeError(
            f"config must be a WorldConfig or ClassificationWorldConfig, got {type(config).__name__}"
        )
    meta = {"variant": variant, "format_version": _FORMAT_VERSION, "config": dataclasses.asdict(config)}
    (out / "world.json").write_text(json.dumps(meta, indent=2) + "\n")
    return {"variant": variant, "out_dir": str(out), "seed": config.seed, **summary}


__all__ = [
    "GLYPHS",
    "NOUNS",
    "SHAPES_CLASSES",
    "ClassificationWorldConfig",
    "PlacedObject",
    "Scene",
    "World",
    "WorldConfig",
    "choose_classes",
    "draw_scene",
    "generate_world",
    "load_world",
]
