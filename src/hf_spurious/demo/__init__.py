"""The end-to-end demo: expose and mitigate spurious correlations on the built-in SpuriousShapes world.

``hf-spurious demo --out DIR`` (or ``make demo``) runs :func:`run_demo` with :class:`DemoConfig`'s defaults.
Names are imported on first use, so ``from hf_spurious.demo.config import DemoConfig`` stays light.
"""

from __future__ import annotations

from hf_spurious._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        ".config": ["DemoConfig"],
        ".claims": ["evaluate_claims"],
        ".pipeline": ["run_demo"],
    },
)
