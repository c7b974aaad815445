"""Counterfactual synthesis: removal planning (α rules), inpainting backends, batched/sharded generation."""

from __future__ import annotations

import importlib
from typing import Any

from hf_spurious.synthesis.planner import RemovalExplanation, RemovalPlan, explain_removal, plan_removal

_LAZY = {
    "Inpainter": "inpaint",
    "get_inpainter": "inpaint",
    "SynthesisSettings": "generator",
    "generate_counterfactuals": "generator",
    "merge_shards": "generator",
}

__all__ = ["RemovalExplanation", "RemovalPlan", "explain_removal", "plan_removal", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
