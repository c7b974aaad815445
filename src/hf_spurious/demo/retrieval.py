"""Retrieval half of the demo: biased tiny CLIP -> ODmAP@k on counterfactual queries -> A (D) vs B (D ∪ D′).

Thin integration: the world, the counterfactual builder, the trainer and the retrieval runner do the work;
this module wires them together with the settings the prototype measured (see ``DemoConfig``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hf_spurious.images import load_rgb

from .pipeline import DemoConfig, StepTimer, seed_everything
from .report import Visuals

QUERY_POLICIES = ("partner", "random", "anchor")
IMAGE_METHODS = {"inpainted": "opencv", "oracle": "oracle"}
SPLITS = ("train", "val", "test")
_WORD = re.compile(r"[a-z]+")


# ------------------------------------------------------------------------------------------ data


def world_config(config: DemoConfig) -> Any:
    """The retrieval ``WorldConfig`` of the demo (sizes, seed, co-occurrence strength, co-naming)."""
    from hf_spurious.data.world import WorldConfig

    return WorldConfig(
        train_size=config.train_size,
        val_size=config.val_size,
        test_size=config.test_size,
        image_size=config.image_size,
        seed=config.seed,
        p_partner=config.p_partner,
        p_co_name=config.pair_naming,
    )


def caption_words(captions: Sequence[str]) -> list[str]:
    """The world's vocabulary for the tokenizer: every lower-case alphabetic word of its captions, sorted."""
    return sorted({w for c in captions for w in _WORD.findall(c.lower())})


class RandomCaptionImages(torch.utils.data.Dataset):
    """D as one row per image, with one of its captions drawn at random at every access (seeded).

    Sampling images rather than (image, caption) pairs is what the prototype measured: it keeps D′ at
    about 60 % of the samples of D ∪ D′ and avoids the same image twice in a batch. ``pixel_values``
    (the image processor's output, one row per record; see :func:`pixel_values_of`) saves decoding and
    preprocessing the same image at every step; without it rows carry the image paths.
    """

    def __init__(self, records: Sequence[Any], seed: int, pixel_values: torch.Tensor | None = None) -> None:
        if pixel_values is not None and len(pixel_values) != len(records):
            raise ValueError(
                f"{len(pixel_values)} preprocessed images for {len(records)} records; pass one per record"
            )
        self.key = "image" if pixel_values is None else "pixel_values"
        self.items = [
            (str(r.image_path) if pixel_values is None else pixel_values[i], tuple(r.captions))
            for i, r in enumerate(records)
        ]
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image, captions = self.items[index]
        caption = captions[int(self.rng.integers(len(captions)))]
        return {self.key: image, "caption": caption, "is_counterfactual": False}


def decode_images(items: Sequence[Any]) -> list[np.ndarray]:
    """Decode images (paths, PIL images, ``datasets`` image cells) once into RGB uint8 arrays."""
    return [np.asarray(load_rgb(item, where=f"image {i}")) for i, item in enumerate(items)]


def pixel_values_of(adapter: Any, images: Sequence[np.ndarray], batch_size: int = 1024) -> torch.Tensor:
    """The model's image processor run once over decoded images: ``(N, 3, H, W)`` float32 on the CPU."""
    chunks = [
        adapter.preprocess_images(images[i : i + batch_size]).cpu() for i in range(0, len(images), batch_size)
    ]
    return torch.cat(chunks) if chunks else torch.empty(0)


def build_counterfactuals(
    world_dir: Path, split: str, policy: str, inpainter: str, seed: int, cache_dir: Path
) -> Any:
    """One decorrelated split from the ``ShapesDecorrelated`` builder (a ``datasets.Dataset``).

    Every build of the demo shares one noun-phrase parse cache, so each caption is parsed by spaCy once
    instead of once per query set (the six test builds read the same 2,500 captions).
    """
    from hf_spurious.data import ShapesDecorrelated

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


def paired_query_sets(inpainted: Any, oracle: Any) -> tuple[list[int], list[int]]:
    """Row indices of the queries present in both versions (same source image, same removed classes)."""

    def key(row: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
        return str(row["source_image_id"]), tuple(sorted(row["removed_classes"]))

    cols = ["source_image_id", "removed_classes"]
    a = {key(r): i for i, r in enumerate(inpainted.select_columns(cols))}
    b = {key(r): i for i, r in enumerate(oracle.select_columns(cols))}
    common = [k for k in a if k in b]
    return [a[k] for k in common], [b[k] for k in common]


def queries_from(dataset: Any, name: str) -> Any:
    """``RetrievalQueries`` from a decorrelated split."""
    from hf_spurious.evaluation.retrieval import RetrievalQueries

    rows = dataset.select_columns(["source_image_id", "removed_classes", "present_classes"])
    return RetrievalQueries(
        images=list(dataset["image"]),
        removed_classes=[frozenset(r["removed_classes"]) for r in rows],
        present_classes=[frozenset(r["present_classes"]) for r in rows],
        ids=[f"{name}/{r['source_image_id']}" for r in rows],
        source_image_ids=[str(r["source_image_id"]) for r in rows],
    )


def original_queries(records: Sequence[Any]) -> Any:
    """The original test images as queries (nothing removed): the reference row of the ODmAP table."""
    from hf_spurious.evaluation.retrieval import RetrievalQueries

    return RetrievalQueries(
        images=[str(r.image_path) for r in records],
        removed_classes=[frozenset() for _ in records],
        present_classes=[frozenset(r.classes) for r in records],
        ids=[f"original/{r.image_id}" for r in records],
        source_image_ids=[str(r.image_id) for r in records],
    )


def recall_set(records: Sequence[Any]) -> Any:
    """Recall@K set: the test images and their captions."""
    from hf_spurious.evaluation.retrieval import RecallSet

    captions, owner = [], []
    for i, r in enumerate(records):
        captions += list(r.captions)
        owner += [i] * len(r.captions)
    return RecallSet(
        images=[str(r.image_path) for r in records],
        captions=captions,
        caption_to_image=owner,
        image_ids=[str(r.image_id) for r in records],
    )


# ------------------------------------------------------------------------------------------ models


def _training_args(
    config: DemoConfig, output_dir: Path, *, steps: int, lr: float, seed: int, max_grad_norm: float
) -> Any:
    """L_CLIP training of the whole tiny CLIP (AdamW, weight decay 0.1, 10 % warm-up, cosine decay)."""
    from hf_spurious.training import SpuriousTrainingArguments

    return SpuriousTrainingArguments(
        output_dir=str(output_dir),
        task="retrieval",
        freeze_policy="full",
        use_cached_features=False,
        clip_weight=1.0,
        templates=["{}"],
        max_steps=steps,
        per_device_train_batch_size=config.batch_size,
        learning_rate=lr,
        weight_decay=0.1,
        max_grad_norm=max_grad_norm,
        warmup_steps=0.1,
        lr_scheduler_type="cosine",
        seed=seed,
        data_seed=seed,
        save_strategy="no",
        report_to="none",
        logging_steps=max(1, steps // 4),
        dataloader_num_workers=0,
        use_cpu=True,
        disable_tqdm=False,
    )


def train_retrieval(adapter: Any, dataset: Any, args: Any) -> Any:
    """Train ``adapter`` in place with the L_CLIP loss of ``SpuriousAwareTrainer``; returns the adapter."""
    from hf_spurious.training import SpuriousAwareTrainer

    seed_everything(args.seed)
    trainer = SpuriousAwareTrainer(model=adapter, args=args, train_dataset=dataset)
    trainer.train()
    adapter.model.eval()
    return trainer.adapter


def new_clip(config: DemoConfig, words: Sequence[str]) -> Any:
    """A random tiny CLIP of the demo's sizes (seeded), tokenizer built from ``words``, as an adapter."""
    from hf_spurious.models import load_adapter
    from hf_spurious.models.tiny import tiny_clip

    seed_everything(config.seed)
    model, processor = tiny_clip(
        words,
        image_size=config.image_size,
        patch_size=config.patch_size,
        hidden_size=config.hidden_size,
        num_layers=config.num_layers,
        num_heads=config.num_heads,
        projection_dim=config.projection_dim,
        intermediate_size=config.intermediate_size,
        seed=config.seed,
    )
    return load_adapter(model, processor)


def pretrain_clip(
    config: DemoConfig,
    adapter: Any,
    dataset: Any,
    out_dir: Path,
    *,
    steps: int,
    lr: float,
    max_grad_norm: float,
) -> Path:
    """Train a :func:`new_clip` from scratch on a biased set (L_CLIP); save it with ``save_pretrained``."""
    args = _training_args(
        config, out_dir / "trainer", steps=steps, lr=lr, seed=config.seed, max_grad_norm=max_grad_norm
    )
    return Path(train_retrieval(adapter, dataset, args).save_pretrained(out_dir / "checkpoint"))


# ------------------------------------------------------------------------------------------ evaluation


def evaluate_model(adapter: Any, data: dict[str, Any], cache_dir: Path, batch_size: int) -> dict[str, Any]:
    """ODmAP@1/5/10 and mention@1 per query set, Recall@K both directions; also the per-query rankings."""
    from hf_spurious.evaluation.retrieval import evaluate_recall, evaluate_retrieval

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


# ------------------------------------------------------------------------------------------ the step


def run_retrieval(
    config: DemoConfig, out: Path, timer: StepTimer, calibration: list[dict[str, Any]], visuals: Visuals
) -> dict[str, Any]:
    """Expose and mitigate on the retrieval world; returns the ``retrieval`` part of ``results.json``."""
    from hf_spurious.data import build_gallery, generate_world, read_coco
    from hf_spurious.evaluation.retrieval import Gallery
    from hf_spurious.metrics.odmap import count_relevant
    from hf_spurious.models import load_adapter
    from hf_spurious.training.data import counterfactual_rows

    world_dir = out / "worlds" / "retrieval"
    cache = out / "cache"
    with timer.step("retrieval: generate the world"):
        summary = generate_world(world_config(config), world_dir)
        records = {s: read_coco(world_dir, s, vocabulary="shapes") for s in SPLITS}
    cooc = {
        name.replace("->", " → "): stats["p_partner_given_anchor"] for name, stats in summary["pairs"].items()
    }
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

    with timer.step("retrieval: counterfactual query sets and D′ (builder, opencv + oracle)"):
        built = {
            (policy, method): build_counterfactuals(world_dir, "test", policy, inpainter, config.seed, cache)
            for policy in QUERY_POLICIES
            for method, inpainter in IMAGE_METHODS.items()
        }
        queries: dict[str, Any] = {}
        for policy in QUERY_POLICIES:
            ia, ib = paired_query_sets(built[(policy, "inpainted")], built[(policy, "oracle")])
            built[(policy, "inpainted")] = built[(policy, "inpainted")].select(ia)
            built[(policy, "oracle")] = built[(policy, "oracle")].select(ib)
            for method in IMAGE_METHODS:
                queries[f"{policy}/{method}"] = queries_from(built[(policy, method)], f"{policy}/{method}")
        queries["original"] = original_queries(records["test"])
        d_prime = [
            row
            for policy in ("partner", "random")
            for row in counterfactual_rows(
                build_counterfactuals(world_dir, "train", policy, "opencv", config.seed, cache)
            )
        ]
        d_prime_images = decode_images([row.pop("image") for row in d_prime])
        train_images = decode_images([r.image_path for r in records["train"]])

    with timer.step("retrieval: caption gallery (all splits) and its class matrix"):
        captions, _, matrix, class_names = build_gallery(world_dir, source="shapes", cache_dir=cache)
        gallery = Gallery(captions=captions, classes=matrix, class_names=class_names)
    partner = queries["partner/inpainted"]
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
    data = {"queries": queries, "gallery": gallery, "recall": recall_set(records["test"])}
    words = caption_words(captions + [row["caption"] for row in d_prime])

    with timer.step(f"retrieval: pretrain the biased tiny CLIP ({config.pretrain_steps} steps)"):
        clip = new_clip(config, words)
        train_pixels = pixel_values_of(clip, train_images)  # the same processor is saved with the checkpoint
        for row, pixels in zip(d_prime, pixel_values_of(clip, d_prime_images)):
            row["pixel_values"] = pixels
        biased_dir = pretrain_clip(
            config,
            clip,
            RandomCaptionImages(records["train"], config.seed, train_pixels),
            out / "models" / "retrieval_biased",
            steps=config.pretrain_steps,
            lr=config.pretrain_lr,
            max_grad_norm=config.max_grad_norm,
        )
    with timer.step("retrieval: evaluate the biased model (reloaded from disk)"):
        biased = evaluate_model(load_adapter(biased_dir), data, cache, config.eval_batch_size)
    _echo_summary(timer, "biased model", biased)

    runs: dict[str, list[dict[str, Any]]] = {"biased": [biased], "A": [], "B": []}
    for seed in config.finetune_seeds:
        for arm in ("A", "B"):
            label = "D only" if arm == "A" else "D ∪ D′"
            with timer.step(
                f"retrieval: fine-tune {arm} ({label}), seed {seed}, {config.finetune_steps} steps"
            ):
                base = RandomCaptionImages(records["train"], seed, train_pixels)
                dataset = base if arm == "A" else torch.utils.data.ConcatDataset([base, d_prime])
                args = _training_args(
                    config,
                    out / "models" / f"retrieval_{arm}_seed{seed}",
                    steps=config.finetune_steps,
                    lr=config.finetune_lr,
                    seed=seed,
                    max_grad_norm=config.max_grad_norm,
                )
                adapter = train_retrieval(load_adapter(biased_dir), dataset, args)
            with timer.step(f"retrieval: evaluate {arm}, seed {seed}"):
                runs[arm].append(evaluate_model(adapter, data, cache, config.eval_batch_size))
            _echo_summary(timer, f"{arm}, seed {seed}", runs[arm][-1])

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
    }


def _echo_summary(timer: StepTimer, name: str, run: dict[str, Any]) -> None:
    """One line per evaluated model: the headline numbers, as they come."""
    if not timer.echo:
        return
    sets, recall = run["sets"], run["recall"]
    parts = [
        f"{key} ODmAP@1 {sets[key]['odmap@1']:.1f} mention@1 {sets[key]['mention@1']:.1f}"
        for key in ("partner/inpainted", "partner/oracle", "random/inpainted", "anchor/inpainted")
    ]
    print(
        f"[demo]   {name}: " + "; ".join(parts) + f"; R@1 i2t {recall['i2t@1']:.1f} t2i {recall['t2i@1']:.1f}"
    )


def _collect_visuals(
    config: DemoConfig,
    visuals: Visuals,
    test_records: Sequence[Any],
    built: dict[tuple[str, str], Any],
    runs: dict[str, list[dict[str, Any]]],
) -> None:
    """Triples (original / inpainted / oracle) and top-3 rankings before and after mitigation."""
    from hf_spurious.vocab import load_vocabulary

    vocab = load_vocabulary("shapes")
    by_id = {str(r.image_id): r for r in test_records}
    inpainted, oracle = built[("partner", "inpainted")], built[("partner", "oracle")]
    n = min(config.examples, len(inpainted))
    for i in range(n):
        row, orow = inpainted[i], oracle[i]
        original = np.asarray(load_rgb(by_id[str(row["source_image_id"])].image_path))
        visuals.triples.append(
            {
                "original": original,
                "inpainted": np.asarray(row["image"].convert("RGB")),
                "oracle": np.asarray(orow["image"].convert("RGB")),
                "caption": row["source_caption"],
                "edited": row["caption"],
                "removed": list(row["removed_classes"]),
            }
        )
    # Queries where the biased model's top-1 names the removed object (first ones in query order).
    biased_rank = runs["biased"][0]["_rankings"]["partner/inpainted"]
    picked = [q for q, r in enumerate(biased_rank) if r["top"] and r["top"][0]["names_removed"]][
        : config.examples
    ]
    models = [("biased", runs["biased"][0])] + [(arm, runs[arm][0]) for arm in ("A", "B") if runs[arm]]
    for q in picked:
        removed = set(biased_rank[q]["removed_classes"])
        rankings = {}
        for name, run in models:
            top = run["_rankings"]["partner/inpainted"][q]["top"][:3]
            rankings[name] = [
                {
                    "text": t["caption"],
                    "spans": [(s, e) for s, e, c in vocab.mentions(t["caption"]) if c in removed],
                }
                for t in top
            ]
        visuals.retrieval_examples.append(
            {
                "image": np.asarray(inpainted[q]["image"].convert("RGB")),
                "removed": sorted(removed),
                "present": biased_rank[q]["present_classes"],
                "rankings": rankings,
            }
        )
