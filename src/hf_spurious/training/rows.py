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
    dataset: Any,
    caption_column: str | None = None,
    image_column: str = "image",
    *,
    train_split: str | None = None,
    exclude_image_ids: Iterable[Any] = (),
) -> Any:
    """D′ from a counterfactual builder output (a ``datasets.Dataset`` or a list of dicts): ``image``, the
    edited caption (``caption_column`` or the first of ``caption``/``edited_caption``/...), ``image_id``
    (``cf-<source id>:<removed class>``, else ``cf-<id>``) and ``is_counterfactual=True``.

    A ``datasets.Dataset`` comes back as a ``datasets.Dataset``: narrowed to those columns, its image column
    read undecoded (``{"bytes", "path"}`` cells the collators decode per batch) and left memory-mapped, so
    no D′ image is held in Python memory, whatever the size of D′. A list comes back as a list.

    Rows built from another split than ``train_split`` (the ``source_split`` column) or from a source image
    in ``exclude_image_ids`` (the evaluation split's images) are refused: training on them leaks the test
    queries into D′.
    """
    columns = list(getattr(dataset, "column_names", None) or (dataset[0].keys() if len(dataset) else []))
    if image_column not in columns:
        raise ValueError(f"counterfactual data has no {image_column!r} column (columns: {columns})")
    col = caption_column or next((c for c in CAPTION_COLUMNS if c in columns), None)
    if col is None or col not in columns:
        raise ValueError(
            f"counterfactual data has no caption column; pass its name with --caption-column (columns: {columns})"
        )
    _refuse_leaks(dataset, columns, train_split, {str(i) for i in exclude_image_ids})
    ids = _counterfactual_ids(dataset, columns)
    captions = [_one_caption(c, i, col) for i, c in enumerate(_values(dataset, col))]
    if not hasattr(dataset, "select_columns"):
        return [
            {"image": row[image_column], "caption": c, "image_id": i, "is_counterfactual": True}
            for row, c, i in zip(dataset, captions, ids)
        ]
    ds = _undecoded(dataset, [image_column])
    if image_column != "image":
        ds = ds.rename_column(image_column, "image")
    ds = ds.add_column("caption", captions).add_column("image_id", ids)
    return ds.add_column("is_counterfactual", [True] * len(ds))


def _values(dataset: Any, name: str) -> list[Any]:
    """One column as a list (no image is decoded: only non-image columns are asked for)."""
    if hasattr(dataset, "column_names"):
        return list(dataset[name])
    return [row[name] for row in dataset]


def _one_caption(caption: Any, i: int, col: str) -> str:
    if isinstance(caption, (list, tuple)):
        caption = caption[0] if caption else ""
    if caption is None or not str(caption).strip():
        raise ValueError(f"counterfactual row {i} has an empty {col!r}; drop it or rebuild the split")
    return str(caption)


def _counterfactual_ids(dataset: Any, columns: list[str]) -> list[str]:
    """``cf-<source_image_id>:<target_class>`` (one id per counterfactual image), else ``cf-<image_id|id>``,
    else ``cf-<row>``."""
    if "source_image_id" in columns:
        sources = _values(dataset, "source_image_id")
        targets = _values(dataset, "target_class") if "target_class" in columns else [None] * len(sources)
        return [f"cf-{s}:{t}" if t else f"cf-{s}" for s, t in zip(sources, targets)]
    id_col = next((c for c in ("image_id", "id") if c in columns), None)
    if id_col is None:
        return [f"cf-{i}" for i in range(len(dataset))]
    return [f"cf-{v}" for v in _values(dataset, id_col)]


def _refuse_leaks(dataset: Any, columns: list[str], train_split: str | None, held_out: set[str]) -> None:
    """Raise when a D′ row comes from another split than ``train_split`` or from a held-out image."""
    if train_split is not None and "source_split" in columns:
        splits = _values(dataset, "source_split")
        bad = [i for i, s in enumerate(splits) if s and s != train_split]
        if bad:
            raise ValueError(
                f"{len(bad)} counterfactual rows were built from another split than {train_split!r} "
                f"(row {bad[0]}: source_split {splits[bad[0]]!r}); D′ must come from the training split: "
                f"point --counterfactual-dir at the {train_split!r} split of the export "
                f"(--counterfactual-split / --counterfactual-config) or rebuild it with --split {train_split}"
            )
    if held_out and "source_image_id" in columns:
        sources = [str(s) for s in _values(dataset, "source_image_id")]
        bad = [i for i, s in enumerate(sources) if s in held_out]
        if bad:
            raise ValueError(
                f"{len(bad)} counterfactual rows were built from images of the evaluation split "
                f"(row {bad[0]}: source_image_id {sources[bad[0]]!r}); training on them leaks the evaluation "
                "data: rebuild D′ from the training split only"
            )


def training_pairs(d_rows: list[dict[str, Any]], d_prime: Any) -> Any:
    """D ∪ D′ in one dataset: a list when D′ is a list, else a ``datasets.Dataset`` whose D′ part stays
    memory-mapped (D is only paths and captions)."""
    if not hasattr(d_prime, "column_names"):
        return list(d_rows) + list(d_prime)
    import datasets  # lazy: datasets is heavy and only needed for a datasets.Dataset input

    features = datasets.Features(
        {
            "image": datasets.Image(decode=False),
            "caption": datasets.Value("string"),
            "image_id": datasets.Value("string"),
            "is_counterfactual": datasets.Value("bool"),
        }
    )
    d = datasets.Dataset.from_dict(
        {
            "image": [_image_cell(r["image"]) for r in d_rows],
            "caption": [str(r["caption"]) for r in d_rows],
            "image_id": [str(r["image_id"]) for r in d_rows],
            "is_counterfactual": [bool(r.get("is_counterfactual", False)) for r in d_rows],
        },
        features=features,
    )
    if d_prime.features != features:  # a cast rewrites every D′ image: only when the builder's types differ
        d_prime = d_prime.cast(features)
    return datasets.concatenate_datasets([d, d_prime])


def _image_cell(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return {"bytes": value.get("bytes"), "path": value.get("path")}
    if isinstance(value, (bytes, bytearray)):
        return {"bytes": bytes(value), "path": None}
    return {"bytes": None, "path": str(value)}


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
