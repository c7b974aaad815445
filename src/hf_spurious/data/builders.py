"""`datasets` builders of the decorrelated (counterfactual) splits, and the ODmAP caption gallery.

``CocoDecorrelated(data_dir=..., config_name="test")`` reads the source split with the package readers,
runs :func:`hf_spurious.synthesis.generator.generate_counterfactuals` (batched, sharded, resumable) into a
work directory, and yields the finished rows. Config attributes override like any builder config:
``CocoDecorrelated(data_dir=d, config_name="test", inpainter="blur", seed=3)``.

Loading scripts are gone from `datasets`; what is shared is the output: ``export_parquet`` writes parquet
with embedded images and a card whose YAML lists the configs, so ``load_dataset(repo)`` needs no code.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from hf_spurious import text
from hf_spurious.cache import ArrayStore, digest
from hf_spurious.data.export import check_not_empty
from hf_spurious.records import SceneRecord
from hf_spurious.sources import read_coco, read_flickr30k
from hf_spurious.synthesis.generator import generate_counterfactuals, process_state
from hf_spurious.synthesis.settings import SynthesisError, SynthesisSettings
from hf_spurious.synthesis.shards import GenerationResult, decorrelated_features, shard_done
from hf_spurious.vocab import load_vocabulary
from hf_spurious.world import load_world

logger = logging.getLogger(__name__)

_SPLIT_NAMES = {"train": datasets.Split.TRAIN, "val": datasets.Split.VALIDATION, "test": datasets.Split.TEST}


@dataclass
class DecorrelatedConfig(datasets.BuilderConfig, SynthesisSettings):
    """Builder config = :class:`SynthesisSettings` (every generation knob) + the usual name/version/data_dir.

    ``work_dir``: where shards are written (default: under the builder's cache dir, keyed by the settings
    fingerprint), so an interrupted ``download_and_prepare`` resumes where it stopped.
    ``phrase_cache_dir``: where noun-phrase parses are cached (default: ``<work_dir>/phrase_cache``); builds
    that edit the same captions (e.g. several target policies of one split) can share one and parse once.
    """

    work_dir: str | None = dataclasses.field(
        default=None, metadata={"help": "shard directory (default: under the builder's cache dir)"}
    )
    phrase_cache_dir: str | None = dataclasses.field(
        default=None, metadata={"help": "noun-phrase parse cache (default: <work_dir>/phrase_cache)"}
    )
    allow_empty: bool = dataclasses.field(
        default=False,
        metadata={"help": "accept a split with zero rows (otherwise an error naming the skips)"},
    )

    def __post_init__(self) -> None:
        datasets.BuilderConfig.__post_init__(self)
        SynthesisSettings.__post_init__(self)

    def settings(self) -> SynthesisSettings:
        return SynthesisSettings(
            **{f.name: getattr(self, f.name) for f in dataclasses.fields(SynthesisSettings)}
        )


def load_source_records(
    settings: SynthesisSettings, data_dir: str | Path, split: str | None = None
) -> list[SceneRecord]:
    """The source split's records through the package readers (COCO layout or Flickr30k Entities)."""
    split = split or settings.split
    if settings.source == "flickr30k":
        return read_flickr30k(data_dir, split, classes=tuple(settings.flickr30k_classes))
    return read_coco(data_dir, split, vocabulary=settings.vocabulary_name)


def world_pairs(data_dir: str | Path) -> list[tuple[str, str]]:
    """(anchor, partner) pairs of a SpuriousShapes world (from its ``world.json``)."""
    pairs = getattr(load_world(data_dir).config, "pairs", None)
    if not pairs:
        raise SynthesisError(
            f"the world in {data_dir} has no partner pairs; pass target_pairs=[(anchor, partner)]"
        )
    return [(str(a), str(p)) for a, p in pairs]


def prepare_settings(settings: SynthesisSettings, data_dir: str | Path) -> SynthesisSettings:
    """Fill source-specific defaults (SpuriousShapes: the partner pairs of the world)."""
    if settings.source != "shapes":
        return settings
    changes: dict[str, Any] = {}
    if settings.target_policy != "random" and settings.target_pairs is None:
        changes["target_pairs"] = world_pairs(data_dir)
    return dataclasses.replace(settings, **changes) if changes else settings


def generate_in_processes(
    records: Sequence[SceneRecord],
    settings: SynthesisSettings,
    work_dir: str | Path,
    data_dir: str | Path,
    *,
    overwrite: bool = False,
    phrase_cache_dir: str | Path | None = None,
) -> tuple[GenerationResult, Any]:
    """Every process of the launch (``accelerate launch`` / torchrun, or just this one) writes its own shards
    of ``data_dir``'s records into ``work_dir``; returns ``(result, state)`` once all have finished, ``state``
    being the ``accelerate.PartialState`` (merge on ``state.is_main_process``)."""
    state = process_state()
    result = generate_counterfactuals(
        records,
        settings,
        work_dir,
        process_index=state.process_index,
        num_processes=state.num_processes,
        overwrite=overwrite,
        manifest_extra={"source_dir": str(Path(data_dir).resolve())},
        phrase_cache_dir=phrase_cache_dir,
    )
    state.wait_for_everyone()
    return result, state


class _DecorrelatedBuilder(datasets.GeneratorBasedBuilder):
    SOURCE = "coco"
    BUILDER_CONFIG_CLASS = DecorrelatedConfig
    VERSION = datasets.Version("1.0.0")
    DEFAULT_CONFIG_NAME = "test"
    DESCRIPTION = ""

    generation_result = None

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(description=self.DESCRIPTION, features=decorrelated_features())

    def _settings(self) -> SynthesisSettings:
        settings = self.config.settings()
        if settings.source != self.SOURCE:
            settings = dataclasses.replace(settings, source=self.SOURCE)
        return settings

    def _split_generators(self, dl_manager) -> list[datasets.SplitGenerator]:
        data_dir = self.config.data_dir
        if not data_dir or not Path(data_dir).is_dir():
            raise SynthesisError(
                f"{type(self).__name__} needs data_dir=<{self.SOURCE} root directory>, got {data_dir!r}"
            )
        settings = prepare_settings(self._settings(), Path(data_dir))
        records = load_source_records(settings, data_dir)
        work = Path(self.config.work_dir) if self.config.work_dir else self._default_work_dir(settings)
        result, _ = generate_in_processes(
            records, settings, work, data_dir, phrase_cache_dir=self.config.phrase_cache_dir
        )
        missing = [k for k in range(result.num_shards) if not shard_done(work, k)]
        if missing:
            raise SynthesisError(
                f"{len(missing)} shards missing in {work} (e.g. {missing[:5]}); rerun to resume"
            )
        stats = result.stats()
        if not self.config.allow_empty:
            check_not_empty(int(stats["rows"]), stats, self.config.name)
        self.generation_result = result
        split = _SPLIT_NAMES.get(settings.split, settings.split)
        return [
            datasets.SplitGenerator(name=split, gen_kwargs={"files": [str(f) for f in result.shard_files]})
        ]

    def _default_work_dir(self, settings: SynthesisSettings) -> Path:
        root = Path(self._cache_dir_root) / "hf_spurious_counterfactuals"
        return root / f"{settings.source}-{settings.split}-{settings.fingerprint()}"

    def _generate_examples(self, files: Sequence[str]):
        import pyarrow.parquet as pq  # lazy: heavy optional dependency

        for path in files:
            for batch in pq.ParquetFile(path).iter_batches(batch_size=64):
                for row in batch.to_pylist():
                    yield f"{row['source_image_id']}-{row['source_caption_index']}", row


def _test_and_train(source: str, test: str, train: str) -> list[DecorrelatedConfig]:
    """The ``test`` (ODmAP queries) and ``train`` (D') configs of a source, with their descriptions."""
    return [
        DecorrelatedConfig(name=split, source=source, split=split, description=description)
        for split, description in (("test", test), ("train", train))
    ]


class CocoDecorrelated(_DecorrelatedBuilder):
    """MS-COCO (Karpathy split) with one object class removed per image (Kim et al., CVPRW 2023)."""

    SOURCE = "coco"
    DESCRIPTION = (
        "COCO images with co-occurring object classes removed by inpainting, captions edited to match."
    )
    BUILDER_CONFIGS = _test_and_train(
        "coco", "ODmAP query set (test split)", "fine-tuning set D' (train split)"
    )


class Flickr30kDecorrelated(_DecorrelatedBuilder):
    """Flickr30k with one entity type removed per image; captions edited with the annotated Entities phrases."""

    SOURCE = "flickr30k"
    DESCRIPTION = (
        "Flickr30k images with co-occurring entities removed by inpainting, captions edited to match."
    )
    BUILDER_CONFIGS = _test_and_train("flickr30k", "ODmAP query set (1K test)", "fine-tuning set D'")


class ShapesDecorrelated(_DecorrelatedBuilder):
    """SpuriousShapes (COCO layout) counterfactuals; ``inpainter="oracle"`` redraws scenes without the objects."""

    SOURCE = "shapes"
    DESCRIPTION = "SpuriousShapes scenes with co-occurring objects removed (inpainted or oracle-redrawn)."
    BUILDER_CONFIGS = [
        DecorrelatedConfig(
            name="test", source="shapes", split="test", description="random-class removal queries"
        ),
        DecorrelatedConfig(
            name="test_partner",
            source="shapes",
            split="test",
            target_policy="partner",
            description="partner-removed queries (the headline set)",
        ),
        DecorrelatedConfig(
            name="test_anchor",
            source="shapes",
            split="test",
            target_policy="anchor",
            description="anchor removed",
        ),
        DecorrelatedConfig(
            name="test_partner_oracle",
            source="shapes",
            split="test",
            target_policy="partner",
            inpainter="oracle",
            description="partner-removed queries redrawn by the world (no inpainting artifacts)",
        ),
        DecorrelatedConfig(name="train", source="shapes", split="train", description="fine-tuning set D'"),
    ]


BUILDERS = {"coco": CocoDecorrelated, "flickr30k": Flickr30kDecorrelated, "shapes": ShapesDecorrelated}


# ------------------------------------------------------------------------------------------ gallery


def build_gallery(
    data_dir: str | Path,
    source: str = "coco",
    vocabulary: str | None = None,
    method: str | None = None,
    cache_dir: str | Path | None = None,
    splits: Sequence[str] = ("train", "val", "test"),
) -> tuple[list[str], list[str], np.ndarray, tuple[str, ...]]:
    """The ODmAP gallery: every caption of ``splits`` and the classes it mentions (spec §1.6).

    Returns ``(captions, caption_image_ids, class_matrix bool (G, C), class_names)``. ``method``:
    ``"lexical"`` / ``"spacy"`` (noun phrases matched with the vocabulary, via
    :func:`hf_spurious.text.caption_class_matrix`) or ``"annotated"`` (Flickr30k Entities phrase types).
    The default is ``"lexical"`` for every source: the matching of the ``odmap`` evaluate module, so the
    runner and the module give the same ODmAP for the same retrievals; ``"annotated"`` gives a different
    number (label it when reported). Cached in ``cache_dir`` (keyed by captions, vocabulary and method).
    """
    settings = SynthesisSettings(source=source, vocabulary=vocabulary)
    method = method or "lexical"
    records = [r for split in splits for r in load_source_records(settings, data_dir, split)]
    captions = [c for r in records for c in r.captions]
    image_ids = [f"{r.split}/{r.image_id}" for r in records for _ in r.captions]
    store = ArrayStore(cache_dir) if cache_dir else None
    key = "gallery-{}-{}".format(
        source,
        digest(
            captions, image_ids, settings.vocabulary_name, method, list(settings.flickr30k_classes), length=20
        ),
    )
    cached = store.get(key) if store is not None else None
    meta = store.meta(key) if cached is not None else None
    if cached is not None and meta is not None and "classes" in meta:
        return captions, image_ids, np.asarray(cached).astype(bool), tuple(str(c) for c in meta["classes"])
    if method == "annotated":
        matrix, class_names = _annotated_matrix(records, settings)
    else:
        vocab = load_vocabulary(settings.vocabulary_name)
        matrix, class_names = text.caption_class_matrix(captions, vocab, method=method, cache=store)
    matrix = np.asarray(matrix, dtype=bool)
    class_names = tuple(class_names)
    if store is not None:
        store.put(key, matrix, classes=list(class_names))
    return captions, image_ids, matrix, class_names


def _annotated_matrix(
    records: Sequence[SceneRecord], settings: SynthesisSettings
) -> tuple[np.ndarray, tuple[str, ...]]:
    class_names = tuple(settings.flickr30k_classes)
    index = {c: i for i, c in enumerate(class_names)}
    rows = []
    for r in records:
        if r.caption_phrases is None:
            raise SynthesisError(
                f"image {r.image_id!r} has no annotated phrases; method='annotated' needs them"
            )
        for phrases in r.caption_phrases:
            row = np.zeros(len(class_names), dtype=bool)
            for p in phrases:
                for c in p.classes:
                    if c in index:
                        row[index[c]] = True
            rows.append(row)
    return (np.stack(rows) if rows else np.zeros((0, len(class_names)), bool)), class_names
