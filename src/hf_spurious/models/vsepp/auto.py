"""Register ``model_type="vsepp"`` with transformers' ``AutoConfig`` / ``AutoModel`` without importing them.

``import hf_spurious`` calls :func:`install_auto_registration`: if transformers' Auto modules are already
loaded, VSE++ is registered at once; otherwise a one-shot import hook registers it right after
``transformers.models.auto.configuration_auto`` (the config) and ``...modeling_auto`` (the model) load. So
``import hf_spurious; AutoModel.from_pretrained(vsepp_dir)`` works with no ``trust_remote_code``, while
``import hf_spurious`` itself stays free of torch and transformers. Standard library only.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

__all__ = ["AUTO_MODULES", "install_auto_registration", "register_config", "register_model"]

_CONFIG_MODULE = "transformers.models.auto.configuration_auto"
_MODEL_MODULE = "transformers.models.auto.modeling_auto"
AUTO_MODULES = (_CONFIG_MODULE, _MODEL_MODULE)
"""The transformers modules after whose import VSE++ is registered."""


def register_config(configuration_auto: ModuleType | None = None) -> None:
    """``AutoConfig.register("vsepp", VseppConfig)`` (idempotent)."""
    from hf_spurious.models.vsepp.configuration import VseppConfig  # lazy: imports transformers

    auto = configuration_auto or importlib.import_module(_CONFIG_MODULE)
    auto.AutoConfig.register(VseppConfig.model_type, VseppConfig, exist_ok=True)


def register_model(modeling_auto: ModuleType | None = None) -> None:
    """``AutoModel.register(VseppConfig, VseppModel)`` (idempotent; registers the config too)."""
    register_config()
    from hf_spurious.models.vsepp.configuration import VseppConfig  # lazy: imports transformers
    from hf_spurious.models.vsepp.modeling import VseppModel  # lazy: imports torch

    auto = modeling_auto or importlib.import_module(_MODEL_MODULE)
    auto.AutoModel.register(VseppConfig, VseppModel, exist_ok=True)


_REGISTER = {_CONFIG_MODULE: register_config, _MODEL_MODULE: register_model}


class _RegisterAfterImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: wraps the real loader of the Auto modules to register VSE++ after they run."""

    def __init__(self) -> None:
        self.pending = set(AUTO_MODULES)

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: Any = None) -> Any:
        if fullname not in self.pending:
            return None
        self.pending.discard(fullname)
        if not self.pending and self in sys.meta_path:
            sys.meta_path.remove(self)
        spec = None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        run = spec.loader.exec_module
        register = _REGISTER[fullname]

        def exec_module(module: ModuleType) -> None:
            run(module)
            register(module)

        spec.loader.exec_module = exec_module  # this spec's own loader instance
        return spec


def install_auto_registration() -> None:
    """Register VSE++ now if the Auto modules are loaded, else when they are (idempotent)."""
    loaded = [m for m in AUTO_MODULES if m in sys.modules]
    if _MODEL_MODULE in loaded:
        register_model(sys.modules[_MODEL_MODULE])
    elif _CONFIG_MODULE in loaded:
        register_config(sys.modules[_CONFIG_MODULE])
    if len(loaded) == len(AUTO_MODULES) or any(isinstance(f, _RegisterAfterImport) for f in sys.meta_path):
        return
    finder = _RegisterAfterImport()
    finder.pending -= set(loaded)
    sys.meta_path.insert(0, finder)
