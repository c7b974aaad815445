"""The shared image reading/writing helpers."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from hf_spurious.images import ImageReadError, encode_png, load_rgb, read_rgb_array


@pytest.fixture
def rgb() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (7, 5, 3), dtype=np.uint8)


def test_every_source_gives_the_same_pixels(rgb, tmp_path):
    path = tmp_path / "a.png"
    path.write_bytes(encode_png(rgb))
    data = path.read_bytes()
    sources = [
        path,
        str(path),
        data,
        {"bytes": data, "path": None},
        {"bytes": None, "path": str(path)},
        Image.fromarray(rgb),
        Image.fromarray(rgb).convert("RGBA"),
        rgb,
    ]
    for source in sources:
        np.testing.assert_array_equal(np.asarray(load_rgb(source)), rgb)
    np.testing.assert_array_equal(read_rgb_array(path), rgb)
    grey = rgb[..., 0]
    np.testing.assert_array_equal(np.asarray(load_rgb(grey)), np.repeat(grey[..., None], 3, axis=2))


def test_png_bytes_are_deterministic_and_lossless(rgb):
    assert encode_png(rgb) == encode_png(rgb.copy())
    with Image.open(io.BytesIO(encode_png(rgb))) as im:
        np.testing.assert_array_equal(np.asarray(im), rgb)


@pytest.mark.parametrize(
    ("source", "match"),
    [
        ("missing.png", "does not exist"),
        (b"not an image", "cannot decode"),
        ({"bytes": None, "path": None}, "neither bytes nor a path"),
        (np.zeros((4, 4), np.float32), "must be uint8"),
        (np.zeros((4, 4, 2), np.uint8), "HxW"),
        (3.5, "cannot read an image from float"),
    ],
)
def test_bad_sources_name_the_item(source, match, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ImageReadError, match=match) as err:
        load_rgb(source, where="row 7")
    assert "row 7" in str(err.value)


def test_corrupt_file_names_the_file(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG broken")
    with pytest.raises(ImageReadError, match=r"bad\.png"):
        load_rgb(bad)
    with pytest.raises(ImageReadError, match=r"bad\.png"):
        read_rgb_array(bad)
