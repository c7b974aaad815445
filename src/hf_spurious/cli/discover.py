"""``hf-spurious discover``: rank candidate spurious attributes by accuracy discrepancy δ (spec §2.7).

With a detector::

    hf-spurious discover --model ./clip --data-dir /data/waterbirds --detector google/owlvit-base-patch32 \\
        --words words.txt --out discovery

With given attribute columns (e.g. Waterbirds ``place``)::

    hf-spurious discover --model ./clip --data-dir /data/waterbirds --attribute-column place

Writes ``discovery.json`` and ``discovery.md`` (the ranked table) into ``--out``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from hf_spurious.cache import atomic_write_text
from hf_spurious.cli._common import (
    ListAction,
    add_attribute_names,
    add_batch_size,
    add_class_names,
    add_data_dir,
    add_model,
    add_out,
    add_templates,
    positive_int,
    resolve_templates,
    words_from,
)
from hf_spurious.evaluation import classify_images
from hf_spurious.evaluation.discovery import (
    attribute_column_detections,
    detect_attributes,
    discover_spurious_attributes,
    load_detector,
    read_metadata_column,
)
from hf_spurious.models import load_adapter
from hf_spurious.models.registry import supported_model_types
from hf_spurious.records import ClassificationRecord
from hf_spurious.sources import read_waterbirds
from hf_spurious.vocab import load_vocabulary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model(
        parser,
        f"zero-shot classifier (class prompts): model id or checkpoint folder (model_type {supported_model_types()})",
    )
    add_data_dir(parser, "WILDS-layout folder (metadata.csv, images)", required=True)
    parser.add_argument("--split", default="train", help="split to analyse (the paper uses train)")
    add_class_names(parser)
    add_attribute_names(parser)
    add_templates(parser)
    src = parser.add_mutually_exclusive_group()
    src.add_argument(
        "--detector",
        default=None,
        help="open-vocabulary detector id or folder (OWL-ViT); this or --attribute-column is required "
        "(no default)",
    )
    src.add_argument(
        "--attribute-column",
        default=None,
        help="use this metadata.csv column as the attribute (e.g. place) instead of a detector (no default)",
    )
    parser.add_argument(
        "--words",
        action=ListAction,
        default=None,
        metavar="WORD",
        help="detector vocabulary: a file with one word a line, or a list (default: the COCO class names)",
    )
    parser.add_argument(
        "--threshold", type=float, default=0.1, help="a detection counts when its score is at least this"
    )
    parser.add_argument(
        "--query-template",
        default="a photo of a {}",
        help="the detector's text query for each word ({} = the word)",
    )
    parser.add_argument(
        "--min-detections",
        type=positive_int,
        default=10,
        help="an attribute is ranked for a class only when detected in at least this many of its images",
    )
    parser.add_argument(
        "--top-per-class",
        type=positive_int,
        default=5,
        help="keep this many attributes per class (highest mutual information with correctness)",
    )
    add_batch_size(parser, 16, "images per forward pass of the classifier and of the detector")
    parser.add_argument(
        "--max-images",
        type=positive_int,
        default=None,
        help="analyse only the first N images (smoke runs; default: all)",
    )
    add_out(parser, "discovery_results")


def detector_words(items: list[str] | None) -> list[str]:
    """``--words``: the given words (or the words of the given file), else the COCO class names."""
    if items is None:
        return list(load_vocabulary("coco").classes)
    words = words_from(items)
    if not words:
        raise SystemExit("error: --words gave no words")
    return words


def markdown(rows: list[dict[str, Any]], source: str) -> str:
    lines = [
        "# Candidate spurious attributes",
        "",
        f"Attributes from {source}; δ = acc(attribute present) − acc(absent), percentage points, highest first.",
        "",
        "| class | attribute | images | detections | MI | acc with | acc without | δ |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['class']} | {r['attribute']} | {r['images']} | {r['detections']} | {r['mutual_information']:.4f} "
            f"| {r['accuracy_with']:.1f} | {r['accuracy_without']:.1f} | {r['delta']:.1f} |"
        )
    if not rows:
        lines.append("| (none: no attribute passed min-detections and MI > 0) | | | | | | | |")
    return "\n".join(lines) + "\n"


def attribute_detections(
    args: argparse.Namespace, records: list[ClassificationRecord]
) -> tuple[np.ndarray, list[str], str]:
    """(detections bool (N, A), attribute names, where they came from): a metadata column or a detector."""
    if args.attribute_column is not None:
        if args.attribute_column in ("place", "attribute"):
            values: list[Any] = [r.attribute for r in records]
            value_names = dict(enumerate(args.attribute_names)) if args.attribute_column == "place" else None
        else:
            values = read_metadata_column(args.data_dir, args.attribute_column, [r.image_id for r in records])
            value_names = None
        detections, names = attribute_column_detections(values, args.attribute_column, value_names)
        return detections, names, f"the metadata column {args.attribute_column!r}"
    model, processor = load_detector(args.detector)
    names = detector_words(args.words)
    detections = detect_attributes(
        model,
        processor,
        [r.image_path for r in records],
        names,
        threshold=args.threshold,
        template=args.query_template,
        batch_size=args.batch_size,
    )
    return (
        detections,
        names,
        f"detector {args.detector} (query {args.query_template!r}, score >= {args.threshold})",
    )


def run(args: argparse.Namespace) -> int:
    """Classify zero-shot, find each image's attributes, rank them by δ; write discovery.json / .md."""
    if args.detector is None and args.attribute_column is None:
        raise SystemExit("error: pass --detector (OWL-ViT) or --attribute-column (e.g. place)")
    records = read_waterbirds(args.data_dir, args.split)
    if args.max_images is not None:
        records = records[: args.max_images]
    if not records:
        raise SystemExit(f"error: no {args.split} images in {args.data_dir}")
    class_names = list(args.class_names)
    adapter = load_adapter(args.model)
    labels = np.array([r.label for r in records])
    preds, _ = classify_images(
        adapter,
        [r.image_path for r in records],
        class_names,
        resolve_templates(args.templates),
        batch_size=args.batch_size,
    )
    detections, names, source = attribute_detections(args, records)
    rows = discover_spurious_attributes(
        labels,
        preds,
        detections,
        names,
        class_names,
        min_detections=args.min_detections,
        top_per_class=args.top_per_class,
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    payload = {
        "source": source,
        "split": args.split,
        "num_images": len(records),
        "accuracy": float(100.0 * (preds == labels).mean()),
        "detections_per_attribute": {n: int(c) for n, c in zip(names, detections.sum(axis=0))},
        "ranking": rows,
    }
    atomic_write_text(out / "discovery.json", json.dumps(payload, indent=1, default=float))
    (out / "discovery.md").write_text(markdown(rows, source), encoding="utf-8")
    print(f"wrote {out / 'discovery.json'} ({len(rows)} ranked attributes)")
    return 0
