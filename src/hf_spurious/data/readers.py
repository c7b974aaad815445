"""Readers for the real on-disk formats: COCO (+ Karpathy split), Flickr30k (+ Entities), WILDS Waterbirds.

Each reader turns annotation files into validated ``records`` and fails with a ``RecordError`` whose
message names the file and the item. File names taken from annotation files are checked: absolute
paths and ``..`` components are refused (no path traversal).
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Literal

from PIL import Image

from ..records import BoxPolicy, ClassificationRecord, ObjectBox, Phrase, RecordError, SceneRecord, fit_box

logger = logging.getLogger(__name__)

OnMissing = Literal["error", "skip"]
SPLIT_NAMES = ("train", "val", "test")
_KARPATHY_SPLITS = {"train": "train", "restval": "train", "val": "val", "test": "test"}
_WILDS_SPLITS = {0: "train", 1: "val", 2: "test"}


class MissingFileError(RecordError, FileNotFoundError):
    """An image or annotation file named by the dataset is not on disk."""


# ---------------------------------------------------------------------------------------------- helpers


def _load_json(path: Path) -> Any:
    try:
        with path.open("rb") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise MissingFileError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RecordError(
            f"{path}: not valid JSON ({err}); the file may be truncated, download it again"
        ) from None


def safe_relative(name: str, *, where: str) -> PurePosixPath:
    """``name`` as a relative path inside the dataset; absolute paths and ``..`` parts are refused."""
    if not isinstance(name, str) or not name.strip():
        raise RecordError(f"{where}: empty or non-string file name {name!r}")
    posix = name.replace("\\", "/")
    path = PurePosixPath(posix)
    if path.is_absolute() or PureWindowsPath(name).is_absolute() or PureWindowsPath(name).drive:
        raise RecordError(
            f"{where}: file name {name!r} is an absolute path; annotation paths must be relative"
        )
    if ".." in path.parts:
        raise RecordError(
            f"{where}: file name {name!r} contains '..'; annotation paths must stay inside the dataset"
        )
    return path


def _check_split(split: str) -> str:
    if split not in SPLIT_NAMES:
        raise ValueError(f"unknown split {split!r}; choose one of {SPLIT_NAMES}")
    return split


class _DirIndex:
    """Cached directory listings, so resolving 100k image names costs one ``listdir`` per folder."""

    def __init__(self) -> None:
        self._cache: dict[Path, frozenset[str]] = {}

    def exists(self, path: Path) -> bool:
        parent = path.parent
        if parent not in self._cache:
            try:
                self._cache[parent] = frozenset(os.listdir(parent))
            except OSError:
                self._cache[parent] = frozenset()
        return path.name in self._cache[parent]


def _image_size(path: Path, *, where: str) -> tuple[int, int]:
    try:
        with Image.open(path) as im:
            return im.size
    except OSError as err:
        raise RecordError(f"{where}: cannot read image {path} ({err})") from None


def _vocabulary_classes(vocabulary: Any) -> frozenset[str] | None:
    """Class names of a vocabulary given by name, path or object; None when it cannot be loaded."""
    if vocabulary is None:
        return None
    if hasattr(vocabulary, "classes"):
        return frozenset(vocabulary.classes)
    if isinstance(vocabulary, (list, tuple, set, frozenset)):
        return frozenset(vocabulary)
    try:
        from ..vocab import load_vocabulary
    except ImportError:  # vocab module not installed in this build: the category table decides
        logger.warning("hf_spurious.vocab is unavailable; using the dataset's category names as classes")
        return None
    return frozenset(load_vocabulary(vocabulary).classes)


# ---------------------------------------------------------------------------------------------- COCO


_COCO_2014 = re.compile(r"^COCO_(train|val|test)2014_0*(\d+)\.(jpg|jpeg|png)$", re.I)


def _coco_candidates(
    data_dir: Path, filepath: str, filename: str, image_id: int | None, where: str
) -> list[Path]:
    """Where an image may live: as named, under ``images/``, and with the other COCO year's naming."""
    rel = safe_relative(filename, where=where)
    folder = safe_relative(filepath, where=where) if filepath else PurePosixPath()
    roots = [data_dir, data_dir / "images"]
    out = [root / folder / rel for root in roots]
    match = _COCO_2014.match(rel.name)
    if match and image_id is None:
        image_id = int(match.group(2))
    if image_id is not None:
        name2017 = f"{image_id:012d}.{match.group(3) if match else rel.suffix.lstrip('.') or 'jpg'}"
        for root in roots:
            out += [root / f"{s}2017" / name2017 for s in ("train", "val", "test")]
        for s in ("train", "val", "test"):
            out += [root / f"{s}2014" / f"COCO_{s}2014_{image_id:012d}.jpg" for root in roots]
    return out


def _index_instances(
    data_dir: Path, instance_files: Sequence[Path] | None
) -> tuple[dict[int, list[tuple[dict, Path]]], dict[int, dict], dict[int, tuple[str, Path]]]:
    """Annotations and image entries of every instance file, indexed by image id."""
    files = (
        sorted((data_dir / "annotations").glob("instances_*.json"))
        if instance_files is None
        else instance_files
    )
    anns: dict[int, list[tuple[dict, Path]]] = defaultdict(list)
    images: dict[int, dict] = {}
    categories: dict[int, tuple[str, Path]] = {}
    for path in files:
        data = _load_json(Path(path))
        if not isinstance(data, dict) or "annotations" not in data or "categories" not in data:
            raise RecordError(
                f"{path}: not a COCO instances file (needs 'images', 'annotations', 'categories')"
            )
        for cat in data["categories"]:
            categories[int(cat["id"])] = (str(cat["name"]), Path(path))
        for im in data.get("images", []):
            images[int(im["id"])] = im
        for ann in data["annotations"]:
            try:
                anns[int(ann["image_id"])].append((ann, Path(path)))
            except (KeyError, TypeError, ValueError):
                raise RecordError(f"{path}: annotation {ann.get('id')!r} has no valid image_id") from None
    return anns, images, categories


def _coco_objects(
    image_id: int,
    anns: list[tuple[dict, Path]],
    categories: dict[int, tuple[str, Path]],
    known: frozenset[str] | None,
    width: int,
    height: int,
    box_policy: BoxPolicy,
) -> list[ObjectBox]:
    objects = []
    for ann, path in anns:
        where = f"{path}: annotation {ann.get('id')!r} of image {image_id}"
        cat_id = ann.get("category_id")
        if cat_id not in categories:
            raise RecordError(
                f"{where}: unknown category id {cat_id!r}; it is not in the file's 'categories'"
            )
        name = categories[cat_id][0]
        if known is not None and name not in known:
            raise RecordError(
                f"{where}: category {name!r} is not a class of the vocabulary; pass vocabulary=None"
            )
        seg = ann.get("segmentation")
        polygons = tuple(tuple(float(v) for v in poly) for poly in seg) if isinstance(seg, list) else None
        box = fit_box(ann.get("bbox", ()), width, height, where=where, policy=box_policy)
        objects.append(ObjectBox(box, name, polygons))
    return objects


def read_coco(
    data_dir: str | Path,
    split: str,
    *,
    vocabulary: Any = "coco",
    box_policy: BoxPolicy = "clip",
    on_missing: OnMissing = "error",
    karpathy_json: str | Path | bool | None = None,
    captions_json: str | Path | None = None,
    instance_files: Sequence[str | Path] | None = None,
) -> list[SceneRecord]:
    """Read one split of COCO as ``SceneRecord``s.

    Captions and splits come from the Karpathy ``dataset_coco.json`` (``restval`` counts as train): the
    one in ``data_dir`` when present, or the file ``karpathy_json`` names (which must exist). Without
    one (or with ``karpathy_json=False``, or when ``captions_json`` names a COCO captions file) they come
    from ``annotations/captions_<split>*.json``. Objects come from every ``annotations/instances_*.json``
    (or ``instance_files``), indexed by image id; images without instance annotations get no objects.
    Image files are found under COCO 2014 or 2017 naming, with or without an ``images/`` folder.
    """
    _check_split(split)
    root = Path(data_dir)
    known = _vocabulary_classes(vocabulary)
    anns, image_entries, categories = _index_instances(
        root, None if instance_files is None else [Path(p) for p in instance_files]
    )
    if captions_json is None and karpathy_json is not False:
        karpathy = root / "dataset_coco.json" if karpathy_json in (None, True) else Path(karpathy_json)
        use_karpathy = karpathy_json not in (None, True) or karpathy.exists()
    else:
        use_karpathy = False
    if use_karpathy:
        items = _karpathy_items(karpathy, split)
    else:
        items = _coco_caption_items(root, split, None if captions_json is None else Path(captions_json))
    index = _DirIndex()
    records, missing = [], 0
    for item in items:
        image_id, where = item["image_id"], item["where"]
        candidates = _coco_candidates(root, item["filepath"], item["filename"], image_id, where)
        path = next((p for p in candidates if index.exists(p)), None)
        if path is None:
            if on_missing == "skip":
                missing += 1
                continue
            raise MissingFileError(
                f"{where}: image {item['filename']!r} not found (looked for {candidates[0]})"
            )
        entry = image_entries.get(image_id) or {}
        width, height = entry.get("width"), entry.get("height")
        if not width or not height:
            width, height = item.get("width"), item.get("height")
        if not width or not height:
            width, height = _image_size(path, where=where)
        objects = _coco_objects(
            image_id, anns.get(image_id, []), categories, known, int(width), int(height), box_policy
        )
        try:
            record = SceneRecord.build(
                image_id=image_id,
                image_path=str(path),
                width=int(width),
                height=int(height),
                objects=objects,
                captions=item["captions"],
                split=split,
                known_classes=known,
                box_policy=box_policy,
                source="coco",
            )
        except RecordError as err:
            raise RecordError(f"{where}: {err}") from None
        records.append(record)
    if missing:
        logger.warning("read_coco(%s, %s): skipped %d images whose file is missing", root, split, missing)
    return records


def _karpathy_items(path: Path, split: str) -> list[dict[str, Any]]:
    data = _load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise RecordError(f"{path}: not a Karpathy split file (needs a list 'images')")
    items = []
    for n, im in enumerate(data["images"]):
        ksplit = im.get("split")
        if ksplit not in _KARPATHY_SPLITS:
            raise RecordError(f"{path}: image #{n} has unknown split {ksplit!r} (train/restval/val/test)")
        if _KARPATHY_SPLITS[ksplit] != split:
            continue
        image_id = im.get("cocoid", im.get("imgid"))
        where = f"{path}: image {image_id!r} ({im.get('filename')!r})"
        if image_id is None or "filename" not in im:
            raise RecordError(f"{path}: image #{n} needs 'filename' and 'cocoid'")
        captions = [s.get("raw", " ".join(s.get("tokens", []))).strip() for s in im.get("sentences", [])]
        items.append(
            {
                "image_id": int(image_id),
                "filepath": im.get("filepath", ""),
                "filename": im["filename"],
                "captions": captions,
                "where": where,
            }
        )
    return items


def _coco_caption_items(root: Path, split: str, path: Path | None) -> list[dict[str, Any]]:
    if path is None:
        found = sorted((root / "annotations").glob(f"captions_{split}*.json"))
        if not found:
            raise MissingFileError(
                f"{root}: no dataset_coco.json and no annotations/captions_{split}*.json; pass karpathy_json= or captions_json="
            )
        path = found[0]
    data = _load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) or "annotations" not in data:
        raise RecordError(f"{path}: not a COCO captions file (needs 'images' and 'annotations')")
    folder = re.sub(r"^captions_?", "", path.stem)  # captions_train2014 -> train2014
    caps: dict[int, list[str]] = defaultdict(list)
    for ann in data["annotations"]:
        try:
            caps[int(ann["image_id"])].append(str(ann["caption"]).strip())
        except (KeyError, TypeError, ValueError):
            raise RecordError(
                f"{path}: caption annotation {ann.get('id')!r} needs 'image_id' and 'caption'"
            ) from None
    items = []
    for im in data["images"]:
        image_id = int(im["id"])
        where = f"{path}: image {image_id} ({im.get('file_name')!r})"
        filepath = folder if (root / folder).is_dir() or (root / "images" / folder).is_dir() else ""
        items.append(
            {
                "image_id": image_id,
                "filepath": filepath,
                "filename": im.get("file_name", ""),
                "captions": caps.get(image_id, []),
                "width": im.get("width"),
                "height": im.get("height"),
                "where": where,
            }
        )
    return items


# ---------------------------------------------------------------------------------------------- Flickr30k


_ENTITY = re.compile(r"\[/EN#(\d+)((?:/[^\s\]/]+)+)\s+([^\]]*)\]")


def parse_entities_sentence(
    line: str, classes: Iterable[str]
) -> tuple[str, list[Phrase], dict[str, list[str]]]:
    """Parse one Flickr30k Entities sentence into (plain caption, phrases, entity id -> types).

    ``[/EN#18/people A man] in [/EN#19/clothing an orange hat]`` -> ``A man in an orange hat``, with
    phrase classes = entity types ∩ ``classes``.
    """
    wanted = frozenset(classes)
    text, phrases, types = [], [], {}
    pos = last = 0
    for match in _ENTITY.finditer(line):
        before = line[last : match.start()]
        text.append(before)
        pos += len(before)
        entity, kinds, words = match.group(1), match.group(2).strip("/").split("/"), match.group(3)
        types.setdefault(entity, kinds)
        phrases.append(Phrase(words, pos, pos + len(words), frozenset(k for k in kinds if k in wanted)))
        text.append(words)
        pos += len(words)
        last = match.end()
    rest = line[last:]
    if "[/EN#" in rest:
        raise ValueError(f"unbalanced entity bracket in {line!r}")
    text.append(rest)
    return "".join(text), phrases, types


def _parse_boxes(
    path: Path, *, where: str
) -> tuple[int | None, int | None, list[tuple[str, tuple[float, ...]]]]:
    """(width, height, [(entity id, xywh box)]) from a Flickr30k Entities annotation XML."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        raise RecordError(f"{where}: {path} is not valid XML ({err}); the file may be truncated") from None
    size = root.find("size")

    def num(node: ET.Element | None, tag: str) -> int | None:
        child = None if node is None else node.find(tag)
        return None if child is None or child.text is None else int(float(child.text))

    width, height = num(size, "width"), num(size, "height")
    boxes = []
    for obj in root.findall("object"):
        box = obj.find("bndbox")
        if box is None:
            continue  # nobndbox / scene entries carry no box
        coords = [num(box, t) for t in ("xmin", "ymin", "xmax", "ymax")]
        if any(c is None for c in coords):
            raise RecordError(f"{where}: {path} has a <bndbox> without xmin/ymin/xmax/ymax")
        x0, y0, x1, y1 = coords  # 1-based inclusive pixel coordinates
        xywh = (float(x0 - 1), float(y0 - 1), float(x1 - x0 + 1), float(y1 - y0 + 1))  # type: ignore[operator]
        for name in obj.findall("name"):
            if name.text:
                boxes.append((name.text.strip(), xywh))
    return width, height, boxes


def read_flickr30k(
    data_dir: str | Path,
    split: str,
    *,
    classes: Sequence[str] = ("people", "animals", "vehicles", "instruments"),
    box_policy: BoxPolicy = "clip",
    on_missing: OnMissing = "error",
    karpathy_json: str | Path | None = None,
    entities_dir: str | Path | None = None,
    images_dir: str | Path | None = None,
) -> list[SceneRecord]:
    """Read one split of Flickr30k with Flickr30k Entities boxes and typed phrases.

    Captions come from ``Sentences/<id>.txt`` (plain text, markup removed) with ``caption_phrases``;
    when a sentence file is absent, from the Karpathy ``dataset_flickr30k.json`` without phrases.
    A box takes the (first) type of its entity id; boxes outside ``classes`` are dropped.
    """
    _check_split(split)
    root = Path(data_dir)
    wanted = tuple(classes)
    karpathy = Path(karpathy_json) if karpathy_json is not None else root / "dataset_flickr30k.json"
    ent_root = (
        Path(entities_dir)
        if entities_dir is not None
        else _first_dir(root, ("", "flickr30k_entities"), "Annotations")
    )
    img_root = (
        Path(images_dir)
        if images_dir is not None
        else _first_dir(root, ("flickr30k-images", "flickr30k_images", "images", "Images", ""), None)
    )
    data = _load_json(karpathy)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise RecordError(f"{karpathy}: not a Karpathy split file (needs a list 'images')")
    index = _DirIndex()
    records, missing = [], 0
    for n, im in enumerate(data["images"]):
        ksplit = im.get("split")
        if ksplit not in _KARPATHY_SPLITS:
            raise RecordError(f"{karpathy}: image #{n} has unknown split {ksplit!r}")
        if _KARPATHY_SPLITS[ksplit] != split:
            continue
        where = f"{karpathy}: image {im.get('filename')!r}"
        rel = safe_relative(im.get("filename", ""), where=where)
        stem = rel.stem
        img_path = img_root / rel
        xml_path = ent_root / "Annotations" / f"{stem}.xml"
        if not index.exists(img_path) or not index.exists(xml_path):
            if on_missing == "skip":
                missing += 1
                continue
            lost = img_path if not index.exists(img_path) else xml_path
            raise MissingFileError(f"{where}: {lost} not found")
        width, height, boxes = _parse_boxes(xml_path, where=where)
        if not width or not height:
            width, height = _image_size(img_path, where=where)
        sent_path = ent_root / "Sentences" / f"{stem}.txt"
        types: dict[str, list[str]] = {}
        phrases: list[list[Phrase]] | None = None
        if index.exists(sent_path):
            captions, phrases = [], []
            for line_no, line in enumerate(sent_path.read_text(encoding="utf-8").splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    caption, caption_phrases, line_types = parse_entities_sentence(line.strip(), wanted)
                except ValueError as err:
                    raise RecordError(f"{sent_path}: line {line_no}: {err}") from None
                captions.append(caption)
                phrases.append(caption_phrases)
                for entity, kinds in line_types.items():
                    types.setdefault(entity, kinds)
        else:
            captions = [s.get("raw", " ".join(s.get("tokens", []))).strip() for s in im.get("sentences", [])]
        objects, seen = [], set()
        for entity, box in boxes:
            kinds = types.get(entity)
            if not kinds or kinds[0] not in wanted or (entity, box) in seen:
                continue
            seen.add((entity, box))
            objects.append((box, kinds[0]))
        try:
            records.append(
                SceneRecord.build(
                    image_id=stem,
                    image_path=str(img_path),
                    width=width,
                    height=height,
                    objects=objects,
                    captions=captions,
                    split=split,
                    known_classes=wanted,
                    box_policy=box_policy,
                    caption_phrases=phrases,
                    source="flickr30k",
                )
            )
        except RecordError as err:
            raise RecordError(f"{xml_path}: {err}") from None
    if missing:
        logger.warning("read_flickr30k(%s, %s): skipped %d images with missing files", root, split, missing)
    return records


def _first_dir(root: Path, names: Sequence[str], must_contain: str | None) -> Path:
    for name in names:
        candidate = root / name if name else root
        if candidate.is_dir() and (must_contain is None or (candidate / must_contain).is_dir()):
            return candidate
    return root


# ---------------------------------------------------------------------------------------------- Waterbirds


_WILDS_COLUMNS = ("img_id", "img_filename", "y", "split", "place")


def read_waterbirds(
    data_dir: str | Path, split: str | None = None, *, on_missing: OnMissing = "error"
) -> list[ClassificationRecord]:
    """Read Waterbirds (WILDS layout: ``metadata.csv`` + images + optional ``segmentations/``).

    ``y`` is the label (1 = waterbird), ``place`` the spurious attribute (1 = water); ``split`` 0/1/2 is
    train/val/test. ``mask_path`` is set when ``segmentations/<img_filename stem>.png`` exists.
    """
    if split is not None:
        _check_split(split)
    root = Path(data_dir)
    meta = root / "metadata.csv"
    try:
        fh = meta.open(newline="", encoding="utf-8")
    except FileNotFoundError:
        raise MissingFileError(f"{meta}: file not found; data_dir must hold the WILDS metadata.csv") from None
    index = _DirIndex()
    records, missing = [], 0
    with fh:
        reader = csv.DictReader(fh)
        absent = [c for c in _WILDS_COLUMNS if c not in (reader.fieldnames or [])]
        if absent:
            raise RecordError(f"{meta}: missing columns {absent}; need {list(_WILDS_COLUMNS)}")
        for line_no, row in enumerate(reader, 2):
            where = f"{meta}: line {line_no} (img_id {row.get('img_id')!r})"
            try:
                split_code, label, place = int(row["split"]), int(row["y"]), int(row["place"])
            except (TypeError, ValueError):
                raise RecordError(f"{where}: y, split and place must be integers") from None
            if split_code not in _WILDS_SPLITS:
                raise RecordError(f"{where}: split {split_code} is not 0/1/2 (train/val/test)")
            row_split = _WILDS_SPLITS[split_code]
            if split is not None and row_split != split:
                continue
            rel = safe_relative(row["img_filename"] or "", where=where)
            image = root / rel
            if not index.exists(image):
                if on_missing == "skip":
                    missing += 1
                    continue
                raise MissingFileError(f"{where}: image {image} not found")
            mask = root / "segmentations" / rel.with_suffix(".png")
            try:
                record = ClassificationRecord(
                    image_id=str(row["img_id"]),
                    image_path=str(image),
                    label=label,
                    attribute=place,
                    split=row_split,
                    mask_path=str(mask) if index.exists(mask) else None,
                )
            except RecordError as err:
                raise RecordError(f"{meta}: line {line_no}: {err}") from None
            records.append(record)
    if missing:
        logger.warning("read_waterbirds(%s): skipped %d rows whose image is missing", root, missing)
    return records


__all__ = [
    "MissingFileError",
    "parse_entities_sentence",
    "read_coco",
    "read_flickr30k",
    "read_waterbirds",
    "safe_relative",
]
