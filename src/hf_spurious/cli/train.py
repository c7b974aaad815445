"""``hf-spurious train``: fine-tune CLIP, BLIP, SigLIP or VSE++ on Waterbirds-layout or COCO / Flickr30k / SpuriousShapes data.

Every :class:`SpuriousTrainingArguments` field is a flag (``--learning-rate``, ``--sampling`` ...; the
``--learning_rate`` spelling works too); the data flags are below. ``--preset`` fills in the papers'
hyper-parameters (any flag given overrides them).
The same entry point backs ``examples/finetune_waterbirds.py`` and ``examples/finetune_retrieval.py`` and
runs under ``python`` or ``accelerate launch`` / ``torchrun``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import typing
from pathlib import Path
from typing import Any

from transformers import HfArgumentParser

from hf_spurious.cache import atomic_write_text
from hf_spurious.cli._common import CommaList, ListAction, add_data_dir, add_model, make_parser
from hf_spurious.models.registry import supported_model_types
from hf_spurious.sources import read_coco, read_flickr30k, read_waterbirds
from hf_spurious.training.config import SpuriousTrainingArguments
from hf_spurious.training.rows import (
    classification_rows,
    counterfactual_rows,
    retrieval_rows,
    training_pairs,
)
from hf_spurious.training.trainer import SpuriousAwareTrainer

#: List fields whose items are sentences (may hold commas): a space list only, each item quoted.
PROSE_LIST_FIELDS = frozenset({"templates", "attribute_prompts"})
DATASETS = ("waterbirds", "coco", "flickr30k", "shapes")
#: The task each ``--dataset`` layout implies (used when ``--task`` is not given).
DATASET_TASKS: dict[str, str] = {
    "waterbirds": "classification",
    "coco": "retrieval",
    "flickr30k": "retrieval",
    "shapes": "retrieval",
}

# Paper hyper-parameters (Kim et al. §4 implementation details; Yang et al.'s released README), documented in
# docs/reproduction.md.
PRESETS: dict[str, dict[str, Any]] = {
    # Yang et al. README (RN50): SGD momentum 0.9, lr 1e-4, wd 1e-5, 300 epochs, batch 128 (32 for ViT-L/14@336),
    # no scheduler, group-balanced sampling, best val worst-group checkpoint, fresh logit scale ln(1/0.07).
    "waterbirds": dict(
        task="classification",
        optim="sgd",
        optim_args="momentum=0.9",
        learning_rate=1e-4,
        weight_decay=1e-5,
        num_train_epochs=300,
        per_device_train_batch_size=128,
        per_device_eval_batch_size=256,
        lr_scheduler_type="constant",
        sampling="group_balanced",
        logit_scale_init=math.log(1 / 0.07),
        clip_weight=1.0,
        image_class_weight=1.0,
        text_class_weight=1.0,
        text_spurious_weight=1.0,
        class_names=["landbird", "waterbird"],
        attribute_names=["land", "water"],
        attribute_prompts=["bird on land", "bird on water"],
        eval_strategy="epoch",
        save_strategy="epoch",
        load_best_model_at_end=True,
        save_total_limit=1,
        seed=11111111,
        freeze_policy="projection",
    ),
    # Kim et al. CLIP: Adam lr 2e-6, batch 256, 10 epochs, x0.5 every 2 epochs.
    "retrieval-clip": dict(
        task="retrieval",
        optim="adamw_torch",
        weight_decay=0.0,
        learning_rate=2e-6,
        per_device_train_batch_size=256,
        num_train_epochs=10,
        lr_step_decay_every_epochs=2.0,
        lr_step_decay_factor=0.5,
        freeze_policy="full",
        eval_strategy="epoch",
        save_strategy="epoch",
    ),
    # Kim et al. VSE++ (VGG19 + Bi-GRU): Adam lr 1e-4, batch 256, 10 epochs, x0.5 every 2 epochs; the triplet
    # loss (margin 0.2, hardest negative) is the adapter's default retrieval loss.
    "retrieval-vsepp": dict(
        task="retrieval",
        optim="adamw_torch",
        weight_decay=0.0,
        learning_rate=1e-4,
        per_device_train_batch_size=256,
        num_train_epochs=10,
        lr_step_decay_every_epochs=2.0,
        lr_step_decay_factor=0.5,
        triplet_margin=0.2,
        triplet_max_violation=True,
        freeze_policy="full",
        eval_strategy="epoch",
        save_strategy="epoch",
    ),
    # Kim et al. BLIP: AdamW lr 1e-5, batch 16, 2 epochs, x0.5 every half epoch, ITC + ITM.
    "retrieval-blip": dict(
        task="retrieval",
        optim="adamw_torch",
        learning_rate=1e-5,
        per_device_train_batch_size=16,
        num_train_epochs=2,
        lr_step_decay_every_epochs=0.5,
        lr_step_decay_factor=0.5,
        itm_weight=1.0,
        freeze_policy="full",
        eval_strategy="epoch",
        save_strategy="epoch",
    ),
}


class _Default:
    """A default value argparse hands back untouched: tells "not given" from "given the default value"."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        return repr(self.value)

    def __str__(self) -> str:
        return str(self.value)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Data flags plus every :class:`SpuriousTrainingArguments` field."""
    data = parser.add_argument_group("data")
    add_model(data, f"Model id or directory (model_type {supported_model_types()}).")
    data.add_argument("--dataset", choices=DATASETS, required=True, help="Layout of --data-dir.")
    add_data_dir(data, "Dataset directory (WILDS Waterbirds, COCO, Flickr30k or shapes).", required=True)
    data.add_argument(
        "--counterfactual-dir",
        default=None,
        help="D′ for retrieval: the folder `hf-spurious counterfactuals --out` wrote, a save_to_disk directory, "
        "a parquet file or a Hub dataset id (default: none, train on D alone).",
    )
    data.add_argument(
        "--counterfactual-config",
        default=None,
        help="Config of --counterfactual-dir to train on (default: its only config).",
    )
    data.add_argument(
        "--counterfactual-split",
        default="train",
        help="Split of --counterfactual-dir to train on (default: %(default)s).",
    )
    data.add_argument("--caption-column", default=None, help="Caption column of the counterfactual data.")
    data.add_argument("--train-split", default="train", help="Training split.")
    data.add_argument("--eval-split", default="val", help="Evaluation split ('' for none).")
    data.add_argument(
        "--max-train-samples", type=int, default=None, help="Truncate the training set (debugging)."
    )
    data.add_argument(
        "--preset", choices=sorted(PRESETS), default=None, help="Paper hyper-parameters to start from."
    )
    group = parser.add_argument_group("training (SpuriousTrainingArguments)")
    hints = typing.get_type_hints(SpuriousTrainingArguments)
    for f in dataclasses.fields(SpuriousTrainingArguments):
        if f.init:
            _add_field(group, f, hints[f.name])
    for action in group._group_actions:  # mark defaults, so --preset only fills flags not given
        action.default = _Default(action.default)
    parser.set_defaults(_parser=parser)  # run() turns user errors into parser.error (exit 2)


def _add_field(group: Any, field: dataclasses.Field, hint: Any) -> None:
    """One :class:`SpuriousTrainingArguments` field as HfArgumentParser makes it, except that list fields
    take a comma list as well as a space list (sentences, :data:`PROSE_LIST_FIELDS`, only a space list)."""
    field.type = hint  # resolve string annotations, as HfArgumentParser does
    scratch = argparse.ArgumentParser(add_help=False)
    HfArgumentParser._parse_dataclass_field(scratch, field)
    made = scratch._actions[0]
    if made.nargs == "+" and field.name not in PROSE_LIST_FIELDS:
        group.add_argument(
            *made.option_strings,
            action=ListAction,
            item=made.type or str,
            default=made.default,
            required=made.required,
            help=made.help,
        )
        return
    field.type = hint
    HfArgumentParser._parse_dataclass_field(group, field)


def load_counterfactuals(source: str, config: str | None = None, split: str = "train") -> Any:
    """Exactly one config and split of D′, memory-mapped: ``source`` is a parquet file, a ``save_to_disk``
    directory, an export folder of ``hf-spurious counterfactuals`` (``provenance.json`` + one folder per
    config; never its ``.work`` shards) or a Hub dataset id."""
    import pyarrow  # lazy: comes with datasets

    dataset = _open_counterfactuals(source, config, split)
    # parquet -> Arrow conversion leaves its buffers in the allocator's pool; hand them back, so the
    # process holds no memory in proportion to D′ (the table itself is memory-mapped)
    pyarrow.default_memory_pool().release_unused()
    return dataset


def _open_counterfactuals(source: str, config: str | None, split: str) -> Any:
    """The one config and split of ``source`` (see :func:`load_counterfactuals`)."""
    import datasets  # lazy: heavy optional dependency

    p = Path(source)
    if p.is_file():
        return datasets.load_dataset("parquet", data_files={split: str(p)}, split=split)
    if (
        (p / "dataset_info.json").exists()
        or (p / "state.json").exists()
        or (p / "dataset_dict.json").exists()
    ):
        loaded = datasets.load_from_disk(str(p))
        return loaded[_pick(list(loaded), split, "split", source)] if isinstance(loaded, dict) else loaded
    if (p / "provenance.json").exists():
        configs = sorted(json.loads((p / "provenance.json").read_text(encoding="utf-8")))
        name = _pick(configs, config, "config", source)
        files = sorted(str(f) for f in (p / name).glob(f"{split}-*.parquet"))
        if not files:
            found = sorted({f.name.split("-")[0] for f in (p / name).glob("*.parquet")})
            raise FileNotFoundError(
                f"{source}: config {name!r} has no {split!r} split (splits: {found}); pass --counterfactual-split"
            )
        return datasets.load_dataset("parquet", data_files={split: files}, split=split)
    if p.is_dir():
        files = sorted(str(f) for f in p.glob("*.parquet"))
        if files:
            return datasets.load_dataset("parquet", data_files={split: files}, split=split)
        raise FileNotFoundError(
            f"{source}: not a D′ export (no provenance.json), save_to_disk directory or folder of parquet files; "
            "point --counterfactual-dir at the folder `hf-spurious counterfactuals --out` wrote"
        )
    if p.exists() or source.count("/") != 1:
        raise FileNotFoundError(f"{source}: no such file or folder; check --counterfactual-dir")
    return datasets.load_dataset(source, config, split=split)  # a Hub id


def _pick(names: list[str], wanted: str | None, what: str, source: str) -> str:
    """``wanted`` if ``source`` has it, else the only one; an error listing the choices otherwise."""
    if wanted is None and len(names) == 1:
        return names[0]
    if wanted in names:
        return wanted
    flag = "--counterfactual-config" if what == "config" else "--counterfactual-split"
    raise ValueError(f"{source} holds the {what}s {names}; choose one with {flag}")


def load_data(ns: argparse.Namespace, task: str) -> tuple[Any, Any]:
    """(train rows, eval rows or None) for the chosen dataset layout; D′ (``--counterfactual-dir``) joins
    the training rows, after the check that none of it comes from the evaluation images."""

    def split(name: str) -> Any:
        if ns.dataset == "waterbirds":
            return classification_rows(read_waterbirds(ns.data_dir, name))
        if ns.dataset == "flickr30k":
            return retrieval_rows(read_flickr30k(ns.data_dir, name))
        vocab = "shapes" if ns.dataset == "shapes" else "coco"
        return retrieval_rows(read_coco(ns.data_dir, name, vocabulary=vocab))

    if DATASET_TASKS[ns.dataset] != task:
        raise ValueError(
            f"--dataset {ns.dataset} is a {DATASET_TASKS[ns.dataset]} dataset but the task is {task} "
            f"(from --task or --preset); drop --task (it follows --dataset) or pass --task "
            f"{DATASET_TASKS[ns.dataset]} / a matching --preset"
        )
    train = split(ns.train_split)
    evaluation = split(ns.eval_split) if ns.eval_split else None
    if ns.counterfactual_dir:
        if task != "retrieval":
            raise ValueError("--counterfactual-dir is for retrieval (D ∪ D′)")
        loaded = load_counterfactuals(
            ns.counterfactual_dir, ns.counterfactual_config, ns.counterfactual_split
        )
        d_prime = counterfactual_rows(
            loaded,
            ns.caption_column,
            train_split=ns.train_split,
            exclude_image_ids={r["image_id"] for r in evaluation or []},
        )
        _say(f"training pairs: D {len(train)} + D′ {len(d_prime)} (from {ns.counterfactual_dir})")
        train = training_pairs(train, d_prime)
    if ns.max_train_samples:
        n = min(ns.max_train_samples, len(train))
        train = train.select(range(n)) if hasattr(train, "select") else train[:n]
    return train, evaluation


def _say(message: str) -> None:
    """Print on the main process only (``RANK`` unset or 0 under ``accelerate launch`` / ``torchrun``)."""
    if os.environ.get("RANK", "0") == "0":
        print(message, flush=True)


def training_args_from(ns: argparse.Namespace) -> SpuriousTrainingArguments:
    """Build the arguments; a ``--preset`` fills every field not given on the command line, and
    ``--task`` (when neither given nor preset) follows ``--dataset`` (:data:`DATASET_TASKS`)."""
    fields = {f.name for f in dataclasses.fields(SpuriousTrainingArguments) if f.init}
    preset = dict(PRESETS.get(getattr(ns, "preset", None) or "", {}))
    if getattr(ns, "dataset", None) in DATASET_TASKS:
        preset.setdefault("task", DATASET_TASKS[ns.dataset])
    values = {}
    for key, value in vars(ns).items():
        if key in fields:
            value = preset.get(key, value.value) if isinstance(value, _Default) else value
            values[key] = list(value) if isinstance(value, CommaList) else value
    return SpuriousTrainingArguments(**values)


def _user_error(ns: argparse.Namespace, err: Exception) -> int:
    """Report a user error as ``parser.error`` (usage + message, exit 2); re-raise without a parser or
    with ``hf-spurious --debug train``."""
    parser = getattr(ns, "_parser", None)
    if parser is None or getattr(ns, "show_traceback", False):
        raise err
    parser.error(str(err))
    return 2  # pragma: no cover - parser.error exits


def _setup(ns: argparse.Namespace) -> tuple[Any, Any, Any]:
    """(arguments, trainer, eval rows): everything a bad flag or a bad data directory can break."""
    args = training_args_from(ns)
    train, evaluation = load_data(ns, args.task)
    trainer = SpuriousAwareTrainer(ns.model, args, train_dataset=train, eval_dataset=evaluation)
    return args, trainer, evaluation


def run(ns: argparse.Namespace) -> int:
    """Train (and evaluate) as the flags say. Bad flags, a data directory that does not read or a model
    that does not load end in ``parser.error`` (exit 2) with the message, not a traceback."""
    try:
        args, trainer, evaluation = _setup(ns)
    except (ValueError, OSError) as err:  # RecordError, ImageReadError are ValueErrors
        return _user_error(ns, err)
    result = trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    if not args.push_to_hub:  # push_to_hub saves too (and writes the tagged model card)
        trainer.save_model()
    if args.freeze_policy == "lora" and trainer.is_world_process_zero():  # also a plain, merged checkpoint
        trainer.adapter.save_pretrained(Path(args.output_dir) / "merged", merge_lora=True)
    metrics = dict(result.metrics, world_size=trainer.args.world_size, global_step=trainer.state.global_step)
    if evaluation is not None:
        metrics.update(trainer.evaluate())
    if trainer.is_world_process_zero():
        atomic_write_text(
            Path(args.output_dir, "final_metrics.json"), json.dumps(metrics, indent=2, default=float)
        )
        print(json.dumps({k: v for k, v in metrics.items() if isinstance(v, (int, float))}, default=float))
    if args.push_to_hub:
        trainer.push_to_hub(finetuned_from=ns.model)
    return 0


def main(argv: list[str] | None = None, preset: str | None = None) -> int:
    """Entry point of the example scripts; ``preset`` is the default of ``--preset``."""
    parser = make_parser(None, __doc__.splitlines()[0], add_arguments)
    parser.set_defaults(preset=preset)
    return run(parser.parse_args(argv))
