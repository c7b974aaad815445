"""Training rows: reader records (and counterfactual builder outputs) turned into the rows the collators
take, and the columns the trainer reads from them (group ids, dense image indices)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hf_spurious.records import ClassificationRecord, SceneRecord, group_id

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
    import datasets  # lazy: datasets is heavy and only needed for a datasets.Dataset input

    dataset = dataset.select_columns(keep)
    for name, feature in dataset.features.items():
        if isinstance(feature, datasets.Image) and feature.decode:
            dataset = dataset.cast_column(name, datasets.Image(decode=False))
    return dataset


def column(dataset: Any, key: str) -> list[Any] | None:
    """A column of a ``datasets.Dataset`` or a list of dict rows (None when absent). Other dataset
    types are not introspected (their ``__getitem__`` may be random), so they have no columns here."""
    if hasattr(dataset, "column_names"):
        if key not in dataset.column_names:
            return None
        return [v.item() if hasattr(v, "item") else v for v in dataset[key]]
    if isinstance(dataset, (list, tuple)) and dataset and key in dataset[0]:
        return [r.get(key) for r in dataset]
    return None


def infer_num_attributes(dataset: Any) -> int:
    """Number of spurious-attribute values: 1 + the largest ``attribute`` (2 without any)."""
    attrs = column(dataset, "attribute") if dataset is not None else None
    valid = [int(a) for a in attrs or [] if a is not None and int(a) >= 0]
    return max(valid) + 1 if valid else 2


def dataset_groups(dataset: Any, num_attributes: int) -> list[int]:
    """Group id of every example: the ``group`` column, else :func:`hf_spurious.records.group_id`."""
    groups = column(dataset, "group")
    if groups is not None:
        return [int(g) for g in groups]
    labels, attrs = column(dataset, "label"), column(dataset, "attribute")
    if labels is None or attrs is None:
        raise ValueError(
            "group-balanced sampling / Group DRO need 'label' and 'attribute' (or 'group') columns"
        )
    out = []
    for i, (y, a) in enumerate(zip(labels, attrs)):
        if a is None or int(a) < 0:
            raise ValueError(
                f"example {i} has no attribute label; groups need one for every training example"
            )
        try:
            out.append(group_id(y, a, num_attributes))
        except ValueError as err:
            raise ValueError(f"example {i}: {err}") from None
    return out


def with_image_index(dataset: Any) -> Any:
    """Add an ``image_index`` column (dense ids of ``image_id``) so eval can compute Recall@K."""
    ids = column(dataset, "image_id")
    if ids is None:
        return dataset
    index = {v: i for i, v in enumerate(dict.fromkeys(str(x) for x in ids))}
    values = [index[str(x)] for x in ids]
    if hasattr(dataset, "add_column"):
        if "image_index" in dataset.column_names:
            dataset = dataset.remove_columns("image_index")
        return dataset.add_column("image_index", values)
    return [{**dict(r), "image_index": v} for r, v in zip(dataset, values)]
