"""The files of a counterfactual run: manifest, shards (parquet rows + statistics), merged parquet.

Work directory layout::

    manifest.json                 settings, fingerprint, shard count (the run's identity)
    shards/00000.parquet          rows of shard 0 (typed with :func:`decorrelated_features`)
    shards/00000.json             shard 0 statistics; written last, so it marks the shard as done

Shard ``k`` holds the records ``[k * shard_size, (k + 1) * shard_size)`` of the id-sorted record list
(:func:`sort_records`). Every file is written atomically, and parquet bytes depend only on the rows.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hf_spurious.cache import atomic_write, atomic_write_json
from hf_spurious.records import SceneRecord
from hf_spurious.synthesis.settings import SynthesisError, SynthesisSettings

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
    """Write ``manifest`` into ``work``. A manifest of another run there is an error, or with ``overwrite``
    its shards are deleted first."""
    mpath = work / "manifest.json"
    if mpath.exists():
        old = read_manifest(work)
        if old.get("fingerprint") != manifest["fingerprint"]:
            if not overwrite:
                raise SynthesisError(
                    f"{work} holds a run with other settings or source images (fingerprint "
                    f"{old.get('fingerprint')} != {manifest['fingerprint']}); use a new directory or overwrite=True"
                )
            for f in (work / "shards").iterdir():
                f.unlink()
    if not mpath.exists() or read_manifest(work) != manifest:
        atomic_write_json(mpath, manifest, sort_keys=True)


# ------------------------------------------------------------------------------------------ parquet


def write_parquet(table, path: Path) -> None:
    """zstd parquet; no dictionary encoding for the PNG columns (it never pays off on unique image bytes
    and cost ~5 ms per 640x480 image, 10 % of the opencv pipeline). Deterministic."""
    import pyarrow.parquet as pq  # lazy: heavy optional dependency

    dictionary = [
        c for f in table.schema if f.name not in BINARY_COLUMNS for c in _leaf_paths(f.name, f.type)
    ]
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
    atomic_write(shard_path(work, shard), lambda p: write_parquet(table, p))
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
        if s.get("text_backend"):
            totals["text_backends"].add(s["text_backend"])
        for reason, ids in s["skipped_examples"].items():
            ex = totals["skipped_examples"].setdefault(reason, [])
            ex.extend(ids[: max(0, 5 - len(ex))])
    totals["skipped"] = dict(sorted(totals["skipped"].items()))
    totals["removed_class_counts"] = dict(sorted(totals["removed_class_counts"].items()))
    totals["text_backends"] = sorted(totals["text_backends"])
    totals["shards_done"], totals["num_shards"] = done, manifest["num_shards"]
    return totals


def _group_shards(work: Path, n: int, max_file_bytes: int) -> list[list[Path]]:
    """Consecutive shard files, grouped until a group would exceed ``max_file_bytes``."""
    groups: list[list[Path]] = []
    size = 0
    for k in range(n):
        path = shard_path(work, k)
        nbytes = path.stat().st_size
        if not groups or (size + nbytes > max_file_bytes and groups[-1]):
            groups.append([])
            size = 0
        groups[-1].append(path)
        size += nbytes
    return groups


def merge_shards(
    work_dir: str | Path, out_dir: str | Path, *, split: str | None = None, max_file_bytes: int = 500 * 2**20
) -> list[Path]:
    """Concatenate the finished shards, in shard order, into ``<split>-XXXXX-of-YYYYY.parquet`` files.

    Consecutive shards are grouped until a file would exceed ``max_file_bytes`` (deterministic: it only
    depends on the shard bytes). Raises naming the missing shards when the run is not complete.
    """
    import pyarrow as pa  # lazy: heavy optional dependency
    import pyarrow.parquet as pq  # lazy: heavy optional dependency

    work, out = Path(work_dir), Path(out_dir)
    manifest = read_manifest(work)
    n = manifest["num_shards"]
    missing = [k for k in range(n) if not shard_done(work, k)]
    if missing:
        raise SynthesisError(
            f"{len(missing)} of {n} shards are not done yet (e.g. {missing[:5]}); rerun the same command to "
            "resume before merging"
        )
    split = split or manifest["settings"]["split"]
    groups = _group_shards(work, n, max_file_bytes)
    for pattern in (
        ".*.tmp",
        ".*.tmp-*",
    ):  # left by killed runs (of this or older versions); all finished now
        for stale in (work / "shards").glob(pattern):
            stale.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob(f"{split}-*-of-*.parquet"):
        old.unlink()
    schema = decorrelated_features().arrow_schema
    written = []
    for g, paths in enumerate(groups or [[]]):
        tables = [pq.read_table(p) for p in paths]
        table = pa.concat_tables(tables) if tables else schema.empty_table()
        target = out / f"{split}-{g:05d}-of-{max(len(groups), 1):05d}.parquet"
        atomic_write(target, lambda p, t=table: write_parquet(t, p))
        written.append(target)
    return written
