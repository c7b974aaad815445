"""``hf-spurious tiny-models --out DIR``: write the tiny random stand-in models used offline.

Each kind goes to ``DIR/<kind>`` as a ``from_pretrained`` folder (weights, config, processor, a README that
says it is not a real checkpoint). Pass such a folder wherever a command takes ``--model`` (or
``--inpainter diffusers:DIR/inpaint``) to try the pipeline without downloading anything; the numbers mean
nothing.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hf_spurious.cli._common import ListAction, add_out, add_seed


def _kinds() -> tuple[str, ...]:
    from hf_spurious.models.tiny import TINY_KINDS

    return tuple(TINY_KINDS)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_out(parser, None, help="folder to write the models into (one sub-folder per kind)")
    parser.add_argument(
        "--kinds",
        action=ListAction,
        default=list(_kinds()),
        metavar="KIND",
        help="which models to write (comma or space list)",
    )
    add_seed(parser, help="seed of the random weights")


def run(args: argparse.Namespace) -> int:
    from hf_spurious.models.tiny import save_tiny

    known = _kinds()
    unknown = [k for k in args.kinds if k not in known]
    if unknown:
        raise ValueError(f"--kinds: unknown {', '.join(unknown)}; choose from {', '.join(known)}")
    out = Path(args.out)
    for kind in args.kinds:
        path = save_tiny(kind, out / kind, seed=args.seed)
        print(f"{kind}: {path}")
    print(f"Pass a folder as --model (e.g. --model {out / args.kinds[0]}); these are random weights.")
    return 0
