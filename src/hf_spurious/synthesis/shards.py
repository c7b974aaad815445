"""The files of a counterfactual run: manifest, shards (parquet rows + statistics), merged parquet.

Work directory layout::

    manifest.json                 settings, fingerprint, shard count (the run's identity)
    shards/00000.parquet          rows of shard 0 (typed with :func:`decorrelated_features`)
    shards/00000.json             shard 0 statistics; written last, so it marks the shard as done

Shard ``k`` holds the records ``[k * shard_size, (k + 1) * shard_size)`` of the id-sorted record list
(:func:`sort_records`). Every file is written atomically, and parquet bytes depend only on the rows.

Resume is keyed by content, not names: a shard's statistics record the digest of its inputs
(:func:`inputs_digest`: image file size + modification time, boxes, captions, phrases) and the size and
sha256 of its parquet file. A rerun reuses a shard only when its inputs digest is unchanged and its file
is intact (:func:`shard_status`; the log says which shards are reused and why the others are redone).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hf_spurious.cache import atomic_write, atomic_write_json, digest
from hf_spurious.records import SceneRecord
from hf_spurious.synthesis.settings import SynthesisError, SynthesisSettings

logger = logging.getLogger(__name__)

MANIFEST_FORMAT = "hf_spurious.counterfactuals/1"
BINARY_COLUMNS = ("image", "mask")  # PNG bytes: incompressible and unique per row


def decorrelated_features():
    """The typed `datasets.Features` of every decorrelated split."""
    import datasets  # lazy: heavy optional dependency

    string_list = datasets.List(datasets.Value("string"))
    return datasets.Features(
        {
            "image": datasets.Image(),
            "source_image_id": datasets.Value("string"),
            "source_split": datasets.Value("string"),
            "source_caption": datasets.Value("string"),
            "source_caption_index": datasets.Value("int32"),
            "caption": datasets.Value("string"),
            "target_class": datasets.Value("string"),
            "removed_classes": string_list,
            "present_classes": string_list,
            "removed_boxes": datasets.List(datasets.List(datasets.Value("float32"), length=4)),
            "mask": datasets.Image(),
            "width": datasets.Value("int32"),
            "height": datasets.Value("int32"),
            "image_method": datasets.Value("string"),
            "text_method": datasets.Value("string"),
        }
    )


# ------------------------------------------------------------------------------------------ planning


def sort_records(records: Iterable[SceneRecord]) -> list[SceneRecord]:
    """Records in a canonical order (numeric ids numerically, then the rest), duplicates rejected."""
    out = sorted(
        records, key=lambda r: (0, int(r.image_id), "") if r.image_id.isdigit() else (1, 0, r.image_id)
    )
    ids = [r.image_id for r in out]
    if len(set(ids)) != len(ids):
        dup = next(i for i, j in itertools.pairwise(ids) if i == j)
        raise SynthesisError(f"image id {dup!r} appears twice in the source split; ids must be unique")
    return out


def shard_records(records: Sequence[SceneRecord], shard: int, shard_size: int) -> Sequence[SceneRecord]:
    """The records of shard ``shard``."""
    return records[shard * shard_size : (shard + 1) * shard_size]


def shard_path(work: str | Path, shard: int, suffix: str = ".parquet") -> Path:
    """``<work>/shards/<shard:05d><suffix>``."""
    return Path(work) / "shards" / f"{shard:05d}{suffix}"


def shard_done(work: str | Path, shard: int) -> bool:
    """Both files of the shard exist (its statistics are written last)."""
    return shard_path(work, shard, ".json").exists() and shard_path(work, shard).exists()


def record_key(rec: SceneRecord) -> list[Any]:
    """What a record's rows depend on: id, image file (size + modification time), size, boxes, captions."""
    try:
        st = os.stat(rec.image_path)
        image = [st.st_size, st.st_mtime_ns]
    except OSError:
        image = ["missing"]
    objects = [[list(o.bbox), o.category, o.segmentation] for o in rec.objects]
    phrases = None
    if rec.caption_phrases is not None:
        phrases = [[[p.text, p.start, p.end, sorted(p.classes)] for p in ps] for ps in rec.caption_phrases]
    return [rec.image_id, image, rec.width, rec.height, objects, list(rec.captions), phrases, rec.split]


def inputs_digest(records: Sequence[SceneRecord]) -> str:
    """Content key of a shard's inputs (see :func:`record_key`): a fixed image, a moved box or an edited
    caption changes it, so the shard is regenerated instead of reused."""
    return digest(*(record_key(r) for r in records), length=24)


def shard_status(work: str | Path, shard: int, inputs: str) -> tuple[bool, str]:
    """``(reusable, why)`` for a finished shard: its statistics parse, its inputs digest equals ``inputs``
    and its parquet file has the recorded size and a readable footer with the recorded row count."""
    import pyarrow.parquet as pq  # lazy: heavy optional dependency

    if not shard_done(work, shard):
        return False, "not written yet"
    try:
        stats = json.loads(shard_path(work, shard, ".json").read_text())
        recorded, nbytes, rows = stats.get("inputs"), stats.get("parquet_bytes"), stats["rows"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        return False, f"its statistics file is unreadable ({type(err).__name__}: {err})"
    if recorded is None:
        return False, "it was written without an inputs digest (older version)"
    if recorded != inputs:
        return False, "its inputs changed (an image file, a box or a caption differs)"
    path = shard_path(work, shard)
    try:
        size = path.stat().st_size
        footer_rows = pq.ParquetFile(path).metadata.num_rows
    except Exception as err:
        return False, f"its parquet file is unreadable ({type(err).__name__}: {err})"
    if size != nbytes or footer_rows != rows:
        return (
            False,
            f"its parquet file is truncated or altered ({size} bytes / {footer_rows} rows recorded as {nbytes} / {rows})",
        )
    return True, f"inputs digest {inputs} unchanged"


def invalidate_shard(work: str | Path, shard: int) -> None:
    """Remove the shard's statistics (the done mark): the next run regenerates it."""
    shard_path(work, shard, ".json").unlink(missing_ok=True)


@dataclass
class ShardStats:
    """Counts of one shard: images, eligible images, rows, skips by reason (with examples), removed classes."""

    shard: int
    images: int = 0
    rows: int = 0
    eligible: int = 0
    skipped: Counter = field(default_factory=Counter)
    skipped_examples: dict[str, list[str]] = field(default_factory=dict)
    removed_class_counts: Counter = field(default_factory=Counter)
    text_backend: str = ""
    inputs: str = ""  # inputs_digest of the shard's records
    notes: Counter = field(default_factory=Counter)  # images kept another way (e.g. a later valid class)
    parquet_bytes: int = 0
    parquet_sha256: str = ""

    def skip(self, reason: str, image_id: str) -> None:
        self.skipped[reason] += 1
        examples = self.skipped_examples.setdefault(reason, [])
        if len(examples) < 5:
            examples.append(image_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "shard": self.shard,
            "images": self.images,
            "rows": self.rows,
            "eligible": self.eligible,
            "skipped": dict(sorted(self.skipped.items())),
            "skipped_examples": dict(sorted(self.skipped_examples.items())),
            "removed_class_counts": dict(sorted(self.removed_class_counts.items())),
            "text_backend": self.text_backend,
            "inputs": self.inputs,
            "notes": dict(sorted(self.notes.items())),
            "parquet_bytes": self.parquet_bytes,
            "parquet_sha256": self.parquet_sha256,
        }


# ------------------------------------------------------------------------------------------ manifest


def build_manifest(
    settings: SynthesisSettings, records: Sequence[SceneRecord], extra: dict[str, Any]
) -> dict[str, Any]:
    """The run's identity: settings, fingerprint of settings + image ids, record and shard counts."""
    ids = hashlib.sha256("\n".join(r.image_id for r in records).encode()).hexdigest()[:16]
    return {
        "format": MANIFEST_FORMAT,
        "fingerprint": f"{settings.fingerprint()}-{ids}",
        "settings": settings.to_dict(),
        "num_records": len(records),
        "num_shards": (len(records) + settings.shard_size - 1) // settings.shard_size,
        **extra,
    }


def read_manifest(work: str | Path) -> dict[str, Any]:
    return json.loads((Path(work) / "manifest.json").read_text())


def write_manifest(work: Path, manifest: dict[str, Any], *, overwrite: bool = False) -> None:
    """Write ``manifest`` into ``work``. A manifest of another run there (other settings or image ids) is
    replaced when none of its shards is finished (a failed first run never blocks a retry); with finished
    shards it is an error, or with ``overwrite`` those shards are deleted first."""
    mpath = work / "manifest.json"
    old: dict[str, Any] | None = None
    if mpath.exists():
        try:
            old = read_manifest(work)
        except (OSError, ValueError) as err:
            old = {"fingerprint": f"unreadable manifest ({type(err).__name__})"}
    if old is not None and old.get("fingerprint") != manifest["fingerprint"]:
        finished = sorted((work / "shards").glob("*.json")) if (work / "shards").is_dir() else []
        if finished and not overwrite:
            raise SynthesisError(
                f"{work} holds {len(finished)} finished shards of a run with other settings or source images "
                f"(fingerprint {old.get('fingerprint')} != {manifest['fingerprint']}); use another work "
                "directory, or --overwrite (overwrite=True in Python) to discard them"
            )
        logger.info(
            "%s: replacing the manifest of another run (%d finished shards discarded)", work, len(finished)
        )
        for f in (work / "shards").iterdir() if (work / "shards").is_dir() else ():
            if f.is_file():
                f.unlink()
        old = None
    if old != manifest:
        atomic_write_json(mpath, manifest, sort_keys=True)


# ------------------------------------------------------------------------------------------ parquet


def write_parquet(table, path: Path) -> None:
    """zstd parquet; no dictionary encoding for the PNG columns (it never pays off on unique image bytes
    and cost ~5 ms per 640x480 image, 10 % of the opencv pipeline). Deterministic."""
    import pyarrow.parquet as pq  # lazy: heavy optional dependency

    dictionary = [
        c for f in table.schema if f.name not in BINARY_COLUMNS for c in _leaf_paths(f.name, f.type)
    ]
    if table.num_rows == 0:  # no row group at all: `datasets` cannot read an empty one (batch size 0)
        pq.ParquetWriter(path, table.schema, compression="zstd", use_dictionary=dictionary).close()
        return
    pq.write_table(table, path, compression="zstd", use_dictionary=dictionary)


def _leaf_paths(name: str, typ) -> list[str]:
    """Parquet column paths of an arrow field ("removed_classes.list.element", "image.bytes")."""
    import pyarrow as pa  # lazy: heavy optional dependency

    if pa.types.is_struct(typ):
        return [
            p
            for i in range(typ.num_fields)
            for p in _leaf_paths(f"{name}.{typ.field(i).name}", typ.field(i).type)
        ]
    if pa.types.is_list(typ) or pa.types.is_large_list(typ) or pa.types.is_fixed_size_list(typ):
        return _leaf_paths(f"{name}.list.element", typ.value_type)
    return [name]


def write_shard(work: Path, shard: int, rows: list[dict[str, Any]], stats: ShardStats) -> None:
    """The shard's parquet rows, then its statistics (which mark it as done)."""
    import pyarrow as pa  # lazy: heavy optional dependency

    features = decorrelated_features()
    table = (
        pa.Table.from_pylist(rows, schema=features.arrow_schema)
        if rows
        else features.arrow_schema.empty_table()
    )
    path = atomic_write(shard_path(work, shard), lambda p: write_parquet(table, p))
    data = path.read_bytes()
    stats.parquet_bytes, stats.parquet_sha256 = len(data), hashlib.sha256(data).hexdigest()
    atomic_write_json(shard_path(work, shard, ".json"), stats.to_dict(), sort_keys=True)


# ------------------------------------------------------------------------------------------ results


@dataclass
class GenerationResult:
    """What :func:`~hf_spurious.synthesis.generator.generate_counterfactuals` did in one process."""

    work_dir: Path
    num_shards: int
    done_shards: list[int]
    ran_shards: list[int]
    seconds: float

    @property
    def complete(self) -> bool:
        return len(self.done_shards) == self.num_shards

    @property
    def shard_files(self) -> list[Path]:
        return [shard_path(self.work_dir, k) for k in range(self.num_shards)]

    def stats(self) -> dict[str, Any]:
        return collect_stats(self.work_dir)


def collect_stats(work_dir: str | Path) -> dict[str, Any]:
    """Totals over the finished shards: images, eligible, rows, skips by reason, removed classes."""
    manifest = read_manifest(work_dir)
    totals: dict[str, Any] = {
        "images": 0,
        "eligible": 0,
        "rows": 0,
        "skipped": Counter(),
        "removed_class_counts": Counter(),
        "notes": Counter(),
        "skipped_examples": {},
        "text_backends": set(),
    }
    done = 0
    for k in range(manifest["num_shards"]):
        path = shard_path(work_dir, k, ".json")
        if not path.exists():
            continue
        done += 1
        s = json.loads(path.read_text())
        for key in ("images", "eligible", "rows"):
            totals[key] += s[key]
        totals["skipped"].update(s["skipped"])
        totals["removed_class_counts"].update(s["removed_class_counts"])
        totals["notes"].update(s.get("notes") or {})
        if s.get("text_backend"):
            totals["text_backends"].add(s["text_backend"])
        for reason, ids in s["skipped_examples"].items():
            ex = totals["skipped_examples"].setdefault(reason, [])
            ex.extend(ids[: max(0, 5 - len(ex))])
    totals["skipped"] = dict(sorted(totals["skipped"].items()))
    totals["removed_class_counts"] = dict(sorted(totals["removed_class_counts"].items()))
    totals["notes"] = dict(sorted(totals["notes"].items()))
    totals["text_backends"] = sorted(totals["text_backends"])
    totals["shards_done"], totals["num_shards"] = done, manifest["num_shards"]
    return totals
