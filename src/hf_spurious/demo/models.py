"""The demo's tiny CLIPs: a tokenizer vocabulary from the world's captions, a seeded random model, its
training with the L_CLIP loss of ``SpuriousAwareTrainer``, and D as preprocessed rows with random captions.

Shared by the retrieval and classification halves (both pretrain a biased tiny CLIP from scratch).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hf_spurious.images import load_rgb
from hf_spurious.models import load_adapter
from hf_spurious.models.adapters import VisionLanguageAdapter
from hf_spurious.models.tiny import tiny_clip
from hf_spurious.training import SpuriousAwareTrainer, SpuriousTrainingArguments

from .config import DemoConfig, seed_everything

_WORD = re.compile(r"[a-z]+")


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


def pixel_values_of(
    adapter: VisionLanguageAdapter, images: Sequence[np.ndarray], batch_size: int = 1024
) -> torch.Tensor:
    """The model's image processor run once over decoded images: ``(N, 3, H, W)`` float32 on the CPU."""
    chunks = [
        adapter.preprocess_images(images[i : i + batch_size]).cpu() for i in range(0, len(images), batch_size)
    ]
    return torch.cat(chunks) if chunks else torch.empty(0)


def clip_training_args(
    config: DemoConfig,
    output_dir: Path,
    *,
    steps: int,
    lr: float,
    seed: int,
    max_grad_norm: float,
    weight_decay: float = 0.1,
    **loss_settings: Any,
) -> SpuriousTrainingArguments:
    """Retrieval training of a whole tiny model (AdamW, 10 % warm-up, cosine decay): L_CLIP by default,
    another retrieval loss through ``loss_settings`` (e.g. ``retrieval_loss="triplet"`` for VSE++)."""
    return SpuriousTrainingArguments(
        **loss_settings,
        output_dir=str(output_dir),
        task="retrieval",
        freeze_policy="full",
        use_cached_features=False,
        clip_weight=1.0,
        templates=["{}"],
        max_steps=steps,
        per_device_train_batch_size=config.batch_size,
        learning_rate=lr,
        weight_decay=weight_decay,
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
        disable_tqdm=not config.progress_bars,
    )


def train_clip(
    adapter: VisionLanguageAdapter, dataset: Any, args: SpuriousTrainingArguments
) -> VisionLanguageAdapter:
    """Train ``adapter`` in place with the L_CLIP loss of ``SpuriousAwareTrainer``; returns the adapter."""
    seed_everything(args.seed)
    trainer = SpuriousAwareTrainer(model=adapter, args=args, train_dataset=dataset)
    trainer.train()
    adapter.model.eval()
    return trainer.adapter


def new_clip(config: DemoConfig, words: Sequence[str]) -> VisionLanguageAdapter:
    """A random tiny CLIP of the demo's sizes (seeded), tokenizer built from ``words``, as an adapter."""
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
    adapter: VisionLanguageAdapter,
    dataset: Any,
    out_dir: Path,
    *,
    steps: int,
    lr: float,
    max_grad_norm: float,
) -> Path:
    """Train a :func:`new_clip` from scratch on a biased set (L_CLIP); save it with ``save_pretrained``."""
    args = clip_training_args(
        config, out_dir / "trainer", steps=steps, lr=lr, seed=config.seed, max_grad_norm=max_grad_norm
    )
    return Path(train_clip(adapter, dataset, args).save_pretrained(out_dir / "checkpoint"))
