"""``load_adapter``: a model instance, hub id, local folder or LoRA folder -> the matching adapter."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hf_spurious.models.adapters import (
    BLIP_TEMP_KEY,
    BlipRetrievalAdapter,
    ClipAdapter,
    UnsupportedModelError,
    VisionLanguageAdapter,
)
from hf_spurious.models.adapters.base import peft_base

__all__ = ["SUPPORTED", "load_adapter"]

_CLIP_SHAPE = ("vision_model", "text_model", "visual_projection", "text_projection", "logit_scale")
_BLIP_SHAPE = ("vision_model", "text_encoder", "vision_proj", "text_proj", "itm_head")
SUPPORTED = (
    "CLIPModel (or a model with attributes " + ", ".join(_CLIP_SHAPE) + ")",
    "ClipResNetModel (model_type 'clip_resnet': CLIP RN50 / RN101 / RN50x4 ..., see hf-spurious convert-openclip)",
    "BlipForImageTextRetrieval (or a model with attributes " + ", ".join(_BLIP_SHAPE) + ")",
)
"""The model types :func:`load_adapter` accepts, as shown in its errors."""
_PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json")


def _adapter_class(model: nn.Module) -> type[VisionLanguageAdapter]:
    from transformers import BlipForImageTextRetrieval, CLIPModel  # lazy: heavy optional dependency

    if isinstance(model, CLIPModel):
        return ClipAdapter
    if isinstance(model, BlipForImageTextRetrieval):
        return BlipRetrievalAdapter
    if all(hasattr(model, a) for a in _CLIP_SHAPE):
        return ClipAdapter
    if all(hasattr(model, a) for a in _BLIP_SHAPE):
        return BlipRetrievalAdapter
    raise UnsupportedModelError(
        f"no vision-language adapter for {type(model).__name__}; supported: " + "; ".join(SUPPORTED)
    )


def _model_class_for(config: Any, where: str) -> type:
    from transformers import BlipForImageTextRetrieval, CLIPModel  # lazy: heavy optional dependency

    model_type = getattr(config, "model_type", None)
    architectures = list(getattr(config, "architectures", None) or [])
    if model_type == "clip":
        return CLIPModel
    if model_type == "clip_resnet":
        from hf_spurious.models.clip_resnet import ClipResNetModel  # lazy: registers the Auto classes too

        return ClipResNetModel
    if model_type == "blip":
        if architectures and "BlipForImageTextRetrieval" not in architectures:
            raise UnsupportedModelError(
                f"{where} is a BLIP {architectures[0]} checkpoint; retrieval needs a BlipForImageTextRetrieval "
                "checkpoint (e.g. Salesforce/blip-itm-base-coco)"
            )
        return BlipForImageTextRetrieval
    raise UnsupportedModelError(
        f"{where} has model_type {model_type!r} ({', '.join(architectures) or 'no architectures'}); "
        "supported: " + "; ".join(SUPPORTED)
    )


def _checkpoint_tensor(where: str | Path, key: str) -> torch.Tensor | None:
    """Read one tensor from a local safetensors checkpoint (single file or sharded), if present."""
    folder = Path(where)
    if not folder.is_dir():
        return None
    from safetensors import safe_open  # lazy: only needed for local checkpoints

    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shard = json.loads(index.read_text(encoding="utf-8")).get("weight_map", {}).get(key)
        if shard is None or Path(shard).name != shard:  # never follow paths out of the folder
            return None
        files = [folder / shard]
    else:
        files = [folder / "model.safetensors"]
    for file in files:
        if file.is_file():
            with safe_open(str(file), framework="pt") as f:
                if key in set(f.keys()):
                    return f.get_tensor(key)
    return None


def _folder_processor(folder: Path, processor: Any) -> Any:
    """``processor`` if given, else the folder's own processor when it holds one, else None."""
    if processor is None and any((folder / f).is_file() for f in _PROCESSOR_FILES):
        from transformers import AutoProcessor  # lazy: heavy optional dependency

        processor = AutoProcessor.from_pretrained(str(folder))
    return processor


def _is_peft_folder(where: str | Path) -> bool:
    folder = Path(where)
    return (folder / "adapter_config.json").is_file() and not (folder / "config.json").is_file()


def _load_peft_folder(
    folder: Path, processor: Any, device: str | torch.device | None, **kwargs: Any
) -> VisionLanguageAdapter:
    """A LoRA folder (peft format): load its base model by name, then the adapter weights on top."""
    from peft import PeftConfig, PeftModel  # lazy: heavy optional dependency

    base_id = PeftConfig.from_pretrained(str(folder)).base_model_name_or_path
    if not base_id:
        raise ValueError(
            f"{folder}/adapter_config.json names no base_model_name_or_path to load the LoRA onto"
        )
    processor = _folder_processor(folder, processor)
    base = load_adapter(base_id, processor, device, **kwargs)
    base.model = PeftModel.from_pretrained(base.model, str(folder))
    return base


@contextmanager
def _expect_temp_key(cls: type) -> Iterator[None]:
    """While loading a BLIP checkpoint, don't report the adapter's saved ``temp`` as an unexpected key."""
    if cls.__name__ != "BlipForImageTextRetrieval":
        yield
        return
    before = cls.__dict__.get("_keys_to_ignore_on_load_unexpected", None)
    had = "_keys_to_ignore_on_load_unexpected" in cls.__dict__
    cls._keys_to_ignore_on_load_unexpected = {*(before or ()), rf"^{BLIP_TEMP_KEY}$"}
    try:
        yield
    finally:
        if had:
            cls._keys_to_ignore_on_load_unexpected = before
        else:
            del cls._keys_to_ignore_on_load_unexpected


def _load_pretrained(where: str, processor: Any, **kwargs: Any) -> tuple[nn.Module, Any, float | None]:
    """Model (concrete class named by the config), processor and saved BLIP temperature from a hub id / folder."""
    from transformers import AutoConfig, AutoProcessor  # lazy: heavy optional dependency

    import hf_spurious.models.clip_resnet  # noqa: F401  lazy: registers model_type "clip_resnet" (heavy)

    config = AutoConfig.from_pretrained(where)
    cls = _model_class_for(config, where)
    with _expect_temp_key(cls):
        model = cls.from_pretrained(where, **kwargs)
    if processor is None:
        processor = AutoProcessor.from_pretrained(where)
    saved = _checkpoint_tensor(where, BLIP_TEMP_KEY) if cls.__name__ == "BlipForImageTextRetrieval" else None
    return model, processor, None if saved is None else float(saved)


def _from_source_folder(model: nn.Module, processor: Any) -> tuple[Any, float | None]:
    """For a model the caller loaded from a local folder: the folder's processor and saved BLIP temperature."""
    source = getattr(peft_base(model), "name_or_path", "") or ""
    if not (source and Path(source).is_dir()):
        return processor, None
    processor = _folder_processor(Path(source), processor)
    saved = _checkpoint_tensor(source, BLIP_TEMP_KEY)
    return processor, None if saved is None else float(saved)


def load_adapter(
    model_or_id_or_dir: nn.Module | str | Path,
    processor: Any = None,
    device: str | torch.device | None = None,
    **from_pretrained_kwargs: Any,
) -> VisionLanguageAdapter:
    """Wrap a model instance, or load a hub id / local folder, into the matching adapter.

    A string or path loads with the concrete class named by the config (``CLIPModel`` for
    ``model_type="clip"``, ``BlipForImageTextRetrieval`` for BLIP) and ``AutoProcessor`` from the same
    place unless ``processor`` is given. A peft-wrapped model is accepted as is. Anything else raises
    :class:`UnsupportedModelError` listing the supported types.
    """
    if isinstance(model_or_id_or_dir, (str, Path)) and _is_peft_folder(model_or_id_or_dir):
        return _load_peft_folder(Path(model_or_id_or_dir), processor, device, **from_pretrained_kwargs)
    if isinstance(model_or_id_or_dir, (str, Path)):
        where = str(model_or_id_or_dir)
        model, processor, blip_temp = _load_pretrained(where, processor, **from_pretrained_kwargs)
    elif isinstance(model_or_id_or_dir, nn.Module):
        model = model_or_id_or_dir
        processor, blip_temp = _from_source_folder(model, processor)
    else:
        raise TypeError(
            f"load_adapter takes a model, a hub id or a folder, got {type(model_or_id_or_dir).__name__}"
        )
    adapter_cls = _adapter_class(peft_base(model))
    if adapter_cls is BlipRetrievalAdapter:
        adapter: VisionLanguageAdapter = BlipRetrievalAdapter(model, processor, temp=blip_temp)
    else:
        adapter = adapter_cls(model, processor)
    if device is not None:
        adapter.to(device)
    return adapter
