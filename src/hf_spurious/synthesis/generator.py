"""Batched, sharded, resumable, deterministic counterfactual generation (Kim et al. §3.1 + §3.3).

Process ``p`` of ``n`` takes the shards ``k % n == p`` (:mod:`hf_spurious.synthesis.shards` holds the files).
Every random choice of an image comes from a generator seeded by ``(seed, image id)``, and inpainter batches
never cross a shard, so the bytes of every shard (and of the merged files) do not depend on the number of
processes or on interruptions.
"""

from __future__ import annotations

import difflib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from hf_spurious.images import ImageReadError, ImageTooLargeError, encode_png, read_rgb_array
from hf_spurious.records import SceneRecord
from hf_spurious.synthesis.captions import TextSide
from hf_spurious.synthesis.inpaint import Inpainter, get_inpainter
from hf_spurious.synthesis.jobs import ImageJob, plan_shard
from hf_spurious.synthesis.settings import (
    EDIT_EMPTY,
    IMAGE_SIZE_MISMATCH,
    IMAGE_TOO_LARGE,
    INPAINTER_FLAGGED,
    UNREADABLE_IMAGE,
    SynthesisError,
    SynthesisSettings,
)
from hf_spurious.synthesis.shards import (
    GenerationResult,
    ShardStats,
    build_manifest,
    inputs_digest,
    shard_done,
    shard_records,
    shard_status,
    sort_records,
    write_manifest,
    write_shard,
)

logger = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------ one shard


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
            raise SynthesisError(f"{err} (or pass --on-error skip to count it as a skip)") from err
        logger.warning("skipping image %s: %s", rec.image_id, err)
        return None, IMAGE_TOO_LARGE if isinstance(err, ImageTooLargeError) else UNREADABLE_IMAGE
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
    check_run_inputs(records, settings)  # against the whole split, not the --max-images prefix
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
    digests = [inputs_digest(shard_records(records, k, settings.shard_size)) for k in range(n_shards)]
    mine = _shards_to_run(work, [k for k in range(n_shards) if k % num_processes == process_index], digests)
    if max_shards is not None:
        mine = mine[:max_shards]
    t0 = time.perf_counter()
    if mine:
        if inpainter is None:
            inpainter = default_inpainter(settings, records, manifest.get("source_dir"))
        cache = Path(phrase_cache_dir) if phrase_cache_dir is not None else work / "phrase_cache"
        text_side = text_side or TextSide(settings, phrase_cache_dir=cache)
        _run_shards(
            work, mine, records, settings, text_side, inpainter, show_progress and process_index == 0, digests
        )
    done = [k for k in range(n_shards) if shard_done(work, k)]
    return GenerationResult(work, n_shards, done, mine, time.perf_counter() - t0)


def _shards_to_run(work: Path, shards: list[int], digests: list[str]) -> list[int]:
    """The shards that are not finished with today's inputs; says in the log which are reused and why the
    others are (re)generated."""
    todo, reused = [], 0
    for k in shards:
        ok, why = shard_status(work, k, digests[k])
        if ok:
            reused += 1
            logger.debug("shard %d reused: %s", k, why)
            continue
        if shard_done(work, k):  # finished before, but stale or damaged
            logger.warning("shard %d of %s is regenerated: %s", k, work, why)
        todo.append(k)
    if reused:
        logger.info(
            "%s: reusing %d finished shards (their images, boxes and captions are unchanged), generating %d",
            work, reused, len(todo),
        )  # fmt: skip
    return todo


def check_run_inputs(records: Sequence[SceneRecord], settings: SynthesisSettings) -> None:
    """Settings that only make sense against the records: the mask dilation is bounded by the image size,
    and every class of a target pair exists in the source split."""
    if not records:
        return
    side = max(max(r.width, r.height) for r in records)
    if settings.dilation >= side:
        raise SynthesisError(
            f"dilation {settings.dilation} px is not smaller than the largest image side ({side} px): every mask "
            "would cover whole images; use a few pixels (e.g. --dilation 8)"
        )
    known = sorted({c for r in records for c in r.classes})
    for pair in settings.target_pairs or []:
        unknown = [c for c in pair if c not in known]
        if unknown:
            close = difflib.get_close_matches(unknown[0], known, n=3)
            hint = f"did you mean {close}?" if close else f"classes of this split: {known[:30]}"
            raise SynthesisError(
                f"target pair {pair[0]}:{pair[1]} names {unknown}, which no image of the {settings.split} split "
                f"holds; {hint}"
            )


def _run_shards(work, shards, records, settings, text_side, inpainter, show_progress, digests) -> None:
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
            stats.inputs = digests[k]
            if pending is not None:
                pending.result()
            pending = writer.submit(write_shard, work, k, rows, stats)
            bar.set_postfix(shard=k, rows=stats.rows)
        if pending is not None:
            pending.result()
    bar.close()
