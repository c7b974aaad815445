"""What the format readers share: the missing-file error, safe relative paths, JSON loading, cached
directory listings, image sizes, split names and the Karpathy split file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Literal

from PIL import Image

from hf_spurious.records import RecordError

OnMissing = Literal["error", "skip"]
SPLIT_NAMES = ("train", "val", "test")
KARPATHY_SPLITS = {"train": "train", "restval": "train", "val": "val", "test": "test"}


class MissingFileError(RecordError, FileNotFoundError):
    """An image or annotation file named by the dataset is not on disk."""


def load_json(path: Path) -> Any:
    """Parsed JSON of ``path``; ``MissingFileError`` when absent, ``RecordError`` when not valid JSON."""
    try:
        with path.open("rb") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise MissingFileError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RecordError(
            f"{path}: not valid JSON ({err}); the file may be truncated, download it again"
        ) from None


def safe_relative(name: str, *, where: str) -> PurePosixPath:
    """``name`` as a relative path inside the dataset; absolute paths and ``..`` parts are refused."""
    if not isinstance(name, str) or not name.strip():
        raise RecordError(f"{where}: empty or non-string file name {name!r}")
    posix = name.replace("\\", "/")
    path = PurePosixPath(posix)
    if path.is_absolute() or PureWindowsPath(name).is_absolute() or PureWindowsPath(name).drive:
        raise RecordError(
            f"{where}: file name {name!r} is an absolute path; annotation paths must be relative"
        )
    if ".." in path.parts:
        raise RecordError(
            f"{where}: file name {name!r} contains '..'; annotation paths must stay inside the dataset"
        )
    return path


def check_split(split: str) -> str:
    """``split`` when it is one of ``SPLIT_NAMES``, else ValueError."""
    if split not in SPLIT_NAMES:
        raise ValueError(f"unknown split {split!r}; choose one of {SPLIT_NAMES}")
    return split


def skip_missing(on_missing: OnMissing, message: str) -> None:
    """Return when missing files are skipped (``on_missing="skip"``), else raise ``MissingFileError``."""
    if on_missing != "skip":
        raise MissingFileError(message)


@contextmanager
def located(where: str) -> Iterator[None]:
    """Prefix the message of a ``RecordError`` raised inside the block with ``where``."""
    try:
        yield
    except RecordError as err:
        raise RecordError(f"{where}: {err}") from None


class DirIndex:
    """Cached directory listings, so resolving 100k image names costs one ``listdir`` per folder."""

    def __init__(self) -> None:
        self._cache: dict[Path, frozenset[str]] = {}

    def exists(self, path: Path) -> bool:
        parent = path.parent
        if parent not in self._cache:
            try:
                self._cache[parent] = frozenset(os.listdir(parent))
            except OSError:
                self._cache[parent] = frozenset()
        return path.name in self._cache[parent]


def image_size(path: Path, *, where: str) -> tuple[int, int]:
    """(width, height) read from the image header."""
    try:
        with Image.open(path) as im:
            return im.size
    except OSError as err:
        raise RecordError(f"{where}: cannot read image {path} ({err})") from None


def karpathy_images(path: Path, split: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(position, entry) of every image of ``split`` in a Karpathy split file (``restval`` is train)."""
    data = load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise RecordError(f"{path}: not a Karpathy split file (needs a list 'images')")
    for n, im in enumerate(data["images"]):
        ksplit = im.get("split")
        if ksplit not in KARPATHY_SPLITS:
            raise RecordError(f"{path}: image #{n} has unknown split {ksplit!r} (train/restval/val/test)")
        if KARPATHY_SPLITS[ksplit] == split:
            yield n, im


def karpathy_captions(image: dict[str, Any]) -> list[str]:
    """The raw sentences of a Karpathy image entry (tokens joined when ``raw`` is absent)."""
    return [s.get("raw", " ".join(s.get("tokens", []))).strip() for s in image.get("sentences", [])]
