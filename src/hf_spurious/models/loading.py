"""``load_adapter``: a model instance, hub id, local folder or LoRA folder -> the matching adapter."""

from __future__ import annotations

import difflib
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
    VisionLanguageAdapter,
)
from hf_spurious.models.adapters.base import peft_base
from hf_spurious.models.registry import FAMILIES, adapter_class_for, family_for_config

__all__ = ["SUPPORTED", "load_adapter"]

SUPPORTED = tuple(f.describe() for f in FAMILIES)
"""The model types :func:`load_adapter` accepts, as shown in its errors (from :data:`~.registry.FAMILIES`)."""
_PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json")


def _adapter_class(model: nn.Module) -> type[VisionLanguageAdapter]:
    return adapter_class_for(model)


def _model_class_for(config: Any, where: str) -> type:
    return family_for_config(config, where).load_model_class()


def _looks_local(where: str) -> bool:
    """Whether a string that names no existing folder was meant as a local path rather than a hub id."""
    if where.startswith(("/", ".", "~")) or "\\" in where or where.endswith("/") or where.count("/") > 1:
        return True
    parent = Path(where).parent
    return str(parent) != "." and parent.is_dir()


def _missing_folder_error(where: str) -> FileNotFoundError:
    path = Path(where).expanduser()
    parent = path.parent if str(path.parent) else Path(".")
    hint = ""
    if parent.is_dir():
        names = [p.name for p in parent.iterdir() if p.is_dir()]
        close = difflib.get_close_matches(path.name, names, n=3, cutoff=0.6)
        if close:
            hint = " (did you mean " + " or ".join(repr(str(parent / c)) for c in close) + "?)"
    else:
        hint = f" (its parent folder {str(parent)!r} does not exist either)"
    return FileNotFoundError(
        f"model folder {where!r} does not exist{hint}; check the path, or give a Hugging Face Hub id "
        "of the form 'org/name'"
    )


def _load_config(where: str) -> Any:
    """``AutoConfig`` for a folder or hub id, with errors that name the path / id and the fix."""
    from transformers import AutoConfig  # lazy: heavy optional dependency

    folder = Path(where).expanduser()
    if not folder.exists() and _looks_local(where):
        raise _missing_folder_error(where)
    if folder.is_dir() and not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"{where} is a folder but holds no config.json: point at a folder written by save_pretrained "
            "(a checkpoint folder with config.json) or a LoRA folder with adapter_config.json"
        )
    try:
        return AutoConfig.from_pretrained(str(folder) if folder.is_dir() else where)
    except OSError as err:
        if folder.is_dir():
            raise
        from huggingface_hub import constants  # lazy: installed with transformers

        offline = (
            " (HF_HUB_OFFLINE is set, so only the local cache is read)" if constants.HF_HUB_OFFLINE else ""
        )
        raise OSError(
            f"could not load model {where!r} from the Hugging Face Hub or its local cache{offline} "
            f"({_first_line(err)}). "
            f"If this machine is offline, download it on a connected one (hf download {where}) and copy the "
            "cache, or pass a local folder; if it is a local path, check the spelling"
        ) from err


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


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
    from transformers import AutoProcessor  # lazy: heavy optional dependency

    import hf_spurious.models.clip_resnet  # noqa: F401  lazy: registers model_type "clip_resnet" (heavy)

    config = _load_config(where)
    local = Path(where).expanduser()
    where = str(local) if local.is_dir() else where
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

    A string or path loads with the concrete class that :data:`~hf_spurious.models.registry.FAMILIES`
    names for the config's ``model_type`` (``CLIPModel``, ``BlipForImageTextRetrieval``, ``SiglipModel``,
    ...) and ``AutoProcessor`` from the same place unless ``processor`` is given. A peft-wrapped model is
    accepted as is. Anything else raises :class:`UnsupportedModelError` listing the supported families;
    a local path that does not exist raises ``FileNotFoundError`` naming it (with close matches), and a
    hub id that cannot be fetched (offline) an ``OSError`` saying how to get it.
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
