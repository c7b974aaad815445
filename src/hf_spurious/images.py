"""Reading and writing images: the one place that turns paths, ``datasets`` cells and arrays into pixels."""

from __future__ import annotations

import io
import os
from typing import Any

import cv2
import numpy as np
from PIL import Image


class ImageReadError(ValueError):
    """An image that cannot be read; the message names the item and the file."""


def load_rgb(value: Any, where: str = "image") -> Image.Image:
    """An RGB PIL image from a PIL image, a path, raw bytes, a ``datasets`` cell ``{"bytes", "path"}`` or an array."""
    if isinstance(value, Image.Image):
        return value if value.mode == "RGB" else value.convert("RGB")
    if isinstance(value, np.ndarray):
        arr = value
        if arr.dtype != np.uint8:
            raise ImageReadError(f"{where}: an image array must be uint8, got {arr.dtype}; convert it first")
        if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] in (1, 3, 4)):
            return Image.fromarray(arr.squeeze(-1) if arr.ndim == 3 and arr.shape[-1] == 1 else arr).convert(
                "RGB"
            )
        raise ImageReadError(f"{where}: an image array must be HxW or HxWx{{1,3,4}}, got shape {arr.shape}")
    if isinstance(value, dict):
        if value.get("bytes"):
            value = bytes(value["bytes"])
        elif value.get("path"):
            value = value["path"]
        else:
            raise ImageReadError(f"{where}: the image cell has neither bytes nor a path")
    if isinstance(value, (bytes, bytearray)):
        source: Any = io.BytesIO(value)
    elif isinstance(value, (str, os.PathLike)):
        source = value
    else:
        raise ImageReadError(
            f"{where}: cannot read an image from {type(value).__name__}; give a PIL image, a path, bytes or an array"
        )
    try:
        with Image.open(source) as im:
            return im.convert("RGB")
    except FileNotFoundError:
        raise ImageReadError(f"{where}: image file {value} does not exist") from None
    except (OSError, Image.DecompressionBombError) as err:
        name = value if isinstance(value, (str, os.PathLike)) else "<bytes>"
        raise ImageReadError(f"{where}: cannot decode image {name} ({err}); replace or remove it") from None


def read_rgb_array(path: str | os.PathLike, where: str = "image") -> np.ndarray:
    """RGB uint8 HxWx3 array of an image file (OpenCV decode, fast on large images)."""
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as err:
        raise ImageReadError(f"{where}: cannot read image file {path}: {err}") from None
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if bgr is None:
        raise ImageReadError(
            f"{where}: cannot decode image file {path} (empty or corrupt); replace or remove it"
        )
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def encode_png(image: np.ndarray) -> bytes:
    """Deterministic, lossless PNG bytes (no metadata, fixed compression) of an RGB or grey uint8 array."""
    arr = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", arr, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:  # pragma: no cover - cv2 only fails on invalid arrays
        raise ValueError(f"PNG encoding failed for an array of shape {image.shape} and dtype {image.dtype}")
    return buf.tobytes()
