"""Vectorised drawing for the SpuriousShapes world (numpy + cv2): textured backgrounds, polygon glyphs,
whole scenes, object masks and the COCO boxes of what was drawn.

Everything here is a pure function of its arguments (including an explicit ``numpy.random.Generator``),
so a scene redrawn from the same parameters is pixel-identical.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache

import cv2
import numpy as np

from hf_spurious.world.scenes import PlacedObject, Scene

_SHIFT = 4  # sub-pixel bits for cv2 polygon drawing
_SCALE = 1 << _SHIFT

BACKGROUNDS = ("grass", "sand", "water", "road", "sky", "lake")


def _low_freq(rng: np.random.Generator, size: int, grid: int = 6) -> np.ndarray:
    """Smooth noise in [0, 1], shape (size, size)."""
    coarse = rng.random((grid, grid)).astype(np.float32)
    return cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC).clip(0.0, 1.0)


@lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel x and y coordinates (read-only, cached per size)."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    xs.flags.writeable = False
    ys.flags.writeable = False
    return xs, ys


def draw_background(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """A ``size`` x ``size`` RGB uint8 texture of ``kind`` (one of ``BACKGROUNDS``)."""
    low = _low_freq(rng, size)[..., None]
    pixel = rng.normal(0.0, 1.0, (size, size, 1)).astype(np.float32)
    xs, ys = _grid(size)
    u = size / 64.0  # patterns scale with the image
    if kind == "grass":
        base = np.array([70, 140, 50], np.float32)
        blades = cv2.blur(rng.normal(0, 1, (size, size)).astype(np.float32), (1, max(3, int(5 * u))))
        img = base + (low - 0.5) * 40 + blades[..., None] * 30 * np.array([0.6, 1.0, 0.4], np.float32)
        img += pixel * 5
    elif kind == "sand":
        base = np.array([215, 190, 140], np.float32)
        specks = (rng.random((size, size, 1)) < 0.04).astype(np.float32)
        img = base + (low - 0.5) * 35 + pixel * 6 - specks * 45
    elif kind in ("water", "lake"):
        if kind == "water":  # ocean: bright blue with clear waves
            base, amp, period = np.array([40, 95, 175], np.float32), 22.0, 7.0 * u
        else:  # lake: darker, greener, calm ripples
            base, amp, period = np.array([35, 85, 95], np.float32), 9.0, 11.0 * u
        phase = rng.uniform(0, 2 * np.pi)
        wobble = rng.uniform(2.0, 4.0) * u
        waves = np.sin(2 * np.pi * ys / period + wobble * np.sin(xs / (9.0 * u)) / period * 2 + phase)
        img = base + waves[..., None] * amp * np.array([0.6, 0.8, 1.0], np.float32)
        img += (low - 0.5) * 30 + pixel * 4
    elif kind == "road":
        base = np.array([95, 95, 100], np.float32)
        img = base + (low - 0.5) * 20 + pixel * 10
        lane_y = int(rng.uniform(0.3, 0.7) * size)
        dash = max(2, int(6 * u))
        offset = int(rng.integers(0, 2 * dash))
        on = ((xs[0] + offset) // dash) % 2 == 0
        thick = max(1, round(u))
        img[lane_y : lane_y + thick, on] = np.array([235, 225, 120], np.float32)
    elif kind == "sky":
        t = ys[..., None] / max(size - 1, 1)
        top, bottom = np.array([100, 150, 225], np.float32), np.array([185, 210, 245], np.float32)
        clouds = np.clip((_low_freq(rng, size, grid=4)[..., None] - 0.55) * 3.0, 0.0, 1.0)
        img = top * (1 - t) + bottom * t
        img = img * (1 - clouds * 0.7) + 250 * clouds * 0.7 + pixel * 3
    else:
        raise ValueError(f"unknown background {kind!r}; choose one of {BACKGROUNDS}")
    return np.clip(img, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------- glyphs

TEXTURES = ("solid", "stripes", "dots", "checker")


def _fixed(points: np.ndarray) -> np.ndarray:
    """cv2 fixed-point vertices; pixel i covers [i, i + 1) as in COCO, so its centre is i + 0.5."""
    return np.round((points - 0.5) * _SCALE).astype(np.int32).reshape(-1, 1, 2)


def polygon_mask(outer: np.ndarray, inner: np.ndarray | None, size: int) -> np.ndarray:
    """Boolean (size, size) mask of a polygon (with an optional hole), rasterised by cv2."""
    mask = np.zeros((size, size), np.uint8)
    cv2.fillPoly(mask, [_fixed(outer)], 1, lineType=cv2.LINE_8, shift=_SHIFT)
    if inner is not None:
        cv2.fillPoly(mask, [_fixed(inner)], 0, lineType=cv2.LINE_8, shift=_SHIFT)
    return mask.astype(bool)


def texture_factor(kind: str, size: int, angle_deg: float, period: float, phase: float) -> np.ndarray:
    """Brightness multiplier (size, size) in [0.55, 1] for a glyph texture."""
    if kind == "solid":
        return np.ones((size, size), np.float32)
    xs, ys = _grid(size)
    a = np.deg2rad(angle_deg)
    u = xs * np.cos(a) + ys * np.sin(a)
    v = -xs * np.sin(a) + ys * np.cos(a)
    if kind == "stripes":
        on = ((u / period + phase) % 1.0) < 0.5
    elif kind == "checker":
        on = (np.floor(u / period + phase) + np.floor(v / period + phase)) % 2 == 0
    elif kind == "dots":
        du = (u / period + phase) % 1.0 - 0.5
        dv = (v / period + phase) % 1.0 - 0.5
        on = du * du + dv * dv > 0.08
    else:
        raise ValueError(f"unknown texture {kind!r}; choose one of {TEXTURES}")
    return np.where(on, 1.0, 0.55).astype(np.float32)


def draw_glyph(
    img: np.ndarray,
    outer: np.ndarray,
    inner: np.ndarray | None,
    colour: Sequence[float],
    *,
    texture: str = "solid",
    texture_angle: float = 0.0,
    texture_period: float = 4.0,
    texture_phase: float = 0.0,
    alpha: float = 1.0,
    outline: Sequence[int] | None = (0, 0, 0),
) -> np.ndarray:
    """Draw one glyph into ``img`` (RGB uint8, modified in place); returns the glyph's boolean mask."""
    size = img.shape[0]
    mask = polygon_mask(outer, inner, size)
    if not mask.any():
        return mask
    factor = texture_factor(texture, size, texture_angle, texture_period, texture_phase)[mask]
    fill = np.clip(np.asarray(colour, np.float32)[None, :] * factor[:, None], 0, 255)
    if alpha >= 1.0:
        img[mask] = fill.astype(np.uint8)
    else:
        img[mask] = np.clip(img[mask].astype(np.float32) * (1 - alpha) + fill * alpha + 0.5, 0, 255).astype(
            np.uint8
        )
    if outline is not None:
        polys = [_fixed(outer)] + ([] if inner is None else [_fixed(inner)])
        cv2.polylines(img, polys, True, tuple(int(c) for c in outline), 1, lineType=cv2.LINE_8, shift=_SHIFT)
        mask = mask | outline_mask(outer, inner, size)
    return mask


def outline_mask(outer: np.ndarray, inner: np.ndarray | None, size: int) -> np.ndarray:
    """Boolean (size, size) mask of the 1-px outline ``draw_glyph`` paints around a polygon (and its hole)."""
    polys = [_fixed(outer)] + ([] if inner is None else [_fixed(inner)])
    edge = np.zeros((size, size), np.uint8)
    cv2.polylines(edge, polys, True, 1, 1, lineType=cv2.LINE_8, shift=_SHIFT)
    return edge.astype(bool)


# ---------------------------------------------------------------------------------------------- scenes


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
