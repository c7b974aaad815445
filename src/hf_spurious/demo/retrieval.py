"""Retrieval half of the demo: biased tiny CLIP (and VSE++, :mod:`.vsepp`) -> ODmAP@k on counterfactual
queries -> A (D) vs B (D ∪ D′). Thin integration of the world, builder, trainer and retrieval runner."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from hf_spurious.data import ShapesDecorrelated, build_gallery
from hf_spurious.evaluation.retrieval import (
    Gallery,
    RecallSet,
    RetrievalQueries,
    evaluate_recall,
    evaluate_retrieval,
)
from hf_spurious.images import load_rgb
from hf_spurious.metrics.odmap import count_relevant
from hf_spurious.models import load_adapter
from hf_spurious.models.adapters import VisionLanguageAdapter
from hf_spurious.records import SceneRecord
from hf_spurious.sources import read_coco
from hf_spurious.training.rows import counterfactual_rows
from hf_spurious.vocab import load_vocabulary
from hf_spurious.world import generate_world

from .config import DemoConfig, StepTimer
from .models import (
    RandomCaptionImages,
    caption_words,
    clip_training_args,
    decode_images,
    new_clip,
    pixel_values_of,
    pretrain_clip,
    train_clip,
)
from .report import Visuals
from .vsepp import run_vsepp

if TYPE_CHECKING:
    import datasets

QUERY_POLICIES = ("partner", "random", "anchor")
IMAGE_METHODS = {"inpainted": "opencv", "oracle": "oracle"}
SPLITS = ("train", "val", "test")

Runs = dict[str, list[dict[str, Any]]]


# ------------------------------------------------------------------------------------------ data


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


# ------------------------------------------------------------------------------------------ calibration


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


# ------------------------------------------------------------------------------------------ models


def evaluate_model(
    adapter: VisionLanguageAdapter, data: dict[str, Any], cache_dir: Path, batch_size: int
) -> dict[str, Any]:
    """ODmAP@1/5/10 and mention@1 per query set, Recall@K both directions; also the per-query rankings."""
    sets: dict[str, Any] = {}
    rankings: dict[str, Any] = {}
    for name, queries in data["queries"].items():
        res = evaluate_retrieval(
            adapter,
            queries,
            data["gallery"],
            k=(1, 5, 10),
            cache_dir=str(cache_dir),
            batch_size=batch_size,
            top_captions=3,
        )
        sets[name] = {**res["odmap"], "mention@1": res["removed_mention_rate"]["removed_mention_rate@1"]}
        rankings[name] = res["per_query"]
    recall = evaluate_recall(
        adapter, data["recall"], k=(1, 5, 10), cache_dir=str(cache_dir), batch_size=batch_size
    )
    recall = {key.replace("_r@", "@"): value for key, value in recall.items()}
    return {"sets": sets, "recall": recall, "_rankings": rankings}


def pretrain_biased(
    config: DemoConfig,
    out: Path,
    words: Sequence[str],
    train_records: Sequence[SceneRecord],
    train_images: Sequence[np.ndarray],
    d_prime: list[dict[str, Any]],
    d_prime_images: Sequence[np.ndarray],
) -> tuple[Path, torch.Tensor]:
    """Pretrain the biased tiny CLIP on D; also preprocess D (returned) and D′ (stored in its rows)."""
    clip = new_clip(config, words)
    train_pixels = pixel_values_of(clip, train_images)  # the same processor is saved with the checkpoint
    for row, pixels in zip(d_prime, pixel_values_of(clip, d_prime_images)):
        row["pixel_values"] = pixels
    biased_dir = pretrain_clip(
        config,
        clip,
        RandomCaptionImages(train_records, config.seed, train_pixels),
        out / "models" / "retrieval_biased",
        steps=config.pretrain_steps,
        lr=config.pretrain_lr,
        max_grad_norm=config.max_grad_norm,
    )
    return biased_dir, train_pixels


def finetune_arms(
    config: DemoConfig,
    out: Path,
    timer: StepTimer,
    biased_dir: Path,
    d: tuple[Sequence[SceneRecord], torch.Tensor],
    d_prime: list[dict[str, Any]],
    data: dict[str, Any],
) -> Runs:
    """A (fine-tune on D) and B (on D ∪ D′) from the biased checkpoint, per fine-tuning seed, evaluated."""
    train_records, train_pixels = d
    runs: Runs = {"A": [], "B": []}
    for seed in config.finetune_seeds:
        for arm in ("A", "B"):
            label = "D only" if arm == "A" else "D ∪ D′"
            with timer.step(
                f"retrieval: fine-tune {arm} ({label}), seed {seed}, {config.finetune_steps} steps"
            ):
                base = RandomCaptionImages(train_records, seed, train_pixels)
                dataset = base if arm == "A" else torch.utils.data.ConcatDataset([base, d_prime])
                args = clip_training_args(
                    config,
                    out / "models" / f"retrieval_{arm}_seed{seed}",
                    steps=config.finetune_steps,
                    lr=config.finetune_lr,
                    seed=seed,
                    max_grad_norm=config.max_grad_norm,
                )
                adapter = train_clip(load_adapter(biased_dir), dataset, args)
            with timer.step(f"retrieval: evaluate {arm}, seed {seed}"):
                runs[arm].append(evaluate_model(adapter, data, out / "cache", config.eval_batch_size))
            _echo_summary(timer, f"{arm}, seed {seed}", runs[arm][-1])
    return runs


# ------------------------------------------------------------------------------------------ the step


def run_retrieval(
    config: DemoConfig, out: Path, timer: StepTimer, calibration: list[dict[str, Any]], visuals: Visuals
) -> dict[str, Any]:
    """Expose and mitigate on the retrieval world; returns the ``retrieval`` part of ``results.json``."""
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
    data = {"queries": queries, "gallery": gallery, "recall": RecallSet.from_records(records["test"])}
    words = caption_words(captions + [row["caption"] for row in d_prime])
    vsepp = None  # VSE++ first: its numbers do not depend on the order (every training seeds itself)
    if config.vsepp:
        vsepp = run_vsepp(
            config, out, timer, captions + [row["caption"] for row in d_prime], (records["train"], train_images),
            (d_prime, d_prime_images), lambda a: _echo_summary(timer, "VSE++", evaluate_model(a, data, cache, config.eval_batch_size)),
        )  # fmt: skip
    with timer.step(f"retrieval: pretrain the biased tiny CLIP ({config.pretrain_steps} steps)"):
        biased_dir, train_pixels = pretrain_biased(
            config, out, words, records["train"], train_images, d_prime, d_prime_images
        )
    with timer.step("retrieval: evaluate the biased model (reloaded from disk)"):
        biased = evaluate_model(load_adapter(biased_dir), data, cache, config.eval_batch_size)
    _echo_summary(timer, "biased model", biased)
    runs: Runs = {
        "biased": [biased],
        **finetune_arms(config, out, timer, biased_dir, (records["train"], train_pixels), d_prime, data),
    }
    _collect_visuals(config, visuals, records["test"], built, runs)
    for arm_runs in runs.values():
        for run in arm_runs:
            run.pop("_rankings", None)
    return {
        "world": {
            **{s: len(records[s]) for s in SPLITS},
            "captions": len(captions),
            "cooccurrence": cooc,
            "pairs": summary["pairs"],
        },
        "queries": {p: len(queries[f"{p}/inpainted"].images) for p in QUERY_POLICIES},
        "gallery_size": len(captions),
        "d_prime": len(d_prime),
        "tokenizer_words": len(words),
        "models": runs,
        **({"vsepp": vsepp} if vsepp else {}),
    }


# ------------------------------------------------------------------------------------------ report material


def _echo_summary(timer: StepTimer, name: str, run: dict[str, Any]) -> dict[str, Any]:
    """One line per evaluated model: the headline numbers, as they come; returns ``run``."""
    if not timer.echo:
        return run
    sets, recall = run["sets"], run["recall"]
    parts = [
        f"{key} ODmAP@1 {sets[key]['odmap@1']:.1f} mention@1 {sets[key]['mention@1']:.1f}"
        for key in ("partner/inpainted", "partner/oracle", "random/inpainted", "anchor/inpainted")
    ]
    print(
        f"[demo]   {name}: " + "; ".join(parts) + f"; R@1 i2t {recall['i2t@1']:.1f} t2i {recall['t2i@1']:.1f}"
    )
    return run


def _collect_visuals(
    config: DemoConfig,
    visuals: Visuals,
    test_records: Sequence[SceneRecord],
    built: dict[tuple[str, str], datasets.Dataset],
    runs: Runs,
) -> None:
    """Triples (original / inpainted / oracle) and top-3 rankings before and after mitigation, of the same
    queries: first those whose biased top-1 names the removed object, then the others, in query order."""
    vocab = load_vocabulary("shapes")
    by_id = {str(r.image_id): r for r in test_records}
    inpainted, oracle = built[("partner", "inpainted")], built[("partner", "oracle")]
    biased_rank = runs["biased"][0]["_rankings"]["partner/inpainted"]
    named = [q for q, r in enumerate(biased_rank) if r["top"] and r["top"][0]["names_removed"]]
    picked = (named + [q for q in range(len(biased_rank)) if q not in set(named)])[: config.examples]
    models = [("biased", runs["biased"][0])] + [(arm, runs[arm][0]) for arm in ("A", "B") if runs[arm]]
    for q in picked:
        row, orow = inpainted[q], oracle[q]
        visuals.triples.append(
            {
                "original": np.asarray(load_rgb(by_id[str(row["source_image_id"])].image_path)),
                "inpainted": np.asarray(row["image"].convert("RGB")),
                "oracle": np.asarray(orow["image"].convert("RGB")),
                "caption": row["source_caption"],
                "edited": row["caption"],
                "removed": list(row["removed_classes"]),
                "query": q,
            }
        )
        removed = set(biased_rank[q]["removed_classes"])
        rankings = {
            name: [
                {
                    "text": t["caption"],
                    "spans": [(s, e) for s, e, c in vocab.mentions(t["caption"]) if c in removed],
                }
                for t in run["_rankings"]["partner/inpainted"][q]["top"][:3]
            ]
            for name, run in models
        }
        visuals.retrieval_examples.append(
            {
                "image": np.asarray(row["image"].convert("RGB")),
                "removed": sorted(removed),
                "present": biased_rank[q]["present_classes"],
                "rankings": rankings,
                "query": q,
            }
        )
