"""Fine-tune CLIP on Waterbirds (WILDS layout) with the spurious-aware losses of Yang et al. (ICML 2023).

Defaults are the authors' README settings (preset ``waterbirds``): SGD momentum 0.9, lr 1e-4, weight
decay 1e-5, 300 epochs, batch 128 (use 32 for ViT-L/14@336), no scheduler, group-balanced sampling,
projection-only training on cached frozen features, L_CLIP + L_vc + L_lc + L_ls, and the checkpoint with
the best validation worst-group accuracy. (The paper's text says lr 1e-5 / wd 1e-4; pass those flags to
use them.) For the L_vs variant: ``--text_spurious_weight 0 --image_spurious_weight 1``.

    python examples/finetune_waterbirds.py --model openai/clip-vit-base-patch32 \\
        --data_dir data/waterbird_complete95_forest2water2 --output_dir runs/waterbirds
    accelerate launch --config_file examples/accelerate/ddp.yaml --num_processes 8 examples/finetune_waterbirds.py ...
    accelerate launch --config_file examples/accelerate/ddp_cpu.yaml examples/finetune_waterbirds.py ...  # 2 CPU processes

Every ``SpuriousTrainingArguments`` field is a flag; ``--help`` lists them.
"""

from __future__ import annotations

import sys

from hf_spurious.cli.train import main

if __name__ == "__main__":
    argv = sys.argv[1:]
    if "--dataset" not in argv:
        argv += ["--dataset", "waterbirds"]
    sys.exit(main(argv, preset="waterbirds"))
