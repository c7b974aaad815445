"""``hf-spurious world``: generate a SpuriousShapes world, print its summary, write a contact sheet."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from hf_spurious.cache import atomic_write
from hf_spurious.cli._common import ListAction, add_out, add_seed, report_user_error
from hf_spurious.images import load_rgb
from hf_spurious.world import ClassificationWorldConfig, WorldConfig, generate_world

CONTACT_SHEET = "contact_sheet.png"


def _pair(text: str) -> tuple[str, str]:
    anchor, sep, partner = text.partition(":")
    if not sep or not anchor.strip() or not partner.strip():
        raise argparse.ArgumentTypeError(f"a pair is ANCHOR:PARTNER, e.g. 'dog:frisbee', got {text!r}")
    return anchor.strip(), partner.strip()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    r, c = WorldConfig(), ClassificationWorldConfig()
    add_out(parser, None, "output directory", type=Path)
    parser.add_argument(
        "--variant", choices=("retrieval", "classification"), default="retrieval", help="which world to draw"
    )
    add_seed(parser, "master seed (same seed -> identical files)")
    parser.add_argument(
        "--train-size",
        type=int,
        default=None,
        help=f"train images (default: {r.train_size} retrieval / {c.train_size} classification)",
    )
    parser.add_argument(
        "--val-size",
        type=int,
        default=None,
        help=f"val images (default: {r.val_size} retrieval / {c.val_size} classification)",
    )
    parser.add_argument(
        "--test-size",
        type=int,
        default=None,
        help=f"test images (default: {r.test_size} retrieval / {c.test_size} classification)",
    )
    parser.add_argument("--image-size", type=int, default=64, help="image side in pixels, 16 to 1024")
    _add_retrieval_variant(parser.add_argument_group("retrieval variant"), r)
    _add_classification_variant(parser.add_argument_group("classification variant"), c)
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="set any other config field (repeatable), e.g. --set p_duplicate=0.2 --set object_size_range=[0.2,0.4] "
        "(default: none)",
    )
    parser.add_argument("--no-contact-sheet", action="store_true", help="skip the PNG contact sheet")


def _add_retrieval_variant(g: Any, r: WorldConfig) -> None:
    g.add_argument("--p-partner", type=float, default=r.p_partner, help="P(partner | anchor)")
    g.add_argument("--p-co-name", type=float, default=r.p_co_name, help="P(pair-mate named too)")
    g.add_argument("--min-classes", type=int, default=r.min_classes, help="fewest classes per image")
    g.add_argument("--max-classes", type=int, default=r.max_classes, help="most classes per image")
    g.add_argument(
        "--pair",
        action=ListAction,
        item=_pair,
        default=None,
        metavar="ANCHOR:PARTNER",
        help="partner pairs (a list; repeatable); default: " + ", ".join(f"{a}:{p}" for a, p in r.pairs),
    )


def _add_classification_variant(g: Any, c: ClassificationWorldConfig) -> None:
    g.add_argument("--pretrain-size", type=int, default=c.pretrain_size, help="captioned web images")
    g.add_argument(
        "--train-agreement", type=float, default=c.train_agreement, help="P(place matches bird), train"
    )
    g.add_argument(
        "--pretrain-agreement",
        type=float,
        default=c.pretrain_agreement,
        help="P(place matches bird), pretrain",
    )
    g.add_argument(
        "--colour-informativeness",
        type=float,
        default=c.colour_informativeness,
        help="P(bird coloured from its own family palette)",
    )
    g.add_argument(
        "--alpha-range",
        action=ListAction,
        item=float,
        count=2,
        default=c.alpha_range,
        metavar=("MIN", "MAX"),
        help="bird opacity range, two numbers in [0, 1]",
    )


def _overrides(items: list[str], cls: type) -> dict[str, Any]:
    """``FIELD=VALUE`` pairs as config keyword arguments (VALUE parsed as JSON when it can be)."""
    names = {f.name for f in dataclasses.fields(cls)}
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in names:
            raise SystemExit(f"--set {item!r}: expected FIELD=VALUE with FIELD one of {sorted(names)}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out[key] = (
            tuple(tuple(v) if isinstance(v, list) else v for v in value) if isinstance(value, list) else value
        )
    return out


def config_from_args(args: argparse.Namespace) -> WorldConfig | ClassificationWorldConfig:
    """The world config the command line asks for (unset sizes keep the variant's defaults; --set wins)."""
    sizes = (("train_size", args.train_size), ("val_size", args.val_size), ("test_size", args.test_size))
    kwargs: dict[str, Any] = {"seed": args.seed, "image_size": args.image_size}
    kwargs.update({k: v for k, v in sizes if v is not None})
    cls: type[WorldConfig] | type[ClassificationWorldConfig]
    if args.variant == "retrieval":
        cls = WorldConfig
        kwargs.update(
            p_partner=args.p_partner,
            p_co_name=args.p_co_name,
            min_classes=args.min_classes,
            max_classes=args.max_classes,
        )
        if args.pair is not None:
            kwargs["pairs"] = tuple(args.pair)
    else:
        cls = ClassificationWorldConfig
        kwargs.update(
            pretrain_size=args.pretrain_size,
            train_agreement=args.train_agreement,
            pretrain_agreement=args.pretrain_agreement,
            colour_informativeness=args.colour_informativeness,
            alpha_range=tuple(args.alpha_range),
        )
    kwargs.update(_overrides(getattr(args, "overrides", []), cls))
    return cls(**kwargs)


def _examples(out: Path, variant: str, n: int) -> list[tuple[Path, str]]:
    """(image path, label text) of the first ``n`` train examples, read from the written files."""
    if variant == "retrieval":
        data = json.loads((out / "dataset_coco.json").read_text())
        items = [im for im in data["images"] if im["split"] == "train"][:n]
        return [(out / im["filepath"] / im["filename"], im["sentences"][0]["raw"]) for im in items]
    with (out / "metadata.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))[:n]
    names = ({"0": "landbird", "1": "waterbird"}, {"0": "land", "1": "water"})
    return [(out / r["img_filename"], f"{names[0][r['y']]} on {names[1][r['place']]}") for r in rows]


def contact_sheet(examples: list[tuple[Path, str]], path: Path, *, columns: int = 4, scale: int = 3) -> Path:
    """A grid of upscaled images with their caption underneath, saved as PNG."""
    font = ImageFont.load_default()
    thumbs = [load_rgb(p) for p, _ in examples]
    side = max(t.width for t in thumbs) * scale
    wrap = max(12, side // 6)
    labels = [textwrap.wrap(text, wrap)[:4] for _, text in examples]
    text_h = 12 * max(len(lines) for lines in labels) + 6
    rows = (len(thumbs) + columns - 1) // columns
    sheet = Image.new("RGB", (columns * (side + 8) + 8, rows * (side + text_h + 8) + 8), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (thumb, lines) in enumerate(zip(thumbs, labels)):
        x, y = 8 + (i % columns) * (side + 8), 8 + (i // columns) * (side + text_h + 8)
        sheet.paste(thumb.resize((side, side), Image.NEAREST), (x, y))
        for j, line in enumerate(lines):
            draw.text((x, y + side + 3 + 12 * j), line, fill=(0, 0, 0), font=font)
    atomic_write(path, lambda tmp: sheet.save(tmp, format="PNG"))
    return path


def run(args: argparse.Namespace) -> int:
    try:
        config = config_from_args(args)
    except (TypeError, ValueError) as err:
        if getattr(args, "show_traceback", False):
            raise
        return report_user_error("world", err)
    summary = generate_world(config, args.out)
    if not args.no_contact_sheet:
        examples = _examples(Path(args.out), summary["variant"], 12)
        if examples:
            summary["contact_sheet"] = str(contact_sheet(examples, Path(args.out) / CONTACT_SHEET))
    print(
        json.dumps(summary, indent=2, default=lambda o: o.tolist() if isinstance(o, np.ndarray) else str(o))
    )
    return 0
