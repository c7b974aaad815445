"""``hf-spurious counterfactuals``: build a decorrelated split, export it as parquet + card, optionally push.

Sharded across processes with ``accelerate launch -m hf_spurious.cli counterfactuals ...`` (or torchrun):
every process writes its own shards, the main process merges them. Rerunning the same command resumes:
finished shards whose images, boxes and captions are unchanged are reused, the others are regenerated.
The export replaces a config only once its new files are complete; zero rows is an error (``--allow-empty``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from hf_spurious.cli._common import ListAction, add_batch_size, add_data_dir, add_out, add_seed
from hf_spurious.cli.push import check_push_access, push_or_explain
from hf_spurious.data.builders import generate_in_processes, load_source_records, prepare_settings
from hf_spurious.data.export import check_config_name, export_parquet
from hf_spurious.synthesis.settings import SynthesisSettings


def _json_dict(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not valid JSON: {err}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object, e.g. '{\"radius\": 5}'")
    return value


def _pair(text: str) -> tuple[str, str]:
    anchor, sep, partner = text.partition(":")
    if not sep or not anchor or not partner:
        raise argparse.ArgumentTypeError(f"expected anchor:partner, got {text!r}")
    return anchor.strip(), partner.strip()


def _config_name(text: str) -> str:
    try:
        return check_config_name(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Source, removal and caption-editing flags, then sharding and export flags."""
    _add_synthesis(parser)
    _add_output(parser)


def _add_synthesis(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--source", choices=["coco", "flickr30k", "shapes"], default="shapes", help="source dataset"
    )
    add_data_dir(parser, "dataset root (COCO layout, Flickr30k, or a world dir)", required=True)
    parser.add_argument(
        "--split",
        default="test",
        choices=["train", "val", "test"],
        help="source split: train -> fine-tuning set D', test -> ODmAP query set",
    )
    parser.add_argument(
        "--inpainter",
        default="opencv",
        help="opencv[:telea|:ns] | zero | mean | blur | oracle (shapes) | diffusers:<hub id or local dir>",
    )
    parser.add_argument(
        "--inpainter-options",
        type=_json_dict,
        default={},
        help="JSON object of the inpainter's options, checked against the inpainter: opencv radius/method, "
        "blur sigma/ksize, diffusers steps/strength/guidance_scale/..., e.g. '{\"radius\": 5}'",
    )
    parser.add_argument(
        "--text",
        dest="text_method",
        default="np_removal",
        choices=["np_removal", "prompt", "captioner"],
        help="caption editing: np_removal deletes the noun phrases of the removed classes, prompt writes a "
        "class prompt, captioner captions the new image",
    )
    parser.add_argument(
        "--captioner",
        default=None,
        help="image-to-text model id or dir (needed by --text captioner; default: none)",
    )
    parser.add_argument("--spacy-model", default="en_core_web_sm", help="spaCy pipeline for noun chunks")
    parser.add_argument("--vocabulary", default=None, help="word list name or file (default: the source's)")
    add_seed(parser, "seed of the removal plans, caption choice and inpainter (same seed -> same bytes)")
    _add_removal(parser)


def _add_removal(parser: argparse.ArgumentParser) -> None:
    """The α rules, the mask and the target policy (Kim et al. §3.1)."""
    parser.add_argument(
        "--alpha1",
        type=float,
        default=0.4,
        help="α1 in (0, 1]: a kept class must lose less than this share of its box area",
    )
    parser.add_argument(
        "--alpha2",
        type=float,
        default=0.8,
        help="α2 in (0, 1]: a class with more than this share of its box under the removed class is removed "
        "too (1: never)",
    )
    parser.add_argument(
        "--alpha3",
        type=float,
        default=0.7,
        help="α3 in (0, 1]: the removed region must cover less than this share of the image",
    )
    parser.add_argument(
        "--dilation", type=int, default=0, help="grow masks by this many pixels (>= 0, below the image size)"
    )
    parser.add_argument("--use-segmentation", action="store_true", help="polygon masks instead of boxes")
    parser.add_argument(
        "--captions-per-image",
        type=int,
        default=1,
        help="edited captions kept per image (>= 1; one row each)",
    )
    parser.add_argument(
        "--target-policy",
        default="random",
        choices=["random", "partner", "anchor"],
        help="which class to remove: any, the partner or the anchor of a --target-pair",
    )
    parser.add_argument(
        "--target-pair", dest="target_pairs", action=ListAction, item=_pair, default=None,
        metavar="ANCHOR:PARTNER",
        help="anchor:partner class pairs for --target-policy partner/anchor (a list; repeatable; classes must "
        "exist in the split; default: none, shapes: the world's pairs)",
    )  # fmt: skip


def _add_output(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-mask", action="store_true", help="do not store the mask column")
    parser.add_argument("--shard-size", type=int, default=64, help="images per shard (resume unit)")
    parser.add_argument(
        "--num-shards",
        type=int,
        default=None,
        help="alternative to --shard-size (default: from --shard-size)",
    )
    add_batch_size(parser, 8, "inpainter batch")
    parser.add_argument("--num-workers", type=int, default=2, help="threads for decode / CPU fills / encode")
    parser.add_argument(
        "--on-error",
        choices=["skip", "raise"],
        default="skip",
        help="an unreadable image: count it as a skip, or stop with its name",
    )
    parser.add_argument(
        "--max-images", type=int, default=None, help="only the first N >= 0 source images (default: all)"
    )
    parser.add_argument(
        "--allow-empty",
        action="store_true",
        help="export even when no row was made (zero rows is otherwise an error, exit code 2; an empty split "
        "is written for pyarrow / pandas: `datasets` refuses to load a split with no rows)",
    )
    add_out(parser, None, "export folder (parquet + README.md card)")
    parser.add_argument(
        "--config-name", type=_config_name, default=None, help="config name in the card (default: the split)"
    )
    parser.add_argument("--work-dir", default=None, help="shard directory (default: <out>/.work/<config>)")
    parser.add_argument(
        "--phrase-cache-dir",
        default=None,
        help="noun-phrase parse cache (default: <work-dir>/phrase_cache); share one across runs on the same captions",
    )
    parser.add_argument("--overwrite", action="store_true", help="discard shards made with other settings")
    parser.add_argument(
        "--card-template",
        default=None,
        help="README.md template with <!-- PROVENANCE --> (default: the built-in card)",
    )
    parser.add_argument(
        "--push-to-hub",
        default=None,
        metavar="REPO",
        help="upload the folder to this dataset repo (access checked before generating; default: no upload)",
    )
    parser.add_argument("--private", action="store_true", help="create the Hub repo as private")


def settings_from_args(args: argparse.Namespace, num_records: int | None = None) -> SynthesisSettings:
    """Build :class:`SynthesisSettings` from parsed arguments."""
    shard_size = args.shard_size
    if args.num_shards is not None and args.num_shards < 1:
        raise ValueError(f"--num-shards must be >= 1, got {args.num_shards}")
    if args.num_shards and num_records:
        shard_size = max(1, -(-num_records // args.num_shards))
    return SynthesisSettings(
        source=args.source,
        split=args.split,
        inpainter=args.inpainter,
        inpainter_options=dict(args.inpainter_options),
        text_method=args.text_method,
        captioner=args.captioner,
        spacy_model=args.spacy_model,
        vocabulary=args.vocabulary,
        seed=args.seed,
        alpha1=args.alpha1,
        alpha2=args.alpha2,
        alpha3=args.alpha3,
        dilation=args.dilation,
        use_segmentation=args.use_segmentation,
        captions_per_image=args.captions_per_image,
        target_policy=args.target_policy,
        target_pairs=None if args.target_pairs is None else list(args.target_pairs),
        store_mask=not args.no_mask,
        shard_size=shard_size,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        on_error=args.on_error,
        max_images=args.max_images,
    )


def run(args: argparse.Namespace) -> int:
    """Generate this process's shards; the main process exports parquet + card (and pushes)."""
    # the config name becomes part of the work and export paths: validate it before anything is touched
    config_name = check_config_name(args.config_name or args.split)
    settings = settings_from_args(args)
    if args.push_to_hub:
        check_push_access(args.push_to_hub)
    data_dir = Path(args.data_dir)
    settings = prepare_settings(settings, data_dir)
    records = load_source_records(settings, data_dir)
    if args.num_shards:
        settings = dataclasses.replace(settings, shard_size=settings_from_args(args, len(records)).shard_size)
    out = Path(args.out)
    work = Path(args.work_dir) if args.work_dir else out / ".work" / config_name
    result, state = generate_in_processes(
        records, settings, work, data_dir, overwrite=args.overwrite, phrase_cache_dir=args.phrase_cache_dir
    )
    if not state.is_main_process:
        return 0
    export_parquet(
        work,
        out,
        config_name=config_name,
        split=settings.split,
        card_template=args.card_template,
        allow_empty=args.allow_empty,
    )
    stats = json.loads((out / "provenance.json").read_text())[config_name]["stats"]
    print(
        f"{stats['rows']} rows from {stats['images']} images ({stats['eligible']} eligible) in {result.seconds:.1f} s "
        f"({state.num_processes} process{'es' if state.num_processes > 1 else ''}); skipped: {stats['skipped']}"
    )
    reused = result.num_shards - len(result.ran_shards) if state.num_processes == 1 else None
    if reused:
        print(
            f"reused {reused} of {result.num_shards} finished shards (their images, boxes and captions are "
            f"unchanged); generated {len(result.ran_shards)}"
        )
    print(f"wrote {out} (load with datasets.load_dataset({str(out)!r}, {config_name!r}))")
    if args.push_to_hub:
        return push_or_explain(out, args.push_to_hub, configs=[config_name], private=args.private or None)
    return 0
