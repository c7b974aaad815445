"""Unit glyph shapes of the SpuriousShapes world and the geometry that places them (pure numpy)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


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


def place_polygon(unit: np.ndarray, center: Sequence[float], radius: float, angle_deg: float) -> np.ndarray:
    """Scale a unit polygon by ``radius``, rotate by ``angle_deg`` and move it to ``center``."""
    a = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return unit @ rot.T * radius + np.asarray(center, dtype=np.float64)


def polygon_area(points: np.ndarray) -> float:
    """Shoelace area of a simple polygon (N, 2)."""
    x, y = points[:, 0], points[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)
