"""Epoch time of projection-only fine-tuning with cached frozen features vs recomputing the encoders.

Setting: a demo-sized random CLIP (64 px, patch 8, hidden 128, 4 layers per tower), a SpuriousShapes
classification world in the WILDS layout (PNG files read from disk), the Yang et al. README variant
L_CLIP + L_vc + L_lc + L_ls with the 80 templates, batch 128, group-balanced sampling. "Uncached" runs the
vision tower on every image and the text tower on the 80 x 2 class prompts and 80 x 2 attribute prompts
at every step (as the released code does); "cached" trains the projections on features computed once.

Run: ``.venv/bin/python benchmarks/training.py [--n 1024 --epochs 2 --threads 2]``; writes the
"training" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
from _report import write_section

from hf_spurious.models.tiny import save_tiny
from hf_spurious.sources import read_waterbirds
from hf_spurious.training import SpuriousAwareTrainer, SpuriousTrainingArguments
from hf_spurious.training.rows import classification_rows
from hf_spurious.world import ClassificationWorldConfig, generate_world


def _args(out: Path, cached: bool, epochs: int) -> SpuriousTrainingArguments:
    return SpuriousTrainingArguments(
        output_dir=str(out),
        class_names=["landbird", "waterbird"],
        attribute_names=["land", "water"],
        clip_weight=1.0,
        image_class_weight=1.0,
        text_class_weight=1.0,
        text_spurious_weight=1.0,
        sampling="group_balanced",
        per_device_train_batch_size=128,
        num_train_epochs=epochs,
        learning_rate=1e-3,
        use_cached_features=cached,
        feature_cache_dir=str(out / "cache"),
        save_strategy="no",
        logging_steps=1000,
        use_cpu=True,
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        seed=0,
    )


def run(n: int, epochs: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        world = root / "world"
        generate_world(
            ClassificationWorldConfig(train_size=n, val_size=40, test_size=40, pretrain_size=0), world
        )
        rows = classification_rows(read_waterbirds(world, "train"))
        model = save_tiny("clip", root / "clip", image_size=64, patch_size=8, hidden_size=128, num_layers=4)
        times: dict[str, float] = {}
        for cached in (True, False):
            start = time.perf_counter()
            trainer = SpuriousAwareTrainer(
                str(model), _args(root / f"out{cached}", cached, epochs), train_dataset=rows
            )
            setup = time.perf_counter() - start
            result = trainer.train()
            name = "cached" if cached else "uncached"
            times[f"{name}_setup_s"] = setup
            times[f"{name}_epoch_s"] = result.metrics["train_runtime"] / epochs
        return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1024, help="training images")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    ns = parser.parse_args()
    torch.set_num_threads(ns.threads)
    t = run(ns.n, ns.epochs)
    speedup = t["uncached_epoch_s"] / t["cached_epoch_s"]
    md = f"""## Training: cached frozen features vs recomputed encoders (`benchmarks/training.py`)

{ns.n} train images (64 px PNG), demo-sized random CLIP (hidden 128, 4 layers), L_CLIP + L_vc + L_lc + L_ls,
80 templates, batch 128, group-balanced sampling, projection-only, {ns.epochs} epochs, {ns.threads} torch threads.

| mode | one-off setup (s) | time per epoch (s) |
| --- | ---: | ---: |
| cached features | {t["cached_setup_s"]:.2f} (includes computing the cache) | {t["cached_epoch_s"]:.3f} |
| uncached (encoders every step) | {t["uncached_setup_s"]:.2f} | {t["uncached_epoch_s"]:.2f} |

**Speed-up per epoch: {speedup:.0f}x** (target >= 10x). The cache is built once per (model, data)
fingerprint and reused by later runs.
"""
    write_section("training", md)
    print(md)


if __name__ == "__main__":
    main()
