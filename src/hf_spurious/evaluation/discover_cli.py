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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        required=True,
        help="classifier: CLIP model id or checkpoint folder (zero-shot with class prompts)",
    )
    parser.add_argument("--data-dir", required=True, help="WILDS-layout folder (metadata.csv, images)")
    parser.add_argument("--split", default="train", help="split to analyse (the paper uses train)")
    parser.add_argument(
        "--class-names", default="landbird,waterbird", help="class names for the prompts, in label order"
    )
    parser.add_argument(
        "--templates",
        default="simple",
        help="'default' (80 CLIP templates), 'simple' or a file with one template per line",
    )
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--detector", default=None, help="open-vocabulary detector id or folder (OWL-ViT)")
    src.add_argument(
        "--attribute-column", default=None, help="use this metadata.csv column as the attribute (e.g. place)"
    )
    parser.add_argument(
        "--words",
        default=None,
        help="detector vocabulary: a file with one word a line, or a comma list (default: the COCO class names)",
    )
    parser.add_argument("--threshold", type=float, default=0.1, help="detection score threshold")
    parser.add_argument("--query-template", default="a photo of a {}", help="detector text query")
    parser.add_argument("--min-detections", type=int, default=10)
    parser.add_argument("--top-per-class", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument(
        "--max-images", type=int, default=None, help="analyse only the first N images (smoke runs)"
    )
    parser.add_argument("--out", default="discovery_results", help="output folder")


def _words(spec: str | None) -> list[str]:
    if spec is None:
        from hf_spurious.vocab import load_vocabulary

        return list(load_vocabulary("coco").classes)
    path = Path(spec)
    if path.exists():
        words = [w.strip() for w in path.read_text(encoding="utf-8").splitlines()]
    else:
        words = [w.strip() for w in spec.split(",")]
    words = list(dict.fromkeys(w for w in words if w))
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


def run(args: argparse.Namespace) -> int:
    from hf_spurious.data import read_waterbirds
    from hf_spurious.models import load_adapter

    from .classification import classify_images
    from .cli import _csv, _templates
    from .discovery import (
        attribute_column_detections,
        detect_attributes,
        discover_spurious_attributes,
        load_detector,
        read_metadata_column,
    )

    if args.detector is None and args.attribute_column is None:
        raise SystemExit("error: pass --detector (OWL-ViT) or --attribute-column (e.g. place)")
    records = read_waterbirds(args.data_dir, args.split)
    if args.max_images is not None:
        records = records[: args.max_images]
    if not records:
        raise SystemExit(f"error: no {args.split} images in {args.data_dir}")
    class_names = _csv(args.class_names)
    adapter = load_adapter(args.model)
    images = [r.image_path for r in records]
    labels = np.array([r.label for r in records])
    preds, _ = classify_images(
        adapter, images, class_names, _templates(args.templates), batch_size=args.batch_size
    )
    if args.attribute_column is not None:
        if args.attribute_column in ("place", "attribute"):
            values: list[Any] = [r.attribute for r in records]
            value_names = {0: "land", 1: "water"} if args.attribute_column == "place" else None
        else:
            values = read_metadata_column(args.data_dir, args.attribute_column, [r.image_id for r in records])
            value_names = None
        detections, names = attribute_column_detections(values, args.attribute_column, value_names)
        source = f"the metadata column {args.attribute_column!r}"
    else:
        model, processor = load_detector(args.detector)
        names = _words(args.words)
        detections = detect_attributes(
            model,
            processor,
            images,
            names,
            threshold=args.threshold,
            template=args.query_template,
            batch_size=args.batch_size,
        )
        source = f"detector {args.detector} (query {args.query_template!r}, score >= {args.threshold})"
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
    (out / "discovery.json").write_text(json.dumps(payload, indent=1, default=float), encoding="utf-8")
    (out / "discovery.md").write_text(markdown(rows, source), encoding="utf-8")
    print(f"wrote {out / 'discovery.json'} ({len(rows)} ranked attributes)")
    return 0
