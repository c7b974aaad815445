"""The ``hf-spurious`` command. Each subcommand lives in its own module, imported only when used.

A subcommand module defines ``add_arguments(parser)`` and ``run(args) -> int | None``. Every flag is
accepted as ``--kebab-case`` and ``--snake_case``; ``--debug`` (before or after COMMAND, or the environment
variable ``HF_SPURIOUS_DEBUG=1``) shows the traceback of an error that otherwise prints as a short message
(exit code 2). Known harmless library warnings are hidden (``_common.silence_known_warnings``).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from types import ModuleType

from hf_spurious import __version__
from hf_spurious.cli._common import (
    USER_ERRORS,
    ArgumentParser,
    debug_requested,
    make_parser,
    report_user_error,
    silence_known_warnings,
)

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "demo": (
        "hf_spurious.cli.demo",
        "Run the expose -> mitigate pipeline on the built-in SpuriousShapes world.",
    ),
    "world": (
        "hf_spurious.cli.world",
        "Generate a SpuriousShapes world in the COCO / Karpathy / WILDS layouts.",
    ),
    "counterfactuals": (
        "hf_spurious.cli.counterfactuals",
        "Build a decorrelated (counterfactual) split of COCO, Flickr30k or SpuriousShapes.",
    ),
    "evaluate": (
        "hf_spurious.cli.evaluate",
        "Evaluate a model: ODmAP@k and Recall@K, or group accuracies and AIoU.",
    ),
    "discover": (
        "hf_spurious.cli.discover",
        "Rank candidate spurious attributes by accuracy discrepancy.",
    ),
    "train": (
        "hf_spurious.cli.train",
        "Fine-tune CLIP, BLIP, SigLIP or VSE++ with the spurious-aware losses.",
    ),
    "imagenet-pair": (
        "hf_spurious.cli.imagenet_pair",
        "Write an ImageNet two-class study (Yang et al. Table 5) as a WILDS folder, attribute from a detector.",
    ),
    "convert-openclip": (
        "hf_spurious.cli.convert",
        "Convert an open_clip ResNet-CLIP checkpoint (RN50, RN101, ...) into a from_pretrained folder.",
    ),
    "install-metrics": (
        "hf_spurious.cli.install_metrics",
        "Place the evaluate modules so evaluate.load('odmap') works offline.",
    ),
    "build-dataset": (
        "hf_spurious.cli.build_dataset",
        "Build one of the project's decorrelated datasets (coco, flickr30k, shapes) from your source copy.",
    ),
    "push": (
        "hf_spurious.cli.push",
        "Upload an exported dataset folder to a Hub dataset repo (e.g. after a failed --push-to-hub).",
    ),
    "tiny-models": (
        "hf_spurious.cli.tiny_models",
        "Write the tiny random stand-in models (CLIP, BLIP, ...) for offline runs.",
    ),
    "accelerate-config": (
        "hf_spurious.cli.accelerate_config",
        "Print the path of (or copy) a shipped accelerate config: ddp, ddp_cpu, fsdp, single_process.",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser: ``hf-spurious [--debug] COMMAND ...`` (each command parses its own flags)."""
    parser = ArgumentParser(
        prog="hf-spurious",
        description="Expose and mitigate spurious correlations in vision-language models: counterfactual "
        "data, ODmAP / AIoU evaluation, spurious-aware fine-tuning.",
        epilog="`hf-spurious COMMAND --help` lists a command's flags. A user error prints one line and exits "
        "with code 2; --debug (or HF_SPURIOUS_DEBUG=1) shows the full traceback.",
    )
    parser.add_argument("--version", action="version", version=f"hf-spurious {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, help_text) in SUBCOMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def command_module(name: str) -> ModuleType:
    """The module of subcommand ``name``."""
    return importlib.import_module(SUBCOMMANDS[name][0])  # lazy: import only the subcommand in use


def command_parser(name: str) -> argparse.ArgumentParser:
    """The full parser of subcommand ``name`` (both spellings of every flag, defaults in the help)."""
    return make_parser(f"hf-spurious {name}", SUBCOMMANDS[name][1], command_module(name).add_arguments)


def main(argv: list[str] | None = None) -> int:
    """Run ``hf-spurious [--debug] COMMAND [flags]``; a user error is two lines on stderr and exit code 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = False
    while argv and argv[0] == "--debug":
        debug, argv = True, argv[1:]
    if not argv or argv[0] not in SUBCOMMANDS:
        build_parser().parse_args(argv)  # prints usage / errors (or --version) and exits
        return 2
    silence_known_warnings()
    name = argv[0]
    parser = command_parser(name)
    args = parser.parse_args(argv[1:])
    args.show_traceback = debug_requested(debug or getattr(args, "show_traceback", False))
    try:
        code = command_module(name).run(args)
    except USER_ERRORS as err:
        if args.show_traceback:
            raise
        return report_user_error(name, err, parser._option_string_actions)
    except SystemExit as err:  # raise SystemExit("message") in a command: a user error too
        if isinstance(err.code, str) and not args.show_traceback:
            return report_user_error(name, ValueError(err.code.removeprefix("error: ")))
        raise
    except KeyboardInterrupt:
        if args.show_traceback:
            raise
        print(
            f"hf-spurious {name}: interrupted (outputs already written are kept)",
            file=sys.stderr,
        )
        return 130
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
