"""Classification half of the demo (Waterbirds layout): a biased tiny CLIP's zero-shot group accuracies,
then projection-only fine-tuning arms on cached features, selected by validation worst-group accuracy.

Thin integration over the world, the trainer (samplers, Group DRO, losses, feature cache) and the
classification runner (group accuracies, GradCAM AIoU).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hf_spurious.evaluation.classification import evaluate_classification, train_group_counts
from hf_spurious.evaluation.gradcam import (
    ClassSimilarityTarget,
    ViTGradCAM,
    class_text_embeddings,
    logit_scale_value,
    pixel_values_for,
)
from hf_spurious.images import load_rgb
from hf_spurious.models import load_adapter
from hf_spurious.models.adapters import VisionLanguageAdapter
from hf_spurious.records import ClassificationRecord, SceneRecord
from hf_spurious.sources import read_coco, read_waterbirds
from hf_spurious.training import SpuriousAwareTrainer, SpuriousTrainingArguments
from hf_spurious.training.rows import classification_rows
from hf_spurious.world import generate_world

from .config import DemoConfig, StepTimer, seed_everything
from .models import (
    RandomCaptionImages,
    caption_words,
    decode_images,
    new_clip,
    pixel_values_of,
    pretrain_clip,
)
from .report import Visuals

CLASS_NAMES = ("landbird", "waterbird")
ATTRIBUTE_NAMES = ("land", "water")
GROUP_NAMES = ("landbird/land", "landbird/water", "waterbird/land", "waterbird/water")
# Prompt templates in the style of the world's "web" captions (the tiny model has read no other text).
TEMPLATES = ("a photo of a {}", "a picture of a {}", "a {}", "{}")


@dataclass(frozen=True)
class Arm:
    """One fine-tuning arm: loss weights, sampler and objective."""

    key: str
    sampling: str = "group_balanced"
    objective: str = "erm"
    image_class_weight: float = 0.0
    text_class_weight: float = 0.0
    image_spurious_weight: float = 0.0
    text_spurious_weight: float = 0.0


ARMS = (
    Arm("clip-uniform", sampling="uniform"),
    Arm("clip-balanced"),
    Arm("group-dro", objective="group_dro"),
    Arm("clip+vc+lc+vs", image_class_weight=1.0, text_class_weight=1.0, image_spurious_weight=1.0),
    Arm("clip+vc+lc+ls", image_class_weight=1.0, text_class_weight=1.0, text_spurious_weight=1.0),
)


def pretrain_records(world_dir: Path) -> list[SceneRecord]:
    """The captioned "web" pretraining set (COCO captions layout under ``pretrain/``) as records."""
    root = world_dir / "pretrain"
    return read_coco(root, "train", vocabulary="shapes", captions_json=root / "captions.json")


def pretrain_biased(config: DemoConfig, records: Sequence[SceneRecord], out_dir: Path) -> Path:
    """A tiny CLIP trained from scratch on the web set (place and bird agree 90 %); saved and returned."""
    words = caption_words(
        [c for r in records for c in r.captions]
        + list(CLASS_NAMES)
        + list(ATTRIBUTE_NAMES)
        + [t.format("") for t in TEMPLATES]
    )
    clip = new_clip(config, words)
    pixels = pixel_values_of(clip, decode_images([r.image_path for r in records]))
    return pretrain_clip(
        config,
        clip,
        RandomCaptionImages(records, config.seed, pixels),
        out_dir,
        steps=config.cls_pretrain_steps,
        lr=config.cls_pretrain_lr,
        max_grad_norm=config.cls_max_grad_norm,
    )


def _arm_args(
    config: DemoConfig, arm: Arm, seed: int, output_dir: Path, cache_dir: Path
) -> SpuriousTrainingArguments:
    return SpuriousTrainingArguments(
        output_dir=str(output_dir),
        task="classification",
        freeze_policy="projection",
        use_cached_features=True,
        feature_cache_dir=str(cache_dir),
        class_names=list(CLASS_NAMES),
        attribute_names=list(ATTRIBUTE_NAMES),
        templates=list(TEMPLATES),
        clip_weight=1.0,
        sampling=arm.sampling,
        objective=arm.objective,
        image_class_weight=arm.image_class_weight,
        text_class_weight=arm.text_class_weight,
        image_spurious_weight=arm.image_spurious_weight,
        text_spurious_weight=arm.text_spurious_weight,
        num_train_epochs=config.cls_epochs,
        per_device_train_batch_size=config.cls_batch_size,
        per_device_eval_batch_size=512,
        learning_rate=config.cls_lr,
        seed=seed,
        data_seed=seed,
        eval_strategy="epoch",
        save_strategy="epoch",
        save_total_limit=1,
        load_best_model_at_end=True,
        metric_for_best_model="worst_group_accuracy",
        greater_is_better=True,
        report_to="none",
        logging_strategy="epoch",
        dataloader_num_workers=0,
        use_cpu=True,
        disable_tqdm=True,
    )


def finetune_arm(
    config: DemoConfig,
    arm: Arm,
    seed: int,
    biased_dir: Path,
    train_rows: list[dict[str, Any]],
    val_rows: list[dict[str, Any]],
    train_counts: list[int],
    out_dir: Path,
    cache_dir: Path,
) -> tuple[VisionLanguageAdapter, dict[str, Any]]:
    """Fine-tune the projections of the biased model with one arm; keep the best-val-worst-group epoch."""
    seed_everything(seed)
    args = _arm_args(config, arm, seed, out_dir, cache_dir)
    trainer = SpuriousAwareTrainer(
        model=load_adapter(biased_dir),
        args=args,
        train_dataset=train_rows,
        eval_dataset=val_rows,
        train_group_counts=train_counts,
    )
    trainer.train()
    best = _best_epoch(trainer.state.log_history)
    trainer.adapter.model.eval()
    return trainer.adapter, best


def _best_epoch(history: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The first epoch with the highest validation worst-group accuracy (the checkpoint kept)."""
    evals = [h for h in history if "eval_worst_group_accuracy" in h]
    if not evals:
        return {}
    best = max(evals, key=lambda h: (h["eval_worst_group_accuracy"], -h.get("epoch", 0)))
    return {
        "best_epoch": best.get("epoch"),
        "val_worst": best["eval_worst_group_accuracy"],
        "val_average": best.get("eval_average_accuracy"),
    }


def evaluate_arm(
    adapter: VisionLanguageAdapter,
    records: Sequence[ClassificationRecord],
    train_counts: list[int],
    config: DemoConfig,
) -> dict[str, Any]:
    """Group accuracies and AIoU on the test records (the classification runner)."""
    subset = stratified_subset(records, config.gradcam_images)
    whole = len(subset) == len(records)  # GradCAM on every test image: one pass gives both metrics
    res = evaluate_classification(
        adapter,
        subset if whole else list(records),
        CLASS_NAMES,
        TEMPLATES,
        metrics=("group", "aiou") if whole else ("group",),
        train_counts=train_counts,
        group_names=GROUP_NAMES,
        batch_size=64,
    )
    cam = (
        res["aiou"]
        if whole
        else evaluate_classification(
            adapter, subset, CLASS_NAMES, TEMPLATES, metrics=("aiou",), group_names=GROUP_NAMES, batch_size=64
        )["aiou"]
    )
    g = res["group"]
    return {
        "average": g["average_accuracy"],
        "adjusted": g["adjusted_average_accuracy"],
        "worst": g["worst_group_accuracy"],
        "worst_group": g["worst_group"],
        "groups": g["group_accuracy"],
        "aiou": cam["aiou"],
        "worst_group_aiou": cam.get("worst_group_aiou"),
        "aiou_groups": cam.get("group_aiou", {}),
        "aiou_images": len(subset),
    }


def stratified_subset(records: Sequence[Any], n: int) -> list[Any]:
    """The first ``n`` records taken round-robin over groups (in group order), so every group is represented."""
    by_group: dict[int, list[Any]] = {}
    for r in records:
        by_group.setdefault(int(r.group), []).append(r)
    queues = [by_group[g] for g in sorted(by_group)]
    out: list[Any] = []
    depth = 0
    while len(out) < n and any(depth < len(q) for q in queues):
        out += [q[depth] for q in queues if depth < len(q)][: n - len(out)]
        depth += 1
    return out


def gradcam_maps(
    adapter: VisionLanguageAdapter, images: Sequence[Any], labels: Sequence[int]
) -> list[np.ndarray]:
    """The true class's GradCAM map (input of the last vision block) for each image, in ``[0, 1]``."""
    text = class_text_embeddings(adapter, CLASS_NAMES, TEMPLATES)
    scale = logit_scale_value(adapter)
    maps = ViTGradCAM(adapter)(
        pixel_values_for(adapter, list(images)),
        [ClassSimilarityTarget(text[c], scale) for c in range(len(CLASS_NAMES))],
    )
    return [maps[i, int(y)].numpy() for i, y in enumerate(labels)]


def zero_shot_check(config: DemoConfig, zs: dict[str, Any], calibration: list[dict[str, Any]]) -> None:
    """The calibration check of the zero-shot arm (worst group in its band, 20 points below average)."""
    lo, hi = config.zero_shot_worst_band
    ok = lo <= zs["worst"] <= hi and zs["average"] - zs["worst"] >= 20
    calibration.append(
        {
            "check": "zero-shot worst-group accuracy (%), average − worst ≥ 20",
            "value": zs["worst"],
            "band": [lo, hi],
            "ok": None if config.quick else ok,
        }
    )
    if not ok and not config.quick:
        print(
            f"[demo] CALIBRATION WARNING: zero-shot worst-group accuracy {zs['worst']:.1f} (average "
            f"{zs['average']:.1f}) is outside [{lo}, {hi}] or not 20 points below the average; the "
            "classification world is not in the regime the demo is calibrated for (see cls_world knobs).",
            flush=True,
        )


def finetune_all(
    config: DemoConfig,
    out: Path,
    timer: StepTimer,
    biased_dir: Path,
    records: dict[str, list[ClassificationRecord]],
    train_counts: list[int],
    visuals: Visuals,
    picks: Sequence[ClassificationRecord],
) -> dict[str, list[dict[str, Any]]]:
    """Every arm for every fine-tuning seed, evaluated on test; GradCAM maps of the first seed's models."""
    train_rows, val_rows = classification_rows(records["train"]), classification_rows(records["val"])
    arms: dict[str, list[dict[str, Any]]] = {}
    for seed in config.finetune_seeds:
        for arm in ARMS:
            with timer.step(
                f"classification: fine-tune {arm.key}, seed {seed} ({config.cls_epochs} epochs) + test"
            ):
                adapter, best = finetune_arm(
                    config,
                    arm,
                    seed,
                    biased_dir,
                    train_rows,
                    val_rows,
                    train_counts,
                    out / "models" / f"classification_{arm.key}_seed{seed}",
                    out / "cache" / "features",
                )
                arms.setdefault(arm.key, []).append(
                    {**evaluate_arm(adapter, records["test"], train_counts, config), **best}
                )
                if seed == config.finetune_seeds[0]:
                    _add_maps(visuals, arm.key, adapter, picks)
    return arms


def run_classification(
    config: DemoConfig, out: Path, timer: StepTimer, calibration: list[dict[str, Any]], visuals: Visuals
) -> dict[str, Any]:
    """Expose and mitigate on the classification world; returns the ``classification`` results."""
    world_dir = out / "worlds" / "classification"
    with timer.step("classification: generate the world (Waterbirds layout + web pretraining set)"):
        summary = generate_world(config.classification_world_config(), world_dir)
        records = {s: read_waterbirds(world_dir, s) for s in ("train", "val", "test")}
        web = pretrain_records(world_dir)
    train_counts = train_group_counts(records["train"], num_groups=len(GROUP_NAMES))
    with timer.step(f"classification: pretrain the biased tiny CLIP ({config.cls_pretrain_steps} steps)"):
        biased_dir = pretrain_biased(config, web, out / "models" / "classification_biased")
    arms: dict[str, list[dict[str, Any]]] = {}
    with timer.step("classification: zero-shot evaluation of the biased model (reloaded from disk)"):
        biased = load_adapter(biased_dir)
        arms["zero-shot"] = [evaluate_arm(biased, records["test"], train_counts, config)]
    zero_shot_check(config, arms["zero-shot"][0], calibration)
    picks = _one_per_group(records["test"])
    visuals.gradcam = [
        {"group": GROUP_NAMES[r.group], "image": np.asarray(load_rgb(r.image_path)), "maps": {}}
        for r in picks
    ]
    _add_maps(visuals, "zero-shot", biased, picks)
    arms.update(finetune_all(config, out, timer, biased_dir, records, train_counts, visuals, picks))
    balanced_worst = arms["clip-balanced"][0]["worst"] if arms.get("clip-balanced") else float("nan")
    calibration.append(
        {
            "check": "frozen-feature fine-tune (L_CLIP, balanced) worst-group accuracy (%)",
            "value": balanced_worst,
            "band": [55, 100],
            "ok": None if config.quick else balanced_worst >= 55,
        }
    )
    return {
        "world": {
            "group_counts": summary["groups"],
            "pretrain": summary.get("pretrain", {}),
            "config": {k: v for k, v in summary.items() if k in ("seed",)},
        },
        "templates": list(TEMPLATES),
        "arms": arms,
    }


def _one_per_group(records: Sequence[ClassificationRecord]) -> list[ClassificationRecord]:
    seen: dict[int, Any] = {}
    for r in records:
        seen.setdefault(r.group, r)
    return [seen[g] for g in sorted(seen)]


def _add_maps(
    visuals: Visuals, key: str, adapter: VisionLanguageAdapter, picks: Sequence[ClassificationRecord]
) -> None:
    maps = gradcam_maps(adapter, [load_rgb(r.image_path) for r in picks], [r.label for r in picks])
    for item, heat in zip(visuals.gradcam, maps):
        item["maps"][key] = heat
