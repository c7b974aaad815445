"""Inpainting backends: unmasked pixels unchanged, fills equal their definitions, diffusers from a local dir."""

from __future__ import annotations

import numpy as np
import pytest

from hf_spurious.synthesis.inpaint import (
    DiffusersInpainter,
    InpaintError,
    context_window,
    get_inpainter,
)


def _scene(seed: int, h: int = 48, w: int = 64):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w), dtype=bool)
    r, c = rng.integers(0, h - 10), rng.integers(0, w - 10)
    mask[r : r + rng.integers(3, 10), c : c + rng.integers(3, 10)] = True
    mask[rng.random((h, w)) > 0.98] = True  # scattered pixels too
    return image, mask


FILL_SPECS = ["opencv", "opencv:telea", "opencv:ns", "zero", "mean", "blur"]


@pytest.mark.parametrize("spec", FILL_SPECS)
def test_pixels_outside_mask_unchanged_and_inside_filled(spec):
    inp = get_inpainter(spec)
    pairs = [_scene(s) for s in range(4)]
    images, masks = [p[0] for p in pairs], [p[1] for p in pairs]
    originals = [im.copy() for im in images]
    out = inp.inpaint(images, masks)
    assert len(out) == 4
    for im, orig, m, o in zip(images, originals, masks, out):
        np.testing.assert_array_equal(im, orig)  # inputs untouched
        assert o.dtype == np.uint8 and o.shape == im.shape
        np.testing.assert_array_equal(o[~m], im[~m])
        assert not np.array_equal(o[m], im[m])  # random pixels: any fill changes them


def test_fill_definitions():
    image, mask = _scene(7)
    zero = get_inpainter("zero").inpaint([image], [mask])[0]
    assert (zero[mask] == 0).all()
    mean = get_inpainter("mean").inpaint([image], [mask])[0]
    expected = [round(float(np.mean(image[..., ch][mask]))) for ch in range(3)]
    assert (mean[mask] == np.array(expected, dtype=np.uint8)).all()
    # blur: a constant image stays constant; inside a region the fill is a weighted mean of neighbours
    const = np.full((20, 20, 3), 77, np.uint8)
    m = np.zeros((20, 20), bool)
    m[5:10, 5:10] = True
    assert (get_inpainter("blur", sigma=2.0).inpaint([const], [m])[0] == 77).all()
    stripes = np.zeros((20, 20, 3), np.uint8)
    stripes[:, ::2] = 255
    blurred = get_inpainter("blur", sigma=3.0).inpaint([stripes], [m])[0]
    assert np.abs(blurred[m].astype(int) - 128).max() < 20
    # opencv on a flat colour with a hole gives the colour back
    flat = np.full((30, 30, 3), (10, 200, 90), np.uint8)
    hole = np.zeros((30, 30), bool)
    hole[10:20, 10:20] = True
    spoiled = flat.copy()
    spoiled[hole] = 0
    for spec in ("opencv:telea", "opencv:ns"):
        fixed = get_inpainter(spec).inpaint([spoiled], [hole])[0]
        assert np.abs(fixed.astype(int) - flat.astype(int)).max() <= 2


def test_empty_mask_and_bad_input():
    image, _ = _scene(1)
    empty = np.zeros(image.shape[:2], bool)
    for spec in FILL_SPECS:
        np.testing.assert_array_equal(get_inpainter(spec).inpaint([image], [empty])[0], image)
    with pytest.raises(InpaintError, match="mask 0"):
        get_inpainter("zero").inpaint([image], [np.zeros((3, 3), bool)])
    with pytest.raises(InpaintError, match="image 0"):
        get_inpainter("zero").inpaint([image.astype(np.float32)], [empty])
    with pytest.raises(InpaintError, match="2 images but 1 masks"):
        get_inpainter("zero").inpaint([image, image], [empty])
    with pytest.raises(ValueError, match="unknown inpainter"):
        get_inpainter("deepfill")
    with pytest.raises(ValueError, match="telea"):
        get_inpainter("opencv:fast")
    with pytest.raises(ValueError, match="needs a model"):
        get_inpainter("diffusers")
    with pytest.raises(InpaintError, match="world_dir"):
        get_inpainter("oracle").inpaint([image], [empty], contexts=[{}])


def test_context_window_contains_mask_and_has_native_size():
    rng = np.random.default_rng(0)
    for _ in range(200):
        h, w = rng.integers(20, 120, 2)
        m = np.zeros((h, w), bool)
        r0, c0 = rng.integers(0, h), rng.integers(0, w)
        m[r0 : r0 + rng.integers(1, h), c0 : c0 + rng.integers(1, w)] = True
        native = int(rng.integers(8, 80))
        wr0, wc0, wr1, wc1 = context_window(m, native, context=0.25)
        assert 0 <= wr0 < wr1 <= h and 0 <= wc0 < wc1 <= w
        assert m[wr0:wr1, wc0:wc1].sum() == m.sum()  # the whole mask is inside
        assert wr1 - wr0 >= min(native, h) and wc1 - wc0 >= min(native, w)


@pytest.fixture
def one_torch_thread():
    """Tiny diffusers runs are ~10x faster on one thread when the 2 shared cores are busy."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def diffusers_inpainter(tiny_model_dir):
    return get_inpainter(f"diffusers:{tiny_model_dir('inpaint')}", steps=2, batch_size=2)


def test_diffusers_from_local_dir_keeps_unmasked_pixels_and_is_seeded(diffusers_inpainter, one_torch_thread):
    inp = diffusers_inpainter
    assert isinstance(inp, DiffusersInpainter) and inp.resolution == 64
    pairs = [_scene(s, h=80, w=100) for s in range(3)]  # larger than native: crop + paste back
    images, masks = [p[0] for p in pairs], [p[1] for p in pairs]
    out = inp.inpaint(images, masks, seeds=[1, 2, 3])
    for im, m, o in zip(images, masks, out):
        np.testing.assert_array_equal(o[~m], im[~m])
        assert not np.array_equal(o[m], im[m])
    # per-image seeds: the same image gives the same result whatever its batch neighbours
    again = inp.inpaint([images[2]], [masks[2]], seeds=[3])[0]
    np.testing.assert_array_equal(again, out[2])
    other = inp.inpaint([images[2]], [masks[2]], seeds=[4])[0]
    assert not np.array_equal(other, out[2])


def test_diffusers_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(InpaintError, match="cannot load"):
        get_inpainter(f"diffusers:{tmp_path / 'nothing'}")


@pytest.mark.parametrize("spec", ["opencv:telea", "opencv:ns", "blur"])
def test_cropped_fills_equal_whole_image_reference(spec):
    """The backends work on the mask's box plus a margin; under the mask that must equal cv2 on the whole image."""
    import math

    import cv2

    rng = np.random.default_rng(1)
    for _ in range(25):
        h, w = (int(v) for v in rng.integers(30, 100, 2))
        image = cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (5, 5), 2)
        mask = np.zeros((h, w), bool)
        for _ in range(int(rng.integers(1, 4))):
            r, c = rng.integers(0, h), rng.integers(0, w)
            mask[r : r + rng.integers(2, 30), c : c + rng.integers(2, 30)] = True
        m8 = mask.astype(np.uint8) * 255
        if spec == "blur":
            reference = cv2.GaussianBlur(
                image, (2 * math.ceil(3 * 2.0) + 1,) * 2, 2.0, 2.0, borderType=cv2.BORDER_REFLECT
            )
            got = get_inpainter("blur", sigma=2.0).inpaint([image], [mask])[0]
        else:
            flag = cv2.INPAINT_TELEA if spec.endswith("telea") else cv2.INPAINT_NS
            reference = cv2.inpaint(image, m8, 3.0, flag)
            got = get_inpainter(spec, radius=3.0).inpaint([image], [mask])[0]
        np.testing.assert_array_equal(got[mask], reference[mask])


def test_base_class_restores_every_unmasked_pixel_even_when_a_fill_changes_them():
    """A fill that rewrites the whole image still leaves the unmasked pixels (the restore works on the mask's
    box; scattered mask pixels widen that box) and puts its own pixels under the mask."""
    from hf_spurious.synthesis.inpaint import Inpainter

    class Noise(Inpainter):
        spec = "noise"

        def _fill(self, image, mask):
            return np.random.default_rng(1).integers(0, 256, image.shape, dtype=np.uint8)

    for seed in range(6):
        image, mask = _scene(seed)
        noise = Noise()._fill(image, mask)
        out = Noise().inpaint([image], [mask])[0]
        expected = np.where(mask[..., None], noise, image)  # naive reference, whole image
        np.testing.assert_array_equal(out, expected)
    empty = np.zeros(image.shape[:2], bool)
    np.testing.assert_array_equal(Noise().inpaint([image], [empty])[0], image)


def test_the_options_table_matches_every_inpainter_signature():
    """The checked options of each inpainter are exactly its constructor's keyword parameters."""
    import inspect

    from hf_spurious.synthesis import inpaint
    from hf_spurious.synthesis.inpaint_options import OPTIONS

    classes = {
        "opencv": inpaint.OpenCVInpainter,
        "zero": inpaint.ZeroFill,
        "mean": inpaint.MeanFill,
        "blur": inpaint.BlurFill,
        "oracle": inpaint.OracleInpainter,
        "diffusers": inpaint.DiffusersInpainter,
    }
    for kind, cls in classes.items():
        named = inspect.signature(cls.__init__).parameters.values()
        params = {p.name for p in named if p.kind == p.POSITIONAL_OR_KEYWORD} - {"self", "model"}
        assert set(OPTIONS[kind]) == params, kind


def test_inpainter_options_are_checked_and_filtered():
    from hf_spurious.synthesis.inpaint_options import check_inpainter_options, options_for

    assert options_for("opencv:ns", {"steps": 30, "radius": 5}) == ({"radius": 5}, ["steps"])
    assert options_for("zero", {"sigma": 2}) == ({}, ["sigma"])
    check_inpainter_options(
        "diffusers:x", {"steps": 30, "strength": 0.9, "dtype": "fp16", "resolution": None}
    )
    for spec, options, says in [
        ("opencv", {"radius": "big"}, "radius"),
        ("opencv", {"radius": float("nan")}, "radius"),
        ("blur", {"ksize": 4}, "ksize"),
        ("blur", {"sigma": -1}, "sigma"),
        ("diffusers:x", {"steps": 2.5}, "steps"),
        ("diffusers:x", {"safety_checker": "no"}, "safety_checker"),
        ("mean", {"radius": 3}, "radius"),
    ]:
        with pytest.raises(ValueError, match=says):
            check_inpainter_options(spec, options)
        with pytest.raises(ValueError, match=says):
            get_inpainter(spec, **options)
