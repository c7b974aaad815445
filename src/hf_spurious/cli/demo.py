"""``hf-spurious demo``: the expose -> mitigate pipeline on SpuriousShapes, with a readable report."""

from __future__ import annotations

import argparse
from dataclasses import fields

from hf_spurious.cli._common import add_out, add_seed, silence_known_warnings
from hf_spurious.demo.config import DemoConfig
from hf_spurious.demo.pipeline import run_demo

# Size and budget flags exposed on the command line (the rest of DemoConfig keeps its defaults).
_SIZE_FLAGS = (
    "train_size",
    "val_size",
    "test_size",
    "pretrain_steps",
    "finetune_steps",
    "pretrain_lr",
    "finetune_lr",
    "batch_size",
    "hidden_size",
    "num_layers",
    "intermediate_size",
    "cls_train_size",
    "cls_val_size",
    "cls_test_size",
    "cls_pretrain_size",
    "cls_pretrain_steps",
    "cls_epochs",
    "cls_lr",
    "threads",
    "workers",
    "gradcam_images",
    "vsepp_pretrain_steps",
    "vsepp_finetune_steps",
    "vsepp_pretrain_lr",
    "vsepp_finetune_lr",
    "blip_pretrain_steps",
    "blip_finetune_steps",
)

_MEANING = {
    "threads": "torch threads in all, shared by the workers (each job runs with threads // workers). ",
    "workers": "processes running the demo's jobs side by side (classification, CLIP, VSE++, BLIP; 1: one after another). ",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_out(parser, "demo_output", "output directory (report.html, report.md, results.json)")
    add_seed(parser, "pretraining seed: worlds, counterfactuals, biased models")
    parser.add_argument(
        "--seeds",
        type=int,
        default=1,
        help="number of fine-tuning seeds (3 = the README protocol, mean ± std)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny sizes and budgets (about a minute): checks the plumbing, numbers mean nothing",
    )
    defaults = {f.name: f.default for f in fields(DemoConfig)}
    group = parser.add_argument_group("sizes and budgets (override the defaults, or the --quick preset)")
    for name in _SIZE_FLAGS:
        group.add_argument(
            f"--{name.replace('_', '-')}",
            type=type(defaults[name]),
            default=None,
            help=f"{_MEANING.get(name, '')}full demo: {defaults[name]}; --quick: its preset%(default).0s",
        )
    parser.add_argument(
        "--no-vsepp",
        action="store_true",
        help="skip the tiny VSE++ arm (pretrain, A, B) and show the tiny CLIP only",
    )
    parser.add_argument(
        "--blip",
        action="store_true",
        help="also run the tiny BLIP arm (ITC + ITM; pretrain, A, B): about 4 more minutes of one core",
    )
    parser.add_argument("--quiet", action="store_true", help="no step lines (progress bars still show)")


def config_from_args(args: argparse.Namespace) -> DemoConfig:
    """The :class:`DemoConfig` the flags describe."""
    if args.seeds < 1:
        raise SystemExit(f"--seeds must be at least 1, got {args.seeds}")
    for flag in ("threads", "workers"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            raise SystemExit(f"--{flag} must be at least 1, got {getattr(args, flag)}")
    overrides = {name: getattr(args, name) for name in _SIZE_FLAGS if getattr(args, name) is not None}
    overrides.update(seed=args.seed, seeds=args.seeds)
    if args.no_vsepp:
        overrides["vsepp"] = False
    if args.blip:
        overrides["blip"] = True
    return DemoConfig.quick_preset(**overrides) if args.quick else DemoConfig(**overrides)


def run(args: argparse.Namespace) -> int:
    """Run the demo the flags describe and write its report."""
    run_demo(config_from_args(args), args.out, echo=not args.quiet, worker_setup=silence_known_warnings)
    return 0
