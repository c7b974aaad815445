"""``World``: a generated SpuriousShapes world read back from its ``world.json``, redrawing any scene."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from hf_spurious.world.config import (
    BIRD_FAMILIES,
    GLYPHS,
    SPLIT_CODE,
    SPLITS,
    ClassificationWorldConfig,
    WorldConfig,
)
from hf_spurious.world.render import draw_scene, object_mask
from hf_spurious.world.scenes import Scene, group_arrays, sample_bird_scene, sample_retrieval_scene


def _image_ids(sizes: dict[str, int]) -> dict[str, int]:
    """First image id of each split (ids are unique across splits, starting at 1)."""
    first, out = 1, {}
    for split in SPLITS:
        out[split] = first
        first += sizes[split]
    return out


class World:
    """A generated world read back from its ``world.json``: redraws any scene, with or without classes."""

    def __init__(self, config: WorldConfig | ClassificationWorldConfig, root: Path | None = None):
        self.config = config
        self.root = root
        self.variant = "retrieval" if isinstance(config, WorldConfig) else "classification"

    @cached_property
    def _first_ids(self) -> dict[str, int]:
        return _image_ids(self.config.sizes)

    def index_of(self, split: str, image_id: int | str) -> int:
        """Position of ``image_id`` within ``split``; raises KeyError when it is not there."""
        sizes = dict(self.config.sizes)
        if isinstance(self.config, ClassificationWorldConfig):
            sizes["pretrain"] = self.config.pretrain_size
        if split not in sizes:
            raise KeyError(f"unknown split {split!r}; choose one of {sorted(sizes)}")
        first = 1 if split == "pretrain" else self._first_ids[split]
        index = int(image_id) - first
        if not 0 <= index < sizes[split]:
            raise KeyError(f"image id {image_id} is not in split {split!r}")
        return index

    def image_ids(self, split: str) -> list[int]:
        """All image ids of ``split`` in file order."""
        if split == "pretrain":
            return list(range(1, getattr(self.config, "pretrain_size", 0) + 1))
        first = self._first_ids[split]
        return list(range(first, first + self.config.sizes[split]))

    def _groups(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        cache = self.__dict__.setdefault("_group_cache", {})
        if split not in cache:
            cfg = self.config
            assert isinstance(cfg, ClassificationWorldConfig)
            if split == "pretrain":
                n, agreement, frac, balanced = (
                    cfg.pretrain_size,
                    cfg.pretrain_agreement,
                    cfg.pretrain_waterbird_fraction,
                    False,
                )
            else:
                n, agreement, frac = cfg.sizes[split], cfg.train_agreement, cfg.train_waterbird_fraction
                balanced = split != "train"
            rng = np.random.default_rng([cfg.seed, SPLIT_CODE[split]])
            cache[split] = group_arrays(
                n,
                rng,
                balanced=balanced,
                agreement=agreement,
                waterbird_fraction=frac,
                min_group=cfg.min_group_size,
            )
        return cache[split]

    def scene(self, split: str, image_id: int | str) -> Scene:
        """The drawn content of one image."""
        index = self.index_of(split, image_id)
        if isinstance(self.config, WorldConfig):
            return sample_retrieval_scene(self.config, split, index)
        labels, places = self._groups(split)
        return sample_bird_scene(self.config, split, index, int(labels[index]), int(places[index]))

    def render(self, split: str, image_id: int | str) -> np.ndarray:
        """The original image (identical to the written PNG)."""
        return draw_scene(self.scene(split, image_id))

    def render_without(self, split: str, image_id: int | str, removed_classes: Iterable[str]) -> np.ndarray:
        """The oracle counterfactual: the same scene with every object of ``removed_classes`` left out."""
        removed = frozenset([removed_classes] if isinstance(removed_classes, str) else removed_classes)
        known = set(GLYPHS) | set(BIRD_FAMILIES)
        unknown = removed - known
        if unknown:
            raise ValueError(f"unknown classes {sorted(unknown)}; choose from {sorted(known)}")
        return draw_scene(self.scene(split, image_id), removed)

    def masks(self, split: str, image_id: int | str) -> list[tuple[str, np.ndarray]]:
        """(class, boolean mask) of every object in drawing order, each as if drawn alone."""
        scene = self.scene(split, image_id)
        return [(o.category, object_mask(o, scene.size)) for o in scene.objects]


def load_world(out_dir: str | Path) -> World:
    """Read ``world.json`` written by ``generate_world`` and return a ``World`` that redraws its scenes."""
    path = Path(out_dir) / "world.json"
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{path}: no world.json (never generated, or its generation was interrupted); generate the "
            "world with `hf-spurious world --out DIR`"
        ) from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: invalid JSON ({err})") from None
    cls = {"retrieval": WorldConfig, "classification": ClassificationWorldConfig}.get(meta.get("variant"))
    if cls is None:
        raise ValueError(f"{path}: unknown variant {meta.get('variant')!r}")
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {k: _tupled(v) for k, v in meta["config"].items() if k in names}
    return World(cls(**kwargs), Path(out_dir))


def _tupled(value: Any) -> Any:
    return tuple(_tupled(v) for v in value) if isinstance(value, list) else value
