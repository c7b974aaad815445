"""The shared image reading/writing helpers."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from hf_spurious.images import ImageReadError, encode_png, image_size, load_rgb, read_rgb_array


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


# ------------------------------------------------------------------------------ one decoder, one truth


def _exif_jpeg(path, arr: np.ndarray, orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(arr).save(path, quality=100, subsampling=0, exif=exif.tobytes())


#: What each EXIF orientation does to the stored pixels, written out by hand (the EXIF 2.3 table).
_NAIVE_ORIENT = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1, :],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: a.transpose(1, 0, 2)[:, ::-1],
    7: lambda a: a.transpose(1, 0, 2)[::-1, ::-1],
    8: lambda a: a.transpose(1, 0, 2)[::-1, :],
}


@pytest.mark.parametrize("orientation", sorted(_NAIVE_ORIENT))
def test_exif_orientation_applied_once_everywhere(orientation, tmp_path):
    # big flat blocks, so JPEG rounding stays far below the block contrast
    stored = np.zeros((16, 24, 3), np.uint8)
    stored[:8, :8] = (250, 0, 0)
    stored[8:, 16:] = (0, 0, 250)
    path = tmp_path / "o.jpg"
    _exif_jpeg(path, stored, orientation)
    with Image.open(path) as raw:
        decoded_raw = np.asarray(raw.convert("RGB")).astype(int)  # the stored pixels, unturned
    expected = _NAIVE_ORIENT[orientation](decoded_raw)
    for got in (np.asarray(load_rgb(path)), read_rgb_array(path), np.asarray(load_rgb(path.read_bytes()))):
        assert got.shape == expected.shape
        assert np.abs(got.astype(int) - expected).max() == 0
    assert image_size(path) == (expected.shape[1], expected.shape[0])
    with Image.open(path) as im:  # a PIL image opened by the user is turned the same way
        assert np.array_equal(np.asarray(load_rgb(im)).astype(int), expected)


def test_sixteen_bit_grey_matches_naive_scaling(tmp_path):
    values = np.arange(0, 65536, 257 * 5, dtype=np.uint16).reshape(1, -1)
    values = np.concatenate(
        [values, np.array([[1, 128, 129, 65535] + [0] * (values.shape[1] - 4)], np.uint16)]
    )
    path = tmp_path / "g16.png"
    Image.fromarray(values).save(path)
    with Image.open(path) as im:
        assert im.mode.startswith("I")  # stored as 16-bit
    naive = [[int(v / 257 + 0.5) for v in row] for row in values.tolist()]  # 65535 -> 255, 32896 -> 128
    got = np.asarray(load_rgb(path))
    assert got[..., 0].tolist() == naive
    assert (got[..., 0] == got[..., 1]).all() and (got[..., 1] == got[..., 2]).all()
    assert got.max() == 255 and got.min() == 0  # a ramp, not all white


def test_palette_with_transparency_and_one_bit(tmp_path):
    pal = Image.new("P", (2, 1))
    pal.putpalette([10, 20, 30, 200, 100, 50])
    pal.putpixel((0, 0), 0)
    pal.putpixel((1, 0), 1)
    pal.info["transparency"] = 0  # colour 0 is transparent
    path = tmp_path / "p.png"
    pal.save(path, transparency=0)
    assert np.asarray(load_rgb(path)).tolist() == [[[255, 255, 255], [200, 100, 50]]]
    bits = Image.new("1", (2, 1))
    bits.putpixel((1, 0), 1)
    assert np.asarray(load_rgb(bits)).tolist() == [[[0, 0, 0], [255, 255, 255]]]


def test_float_and_wide_int_grey():
    wide = Image.fromarray(np.array([[0, 65535, 32896]], np.int32), "I")
    assert np.asarray(load_rgb(wide))[..., 0].tolist() == [[0, 255, 128]]
    floats = Image.fromarray(np.array([[0.0, 1.0, 0.25]], np.float32), "F")
    assert np.asarray(load_rgb(floats))[..., 0].tolist() == [[0, 255, 64]]
    big = Image.fromarray(np.array([[0.0, 300.0, 20.4]], np.float32), "F")  # 0..255 scale, clipped
    assert np.asarray(load_rgb(big))[..., 0].tolist() == [[0, 255, 20]]
    assert np.asarray(load_rgb(np.array([[0, 65535]], np.uint16)))[..., 0].tolist() == [[0, 255]]


def test_max_pixels_is_read_at_call_time(tmp_path, monkeypatch):
    import hf_spurious.images as images

    path = tmp_path / "s.png"
    Image.new("RGB", (10, 10)).save(path)
    monkeypatch.setattr(images, "MAX_PIXELS", 99)
    with pytest.raises(images.ImageTooLargeError, match="10x10 = 100 pixels"):
        load_rgb(path)
    monkeypatch.setattr(images, "MAX_PIXELS", 100)
    assert load_rgb(path).size == (10, 10)
