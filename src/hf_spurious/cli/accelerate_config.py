"""``hf-spurious accelerate-config NAME``: the accelerate launch configs shipped with the package.

    accelerate launch --config_file "$(hf-spurious accelerate-config ddp)" --num_processes 8 -m hf_spurious.cli train ...

``ddp`` (one machine, one process per GPU: pass ``--num_processes``), ``ddp_cpu`` (two CPU processes, gloo),
``fsdp``, ``single_process``. Without
``--out`` the command prints the path of the installed file; with ``--out FILE`` it copies it there (edit
``num_processes`` and the like in the copy).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path


def config_dir() -> Path:
    """``hf_spurious/resources/accelerate`` of the installed package (the clone's ``examples/accelerate``)."""
    return Path(__file__).resolve().parents[1] / "resources" / "accelerate"


def config_names() -> list[str]:
    return sorted(p.stem for p in config_dir().glob("*.yaml"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", choices=config_names(), help="which config")
    parser.add_argument(
        "--out", default=None, help="copy the config to this file instead of printing its path"
    )


def run(args: argparse.Namespace) -> int:
    source = config_dir() / f"{args.name}.yaml"
    if args.out is None:
        print(source)
        return 0
    target = Path(args.out)
    if target.is_dir():
        target = target / source.name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    print(target)
    return 0
