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
from pathlib import Path
from typing import Any

import numpy as np

from hf_spurious.cache import atomic_write_text
from hf_spurious.cli._common import (
    ListAction,
    add_attribute_names,
    add_batch_size,
    add_class_names,
    add_data_dir,
    add_device,
    add_model,
    add_out,
    add_templates,
    positive_int,
)
from hf_spurious.cli.evaluate_classification import TRAIN_COUNT_KEYWORDS, run_classification
from hf_spurious.cli.evaluate_report import print_summary
from hf_spurious.cli.evaluate_retrieval import load_recall_set, run_retrieval
from hf_spurious.evaluation.plots import (
    classification_markdown,
    plot_classification,
    plot_retrieval,
    retrieval_markdown,
)
from hf_spurious.evaluation.rerank import RERANK_SCORES
from hf_spurious.models import load_adapter
from hf_spurious.models.registry import supported_model_types

__all__ = ["add_arguments", "load_recall_set", "run", "write_outputs"]

RETRIEVAL_METRICS = ("odmap", "recall")
CLASSIFICATION_METRICS = ("group", "aiou")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The shared flags, then the retrieval and the classification groups."""
    add_model(parser, f"model id or checkpoint folder (model_type {supported_model_types()})")
    parser.add_argument(
        "--task", choices=("retrieval", "classification"), default="retrieval", help="what to evaluate"
    )
    parser.add_argument(
        "--metrics",
        action=ListAction,
        default=None,
        metavar="METRIC",
        help="retrieval: odmap,recall; classification: group,aiou (default: every metric of the task)",
    )
    add_out(parser, "evaluation_results")
    parser.add_argument("--split", default="test", help="split to evaluate")
    add_batch_size(parser, 64, "images / captions per forward pass")
    parser.add_argument(
        "--cache-dir", default=None, help="embedding / class-matrix cache folder (default: <out>/cache)"
    )
    add_device(parser, "torch device for the model and top-k (default: cuda when present)")
    add_data_dir(
        parser,
        "retrieval: source data folder for Recall@K (test split; default: --gallery when it is a folder); "
        "classification: the WILDS-layout Waterbirds folder",
    )
    _add_retrieval(parser.add_argument_group("retrieval"))
    _add_classification(parser.add_argument_group("classification"))


def _add_retrieval(g: Any) -> None:
    """The retrieval flags: the query split, the gallery and how captions are matched, then the ranking."""
    g.add_argument(
        "--dataset",
        help="counterfactual (decorrelated) split: builder output folder, save_to_disk folder, parquet file or hub id "
        "(required for ODmAP; no default)",
    )
    g.add_argument(
        "--config",
        default=None,
        help="dataset config name (hub datasets / exported folders with several configs; default: the only one)",
    )
    g.add_argument(
        "--gallery",
        help="source data folder (COCO/Karpathy, Flickr30k Entities, SpuriousShapes) whose train+val+test captions "
        'form the gallery, or a captions file (.txt one a line, .json list, .jsonl {"caption": ...} lines); '
        "required for ODmAP, no default",
    )
    g.add_argument(
        "--source",
        choices=("coco", "flickr30k", "shapes"),
        default="coco",
        help="layout of the --gallery / --data-dir folder (COCO Karpathy, Flickr30k Entities, SpuriousShapes); "
        "also names the default class vocabulary",
    )
    g.add_argument(
        "--vocabulary", default=None, help="class vocabulary for caption matching (default: the source's)"
    )
    g.add_argument(
        "--matcher",
        choices=("lexical", "spacy", "annotated"),
        default="lexical",
        help="which classes a gallery caption names: lexical (the whole caption against the word list; "
        "the same matching as the odmap evaluate module), spacy (noun chunks only) or annotated "
        "(Flickr30k Entities phrase types; a different ODmAP, label it)",
    )
    _add_ranking(g)


def _add_ranking(g: Any) -> None:
    """The retrieval flags of the metrics and the ranking engine (cut-offs, relevance, re-ranking, top-k)."""
    g.add_argument(
        "--k", action=ListAction, item=positive_int, default=[1, 5, 10], help="ODmAP@k and Recall@K cut-offs"
    )
    g.add_argument(
        "--present-rule",
        choices=("any", "all"),
        default="any",
        help="a caption is relevant when it names no removed class and at least one (any) or every (all) "
        "class kept in the query image",
    )
    g.add_argument(
        "--normalizer",
        choices=("k", "min_k_r"),
        default="k",
        help="AP@k divisor: k (the paper's) or min(k, relevant captions in the gallery)",
    )
    g.add_argument(
        "--rerank-top-n",
        type=positive_or_zero,
        default=0,
        help="BLIP: re-rank each query's first N candidates with the ITM head, for ODmAP and Recall@K "
        "(0 = off)",
    )
    g.add_argument(
        "--rerank-score",
        choices=RERANK_SCORES,
        default="itm",
        help="score of a re-ranked candidate: itm (match probability) or itm+itc (probability + cosine "
        "similarity, as BLIP's own evaluation)",
    )
    g.add_argument(
        "--chunk-size", type=positive_int, default=32768, help="gallery rows per top-k chunk (memory bound)"
    )
    g.add_argument(
        "--precision",
        choices=("auto", "exact-fp32", "exact-bf16"),
        default="auto",
        help="top-k arithmetic: exact-bf16 = bf16 candidates + fp32 verification (CPU); auto = bf16 where "
        "the CPU has it and it measures faster; all three give the same rankings and scores",
    )
    g.add_argument(
        "--max-queries",
        type=positive_int,
        default=None,
        help="evaluate only the first N queries (smoke runs; default: all)",
    )


def positive_or_zero(text: str) -> int:
    """An integer >= 0 (argparse type)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def _add_classification(c: Any) -> None:
    add_class_names(c)
    add_attribute_names(c)
    add_templates(c)
    c.add_argument(
        "--train-counts",
        action=ListAction,
        default=["train"],
        metavar="SPEC",
        help=f"adjusted-average weights: {', '.join(TRAIN_COUNT_KEYWORDS)} ('train': counted from the "
        "train split; 'waterbirds': the published 3498,184,56,1057) or one count per group",
    )
    c.add_argument(
        "--max-overlays", type=positive_or_zero, default=8, help="GradCAM overlays saved as PNG (0 = none)"
    )
    c.add_argument(
        "--target-layer",
        default=None,
        help="GradCAM layer: block_input (the default for ViTs: the residual stream entering the last "
        "block), ln_output (the output of that block's first LayerNorm, pytorch-grad-cam's CLIP "
        "convention) or a module path; CNN towers default to vision_model.layer4",
    )
    c.add_argument(
        "--compare-layers",
        action=ListAction,
        default=["auto"],
        metavar="LAYER",
        help="also report AIoU at these GradCAM layers (results.json aiou.by_layer); auto = the other "
        "named ViT layer (none for CNN towers), none = off",
    )


def selected_metrics(args: argparse.Namespace) -> list[str]:
    """``--metrics`` checked against ``--task`` (all of the task's when not given)."""
    allowed = RETRIEVAL_METRICS if args.task == "retrieval" else CLASSIFICATION_METRICS
    metrics = list(args.metrics) if args.metrics else list(allowed)
    bad = [m for m in metrics if m not in allowed]
    if bad:
        raise SystemExit(
            f"error: --metrics {bad} not available for --task {args.task}; choose from {','.join(allowed)}"
        )
    return metrics


def run(args: argparse.Namespace) -> int:
    """Load the model, run the task, write results.json / results.md / charts into ``--out``."""
    metrics = selected_metrics(args)
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
    print_summary(results, args.task)
    print(f"wrote {out / 'results.json'} and {out / 'results.md'}")
    return 0


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
    atomic_write_text(out / "results.json", json.dumps(_jsonable(results), indent=1))
    (out / "results.md").write_text(
        md + "".join(f"\n![{p.stem}]({p.name})\n" for p in plots), encoding="utf-8"
    )
