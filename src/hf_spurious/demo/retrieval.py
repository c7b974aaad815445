"""Retrieval with the tiny CLIP: biased model -> ODmAP@k on counterfactual queries -> A (D) vs B (D ∪ D′).

The A/B protocol is :func:`.arms.run_family` (shared with the tiny VSE++ and BLIP); this module adds the
CLIP family, the retrieval part of ``results.json`` and the report's example queries.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hf_spurious.images import load_rgb
from hf_spurious.models.adapters import VisionLanguageAdapter
from hf_spurious.records import SceneRecord
from hf_spurious.training import SpuriousTrainingArguments
from hf_spurious.vocab import load_vocabulary

from .arms import Family, Runs, lean, run_family
from .config import DemoConfig, StepTimer
from .models import caption_words, clip_training_args, new_clip
from .report import Visuals
from .retrieval_data import RetrievalData

if TYPE_CHECKING:
    import datasets


def _new_clip(config: DemoConfig, captions: Sequence[str]) -> VisionLanguageAdapter:
    return new_clip(config, caption_words(captions))


def _clip_args(
    config: DemoConfig, output_dir: Path, *, steps: int, lr: float, seed: int, finetune: bool
) -> SpuriousTrainingArguments:
    return clip_training_args(
        config, output_dir, steps=steps, lr=lr, seed=seed, max_grad_norm=config.max_grad_norm
    )


def clip_family(config: DemoConfig) -> Family:
    """The tiny CLIP (L_CLIP, AdamW) with the demo's steps and learning rates."""
    return Family(
        "retrieval", "tiny CLIP", _new_clip, _clip_args,
        config.pretrain_steps, config.pretrain_lr, config.finetune_steps, config.finetune_lr,
    )  # fmt: skip


def run_clip(
    config: DemoConfig, out: Path, timer: StepTimer, data: RetrievalData, visuals: Visuals
) -> dict[str, Any]:
    """Expose and mitigate with the tiny CLIP on the prepared retrieval world (the ``retrieval`` results)."""
    runs, _ = run_family(config, out, timer, data, clip_family(config))
    _collect_visuals(config, visuals, data.records["test"], data.built, runs)
    queries = data.evaluation["queries"]
    return {
        "world": data.world,
        "queries": {p: len(queries[f"{p}/inpainted"].images) for p in ("partner", "random", "anchor")},
        "gallery_size": len(data.captions),
        "d_prime": len(data.d_prime),
        "tokenizer_words": len(caption_words(data.all_captions)),
        "models": lean(runs),
    }


# ------------------------------------------------------------------------------------------ report material


def _collect_visuals(
    config: DemoConfig,
    visuals: Visuals,
    test_records: Sequence[SceneRecord],
    built: dict[tuple[str, str], datasets.Dataset],
    runs: Runs,
) -> None:
    """Triples (original / inpainted / oracle) and top-3 rankings before and after mitigation, of the same
    queries: first those whose biased top-1 names the removed object, then the others, in query order."""
    vocab = load_vocabulary("shapes")
    by_id = {str(r.image_id): r for r in test_records}
    inpainted, oracle = built[("partner", "inpainted")], built[("partner", "oracle")]
    biased_rank = runs["biased"][0]["_rankings"]["partner/inpainted"]
    named = [q for q, r in enumerate(biased_rank) if r["top"] and r["top"][0]["names_removed"]]
    picked = (named + [q for q in range(len(biased_rank)) if q not in set(named)])[: config.examples]
    models = [("biased", runs["biased"][0])] + [(arm, runs[arm][0]) for arm in ("A", "B") if runs[arm]]
    for q in picked:
        row, orow = inpainted[q], oracle[q]
        visuals.triples.append(
            {
                "original": np.asarray(load_rgb(by_id[str(row["source_image_id"])].image_path)),
                "inpainted": np.asarray(row["image"].convert("RGB")),
                "oracle": np.asarray(orow["image"].convert("RGB")),
                "caption": row["source_caption"],
                "edited": row["caption"],
                "removed": list(row["removed_classes"]),
                "query": q,
            }
        )
        removed = set(biased_rank[q]["removed_classes"])
        rankings = {
            name: [
                {
                    "text": t["caption"],
                    "spans": [(s, e) for s, e, c in vocab.mentions(t["caption"]) if c in removed],
                }
                for t in run["_rankings"]["partner/inpainted"][q]["top"][:3]
            ]
            for name, run in models
        }
        visuals.retrieval_examples.append(
            {
                "image": np.asarray(row["image"].convert("RGB")),
                "removed": sorted(removed),
                "present": biased_rank[q]["present_classes"],
                "rankings": rankings,
                "query": q,
            }
        )
