"""Reading and writing images: the one place that turns paths, bytes, ``datasets`` cells and arrays into pixels.

One decoder, one truth: every image the package reads goes through :func:`load_rgb` (a PIL image) or
:func:`read_rgb_array` (a numpy array), which decode the same way:

* **Orientation** - the EXIF ``Orientation`` tag is applied once, here, as ``datasets.Image``, OpenCV and
  image viewers apply it: pixels, sizes (:func:`image_size`, used by the readers) and annotation boxes all
  live in the displayed frame. A JPEG tagged "rotate 180" is inpainted where a viewer shows the object.
* **Modes** - every PIL mode becomes 8-bit RGB by what its values mean: 16-bit grey (``I;16``, ``I;16B``,
  ...) is scaled from 0..65535 to 0..255 (a 16-bit PNG does not turn white); 32-bit integer grey (``I``)
  likewise, unless its maximum is <= 255 (then it already holds 8-bit values); float grey (``F``) is read
  as 0..1 when its maximum is <= 1, else as 0..255, clipped; transparency (``RGBA``, ``LA``, ``PA``,
  ``P`` or ``L`` with a transparent colour) is composited on white; ``1``, ``L``, ``P``, ``CMYK``,
  ``YCbCr``, ``RGBX`` ... convert with PIL. A mode PIL cannot convert is an :class:`ImageReadError`.
* **Size** - an image declaring more than :data:`MAX_PIXELS` pixels is refused from its header, before
  any pixel is decoded, with :class:`ImageTooLargeError` (an ``ImageReadError``): a decompression bomb
  costs nothing, and ``on_error="skip"`` / ``--on-error skip`` count it as a skip like any unreadable image.
"""

from __future__ import annotations

import io
import os
import warnings
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageOps

#: Largest image accepted (width x height), PIL's own decompression-bomb threshold: ~89.5 megapixels,
#: e.g. 9459 x 9459. Raise it (``hf_spurious.images.MAX_PIXELS = ...``) for genuinely huge images.
MAX_PIXELS = 89_478_485
_ORIENTATION = 0x0112  # EXIF tag
_TRANSPOSED = (5, 6, 7, 8)  # orientations that swap width and height


class ImageReadError(ValueError):
    """An image that cannot be read; the message names the item and the file."""


class ImageTooLargeError(ImageReadError):
    """An image declaring more than ``MAX_PIXELS`` pixels (a likely decompression bomb)."""


def _name(value: Any) -> str:
    return str(value) if isinstance(value, (str, os.PathLike)) else "<bytes>"


def _source(value: Any, where: str) -> Any:
    """A path or a byte stream for PIL, from a path, bytes or a ``datasets`` cell ``{"bytes", "path"}``."""
    if isinstance(value, dict):
        if value.get("bytes"):
            value = bytes(value["bytes"])
        elif value.get("path"):
            value = value["path"]
        else:
            raise ImageReadError(f"{where}: the image cell has neither bytes nor a path")
    if isinstance(value, (bytes, bytearray)):
        return io.BytesIO(value)
    if isinstance(value, (str, os.PathLike)):
        return value
    raise ImageReadError(
        f"{where}: cannot read an image from {type(value).__name__}; give a PIL image, a path, bytes or an array"
    )


def _open(source: Any, where: str) -> Image.Image:
    """``Image.open`` with the header checked against ``MAX_PIXELS``; errors name the item and the fix."""
    name = _name(source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # checked just below
            im = Image.open(source)
    except FileNotFoundError:
        raise ImageReadError(f"{where}: image file {name} does not exist") from None
    except Image.DecompressionBombError as err:
        raise ImageTooLargeError(
            f"{where}: image {name} is too large to decode ({err}); it is likely a decompression bomb - "
            "replace or remove it"
        ) from None
    except (OSError, ValueError, SyntaxError) as err:
        raise ImageReadError(f"{where}: cannot decode image {name} ({err}); replace or remove it") from None
    width, height = im.size
    if width * height > MAX_PIXELS:
        im.close()
        raise ImageTooLargeError(
            f"{where}: image {name} declares {width}x{height} = {width * height} pixels, more than "
            f"MAX_PIXELS={MAX_PIXELS} (a likely decompression bomb); replace or remove it, or raise "
            "hf_spurious.images.MAX_PIXELS"
        )
    return im


def image_size(value: Any, where: str = "image") -> tuple[int, int]:
    """(width, height) of an image file, bytes or cell as :func:`load_rgb` decodes it (EXIF applied)."""
    with _open(_source(value, where), where) as im:
        width, height = im.size
        try:
            turned = im.getexif().get(_ORIENTATION) in _TRANSPOSED
        except (OSError, ValueError, SyntaxError):  # unreadable EXIF: the decoder ignores it too
            turned = False
    return (height, width) if turned else (width, height)


def _oriented(im: Image.Image) -> Image.Image:
    """``im`` turned as its EXIF orientation says (the tag is then dropped); unchanged without one."""
    try:
        orientation = im.getexif().get(_ORIENTATION)
    except (OSError, ValueError, SyntaxError):
        return im
    return ImageOps.exif_transpose(im) if orientation not in (None, 1) else im


def _on_white(im: Image.Image) -> Image.Image:
    rgba = im.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _grey_to_rgb(im: Image.Image) -> Image.Image:
    """16-bit, 32-bit integer and float grey scaled by what the values mean, as 8-bit RGB."""
    arr = np.asarray(im, dtype=np.float64)
    if im.mode.startswith("I;16"):
        arr = arr / 257.0
    elif im.mode == "I":
        arr = arr / 257.0 if arr.size and arr.max() > 255 else arr
    elif im.mode == "F":
        arr = arr * 255.0 if arr.size and np.nanmax(arr) <= 1.0 else arr
    arr = np.nan_to_num(arr, nan=0.0, posinf=255.0, neginf=0.0)
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "L").convert("RGB")


def to_rgb(im: Image.Image, where: str = "image") -> Image.Image:
    """``im`` (any PIL mode) as 8-bit RGB, per the mode rules in the module docstring (no EXIF step)."""
    mode = im.mode
    if mode == "RGB":
        return im
    if mode.startswith("I;16") or mode in ("I", "F"):
        return _grey_to_rgb(im)
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
        return _on_white(im)
    try:
        return im.convert("RGB")
    except (ValueError, OSError) as err:
        raise ImageReadError(
            f"{where}: cannot convert an image of PIL mode {mode!r} to RGB ({err}); save it as RGB PNG/JPEG"
        ) from None


def _from_array(arr: np.ndarray, where: str) -> Image.Image:
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    elif arr.dtype == np.uint16:
        arr = np.rint(arr / 257.0).astype(np.uint8)
    elif arr.dtype != np.uint8:
        raise ImageReadError(
            f"{where}: an image array must be uint8 (or uint16, bool), got {arr.dtype}; convert it first"
        )
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] in (3, 4)):
        return to_rgb(Image.fromarray(arr), where)
    raise ImageReadError(f"{where}: an image array must be HxW or HxWx{{1,3,4}}, got shape {arr.shape}")


def load_rgb(value: Any, where: str = "image") -> Image.Image:
    """An RGB PIL image from a PIL image, a path, raw bytes, a ``datasets`` cell ``{"bytes", "path"}`` or an array.

    EXIF orientation applied, every mode converted by meaning, decompression bombs refused (module docstring).
    """
    if isinstance(value, Image.Image):
        return to_rgb(_oriented(value), where)
    if isinstance(value, np.ndarray):
        return _from_array(value, where)
    source = _source(value, where)
    name = _name(value if not isinstance(value, dict) else value.get("path") or "<bytes>")
    with _open(source, where) as im:
        try:
            im.load()
            return to_rgb(_oriented(im), where)
        except ImageReadError:
            raise
        except (OSError, ValueError, SyntaxError) as err:
            raise ImageReadError(
                f"{where}: cannot decode image {name} ({err}); replace or remove it"
            ) from None


def read_rgb_array(path: str | os.PathLike, where: str = "image") -> np.ndarray:
    """RGB uint8 HxWx3 array of an image file, decoded exactly as :func:`load_rgb` decodes it."""
    return np.asarray(load_rgb(path, where))


def encode_png(image: np.ndarray) -> bytes:
    """Deterministic, lossless PNG bytes (no metadata, fixed compression) of an RGB or grey uint8 array."""
    arr = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", arr, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:  # pragma: no cover - cv2 only fails on invalid arrays
        raise ValueError(f"PNG encoding failed for an array of shape {image.shape} and dtype {image.dtype}")
    return buf.tobytes()
