"""Counterfactual synthesis: removal planning (α rules), inpainting backends, batched/sharded generation."""

from __future__ import annotations

from hf_spurious._lazy import lazy_exports
from hf_spurious.synthesis.planner import RemovalExplanation, RemovalPlan, explain_removal, plan_removal

_LAZY = {
    "Inpainter": ".inpaint",
    "get_inpainter": ".inpaint",
    "SynthesisError": ".settings",
    "SynthesisSettings": ".settings",
    "TextSide": ".captions",
    "collect_stats": ".shards",
    "decorrelated_features": ".shards",
    "merge_shards": ".shards",
    "generate_counterfactuals": ".generator",
    "process_state": ".generator",
}

__all__ = ["RemovalExplanation", "RemovalPlan", "explain_removal", "plan_removal", *sorted(_LAZY)]

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
