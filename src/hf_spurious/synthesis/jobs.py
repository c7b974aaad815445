"""The jobs of one shard: seeds, removal plans and captions of each image (Kim et al. §3.1, §3.3).

Every random choice of an image comes from a generator seeded by ``(seed, image id)``, so a job never
depends on the process, the batch or the shard it runs in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from hf_spurious.records import SceneRecord
from hf_spurious.synthesis import planner
from hf_spurious.synthesis.captions import TextSide
from hf_spurious.synthesis.settings import NO_TARGET_PAIR, SynthesisSettings
from hf_spurious.synthesis.shards import ShardStats

# ------------------------------------------------------------------------------------------- seeds


def image_seed(seed: int, image_id: str, purpose: str = "") -> int:
    """A 63-bit seed from ``(seed, image id, purpose)``: independent of process order and batching."""
    digest = hashlib.sha256(f"{int(seed)}\x00{image_id}\x00{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def image_rng(seed: int, image_id: str) -> np.random.Generator:
    return np.random.default_rng(image_seed(seed, image_id))


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


def plan_record(
    record: SceneRecord, settings: SynthesisSettings, rng
) -> tuple[planner.RemovalExplanation, Iterator[planner.RemovalPlan]]:
    """The image's first removal plan (or why there is none) and its later valid plans, lazily."""
    target, reason = choose_target(record, settings, rng)
    if len(record.classes) < 2:
        reason = planner.FEWER_THAN_TWO_CLASSES
    if reason is not None:
        return planner.RemovalExplanation(None, reason, {}), iter(())
    return planner.explain_removals(
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
    """The shard's images that have a removal plan and a caption; the others are counted skips.

    D' (``settings.require_removed``): when no caption of the first valid class can be edited, the image's
    next valid classes are tried in the seeded order before it is dropped. Queries (test split): the image
    rules alone decide (spec §1.6); without an edited caption the row keeps an unedited one naming no
    removed class (counted in ``notes``).
    """
    jobs, planned = [], []
    for rec in records:
        rng = image_rng(settings.seed, rec.image_id)
        ex, rest = plan_record(rec, settings, rng)
        if ex.plan is None:
            stats.skip(ex.reason, rec.image_id)
            continue
        planned.append((rec, ex.plan, rest, rng))
    all_phrases = (
        text_side.prepare([p[0] for p in planned], [p[1].removed_classes for p in planned]) if planned else []
    )
    for (rec, plan, rest, rng), phrases in zip(planned, all_phrases):
        chosen, reason = text_side.choose(rec, plan, phrases, rng)
        if reason is not None and settings.require_removed:
            plan, chosen = _later_class(rec, rest, text_side, rng, stats)
        elif reason is not None:
            chosen = [query_caption(rec, plan, text_side, rng)]
            stats.notes["query_without_caption_edit"] += 1
        if not chosen:
            stats.skip(reason, rec.image_id)
            continue
        jobs.append(ImageJob(rec, plan, chosen, image_seed(settings.seed, rec.image_id, "inpaint")))
    return jobs


def _later_class(rec: SceneRecord, rest, text_side: TextSide, rng, stats: ShardStats):
    """The next valid plan of ``rec`` whose captions can be edited, with its captions (or ``(None, [])``)."""
    for plan in rest:
        phrases = text_side.prepare([rec], [plan.removed_classes])[0]
        chosen, reason = text_side.choose(rec, plan, phrases, rng)
        if reason is None:
            stats.notes["later_valid_class"] += 1
            return plan, chosen
    return None, []


def query_caption(rec: SceneRecord, plan: planner.RemovalPlan, text_side: TextSide, rng) -> tuple[int, str]:
    """A query's caption when none could be edited: prompts and captioners make theirs as usual; NP removal
    keeps, unedited, the first caption (seeded order) that names no removed class, else an empty one."""
    order = [int(i) for i in rng.permutation(len(rec.captions))]
    if text_side.settings.text_method != "np_removal":
        return order[0], text_side.edit(
            rec.captions[order[0]], None, plan.removed_classes, plan.kept_classes, rng
        )
    for i in order:
        if text_side.check(rec.captions[i], plan.removed_classes, plan.kept_classes) is None:
            return i, rec.captions[i]
    return order[0], ""
