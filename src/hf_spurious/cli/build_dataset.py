"""``hf-spurious build-dataset NAME``: build one of the project's decorrelated datasets from your source copy.

    hf-spurious build-dataset coco --data-dir /data/coco            # configs test and train
    hf-spurious build-dataset shapes                               # builds the world first when missing
    accelerate launch --num_processes 4 -m hf_spurious.cli build-dataset coco --data-dir /data/coco

Each config is one ``hf-spurious counterfactuals`` run with the recipe's settings (the card template ships
with the package); rerunning the command resumes from the finished shards. The export folder defaults to
the dataset's Hub id as a relative path, so ``load_dataset("<id>", "<config>")`` finds it from here.
``--push-to-hub REPO`` checks the token and the Hub before building, and pushes at the end; when that push
fails the export is kept and the command that pushes it again is printed.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hf_spurious.cli._common import ListAction, add_seed
from hf_spurious.hub import dataset_repo_id

SD_INPAINTING = "diffusers:stable-diffusion-v1-5/stable-diffusion-inpainting"
#: Recipe options of the diffusers inpainter; other inpainters get only the options the user passes.
DIFFUSERS_OPTIONS: dict[str, Any] = {"steps": 30, "batch_size": 8}


@dataclass(frozen=True)
class Recipe:
    """How one published dataset is built: its source, inpainter and configs (name, split, target policy,
    inpainter override or None)."""

    source: str
    inpainter: str
    configs: tuple[tuple[str, str, str, str | None], ...]
    shard_size: int


RECIPES: dict[str, Recipe] = {
    "coco": Recipe(
        "coco", SD_INPAINTING, (("test", "test", "random", None), ("train", "train", "random", None)), 256
    ),
    "flickr30k": Recipe(
        "flickr30k",
        SD_INPAINTING,
        (("test", "test", "random", None), ("train", "train", "random", None)),
        256,
    ),
    "shapes": Recipe(
        "shapes",
        "opencv",
        (
            ("test_partner", "test", "partner", None),
            ("test_partner_oracle", "test", "partner", "oracle"),
            ("test_anchor", "test", "anchor", None),
            ("test", "test", "random", None),
            ("train", "train", "random", None),
        ),
        64,
    ),
}


def card_template(name: str) -> Path:
    """The dataset card template shipped with the package (``dataset_scripts/<name>_decorrelated``)."""
    return (
        Path(__file__).resolve().parents[1]
        / "resources"
        / "dataset_scripts"
        / f"{name}_decorrelated"
        / "README.md"
    )


def inpainter_options(inpainter: str, user: dict[str, Any]) -> dict[str, Any]:
    """The recipe's diffusers options overridden by the user's; any other inpainter: the user's only."""
    base = dict(DIFFUSERS_OPTIONS) if inpainter.startswith("diffusers") else {}
    return {**base, **user}


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"not JSON ({err}): e.g. '{{\"steps\": 50}}'") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object such as '{{\"steps\": 50}}', got {text!r}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", choices=sorted(RECIPES), help="which dataset")
    parser.add_argument(
        "--data-dir",
        default=None,
        help="source root: COCO (dataset_coco.json, annotations/, train2014/, val2014/) or Flickr30k "
        "Entities; shapes: the world folder, generated there when missing (default for shapes: shapes_world)",
    )
    parser.add_argument(
        "--out",
        default=None,
        help="export folder (default: the dataset's Hub id, e.g. hf_spurious/coco_decorrelated)",
    )
    parser.add_argument(
        "--configs",
        action=ListAction,
        default=None,
        metavar="NAME",
        help="build only these configs (default: all of the recipe's)",
    )
    parser.add_argument(
        "--inpainter",
        default=None,
        help=f"inpainter spec (default: coco, flickr30k: {SD_INPAINTING}; shapes: opencv)",
    )
    parser.add_argument(
        "--inpainter-options",
        type=_json_object,
        default={},
        help=f"JSON options of the inpainter, merged over the recipe's diffusers options {json.dumps(DIFFUSERS_OPTIONS)} (other inpainters: only these)",
    )
    add_seed(parser, help="seed of the removal plans and the inpainter")
    parser.add_argument(
        "--max-images", type=int, default=None, help="only the first N source images per config (a trial run)"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="discard finished shards made with other settings"
    )
    parser.add_argument(
        "--push-to-hub",
        default=None,
        metavar="REPO",
        help="push the export to this Hub dataset repo (checked before the build)",
    )
    parser.add_argument(
        "--private", action="store_true", help="create the Hub repo as private when it is new"
    )


def counterfactual_argv(
    args: argparse.Namespace,
    recipe: Recipe,
    config: tuple[str, str, str, str | None],
    data_dir: str,
    out: str,
) -> list[str]:
    """The ``hf-spurious counterfactuals`` flags of one config."""
    name, split, policy, override = config
    inpainter = override or args.inpainter or recipe.inpainter
    options = inpainter_options(inpainter, args.inpainter_options) if override is None else {}
    argv = [
        "--source", recipe.source, "--data-dir", data_dir, "--split", split, "--config-name", name,
        "--target-policy", policy, "--inpainter", inpainter, "--inpainter-options", json.dumps(options),
        "--text", "np_removal", "--seed", str(args.seed), "--shard-size", str(recipe.shard_size),
        "--out", out, "--card-template", str(card_template(args.name)),
    ]  # fmt: skip
    if args.max_images is not None:
        argv += ["--max-images", str(args.max_images)]
    if args.overwrite:
        argv.append("--overwrite")
    return argv


def _ensure_world(data_dir: str, seed: int) -> None:
    """Generate the SpuriousShapes world when ``data_dir`` has none (the main process; the others wait)."""
    from hf_spurious import cli
    from hf_spurious.synthesis.generator import process_state

    state = process_state()
    if state.is_main_process and not (Path(data_dir) / "world.json").is_file():
        print(f"[build-dataset] no world at {data_dir}: generating it (hf-spurious world --out {data_dir})")
        world_args = cli.command_parser("world").parse_args(["--out", data_dir, "--seed", str(seed)])
        code = cli.command_module("world").run(world_args)
        if code:
            raise SystemExit(int(code))  # the world command has printed why
    state.wait_for_everyone()


def run(args: argparse.Namespace) -> int:
    from hf_spurious import cli
    from hf_spurious.cli.push import check_push_access, push_or_explain

    recipe = RECIPES[args.name]
    names = [c[0] for c in recipe.configs]
    chosen = list(args.configs) if args.configs else names
    unknown = [c for c in chosen if c not in names]
    if unknown:
        raise ValueError(f"--configs {','.join(unknown)}: the {args.name} recipe has {', '.join(names)}")
    data_dir = args.data_dir or ("shapes_world" if args.name == "shapes" else None)
    if data_dir is None:
        raise ValueError(
            f"--data-dir is required for {args.name}: the folder holding your copy of the source"
        )
    if args.push_to_hub:
        user = check_push_access(args.push_to_hub)
        print(f"[build-dataset] Hub reachable as {user}; pushing to {args.push_to_hub} after the build")
    if args.name == "shapes":
        _ensure_world(data_dir, args.seed)
    elif not Path(data_dir).is_dir():
        raise FileNotFoundError(
            f"--data-dir {data_dir}: no such folder; pass the root of your {args.name} copy"
        )
    out = args.out or dataset_repo_id(args.name)
    counterfactuals = cli.command_module("counterfactuals")
    parser = cli.command_parser("counterfactuals")
    for config in (c for c in recipe.configs if c[0] in chosen):
        print(f"[build-dataset] {args.name}: config {config[0]} ({config[1]} split)")
        sub = parser.parse_args(counterfactual_argv(args, recipe, config, data_dir, out))
        sub.show_traceback = args.show_traceback
        code = counterfactuals.run(sub)
        if code:
            return int(code)
    from hf_spurious.synthesis.generator import process_state

    if not process_state().is_main_process:
        return 0
    print(f"[build-dataset] done: load_dataset({out!r}, {chosen[0]!r}) from this directory")
    if args.push_to_hub:
        return push_or_explain(out, args.push_to_hub, configs=chosen, private=args.private or None)
    return 0
