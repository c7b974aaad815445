"""An ImageNet two-class study written as a WILDS (Waterbirds) folder, so that ``read_waterbirds``, ``train``,
``evaluate`` (group accuracies, AIoU) and ``discover`` take it as they take Waterbirds.

Protocol (spec §2.5, Yang et al. Table 5): the attribute of every image is given by the caller (OWL-ViT's
"a photo of a baby" at score ≥ 0.1); val = ``val_per_cell`` train images of each (class, attribute) cell,
drawn with a seeded generator; the rest of train = train; ImageNet validation = test. The AIoU region of an
image is the union of its class's boxes (inclusive pixel coordinates), written as ``segmentations/`` masks.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hf_spurious.cache import atomic_write_text
from hf_spurious.data.export_folder import staging_dir, swap_in
from hf_spurious.images import encode_png
from hf_spurious.sources.common import image_size
from hf_spurious.sources.imagenet import Box, ImageNetImage, ImageNetPair
from hf_spurious.sources.waterbirds import WILDS_COLUMNS

__all__ = ["box_mask", "choose_val", "write_imagenet_pair"]

SPLIT_CODES = {"train": 0, "val": 1, "test": 2}


def box_mask(boxes: Sequence[Box], size: tuple[int, int], where: str) -> np.ndarray:
    """(H, W) uint8 mask, 255 inside the union of ``boxes`` (xmin, ymin, xmax, ymax; inclusive pixels)."""
    width, height = size
    mask = np.zeros((height, width), dtype=np.uint8)
    for x0, y0, x1, y1 in boxes:
        if not (0 <= x0 <= x1 and 0 <= y0 <= y1 and x0 < width and y0 < height):
            raise ValueError(
                f"{where}: box {(x0, y0, x1, y1)} lies outside the {width}x{height} image or is inverted; "
                "fix or drop it in the LOC_*_solution.csv"
            )
        mask[y0 : y1 + 1, x0 : x1 + 1] = 255  # a box reaching the border is clipped by the slice
    return mask


def choose_val(
    images: Sequence[ImageNetImage], attributes: Sequence[int], per_cell: int, seed: int
) -> set[int]:
    """Indices of the train images that become val: ``per_cell`` of each (label, attribute) cell, drawn
    without replacement by ``numpy.random.default_rng(seed)``, cells in (label, attribute) order."""
    rng = np.random.default_rng(seed)
    chosen: set[int] = set()
    for label in (0, 1):
        for attribute in (0, 1):
            cell = [
                i
                for i, im in enumerate(images)
                if im.split == "train" and im.label == label and attributes[i] == attribute
            ]
            if len(cell) < per_cell:
                raise ValueError(
                    f"the train cell (label {label}, attribute {attribute}) has {len(cell)} images, fewer than "
                    f"the {per_cell} val images it must give; lower --val-per-cell"
                )
            chosen.update(cell[j] for j in rng.choice(len(cell), per_cell, replace=False))
    return chosen


def write_imagenet_pair(
    images: Sequence[ImageNetImage],
    attributes: Sequence[int],
    out: str | Path,
    pair: ImageNetPair,
    *,
    val_per_cell: int = 25,
    seed: int = 0,
    settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``out`` (``metadata.csv``, ``images/<class name>/``, ``segmentations/`` masks of the boxes,
    ``imagenet_pair.json``); an existing ``out`` is replaced only once the new folder is complete.
    Returns the summary also written to ``imagenet_pair.json`` (group counts per split)."""
    if len(attributes) != len(images):
        raise ValueError(
            f"{len(attributes)} attribute values for {len(images)} images; one per image expected"
        )
    out = Path(out)
    val = choose_val(images, attributes, val_per_cell, seed)
    counts: dict[str, dict[str, int]] = {s: {} for s in SPLIT_CODES}
    rows = []
    stage = staging_dir(out.parent, out.name)
    try:
        for i, im in enumerate(images):
            split = "val" if i in val else im.split
            rel = f"images/{pair.class_names[im.label].replace(' ', '_')}/{im.path.name}"
            (stage / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(im.path, stage / rel)
            if im.boxes:
                size = image_size(im.path, where=str(im.path))
                mask = stage / "segmentations" / Path(rel).with_suffix(".png")
                mask.parent.mkdir(parents=True, exist_ok=True)
                mask.write_bytes(encode_png(box_mask(im.boxes, size, where=str(im.path))))
            rows.append((im.image_id, rel, im.label, SPLIT_CODES[split], int(attributes[i])))
            group = f"{pair.class_names[im.label]}/{'with' if attributes[i] else 'without'} {pair.attribute}"
            counts[split][group] = counts[split].get(group, 0) + 1
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(WILDS_COLUMNS)
        writer.writerows(rows)
        atomic_write_text(stage / "metadata.csv", buf.getvalue())
        summary = {
            "pair": pair.name,
            "class_names": list(pair.class_names),
            "attribute": pair.attribute,
            "val_per_cell": val_per_cell,
            "seed": seed,
            **(settings or {}),
            "groups": {s: dict(sorted(c.items())) for s, c in counts.items()},
        }
        atomic_write_text(stage / "imagenet_pair.json", json.dumps(summary, indent=2) + "\n")
        swap_in(stage, out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return summary
