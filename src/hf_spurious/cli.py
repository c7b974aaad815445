"""The ``hf-spurious`` command. Each subcommand lives in its own module, imported only when used.

A subcommand module defines ``add_arguments(parser)`` and ``run(args) -> int | None``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "demo": (
        "hf_spurious.demo.cli",
        "Run the expose -> mitigate pipeline on the built-in SpuriousShapes world.",
    ),
    "world": (
        "hf_spurious.data.world_cli",
        "Generate a SpuriousShapes world in the COCO / Karpathy / WILDS layouts.",
    ),
    "counterfactuals": (
        "hf_spurious.synthesis.cli",
        "Build a decorrelated (counterfactual) split of COCO, Flickr30k or SpuriousShapes.",
    ),
    "evaluate": (
        "hf_spurious.evaluation.cli",
        "Evaluate a model: ODmAP@k and Recall@K, or group accuracies and AIoU.",
    ),
    "discover": (
        "hf_spurious.evaluation.discover_cli",
        "Rank candidate spurious attributes by accuracy discrepancy.",
    ),
    "train": ("hf_spurious.training.cli", "Fine-tune CLIP / BLIP with the spurious-aware losses."),
    "install-metrics": (
        "hf_spurious.evaluation.install",
        "Place the evaluate modules so evaluate.load('odmap') works offline.",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hf-spurious", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, help_text) in SUBCOMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in SUBCOMMANDS:
        build_parser().parse_args(argv)  # prints usage / errors and exits
        return 2
    name, rest = argv[0], argv[1:]
    module_name, help_text = SUBCOMMANDS[name]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(
        prog=f"hf-spurious {name}",
        description=help_text,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    module.add_arguments(parser)
    code = module.run(parser.parse_args(rest))
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
