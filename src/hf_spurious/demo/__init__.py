"""The end-to-end demo: expose and mitigate spurious correlations on the built-in SpuriousShapes world.

``hf-spurious demo --out DIR`` (or ``make demo``) runs :func:`run_demo` with :class:`DemoConfig`'s defaults.
"""

from __future__ import annotations

from .pipeline import DemoConfig, evaluate_claims, run_demo

__all__ = ["DemoConfig", "evaluate_claims", "run_demo"]
