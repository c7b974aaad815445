"""What the trainer does around the optimizer and the loss: BLIP's temperature clamp, Kim et al.'s step
decay, the ITM term."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from transformers import TrainerCallback

__all__ = ["TemperatureClamp", "itm_term", "step_decay_scheduler"]


class TemperatureClamp(TrainerCallback):
    """After every optimizer step, clamp the adapter's temperature to its training range (BLIP:
    ``temp.clamp_(0.001, 0.5)``, as BLIP's own training does). Adapters without ``clamp_temperature``
    (CLIP keeps an unclamped log scale) are left alone."""

    def __init__(self, adapter: Any) -> None:
        self.adapter = adapter

    def on_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        clamp = getattr(self.adapter, "clamp_temperature", None)
        if callable(clamp):
            clamp()


def step_decay_scheduler(
    optimizer: torch.optim.Optimizer,
    *,
    num_rows: int,
    batch_size: int,
    world_size: int,
    accumulation: int,
    every_epochs: float,
    factor: float,
) -> torch.optim.lr_scheduler.LambdaLR:
    """Multiply the learning rate by ``factor`` every ``every_epochs`` epochs (rounded to whole optimizer
    steps, at least one); an epoch is ``num_rows`` rows at ``batch_size`` per process on ``world_size``
    processes with ``accumulation`` micro-batches per step."""
    if not (every_epochs > 0 and math.isfinite(every_epochs)):
        raise ValueError(f"lr_step_decay_every_epochs must be > 0, got {every_epochs}")
    if not (0 < factor <= 1):
        raise ValueError(f"lr_step_decay_factor must lie in (0, 1], got {factor}")
    per_epoch = math.ceil(num_rows / (batch_size * world_size))
    per_epoch = max(1, per_epoch // accumulation)
    interval = max(1, round(every_epochs * per_epoch))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: factor ** (step // interval))


def itm_term(adapter: Any, inputs: dict[str, Any]) -> Callable[[], torch.Tensor | None]:
    """BLIP's ITM loss of a batch, as the callable :class:`~hf_spurious.losses.SpuriousAwareLoss` calls
    after L_CLIP. Captions of one image (``image_index``) are not each other's negatives, so a batch whose
    captions all belong to one image has no negative: the term returns ``None`` (skipped and counted as
    ``skipped_itm``) instead of failing, in training and in evaluation alike."""

    def itm() -> torch.Tensor | None:
        ids = inputs.get("image_index")
        if ids is not None and int(torch.as_tensor(ids).unique().numel()) < 2:
            return None
        return adapter.itm_loss(
            pixel_values=inputs["pixel_values"],
            input_ids=inputs["input_ids"],
            attention_mask=inputs["attention_mask"],
            ids=ids,
        ).itm

    return itm
