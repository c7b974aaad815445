"""The demo's settings and step bookkeeping: :class:`DemoConfig`, :class:`StepTimer`, :func:`seed_everything`."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from hf_spurious.world import ClassificationWorldConfig, WorldConfig


@dataclass
class DemoConfig:
    """Every size, budget and world knob of the demo (defaults: the measured full demo, 584 s on 2 cores, 2 workers)."""

    seed: int = 0
    seeds: int = 1
    threads: int = 2  # torch threads in all; each job runs with threads // workers (the numbers depend on it)
    workers: int = 2  # processes running the three jobs side by side; 1 = one after another in this process
    progress_bars: bool = True  # tqdm bars of the training steps (off inside side-by-side workers)
    # retrieval world (COCO layout)
    train_size: int = 3000
    val_size: int = 500
    test_size: int = 500
    image_size: int = 64
    p_partner: float = 0.9
    pair_naming: float = 0.75
    # tiny CLIP
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    patch_size: int = 8
    intermediate_size: int = 256  # MLP width 2 x hidden: 30 % less compute per step than 4 x (measured)
    projection_dim: int = 64
    # retrieval training
    batch_size: int = 128
    pretrain_steps: int = 400
    pretrain_lr: float = 5e-4
    finetune_steps: int = 150
    finetune_lr: float = 3e-4
    max_grad_norm: float = 1.0  # the Trainer default; measured: without clipping the biased model is weaker
    eval_batch_size: int = 512
    # tiny VSE++ (Kim et al.'s third family: VGG-layout CNN + bidirectional GRU, triplet loss)
    vsepp: bool = True  # run the VSE++ arm (pretrain, A, B) beside the tiny CLIP
    vsepp_layers: tuple[int | str, ...] = (8, "M", 16, "M", 32, "M", 64, "M")  # conv widths, "M" = max-pool
    vsepp_fc_size: int = 256  # the "fc6 / fc7" width
    vsepp_embed_size: int = 128  # joint space = GRU width
    vsepp_word_dim: int = 64
    vsepp_pretrain_steps: int = 400
    vsepp_pretrain_lr: float = 1e-3  # a 150-step probe at 5e-4 left R@1 at 1 %: VSE++ learns slower than CLIP
    vsepp_finetune_steps: int = 150
    vsepp_finetune_lr: float = 2e-4
    # Fine-tuning sums the hinges: VSE++'s hardest negative (Kim et al.'s setting) collapsed the weak tiny model
    # (seed 0: loss -> 2 x margin, R@1 4.0 -> 1.8 in A and B alike; the world's templated captions make the
    # hardest negative of a batch a caption of the same content).
    vsepp_finetune_max_violation: bool = False
    vsepp_max_grad_norm: float = 2.0  # VSE++'s gradient clipping
    # tiny BLIP (Kim et al.'s second family: ViT + BERT with cross-attention, ITC + ITM); off unless --blip
    blip: bool = False  # run the BLIP arm (pretrain, A, B) beside the tiny CLIP and VSE++
    blip_hidden_size: int = 64  # both towers (the text encoder cross-attends to the image states)
    blip_num_layers: int = 2  # per tower
    blip_num_heads: int = 4
    blip_intermediate_size: int = 128  # MLP width 2 x hidden, as the tiny CLIP's
    blip_projection_dim: int = 64  # the ITC space
    blip_batch_size: int = 64  # ITM encodes 3 x batch cross-attended pairs per step
    blip_pretrain_steps: int = 400
    blip_pretrain_lr: float = 5e-4
    blip_finetune_steps: int = 150
    blip_finetune_lr: float = 3e-4
    blip_itm_weight: float = 1.0  # Kim et al.'s BLIP loss: ITC + ITM
    blip_rerank_top_n: int = 0  # ITM re-ranking depth at evaluation (0: ITC ranking only)
    # classification world (Waterbirds layout)
    cls_train_size: int = 4795
    cls_val_size: int = 1200
    cls_test_size: int = 1200
    cls_pretrain_size: int = 9600
    cls_world: dict[str, Any] = field(default_factory=dict)  # extra ClassificationWorldConfig knobs
    cls_pretrain_steps: int = 450
    cls_pretrain_lr: float = 5e-4
    cls_max_grad_norm: float = 1.0  # the classification world is calibrated with clipping at 1.0
    cls_epochs: int = 20
    cls_lr: float = 1e-3
    cls_batch_size: int = 128
    gradcam_images: int = 1200  # test images scored for AIoU (all of them by default)
    # calibration bands (classification zero-shot worst-group, retrieval gallery answerability)
    zero_shot_worst_band: tuple[float, float] = (10.0, 50.0)
    # report
    examples: int = 4
    quick: bool = False

    @classmethod
    def quick_preset(cls, **overrides: Any) -> DemoConfig:
        """Tiny sizes and budgets for CI: every step runs, numbers mean nothing."""
        base = cls(
            train_size=120,
            val_size=30,
            test_size=60,
            hidden_size=32,
            num_layers=1,
            num_heads=2,
            projection_dim=16,
            intermediate_size=64,
            batch_size=32,
            pretrain_steps=6,
            finetune_steps=4,
            cls_train_size=160,
            cls_val_size=40,
            cls_test_size=40,
            cls_pretrain_size=160,
            cls_pretrain_steps=6,
            cls_epochs=2,
            cls_batch_size=32,
            gradcam_images=16,
            vsepp_layers=(4, "M", 8, "M"),
            vsepp_fc_size=16,
            vsepp_embed_size=16,
            vsepp_word_dim=8,
            vsepp_pretrain_steps=4,
            vsepp_finetune_steps=3,
            blip_hidden_size=16,
            blip_num_layers=1,
            blip_num_heads=2,
            blip_intermediate_size=32,
            blip_projection_dim=16,
            blip_batch_size=16,
            blip_pretrain_steps=4,
            blip_finetune_steps=3,
            examples=2,
            quick=True,
        )
        return replace(base, **overrides)

    @property
    def finetune_seeds(self) -> list[int]:
        return [self.seed + i for i in range(self.seeds)]

    def retrieval_world_config(self) -> WorldConfig:
        """The retrieval ``WorldConfig`` of the demo (sizes, seed, co-occurrence strength, co-naming)."""
        return WorldConfig(
            train_size=self.train_size,
            val_size=self.val_size,
            test_size=self.test_size,
            image_size=self.image_size,
            seed=self.seed,
            p_partner=self.p_partner,
            p_co_name=self.pair_naming,
        )

    def classification_world_config(self) -> ClassificationWorldConfig:
        """The ``ClassificationWorldConfig`` of the demo (sizes, seed and the ``cls_world`` calibration knobs)."""
        return ClassificationWorldConfig(
            train_size=self.cls_train_size,
            val_size=self.cls_val_size,
            test_size=self.cls_test_size,
            pretrain_size=self.cls_pretrain_size,
            image_size=self.image_size,
            seed=self.seed,
            **self.cls_world,
        )


def load_average() -> str:
    """The 1/5/15-minute load averages, as ``uptime`` prints them (the machine may be shared)."""
    try:
        return " / ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:  # pragma: no cover - platform without getloadavg
        return "n/a"


class StepTimer:
    """Times named steps, prints one line per step, and keeps them for ``results.json``."""

    def __init__(self, echo: bool = True) -> None:
        self.records: list[dict[str, Any]] = []
        self.echo = echo
        self.start = time.perf_counter()

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        if self.echo:
            print(f"[demo] {name} ...", flush=True)
        t0 = time.perf_counter()
        yield
        seconds = time.perf_counter() - t0
        self.records.append({"step": name, "seconds": round(seconds, 2), "load": load_average()})
        if self.echo:
            print(f"[demo] {name}: {seconds:.1f} s (load {load_average()})", flush=True)

    @property
    def total(self) -> float:
        return time.perf_counter() - self.start


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU) for a deterministic step."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
