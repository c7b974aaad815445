"""Writers of the SpuriousShapes world in real on-disk layouts.

- retrieval: COCO ``annotations/instances_<split>.json`` and ``captions_<split>.json``, PNGs under
  ``images/<split>/`` and a Karpathy ``dataset_coco.json``;
- classification: the WILDS Waterbirds layout (``metadata.csv``, ``<family>/*.png``, ``segmentations/``)
  and the captioned "web" pretraining set under ``pretrain/`` (COCO captions layout).

Each writer returns a summary of what was drawn (counts per split, partner and caption statistics).
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from hf_spurious.cache import atomic_write_json, atomic_write_text
from hf_spurious.images import encode_png
from hf_spurious.world.captions import bird_caption, make_caption
from hf_spurious.world.config import (
    BIRD_FAMILIES,
    GLYPHS,
    PLACE_NAMES,
    SPLITS,
    ClassificationWorldConfig,
    WorldConfig,
)
from hf_spurious.world.render import annotation_box, draw_scene, object_mask
from hf_spurious.world.scenes import PlacedObject, Scene, sample_retrieval_scene, scene_rng
from hf_spurious.world.shapes import polygon_area
from hf_spurious.world.world import World


def _dump_json(obj: Any, path: Path) -> None:
    atomic_write_json(path, obj, indent=None, separators=(",", ":"), ensure_ascii=False)


def _coco_json(path: Path, description: str, images: list, annotations: list, **extra: Any) -> None:
    """A COCO annotation file: info, licenses, images, annotations (and e.g. categories)."""
    info = {"description": description, "version": "1.0"}
    _dump_json({"info": info, "licenses": [], "images": images, "annotations": annotations, **extra}, path)


def _image_entry(image_id: int, file_name: str, size: int, **extra: Any) -> dict[str, Any]:
    return {"id": image_id, "file_name": file_name, "width": size, "height": size, **extra}


def _karpathy_tokens(raw: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", raw.lower())


# ---------------------------------------------------------------------------------------------- retrieval


def _area(obj: PlacedObject) -> float:
    hole = 0.0 if obj.inner is None else polygon_area(obj.inner)
    return round(polygon_area(obj.outer) - hole, 2)


def _polygon_flat(obj: PlacedObject, size: int) -> list[float]:
    """COCO polygon of a glyph; a hole is joined to the outline by a zero-width slit (one polygon)."""
    points = obj.outer
    if obj.inner is not None:
        inner = obj.inner[::-1]
        start = int(np.argmin(np.linalg.norm(inner - obj.outer[0], axis=1)))
        inner = np.roll(inner, -start, axis=0)
        points = np.concatenate([obj.outer, obj.outer[:1], inner, inner[:1]])
    clipped = np.clip(points, 0, size)
    return [round(float(v), 2) for v in clipped.reshape(-1)]


class _RetrievalWriter:
    """Writes the COCO files split by split, numbering annotations and sentences across splits."""

    def __init__(self, config: WorldConfig, out: Path) -> None:
        self.config = config
        self.out = out
        self.categories = [
            {"id": GLYPHS[c].coco_id, "name": c, "supercategory": GLYPHS[c].supercategory}
            for c in sorted(config.classes, key=lambda c: GLYPHS[c].coco_id)
        ]
        self.colours = {c: g.colour_word for c, g in GLYPHS.items()}
        self.karpathy: list[dict[str, Any]] = []
        self.ann_id = self.sent_id = 1
        self.stats: dict[str, Any] = {
            "images": {},
            "class_counts": {},
            "instance_counts": {},
            "background_counts": {},
        }
        self.pair_stats = {f"{a}->{p}": Counter() for a, p in config.pairs}

    def write_split(self, split: str, image_ids: Sequence[int], bar: Any) -> None:
        """Draw every image of ``split`` and write its PNGs and COCO files."""
        img_dir = self.out / "images" / split
        img_dir.mkdir(parents=True, exist_ok=True)
        images: list[dict[str, Any]] = []
        instances: list[dict[str, Any]] = []
        captions: list[dict[str, Any]] = []
        class_counts: Counter[str] = Counter()
        instance_counts: Counter[str] = Counter()
        backgrounds: Counter[str] = Counter()
        for index, image_id in enumerate(image_ids):
            scene = sample_retrieval_scene(self.config, split, index)
            file_name = f"{image_id:012d}.png"
            (img_dir / file_name).write_bytes(encode_png(draw_scene(scene)))
            images.append(_image_entry(image_id, file_name, scene.size))
            instances += self._instances(scene, image_id)
            counts = scene.counts
            class_counts.update(counts.keys())
            instance_counts.update(counts)
            backgrounds[scene.background] += 1
            sentences = self._captions(split, index, image_id, scene, captions)
            if split == "train":
                _count_pairs(self.pair_stats, self.config.pairs, counts)
            self.karpathy.append(_karpathy_entry(split, file_name, image_id, len(self.karpathy), sentences))
            bar.update(1)
        description = f"SpuriousShapes retrieval world, seed {self.config.seed}"
        annotations = self.out / "annotations"
        _coco_json(
            annotations / f"instances_{split}.json",
            description,
            images,
            instances,
            categories=self.categories,
        )
        _coco_json(annotations / f"captions_{split}.json", description, images, captions)
        self.stats["images"][split] = len(images)
        self.stats["class_counts"][split] = dict(sorted(class_counts.items()))
        self.stats["instance_counts"][split] = dict(sorted(instance_counts.items()))
        self.stats["background_counts"][split] = dict(sorted(backgrounds.items()))

    def _instances(self, scene: Scene, image_id: int) -> list[dict[str, Any]]:
        """COCO instance annotations of one scene (ids continue across images)."""
        rows = []
        for obj in scene.objects:
            rows.append(
                {
                    "id": self.ann_id,
                    "image_id": image_id,
                    "category_id": GLYPHS[obj.category].coco_id,
                    "bbox": annotation_box(obj, scene.size),
                    "area": _area(obj),
                    "iscrowd": 0,
                    "segmentation": [_polygon_flat(obj, scene.size)],
                }
            )
            self.ann_id += 1
        return rows

    def _captions(
        self, split: str, index: int, image_id: int, scene: Scene, captions: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Write the captions of one scene into ``captions``; return its Karpathy sentences."""
        config, counts = self.config, scene.counts
        rng = scene_rng(config.seed, split, index, 1)
        sentences = []
        for _ in range(config.captions_per_image):
            raw, named = make_caption(counts, self.colours, scene.background, config.pairs, rng, config)
            captions.append({"id": self.sent_id, "image_id": image_id, "caption": raw})
            sentences.append(
                {
                    "tokens": _karpathy_tokens(raw),
                    "raw": raw,
                    "imgid": len(self.karpathy),
                    "sentid": self.sent_id,
                }
            )
            self.sent_id += 1
            if split == "train":
                _count_naming(self.pair_stats, config.pairs, counts, named)
        return sentences

    def finish(self) -> dict[str, Any]:
        """Write ``dataset_coco.json`` and return the summary."""
        _dump_json({"images": self.karpathy, "dataset": "coco"}, self.out / "dataset_coco.json")
        self.stats["captions"] = self.sent_id - 1
        self.stats["pairs"] = {name: _pair_summary(c) for name, c in self.pair_stats.items()}
        return self.stats


def _karpathy_entry(
    split: str, file_name: str, image_id: int, imgid: int, sentences: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "filepath": f"images/{split}",
        "sentids": [s["sentid"] for s in sentences],
        "filename": file_name,
        "imgid": imgid,
        "split": split,
        "sentences": sentences,
        "cocoid": image_id,
    }


def write_retrieval(config: WorldConfig, out: Path) -> dict[str, Any]:
    """Write the retrieval world (COCO + Karpathy layout) under ``out``; return its summary."""
    world = World(config, out)
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    writer = _RetrievalWriter(config, out)
    bar = tqdm(total=sum(config.sizes.values()), desc="SpuriousShapes", unit="img", disable=None)
    for split in SPLITS:
        writer.write_split(split, world.image_ids(split), bar)
    bar.close()
    return writer.finish()


def _count_pairs(
    pair_stats: dict[str, Counter], pairs: Sequence[tuple[str, str]], counts: dict[str, int]
) -> None:
    for anchor, partner in pairs:
        c = pair_stats[f"{anchor}->{partner}"]
        c["anchor"] += anchor in counts
        c["partner"] += partner in counts
        c["both"] += anchor in counts and partner in counts


def _count_naming(
    pair_stats: dict[str, Counter],
    pairs: Sequence[tuple[str, str]],
    counts: dict[str, int],
    named: frozenset[str],
) -> None:
    for anchor, partner in pairs:
        if anchor in counts and partner in counts and (anchor in named or partner in named):
            c = pair_stats[f"{anchor}->{partner}"]
            c["named_either"] += 1
            c["named_both"] += anchor in named and partner in named
            c["anchor_only_captions"] += anchor in named and partner not in named


def _pair_summary(c: Counter) -> dict[str, Any]:
    def ratio(a: int, b: int) -> float | None:
        return round(a / b, 4) if b else None

    return {
        "p_partner_given_anchor": ratio(c["both"], c["anchor"]),
        "p_anchor_given_partner": ratio(c["both"], c["partner"]),
        "anchor_images": c["anchor"],
        "partner_images": c["partner"],
        "co_named_rate": ratio(c["named_both"], c["named_either"]),
        "anchor_only_captions": c["anchor_only_captions"],
    }


# ---------------------------------------------------------------------------------------------- classification


def _group_name(scene: Scene) -> str:
    """``<family>/<place>`` of a bird scene."""
    assert scene.label is not None and scene.place is not None
    return f"{BIRD_FAMILIES[scene.label]}/{PLACE_NAMES[scene.place]}"


def _write_metadata(path: Path, rows: list[tuple[Any, ...]]) -> None:
    """The WILDS ``metadata.csv``."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["img_id", "img_filename", "y", "split", "place"])
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def write_classification(config: ClassificationWorldConfig, out: Path) -> dict[str, Any]:
    """Write the classification world (WILDS layout) and its pretraining set under ``out``; return a summary."""
    world = World(config, out)
    total = sum(config.sizes.values()) + config.pretrain_size
    bar = tqdm(total=total, desc="SpuriousShapes (classification)", unit="img", disable=None)
    rows = []
    groups: dict[str, dict[str, int]] = {}
    for split_code, split in enumerate(SPLITS):
        counter: Counter[str] = Counter()
        for image_id in world.image_ids(split):
            scene = world.scene(split, image_id)
            group = _group_name(scene)
            family = group.split("/")[0]
            rel = f"{family}/{image_id:06d}.png"
            (out / family).mkdir(parents=True, exist_ok=True)
            (out / "segmentations" / family).mkdir(parents=True, exist_ok=True)
            (out / rel).write_bytes(encode_png(draw_scene(scene)))
            mask = object_mask(scene.objects[0], scene.size)
            (out / "segmentations" / rel).write_bytes(encode_png(mask.astype(np.uint8) * 255))
            rows.append((image_id, rel, scene.label, split_code, scene.place))
            counter[group] += 1
            bar.update(1)
        groups[split] = dict(sorted(counter.items()))
    _write_metadata(out / "metadata.csv", rows)
    summary: dict[str, Any] = {"images": {s: config.sizes[s] for s in SPLITS}, "groups": groups}
    if config.pretrain_size:
        summary["pretrain"] = _write_pretrain(world, out / "pretrain", bar)
    bar.close()
    return summary


def _write_pretrain(world: World, root: Path, bar: Any) -> dict[str, Any]:
    """The captioned "web" pretraining set (COCO captions layout with ``y`` and ``place`` per image)."""
    config = world.config
    assert isinstance(config, ClassificationWorldConfig)
    (root / "images").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    groups: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    for index, image_id in enumerate(world.image_ids("pretrain")):
        scene = world.scene("pretrain", image_id)
        groups[_group_name(scene)] += 1
        file_name = f"{image_id:06d}.png"
        (root / "images" / file_name).write_bytes(encode_png(draw_scene(scene)))
        images.append(_image_entry(image_id, file_name, scene.size, y=scene.label, place=scene.place))
        rng = scene_rng(config.seed, "pretrain", index, 1)
        family = BIRD_FAMILIES[scene.label or 0]
        for _ in range(config.pretrain_captions_per_image):
            kind = int(rng.choice(3, p=np.asarray(config.caption_mix)))
            kinds[("bird+place", "bird", "place")[kind]] += 1
            caption = bird_caption(family, scene.background, kind, rng)
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "caption": caption})
        bar.update(1)
    description = f"SpuriousShapes web pretraining set, seed {config.seed}"
    _coco_json(root / "captions.json", description, images, annotations)
    return {
        "images": len(images),
        "groups": dict(sorted(groups.items())),
        "caption_kinds": dict(sorted(kinds.items())),
    }
