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

from hf_spurious.models import load_adapter
from hf_spurious.models.adapters import VisionLanguageAdapter
from hf_spurious.models.tiny import tiny_vsepp
from hf_spurious.training import SpuriousTrainingArguments

from .arms import Family, lean, run_family
from .config import DemoConfig, StepTimer, seed_everything
from .models import clip_training_args
from .retrieval_data import RetrievalData


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
    config: DemoConfig, output_dir: Path, *, steps: int, lr: float, seed: int, finetune: bool
) -> SpuriousTrainingArguments:
    """Triplet-loss training of the whole tiny VSE++ (Adam = AdamW without weight decay, 10 % warm-up, cosine):
    pretraining sums the hinges, fine-tuning takes the hardest negative when ``vsepp_finetune_max_violation``."""
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
        triplet_max_violation=finetune and config.vsepp_finetune_max_violation,
        learn_logit_scale=False,
    )


def run_vsepp(config: DemoConfig, out: Path, timer: StepTimer, data: RetrievalData) -> dict[str, Any]:
    """The A/B protocol with the tiny VSE++: the ``retrieval.vsepp`` part of ``results.json`` (the model's
    sizes and ``models`` = ``{"biased": [run], "A": [...], "B": [...]}``, evaluated like the tiny CLIP)."""
    family = Family(
        "vsepp", "tiny VSE++", new_vsepp, vsepp_training_args, config.vsepp_pretrain_steps,
        config.vsepp_pretrain_lr, config.vsepp_finetune_steps, config.vsepp_finetune_lr,
    )  # fmt: skip
    runs, vsepp = run_family(config, out, timer, data, family)
    model = vsepp.base_model
    return {
        "model": {
            "parameters": int(sum(p.numel() for p in model.parameters())),
            "vocabulary": len(vsepp.processor.tokenizer),
            "image_layers": list(config.vsepp_layers),
            "embed_size": config.vsepp_embed_size,
            "finetune_loss": "max of hinges" if config.vsepp_finetune_max_violation else "sum of hinges",
        },
        "models": lean(runs),
    }
