"""Cached frozen-encoder features: compute pooled encoder outputs once, train the projections on them.

With the ``projection`` policy the vision and text encoders are frozen, so their pooled outputs
(``adapter.image_features`` / ``adapter.text_features``, *before* the projections) are constants. They
are computed once into a ``datasets.Dataset`` cached on disk under a fingerprint of the model and the
data, and training runs the projections (and the same losses) on them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from hf_spurious.cache import digest
from hf_spurious.models.adapters import VisionLanguageAdapter

from .collators import ClassificationCollator, RetrievalCollator
from .config import SpuriousTrainingArguments

# columns carried over from the raw rows to the feature rows
PASSTHROUGH = ("label", "attribute", "group", "is_counterfactual", "image_id", "image_index")


def _data_fingerprint(dataset: Any) -> str:
    fp = getattr(dataset, "_fingerprint", None)
    if fp:
        return str(fp)
    from datasets.fingerprint import Hasher  # lazy: datasets is heavy

    return Hasher.hash([dict(r) for r in dataset])


def features_fingerprint(adapter: VisionLanguageAdapter, dataset: Any, task: str) -> str:
    """Cache key: the adapter's ``fingerprint`` (config, processor settings, every weight) + data
    fingerprint + task, by :func:`hf_spurious.cache.digest`."""
    return digest(adapter.fingerprint, _data_fingerprint(dataset), task, "features-v2", length=20)


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
) -> Any:
    """A ``datasets.Dataset`` of frozen features for ``dataset`` (loaded from ``cache_dir`` when cached).

    Rows hold ``image_features`` (and ``text_features`` for retrieval) as float32 arrays plus the
    ``label``/``attribute``/``group``/``is_counterfactual``/``image_id``/``image_index`` columns present.
    """
    import datasets  # lazy: datasets is heavy

    if task not in ("retrieval", "classification"):
        raise ValueError(f"task must be 'retrieval' or 'classification', got {task!r}")
    if len(dataset) == 0:
        raise ValueError("cannot cache features of an empty dataset")
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"features-{features_fingerprint(adapter, dataset, task)}"
        if (path / "dataset_info.json").exists():
            return datasets.load_from_disk(str(path)).with_format("numpy")
    cols = compute_features(adapter, dataset, task=task, processor=processor, batch_size=batch_size)
    out = datasets.Dataset.from_dict(
        {k: [np.asarray(v) if "features" in k else v for v in vals] for k, vals in cols.items()}
    )
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        out.save_to_disk(str(path))
        out = datasets.load_from_disk(str(path))
    return out.with_format("numpy")


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
    """Cached-feature versions of the datasets (in-memory rows, see :func:`feature_rows`), computed on the
    main process first and stored under ``args.feature_cache_dir`` (default ``<output_dir>/feature_cache``).
    ``None`` stays ``None``; rows that already hold ``image_features`` are kept; a dict of datasets is
    cached value by value."""
    cache_dir = args.feature_cache_dir or str(Path(args.output_dir, "feature_cache"))

    def cached(ds: Any) -> Any:
        if ds is None or (len(ds) and "image_features" in ds[0]):
            return ds
        return feature_rows(
            cache_features(adapter, ds, task=args.task, cache_dir=cache_dir, processor=processor)
        )

    with args.main_process_first(desc="feature cache"):
        return [
            {k: cached(v) for k, v in ds.items()} if isinstance(ds, dict) else cached(ds) for ds in datasets_
        ]
