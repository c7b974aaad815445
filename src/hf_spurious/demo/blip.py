"""The demo's BLIP arm (``--blip``): a tiny BLIP "pretrained" on the biased retrieval world, fine-tuned A (D)
vs B (D ∪ D′).

BLIP is the second model family of Kim et al.'s Table 1 (ViT + BERT with cross-attention, ITC + ITM). The
stand-in is :func:`~hf_spurious.models.tiny.tiny_blip_retrieval` at the demo's image size (64 px, patch 8),
with a BERT word tokenizer of the world's captions, trained by ``SpuriousAwareTrainer`` with Kim et al.'s
BLIP loss: the contrastive ITC term (``retrieval_loss="auto"`` = the adapter's L_CLIP on ``cos / temp``,
the temperature clamped by the trainer's ``TemperatureClamp``) plus the ITM term on hard negatives
(``itm_weight``). Pretraining, A and B use AdamW with a cosine schedule; A and B share the steps, learning
rate and seed. It is evaluated like the tiny CLIP and VSE++ (:func:`~.arms.evaluate_model`), ranked
by ITC similarity, optionally re-ranked by the ITM head (``blip_rerank_top_n``, off by default).

Measured at the defaults (seed 0, one torch thread, a busy 2-core machine): 240 s for the arm, about 0.3 s
per training step (ITM triples the cost of a step: 0.26 vs 0.10 s without it in a probe). The model is weak:
Recall@1 about 1 %, the ITM loss stays at the entropy of its 1:2 labels (0.637, the head predicts the
prior) and the ITC loss ends at 3.4 against ln 64 = 4.2; ITM re-ranking with such a head would only add
noise and time, hence off.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from hf_spurious.models import load_adapter
from hf_spurious.models.adapters import VisionLanguageAdapter
from hf_spurious.models.tiny import tiny_blip_retrieval
from hf_spurious.training import SpuriousTrainingArguments

from .arms import Family, lean, run_family
from .config import DemoConfig, StepTimer, seed_everything
from .models import caption_words, clip_training_args
from .retrieval_data import RetrievalData


def new_blip(config: DemoConfig, captions: Sequence[str]) -> VisionLanguageAdapter:
    """A random tiny BLIP retrieval model of the demo's BLIP sizes (seeded), tokenizer from the captions' words."""
    seed_everything(config.seed)
    model, processor = tiny_blip_retrieval(
        caption_words(captions),
        image_size=config.image_size,
        patch_size=config.patch_size,
        hidden_size=config.blip_hidden_size,
        num_layers=config.blip_num_layers,
        num_heads=config.blip_num_heads,
        projection_dim=config.blip_projection_dim,
        intermediate_size=config.blip_intermediate_size,
        seed=config.seed,
    )
    return load_adapter(model, processor)


def blip_training_args(
    config: DemoConfig, output_dir: Path, *, steps: int, lr: float, seed: int, finetune: bool = False
) -> SpuriousTrainingArguments:
    """ITC + ITM training of the whole tiny BLIP (AdamW, BLIP's weight decay 0.05, 10 % warm-up, cosine)."""
    return clip_training_args(
        replace(config, batch_size=config.blip_batch_size),
        output_dir,
        steps=steps,
        lr=lr,
        seed=seed,
        max_grad_norm=config.max_grad_norm,
        weight_decay=0.05,
        retrieval_loss="auto",
        itm_weight=config.blip_itm_weight,
    )


def _model_summary(config: DemoConfig, blip: VisionLanguageAdapter) -> dict[str, Any]:
    model = blip.base_model
    return {
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "vocabulary": len(blip.processor.tokenizer),
        "hidden_size": config.blip_hidden_size,
        "layers": config.blip_num_layers,
        "projection_dim": config.blip_projection_dim,
        "batch_size": config.blip_batch_size,
        "loss": f"ITC + {config.blip_itm_weight:g} x ITM",
        "rerank_top_n": config.blip_rerank_top_n or None,
        "biased_temperature": round(float(blip.temp.detach()), 4),  # the ITC temp after pretraining
    }


def run_blip(config: DemoConfig, out: Path, timer: StepTimer, data: RetrievalData) -> dict[str, Any]:
    """The A/B protocol with the tiny BLIP: the ``retrieval.blip`` part of ``results.json`` (the model's
    sizes and ``models`` = ``{"biased": [run], "A": [...], "B": [...]}``, evaluated like the tiny CLIP)."""
    family = Family(
        "blip", "tiny BLIP", new_blip, blip_training_args, config.blip_pretrain_steps, config.blip_pretrain_lr,
        config.blip_finetune_steps, config.blip_finetune_lr, rerank_top_n=config.blip_rerank_top_n or None,
    )  # fmt: skip
    runs, blip = run_family(config, out, timer, data, family)
    return {"model": _model_summary(config, blip), "models": lean(runs)}
