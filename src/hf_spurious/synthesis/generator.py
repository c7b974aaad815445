"""Batched, sharded, resumable, deterministic counterfactual generation (Kim et al. §3.1 + §3.3).

Process ``p`` of ``n`` takes the shards ``k % n == p`` (:mod:`hf_spurious.synthesis.shards` holds the files).
Every random choice of an image comes from a generator seeded by ``(seed, image id)``, and inpainter batches
never cross a shard, so the bytes of every shard (and of the merged files) do not depend on the number of
processes or on interruptions.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from hf_spurious.images import ImageReadError, encode_png, read_rgb_array
from hf_spurious.records import SceneRecord
from hf_spurious.synthesis import planner
from hf_spurious.synthesis.captions import TextSide
from hf_spurious.synthesis.inpaint import Inpainter, get_inpainter
from hf_spurious.synthesis.settings import (
    EDIT_EMPTY,
    IMAGE_SIZE_MISMATCH,
    INPAINTER_FLAGGED,
    NO_TARGET_PAIR,
    UNREADABLE_IMAGE,
    SynthesisError,
    SynthesisSettings,
)
from hf_spurious.synthesis.shards import (
    GenerationResult,
    ShardStats,
    build_manifest,
    shard_done,
    shard_records,
    sort_records,
    write_manifest,
    write_shard,
)

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------- seeds


def image_seed(seed: int, image_id: str, purpose: str = "") -> int:
    """A 63-bit seed from ``(seed, image id, purpose)``: independent of process order and batching."""
    digest = hashlib.sha256(f"{int(seed)}\x00{image_id}\x00{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def image_rng(seed: int, image_id: str) -> np.random.Generator:
    return np.random.default_rng(image_seed(seed, image_id))


# ------------------------------------------------------------------------------------ one shard


@dataclass
class ImageJob:
    """One image to fill: its record, removal plan, accepted captions and inpainting seed."""

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


def plan_shard(
    records: Sequence[SceneRecord], settings: SynthesisSettings, text_side: TextSide, stats: ShardStats
) -> list[ImageJob]:
    """The shard's images that have a removal plan and an accepted caption; the others are counted skips."""
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
        chosen, reason = text_side.choose(rec, plan, phrases, rng)
        if reason is not None:
            stats.skip(reason, rec.image_id)
            continue
        jobs.append(ImageJob(rec, plan, chosen, image_seed(settings.seed, rec.image_id, "inpaint")))
    return jobs


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
    jobs = plan_shard(records, settings, text_side, stats)
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
            rows.extend(job_rows(j, img_bytes, mask_bytes, settings, inpainter))
        progress(len(batch))
    stats.rows = len(rows)
    return rows, stats


_Filled = tuple[np.ndarray | None, str | None, tuple[bytes, bytes | None] | None]  # image, skip reason, PNGs


def _context(job: ImageJob) -> dict[str, Any]:
    rec = job.record
    return {"split": rec.split, "image_id": rec.image_id, "removed_classes": job.plan.removed_classes}


def _fill_one(job: ImageJob, settings: SynthesisSettings, inpainter, encode: bool) -> _Filled:
    """Decode, inpaint and (if ``encode``) PNG-encode one image: one task of the thread pool."""
    img, err = _load(job, settings)
    if img is None:
        return None, err, None
    filled = inpainter.inpaint([img], [job.plan.mask], seeds=[job.seed], contexts=[_context(job)])[0]
    return filled, None, (_encode((filled, job.plan.mask), settings) if encode else None)


def _fill_batch(batch: Sequence[ImageJob], settings: SynthesisSettings, inpainter, pool) -> list[_Filled]:
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


def _load(job: ImageJob, settings: SynthesisSettings) -> tuple[np.ndarray | None, str | None]:
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


def job_rows(
    job: ImageJob, img_bytes: bytes, mask_bytes: bytes | None, settings, inpainter
) -> list[dict[str, Any]]:
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


# ------------------------------------------------------------------------------------- the run


def process_state() -> Any:
    """This process's ``accelerate.PartialState``. Without an accelerator (or under ``accelerate launch
    --cpu``) it asks for the CPU backend: plain ``PartialState()`` would report one process in each
    ``torchrun`` / ``accelerate launch`` process there, and every process would write every shard."""
    import torch  # lazy: only the process count needs it
    from accelerate import PartialState  # lazy: heavy optional dependency
    from accelerate.utils import parse_flag_from_env  # lazy: heavy optional dependency

    cpu = parse_flag_from_env("ACCELERATE_USE_CPU") or not torch.accelerator.is_available()
    return PartialState(cpu=cpu)


def default_inpainter(
    settings: SynthesisSettings, records: Sequence[SceneRecord], source_dir: str | None = None
) -> Inpainter:
    """The inpainter the settings name; the oracle reads the world from ``source_dir`` (default: the world
    directory the records' images live in)."""
    options = dict(settings.inpainter_options)
    if settings.inpainter == "oracle" and "world_dir" not in options:
        options["world_dir"] = source_dir or str(Path(records[0].image_path).parents[2])
    return get_inpainter(settings.inpainter, **options)


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
    inpainter: Inpainter | None = None,
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
    manifest = build_manifest(settings, records, manifest_extra or {})
    write_manifest(work, manifest, overwrite=overwrite)
    n_shards = manifest["num_shards"]
    mine = [k for k in range(n_shards) if k % num_processes == process_index and not shard_done(work, k)]
    if max_shards is not None:
        mine = mine[:max_shards]
    t0 = time.perf_counter()
    if mine:
        if inpainter is None:
            inpainter = default_inpainter(settings, records, manifest.get("source_dir"))
        cache = Path(phrase_cache_dir) if phrase_cache_dir is not None else work / "phrase_cache"
        text_side = text_side or TextSide(settings, phrase_cache_dir=cache)
        _run_shards(work, mine, records, settings, text_side, inpainter, show_progress and process_index == 0)
    done = [k for k in range(n_shards) if shard_done(work, k)]
    return GenerationResult(work, n_shards, done, mine, time.perf_counter() - t0)


def _run_shards(work, shards, records, settings, text_side, inpainter, show_progress) -> None:
    size = settings.shard_size
    total = sum(len(shard_records(records, k, size)) for k in shards)
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
                k, shard_records(records, k, size), settings, text_side, inpainter, pool, bar.update
            )
            if pending is not None:
                pending.result()
            pending = writer.submit(write_shard, work, k, rows, stats)
            bar.set_postfix(shard=k, rows=stats.rows)
        if pending is not None:
            pending.result()
    bar.close()
