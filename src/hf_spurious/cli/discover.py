"""``hf-spurious discover``: rank candidate spurious attributes by accuracy discrepancy δ (spec §2.7).

With a detector::

    hf-spurious discover --model ./clip --data-dir /data/waterbirds --detector google/owlvit-base-patch32 \\
        --words words.txt --out discovery

With given attribute columns (e.g. Waterbirds ``place``)::

    hf-spurious discover --model ./clip --data-dir /data/waterbirds --attribute-column place

On ImageNet classes (the localisation release; each image classified among CLIP's 1000 class names)::

    hf-spurious discover --source imagenet --data-dir /data/imagenet-loc --classes "baby pacifier" \
        --model ./clip-rn50 --detector google/owlvit-base-patch32 --words vg_words.txt

Writes ``discovery.json`` and ``discovery.md`` (the ranked table, with each class's most confused class)
into ``--out``. The detector runs class by class.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
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
    most_confused_classes,
    read_metadata_column,
)
from hf_spurious.models import load_adapter
from hf_spurious.models.registry import supported_model_types
from hf_spurious.records import ClassificationRecord
from hf_spurious.sources import read_waterbirds
from hf_spurious.sources.imagenet import class_indices, imagenet_class_names, read_imagenet
from hf_spurious.vocab import load_vocabulary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model(
        parser,
        f"zero-shot classifier (class prompts): model id or checkpoint folder (model_type {supported_model_types()})",
    )
    add_data_dir(
        parser,
        "WILDS-layout folder (metadata.csv, images), or with --source imagenet the ImageNet localisation "
        "release (LOC_synset_mapping.txt, LOC_*_solution.csv, ILSVRC/Data/CLS-LOC/)",
        required=True,
    )
    parser.add_argument(
        "--source",
        choices=("wilds", "imagenet"),
        default="wilds",
        help="wilds: --data-dir is a WILDS folder, classes are --class-names; imagenet: ImageNet classes "
        "(--classes), each image classified among CLIP's 1000 ImageNet class names",
    )
    parser.add_argument(
        "--classes",
        action=ListAction,
        default=None,
        metavar="CLASS",
        help="with --source imagenet: the classes to analyse, as indices or CLIP names, e.g. 680,898 or "
        "'baby pacifier' (default: all 1000)",
    )
    parser.add_argument(
        "--split",
        default="train",
        help="split to analyse (the paper uses train; with --source imagenet: train or test = ImageNet "
        "validation)",
    )
    add_class_names(parser)
    add_attribute_names(parser)
    add_templates(parser)
    _add_attribute_source(parser)
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


def _add_attribute_source(parser: argparse.ArgumentParser) -> None:
    """Where the attributes come from: a detector and its vocabulary, or a metadata column."""
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
        "| class | attribute | confused with | images | detections | MI | acc with | acc without | δ |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['class']} | {r['attribute']} | {r['confused_with']} | {r['images']} | {r['detections']} "
            f"| {r['mutual_information']:.4f} "
            f"| {r['accuracy_with']:.1f} | {r['accuracy_without']:.1f} | {r['delta']:.1f} |"
        )
    if not rows:
        lines.append("| (none: no attribute passed min-detections and MI > 0) | | | | | | | | |")
    return "\n".join(lines) + "\n"


def attribute_source(
    args: argparse.Namespace, records: list[ClassificationRecord]
) -> tuple[Callable[[np.ndarray], np.ndarray], list[str], str]:
    """(detect, attribute names, where they came from): ``detect(indices)`` gives the (n, A) bool detections
    of those records, from a metadata column or a detector (run class by class, so memory stays bounded)."""
    if args.attribute_column is not None:
        if args.attribute_column in ("place", "attribute"):
            values: list[Any] = [r.attribute for r in records]
            value_names = dict(enumerate(args.attribute_names)) if args.attribute_column == "place" else None
        else:
            values = read_metadata_column(args.data_dir, args.attribute_column, [r.image_id for r in records])
            value_names = None
        detections, names = attribute_column_detections(values, args.attribute_column, value_names)
        return (lambda idx: detections[idx]), names, f"the metadata column {args.attribute_column!r}"
    model, processor = load_detector(args.detector)
    names = detector_words(args.words)

    def detect(idx: np.ndarray) -> np.ndarray:
        paths = [records[i].image_path for i in idx]
        return detect_attributes(
            model,
            processor,
            paths,
            names,
            threshold=args.threshold,
            template=args.query_template,
            batch_size=args.batch_size,
        )

    return (
        detect,
        names,
        f"detector {args.detector} (query {args.query_template!r}, score >= {args.threshold})",
    )


def read_images(args: argparse.Namespace) -> tuple[list[ClassificationRecord], list[str]]:
    """The images to analyse and the class names of the prompts: a WILDS folder with ``--class-names``, or
    ImageNet classes (``--classes``) classified among CLIP's 1000 ImageNet names (labels = class indices)."""
    if args.source == "wilds":
        return read_waterbirds(args.data_dir, args.split), list(args.class_names)
    indices = class_indices(args.classes) if args.classes else list(range(1000))
    images = read_imagenet(args.data_dir, indices, args.split)
    records = [  # attribute 0: unused, the attributes come from the detector
        ClassificationRecord(im.image_id, str(im.path), indices[im.label], 0, args.split) for im in images
    ]
    return records, imagenet_class_names()


def run(args: argparse.Namespace) -> int:
    """Classify zero-shot, find each image's attributes, rank them by δ; write discovery.json / .md."""
    if args.detector is None and args.attribute_column is None:
        raise SystemExit("error: pass --detector (OWL-ViT) or --attribute-column (e.g. place)")
    if args.attribute_column is not None and args.source == "imagenet":
        raise SystemExit("error: --attribute-column needs a WILDS folder; for ImageNet pass --detector")
    records, class_names = read_images(args)
    if args.max_images is not None:
        records = records[: args.max_images]
    if not records:
        raise SystemExit(f"error: no {args.split} images in {args.data_dir}")
    adapter = load_adapter(args.model)
    labels = np.array([r.label for r in records])
    preds, logits = classify_images(
        adapter,
        [r.image_path for r in records],
        class_names,
        resolve_templates(args.templates),
        batch_size=args.batch_size,
    )
    confused = most_confused_classes(labels, logits)
    detect, names, source = attribute_source(args, records)
    rows: list[dict[str, Any]] = []
    counts = np.zeros(len(names), dtype=np.int64)
    for c in np.unique(labels):  # class by class: the ranking is per class (then sorted by δ)
        idx = np.flatnonzero(labels == c)
        detections = detect(idx)
        counts += detections.sum(axis=0)
        found = discover_spurious_attributes(
            labels[idx],
            preds[idx],
            detections,
            names,
            class_names,
            min_detections=args.min_detections,
            top_per_class=args.top_per_class,
        )
        rows += [{**row, "confused_with": class_names[confused[int(c)]]} for row in found]
    rows.sort(key=lambda r: -r["delta"])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    payload = {
        "source": source,
        "split": args.split,
        "num_images": len(records),
        "accuracy": float(100.0 * (preds == labels).mean()),
        "detections_per_attribute": {n: int(c) for n, c in zip(names, counts)},
        "ranking": rows,
    }
    atomic_write_text(out / "discovery.json", json.dumps(payload, indent=1, default=float))
    (out / "discovery.md").write_text(markdown(rows, source), encoding="utf-8")
    print(f"wrote {out / 'discovery.json'} ({len(rows)} ranked attributes)")
    return 0
