"""Batched, sharded, resumable, deterministic counterfactual generation (Kim et al. §3.1 + §3.3).

Work directory layout::

    manifest.json                 settings, fingerprint, shard count (the run's identity)
    shards/00000.parquet          rows of shard 0 (typed with :func:`decorrelated_features`)
    shards/00000.json             shard 0 statistics; written last, so it marks the shard as done

Shard ``k`` holds the records ``[k * shard_size, (k + 1) * shard_size)`` of the id-sorted record list;
process ``p`` of ``n`` takes the shards ``k % n == p``. Every random choice of an image comes from a
generator seeded by ``(seed, image id)``, and inpainter batches never cross a shard, so the bytes of every
shard (and of the merged files) do not depend on the number of processes or on interruptions.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hf_spurious.images import ImageReadError, encode_png, read_rgb_array
from hf_spurious.records import Phrase, SceneRecord
from hf_spurious.synthesis import planner

logger = logging.getLogger(__name__)

TEXT_METHODS = ("np_removal", "prompt", "captioner")
TARGET_POLICIES = ("random", "partner", "anchor")
SOURCES = ("coco", "flickr30k", "shapes")
DEFAULT_VOCABULARY = {"coco": "coco", "flickr30k": "flickr30k", "shapes": "shapes"}

# skip reasons beyond the planner's
NO_TARGET_PAIR = "no_target_pair"
NO_CAPTION_MENTIONS_REMOVED = "no_caption_mentions_removed"
EDIT_STILL_MENTIONS_REMOVED = "edited_caption_mentions_removed"
EDIT_NAMES_NO_PRESENT = "edited_caption_names_no_present_class"
EDIT_EMPTY = "edited_caption_empty"  # every word belonged to removed phrases ("Frisbee!" -> "")
UNREADABLE_IMAGE = "unreadable_image"
IMAGE_SIZE_MISMATCH = "image_size_mismatch"
INPAINTER_FLAGGED = "inpainter_safety_flagged"


class SynthesisError(RuntimeError):
    """A generation problem the user must fix; the message names the item and the fix."""


@dataclass
class SynthesisSettings:
    """Every knob of a counterfactual split. Same settings + same source files -> identical bytes."""

    source: str = "coco"
    split: str = "test"  # train -> fine-tuning set D', test -> ODmAP query set
    inpainter: str = "opencv"  # opencv[:telea|:ns] | zero | mean | blur | oracle | diffusers:<id or dir>
    inpainter_options: dict[str, Any] = field(default_factory=dict)
    text_method: str = "np_removal"  # np_removal | prompt | captioner
    captioner: str | None = None  # transformers image-to-text model id or dir (text_method="captioner")
    spacy_model: str = "en_core_web_sm"
    vocabulary: str | None = None  # None: the source's default ("coco" = CHAIR word list substitute)
    seed: int = 0
    alpha1: float = 0.4
    alpha2: float = 0.8
    alpha3: float = 0.7
    dilation: int = 0
    use_segmentation: bool = False
    captions_per_image: int = 1
    target_policy: str = "random"  # random | partner | anchor
    target_pairs: list[tuple[str, str]] | None = None  # (anchor, partner); shapes: read from world.json
    require_present_mention: bool | None = None  # None: on for split "train" (D'), off otherwise
    store_mask: bool = True
    shard_size: int = 64
    batch_size: int = 8
    num_workers: int = 2
    on_error: str = "skip"  # skip | raise
    max_images: int | None = None
    flickr30k_classes: tuple[str, ...] = ("people", "animals", "vehicles", "instruments")

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        checks = [
            (self.source in SOURCES, f"source must be one of {SOURCES}, got {self.source!r}"),
            (
                self.text_method in TEXT_METHODS,
                f"text_method must be one of {TEXT_METHODS}, got {self.text_method!r}",
            ),
            (
                self.target_policy in TARGET_POLICIES,
                f"target_policy must be one of {TARGET_POLICIES}, got {self.target_policy!r}",
            ),
            (
                self.on_error in ("skip", "raise"),
                f"on_error must be 'skip' or 'raise', got {self.on_error!r}",
            ),
            (self.shard_size >= 1 and self.batch_size >= 1, "shard_size and batch_size must be >= 1"),
            (self.captions_per_image >= 1, "captions_per_image must be >= 1"),
            (self.dilation >= 0, "dilation must be >= 0 pixels"),
            (
                self.text_method != "captioner" or bool(self.captioner),
                "text_method='captioner' needs captioner=<model id or dir>",
            ),
            (
                self.inpainter != "oracle" or self.source == "shapes",
                "the oracle inpainter exists only for shapes",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    @property
    def vocabulary_name(self) -> str:
        return self.vocabulary or DEFAULT_VOCABULARY[self.source]

    @property
    def require_present(self) -> bool:
        return (
            self.split == "train"
            if self.require_present_mention is None
            else bool(self.require_present_mention)
        )

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["target_pairs"] = None if self.target_pairs is None else [list(p) for p in self.target_pairs]
        d["flickr30k_classes"] = list(self.flickr30k_classes)
        return d

    def fingerprint(self) -> str:
        d = self.to_dict()
        for k in ("num_workers", "on_error"):  # do not change the output bytes
            d.pop(k)
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


def decorrelated_features():
    """The typed `datasets.Features` of every decorrelated split."""
    import datasets

    string_list = datasets.List(datasets.Value("string"))
    return datasets.Features(
        {
            "image": datasets.Image(),
            "source_image_id": datasets.Value("string"),
            "source_split": datasets.Value("string"),
            "source_caption": datasets.Value("string"),
            "source_caption_index": datasets.Value("int32"),
            "caption": datasets.Value("string"),
            "target_class": datasets.Value("string"),
            "removed_classes": string_list,
            "present_classes": string_list,
            "removed_boxes": datasets.List(datasets.List(datasets.Value("float32"), length=4)),
            "mask": datasets.Image(),
            "width": datasets.Value("int32"),
            "height": datasets.Value("int32"),
            "image_method": datasets.Value("string"),
            "text_method": datasets.Value("string"),
        }
    )


# ------------------------------------------------------------------------------------------- seeds


def image_seed(seed: int, image_id: str, purpose: str = "") -> int:
    """A 63-bit seed from ``(seed, image id, purpose)``: independent of process order and batching."""
    digest = hashlib.sha256(f"{int(seed)}\x00{image_id}\x00{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def image_rng(seed: int, image_id: str) -> np.random.Generator:
    return np.random.default_rng(image_seed(seed, image_id))


def sort_records(records: Iterable[SceneRecord]) -> list[SceneRecord]:
    """Records in a canonical order (numeric ids numerically, then the rest), duplicates rejected."""
    out = sorted(
        records, key=lambda r: (0, int(r.image_id), "") if r.image_id.isdigit() else (1, 0, r.image_id)
    )
    ids = [r.image_id for r in out]
    if len(set(ids)) != len(ids):
        dup = next(i for i, j in itertools.pairwise(ids) if i == j)
        raise SynthesisError(f"image id {dup!r} appears twice in the source split; ids must be unique")
    return out


# ---------------------------------------------------------------------------------------- text side


class TextSide:
    """Phrase extraction, caption choice and editing for one run (wraps :mod:`hf_spurious.text`)."""

    def __init__(self, settings: SynthesisSettings, phrase_cache_dir: str | Path | None = None) -> None:
        from hf_spurious.vocab import load_vocabulary

        self.settings = settings
        self.vocabulary = load_vocabulary(settings.vocabulary_name)
        self._extractor = None
        self._captioner = None
        self._cache_dir = phrase_cache_dir

    @property
    def extractor(self):
        if self._extractor is None:
            from hf_spurious.text import PhraseExtractor

            self._extractor = PhraseExtractor(
                spacy_model=self.settings.spacy_model, cache_dir=self._cache_dir
            )
        return self._extractor

    @property
    def backend(self) -> str:
        if self.annotated():
            return "flickr30k-entities annotations"
        return str(getattr(self.extractor, "backend", "unknown"))

    def annotated(self) -> bool:
        return self.settings.source == "flickr30k"

    def prepare(
        self, records: Sequence[SceneRecord], removed: Sequence[Iterable[str]] | None = None
    ) -> list[list[list[Phrase]] | None]:
        """Flickr30k: the annotated phrases per caption. Others: parse the captions that can be edited once
        (batched spaCy, cached by the extractor) so the per-caption edits below hit the cache; returns None
        per record. With ``removed`` (the classes removed from each record), only the captions that mention
        one of them are parsed: the others are never candidates."""
        if self.annotated():
            out: list[list[list[Phrase]] | None] = []
            for r in records:
                if r.caption_phrases is None:
                    raise SynthesisError(
                        f"flickr30k image {r.image_id!r} has no annotated phrases; read it with read_flickr30k"
                    )
                out.append([list(p) for p in r.caption_phrases])
            return out
        if self.settings.text_method == "np_removal":
            gone = [None] * len(records) if removed is None else [set(g) for g in removed]
            flat = [c for r, g in zip(records, gone) for c in r.captions if g is None or self._mentions(c, g)]
            if flat:
                self.extractor.chunk_spans(flat, progress=False)
        return [None] * len(records)

    def _mentions(self, caption: str, removed: set[str]) -> bool:
        return bool(self.vocabulary.classes_in(caption) & removed)

    def candidates(
        self, captions: Sequence[str], phrases: Sequence[Sequence[Phrase]] | None, removed: Sequence[str], rng
    ) -> list[int]:
        """Caption indices in a seeded order, keeping those that mention a removed class (the order of
        :func:`hf_spurious.text.choose_caption`; Flickr30k: an annotated phrase of a removed type)."""
        removed_set = set(removed)
        order = [int(i) for i in rng.permutation(len(captions))]
        if phrases is not None:
            return [i for i in order if any(p.classes & removed_set for p in phrases[i])]
        return [i for i in order if self._mentions(captions[i], removed_set)]

    def edit(self, caption: str, phrases: Sequence[Phrase] | None, removed, kept, rng) -> str:
        from hf_spurious import text

        method = self.settings.text_method
        if method == "np_removal":
            if phrases is not None:
                return text.remove_phrases(caption, list(phrases), frozenset(removed))
            return text.np_removal(caption, frozenset(removed), self.vocabulary, self.extractor)
        if method == "prompt":
            return text.prompt_caption(list(kept), rng)
        return caption  # captioner: replaced after inpainting

    def caption_images(self, images: Sequence[np.ndarray]) -> list[str]:
        if self._captioner is None:
            from hf_spurious.text import Captioner

            self._captioner = Captioner(self.settings.captioner)
        return [str(c) for c in self._captioner.caption(list(images))]  # arrays: hf_spurious.images.load_rgb

    def check(self, edited: str, removed, kept) -> str | None:
        """None if the edited caption is acceptable, else the skip reason (an empty edit is never kept:
        training cannot tokenize it)."""
        if not edited or not edited.strip():
            return EDIT_EMPTY
        mentioned = self.vocabulary.classes_in(edited)
        if mentioned & set(removed):
            return EDIT_STILL_MENTIONS_REMOVED
        if self.settings.require_present and not mentioned & set(kept):
            return EDIT_NAMES_NO_PRESENT
        return None


# ------------------------------------------------------------------------------------- image side


# ------------------------------------------------------------------------------------ one shard


@dataclass
class _Job:
    record: SceneRecord
    plan: planner.RemovalPlan
    captions: list[tuple[int, str]]  # (source caption index, edited caption)
    seed: int


def choose_target(record: SceneRecord, settings: SynthesisSettings, rng) -> tuple[str | None, str | None]:
    """(forced target class or None, skip reason or None) under the target policy."""
    if settings.target_policy == "random":
        return None, None
    present = record.classes
    pairs = [(a, p) for a, p in (settings.target_pairs or []) if a in present and p in present]
    if not pairs:
        return None, NO_TARGET_PAIR
    anchor, partner = pairs[int(rng.integers(len(pairs)))] if len(pairs) > 1 else pairs[0]
    return (partner if settings.target_policy == "partner" else anchor), None


def plan_record(record: SceneRecord, settings: SynthesisSettings, rng) -> planner.RemovalExplanation:
    target, reason = choose_target(record, settings, rng)
    if len(record.classes) < 2:
        reason = planner.FEWER_THAN_TWO_CLASSES
    if reason is not None:
        return planner.RemovalExplanation(None, reason, {})
    return planner.explain_removal(
        [o.bbox for o in record.objects],
        [o.category for o in record.objects],
        (record.width, record.height),
        target_class=target,
        alpha1=settings.alpha1,
        alpha2=settings.alpha2,
        alpha3=settings.alpha3,
        rng=rng,
        dilation=settings.dilation,
        segmentations=[o.segmentation for o in record.objects],
        use_segmentation=settings.use_segmentation,
    )


def _plan_shard(records, settings, text_side, stats) -> list[_Job]:
    jobs, planned = [], []
    for rec in records:
        rng = image_rng(settings.seed, rec.image_id)
        ex = plan_record(rec, settings, rng)
        if ex.plan is None:
            stats.skip(ex.reason, rec.image_id)
            continue
        planned.append((rec, ex.plan, rng))
    all_phrases = (
        text_side.prepare([p[0] for p in planned], [p[1].removed_classes for p in planned]) if planned else []
    )
    for (rec, plan, rng), phrases in zip(planned, all_phrases):
        cands = text_side.candidates(rec.captions, phrases, plan.removed_classes, rng)
        if not cands:
            stats.skip(NO_CAPTION_MENTIONS_REMOVED, rec.image_id)
            continue
        chosen, last_reason = [], None
        for i in cands:
            edited = text_side.edit(
                rec.captions[i],
                None if phrases is None else phrases[i],
                plan.removed_classes,
                plan.kept_classes,
                rng,
            )
            reason = (
                text_side.check(edited, plan.removed_classes, plan.kept_classes)
                if settings.text_method != "captioner"
                else None
            )
            if reason is None:
                chosen.append((i, edited))
                if len(chosen) == settings.captions_per_image:
                    break
            else:
                last_reason = reason
        if not chosen:
            stats.skip(last_reason or NO_CAPTION_MENTIONS_REMOVED, rec.image_id)
            continue
        jobs.append(_Job(rec, plan, chosen, image_seed(settings.seed, rec.image_id, "inpaint")))
    return jobs


@dataclass
class ShardStats:
    shard: int
    images: int = 0
    rows: int = 0
    eligible: int = 0
    skipped: Counter = field(default_factory=Counter)
    skipped_examples: dict[str, list[str]] = field(default_factory=dict)
    removed_class_counts: Counter = field(default_factory=Counter)
    text_backend: str = ""

    def skip(self, reason: str, image_id: str) -> None:
        self.skipped[reason] += 1
        examples = self.skipped_examples.setdefault(reason, [])
        if len(examples) < 5:
            examples.append(image_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "shard": self.shard,
            "images": self.images,
            "rows": self.rows,
            "eligible": self.eligible,
            "skipped": dict(sorted(self.skipped.items())),
            "skipped_examples": dict(sorted(self.skipped_examples.items())),
            "removed_class_counts": dict(sorted(self.removed_class_counts.items())),
            "text_backend": self.text_backend,
        }


def _run_shard(
    shard: int,
    records: Sequence[SceneRecord],
    settings: SynthesisSettings,
    text_side: TextSide,
    inpainter,
    pool: ThreadPoolExecutor,
    progress: Callable[[int], None],
) -> tuple[list[dict[str, Any]], ShardStats]:
    stats = ShardStats(shard=shard, images=len(records))
    jobs = _plan_shard(records, settings, text_side, stats)
    if settings.text_method == "np_removal" and jobs:
        stats.text_backend = text_side.backend
    progress(len(records) - len(jobs))
    rows: list[dict[str, Any]] = []
    # CPU inpainters run one whole image per pool task (decode -> fill -> PNG encode: cv2 and zlib release
    # the GIL, so the threads use every core without waiting for each other between stages); batched
    # pipelines (diffusers) get the batch at once. The order of rows never depends on thread timing.
    parallel = getattr(inpainter, "thread_safe", True) and not hasattr(inpainter, "pipe")
    encode_early = parallel and settings.text_method != "captioner"
    for start in range(0, len(jobs), settings.batch_size):
        batch = jobs[start : start + settings.batch_size]
        if parallel:
            results = list(pool.map(lambda j: _fill_one(j, settings, inpainter, encode_early), batch))
        else:
            results = _fill_batch(batch, settings, inpainter, pool)
        kept: list[list[Any]] = []  # [job, filled image, (image bytes, mask bytes) or None]
        for j, (filled, reason, encoded) in zip(batch, results):
            if reason is not None:
                stats.skip(reason, j.record.image_id)
            else:
                kept.append([j, filled, encoded])
        if settings.text_method == "captioner" and kept:
            generated = text_side.caption_images([f for _, f, _ in kept])
            for item, cap in zip(kept, generated):
                item[0].captions = [(item[0].captions[0][0], cap)]  # one generated caption per image
                if not cap.strip():
                    stats.skip(EDIT_EMPTY, item[0].record.image_id)
            kept = [item for item, cap in zip(kept, generated) if cap.strip()]
        todo = [item for item in kept if item[2] is None]
        for item, enc in zip(todo, pool.map(lambda it: _encode((it[1], it[0].plan.mask), settings), todo)):
            item[2] = enc
        for j, _, (img_bytes, mask_bytes) in kept:
            stats.eligible += 1
            stats.removed_class_counts.update(j.plan.removed_classes)
            rows.extend(_rows(j, img_bytes, mask_bytes, settings, inpainter))
        progress(len(batch))
    stats.rows = len(rows)
    return rows, stats


_Filled = tuple[np.ndarray | None, str | None, tuple[bytes, bytes | None] | None]  # image, skip reason, PNGs


def _context(job: _Job) -> dict[str, Any]:
    rec = job.record
    return {"split": rec.split, "image_id": rec.image_id, "removed_classes": job.plan.removed_classes}


def _fill_one(job: _Job, settings: SynthesisSettings, inpainter, encode: bool) -> _Filled:
    """Decode, inpaint and (if ``encode``) PNG-encode one image: one task of the thread pool."""
    img, err = _load(job, settings)
    if img is None:
        return None, err, None
    filled = inpainter.inpaint([img], [job.plan.mask], seeds=[job.seed], contexts=[_context(job)])[0]
    return filled, None, (_encode((filled, job.plan.mask), settings) if encode else None)


def _fill_batch(batch: Sequence[_Job], settings: SynthesisSettings, inpainter, pool) -> list[_Filled]:
    """Decode in the pool, then one batched ``inpaint`` call (pipelines); flagged images become skips."""
    loaded = list(pool.map(lambda j: _load(j, settings), batch))
    out: list[_Filled] = [(None, err, None) for _, err in loaded]
    idx = [k for k, (img, _) in enumerate(loaded) if img is not None]
    if not idx:
        return out
    filled = inpainter.inpaint(
        [loaded[k][0] for k in idx],
        [batch[k].plan.mask for k in idx],
        seeds=[batch[k].seed for k in idx],
        contexts=[_context(batch[k]) for k in idx],
    )
    flagged = list(getattr(inpainter, "last_flagged", None) or []) or [False] * len(idx)
    for k, image, flag in zip(idx, filled, flagged):
        out[k] = (None, INPAINTER_FLAGGED, None) if flag else (image, None, None)
    return out


def _load(job: _Job, settings: SynthesisSettings) -> tuple[np.ndarray | None, str | None]:
    rec = job.record
    try:
        img = read_rgb_array(rec.image_path, where=f"image {rec.image_id!r}")
    except ImageReadError as err:
        if settings.on_error == "raise":
            raise SynthesisError(f"{err} (or pass on_error='skip')") from err
        logger.warning("skipping image %s: %s", rec.image_id, err)
        return None, UNREADABLE_IMAGE
    if img.shape[:2] != (rec.height, rec.width):
        msg = (
            f"image {rec.image_id!r} ({rec.image_path}) is {img.shape[1]}x{img.shape[0]} but the annotation "
            f"says {rec.width}x{rec.height}; fix the annotation or the file"
        )
        if settings.on_error == "raise":
            raise SynthesisError(msg)
        logger.warning("skipping: %s", msg)
        return None, IMAGE_SIZE_MISMATCH
    return img, None


def _encode(pair: tuple[np.ndarray, np.ndarray], settings: SynthesisSettings) -> tuple[bytes, bytes | None]:
    image, mask = pair
    return encode_png(image), (encode_png(mask.astype(np.uint8) * 255) if settings.store_mask else None)


def _rows(job: _Job, img_bytes: bytes, mask_bytes: bytes | None, settings, inpainter) -> list[dict[str, Any]]:
    rec, plan = job.record, job.plan
    base = {
        "image": {"bytes": img_bytes, "path": f"{rec.image_id}.png"},
        "source_image_id": rec.image_id,
        "source_split": rec.split,
        "target_class": plan.target_class,
        "removed_classes": list(plan.removed_classes),
        "present_classes": list(plan.kept_classes),
        "removed_boxes": [list(b) for b in plan.removed_boxes],
        "mask": {"bytes": mask_bytes, "path": f"{rec.image_id}_mask.png"} if mask_bytes is not None else None,
        "width": rec.width,
        "height": rec.height,
        "image_method": getattr(inpainter, "spec", settings.inpainter),
        "text_method": settings.text_method,
    }
    return [
        {**base, "source_caption": rec.captions[i], "source_caption_index": i, "caption": cap}
        for i, cap in job.captions
    ]


# ------------------------------------------------------------------------------------- files


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    write(tmp)
    os.replace(tmp, path)


_BINARY_COLUMNS = ("image", "mask")  # PNG bytes: incompressible and unique per row


def _write_parquet(table, path: Path) -> None:
    """zstd parquet; no dictionary encoding for the PNG columns (it never pays off on unique image bytes
    and cost ~5 ms per 640x480 image, 10 % of the opencv pipeline). Deterministic."""
    import pyarrow.parquet as pq

    dictionary = [
        c for f in table.schema if f.name not in _BINARY_COLUMNS for c in _leaf_paths(f.name, f.type)
    ]
    pq.write_table(table, path, compression="zstd", use_dictionary=dictionary)


def _leaf_paths(name: str, typ) -> list[str]:
    """Parquet column paths of an arrow field ("removed_classes.list.element", "image.bytes")."""
    import pyarrow as pa

    if pa.types.is_struct(typ):
        return [
            p
            for i in range(typ.num_fields)
            for p in _leaf_paths(f"{name}.{typ.field(i).name}", typ.field(i).type)
        ]
    if pa.types.is_list(typ) or pa.types.is_large_list(typ) or pa.types.is_fixed_size_list(typ):
        return _leaf_paths(f"{name}.list.element", typ.value_type)
    return [name]


def _write_shard(work: Path, shard: int, rows: list[dict[str, Any]], stats: ShardStats) -> None:
    import pyarrow as pa

    features = decorrelated_features()
    table = (
        pa.Table.from_pylist(rows, schema=features.arrow_schema)
        if rows
        else features.arrow_schema.empty_table()
    )
    base = work / "shards" / f"{shard:05d}"
    _atomic_write(base.with_suffix(".parquet"), lambda p: _write_parquet(table, p))
    _atomic_write(
        base.with_suffix(".json"),
        lambda p: p.write_text(json.dumps(stats.to_dict(), indent=1, sort_keys=True)),
    )


def shard_done(work: Path, shard: int) -> bool:
    base = Path(work) / "shards" / f"{shard:05d}"
    return base.with_suffix(".json").exists() and base.with_suffix(".parquet").exists()


@dataclass
class GenerationResult:
    work_dir: Path
    num_shards: int
    done_shards: list[int]
    ran_shards: list[int]
    seconds: float

    @property
    def complete(self) -> bool:
        return len(self.done_shards) == self.num_shards

    @property
    def shard_files(self) -> list[Path]:
        return [self.work_dir / "shards" / f"{k:05d}.parquet" for k in range(self.num_shards)]

    def stats(self) -> dict[str, Any]:
        return collect_stats(self.work_dir)


def _manifest(
    settings: SynthesisSettings, records: Sequence[SceneRecord], extra: dict[str, Any]
) -> dict[str, Any]:
    ids = hashlib.sha256("\n".join(r.image_id for r in records).encode()).hexdigest()[:16]
    return {
        "format": "hf_spurious.counterfactuals/1",
        "fingerprint": f"{settings.fingerprint()}-{ids}",
        "settings": settings.to_dict(),
        "num_records": len(records),
        "num_shards": (len(records) + settings.shard_size - 1) // settings.shard_size,
        **extra,
    }


def process_state() -> Any:
    """This process's ``accelerate.PartialState``. Without an accelerator (or under ``accelerate launch
    --cpu``) it asks for the CPU backend: plain ``PartialState()`` would report one process in each
    ``torchrun`` / ``accelerate launch`` process there, and every process would write every shard."""
    import torch
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    cpu = parse_flag_from_env("ACCELERATE_USE_CPU") or not torch.accelerator.is_available()
    return PartialState(cpu=cpu)


def generate_counterfactuals(
    records: Iterable[SceneRecord],
    settings: SynthesisSettings,
    work_dir: str | Path,
    *,
    process_index: int | None = None,
    num_processes: int | None = None,
    max_shards: int | None = None,
    overwrite: bool = False,
    show_progress: bool = True,
    inpainter=None,
    text_side: TextSide | None = None,
    manifest_extra: dict[str, Any] | None = None,
    phrase_cache_dir: str | Path | None = None,
) -> GenerationResult:
    """Generate (or resume) the shards of this process into ``work_dir``.

    ``process_index``/``num_processes`` default to :func:`process_state`; each process handles
    the shards ``k % num_processes == process_index`` that are not done yet. ``max_shards`` stops after
    that many newly written shards (an interruption, for tests). Call :func:`merge_shards` (main process,
    after every process finished) to build the final files. ``phrase_cache_dir`` (default
    ``<work_dir>/phrase_cache``) holds the noun-phrase parses; runs over the same captions can share one.
    """
    records = sort_records(records)
    if settings.max_images is not None:
        records = records[: settings.max_images]
    if process_index is None or num_processes is None:
        state = process_state()
        process_index, num_processes = state.process_index, state.num_processes
    if not 0 <= process_index < num_processes:
        raise ValueError(f"process_index {process_index} outside [0, {num_processes})")
    work = Path(work_dir)
    (work / "shards").mkdir(parents=True, exist_ok=True)
    manifest = _manifest(settings, records, manifest_extra or {})
    mpath = work / "manifest.json"
    if mpath.exists():
        old = json.loads(mpath.read_text())
        if old.get("fingerprint") != manifest["fingerprint"]:
            if not overwrite:
                raise SynthesisError(
                    f"{work} holds a run with other settings or source images (fingerprint "
                    f"{old.get('fingerprint')} != {manifest['fingerprint']}); use a new directory or overwrite=True"
                )
            for f in (work / "shards").iterdir():
                f.unlink()
    if not mpath.exists() or json.loads(mpath.read_text()) != manifest:
        _atomic_write(mpath, lambda p: p.write_text(json.dumps(manifest, indent=1, sort_keys=True)))

    n_shards = manifest["num_shards"]
    mine = [k for k in range(n_shards) if k % num_processes == process_index and not shard_done(work, k)]
    if max_shards is not None:
        mine = mine[:max_shards]
    t0 = time.perf_counter()
    if mine:
        if inpainter is None:
            from hf_spurious.synthesis.inpaint import get_inpainter

            options = dict(settings.inpainter_options)
            if settings.inpainter == "oracle" and "world_dir" not in options:
                source_dir = (manifest_extra or {}).get("source_dir")
                options["world_dir"] = source_dir or str(Path(records[0].image_path).parents[2])
            inpainter = get_inpainter(settings.inpainter, **options)
        cache = Path(phrase_cache_dir) if phrase_cache_dir is not None else work / "phrase_cache"
        text_side = text_side or TextSide(settings, phrase_cache_dir=cache)
        _run_shards(work, mine, records, settings, text_side, inpainter, show_progress and process_index == 0)
    done = [k for k in range(n_shards) if shard_done(work, k)]
    return GenerationResult(work, n_shards, done, mine, time.perf_counter() - t0)


def _run_shards(work, shards, records, settings, text_side, inpainter, show_progress) -> None:
    from tqdm.auto import tqdm

    size = settings.shard_size
    total = sum(len(records[k * size : (k + 1) * size]) for k in shards)
    bar = tqdm(
        total=total,
        unit="img",
        desc=f"counterfactuals ({settings.source} {settings.split})",
        disable=not show_progress,
    )
    # Shard k is written (parquet encoding, zstd: GIL released) by its own thread while shard k + 1 is
    # computed, so both cores stay busy; at most one write is pending, and its errors surface here.
    pending = None
    with (
        ThreadPoolExecutor(max_workers=max(1, settings.num_workers)) as pool,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="shard-writer") as writer,
    ):
        for k in shards:
            rows, stats = _run_shard(
                k, records[k * size : (k + 1) * size], settings, text_side, inpainter, pool, bar.update
            )
            if pending is not None:
                pending.result()
            pending = writer.submit(_write_shard, work, k, rows, stats)
            bar.set_postfix(shard=k, rows=stats.rows)
        if pending is not None:
            pending.result()
    bar.close()


def collect_stats(work_dir: str | Path) -> dict[str, Any]:
    """Totals over the finished shards: images, eligible, rows, skips by reason, removed classes."""
    work = Path(work_dir)
    manifest = json.loads((work / "manifest.json").read_text())
    totals: dict[str, Any] = {
        "images": 0,
        "eligible": 0,
        "rows": 0,
        "skipped": Counter(),
        "removed_class_counts": Counter(),
        "skipped_examples": {},
        "text_backends": set(),
    }
    done = 0
    for k in range(manifest["num_shards"]):
        path = work / "shards" / f"{k:05d}.json"
        if not path.exists():
            continue
        done += 1
        s = json.loads(path.read_text())
        for key in ("images", "eligible", "rows"):
            totals[key] += s[key]
        totals["skipped"].update(s["skipped"])
        totals["removed_class_counts"].update(s["removed_class_counts"])
        if s.get("text_backend"):
            totals["text_backends"].add(s["text_backend"])
        for reason, ids in s["skipped_examples"].items():
            ex = totals["skipped_examples"].setdefault(reason, [])
            ex.extend(ids[: max(0, 5 - len(ex))])
    totals["skipped"] = dict(sorted(totals["skipped"].items()))
    totals["removed_class_counts"] = dict(sorted(totals["removed_class_counts"].items()))
    totals["text_backends"] = sorted(totals["text_backends"])
    totals["shards_done"], totals["num_shards"] = done, manifest["num_shards"]
    return totals


def merge_shards(
    work_dir: str | Path, out_dir: str | Path, *, split: str | None = None, max_file_bytes: int = 500 * 2**20
) -> list[Path]:
    """Concatenate the finished shards, in shard order, into ``<split>-XXXXX-of-YYYYY.parquet`` files.

    Consecutive shards are grouped until a file would exceed ``max_file_bytes`` (deterministic: it only
    depends on the shard bytes). Raises naming the missing shards when the run is not complete.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    work, out = Path(work_dir), Path(out_dir)
    manifest = json.loads((work / "manifest.json").read_text())
    n = manifest["num_shards"]
    missing = [k for k in range(n) if not shard_done(work, k)]
    if missing:
        raise SynthesisError(
            f"{len(missing)} of {n} shards are not done yet (e.g. {missing[:5]}); rerun the same command to "
            "resume before merging"
        )
    split = split or manifest["settings"]["split"]
    groups: list[list[Path]] = []
    size = 0
    for k in range(n):
        path = work / "shards" / f"{k:05d}.parquet"
        nbytes = path.stat().st_size
        if not groups or (size + nbytes > max_file_bytes and groups[-1]):
            groups.append([])
            size = 0
        groups[-1].append(path)
        size += nbytes
    for stale in (work / "shards").glob(".*.tmp-*"):  # left by killed runs; every process has finished now
        stale.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob(f"{split}-*-of-*.parquet"):
        old.unlink()
    schema = decorrelated_features().arrow_schema
    written = []
    for g, paths in enumerate(groups or [[]]):
        tables = [pq.read_table(p) for p in paths]
        table = pa.concat_tables(tables) if tables else schema.empty_table()
        target = out / f"{split}-{g:05d}-of-{max(len(groups), 1):05d}.parquet"
        _atomic_write(target, lambda p, t=table: _write_parquet(t, p))
        written.append(target)
    return written
