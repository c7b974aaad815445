"""Merge the finished shards of a counterfactual run into ``<split>-XXXXX-of-YYYYY.parquet`` files.

Nothing already written is destroyed before its replacement is complete: the merged files are written into
a hidden staging folder beside ``out_dir`` and moved in only when every shard was read and verified (its
sha256 equals the one recorded when it was written). A shard that fails the check loses its done mark, so
rerunning the same command regenerates it.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
from pathlib import Path

from hf_spurious.cache import atomic_write
from hf_spurious.synthesis.settings import SynthesisError
from hf_spurious.synthesis.shards import (
    decorrelated_features,
    invalidate_shard,
    read_manifest,
    shard_done,
    shard_path,
    write_parquet,
)


def _group_shards(work: Path, n: int, max_file_bytes: int) -> list[list[int]]:
    """Consecutive shard numbers, grouped until a group would exceed ``max_file_bytes``."""
    groups: list[list[int]] = []
    size = 0
    for k in range(n):
        nbytes = shard_path(work, k).stat().st_size
        if not groups or (size + nbytes > max_file_bytes and groups[-1]):
            groups.append([])
            size = 0
        groups[-1].append(k)
        size += nbytes
    return groups


def read_verified_shard(work: Path, shard: int):
    """The shard's arrow table, after checking its bytes against the sha256 recorded in its statistics;
    a mismatch or an unreadable file invalidates the shard and raises a :class:`SynthesisError`."""
    import pyarrow as pa  # lazy: heavy optional dependency
    import pyarrow.parquet as pq  # lazy: heavy optional dependency

    path = shard_path(work, shard)
    try:
        data = path.read_bytes()
        recorded = json.loads(shard_path(work, shard, ".json").read_text()).get("parquet_sha256")
        if recorded and hashlib.sha256(data).hexdigest() != recorded:
            raise ValueError("its bytes differ from the sha256 recorded when it was written")
        return pq.read_table(pa.BufferReader(data))
    except Exception as err:
        invalidate_shard(work, shard)
        raise SynthesisError(
            f"work shard {path} is corrupt ({type(err).__name__}: {err}); nothing was exported. Rerun the "
            "same command: the shard is regenerated and the export completed"
        ) from err


def merge_shards(
    work_dir: str | Path, out_dir: str | Path, *, split: str | None = None, max_file_bytes: int = 500 * 2**20
) -> list[Path]:
    """Concatenate the finished shards, in shard order, into ``<split>-XXXXX-of-YYYYY.parquet`` files.

    Consecutive shards are grouped until a file would exceed ``max_file_bytes`` (deterministic: it only
    depends on the shard bytes). Raises naming the missing shards when the run is not complete, and the
    corrupt one when a shard fails its check; in both cases ``out_dir`` is left as it was.
    """
    import pyarrow as pa  # lazy: heavy optional dependency

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
    for pattern in (".*.tmp", ".*.tmp-*", ".*.tmp.*"):  # left by killed runs; all finished now
        for stale in (work / "shards").glob(pattern):
            stale.unlink(missing_ok=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.staging-{os.getpid()}-{secrets.token_hex(4)}"
    staging.mkdir()
    try:
        schema = decorrelated_features().arrow_schema
        names = []
        for g, shards in enumerate(groups or [[]]):
            tables = [read_verified_shard(work, k) for k in shards]
            table = pa.concat_tables(tables) if tables else schema.empty_table()
            name = f"{split}-{g:05d}-of-{max(len(groups), 1):05d}.parquet"
            atomic_write(staging / name, lambda p, t=table: write_parquet(t, p))
            names.append(name)
        out.mkdir(parents=True, exist_ok=True)
        for name in names:  # each file replaced in one step; then the old files no longer listed go
            os.replace(staging / name, out / name)
        for old in out.glob(f"{split}-*-of-*.parquet"):
            if old.name not in names:
                old.unlink()
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [out / name for name in names]
