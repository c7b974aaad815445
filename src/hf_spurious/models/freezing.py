"""Freezing policies for a :class:`~hf_spurious.models.adapters.VisionLanguageAdapter`.

* ``projection``: only the visual and text projections and the logit scale (BLIP: ``temp``) train
  (SigLIP: the text head, ``logit_scale`` and ``logit_bias``; it has no image projection);
* ``full``: every parameter trains, except parts the model itself declares frozen (a model with a
  ``keep_frozen()`` method, e.g. VSE++ with ``finetune_backbone=False``, re-freezes them);
* ``lora``: peft LoRA adapters on ``lora_target_modules`` train, nothing else (the model is wrapped in
  a ``PeftModel`` in place: ``adapter.model`` becomes the wrapper, the adapter's methods keep working).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hf_spurious.models.adapters import (
    BlipRetrievalAdapter,
    ClipAdapter,
    Siglip2Adapter,
    SiglipAdapter,
    VisionLanguageAdapter,
)

__all__ = ["DEFAULT_LORA_TARGETS", "FREEZING_POLICIES", "FreezingSummary", "apply_freezing"]

FREEZING_POLICIES = ("projection", "full", "lora")

DEFAULT_LORA_TARGETS: dict[str, tuple[str, ...]] = {
    # q/v projections of the attention layers in both towers
    ClipAdapter.model_kind: ("q_proj", "v_proj"),
    # query/value of the text encoder's self- and cross-attention, and the vision tower's fused qkv
    BlipRetrievalAdapter.model_kind: ("query", "value", "qkv"),
    # q/v projections of both towers' attention layers (the pooling head's fused attention is left out)
    SiglipAdapter.model_kind: ("q_proj", "v_proj"),
    Siglip2Adapter.model_kind: ("q_proj", "v_proj"),
}


@dataclass(frozen=True)
class FreezingSummary:
    """What :func:`apply_freezing` left trainable."""

    policy: str
    trainable: int
    total: int
    trainable_names: tuple[str, ...]

    @property
    def fraction(self) -> float:
        return self.trainable / self.total if self.total else 0.0

    def __str__(self) -> str:
        return (
            f"{self.policy}: {self.trainable:,} / {self.total:,} parameters trainable "
            f"({100 * self.fraction:.2f} %, {len(self.trainable_names)} tensors)"
        )


def _summary(adapter: VisionLanguageAdapter, policy: str) -> FreezingSummary:
    params = list(adapter.base_model.named_parameters())
    names = tuple(n for n, p in params if p.requires_grad)
    return FreezingSummary(
        policy=policy,
        trainable=sum(p.numel() for _, p in params if p.requires_grad),
        total=sum(p.numel() for _, p in params),
        trainable_names=names,
    )


def apply_freezing(
    adapter: VisionLanguageAdapter,
    policy: str = "projection",
    lora_target_modules: Sequence[str] | str | None = None,
    lora_r: int = 8,
    lora_alpha: int = 16,
    lora_dropout: float = 0.0,
) -> FreezingSummary:
    """Set ``requires_grad`` on the adapter's model according to ``policy``; return what trains.

    ``lora_target_modules`` is a list of module-name suffixes or a regex (peft's rules); the default is
    :data:`DEFAULT_LORA_TARGETS` for the adapter's kind. Names in the summary are relative to the base
    transformers model (LoRA weights appear as ``...q_proj.lora_A.default.weight``).
    """
    if policy not in FREEZING_POLICIES:
        raise ValueError(f"unknown freezing policy {policy!r}; choose one of {', '.join(FREEZING_POLICIES)}")
    wrapped = adapter.model is not adapter.base_model
    if wrapped and policy != "lora":
        raise ValueError(
            f"the model already carries LoRA adapters; policy {policy!r} needs a plain model "
            "(merge first: adapter.model = adapter.model.merge_and_unload())"
        )
    base = adapter.base_model
    if policy == "full":
        base.requires_grad_(True)
        keep_frozen = getattr(base, "keep_frozen", None)  # what a model keeps frozen (VSE++'s fixed VGG)
        if callable(keep_frozen):
            keep_frozen()
    elif policy == "projection":
        base.requires_grad_(False)
        for p in adapter.projection_parameters().values():
            p.requires_grad_(True)
    else:
        if wrapped:
            raise ValueError("the model already carries LoRA adapters; apply_freezing('lora') once")
        if lora_r < 1:
            raise ValueError(f"lora_r must be >= 1, got {lora_r}")
        from peft import LoraConfig, get_peft_model  # lazy: heavy optional dependency

        targets = lora_target_modules or DEFAULT_LORA_TARGETS.get(adapter.model_kind)
        if not targets:
            raise ValueError(f"no default LoRA targets for {adapter.model_kind!r}; pass lora_target_modules")
        config = LoraConfig(
            r=lora_r,
            lora_alpha=lora_alpha,
            lora_dropout=lora_dropout,
            target_modules=targets if isinstance(targets, str) else list(targets),
        )
        try:
            adapter.model = get_peft_model(base, config)
        except ValueError as err:
            raise ValueError(
                f"LoRA targets {targets!r} do not match modules of {type(base).__name__}: {err}"
            ) from err
        # peft freezes every non-LoRA weight, including parameters registered outside the config.
        for name, p in base.named_parameters():
            if "lora_" not in name:
                p.requires_grad_(False)
    return _summary(adapter, policy)
