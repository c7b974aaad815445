"""The retrieval world's data, made once for every retrieval job of the demo: the world, the counterfactual
query sets (builder, OpenCV inpainting and oracle renders), D′ and the caption gallery.

:func:`prepare_retrieval` runs in the demo's main process; its :class:`RetrievalData` is handed to the tiny
CLIP and tiny VSE++ jobs (pickled into their worker processes when the jobs run side by side).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hf_spurious.data import ShapesDecorrelated, build_gallery
from hf_spurious.evaluation.retrieval import Gallery, RecallSet, RetrievalQueries
from hf_spurious.metrics.odmap import count_relevant
from hf_spurious.records import SceneRecord
from hf_spurious.sources import read_coco
from hf_spurious.training.rows import counterfactual_rows
from hf_spurious.world import generate_world

from .config import DemoConfig, StepTimer
from .models import decode_images

if TYPE_CHECKING:
    import datasets

QUERY_POLICIES = ("partner", "random", "anchor")
IMAGE_METHODS = {"inpainted": "opencv", "oracle": "oracle"}
SPLITS = ("train", "val", "test")


@dataclass
class RetrievalData:
    """Everything the retrieval jobs read: records, decoded images of D and D′, queries, gallery."""

    records: dict[str, list[SceneRecord]]
    train_images: list[np.ndarray]
    d_prime: list[dict[str, Any]]  # D′ rows without their image (decoded into ``d_prime_images``)
    d_prime_images: list[np.ndarray]
    captions: list[str]  # the gallery: every caption of every split
    built: dict[tuple[str, str], datasets.Dataset]  # the paired query splits per (policy, method)
    evaluation: dict[str, Any]  # ``queries``, ``gallery`` and ``recall``: what evaluate_model reads
    world: dict[str, Any]  # the ``world`` part of results.json

    @property
    def all_captions(self) -> list[str]:
        """The gallery's captions and D′'s edited captions (the tokenizer vocabularies are built from them)."""
        return self.captions + [row["caption"] for row in self.d_prime]


def build_counterfactuals(
    world_dir: Path, split: str, policy: str, inpainter: str, seed: int, cache_dir: Path
) -> datasets.Dataset:
    """One decorrelated split from the ``ShapesDecorrelated`` builder (a ``datasets.Dataset``).

    Every build of the demo shares one noun-phrase parse cache, so each caption is parsed by spaCy once
    instead of once per query set (the six test builds read the same 2,500 captions).
    """
    name = "train" if split == "train" else "test"
    work = cache_dir / "counterfactuals" / f"{split}-{policy}-{inpainter}-seed{seed}"
    builder = ShapesDecorrelated(
        data_dir=str(world_dir),
        cache_dir=str(cache_dir / "builders"),
        config_name=name,
        target_policy=policy,
        inpainter=inpainter,
        text_method="np_removal",
        seed=seed,
        work_dir=str(work),
        phrase_cache_dir=str(cache_dir / "phrase_cache"),
    )
    builder.download_and_prepare()
    return builder.as_dataset(split=name)


def paired_query_sets(inpainted: datasets.Dataset, oracle: datasets.Dataset) -> tuple[list[int], list[int]]:
    """Row indices of the queries present in both versions (same source image, same removed classes)."""

    def key(row: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
        return str(row["source_image_id"]), tuple(sorted(row["removed_classes"]))

    cols = ["source_image_id", "removed_classes"]
    a = {key(r): i for i, r in enumerate(inpainted.select_columns(cols))}
    b = {key(r): i for i, r in enumerate(oracle.select_columns(cols))}
    common = [k for k in a if k in b]
    return [a[k] for k in common], [b[k] for k in common]


def query_sets(
    config: DemoConfig, world_dir: Path, cache: Path, test_records: Sequence[SceneRecord]
) -> tuple[dict[tuple[str, str], datasets.Dataset], dict[str, RetrievalQueries]]:
    """The paired counterfactual test splits per (policy, method) and the query sets, plus the originals."""
    built = {
        (policy, method): build_counterfactuals(world_dir, "test", policy, inpainter, config.seed, cache)
        for policy in QUERY_POLICIES
        for method, inpainter in IMAGE_METHODS.items()
    }
    queries: dict[str, RetrievalQueries] = {}
    for policy in QUERY_POLICIES:
        ia, ib = paired_query_sets(built[(policy, "inpainted")], built[(policy, "oracle")])
        built[(policy, "inpainted")] = built[(policy, "inpainted")].select(ia)
        built[(policy, "oracle")] = built[(policy, "oracle")].select(ib)
        for method in IMAGE_METHODS:
            queries[f"{policy}/{method}"] = RetrievalQueries.from_dataset(
                built[(policy, method)], name=f"{policy}/{method}", materialize=True
            )
    queries["original"] = RetrievalQueries.from_records(test_records, name="original")
    return built, queries


def d_prime_rows(config: DemoConfig, world_dir: Path, cache: Path) -> list[dict[str, Any]]:
    """D′: counterfactual training pairs (partner- and random-removed, OpenCV inpainting)."""
    return [
        row
        for policy in ("partner", "random")
        for row in counterfactual_rows(
            build_counterfactuals(world_dir, "train", policy, "opencv", config.seed, cache)
        )
    ]


def cooccurrence_checks(
    config: DemoConfig, pairs: dict[str, dict[str, Any]], calibration: list[dict[str, Any]]
) -> dict[str, float]:
    """P(partner | anchor) per pair of the generated world, each appended as a calibration check."""
    cooc = {name.replace("->", " → "): stats["p_partner_given_anchor"] for name, stats in pairs.items()}
    for name, value in cooc.items():
        calibration.append(
            {
                "check": f"P(partner | anchor) for {name}",
                "value": value * 100,
                "band": [
                    round((config.p_partner - 0.05) * 100, 1),
                    round((config.p_partner + 0.05) * 100, 1),
                ],
                "ok": None if config.quick else value is not None and abs(value - config.p_partner) <= 0.05,
            }
        )
    return cooc


def answerability_check(
    matrix: np.ndarray,
    class_names: Sequence[str],
    partner: RetrievalQueries,
    calibration: list[dict[str, Any]],
    timer: StepTimer,
) -> None:
    """Share of partner-removed queries with ≥ 10 relevant gallery captions; warn on any failed check."""
    relevant = count_relevant(
        matrix, partner.removed_classes, partner.present_classes, class_names=class_names
    )
    answerable = float((relevant >= 10).mean() * 100) if len(relevant) else 0.0
    calibration.append(
        {
            "check": "partner-removed queries with ≥ 10 relevant gallery captions (%)",
            "value": answerable,
            "band": [95, 100],
            "ok": answerable >= 95.0,
        }
    )
    for entry in calibration:
        if entry["ok"] is False and timer.echo:
            print(
                f"[demo] CALIBRATION WARNING: {entry['check']} = {entry['value']:.1f}, outside {entry['band']}; "
                "the retrieval world is not in the regime the demo is calibrated for (p_partner, pair_naming)."
            )


def prepare_retrieval(
    config: DemoConfig, out: Path, timer: StepTimer, calibration: list[dict[str, Any]]
) -> RetrievalData:
    """Generate the retrieval world, its counterfactual sets, D′ and the gallery (with the calibration checks)."""
    world_dir, cache = out / "worlds" / "retrieval", out / "cache"
    with timer.step("retrieval: generate the world"):
        summary = generate_world(config.retrieval_world_config(), world_dir)
        records = {s: read_coco(world_dir, s, vocabulary="shapes") for s in SPLITS}
    cooc = cooccurrence_checks(config, summary["pairs"], calibration)
    with timer.step("retrieval: counterfactual query sets and D′ (builder, opencv + oracle)"):
        built, queries = query_sets(config, world_dir, cache, records["test"])
        d_prime = d_prime_rows(config, world_dir, cache)
        d_prime_images = decode_images([row.pop("image") for row in d_prime])
        train_images = decode_images([r.image_path for r in records["train"]])
    with timer.step("retrieval: caption gallery (all splits) and its class matrix"):
        captions, _, matrix, class_names = build_gallery(world_dir, source="shapes", cache_dir=cache)
        gallery = Gallery(captions=captions, classes=matrix, class_names=class_names)
    answerability_check(matrix, class_names, queries["partner/inpainted"], calibration, timer)
    world = {
        **{s: len(records[s]) for s in SPLITS},
        "captions": len(captions),
        "cooccurrence": cooc,
        "pairs": summary["pairs"],
    }
    evaluation = {"queries": queries, "gallery": gallery, "recall": RecallSet.from_records(records["test"])}
    return RetrievalData(records, train_images, d_prime, d_prime_images, captions, built, evaluation, world)
