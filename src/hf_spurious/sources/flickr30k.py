"""Flickr30k reader with Flickr30k Entities: Karpathy ``dataset_flickr30k.json`` for splits, ``Sentences/``
for captions with typed phrases, ``Annotations/`` XML for boxes.
"""

from __future__ import annotations

import logging
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from hf_spurious.records import BoxPolicy, Phrase, RecordError, SceneRecord
from hf_spurious.sources.common import (
    DirIndex,
    OnMissing,
    check_split,
    image_size,
    karpathy_captions,
    karpathy_images,
    located,
    number,
    read_text,
    safe_relative,
    skip_missing,
    str_field,
)

logger = logging.getLogger(__name__)


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
        if child is None or child.text is None or not child.text.strip():
            return None
        return int(number(child.text, where=f"{path}", what=f"<{tag}>"))

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
    check_split(split)
    root = Path(data_dir)
    wanted = tuple(classes)
    karpathy = Path(karpathy_json) if karpathy_json is not None else root / "dataset_flickr30k.json"
    ent_root, img_root = _roots(root, entities_dir, images_dir)
    index = DirIndex()
    records, missing = [], 0
    for n, im in karpathy_images(karpathy, split):
        filename = str_field(im, "filename", where=f"{karpathy}: images[{n}]")
        where = f"{karpathy}: images[{n}] ({filename!r})"
        rel = safe_relative(filename, where=where)
        img_path = img_root / rel
        xml_path = ent_root / "Annotations" / f"{rel.stem}.xml"
        lost = next((p for p in (img_path, xml_path) if not index.exists(p)), None)
        if lost is not None:
            skip_missing(on_missing, f"{where}: {lost} not found")
            missing += 1
            continue
        width, height, boxes = _parse_boxes(xml_path, where=where)
        if not width or not height:
            width, height = image_size(img_path, where=where)
        sentences = ent_root / "Sentences" / f"{rel.stem}.txt"
        captions, phrases, types = _captions(sentences, im, index, wanted, where)
        with located(str(xml_path)):
            record = SceneRecord.build(
                image_id=rel.stem,
                image_path=str(img_path),
                width=width,
                height=height,
                objects=_typed_boxes(boxes, types, wanted),
                captions=captions,
                split=split,
                known_classes=wanted,
                box_policy=box_policy,
                caption_phrases=phrases,
                source="flickr30k",
            )
        records.append(record)
    if missing:
        logger.warning("read_flickr30k(%s, %s): skipped %d images with missing files", root, split, missing)
    return records


def _roots(root: Path, entities_dir: str | Path | None, images_dir: str | Path | None) -> tuple[Path, Path]:
    """(Entities root holding ``Annotations/``, images root): as given, else found under ``root``."""
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
    return ent_root, img_root


def _captions(
    sent_path: Path, image: dict[str, Any], index: DirIndex, wanted: Sequence[str], where: str
) -> tuple[list[str], list[list[Phrase]] | None, dict[str, list[str]]]:
    """Captions, phrases and entity types from the sentence file; else the Karpathy captions (no phrases)."""
    if index.exists(sent_path):
        return _read_sentences(sent_path, wanted)
    return karpathy_captions(image, where=where), None, {}


def _read_sentences(
    path: Path, wanted: Sequence[str]
) -> tuple[list[str], list[list[Phrase]], dict[str, list[str]]]:
    """(captions, phrases per caption, entity id -> types) of an Entities ``Sentences/<id>.txt`` file."""
    captions: list[str] = []
    phrases: list[list[Phrase]] = []
    types: dict[str, list[str]] = {}
    for line_no, line in enumerate(read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            caption, caption_phrases, line_types = parse_entities_sentence(line.strip(), wanted)
        except ValueError as err:
            raise RecordError(f"{path}: line {line_no}: {err}") from None
        captions.append(caption)
        phrases.append(caption_phrases)
        for entity, kinds in line_types.items():
            types.setdefault(entity, kinds)
    return captions, phrases, types


def _typed_boxes(
    boxes: list[tuple[str, tuple[float, ...]]], types: dict[str, list[str]], wanted: Sequence[str]
) -> list[tuple[tuple[float, ...], str]]:
    """(box, class) of each distinct entity box whose first type is wanted."""
    objects: list[tuple[tuple[float, ...], str]] = []
    seen: set[tuple[str, tuple[float, ...]]] = set()
    for entity, box in boxes:
        kinds = types.get(entity)
        if not kinds or kinds[0] not in wanted or (entity, box) in seen:
            continue
        seen.add((entity, box))
        objects.append((box, kinds[0]))
    return objects


def _first_dir(root: Path, names: Sequence[str], must_contain: str | None) -> Path:
    for name in names:
        candidate = root / name if name else root
        if candidate.is_dir() and (must_contain is None or (candidate / must_contain).is_dir()):
            return candidate
    return root
