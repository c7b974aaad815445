"""Fine-tune CLIP or BLIP for retrieval on D ∪ D′ (Kim et al., CVPRW 2023).

D is COCO / Flickr30k / SpuriousShapes (``--dataset``, ``--data_dir``); D′ is the output of the
counterfactual builder (``--counterfactual_dir``: a ``save_to_disk`` directory or parquet files with an
image and an edited caption column). Defaults are the paper's hyper-parameters per model:

* CLIP (preset ``retrieval-clip``): Adam, lr 2e-6, batch 256, 10 epochs, lr x0.5 every 2 epochs;
* BLIP (preset ``retrieval-blip``, chosen when the model is a BLIP): AdamW, lr 1e-5, batch 16, 2 epochs,
  lr x0.5 every half epoch, ITC + ITM losses;
* VSE++ (preset ``retrieval-vsepp``, chosen for a ``model_type: vsepp`` folder): Adam, lr 1e-4, batch 256,
  10 epochs, lr x0.5 every 2 epochs, triplet loss (margin 0.2, hardest negative).

    python examples/finetune_retrieval.py --model openai/clip-vit-base-patch32 --dataset coco \\
        --data_dir data/coco --counterfactual_dir runs/coco_decorrelated --output_dir runs/clip_coco
    accelerate launch --config_file examples/accelerate/ddp.yaml --num_processes 8 examples/finetune_retrieval.py ...
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from hf_spurious.cli.train import main


def _preset(model: str) -> str:
    """The paper's preset for the model family (the folder's config.json model_type, else the id)."""
    config = Path(model, "config.json")
    kind = json.loads(config.read_text()).get("model_type", "") if config.exists() else model.lower()
    if "blip" in kind:
        return "retrieval-blip"
    return "retrieval-vsepp" if "vsepp" in kind else "retrieval-clip"


if __name__ == "__main__":
    argv = sys.argv[1:]
    model = argv[argv.index("--model") + 1] if "--model" in argv else ""
    sys.exit(main(argv, preset=_preset(model)))
