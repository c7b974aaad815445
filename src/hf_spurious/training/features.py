"""Cached frozen-encoder features: compute pooled encoder outputs once, train the projections on them.

With the ``projection`` policy the vision and text encoders are frozen, so their pooled outputs
(``adapter.image_features`` / ``adapter.text_features``, *before* the projections) are constants. They
are computed once into a ``datasets.Dataset`` cached on disk under a key of the model (every weight) and the
rows' *content* (image bytes, not paths: replacing an image file recomputes), and training runs the
projections (and the same losses) on them. The log says whether a cache was reused and why. Under DDP the
main process hashes the rows and builds the cache while the others wait; it hands them the cache keys and they
read the cache (they never hash the images themselves).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers.utils import logging

from hf_spurious.cache import digest
from hf_spurious.models.adapters import VisionLanguageAdapter

from .collators import ClassificationCollator, RetrievalCollator
from .config import SpuriousTrainingArguments

logger = logging.get_logger(__name__)

# columns carried over from the raw rows to the feature rows
PASSTHROUGH = ("label", "attribute", "group", "is_counterfactual", "image_id", "image_index")


def _image_content(value: Any, files: dict[str, str]) -> Any:
    """What an image cell stands for: its pixels or encoded bytes (a path is read, once per path)."""
    if isinstance(value, (str, os.PathLike)):
        key = str(value)
        if key not in files:
            try:
                files[key] = hashlib.sha256(Path(key).read_bytes()).hexdigest()
            except OSError as err:
                raise ValueError(
                    f"image file {key} cannot be read ({err}); fix the path in the dataset"
                ) from None
        return ("file", files[key])
    if isinstance(value, dict) and ("bytes" in value or "path" in value):
        data = value.get("bytes")
        return ("bytes", hashlib.sha256(data).hexdigest()) if data else _image_content(value["path"], files)
    return _value_content(value)


def _value_content(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return (
            "array",
            str(value.dtype),
            value.shape,
            hashlib.sha256(np.ascontiguousarray(value)).hexdigest(),
        )
    if isinstance(value, (bytes, bytearray)):
        return ("bytes", hashlib.sha256(value).hexdigest())
    if hasattr(value, "tobytes") and hasattr(value, "mode"):  # a PIL image
        return ("pil", value.mode, value.size, hashlib.sha256(value.tobytes()).hexdigest())
    if isinstance(value, np.generic):
        return value.item()
    return value


def _undecoded(dataset: Any) -> Any:
    """A ``datasets.Dataset`` with its image columns left as ``{"bytes", "path"}`` cells (not decoded)."""
    features = getattr(dataset, "features", None)
    if not features or not hasattr(dataset, "cast_column"):
        return dataset
    import datasets  # lazy: datasets is heavy

    for name, feature in features.items():
        if isinstance(feature, datasets.Image) and feature.decode:
            dataset = dataset.cast_column(name, datasets.Image(decode=False))
    return dataset


def content_digest(dataset: Any) -> str:
    """Digest of what the rows hold, in order: every image by its content (the bytes of an image file or
    an encoded cell, the pixels of a PIL image or an array; never only a path or a dataset fingerprint),
    and every other value (caption, label, ...) as it is. Replacing an image file changes it."""
    h, files = hashlib.sha256(), {}
    for row in _undecoded(dataset):
        parts = {
            k: _image_content(v, files) if k == "image" else _value_content(v) for k, v in dict(row).items()
        }
        data = json.dumps(parts, sort_keys=True, default=repr).encode()
        h.update(len(data).to_bytes(8, "little") + data)
    return h.hexdigest()


def features_fingerprint(adapter: VisionLanguageAdapter, dataset: Any, task: str) -> str:
    """Cache key: the adapter's ``fingerprint`` (config, processor settings, every weight) + the rows'
    :func:`content_digest` + task, by :func:`hf_spurious.cache.digest`."""
    return digest(adapter.fingerprint, content_digest(dataset), task, "features-v3", length=20)


@torch.no_grad()
def compute_features(
    adapter: VisionLanguageAdapter,
    dataset: Any,
    *,
    task: str,
    processor: Any = None,
    batch_size: int = 64,
    desc: str = "features",
) -> dict[str, list[Any]]:
    """Pooled encoder outputs for every row, in order, plus the pass-through columns."""
    processor = processor if processor is not None else adapter.processor
    collate = RetrievalCollator(processor) if task == "retrieval" else ClassificationCollator(processor)
    model = adapter.model
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    n = len(dataset)
    columns: dict[str, list[Any]] = {"image_features": []}
    if task == "retrieval":
        columns["text_features"] = []
    try:
        for start in tqdm(range(0, n, batch_size), desc=desc, disable=n <= batch_size):
            rows = [dataset[i] for i in range(start, min(n, start + batch_size))]
            batch = collate(rows)
            img = adapter.image_features(batch["pixel_values"].to(device))
            columns["image_features"].extend(img.float().cpu().numpy())
            if task == "retrieval":
                txt = adapter.text_features(batch["input_ids"].to(device), batch["attention_mask"].to(device))
                columns["text_features"].extend(txt.float().cpu().numpy())
            for key in PASSTHROUGH:
                if key in rows[0]:
                    columns.setdefault(key, []).extend(r.get(key) for r in rows)
    finally:
        model.train(was_training)
    return columns


def cache_features(
    adapter: VisionLanguageAdapter,
    dataset: Any,
    *,
    task: str,
    cache_dir: str | Path | None = None,
    processor: Any = None,
    batch_size: int = 64,
    key: str | None = None,
) -> Any:
    """A ``datasets.Dataset`` of frozen features for ``dataset`` (loaded from ``cache_dir`` when cached).

    Rows hold ``image_features`` (and ``text_features`` for retrieval) as float32 arrays plus the
    ``label``/``attribute``/``group``/``is_counterfactual``/``image_id``/``image_index`` columns present.
    ``key`` is the :func:`features_fingerprint` when the caller already has it (another process computed it).
    """
    import datasets  # lazy: datasets is heavy

    if task not in ("retrieval", "classification"):
        raise ValueError(f"task must be 'retrieval' or 'classification', got {task!r}")
    if len(dataset) == 0:
        raise ValueError("cannot cache features of an empty dataset")
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"features-{key or features_fingerprint(adapter, dataset, task)}"
        if (path / "dataset_info.json").exists():
            logger.warning(
                f"feature cache: reusing {path}: same model weights and settings, same task and the same row "
                "content (images compared by their bytes, captions and labels by value)"
            )
            return datasets.load_from_disk(str(path)).with_format("numpy")
        logger.warning(f"feature cache: computing the features of {len(dataset)} rows into {path}")
    cols = compute_features(adapter, dataset, task=task, processor=processor, batch_size=batch_size)
    out = datasets.Dataset.from_dict(
        {k: [np.asarray(v) if "features" in k else v for v in vals] for k, vals in cols.items()}
    )
    if path is not None:
        _save_new(out, path)
        out = datasets.load_from_disk(str(path))
    return out.with_format("numpy")


def _save_new(dataset: Any, path: Path) -> None:
    """Save into a hidden sibling, then rename it to ``path`` (a reader never sees half a cache; when
    another process finished the same cache first, its copy is kept)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    try:
        dataset.save_to_disk(str(tmp))
        if path.exists() and not (path / "dataset_info.json").exists():
            shutil.rmtree(path)  # a partial cache left by an interrupted older version
        try:
            os.rename(tmp, path)
        except OSError:
            if not (path / "dataset_info.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


#: cached feature sets up to this size are read into memory once by :func:`feature_rows`
IN_MEMORY_MAX_BYTES = 1 << 30


def feature_rows(dataset: Any, max_bytes: int = IN_MEMORY_MAX_BYTES) -> Any:
    """Cached features as in-memory rows (numpy values) when the set is at most ``max_bytes``: one
    Arrow-to-numpy conversion instead of one per batch, which is most of an epoch's time on cached features.
    Larger sets are returned as they are (memory-mapped)."""
    if dataset.data.nbytes > max_bytes:
        return dataset
    columns = dataset.with_format("numpy")[:]
    return [{k: v[i] for k, v in columns.items()} for i in range(len(dataset))]


@torch.no_grad()
def prompt_features(
    adapter: VisionLanguageAdapter, tokenizer: Any, texts: Sequence[str], batch_size: int = 256
) -> torch.Tensor:
    """Pooled (pre-projection) text-encoder outputs of ``texts`` (frozen text encoder), shape (N, Dt)."""
    device = next(adapter.model.parameters()).device
    was_training = adapter.model.training
    adapter.model.eval()
    try:
        out = []
        for start in range(0, len(texts), batch_size):
            enc = tokenizer(
                list(texts[start : start + batch_size]), padding=True, truncation=True, return_tensors="pt"
            )
            out.append(adapter.text_features(enc["input_ids"].to(device), enc["attention_mask"].to(device)))
        return torch.cat(out).float()
    finally:
        adapter.model.train(was_training)


def cached_datasets(
    adapter: VisionLanguageAdapter,
    args: SpuriousTrainingArguments,
    processor: Any,
    *datasets_: Any,
) -> list[Any]:
    """Cached-feature versions of the datasets (in-memory rows, see :func:`feature_rows`), stored under
    ``args.feature_cache_dir`` (default ``<output_dir>/feature_cache``). ``None`` stays ``None``; rows that
    already hold ``image_features`` are kept; a dict of datasets is cached value by value.

    Under several processes only the first hashes the rows (every image's bytes) and sends the cache keys to
    the others; each machine's main process then computes or loads the cache while its other processes wait,
    and they read it.
    """
    from accelerate.utils import broadcast_object_list  # lazy: only the trainer needs it

    cache_dir = args.feature_cache_dir or str(Path(args.output_dir, "feature_cache"))
    todo = [ds for ds in _flat(datasets_) if ds is not None and not (len(ds) and "image_features" in ds[0])]
    keys: list[str | None] = [None] * len(todo)
    if args.process_index == 0:
        keys = [features_fingerprint(adapter, ds, args.task) for ds in todo]
    if args.world_size > 1 and todo:  # every process has the same datasets, so the same todo
        keys = broadcast_object_list(keys, from_process=0)
    with args.main_process_first(desc="feature cache"):
        cached = {
            id(ds): feature_rows(
                cache_features(adapter, ds, task=args.task, cache_dir=cache_dir, processor=processor, key=key)
            )
            for ds, key in zip(todo, keys)
        }

    def swap(ds: Any) -> Any:
        return cached.get(id(ds), ds)

    return [{k: swap(v) for k, v in ds.items()} if isinstance(ds, dict) else swap(ds) for ds in datasets_]


def _flat(datasets_: Sequence[Any]) -> list[Any]:
    """The datasets, with a dict of datasets replaced by its values."""
    return [v for ds in datasets_ for v in (ds.values() if isinstance(ds, dict) else [ds])]
