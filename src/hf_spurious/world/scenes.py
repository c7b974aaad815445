"""Scenes of the SpuriousShapes world: what is drawn where, as a pure function of ``(seed, split, index)``.

Sampling only (no pixels): the classes of a scene with exact partner statistics, glyph placement with
bounded overlap, and the bird/place groups of the classification world.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from hf_spurious.world.config import (
    BIRD_FAMILIES,
    BIRD_PALETTES,
    BIRD_SHAPES,
    GLYPHS,
    PLACE_BACKGROUNDS,
    PLACE_NAMES,
    RETRIEVAL_BACKGROUNDS,
    SPLIT_CODE,
    ClassificationWorldConfig,
    WorldConfig,
)
from hf_spurious.world.shapes import SHAPES, place_polygon


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


def scene_rng(seed: int, split: str, index: int, stream: int) -> np.random.Generator:
    """The random stream ``stream`` of image ``index`` of ``split`` (0 = scene, 1 = captions)."""
    return np.random.default_rng([seed, SPLIT_CODE[split], index, stream])


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
    rng = scene_rng(config.seed, split, index, 0)
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


def group_arrays(
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
    rng = scene_rng(config.seed, split, index, 0)
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
