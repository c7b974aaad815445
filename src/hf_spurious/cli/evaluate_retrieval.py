"""``hf-spurious evaluate --task retrieval``: load the counterfactual queries, the caption gallery and the
Recall@K test set the flags name, then score ODmAP@k / Recall@K."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from hf_spurious.cache import ArrayStore
from hf_spurious.data import build_gallery
from hf_spurious.data.builders import load_source_records
from hf_spurious.evaluation import (
    Gallery,
    RecallSet,
    RetrievalQueries,
    evaluate_recall,
    evaluate_retrieval,
)
from hf_spurious.evaluation.retrieval_sets import QUERY_COLUMNS
from hf_spurious.models.adapters import VisionLanguageAdapter
from hf_spurious.synthesis.settings import SynthesisSettings
from hf_spurious.text import caption_class_matrix
from hf_spurious.vocab import load_vocabulary


def _open_dataset(dataset: str, config: str | None) -> Any:
    """A dataset (or DatasetDict) from a parquet file, a save_to_disk / generator folder or a Hub id."""
    import datasets  # lazy: heavy optional dependency

    path = Path(dataset)
    if not path.exists():
        return datasets.load_dataset(dataset, config)
    if path.is_file():
        return datasets.load_dataset("parquet", data_files=str(path), split="train")
    if (path / "dataset_dict.json").exists() or (path / "state.json").exists():
        return datasets.load_from_disk(str(path))
    if (path / "manifest.json").exists() and (path / "shards").is_dir():  # a generator work folder
        files = sorted(str(f) for f in (path / "shards").glob("*.parquet"))
        return datasets.load_dataset("parquet", data_files=files, split="train")
    return datasets.load_dataset(str(path), config)


def load_query_dataset(dataset: str, split: str = "test", config: str | None = None) -> Any:
    """A counterfactual split as a ``datasets.Dataset`` (images left encoded)."""
    import datasets  # lazy: heavy optional dependency

    ds = _open_dataset(dataset, config)
    if isinstance(ds, datasets.DatasetDict):
        if split in ds:
            ds = ds[split]
        elif len(ds) == 1:
            ds = next(iter(ds.values()))
        else:
            raise SystemExit(f"error: {dataset} has splits {sorted(ds)}; choose one with --split")
    missing = [c for c in QUERY_COLUMNS if c not in ds.column_names]
    if missing:
        raise SystemExit(
            f"error: {dataset} lacks the columns {missing}; is it a counterfactual (decorrelated) split?"
        )
    return ds.cast_column("image", datasets.Image(decode=False))


def read_caption_file(path: Path) -> list[str]:
    """Captions from .txt (one a line), .json (list or {"captions": [...]}) or .jsonl ({"caption": ...}).

    Every error names the file, the line (.jsonl) and the fix.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise SystemExit(
            f"error: {path} is not UTF-8 text (bad byte at offset {err.start}); save it as UTF-8"
        ) from None
    if path.suffix == ".txt":
        return [line for line in text.splitlines() if line.strip()]
    if path.suffix == ".jsonl":
        return [_jsonl_caption(path, n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    if path.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise SystemExit(f"error: {path} is not valid JSON ({err.msg}, line {err.lineno})") from None
        data = data.get("captions", data) if isinstance(data, dict) else data
        if not isinstance(data, list) or not all(isinstance(c, str) for c in data):
            raise SystemExit(f"error: {path} must hold a list of caption strings")
        return data
    raise SystemExit(f"error: unsupported gallery file {path}; use a data folder or .txt/.json/.jsonl")


def _jsonl_caption(path: Path, line_no: int, line: str) -> str:
    """The ``caption`` of one .jsonl line; errors name the file, the line and the expected shape."""
    shape = 'each line must be one JSON object like {"caption": "A dog on a bench."}'
    try:
        row = json.loads(line)
    except json.JSONDecodeError as err:
        raise SystemExit(
            f"error: {path} line {line_no}: not valid JSON ({err.msg}; a truncated line?); {shape}"
        ) from None
    if not isinstance(row, dict) or "caption" not in row:
        found = sorted(row) if isinstance(row, dict) else type(row).__name__
        raise SystemExit(f'error: {path} line {line_no}: no "caption" key (found {found}); {shape}')
    if not isinstance(row["caption"], str) or not row["caption"].strip():
        raise SystemExit(f'error: {path} line {line_no}: "caption" must be a non-empty string; {shape}')
    return row["caption"]


def load_gallery(args: argparse.Namespace, cache_dir: Path) -> Gallery:
    """The ODmAP gallery: every caption of a source folder, or of a captions file, with its classes."""
    if not args.gallery:
        raise SystemExit(
            "error: --gallery is required for retrieval (a source data folder or a captions file)"
        )
    path = Path(args.gallery)
    if not path.exists():
        raise SystemExit(f"error: --gallery {path} does not exist")
    if path.is_dir():
        captions, _, matrix, names = build_gallery(
            path, source=args.source, vocabulary=args.vocabulary, method=args.matcher, cache_dir=cache_dir
        )
    else:
        if args.matcher == "annotated":
            raise SystemExit("error: --matcher annotated needs a Flickr30k Entities folder as --gallery")
        captions = read_caption_file(path)
        vocab = load_vocabulary(args.vocabulary or args.source)
        matrix, names = caption_class_matrix(
            captions, vocab, method=args.matcher or "lexical", cache=ArrayStore(cache_dir)
        )
    return Gallery(captions=list(captions), classes=np.asarray(matrix, dtype=bool), class_names=list(names))


def load_recall_set(data_dir: Path, source: str, split: str) -> RecallSet:
    """The Recall@K test set: the split's images and all their captions."""
    records = load_source_records(SynthesisSettings(source=source, split=split), data_dir, split)
    if not records:
        raise SystemExit(f"error: no {split} images in {data_dir} for Recall@K")
    return RecallSet.from_records(records)


def recall_data_dir(args: argparse.Namespace) -> Path | None:
    """``--data-dir``, else ``--gallery`` when it is a folder."""
    if args.data_dir:
        return Path(args.data_dir)
    return Path(args.gallery) if args.gallery and Path(args.gallery).is_dir() else None


def run_retrieval(
    args: argparse.Namespace, adapter: VisionLanguageAdapter, metrics: list[str], cache_dir: Path
) -> dict[str, Any]:
    """ODmAP@k (with Recall@K when asked) or Recall@K alone; the settings are recorded in the results."""
    recall_set = None
    if "recall" in metrics:
        data_dir = recall_data_dir(args)
        if data_dir is None:
            raise SystemExit(
                "error: Recall@K needs --data-dir (or a --gallery folder) holding the test split"
            )
        recall_set = load_recall_set(data_dir, args.source, args.split)
    common = dict(
        cache_dir=cache_dir,
        rerank_top_n=args.rerank_top_n or None,
        chunk_size=args.chunk_size,
        device=args.device,
        batch_size=args.batch_size,
        precision=getattr(args, "precision", "auto"),
        rerank_score=getattr(args, "rerank_score", "itm"),
    )
    if "odmap" in metrics:
        if not args.dataset:
            raise SystemExit("error: ODmAP needs --dataset (the counterfactual split)")
        queries = RetrievalQueries.from_dataset(
            load_query_dataset(args.dataset, args.split, args.config), max_queries=args.max_queries
        )
        results = evaluate_retrieval(
            adapter, queries, load_gallery(args, cache_dir), k=list(args.k), recall_pairs=recall_set,
            present_rule=args.present_rule, normalizer=args.normalizer, **common,
        )  # fmt: skip
    else:
        assert recall_set is not None
        results = {"recall": evaluate_recall(adapter, recall_set, list(args.k), **common)}
        results["settings"] = {
            "k": list(args.k),
            "rerank_top_n": args.rerank_top_n or None,
            "rerank_score": getattr(args, "rerank_score", "itm") if args.rerank_top_n else None,
            "precision": getattr(args, "precision", "auto"),
        }
    results["settings"].update(
        model=args.model, dataset=args.dataset, gallery=args.gallery, source=args.source, split=args.split,
        matcher=args.matcher if "odmap" in metrics else None,
    )  # fmt: skip
    return results
