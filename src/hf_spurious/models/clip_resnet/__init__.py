"""CLIP with OpenAI's modified-ResNet image tower (RN50, RN101, RN50x4, RN50x16, RN50x64), no torchvision.

Importing this package registers ``model_type="clip_resnet"`` with ``AutoConfig`` / ``AutoModel`` (no
``trust_remote_code``), so a converted folder reloads with ``AutoModel.from_pretrained(dir)``;
``hf_spurious.models.load_adapter`` imports it on demand. Modules: :mod:`.configuration`, :mod:`.modeling`,
:mod:`.convert` (open_clip state dicts, with the key table).
"""

from __future__ import annotations

from .configuration import OPENAI_RESNET_CONFIGS, ClipResNetConfig, ClipResNetVisionConfig, resnet_clip_config
from .convert import (
    convert_openclip_checkpoint,
    hf_to_openclip,
    infer_config,
    load_openclip_state_dict,
    openclip_to_hf,
)
from .modeling import AttentionPool, ClipResNetModel, ClipResNetVisionModel

__all__ = [
    "OPENAI_RESNET_CONFIGS",
    "AttentionPool",
    "ClipResNetConfig",
    "ClipResNetModel",
    "ClipResNetVisionConfig",
    "ClipResNetVisionModel",
    "convert_openclip_checkpoint",
    "hf_to_openclip",
    "infer_config",
    "load_openclip_state_dict",
    "openclip_to_hf",
    "register_auto_classes",
    "resnet_clip_config",
]


def register_auto_classes() -> None:
    """Register the config and model with transformers' Auto classes (idempotent)."""
    from transformers import AutoConfig, AutoModel  # lazy: keeps the function cheap to define

    AutoConfig.register(ClipResNetConfig.model_type, ClipResNetConfig, exist_ok=True)
    AutoConfig.register(ClipResNetVisionConfig.model_type, ClipResNetVisionConfig, exist_ok=True)
    AutoModel.register(ClipResNetConfig, ClipResNetModel, exist_ok=True)


register_auto_classes()
