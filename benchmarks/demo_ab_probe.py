"""Why does a demo family gain (or not) from D′? Fine-tune A (D) and B (D ∪ D′) from a finished demo's biased
checkpoint with another loss or learning rate, and print B − A ODmAP@1 and how far the model moved.

The README's VSE++ diagnosis came from these runs (seed 0, 2 threads, on the folder of ``hf-spurious demo``)::

    python benchmarks/demo_ab_probe.py demo_output --family vsepp --lr 2e-4           # the demo's setting
    python benchmarks/demo_ab_probe.py demo_output --family vsepp --lr 1e-3
    python benchmarks/demo_ab_probe.py demo_output --family vsepp --loss clip --lr 2e-4
    python benchmarks/demo_ab_probe.py demo_output --family clip --loss triplet --lr 3e-4

``--loss clip`` on VSE++ uses InfoNCE at temperature 0.07 (its logit scale set to 1 / 0.07, not trained);
``--loss triplet`` sums VSE++'s hinges (margin 0.2). "Moved" is the mean cosine between the image embeddings
of the first 300 training images before and after fine-tuning.
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np
import torch

FOLDERS = {"clip": "retrieval_biased", "vsepp": "vsepp_biased"}


def _args(config, family: str, loss: str, out: Path, lr: float, steps: int):
    from hf_spurious.demo.models import clip_training_args
    from hf_spurious.demo.vsepp import vsepp_training_args

    if family == "vsepp":
        args = vsepp_training_args(config, out, steps=steps, lr=lr, seed=config.seed, finetune=True)
    else:
        args = clip_training_args(config, out, steps=steps, lr=lr, seed=config.seed, max_grad_norm=1.0)
    if loss == "clip":
        args.retrieval_loss = "clip"
    elif loss == "triplet":
        args.retrieval_loss, args.triplet_margin, args.triplet_max_violation = "triplet", 0.2, False
        args.learn_logit_scale = False
    return args


def _finetune(config, biased_dir: Path, dataset, args, set_scale: bool):
    from hf_spurious.demo.config import seed_everything
    from hf_spurious.models import load_adapter
    from hf_spurious.training import SpuriousAwareTrainer

    seed_everything(config.seed)
    adapter = load_adapter(biased_dir)
    if set_scale:  # InfoNCE on VSE++: a CLIP-like fixed temperature instead of VSE++'s scale 1
        with torch.no_grad():
            adapter.model.logit_scale.fill_(math.log(1 / 0.07))
    trainer = SpuriousAwareTrainer(model=adapter, args=args, train_dataset=dataset)
    trainer.train()
    trainer.adapter.model.eval()
    return trainer.adapter


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("demo_dir", type=Path, help="output folder of a finished `hf-spurious demo` run")
    parser.add_argument(
        "--family", choices=sorted(FOLDERS), default="vsepp", help="model family (default vsepp)"
    )
    parser.add_argument(
        "--loss", choices=("own", "clip", "triplet"), default="own", help="(default: its own)"
    )
    parser.add_argument("--lr", type=float, default=2e-4, help="fine-tuning learning rate (default 2e-4)")
    parser.add_argument("--steps", type=int, default=150, help="fine-tuning steps (default 150)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    opts = parser.parse_args()
    torch.set_num_threads(opts.threads)
    from hf_spurious.demo.arms import evaluate_model
    from hf_spurious.demo.config import DemoConfig, StepTimer
    from hf_spurious.demo.models import RandomCaptionImages, pixel_values_of
    from hf_spurious.demo.retrieval_data import prepare_retrieval
    from hf_spurious.models import load_adapter

    config = DemoConfig(workers=1, threads=opts.threads, progress_bars=False)
    data = prepare_retrieval(config, opts.demo_dir, StepTimer(echo=False), [])  # cached by the demo run
    biased_dir = opts.demo_dir / "models" / FOLDERS[opts.family] / "checkpoint"
    biased = load_adapter(biased_dir)
    pixels = pixel_values_of(biased, data.train_images)
    d_prime = [
        {**r, "pixel_values": p} for r, p in zip(data.d_prime, pixel_values_of(biased, data.d_prime_images))
    ]
    probe = data.train_images[:300]
    before = np.asarray(biased.embed_images(probe))
    odmap = {}
    for arm in ("A", "B"):
        base = RandomCaptionImages(data.records["train"], config.seed, pixels)
        dataset = base if arm == "A" else torch.utils.data.ConcatDataset([base, d_prime])
        out = opts.demo_dir / "probes" / f"{opts.family}-{opts.loss}-{opts.lr:g}-{arm}"
        args = _args(config, opts.family, opts.loss, out, opts.lr, opts.steps)
        adapter = _finetune(config, biased_dir, dataset, args, opts.family == "vsepp" and opts.loss == "clip")
        moved = float((before * np.asarray(adapter.embed_images(probe))).sum(1).mean())
        run = evaluate_model(adapter, data.evaluation, opts.demo_dir / "cache", config.eval_batch_size)
        odmap[arm] = [run["sets"][f"partner/{m}"]["odmap@1"] for m in ("inpainted", "oracle")]
        print(f"{arm}: ODmAP@1 partner removed {odmap[arm][0]:.1f} / {odmap[arm][1]:.1f}, "
              f"R@1 {run['recall']['i2t@1']:.1f} / {run['recall']['t2i@1']:.1f}, moved: mean cos {moved:.3f}")  # fmt: skip
    gain = [b - a for a, b in zip(odmap["A"], odmap["B"])]
    print(f"{opts.family}, loss {opts.loss}, lr {opts.lr:g}: B - A {gain[0]:+.1f} / {gain[1]:+.1f}")


if __name__ == "__main__":
    main()
