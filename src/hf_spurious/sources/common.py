"""What the format readers share: the missing-file error, safe relative paths, JSON and text loading,
typed field access, cached directory listings, image sizes, split names and the Karpathy split file.

Every value read from an annotation file goes through a typed accessor (:func:`entry`, :func:`int_field`,
:func:`str_field`, :func:`list_field`, :func:`number`): a wrong type, a missing field or a ``null`` becomes
a ``RecordError`` that names the file, the item, the field and what it must be, never a bare
``KeyError`` / ``TypeError``. Text files are decoded by :func:`read_text`, which names the file and line
of a byte that is not UTF-8 (a UTF-8 byte-order mark is accepted).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Literal

from hf_spurious import images
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
        raise MissingFileError(
            f"{path}: file not found; check the dataset folder and the file name"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise RecordError(
            f"{path}: not valid JSON ({err}); the file may be truncated, download it again"
        ) from None


def read_text(path: Path) -> str:
    """The text of a UTF-8 file (a leading byte-order mark is dropped); a non-UTF-8 byte names its line."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise MissingFileError(
            f"{path}: file not found; check the dataset folder and the file name"
        ) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise RecordError(
            f"{path}: line {line}: byte {data[err.start : err.start + 1]!r} at offset {err.start} is not "
            "UTF-8; re-save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
        ) from None


# ------------------------------------------------------------------------------------ typed field access

_REQUIRED: Any = object()


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _wrong(where: str, key: str | None, value: Any, want: str) -> RecordError:
    name = f"field {key!r}" if key is not None else "the value"
    return RecordError(
        f"{where}: {name} must be {want}, got {_shown(value)} ({type(value).__name__}); "
        "fix this entry in the file or remove it"
    )


def entry(value: Any, *, where: str, what: str = "an object") -> dict[str, Any]:
    """``value`` when it is a JSON object (dict), else a ``RecordError`` naming ``where``."""
    if not isinstance(value, dict):
        raise _wrong(where, None, value, f"{what} ({{...}})")
    return value


def _get(obj: dict[str, Any], key: str, where: str, default: Any) -> Any:
    value = obj.get(key)
    if value is None:
        if default is not _REQUIRED:
            return default
        state = "is null" if key in obj else "is missing"
        raise RecordError(f"{where}: field {key!r} {state}; add it to this entry or remove the entry")
    return value


def int_field(obj: dict[str, Any], key: str, *, where: str, default: Any = _REQUIRED) -> Any:
    """``obj[key]`` as an int (ints, integral floats and digit strings); absent/null -> ``default``."""
    value = _get(obj, key, where, default)
    if value is default and default is not _REQUIRED:
        return value
    if isinstance(value, bool):
        raise _wrong(where, key, value, "an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    raise _wrong(where, key, value, "an integer")


def _typed_field(obj: dict[str, Any], key: str, where: str, default: Any, kind: type, want: str) -> Any:
    """``obj[key]`` when it is a ``kind``; absent/null -> ``default`` (required when no default)."""
    value = _get(obj, key, where, default)
    if value is default and default is not _REQUIRED:
        return value
    if not isinstance(value, kind):
        raise _wrong(where, key, value, want)
    return value


def str_field(obj: dict[str, Any], key: str, *, where: str, default: Any = _REQUIRED) -> Any:
    """``obj[key]`` as a string; absent/null -> ``default`` (required when no default)."""
    return _typed_field(obj, key, where, default, str, "a string")


def list_field(obj: dict[str, Any], key: str, *, where: str, default: Any = _REQUIRED) -> Any:
    """``obj[key]`` as a list; absent/null -> ``default`` (required when no default)."""
    return _typed_field(obj, key, where, default, list, "a list")


def number(value: Any, *, where: str, what: str) -> float:
    """``value`` (a JSON number or numeric text) as a finite float; else a ``RecordError`` naming ``what``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        out = float(value)
    elif isinstance(value, str):
        try:
            out = float(value.strip())
        except ValueError:
            raise _wrong(where, what, value, "a number") from None
    else:
        raise _wrong(where, what, value, "a number")
    if not math.isfinite(out):
        raise _wrong(where, what, value, "a finite number")
    return out


def safe_relative(name: str, *, where: str) -> PurePosixPath:
    """``name`` as a relative path inside the dataset; absolute paths and ``..`` parts are refused."""
    if not isinstance(name, str) or not name.strip():
        raise RecordError(f"{where}: empty or non-string file name {name!r}; give the image's relative path")
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
    """(width, height) of the image as decoded (EXIF orientation applied), read from its header."""
    try:
        return images.image_size(path, where=where)
    except ValueError as err:  # ImageReadError
        raise RecordError(str(err)) from None


def karpathy_images(path: Path, split: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(position, entry) of every image of ``split`` in a Karpathy split file (``restval`` is train)."""
    data = load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise RecordError(f"{path}: not a Karpathy split file (needs a list 'images')")
    for n, im in enumerate(data["images"]):
        where = f"{path}: images[{n}]"
        im = entry(im, where=where, what="an image object")
        ksplit = im.get("split")
        if not isinstance(ksplit, str) or ksplit not in KARPATHY_SPLITS:
            raise RecordError(
                f"{where}: unknown split {ksplit!r}; use one of train/restval/val/test in field 'split'"
            )
        if KARPATHY_SPLITS[ksplit] == split:
            yield n, im


def karpathy_captions(image: dict[str, Any], *, where: str = "Karpathy entry") -> list[str]:
    """The raw sentences of a Karpathy image entry (``tokens`` joined when ``raw`` is absent or null)."""
    captions = []
    for j, sentence in enumerate(list_field(image, "sentences", where=where, default=[])):
        at = f"{where}: sentences[{j}]"
        sentence = entry(sentence, where=at, what="a sentence object")
        raw = str_field(sentence, "raw", where=at, default=None)
        if raw is None:
            tokens = list_field(sentence, "tokens", where=at, default=None)
            if tokens is None:
                raise RecordError(f"{at}: has neither 'raw' nor 'tokens'; give the caption text in 'raw'")
            if not all(isinstance(t, str) for t in tokens):
                raise _wrong(at, "tokens", tokens, "a list of strings")
            raw = " ".join(tokens)
        captions.append(raw.strip())
    return captions
