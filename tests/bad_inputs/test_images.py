"""Bad images (issue 13 rule 6): one decoder; bombs, truncations and odd modes are named or decoded right."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from hf_spurious.images import ImageReadError, ImageTooLargeError, image_size, load_rgb, read_rgb_array

from ._cases import Case, cases, check


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` RGB pixels but carries (almost) no data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )


def file_with(data: bytes, name: str = "img.png"):
    def make(tmp: Path) -> Path:
        path = tmp / name
        path.write_bytes(data)
        return path

    return make


def good_png(tmp: Path) -> bytes:
    path = tmp / "good.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(path)
    return path.read_bytes()


def decode(make, reader=load_rgb):
    return lambda tmp: reader(make(tmp), where="image 'x7'")


def saved(image: Image.Image, name: str = "m.png", **kwargs: Any):
    def make(tmp: Path) -> Path:
        path = tmp / name
        image.save(path, **kwargs)
        return path

    return make


def all_equal(value: int):
    def expect(im: Image.Image) -> None:
        arr = np.asarray(im)
        assert im.mode == "RGB" and (arr == value).all(), (im.mode, np.unique(arr))

    return expect


BOMB = png_header_only(100_000, 100_000)
LARGE = png_header_only(10_000, 10_000)  # over MAX_PIXELS, under PIL's own hard limit

CASES = [
    Case(
        "png bomb 100000x100000",
        decode(file_with(BOMB)),
        raises=ImageTooLargeError,
        says=("image 'x7'", "img.png", "decompression bomb", "replace or remove"),
    ),
    Case(
        "png bomb via array reader",
        decode(file_with(BOMB), read_rgb_array),
        raises=ImageTooLargeError,
        says=("image 'x7'", "img.png", "decompression bomb"),
    ),
    Case(
        "png bomb as bytes",
        lambda tmp: load_rgb(BOMB, where="row 3"),
        raises=ImageTooLargeError,
        says=("row 3", "<bytes>", "decompression bomb"),
    ),
    Case(
        "png over MAX_PIXELS",
        decode(file_with(LARGE)),
        raises=ImageTooLargeError,
        says=("10000x10000", "MAX_PIXELS", "replace or remove"),
    ),
    Case(
        "png over MAX_PIXELS size only",
        lambda tmp: image_size(file_with(LARGE)(tmp), where="image 'x7'"),
        raises=ImageTooLargeError,
        says=("image 'x7'", "10000x10000"),
    ),
    Case(
        "truncated png",
        decode(lambda tmp: file_with(good_png(tmp)[:200])(tmp)),
        raises=ImageReadError,
        says=("image 'x7'", "img.png", "cannot decode", "replace or remove"),
    ),
    Case(
        "empty file",
        decode(file_with(b"")),
        raises=ImageReadError,
        says=("image 'x7'", "img.png", "cannot decode"),
    ),
    Case(
        "text file named jpg",
        decode(file_with(b"hello, world\n", "photo.jpg")),
        raises=ImageReadError,
        says=("photo.jpg", "cannot decode"),
    ),
    Case(
        "missing file",
        lambda tmp: load_rgb(tmp / "nope.jpg", where="image 'x7'"),
        raises=ImageReadError,
        says=("image 'x7'", "nope.jpg", "does not exist"),
    ),
    Case(
        "float array",
        lambda tmp: load_rgb(np.zeros((4, 4), np.float32), where="row 2"),
        raises=ImageReadError,
        says=("row 2", "uint8", "float32", "convert it first"),
    ),
    Case(
        "two-channel array",
        lambda tmp: load_rgb(np.zeros((4, 4, 2), np.uint8), where="row 2"),
        raises=ImageReadError,
        says=("row 2", "HxW", "(4, 4, 2)"),
    ),
    Case(
        "cell without bytes or path",
        lambda tmp: load_rgb({"bytes": None, "path": None}, where="row 2"),
        raises=ImageReadError,
        says=("row 2", "neither bytes nor a path"),
    ),
    Case(
        "not an image value",
        lambda tmp: load_rgb(3.5, where="row 2"),
        raises=ImageReadError,
        says=("row 2", "float", "give a PIL image, a path"),
    ),
    # decoded right after all (every PIL mode by meaning)
    Case(
        "16-bit grey png not white",
        decode(saved(Image.fromarray(np.full((4, 4), 32896, np.uint16)))),
        raises=None,
        expect=all_equal(128),
    ),
    Case(
        "32-bit int grey 8-bit values",
        lambda tmp: load_rgb(Image.new("I", (4, 4), 77)),
        raises=None,
        expect=all_equal(77),
    ),
    Case(
        "float grey 0..1",
        lambda tmp: load_rgb(Image.new("F", (4, 4), 0.5)),
        raises=None,
        expect=all_equal(128),
    ),
    Case(
        "transparent rgba on white",
        lambda tmp: load_rgb(Image.new("RGBA", (4, 4), (0, 0, 0, 0))),
        raises=None,
        expect=all_equal(255),
    ),
    Case(
        "transparent LA on white",
        decode(saved(Image.new("LA", (4, 4), (0, 0)))),
        raises=None,
        expect=all_equal(255),
    ),
    Case(
        "cmyk jpeg",
        decode(saved(Image.new("CMYK", (8, 8), (0, 0, 0, 0)), "c.jpg", quality=100)),
        raises=None,
        expect=all_equal(255),
    ),
]


@cases(CASES)
def test_image_bad_input(case, tmp_path):
    check(case, tmp_path)
