"""Checks of :class:`~hf_spurious.training.config.SpuriousTrainingArguments` values, run when they are read.

Every message names the setting, the allowed range and the value given (issue 13, rule 4): a NaN loss
weight, a step-decay factor of -2 (gradient ascent every other interval) or two classes with one name
(every prediction becomes the first) fail when the arguments are built, not at some later step.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from typing import Any

import torch

__all__ = ["check_combinations", "check_names", "check_numbers", "cpu_only_launch"]


def _number(name: str, value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None


def _at_least(args: Any, names: Iterable[str], low: float, *, strict: bool = False, optional: bool = False):
    for name in names:
        value = getattr(args, name)
        if value is None and optional:
            continue
        v = _number(name, value)
        ok = math.isfinite(v) and (v > low if strict else v >= low)
        if not ok:
            bound = f"> {low:g}" if strict else f">= {low:g}"
            interval = f"({low:g}, inf)" if strict else f"[{low:g}, inf)"
            raise ValueError(f"{name} must be {bound} and finite (allowed: {interval}), got {value!r}")


def check_numbers(args: Any, weights: Sequence[str]) -> None:
    """Loss weights, Group DRO, step decay, LoRA, triplet margin and logit-scale values in their ranges."""
    _at_least(args, (*weights, "dro_step_size", "dro_generalization_adjustment", "triplet_margin"), 0.0)
    _at_least(args, ("lr_step_decay_every_epochs",), 0.0, strict=True, optional=True)
    _at_least(args, ("lora_r", "lora_alpha"), 0.0, strict=True)
    factor = _number("lr_step_decay_factor", args.lr_step_decay_factor)
    if not (0 < factor <= 1):
        raise ValueError(
            "lr_step_decay_factor must lie in (0, 1] (the learning rate is multiplied by it every interval; "
            f"Kim et al. use 0.5), got {args.lr_step_decay_factor!r}"
        )
    if args.logit_scale_init is not None and not math.isfinite(
        _number("logit_scale_init", args.logit_scale_init)
    ):
        raise ValueError(
            f"logit_scale_init must be a finite log scale (e.g. ln(1/0.07) = 2.6593), got {args.logit_scale_init!r}"
        )


def check_names(args: Any) -> None:
    """Class names, attribute names and attribute prompts: non-empty and without duplicates."""
    for name in ("class_names", "attribute_names", "attribute_prompts"):
        values = getattr(args, name)
        if values is None:
            continue
        if isinstance(values, str):
            raise ValueError(f"{name} must be a list of names, got the string {values!r}")
        blank = [i for i, v in enumerate(values) if not str(v).strip()]
        if blank:
            raise ValueError(f"{name}[{blank[0]}] is empty; give every entry a name")
        seen: dict[str, int] = {}
        for i, v in enumerate(values):
            key = str(v).strip().lower()
            if key in seen:
                raise ValueError(
                    f"{name} has {v!r} twice (positions {seen[key]} and {i}); the names must be distinct, "
                    "or two classes get one prompt and every prediction goes to the first"
                )
            seen[key] = i
    if args.class_names is not None and len(args.class_names) < 2:
        raise ValueError(f"class_names needs at least 2 classes, got {list(args.class_names)}")


def check_combinations(args: Any, weights: Sequence[str]) -> None:
    """Combinations of loss weights, prompts and objective that cannot train."""
    per_example = args.clip_weight > 0 or args.zero_shot_ce_weight > 0
    if args.task == "retrieval" and args.clip_weight == 0 and args.itm_weight == 0:
        raise ValueError("every retrieval loss weight is 0; set clip_weight or itm_weight > 0")
    if (
        args.task == "classification"
        and not per_example
        and not any(getattr(args, w) > 0 for w in weights[2:-1])
    ):
        raise ValueError("every loss weight is 0; set at least clip_weight or zero_shot_ce_weight > 0")
    if args.objective == "group_dro" and args.task != "classification":
        raise ValueError("--objective group_dro needs --task classification (groups = class x attribute)")
    if args.objective == "group_dro" and not per_example:
        raise ValueError(
            "--objective group_dro reweights per-example losses: set --clip-weight or --zero-shot-ce-weight > 0"
        )
    if args.task == "classification" and args.text_class_weight > 0 and len(args.templates) < 2:
        raise ValueError(
            "text_class_weight > 0 (L_lc) needs at least 2 templates (a class prompt's positives are its other "
            "templates): use --templates default, or set --text_class_weight 0"
        )
    if args.text_spurious_weight > 0 and not args.attribute_names:
        raise ValueError("text_spurious_weight > 0 needs attribute_names (e.g. --attribute_names land water)")
    if (
        args.spurious_form == "cross_entropy"
        and args.image_spurious_weight > 0
        and not args.attribute_prompts
    ):
        raise ValueError(
            "--spurious-form cross_entropy needs --attribute-prompts (e.g. 'bird on land' 'bird on water')"
        )


def cpu_only_launch() -> bool:
    """True under a multi-process launch (``accelerate launch`` / ``torchrun``: ``WORLD_SIZE`` > 1) on a
    machine without a GPU. ``transformers.TrainingArguments`` then sets up DDP only with ``use_cpu``;
    without it every process trains alone (world size 1), all writing the same output folder."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return False
    return world > 1 and not torch.cuda.is_available() and not _other_accelerator()


def _other_accelerator() -> bool:
    xpu = getattr(torch, "xpu", None)
    return bool(xpu is not None and xpu.is_available())
