"""What a retrieval evaluation runs on: counterfactual queries, the caption gallery, the Recall@K test set.

One conversion each, shared by the CLI and the demo: :meth:`RetrievalQueries.from_dataset` (a
counterfactual split), :meth:`RetrievalQueries.from_records` (original images as queries) and
:meth:`RecallSet.from_records` (test images and their captions).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from hf_spurious.records import SceneRecord

__all__ = ["QUERY_COLUMNS", "Gallery", "LazyImages", "RecallSet", "RetrievalQueries"]

QUERY_COLUMNS = ("image", "removed_classes", "present_classes")


class LazyImages(Sequence):
    """The ``image`` column of a ``datasets.Dataset``, read one row at a time.

    With ``Image(decode=False)`` items are ``{"bytes", "path"}`` dicts, which
    :func:`~hf_spurious.images.load_rgb` decodes.
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

    def __iter__(self) -> Iterator[Any]:
        return (self[i] for i in range(len(self)))


@dataclass
class RetrievalQueries:
    """Counterfactual query images with the classes removed from and kept in each."""

    images: Sequence[Any]  # paths, PIL images or HxWx3 uint8 arrays
    removed_classes: Sequence[frozenset[str] | Sequence[str]]
    present_classes: Sequence[frozenset[str] | Sequence[str]]
    ids: Sequence[str] | None = None
    source_image_ids: Sequence[str] | None = None

    def __post_init__(self) -> None:
        n = len(self.images)
        for name in ("removed_classes", "present_classes", "ids", "source_image_ids"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise ValueError(f"{len(value)} {name} for {n} query images; pass one per image")
        if n == 0:
            raise ValueError("no query images; the counterfactual split is empty")

    @classmethod
    def from_dataset(
        cls,
        dataset: Any,
        *,
        name: str | None = None,
        max_queries: int | None = None,
        materialize: bool = False,
    ) -> RetrievalQueries:
        """Queries from a counterfactual split: a ``datasets.Dataset`` or a sequence of row mappings.

        Rows need ``image``, ``removed_classes``, ``present_classes`` (and ``source_image_id`` when
        ``name`` is given). Ids are ``"<name>/<source_image_id>"``, or the row number without ``name``.
        A dataset's images are read row by row (:class:`LazyImages`) unless ``materialize``; only the
        first ``max_queries`` rows are kept when it is set.
        """
        table = hasattr(dataset, "column_names")
        if max_queries is not None:
            n = min(max_queries, len(dataset))
            dataset = dataset.select(range(n)) if table else list(dataset)[:n]
        columns = list(dataset.column_names) if table else (list(dataset[0]) if len(dataset) else [])
        missing = [c for c in QUERY_COLUMNS if c not in columns]
        if missing:
            raise ValueError(f"the query rows lack the columns {missing}; is this a counterfactual split?")

        def column(key: str) -> list[Any]:
            return list(dataset[key]) if table else [row[key] for row in dataset]

        src = [str(x) for x in column("source_image_id")] if "source_image_id" in columns else None
        if name is None:
            ids = [str(i) for i in range(len(dataset))]
        elif src is None:
            raise ValueError(f"query ids '{name}/<source_image_id>' need a source_image_id column")
        else:
            ids = [f"{name}/{s}" for s in src]
        return cls(
            images=LazyImages(dataset) if table and not materialize else column("image"),
            removed_classes=[frozenset(x) for x in column("removed_classes")],
            present_classes=[frozenset(x) for x in column("present_classes")],
            ids=ids,
            source_image_ids=src,
        )

    @classmethod
    def from_records(cls, records: Sequence[SceneRecord], *, name: str | None = None) -> RetrievalQueries:
        """The original images as queries (nothing removed, every annotated class present).

        Ids are ``"<name>/<image_id>"`` (or the image id without ``name``).
        """
        return cls(
            images=[str(r.image_path) for r in records],
            removed_classes=[frozenset() for _ in records],
            present_classes=[frozenset(r.classes) for r in records],
            ids=[f"{name}/{r.image_id}" if name is not None else str(r.image_id) for r in records],
            source_image_ids=[str(r.image_id) for r in records],
        )


@dataclass
class Gallery:
    """Caption gallery with its caption → class matrix (bool (G, C), columns = ``class_names``)."""

    captions: Sequence[str]
    classes: np.ndarray
    class_names: Sequence[str]

    def __post_init__(self) -> None:
        self.classes = np.asarray(self.classes)
        if self.classes.dtype != bool:
            raise ValueError(f"the gallery class matrix must be boolean, got {self.classes.dtype}")
        if self.classes.shape != (len(self.captions), len(self.class_names)):
            raise ValueError(
                f"gallery class matrix has shape {self.classes.shape}, expected "
                f"({len(self.captions)} captions, {len(self.class_names)} classes)"
            )
        if not self.captions:
            raise ValueError("the caption gallery is empty")


@dataclass
class RecallSet:
    """A retrieval test set: images, their captions and the image index of each caption."""

    images: Sequence[Any]
    captions: Sequence[str]
    caption_to_image: Sequence[int]
    image_ids: Sequence[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.caption_to_image) != len(self.captions):
            raise ValueError(
                f"{len(self.caption_to_image)} caption_to_image entries for {len(self.captions)} captions"
            )
        owner = np.asarray(self.caption_to_image)
        if owner.size and (owner.min() < 0 or owner.max() >= len(self.images)):
            raise ValueError(f"caption_to_image must index the {len(self.images)} images")

    @classmethod
    def from_records(cls, records: Sequence[SceneRecord]) -> RecallSet:
        """Every record's image and all its captions, in record order (captions grouped by image)."""
        captions: list[str] = []
        owner: list[int] = []
        for i, r in enumerate(records):
            captions.extend(r.captions)
            owner.extend([i] * len(r.captions))
        return cls(
            images=[str(r.image_path) for r in records],
            captions=captions,
            caption_to_image=owner,
            image_ids=[str(r.image_id) for r in records],
        )
