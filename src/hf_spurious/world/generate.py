"""SpuriousShapes: a procedurally drawn world with known, adjustable spurious structure.

Two variants, each written in a real on-disk format so the ordinary readers serve them:

- retrieval (``WorldConfig``): COCO-named glyphs on textured backgrounds with partner pairs
  (dog -> frisbee, ...) of strength ``p_partner``; COCO ``instances``/``captions`` files and a Karpathy
  ``dataset_coco.json``;
- classification (``ClassificationWorldConfig``): landbird/waterbird glyphs on land/water places in the
  WILDS Waterbirds layout (``metadata.csv``, images, ``segmentations/``), plus an optional captioned
  "web" pretraining set.

Every scene is a pure function of ``(seed, split, index)``, so ``load_world(dir).render_without(...)``
redraws the same scene minus some classes: the oracle counterfactual.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from hf_spurious.cache import atomic_write_text
from hf_spurious.world.config import FORMAT_VERSION, ClassificationWorldConfig, WorldConfig
from hf_spurious.world.layouts import write_classification, write_retrieval


def generate_world(config: WorldConfig | ClassificationWorldConfig, out_dir: str | Path) -> dict[str, Any]:
    """Write a world to ``out_dir`` in its real on-disk layout and return a summary of what was drawn.

    Same config (and seed) -> byte-identical files. The config is saved in ``world.json``, written last: it
    marks a complete world. Regenerating into a folder first removes the old ``world.json``, so a
    regeneration that is interrupted half-way is never read as a complete world.
    """
    if not isinstance(config, (WorldConfig, ClassificationWorldConfig)):
        raise ValueError(
            f"config must be a WorldConfig or ClassificationWorldConfig, got {type(config).__name__}"
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "world.json").unlink(missing_ok=True)
    if isinstance(config, WorldConfig):
        variant, summary = "retrieval", write_retrieval(config, out)
    else:
        variant, summary = "classification", write_classification(config, out)
    meta = {"variant": variant, "format_version": FORMAT_VERSION, "config": dataclasses.asdict(config)}
    atomic_write_text(out / "world.json", json.dumps(meta, indent=2) + "\n")
    return {"variant": variant, "out_dir": str(out), "seed": config.seed, **summary}
