"""ImageNet two-class studies (Yang et al., ICML 2023, Table 5) from the ILSVRC 2012 localisation release.

The layout read is the one of the "ImageNet Object Localization Challenge" download (Kaggle), which holds the
same ILSVRC 2012 images as ``imagenet-1k`` plus the VOC-style boxes AIoU needs::

    LOC_synset_mapping.txt           "<wnid> <names>" per line, in class-index order (0..999)
    LOC_train_solution.csv           ImageId,PredictionString ("<wnid> xmin ymin xmax ymax ..."; a subset)
    LOC_val_solution.csv             the same for every validation image
    ILSVRC/Data/CLS-LOC/train/<wnid>/<ImageId>.JPEG
    ILSVRC/Data/CLS-LOC/val/<ImageId>.JPEG

Train images of the two classes are the study's train (and val) pool; ImageNet validation is its test set.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from hf_spurious.records import RecordError
from hf_spurious.sources.common import DirIndex, MissingFileError, read_text

__all__ = [
    "PAIRS",
    "ImageNetImage",
    "ImageNetPair",
    "class_indices",
    "imagenet_class_names",
    "read_boxes",
    "read_imagenet",
    "read_imagenet_pair",
    "read_synsets",
]

Box = tuple[int, int, int, int]
IMAGES = Path("ILSVRC", "Data", "CLS-LOC")


@dataclass(frozen=True)
class ImageNetPair:
    """A two-class study: the ImageNet class indices (label 0, label 1), their prompt names, the attribute."""

    name: str
    class_indices: tuple[int, int]
    class_names: tuple[str, str]
    attribute: str
    """The detector word of the spurious attribute (OWL-ViT query "a photo of a <attribute>")."""


PAIRS = {
    pair.name: pair
    for pair in (
        ImageNetPair("baby_pacifier", (898, 680), ("water bottle", "baby pacifier"), "baby"),
        ImageNetPair("can_opener", (623, 473), ("letter opener", "can opener"), "can"),
    )
}
"""The paper's two studies (class indices and names from the authors' ``imagenet.py``)."""


@dataclass(frozen=True)
class ImageNetImage:
    """One ImageNet image: ``label`` = position of its class among the classes asked for (0/1 in a pair),
    ``"train"`` (ImageNet train) or ``"test"`` (ImageNet validation), and its class's boxes (inclusive pixel
    coordinates; empty when ImageNet has none)."""

    image_id: str
    path: Path
    label: int
    split: str
    boxes: tuple[Box, ...] = ()


def read_synsets(root: Path) -> list[str]:
    """The 1000 WordNet ids in class-index order, from ``LOC_synset_mapping.txt``."""
    path = root / "LOC_synset_mapping.txt"
    wnids = [line.split()[0] for line in read_text(path).splitlines() if line.strip()]
    if len(wnids) != 1000 or len(set(wnids)) != 1000:
        raise RecordError(f"{path}: expected 1000 distinct synsets, one per line; found {len(set(wnids))}")
    return wnids


def read_boxes(path: Path, wnids: set[str]) -> dict[str, dict[str, list[Box]]]:
    """``{ImageId: {wnid: boxes}}`` for the rows of a ``LOC_*_solution.csv`` that name one of ``wnids``."""
    out: dict[str, dict[str, list[Box]]] = {}
    reader = csv.reader(io.StringIO(read_text(path), newline=""))
    header = next(reader, None)
    if header != ["ImageId", "PredictionString"]:
        raise RecordError(f"{path}: header must be 'ImageId,PredictionString', got {header}")
    for row in reader:
        where = f"{path}: line {reader.line_num}"
        if len(row) != 2:
            raise RecordError(f"{where}: expected 2 columns, got {len(row)}")
        image_id, tokens = row[0], row[1].split()
        if not re.fullmatch(r"[A-Za-z0-9_-]+", image_id):
            raise RecordError(
                f"{where}: ImageId {image_id!r} is not a plain file stem (letters, digits, _ and -)"
            )
        if len(tokens) % 5:
            raise RecordError(f"{where}: PredictionString must be groups of 'wnid xmin ymin xmax ymax'")
        for i in range(0, len(tokens), 5):
            if tokens[i] not in wnids:
                continue
            try:
                x0, y0, x1, y1 = (int(float(v)) for v in tokens[i + 1 : i + 5])
            except ValueError:
                raise RecordError(f"{where}: box {tokens[i : i + 5]} has a non-numeric coordinate") from None
            out.setdefault(image_id, {}).setdefault(tokens[i], []).append((x0, y0, x1, y1))
    return out


def imagenet_class_names() -> list[str]:
    """CLIP's names of the 1000 ImageNet classes, in class-index order (OpenAI's curated list, the one the
    authors' prompts use: 680 "baby pacifier", 898 "water bottle")."""
    text = resources.files("hf_spurious.sources").joinpath("imagenet_classes.txt").read_text(encoding="utf-8")
    return text.splitlines()


def class_indices(specs: Sequence[str | int]) -> list[int]:
    """ImageNet class indices from indices or CLIP class names (``"680"``, ``"baby pacifier"``)."""
    names = imagenet_class_names()
    out = []
    for spec in specs:
        text = str(spec).strip()
        if text.isdigit() and int(text) < len(names):
            out.append(int(text))
        elif text in names:
            out.append(names.index(text))
        else:
            raise ValueError(f"unknown ImageNet class {text!r}; give an index 0-999 or a CLIP class name")
    return out


def read_imagenet(data_dir: str | Path, indices: Sequence[int], split: str) -> list[ImageNetImage]:
    """The images of the classes ``indices`` (``label`` = position in ``indices``): ``split="train"`` reads
    ImageNet train (class folders; boxes where ImageNet has them), ``"test"`` ImageNet validation."""
    if split not in ("train", "test"):
        raise ValueError(
            f"split must be 'train' (ImageNet train) or 'test' (ImageNet validation), got {split!r}"
        )
    root = Path(data_dir)
    wnids = read_synsets(root)
    chosen = [wnids[i] for i in indices]
    boxes = read_boxes(root / f"LOC_{'train' if split == 'train' else 'val'}_solution.csv", set(chosen))
    images: list[ImageNetImage] = []
    if split == "train":
        for label, wnid in enumerate(chosen):
            folder = root / IMAGES / "train" / wnid
            if not folder.is_dir():
                raise MissingFileError(
                    f"{folder}: not found; data_dir must hold ILSVRC/Data/CLS-LOC/train/<wnid>/"
                )
            for path in sorted(folder.glob("*.JPEG")):
                found = boxes.get(path.stem, {}).get(wnid, [])
                images.append(ImageNetImage(path.stem, path, label, "train", tuple(found)))
        return images
    index, position = DirIndex(), {wnid: label for label, wnid in enumerate(chosen)}
    for image_id, by_wnid in sorted(boxes.items()):
        labels = {position[w] for w in by_wnid}
        if len(labels) != 1:
            raise RecordError(
                f"LOC_val_solution.csv: {image_id} has boxes of two chosen classes; one label expected"
            )
        label = labels.pop()
        path = root / IMAGES / "val" / f"{image_id}.JPEG"
        if not index.exists(path):
            raise MissingFileError(f"{path}: not found (listed in LOC_val_solution.csv); check the download")
        images.append(ImageNetImage(image_id, path, label, "test", tuple(by_wnid[chosen[label]])))
    return images


def read_imagenet_pair(data_dir: str | Path, pair: ImageNetPair | str) -> list[ImageNetImage]:
    """The study's images: every ImageNet train image of the two classes (``split="train"``) and every
    validation image of them (``split="test"``), with their class's boxes."""
    pair = PAIRS[pair] if isinstance(pair, str) else pair
    images = [im for split in ("train", "test") for im in read_imagenet(data_dir, pair.class_indices, split)]
    for split in ("train", "test"):
        for label in (0, 1):
            if not any(im.split == split and im.label == label for im in images):
                raise RecordError(
                    f"{data_dir}: no {split} image of class {pair.class_indices[label]} "
                    f"({pair.class_names[label]}); check the ImageNet download"
                )
    return images
