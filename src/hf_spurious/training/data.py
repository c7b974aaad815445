"""Turn reader records (and counterfactual builder outputs) into the rows the collators take."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hf_spurious.records import ClassificationRecord, SceneRecord

CAPTION_COLUMNS = ("caption", "edited_caption", "counterfactual_caption", "text")


def classification_rows(records: Iterable[ClassificationRecord]) -> list[dict[str, Any]]:
    """One row per labelled image: ``image`` (path), ``label``, ``attribute``, ``group``, ``image_id``."""
    return [
        {
            "image": r.image_path,
            "label": r.label,
            "attribute": r.attribute,
            "group": r.group,
            "image_id": r.image_id,
        }
        for r in records
    ]


def retrieval_rows(
    records: Iterable[SceneRecord], captions_per_image: int | None = None
) -> list[dict[str, Any]]:
    """D: one row per (image, caption) pair, ``is_counterfactual=False`` (first ``captions_per_image`` captions)."""
    rows = []
    for r in records:
        for caption in r.captions[:captions_per_image]:
            rows.append(
                {
                    "image": r.image_path,
                    "caption": caption,
                    "image_id": r.image_id,
                    "is_counterfactual": False,
                }
            )
    return rows


def counterfactual_rows(
    dataset: Any, caption_column: str | None = None, image_column: str = "image"
) -> list[dict[str, Any]]:
    """D′ from a counterfactual builder output (a ``datasets.Dataset`` or list of dicts): ``image`` + the
    edited caption column (``caption_column`` or the first of ``caption``/``edited_caption``/...).

    A ``datasets.Dataset`` is narrowed to the image, caption and id columns (``mask`` and the rest are
    dropped) and its image column read undecoded, so rows hold ``{"bytes", "path"}`` cells that the
    collators decode per batch; no D′ image is held decoded in memory.
    """
    columns = list(getattr(dataset, "column_names", None) or (dataset[0].keys() if len(dataset) else []))
    if image_column not in columns:
        raise ValueError(f"counterfactual data has no {image_column!r} column (columns: {columns})")
    col = caption_column or next((c for c in CAPTION_COLUMNS if c in columns), None)
    if col is None or col not in columns:
        raise ValueError(
            f"counterfactual data has no caption column; pass caption_column= (columns: {columns})"
        )
    id_col = next((c for c in ("image_id", "id") if c in columns), None)
    dataset = _undecoded(dataset, [c for c in (image_column, col, id_col) if c])
    rows = []
    for i, row in enumerate(dataset):
        caption = row[col]
        if isinstance(caption, (list, tuple)):
            caption = caption[0] if caption else ""
        if not caption or not str(caption).strip():
            raise ValueError(f"counterfactual row {i} has an empty {col!r}; drop it or rebuild the split")
        image_id = f"cf-{row[id_col]}" if id_col else f"cf-{i}"
        rows.append(
            {
                "image": row[image_column],
                "caption": str(caption),
                "image_id": image_id,
                "is_counterfactual": True,
            }
        )
    return rows


def _undecoded(dataset: Any, keep: list[str]) -> Any:
    """A ``datasets.Dataset`` narrowed to ``keep`` with every ``Image`` column cast to ``decode=False``
    (other inputs are returned unchanged)."""
    if not hasattr(dataset, "select_columns") or not hasattr(dataset, "features"):
        return dataset
    import datasets

    dataset = dataset.select_columns(keep)
    for name, feature in dataset.features.items():
        if isinstance(feature, datasets.Image) and feature.decode:
            dataset = dataset.cast_column(name, datasets.Image(decode=False))
    return dataset
