"""Waterbirds reader (WILDS layout): ``metadata.csv`` + images + optional ``segmentations/`` masks."""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path

from hf_spurious.records import ClassificationRecord, RecordError
from hf_spurious.sources.common import (
    DirIndex,
    MissingFileError,
    OnMissing,
    check_split,
    located,
    read_text,
    safe_relative,
    skip_missing,
)

logger = logging.getLogger(__name__)

WILDS_COLUMNS = ("img_id", "img_filename", "y", "split", "place")
WILDS_SPLITS = {0: "train", 1: "val", 2: "test"}


def read_waterbirds(
    data_dir: str | Path, split: str | None = None, *, on_missing: OnMissing = "error"
) -> list[ClassificationRecord]:
    """Read Waterbirds (WILDS layout: ``metadata.csv`` + images + optional ``segmentations/``).

    ``y`` is the label (1 = waterbird), ``place`` the spurious attribute (1 = water); ``split`` 0/1/2 is
    train/val/test. ``mask_path`` is set when ``segmentations/<img_filename stem>.png`` exists.
    """
    if split is not None:
        check_split(split)
    root = Path(data_dir)
    meta = root / "metadata.csv"
    try:
        text = read_text(meta)  # UTF-8, a byte-order mark (Excel's "CSV UTF-8") dropped
    except MissingFileError:
        raise MissingFileError(f"{meta}: file not found; data_dir must hold the WILDS metadata.csv") from None
    index = DirIndex()
    records, missing = [], 0
    with io.StringIO(text, newline="") as fh:
        reader = csv.DictReader(fh)
        absent = [c for c in WILDS_COLUMNS if c not in (reader.fieldnames or [])]
        if absent:
            raise RecordError(f"{meta}: missing columns {absent}; need {list(WILDS_COLUMNS)}")
        for row in reader:
            line_no = reader.line_num  # the physical line (quoted fields may span lines)
            where = f"{meta}: line {line_no} (img_id {row.get('img_id')!r})"
            if None in row or any(v is None for v in row.values()):
                raise RecordError(
                    f"{where}: has {len(reader.fieldnames or [])} columns in the header but a different "
                    "number in this row; fix the row (a stray comma or a missing value?)"
                )
            label, place, row_split = _row_values(row, where)
            if split is not None and row_split != split:
                continue
            rel = safe_relative(row["img_filename"], where=where)
            image = root / rel
            if not index.exists(image):
                skip_missing(on_missing, f"{where}: image {image} not found")
                missing += 1
                continue
            mask = root / "segmentations" / rel.with_suffix(".png")
            with located(f"{meta}: line {line_no}"):
                record = ClassificationRecord(
                    image_id=str(row["img_id"]),
                    image_path=str(image),
                    label=label,
                    attribute=place,
                    split=row_split,
                    mask_path=str(mask) if index.exists(mask) else None,
                )
            records.append(record)
    if missing:
        logger.warning("read_waterbirds(%s): skipped %d rows whose image is missing", root, missing)
    return records


def _row_values(row: dict[str, str], where: str) -> tuple[int, int, str]:
    """(label y, place, split name) of one metadata row."""
    try:
        split_code, label, place = int(row["split"]), int(row["y"]), int(row["place"])
    except (TypeError, ValueError):
        values = {k: row.get(k) for k in ("y", "split", "place")}
        raise RecordError(f"{where}: y, split and place must be integers, got {values}") from None
    if split_code not in WILDS_SPLITS:
        raise RecordError(f"{where}: split {split_code} is not 0/1/2 (train/val/test)")
    return label, place, WILDS_SPLITS[split_code]
