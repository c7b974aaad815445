"""Content keys, atomic writes and the on-disk stores behind every cache of the project.

One home for what caches share: :func:`digest` turns the content a cached value stands for into a key;
:func:`atomic_write` (and its ``_bytes`` / ``_text`` / ``_json`` forms) writes a file under a temporary name
and swaps it in, so a reader never sees half a file and a crash never destroys the old one; the stores hold
the values. The core never opens files: it takes a store object (or a plain ``dict``) and calls
``get`` / ``__setitem__`` / ``flush`` on it.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import socket
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "ArrayStore",
    "JsonlStore",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "digest",
    "digest_texts",
]


def _encode(part: object) -> bytes:
    if isinstance(part, bytes):
        return part
    if isinstance(part, str):
        return part.encode("utf-8")
    return json.dumps(part, sort_keys=True, default=str).encode("utf-8")


def digest(*parts: object, length: int = 32) -> str:
    """Hex sha256 over ``parts`` (bytes as they are, text as UTF-8, anything else as canonical JSON), each
    length-prefixed so that no two different part lists can collide by concatenation."""
    h = hashlib.sha256()
    for part in parts:
        data = _encode(part)
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()[:length]


def digest_texts(texts: Iterable[str]) -> str:
    """Full hex sha256 over texts in order (length-prefixed, then the count), streamed."""
    h = hashlib.sha256()
    n = 0
    for text in texts:
        data = text.encode("utf-8")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
        n += 1
    h.update(b"captions:" + str(n).encode())
    return h.hexdigest()


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a hidden sibling of ``path``, then move it over ``path`` in one step.

    The old file (if any) stays intact until the new one is complete; on an error the temporary is removed.
    ``tmp`` does not exist yet (``write`` creates it, so it gets the usual permissions) and ends with the
    suffix of ``path``, so writers that go by the extension (``np.savez``, ``PIL.Image.save``) keep working.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    return atomic_write(path, lambda p: p.write_bytes(data))


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any, **dumps_kwargs: Any) -> Path:
    """``json.dumps(obj, **dumps_kwargs)`` written atomically (``indent=1`` unless given)."""
    dumps_kwargs.setdefault("indent", 1)
    return atomic_write_text(path, json.dumps(obj, **dumps_kwargs))


class ArrayStore:
    """Arrays on disk as ``<key>.npy`` (never pickle) beside ``<key>.json`` (shape, dtype and any metadata).

    Writes are atomic; a corrupt or unreadable entry counts as a miss.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.npy"

    def get(self, key: str, *, mmap: bool = False) -> np.ndarray | None:
        """The array stored under ``key``, or None on a miss."""
        path = self.path(key)
        if not path.exists():
            return None
        try:
            return np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
        except (ValueError, OSError, EOFError):  # truncated or not an .npy file
            return None

    def meta(self, key: str) -> dict[str, Any] | None:
        """The metadata written with ``key`` (None on a miss or a corrupt sidecar)."""
        try:
            return json.loads(self.path(key).with_suffix(".json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def put(self, key: str, array: np.ndarray, **meta: Any) -> Path:
        array = np.ascontiguousarray(array)
        path = atomic_write(self.path(key), lambda p: _save_npy(p, array))
        info = {"key": key, "shape": list(array.shape), "dtype": array.dtype.str, **meta}
        atomic_write_json(path.with_suffix(".json"), info, default=str)
        return path

    def get_or_compute(self, key: str, compute: Callable[[], np.ndarray], **meta: Any) -> np.ndarray:
        cached = self.get(key)
        if cached is not None:
            return cached
        array = compute()
        self.put(key, array, **meta)
        return array


def _save_npy(path: Path, array: np.ndarray) -> None:
    with path.open("wb") as f:
        np.save(f, array, allow_pickle=False)


class JsonlStore(MutableMapping[str, Any]):
    """A key -> JSON value map kept as JSON lines, one file per writing process (safe under many processes).

    ``store[key] = value`` holds the value in memory and queues it; :meth:`flush` appends the queue to this
    process's file. Every file in the folder is read on construction; a truncated last line (a killed
    writer) is skipped. Values come back as JSON gives them (tuples as lists). Append-only: ``del`` raises.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self._values: dict[str, Any] = {}
        self._pending: list[tuple[str, Any]] = []
        if self.directory.is_dir():
            for path in sorted(self.directory.glob("*.jsonl")):
                self._read(path)

    def _read(self, path: Path) -> None:
        for (
            line
        ) in path.read_bytes().splitlines():  # bytes: a line cut inside a UTF-8 character is one bad line
            try:
                row = json.loads(line)  # a bad line (truncated, not UTF-8, not {"k", "v"}) is a miss
                self._values[row["k"]] = row["v"]
            except (ValueError, KeyError, TypeError):
                continue

    def __contains__(self, key: object) -> bool:
        return key in self._values

    def __len__(self) -> int:
        return len(self._values)

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def get(self, key: str, default: Any = None) -> Any:
        return self._values.get(key, default)

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._values[key] = value
        self._pending.append((key, value))

    def __delitem__(self, key: str) -> None:
        raise TypeError("JsonlStore is append-only; delete its folder to drop the cache")

    def flush(self) -> None:
        """Append the values set since the last flush to this process's file."""
        if not self._pending:
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{socket.gethostname()}-{os.getpid()}.jsonl"
        lines = "".join(json.dumps({"k": k, "v": v}, separators=(",", ":")) + "\n" for k, v in self._pending)
        if path.exists() and path.stat().st_size:
            with path.open("rb") as fh:
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":  # a killed writer with our pid left a partial line: end it
                    lines = "\n" + lines
        with path.open("a", encoding="utf-8") as fh:
            fh.write(lines)
        self._pending.clear()

    def __repr__(self) -> str:
        return f"JsonlStore({str(self.directory)!r}, entries={len(self._values)})"
