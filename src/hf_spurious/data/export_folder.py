"""The export folder's transactions: stage a config, swap it in, update the shared files under a lock.

Several exports may write into one folder at once (one per config, or the same config twice). Each stages
its parquet files in a hidden folder, then, holding ``<out>/.export.lock``, swaps the staged folder in
(the old config folder is removed only after that) and rewrites ``provenance.json`` and ``README.md``
atomically from the provenance on disk, so no config written by another export is lost. An unreadable
``provenance.json`` (e.g. from an older, non-atomic version) is kept aside and rebuilt from the folders.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import secrets
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

LOCK_NAME = ".export.lock"


@contextlib.contextmanager
def folder_lock(out: Path) -> Iterator[None]:
    """An exclusive lock on the export folder (``fcntl.flock``; without fcntl, e.g. on Windows, none)."""
    try:
        import fcntl  # lazy: POSIX only
    except ImportError:  # pragma: no cover - not on the CI platform
        yield
        return
    out.mkdir(parents=True, exist_ok=True)
    with open(out / LOCK_NAME, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def staging_dir(out: Path, config_name: str) -> Path:
    """A fresh hidden folder in ``out`` for the new files of ``config_name``."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f".staging-{config_name}-{os.getpid()}-{secrets.token_hex(4)}"
    path.mkdir()
    return path


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux ``renameat2(RENAME_EXCHANGE)``); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    res = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    return res == 0


def swap_in(staged: Path, target: Path) -> None:
    """Make ``staged`` the folder ``target`` (call under :func:`folder_lock`); the old one is deleted after.
    On Linux the two folders are exchanged in one step, so a reader always finds a complete ``target``;
    elsewhere the old folder is moved aside first (``target`` is missing for that instant)."""
    if not target.exists():
        os.replace(staged, target)
        return
    if _exchange(staged, target):
        shutil.rmtree(staged, ignore_errors=True)  # now holds the old files
        return
    old = target.parent / f".old-{target.name}-{os.getpid()}-{secrets.token_hex(4)}"
    os.replace(target, old)
    os.replace(staged, target)
    shutil.rmtree(old, ignore_errors=True)


def clean_leftovers(out: Path) -> None:
    """Remove staging / old folders left by killed exports (call under :func:`folder_lock`, so no running
    export of this folder owns them... except one still staging: only folders older than an hour go)."""
    import time

    for path in list(out.glob(".staging-*")) + list(out.glob(".old-*")):
        with contextlib.suppress(OSError):
            if time.time() - path.stat().st_mtime > 3600:
                shutil.rmtree(path, ignore_errors=True)


def read_provenance(out: Path, rebuild: Any = None) -> dict[str, Any]:
    """``provenance.json`` of the folder ({} if none). If it cannot be read, it is renamed to
    ``provenance.json.corrupt`` (a warning says so) and ``rebuild(config_name)`` is called for every config
    folder that holds parquet files, so those configs stay listed in the card."""
    path = out / "provenance.json"
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        return data
    except (OSError, ValueError) as err:
        aside = path.with_name("provenance.json.corrupt")
        os.replace(path, aside)
        configs = sorted(
            p.name
            for p in out.iterdir()
            if p.is_dir() and not p.name.startswith(".") and any(p.glob("*.parquet"))
        )
        logger.warning(
            "%s is unreadable (%s); kept as %s and rebuilt from the config folders %s (their settings are "
            "lost: re-export them to restore the card's provenance tables)",
            path, err, aside.name, configs,
        )  # fmt: skip
        return {name: rebuild(name) for name in configs} if rebuild is not None else {}


def splits_on_disk(folder: Path) -> dict[str, list[str]]:
    """``{split: [parquet file names]}`` of a config folder (``<split>-XXXXX-of-YYYYY.parquet``)."""
    splits: dict[str, list[str]] = {}
    for path in sorted(folder.glob("*-*-of-*.parquet")):
        split = path.name.rsplit("-", 3)[0]
        splits.setdefault(split, []).append(path.name)
    return splits


def dataset_info(folder: Path, config_name: str, splits: dict[str, list[str]]) -> dict[str, Any]:
    """The card's ``dataset_info`` entry (features, split sizes). It also keys `datasets`' cache of a local
    folder: without it a re-export into a folder of the same name would load the stale cached copy."""
    import datasets  # lazy: heavy optional dependency
    import pyarrow.parquet as pq  # lazy: heavy optional dependency

    split_dict = datasets.SplitDict()
    features = None
    total = 0
    for split, names in splits.items():
        rows = nbytes = 0
        for name in names:
            meta = pq.ParquetFile(folder / name)
            rows += meta.metadata.num_rows
            nbytes += (folder / name).stat().st_size
            if features is None:
                features = datasets.Features.from_arrow_schema(meta.schema_arrow)
        split_dict.add(datasets.SplitInfo(name=split, num_bytes=nbytes, num_examples=rows))
        total += nbytes
    info = datasets.DatasetInfo(
        features=features, splits=split_dict, download_size=total, dataset_size=total, config_name=config_name
    )
    return info._to_yaml_dict()


def rebuilt_entry(out: Path, name: str) -> dict[str, Any]:
    """A provenance entry rebuilt from a config folder alone (its settings and counts are unknown)."""
    splits = splits_on_disk(out / name)
    return {
        "splits": splits,
        "settings": {},
        "stats": {},
        "dataset_info": dataset_info(out / name, name, splits),
    }
