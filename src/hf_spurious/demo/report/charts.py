"""The report's pictures as PNG bytes: single images, image grids and GradCAM overlay grids.

Bar charts and heat-map overlays come from :mod:`hf_spurious.evaluation.plots` (one of each in the package).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hf_spurious.evaluation.plots import figure_png, overlay_heatmap, pyplot
from hf_spurious.images import encode_png


def png_bytes(image: np.ndarray, scale: int = 1) -> bytes:
    """Encode an ``HxWx3`` uint8 (or ``HxW``) array as PNG, optionally upscaled by nearest neighbour."""
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise ValueError(f"png_bytes expects uint8 pixels, got {arr.dtype}")
    if scale > 1:
        arr = arr.repeat(scale, axis=0).repeat(scale, axis=1)
    return encode_png(arr)


def image_grid(
    rows: Sequence[Sequence[np.ndarray]], *, column_titles: Sequence[str], row_labels: Sequence[str] = ()
) -> bytes:
    """A grid of images (each ``HxWx3`` uint8), one row per example, titled columns."""
    plt = pyplot()
    if not rows:
        raise ValueError("image_grid needs at least one row")
    ncols = len(column_titles)
    fig, axes = plt.subplots(len(rows), ncols, figsize=(1.6 * ncols + 0.4, 1.6 * len(rows)), squeeze=False)
    for i, row in enumerate(rows):
        if len(row) != ncols:
            raise ValueError(f"row {i} has {len(row)} images for {ncols} columns")
        for j, img in enumerate(row):
            ax = axes[i][j]
            ax.imshow(np.asarray(img), interpolation="nearest", vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(column_titles[j], fontsize=8)
            if j == 0 and i < len(row_labels):
                ax.set_ylabel(row_labels[i], fontsize=7)
    fig.tight_layout()
    return figure_png(fig)


def gradcam_grid(items: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> bytes:
    """One row per ``{"group", "image", "maps"}`` item: the image, then its map per key as an overlay."""
    rows = [
        [
            item["image"],
            *(
                overlay_heatmap(item["image"], item["maps"][k]) if k in item["maps"] else item["image"]
                for k in keys
            ),
        ]
        for item in items
    ]
    return image_grid(rows, column_titles=["image", *keys], row_labels=[item["group"] for item in items])


def shapes_legend(classes: Sequence[str], tile: int = 48, per_row: int = 7) -> bytes:
    """How each SpuriousShapes class is drawn: one tile per class (its glyph, colour and texture), titled."""
    from hf_spurious.world import GLYPHS
    from hf_spurious.world.render import draw_glyph
    from hf_spurious.world.shapes import SHAPES, place_polygon

    unknown = [c for c in classes if c not in GLYPHS]
    if unknown or not classes:
        raise ValueError(
            f"shapes_legend: no glyph for {unknown or 'an empty class list'}; known: {list(GLYPHS)}"
        )
    plt = pyplot()
    nrows = -(-len(classes) // per_row)
    ncols = min(per_row, len(classes))
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.15 * ncols, 1.3 * nrows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for k, name in enumerate(classes):
        spec = GLYPHS[name]
        unit_outer, unit_inner = SHAPES[spec.shape]
        img = np.full((tile, tile, 3), 235, np.uint8)
        outer = place_polygon(unit_outer, (tile / 2, tile / 2), tile * 0.38, 0.0)
        inner = (
            None if unit_inner is None else place_polygon(unit_inner, (tile / 2, tile / 2), tile * 0.38, 0.0)
        )
        draw_glyph(img, outer, inner, spec.colour, texture=spec.texture, outline=(15, 15, 15))
        ax = axes[k // per_row][k % per_row]
        ax.imshow(img, interpolation="nearest")
        ax.set_title(name, fontsize=8)
    fig.tight_layout()
    return figure_png(fig)
