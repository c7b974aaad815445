"""``hf-spurious evaluate``: ODmAP@k / removed-mention rate / Recall@K, or group accuracies / AIoU.

Retrieval::

    hf-spurious evaluate --model openai/clip-vit-base-patch32 --dataset ./coco_decorrelated \\
        --gallery /data/coco --source coco --metrics odmap,recall --k 1,5,10 --out results/clip

Classification::

    hf-spurious evaluate --task classification --model ./ckpt --data-dir /data/waterbirds \\
        --metrics group,aiou --out results/wb

Writes ``results.json``, ``results.md`` and PNG bar charts into ``--out`` (plus ``per_query.jsonl``
for retrieval and GradCAM overlays for AIoU).
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

RETRIEVAL_METRICS = ("odmap", "recall")
CLASSIFICATION_METRICS = ("group", "aiou")
WATERBIRDS_TEMPLATES = ("a photo of a {}.",)


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _ks(text: str) -> list[int]:
    try:
        ks = [int(t) for t in _csv(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--k must be comma-separated integers, got {text!r}") from None
    if not ks or min(ks) <= 0:
        raise argparse.ArgumentTypeError(f"--k values must be positive, got {text!r}")
    return ks


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", required=True, help="model id or checkpoint folder (CLIP or BLIP retrieval)"
    )
    parser.add_argument(
        "--task", choices=("retrieval", "classification"), default="retrieval", help="what to evaluate"
    )
    parser.add_argument(
        "--metrics",
        default=None,
        help="comma list; retrieval: odmap,recall; classification: group,aiou (None: all of the task's)",
    )
    parser.add_argument("--out", default="evaluation_results", help="output folder")
    parser.add_argument("--split", default="test", help="split to evaluate")
    parser.add_argument("--batch-size", type=int, default=64, help="images / captions per forward pass")
    parser.add_argument(
        "--cache-dir", default=None, help="embedding / class-matrix cache folder (default: <out>/cache)"
    )
    parser.add_argument(
        "--device", default=None, help="torch device for the model and top-k (default: cuda when present)"
    )
    g = parser.add_argument_group("retrieval")
    g.add_argument(
        "--dataset",
        help="counterfactual (decorrelated) split: builder output folder, save_to_disk folder, parquet file or hub id",
    )
    g.add_argument(
        "--config",
        default=None,
        help="dataset config name (hub datasets / exported folders with several configs)",
    )
    g.add_argument(
        "--gallery",
        help="source data folder (COCO/Karpathy, Flickr30k Entities, SpuriousShapes) whose train+val+test captions form the gallery, or a captions file (.txt/.json/.jsonl)",
    )
    g.add_argument(
        "--data-dir",
        help="source data folder for Recall@K (test split); classification: the Waterbirds folder. Default: --gallery when it is a folder",
    )
    g.add_argument("--source", choices=("coco", "flickr30k", "shapes"), default="coco")
    g.add_argument(
        "--vocabulary", default=None, help="class vocabulary for caption matching (default: the source's)"
    )
    g.add_argument(
        "--matcher",
        choices=("lexical", "spacy", "annotated"),
        default=None,
        help="caption -> class matcher (default: annotated for flickr30k, else lexical)",
    )
    g.add_argument("--k", type=_ks, default=[1, 5, 10], help="cut-offs, comma-separated")
    g.add_argument("--present-rule", choices=("any", "all"), default="any")
    g.add_argument("--normalizer", choices=("k", "min_k_r"), default="k")
    g.add_argument(
        "--rerank-top-n",
        type=int,
        default=0,
        help="BLIP: re-rank this many candidates with the ITM head (0 = off)",
    )
    g.add_argument("--chunk-size", type=int, default=32768, help="gallery rows per top-k chunk")
    g.add_argument(
        "--max-queries", type=int, default=None, help="evaluate only the first N queries (smoke runs)"
    )
    c = parser.add_argument_group("classification")
    c.add_argument(
        "--class-names", default="landbird,waterbird", help="class names for the prompts, in label order"
    )
    c.add_argument(
        "--templates",
        default="default",
        help="'default' (the 80 CLIP templates), 'simple' ('a photo of a {}.') or a file with one template per line",
    )
    c.add_argument(
        "--train-counts",
        default="train",
        help="adjusted-average weights: 'train' (counted from the train split), 'waterbirds' (the published 3498,184,56,1057), 'none', or comma-separated counts",
    )
    c.add_argument("--max-overlays", type=int, default=8, help="GradCAM overlays saved as PNG")
    c.add_argument(
        "--target-layer",
        default=None,
        help="GradCAM target module path (default: vision_model.encoder.layers.-1.layer_norm1, its input)",
    )


def _metrics(args: argparse.Namespace) -> list[str]:
    allowed = RETRIEVAL_METRICS if args.task == "retrieval" else CLASSIFICATION_METRICS
    metrics = _csv(args.metrics) if args.metrics else list(allowed)
    bad = [m for m in metrics if m not in allowed]
    if bad:
        raise SystemExit(
            f"error: --metrics {bad} not available for --task {args.task}; choose from {','.join(allowed)}"
        )
    return metrics


def run(args: argparse.Namespace) -> int:
    from hf_spurious.models import load_adapter

    metrics = _metrics(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cache_dir = Path(args.cache_dir) if args.cache_dir else out / "cache"
    adapter = load_adapter(args.model)
    if args.device:
        adapter.to(args.device)
    args.model_fingerprint = adapter.fingerprint  # once, before any tokenisation, for the cache keys
    if args.task == "retrieval":
        results = run_retrieval(args, adapter, metrics, cache_dir)
    else:
        results = run_classification(args, adapter, metrics, cache_dir, out)
    write_outputs(results, out, args.task)
    print(f"wrote {out / 'results.json'} and {out / 'results.md'}")
    return 0


# --------------------------------------------------------------------------------------------- retrieval


class LazyImages(Sequence):
    """The ``image`` column of a ``datasets.Dataset`` (``decode=False``), read one row at a time.

    Items are ``{"bytes", "path"}`` dicts, which :func:`~hf_spurious.images.load_rgb` decodes.
    """

    def __init__(self, dataset: Any, column: str = "image") -> None:
        self.dataset = dataset
        self.column = column

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return self.dataset[int(i)][self.column]

    def __iter__(self):
        return (self[i] for i in range(len(self)))


def load_query_dataset(dataset: str, split: str = "test", config: str | None = None) -> Any:
    """A counterfactual split as a ``datasets.Dataset`` (images left encoded)."""
    import datasets

    path = Path(dataset)
    if path.exists():
        if path.is_file():
            ds: Any = datasets.load_dataset("parquet", data_files=str(path), split="train")
        elif (path / "dataset_dict.json").exists() or (path / "state.json").exists():
            ds = datasets.load_from_disk(str(path))
        elif (path / "manifest.json").exists() and (path / "shards").is_dir():  # a generator work folder
            files = sorted(str(f) for f in (path / "shards").glob("*.parquet"))
            ds = datasets.load_dataset("parquet", data_files=files, split="train")
        else:
            ds = datasets.load_dataset(str(path), config)
    else:
        ds = datasets.load_dataset(dataset, config)
    if isinstance(ds, datasets.DatasetDict):
        if split in ds:
            ds = ds[split]
        elif len(ds) == 1:
            ds = next(iter(ds.values()))
        else:
            raise SystemExit(f"error: {dataset} has splits {sorted(ds)}; choose one with --split")
    missing = [c for c in ("image", "removed_classes", "present_classes") if c not in ds.column_names]
    if missing:
        raise SystemExit(
            f"error: {dataset} lacks the columns {missing}; is it a counterfactual (decorrelated) split?"
        )
    return ds.cast_column("image", datasets.Image(decode=False))


def queries_from_dataset(ds: Any, max_queries: int | None = None) -> Any:
    from .retrieval import RetrievalQueries

    if max_queries is not None:
        ds = ds.select(range(min(max_queries, len(ds))))
    ids = [str(i) for i in range(len(ds))]
    src = list(ds["source_image_id"]) if "source_image_id" in ds.column_names else None
    return RetrievalQueries(
        images=LazyImages(ds),
        removed_classes=[frozenset(x) for x in ds["removed_classes"]],
        present_classes=[frozenset(x) for x in ds["present_classes"]],
        ids=ids,
        source_image_ids=src,
    )


def read_caption_file(path: Path) -> list[str]:
    """Captions from .txt (one a line), .json (list or {"captions": [...]}) or .jsonl ({"caption": ...})."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".txt":
        return [line for line in text.splitlines() if line.strip()]
    if path.suffix == ".jsonl":
        return [json.loads(line)["caption"] for line in text.splitlines() if line.strip()]
    if path.suffix == ".json":
        data = json.loads(text)
        data = data.get("captions", data) if isinstance(data, dict) else data
        if not isinstance(data, list) or not all(isinstance(c, str) for c in data):
            raise SystemExit(f"error: {path} must hold a list of caption strings")
        return data
    raise SystemExit(f"error: unsupported gallery file {path}; use a data folder or .txt/.json/.jsonl")


def load_gallery(args: argparse.Namespace, cache_dir: Path) -> Any:
    from .retrieval import Gallery

    if not args.gallery:
        raise SystemExit(
            "error: --gallery is required for retrieval (a source data folder or a captions file)"
        )
    path = Path(args.gallery)
    if not path.exists():
        raise SystemExit(f"error: --gallery {path} does not exist")
    if path.is_dir():
        from hf_spurious.data import build_gallery

        captions, _, matrix, names = build_gallery(
            path, source=args.source, vocabulary=args.vocabulary, method=args.matcher, cache_dir=cache_dir
        )
    else:
        from hf_spurious.text import caption_class_matrix
        from hf_spurious.vocab import load_vocabulary

        if args.matcher == "annotated":
            raise SystemExit("error: --matcher annotated needs a Flickr30k Entities folder as --gallery")
        captions = read_caption_file(path)
        vocab = load_vocabulary(args.vocabulary or args.source)
        matrix, names = caption_class_matrix(
            captions, vocab, method=args.matcher or "lexical", cache_dir=cache_dir
        )
    return Gallery(captions=list(captions), classes=np.asarray(matrix, dtype=bool), class_names=list(names))


def load_recall_set(data_dir: Path, source: str, split: str) -> Any:
    from hf_spurious.data.builders import load_source_records
    from hf_spurious.synthesis.generator import SynthesisSettings

    from .retrieval import RecallSet

    records = load_source_records(SynthesisSettings(source=source, split=split), data_dir, split)
    if not records:
        raise SystemExit(f"error: no {split} images in {data_dir} for Recall@K")
    captions, owner = [], []
    for i, r in enumerate(records):
        captions.extend(r.captions)
        owner.extend([i] * len(r.captions))
    return RecallSet(
        images=[r.image_path for r in records],
        captions=captions,
        caption_to_image=owner,
        image_ids=[r.image_id for r in records],
    )


def run_retrieval(
    args: argparse.Namespace, adapter: Any, metrics: list[str], cache_dir: Path
) -> dict[str, Any]:
    from .retrieval import evaluate_recall, evaluate_retrieval

    data_dir = (
        Path(args.data_dir)
        if args.data_dir
        else (Path(args.gallery) if args.gallery and Path(args.gallery).is_dir() else None)
    )
    recall_set = None
    if "recall" in metrics:
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
    )
    if "odmap" in metrics:
        if not args.dataset:
            raise SystemExit("error: ODmAP needs --dataset (the counterfactual split)")
        queries = queries_from_dataset(
            load_query_dataset(args.dataset, args.split, args.config), args.max_queries
        )
        results = evaluate_retrieval(
            adapter, queries, load_gallery(args, cache_dir), k=args.k, recall_pairs=recall_set,
            present_rule=args.present_rule, normalizer=args.normalizer, **common,
        )  # fmt: skip
    else:
        assert recall_set is not None
        results = {"recall": evaluate_recall(adapter, recall_set, args.k, **common)}
        results["settings"] = {"k": list(args.k), "rerank_top_n": args.rerank_top_n or None}
    results["settings"].update(
        model=args.model, dataset=args.dataset, gallery=args.gallery, source=args.source, split=args.split
    )
    return results


# --------------------------------------------------------------------------------------------- classification


def _templates(spec: str) -> Sequence[str] | None:
    if spec == "default":
        return None
    if spec == "simple":
        return WATERBIRDS_TEMPLATES
    path = Path(spec)
    if not path.exists():
        raise SystemExit(f"error: --templates {spec!r} is neither 'default', 'simple' nor a file")
    return [t for t in path.read_text(encoding="utf-8").splitlines() if t.strip()]


def _train_counts(spec: str, data_dir: Path) -> list[int] | None:
    from hf_spurious.metrics import WATERBIRDS_TRAIN_GROUP_COUNTS

    from .classification import train_group_counts

    if spec == "none":
        return None
    if spec == "waterbirds":
        return list(WATERBIRDS_TRAIN_GROUP_COUNTS)
    if spec == "train":
        from hf_spurious.data import read_waterbirds

        return train_group_counts(read_waterbirds(data_dir, "train"), num_groups=4)
    try:
        return [int(x) for x in _csv(spec)]
    except ValueError:
        raise SystemExit(
            f"error: --train-counts {spec!r}: use train, waterbirds, none or comma-separated integers"
        ) from None


def run_classification(
    args: argparse.Namespace, adapter: Any, metrics: list[str], cache_dir: Path, out: Path
) -> dict[str, Any]:
    from hf_spurious.data import read_waterbirds
    from hf_spurious.metrics import WATERBIRDS_GROUP_NAMES

    from .classification import evaluate_classification

    if not args.data_dir:
        raise SystemExit("error: --task classification needs --data-dir (a WILDS-layout Waterbirds folder)")
    data_dir = Path(args.data_dir)
    records = read_waterbirds(data_dir, args.split)
    class_names = _csv(args.class_names)
    group_names = list(WATERBIRDS_GROUP_NAMES) if len(class_names) == 2 else None
    results = evaluate_classification(
        adapter, records, class_names, _templates(args.templates), metrics=metrics,
        train_counts=_train_counts(args.train_counts, data_dir), group_names=group_names,
        batch_size=args.batch_size, cache_dir=str(cache_dir), overlay_dir=str(out / "gradcam"),
        max_overlays=args.max_overlays, target_layer=args.target_layer,
        model_fingerprint=getattr(args, "model_fingerprint", None),
    )  # fmt: skip
    results["settings"] = {
        "model": args.model,
        "data_dir": str(data_dir),
        "split": args.split,
        "templates": args.templates,
        "train_counts": args.train_counts,
    }
    return results


# --------------------------------------------------------------------------------------------- outputs


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, os.PathLike):
        return str(obj)
    return obj


def write_outputs(results: dict[str, Any], out: Path, task: str) -> None:
    """``results.json`` (per-query rows go to ``per_query.jsonl``), ``results.md`` and PNG charts."""
    from .plots import classification_markdown, plot_classification, plot_retrieval, retrieval_markdown

    results = dict(results)
    per_query = results.pop("per_query", None)
    if per_query is not None:
        with (out / "per_query.jsonl").open("w", encoding="utf-8") as f:
            for row in per_query:
                f.write(json.dumps(_jsonable(row)) + "\n")
        results["per_query_file"] = "per_query.jsonl"
    if task == "retrieval":
        md, plots = retrieval_markdown(results), plot_retrieval(results, out)
    else:
        md, plots = classification_markdown(results), plot_classification(results, out)
    results["plots"] = [p.name for p in plots]
    (out / "results.json").write_text(json.dumps(_jsonable(results), indent=1), encoding="utf-8")
    (out / "results.md").write_text(
        md + "".join(f"\n![{p.stem}]({p.name})\n" for p in plots), encoding="utf-8"
    )
