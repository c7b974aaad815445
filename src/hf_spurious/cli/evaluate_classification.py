"""``hf-spurious evaluate --task classification``: group accuracies and AIoU on a WILDS-layout folder."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hf_spurious.cli._common import resolve_templates
from hf_spurious.evaluation import evaluate_classification, train_group_counts
from hf_spurious.metrics import WATERBIRDS_TRAIN_GROUP_COUNTS
from hf_spurious.models.adapters import VisionLanguageAdapter
from hf_spurious.sources import read_waterbirds

#: ``--train-counts`` keywords (anything else is a list of integers, one per group).
TRAIN_COUNT_KEYWORDS = ("train", "waterbirds", "none")


def train_counts_from(spec: Sequence[str], data_dir: Path) -> list[int] | None:
    """The adjusted-average weights ``--train-counts`` names (a keyword, or one count per group)."""
    if len(spec) == 1 and spec[0] in TRAIN_COUNT_KEYWORDS:
        if spec[0] == "none":
            return None
        if spec[0] == "waterbirds":
            return list(WATERBIRDS_TRAIN_GROUP_COUNTS)
        return train_group_counts(read_waterbirds(data_dir, "train"), num_groups=4)
    try:
        return [int(x) for x in spec]
    except ValueError:
        raise SystemExit(
            f"error: --train-counts {','.join(spec)!r}: use train, waterbirds, none or integers (one per group)"
        ) from None


def _compare_layers(spec: Sequence[str]) -> Sequence[str] | str:
    """``--compare-layers``: "auto", "none" (no comparison) or a list of layer names / module paths."""
    if list(spec) == ["auto"]:
        return "auto"
    return [] if list(spec) == ["none"] else list(spec)


def run_classification(
    args: argparse.Namespace,
    adapter: VisionLanguageAdapter,
    metrics: list[str],
    cache_dir: Path,
    out: Path,
) -> dict[str, Any]:
    """Group accuracies and / or AIoU (GradCAM overlays into ``<out>/gradcam``); settings in the results."""
    if not args.data_dir:
        raise SystemExit("error: --task classification needs --data-dir (a WILDS-layout Waterbirds folder)")
    data_dir = Path(args.data_dir)
    records = read_waterbirds(data_dir, args.split)
    class_names = list(args.class_names)
    attribute_names = list(args.attribute_names)
    group_names = [f"{c}/{a}" for c in class_names for a in attribute_names]  # group = label * 2 + attribute
    results = evaluate_classification(
        adapter, records, class_names, resolve_templates(args.templates), metrics=metrics,
        train_counts=train_counts_from(args.train_counts, data_dir), group_names=group_names,
        batch_size=args.batch_size, cache_dir=str(cache_dir), overlay_dir=str(out / "gradcam"),
        max_overlays=args.max_overlays, target_layer=args.target_layer,
        model_fingerprint=getattr(args, "model_fingerprint", None),
        compare_layers=_compare_layers(getattr(args, "compare_layers", ["auto"])),
    )  # fmt: skip
    results["settings"] = {
        "model": args.model,
        "data_dir": str(data_dir),
        "split": args.split,
        "templates": args.templates,
        "train_counts": ",".join(args.train_counts),
        "gradcam_layer": results.get("aiou", {}).get("layer"),
    }
    return results
