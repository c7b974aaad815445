"""Counterfactual synthesis: removal planning (α rules), inpainting backends, batched/sharded generation."""

from __future__ import annotations

from hf_spurious._lazy import lazy_exports
from hf_spurious.synthesis.planner import RemovalExplanation, RemovalPlan, explain_removal, plan_removal

__getattr__, __dir__, _lazy_names = lazy_exports(
    __name__,
    {
        ".inpaint": ["Inpainter", "get_inpainter"],
        ".settings": ["SynthesisError", "SynthesisSettings"],
        ".captions": ["TextSide"],
        ".shards": ["collect_stats", "decorrelated_features"],
        ".merge": ["merge_shards"],
        ".generator": ["generate_counterfactuals", "process_state"],
    },
)

__all__ = ["RemovalExplanation", "RemovalPlan", "explain_removal", "plan_removal", *_lazy_names]
