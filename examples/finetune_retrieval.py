"""Fine-tune CLIP or BLIP for retrieval on D ∪ D′ (Kim et al., CVPRW 2023).

D is COCO / Flickr30k / SpuriousShapes (``--dataset``, ``--data_dir``); D′ is the output of the
counterfactual builder (``--counterfactual_dir``: a ``save_to_disk`` directory or parquet files with an
image and an edited caption column). Defaults are the paper's hyper-parameters per model:

* CLIP (preset ``retrieval-clip``): Adam, lr 2e-6, batch 256, 10 epochs, lr x0.5 every 2 epochs;
* BLIP (preset ``retrieval-blip``, chosen when the model is a BLIP): AdamW, lr 1e-5, batch 16, 2 epochs,
  lr x0.5 every half epoch, ITC + ITM losses.

    python examples/finetune_retrieval.py --model openai/clip-vit-base-patch32 --dataset coco \\
        --data_dir data/coco --counterfactual_dir runs/coco_decorrelated --output_dir runs/clip_coco
    accelerate launch --config_file examples/accelerate/ddp.yaml examples/finetune_retrieval.py ...
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from hf_spurious.cli.train import main


def _is_blip(model: str) -> bool:
    config = Path(model, "config.json")
    if config.exists():
        return "blip" in json.loads(config.read_text()).get("model_type", "")
    return "blip" in model.lower()


if __name__ == "__main__":
    argv = sys.argv[1:]
    model = argv[argv.index("--model") + 1] if "--model" in argv else ""
    sys.exit(main(argv, preset="retrieval-blip" if _is_blip(model) else "retrieval-clip"))
