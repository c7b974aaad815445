"""COCO reader (2014 / 2017 naming): Karpathy ``dataset_coco.json`` or ``captions_*.json`` for captions and
splits, ``instances_*.json`` for objects.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from hf_spurious.records import BoxPolicy, ObjectBox, RecordError, SceneRecord, fit_box
from hf_spurious.sources.common import (
    DirIndex,
    MissingFileError,
    OnMissing,
    check_split,
    entry,
    image_size,
    int_field,
    karpathy_captions,
    karpathy_images,
    list_field,
    load_json,
    located,
    number,
    safe_relative,
    skip_missing,
    str_field,
)
from hf_spurious.vocab import load_vocabulary

logger = logging.getLogger(__name__)


def _vocabulary_classes(vocabulary: Any) -> frozenset[str] | None:
    """Class names of a vocabulary given by name, path, class list or object; None = the dataset's names."""
    if vocabulary is None:
        return None
    if hasattr(vocabulary, "classes"):
        return frozenset(vocabulary.classes)
    if isinstance(vocabulary, (list, tuple, set, frozenset)):
        return frozenset(vocabulary)
    return frozenset(load_vocabulary(vocabulary).classes)


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
        path = Path(path)
        data = load_json(path)
        if not isinstance(data, dict) or "annotations" not in data or "categories" not in data:
            raise RecordError(
                f"{path}: not a COCO instances file (needs 'images', 'annotations', 'categories')"
            )
        for n, cat in enumerate(list_field(data, "categories", where=str(path))):
            where = f"{path}: categories[{n}]"
            cat = entry(cat, where=where, what="a category object")
            categories[int_field(cat, "id", where=where)] = (str_field(cat, "name", where=where), path)
        for n, im in enumerate(list_field(data, "images", where=str(path), default=[])):
            at = f"{path}: images[{n}]"
            im = entry(im, where=at, what="an image object")
            size = {k: int_field(im, k, where=at, default=None) for k in ("width", "height")}
            images[int_field(im, "id", where=at)] = {**im, **size}
        for n, ann in enumerate(list_field(data, "annotations", where=str(path))):
            where = f"{path}: annotations[{n}]"
            ann = entry(ann, where=where, what="an annotation object")
            anns[int_field(ann, "image_id", where=where)].append((ann, path))
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
        cat_id = int_field(ann, "category_id", where=where)
        if cat_id not in categories:
            raise RecordError(
                f"{where}: unknown category id {cat_id!r}; it is not in the file's 'categories'"
            )
        name = categories[cat_id][0]
        if known is not None and name not in known:
            raise RecordError(
                f"{where}: category {name!r} is not a class of the vocabulary; use a vocabulary that has "
                "it (--vocabulary), or read without one (vocabulary=None in Python)"
            )
        box = fit_box(list_field(ann, "bbox", where=where), width, height, where=where, policy=box_policy)
        objects.append(ObjectBox(box, name, _polygons(ann.get("segmentation"), where)))
    return objects


def _polygons(seg: Any, where: str) -> tuple[tuple[float, ...], ...] | None:
    """Polygon segmentation as float tuples; RLE (a dict, crowd regions) or none -> None."""
    if not isinstance(seg, list):
        return None
    out = []
    for i, poly in enumerate(seg):
        if not isinstance(poly, list):
            raise RecordError(
                f"{where}: segmentation[{i}] must be a list of numbers [x0, y0, x1, y1, ...], got {poly!r:.60}"
            )
        out.append(tuple(number(v, where=where, what=f"segmentation[{i}]") for v in poly))
    return tuple(out)


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
    check_split(split)
    root = Path(data_dir)
    known = _vocabulary_classes(vocabulary)
    anns, image_entries, categories = _index_instances(
        root, None if instance_files is None else [Path(p) for p in instance_files]
    )
    items = _caption_items(root, split, karpathy_json, captions_json)
    index = DirIndex()
    records, missing = [], 0
    for item in items:
        path = _find_image(root, item, index, on_missing)
        if path is None:
            missing += 1
            continue
        image_id = item["image_id"]
        width, height = _image_dims(item, image_entries.get(image_id) or {}, path)
        objects = _coco_objects(
            image_id, anns.get(image_id, []), categories, known, width, height, box_policy
        )
        with located(item["where"]):
            record = SceneRecord.build(
                image_id=image_id,
                image_path=str(path),
                width=width,
                height=height,
                objects=objects,
                captions=item["captions"],
                split=split,
                known_classes=known,
                box_policy=box_policy,
                source="coco",
            )
        records.append(record)
    if missing:
        logger.warning("read_coco(%s, %s): skipped %d images whose file is missing", root, split, missing)
    return records


def _caption_items(
    root: Path, split: str, karpathy_json: str | Path | bool | None, captions_json: str | Path | None
) -> list[dict[str, Any]]:
    """The images of ``split`` with their captions, from the Karpathy file or a COCO captions file."""
    if captions_json is None and karpathy_json is not False:
        karpathy = root / "dataset_coco.json" if karpathy_json in (None, True) else Path(karpathy_json)
        if karpathy_json not in (None, True) or karpathy.exists():
            return _karpathy_items(karpathy, split)
    return _coco_caption_items(root, split, None if captions_json is None else Path(captions_json))


def _find_image(root: Path, item: dict[str, Any], index: DirIndex, on_missing: OnMissing) -> Path | None:
    """The image file of a caption item; None when it is missing and missing files are skipped."""
    where = item["where"]
    candidates = _coco_candidates(root, item["filepath"], item["filename"], item["image_id"], where)
    path = next((p for p in candidates if index.exists(p)), None)
    if path is None:
        skip_missing(
            on_missing, f"{where}: image {item['filename']!r} not found (looked for {candidates[0]})"
        )
    return path


def _image_dims(item: dict[str, Any], image_entry: dict[str, Any], path: Path) -> tuple[int, int]:
    """(width, height) from the instances entry, else the captions entry, else the image header."""
    width, height = image_entry.get("width"), image_entry.get("height")  # ints or None: checked when read
    if not width or not height:
        width, height = item.get("width"), item.get("height")
    if not width or not height:
        width, height = image_size(path, where=item["where"])
    return int(width), int(height)


def _karpathy_items(path: Path, split: str) -> list[dict[str, Any]]:
    items = []
    for n, im in karpathy_images(path, split):
        at = f"{path}: images[{n}]"
        key = "cocoid" if im.get("cocoid") is not None else "imgid"
        image_id = int_field(im, key, where=at) if im.get(key) is not None else None
        filename = str_field(im, "filename", where=at, default=None)
        if image_id is None or filename is None:
            raise RecordError(f"{at}: needs 'filename' and 'cocoid'; add them or remove the entry")
        where = f"{path}: image {image_id!r} ({filename!r})"
        items.append(
            {
                "image_id": image_id,
                "filepath": str_field(im, "filepath", where=at, default=""),
                "filename": filename,
                "captions": karpathy_captions(im, where=at),
                "where": where,
            }
        )
    return items


def _coco_caption_items(root: Path, split: str, path: Path | None) -> list[dict[str, Any]]:
    if path is None:
        found = sorted((root / "annotations").glob(f"captions_{split}*.json"))
        if not found:
            raise MissingFileError(
                f"{root}: no dataset_coco.json and no annotations/captions_{split}*.json; put the Karpathy "
                "split file dataset_coco.json or the COCO captions files in this folder"
            )
        path = found[0]
    data = load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) or "annotations" not in data:
        raise RecordError(f"{path}: not a COCO captions file (needs 'images' and 'annotations')")
    folder = re.sub(r"^captions_?", "", path.stem)  # captions_train2014 -> train2014
    caps: dict[int, list[str]] = defaultdict(list)
    for n, ann in enumerate(list_field(data, "annotations", where=str(path))):
        where = f"{path}: annotations[{n}]"
        ann = entry(ann, where=where, what="a caption annotation object")
        caps[int_field(ann, "image_id", where=where)].append(str_field(ann, "caption", where=where).strip())
    items = []
    for n, im in enumerate(data["images"]):
        at = f"{path}: images[{n}]"
        im = entry(im, where=at, what="an image object")
        image_id = int_field(im, "id", where=at)
        file_name = str_field(im, "file_name", where=at)
        where = f"{path}: image {image_id} ({file_name!r})"
        filepath = folder if (root / folder).is_dir() or (root / "images" / folder).is_dir() else ""
        items.append(
            {
                "image_id": image_id,
                "filepath": filepath,
                "filename": file_name,
                "captions": caps.get(image_id, []),
                "width": int_field(im, "width", where=at, default=None),
                "height": int_field(im, "height", where=at, default=None),
                "where": where,
            }
        )
    return items
