"""The demo's VSE++ arm: a tiny VSE++ "pretrained" on the biased retrieval world, fine-tuned A (D) vs B (D ∪ D′).

VSE++ is the third model family of Kim et al.'s Table 1 (CNN + GRU, triplet loss) beside CLIP. The stand-in
is :func:`~hf_spurious.models.tiny.tiny_vsepp` at the demo's sizes (a small VGG-layout CNN on the 64-px world
images, a bidirectional GRU, word vocabulary of the world's captions with VSE++'s 4-occurrence rule), trained
by ``SpuriousAwareTrainer`` with the VSE++ triplet loss (``retrieval_loss="auto"`` picks it from the
adapter), with Adam and the same steps, learning rate and seed for both arms. Both pretraining and
fine-tuning sum the hinges (VSE0) by default: VSE++'s hardest negative (``vsepp_finetune_max_violation``,
Kim et al.'s setting on a converged VSE++) collapsed this weak stand-in in a measured run (the loss went to
2 × margin and Recall@1 halved in A and B alike): in a world of templated captions the hardest negative of
a batch is usually a caption of the same content.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hf_spurious.models import load_adapter
from hf_spurious.models.adapters import VisionLanguageAdapter
from hf_spurious.models.tiny import tiny_vsepp
from hf_spurious.records import SceneRecord
from hf_spurious.training import SpuriousTrainingArguments

from .config import DemoConfig, StepTimer, seed_everything
from .models import RandomCaptionImages, clip_training_args, pixel_values_of, train_clip

Runs = dict[str, list[dict[str, Any]]]


def _lean(run: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in run.items() if k != "_rankings"}


def new_vsepp(config: DemoConfig, captions: Sequence[str]) -> VisionLanguageAdapter:
    """A random tiny VSE++ of the demo's sizes (seeded); its vocabulary = caption words seen ≥ 4 times."""
    seed_everything(config.seed)
    model, processor = tiny_vsepp(
        captions,
        image_size=config.image_size,
        vgg_layers=config.vsepp_layers,
        fc_size=config.vsepp_fc_size,
        embed_size=config.vsepp_embed_size,
        word_dim=config.vsepp_word_dim,
        min_count=4,
        seed=config.seed,
    )
    return load_adapter(model, processor)


def vsepp_training_args(
    config: DemoConfig, output_dir: Path, *, steps: int, lr: float, seed: int, max_violation: bool
) -> SpuriousTrainingArguments:
    """Triplet-loss training of the whole tiny VSE++ (Adam = AdamW without weight decay, 10 % warm-up, cosine)."""
    return clip_training_args(
        config,
        output_dir,
        steps=steps,
        lr=lr,
        seed=seed,
        max_grad_norm=config.vsepp_max_grad_norm,
        weight_decay=0.0,
        retrieval_loss="triplet",
        triplet_margin=0.2,
        triplet_max_violation=max_violation,
        learn_logit_scale=False,
    )


def run_vsepp(
    config: DemoConfig,
    out: Path,
    timer: StepTimer,
    captions: Sequence[str],
    d: tuple[Sequence[SceneRecord], Sequence[np.ndarray]],
    d_prime: tuple[Sequence[dict[str, Any]], Sequence[np.ndarray]],
    evaluate: Any,
) -> dict[str, Any]:
    """Pretrain the biased VSE++, evaluate it, fine-tune and evaluate A and B per fine-tuning seed.

    ``d`` = (train records, their decoded images), ``d_prime`` = (D′ rows, their decoded images);
    ``evaluate(adapter) -> run`` is the retrieval half's evaluation (per-query rankings dropped here). Returns the ``retrieval.vsepp`` part
    of ``results.json``: the model's sizes and ``models`` = ``{"biased": [run], "A": [...], "B": [...]}``.
    """
    (records, images), (rows, row_images) = d, d_prime
    steps = config.vsepp_pretrain_steps
    with timer.step(f"retrieval: pretrain the biased tiny VSE++ ({steps} steps)"):
        vsepp = new_vsepp(config, captions)
        train_pixels = pixel_values_of(vsepp, images)
        vsepp_rows = [
            {**row, "pixel_values": px}
            for row, px in zip(rows, pixel_values_of(vsepp, row_images), strict=True)
        ]
        args = vsepp_training_args(
            config, out / "models" / "vsepp_biased" / "trainer", steps=steps, lr=config.vsepp_pretrain_lr,
            seed=config.seed, max_violation=False,
        )  # fmt: skip
        train_clip(vsepp, RandomCaptionImages(records, config.seed, train_pixels), args)
        biased_dir = Path(vsepp.save_pretrained(out / "models" / "vsepp_biased" / "checkpoint"))
    with timer.step("retrieval: evaluate the biased VSE++ (reloaded from disk)"):
        runs: Runs = {"biased": [_lean(evaluate(load_adapter(biased_dir)))], "A": [], "B": []}
    for seed in config.finetune_seeds:
        for arm in ("A", "B"):
            label = "D only" if arm == "A" else "D ∪ D′"
            steps = config.vsepp_finetune_steps
            with timer.step(f"retrieval: fine-tune VSE++ {arm} ({label}), seed {seed}, {steps} steps"):
                base = RandomCaptionImages(records, seed, train_pixels)
                dataset = base if arm == "A" else torch.utils.data.ConcatDataset([base, vsepp_rows])
                args = vsepp_training_args(
                    config, out / "models" / f"vsepp_{arm}_seed{seed}", steps=steps, lr=config.vsepp_finetune_lr,
                    seed=seed, max_violation=config.vsepp_finetune_max_violation,
                )  # fmt: skip
                adapter = train_clip(load_adapter(biased_dir), dataset, args)
            with timer.step(f"retrieval: evaluate VSE++ {arm}, seed {seed}"):
                runs[arm].append(_lean(evaluate(adapter)))
    model = vsepp.base_model
    return {
        "model": {
            "parameters": int(sum(p.numel() for p in model.parameters())),
            "vocabulary": len(vsepp.processor.tokenizer),
            "image_layers": list(config.vsepp_layers),
            "embed_size": config.vsepp_embed_size,
            "finetune_loss": "max of hinges" if config.vsepp_finetune_max_violation else "sum of hinges",
        },
        "models": runs,
    }
