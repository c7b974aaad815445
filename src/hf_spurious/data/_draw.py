"""Vectorised drawing for the SpuriousShapes world: textured backgrounds and polygon glyphs (numpy + cv2).

Everything here is a pure function of its arguments (including an explicit ``numpy.random.Generator``),
so a scene redrawn from the same parameters is pixel-identical.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import cv2
import numpy as np

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


def _circle(n: int = 24, rx: float = 1.0, ry: float = 1.0) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([rx * np.cos(t), ry * np.sin(t)], axis=1)


def _egg(n: int = 24) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    x = 0.95 * np.cos(t)
    y = 0.7 * np.sin(t) * (1.0 + 0.25 * np.cos(t))
    return np.stack([x, y], axis=1)


def _halfdisc(n: int = 13) -> np.ndarray:
    t = np.linspace(np.pi, 2 * np.pi, n)
    return np.stack([np.cos(t), np.sin(t) + 0.4], axis=1)


_PLUS = np.array(
    [
        (-0.3, -1),
        (0.3, -1),
        (0.3, -0.3),
        (1, -0.3),
        (1, 0.3),
        (0.3, 0.3),
        (0.3, 1),
        (-0.3, 1),
        (-0.3, 0.3),
        (-1, 0.3),
        (-1, -0.3),
        (-0.3, -0.3),
    ],
    dtype=np.float64,
)

# Unit shapes centred on 0 with radius <= 1: outer polygon, optional inner hole.
SHAPES: dict[str, tuple[np.ndarray, np.ndarray | None]] = {
    "square": (np.array([(-0.8, -0.8), (0.8, -0.8), (0.8, 0.8), (-0.8, 0.8)]), None),
    "rectangle": (np.array([(-1, -0.5), (1, -0.5), (1, 0.5), (-1, 0.5)]), None),
    "bar": (np.array([(-1, -0.28), (1, -0.28), (1, 0.28), (-1, 0.28)]), None),
    "plus": (_PLUS, None),
    "ring": (_circle(24), _circle(24, 0.55, 0.55)),
    "disc": (_circle(24), None),
    "triangle": (np.array([(0, -1), (0.95, 0.8), (-0.95, 0.8)]), None),
    "diamond": (np.array([(0, -1), (0.65, 0), (0, 1), (-0.65, 0)]), None),
    "halfdisc": (_halfdisc(), None),
    "kite": (np.array([(0, -1), (0.6, -0.25), (0, 1), (-0.6, -0.25)]), None),
    "ellipse": (_circle(24, 1.0, 0.38), None),
    "trapezoid": (np.array([(-1, -0.45), (1, -0.45), (0.55, 0.5), (-0.55, 0.5)]), None),
    "chevron": (np.array([(-1, -0.6), (0, 0.15), (1, -0.6), (1, -0.05), (0, 0.7), (-1, -0.05)]), None),
    "bowtie": (np.array([(-1, -0.8), (0, -0.15), (1, -0.8), (1, 0.8), (0, 0.15), (-1, 0.8)]), None),
    "egg": (_egg(), None),
}

TEXTURES = ("solid", "stripes", "dots", "checker")


def place_polygon(unit: np.ndarray, center: Sequence[float], radius: float, angle_deg: float) -> np.ndarray:
    """Scale a unit polygon by ``radius``, rotate by ``angle_deg`` and move it to ``center``."""
    a = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return unit @ rot.T * radius + np.asarray(center, dtype=np.float64)


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


def polygon_area(points: np.ndarray) -> float:
    """Shoelace area of a simple polygon (N, 2)."""
    x, y = points[:, 0], points[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)
