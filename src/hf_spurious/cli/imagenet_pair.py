"""``hf-spurious imagenet-pair``: an ImageNet two-class study of Yang et al. (Table 5) as a WILDS folder.

The attribute of each image comes from an open-vocabulary detector (OWL-ViT, "a photo of a baby" at score
≥ 0.1); the folder then goes to ``train --dataset waterbirds`` and ``evaluate --task classification`` like
Waterbirds (class names and attribute names printed at the end).
"""

from __future__ import annotations

import argparse
import json

from hf_spurious.cli._common import add_batch_size, add_data_dir, add_out, add_seed, positive_int
from hf_spurious.data.imagenet_pair import write_imagenet_pair
from hf_spurious.evaluation.discovery import DEFAULT_QUERY_TEMPLATE, detect_attributes, load_detector
from hf_spurious.sources.imagenet import PAIRS, read_imagenet_pair


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_dir(
        parser,
        "ImageNet localisation release (LOC_synset_mapping.txt, LOC_{train,val}_solution.csv, "
        "ILSVRC/Data/CLS-LOC/)",
        required=True,
    )
    add_out(parser, None, "output folder (WILDS layout; replaced only once the new one is complete)")
    parser.add_argument(
        "--pair", choices=sorted(PAIRS), default="baby_pacifier", help="which two-class study of the paper"
    )
    parser.add_argument(
        "--detector",
        default="google/owlvit-base-patch32",
        help="open-vocabulary detector id or folder that labels the attribute (the paper's OWL-ViT)",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=0.1,
        help="the attribute is present when a box scores at least this",
    )
    parser.add_argument(
        "--query-template",
        default=DEFAULT_QUERY_TEMPLATE,
        help="the detector's text query ({} = the attribute)",
    )
    parser.add_argument(
        "--val-per-cell",
        type=positive_int,
        default=25,
        help="train images of each (class, attribute) cell held out as val",
    )
    add_seed(parser, "seed of the val draw (same seed and detections -> same split)")
    add_batch_size(parser, 8, "images per detector forward pass")


def run(args: argparse.Namespace) -> int:
    """Read the two classes, label the attribute with the detector, write the WILDS folder."""
    pair = PAIRS[args.pair]
    images = read_imagenet_pair(args.data_dir, pair)
    model, processor = load_detector(args.detector)
    found = detect_attributes(
        model,
        processor,
        [im.path for im in images],
        [pair.attribute],
        threshold=args.threshold,
        template=args.query_template,
        batch_size=args.batch_size,
    )
    settings = {"detector": args.detector, "threshold": args.threshold, "query_template": args.query_template}
    summary = write_imagenet_pair(
        images,
        found[:, 0].astype(int).tolist(),
        args.out,
        pair,
        val_per_cell=args.val_per_cell,
        seed=args.seed,
        settings=settings,
    )
    print(json.dumps(summary, indent=2))
    names = ",".join(pair.class_names)
    print(
        f"next: hf-spurious train --dataset waterbirds --data-dir {args.out} --class-names '{names}' "
        f"--attribute-names {pair.attribute} ...; then evaluate --task classification --class-names '{names}' "
        f"--attribute-names 'no {pair.attribute},{pair.attribute}' --train-counts train"
    )
    return 0
