"""Kim et al.'s protocol for one retrieval model family, shared by the tiny CLIP, VSE++ and BLIP arms.

A new model of the family is "pretrained" on the biased world D, saved and reloaded; from that checkpoint
A is fine-tuned on D and B on D ∪ D′ with the same steps, learning rate and seed (per fine-tuning seed),
and every model is evaluated the same way (:func:`evaluate_model`: ODmAP@k and mention@1 per query set,
Recall@K).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hf_spurious.evaluation.retrieval import evaluate_recall, evaluate_retrieval
from hf_spurious.models import load_adapter
from hf_spurious.models.adapters import VisionLanguageAdapter
from hf_spurious.training import SpuriousTrainingArguments

from .config import DemoConfig, StepTimer
from .models import RandomCaptionImages, pixel_values_of, train_clip
from .retrieval_data import RetrievalData

Runs = dict[str, list[dict[str, Any]]]


@dataclass(frozen=True)
class Family:
    """One model family of the A/B protocol: how to make its model and its training arguments."""

    key: str  # folder prefix under models/: <key>_biased, <key>_A_seed<seed>, ...
    label: str  # in step lines, e.g. "tiny VSE++"
    new_model: Callable[[DemoConfig, Sequence[str]], VisionLanguageAdapter]  # (config, captions) -> adapter
    # (config, output_dir, steps=, lr=, seed=, finetune=) -> arguments of one training run
    training_args: Callable[..., SpuriousTrainingArguments]
    pretrain_steps: int
    pretrain_lr: float
    finetune_steps: int
    finetune_lr: float
    rerank_top_n: int | None = None  # ITM re-ranking depth at evaluation (BLIP)


def evaluate_model(
    adapter: VisionLanguageAdapter,
    data: dict[str, Any],
    cache_dir: Path,
    batch_size: int,
    *,
    rerank_top_n: int | None = None,
) -> dict[str, Any]:
    """ODmAP@1/5/10 and mention@1 per query set, Recall@K both directions; also the per-query rankings.

    ``rerank_top_n`` (BLIP): each query's first candidates re-ranked by the ITM head (ODmAP and Recall)."""
    sets: dict[str, Any] = {}
    rankings: dict[str, Any] = {}
    for name, queries in data["queries"].items():
        res = evaluate_retrieval(
            adapter, queries, data["gallery"], k=(1, 5, 10), cache_dir=str(cache_dir), batch_size=batch_size,
            top_captions=3, rerank_top_n=rerank_top_n,
        )  # fmt: skip
        sets[name] = {**res["odmap"], "mention@1": res["removed_mention_rate"]["removed_mention_rate@1"]}
        rankings[name] = res["per_query"]
    recall = evaluate_recall(
        adapter, data["recall"], k=(1, 5, 10), cache_dir=str(cache_dir), batch_size=batch_size,
        rerank_top_n=rerank_top_n,
    )  # fmt: skip
    recall = {key.replace("_r@", "@"): value for key, value in recall.items()}
    return {"sets": sets, "recall": recall, "_rankings": rankings}


def echo_summary(timer: StepTimer, name: str, run: dict[str, Any]) -> dict[str, Any]:
    """One line per evaluated model: the headline numbers, as they come; returns ``run``."""
    if not timer.echo:
        return run
    sets, recall = run["sets"], run["recall"]
    parts = [
        f"{key} ODmAP@1 {sets[key]['odmap@1']:.1f} mention@1 {sets[key]['mention@1']:.1f}"
        for key in ("partner/inpainted", "partner/oracle", "random/inpainted", "anchor/inpainted")
    ]
    line = "; ".join(parts) + f"; R@1 i2t {recall['i2t@1']:.1f} t2i {recall['t2i@1']:.1f}"
    print(f"[demo]   {name}: {line}", flush=True)
    return run


def run_family(
    config: DemoConfig, out: Path, timer: StepTimer, data: RetrievalData, family: Family
) -> tuple[Runs, VisionLanguageAdapter]:
    """Pretrain, evaluate, then fine-tune and evaluate A and B per fine-tuning seed.

    Returns ``{"biased": [run], "A": [...], "B": [...]}`` (runs keep their per-query ``_rankings``) and the
    pretrained model (for its sizes).
    """
    records, models = data.records["train"], out / "models"

    def evaluate(adapter: VisionLanguageAdapter, name: str) -> dict[str, Any]:
        run = evaluate_model(
            adapter, data.evaluation, out / "cache", config.eval_batch_size, rerank_top_n=family.rerank_top_n
        )
        return echo_summary(timer, f"{family.label} {name}", run)

    with timer.step(f"retrieval: pretrain the biased {family.label} ({family.pretrain_steps} steps)"):
        model = family.new_model(config, data.all_captions)
        train_pixels = pixel_values_of(model, data.train_images)  # the processor is saved with the model
        d_prime_pixels = pixel_values_of(model, data.d_prime_images)
        d_prime = [{**row, "pixel_values": px} for row, px in zip(data.d_prime, d_prime_pixels, strict=True)]
        args = family.training_args(
            config, models / f"{family.key}_biased" / "trainer", steps=family.pretrain_steps,
            lr=family.pretrain_lr, seed=config.seed, finetune=False,
        )  # fmt: skip
        model = train_clip(model, RandomCaptionImages(records, config.seed, train_pixels), args)
        biased_dir = Path(model.save_pretrained(models / f"{family.key}_biased" / "checkpoint"))
    with timer.step(f"retrieval: evaluate the biased {family.label} (reloaded from disk)"):
        runs: Runs = {"biased": [evaluate(load_adapter(biased_dir), "biased")], "A": [], "B": []}
    for seed in config.finetune_seeds:
        for arm in ("A", "B"):
            label, steps = ("D only" if arm == "A" else "D ∪ D′"), family.finetune_steps
            with timer.step(
                f"retrieval: fine-tune {family.label} {arm} ({label}), seed {seed}, {steps} steps"
            ):
                base = RandomCaptionImages(records, seed, train_pixels)
                dataset = base if arm == "A" else torch.utils.data.ConcatDataset([base, d_prime])
                args = family.training_args(
                    config, models / f"{family.key}_{arm}_seed{seed}", steps=steps, lr=family.finetune_lr,
                    seed=seed, finetune=True,
                )  # fmt: skip
                adapter = train_clip(load_adapter(biased_dir), dataset, args)
            with timer.step(f"retrieval: evaluate {family.label} {arm}, seed {seed}"):
                runs[arm].append(evaluate(adapter, f"{arm}, seed {seed}"))
    return runs, model


def lean(runs: Runs) -> Runs:
    """The runs without their per-query rankings (what ``results.json`` keeps)."""
    return {
        arm: [{k: v for k, v in run.items() if k != "_rankings"} for run in arm_runs]
        for arm, arm_runs in runs.items()
    }
