"""Record validation: boxes fitted or rejected, unknown classes and empty captions rejected, groups."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hf_spurious.records import ClassificationRecord, ObjectBox, RecordError, SceneRecord, fit_box


def _scene(**overrides):
    kw = dict(
        image_id=7,
        image_path="img.png",
        width=100,
        height=50,
        objects=[([10, 10, 20, 20], "dog"), ([50, 5, 10, 10], "frisbee")],
        captions=["a dog and a frisbee"],
        split="test",
        known_classes={"dog", "frisbee"},
    )
    kw.update(overrides)
    return SceneRecord.build(**kw)


def test_build_keeps_valid_annotations():
    rec = _scene()
    assert rec.image_id == "7" and rec.classes == {"dog", "frisbee"}
    assert rec.objects[0] == ObjectBox((10.0, 10.0, 20.0, 20.0), "dog")
    assert rec.objects[0].xyxy == (10.0, 10.0, 30.0, 30.0)


def test_boxes_partly_outside_are_clipped_or_rejected():
    rec = _scene(objects=[([90, 40, 20, 20], "dog"), ([-5, -5, 10, 10], "frisbee")])
    assert [o.bbox for o in rec.objects] == [(90.0, 40.0, 10.0, 10.0), (0.0, 0.0, 5.0, 5.0)]
    with pytest.raises(RecordError, match=r"image '7'.*extends outside.*box_policy='clip'"):
        _scene(objects=[([90, 40, 20, 20], "dog")], box_policy="reject")


@pytest.mark.parametrize(
    ("box", "match"),
    [
        ([200, 10, 5, 5], "outside the 100x50 image"),
        ([10, 10, -1, 5], "negative size"),
        ([float("nan"), 1, 2, 2], "non-finite"),
        ([1, 2, 3], "needs 4 numbers"),
        ([10, 10, 0, 5], "outside"),
    ],
)
def test_bad_boxes_are_rejected_naming_the_image(box, match):
    with pytest.raises(RecordError, match=match) as err:
        _scene(objects=[(box, "dog")])
    assert "image '7'" in str(err.value)


def test_unknown_class_and_empty_caption_are_rejected():
    with pytest.raises(RecordError, match=r"image '7': unknown class 'cat'"):
        _scene(objects=[([1, 1, 5, 5], "cat")])
    for captions in (["fine", "  "], [""]):
        with pytest.raises(RecordError, match=r"image '7': caption \d is empty"):
            _scene(captions=captions)
    with pytest.raises(RecordError, match="not positive"):
        _scene(width=0, objects=[])


def test_direct_construction_refuses_boxes_outside_and_phrase_count_mismatch():
    with pytest.raises(RecordError, match="extends outside"):
        SceneRecord("1", "p", 10, 10, (ObjectBox((5.0, 5.0, 10.0, 2.0), "dog"),), ("a dog",), "train")
    with pytest.raises(RecordError, match="2 phrase lists for 1 captions"):
        SceneRecord("1", "p", 10, 10, (), ("a dog",), "train", caption_phrases=((), ()))


@given(
    x=st.floats(-50, 150),
    y=st.floats(-50, 100),
    w=st.floats(0, 120),
    h=st.floats(0, 120),
)
def test_fit_box_matches_a_naive_intersection(x, y, w, h):
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, 100), min(y + h, 50)
    if x1 <= x0 or y1 <= y0:
        with pytest.raises(RecordError):
            fit_box([x, y, w, h], 100, 50, where="item")
        return
    assert fit_box([x, y, w, h], 100, 50, where="item") == pytest.approx((x0, y0, x1 - x0, y1 - y0))


def test_classification_groups_and_validation():
    groups = [
        ClassificationRecord(str(i), "p", label, place, "train").group
        for i, (label, place) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)])
    ]
    assert groups == [
        0,
        1,
        2,
        3,
    ]  # Waterbirds: landbird/land, landbird/water, waterbird/land, waterbird/water
    with pytest.raises(RecordError, match=r"image 'x': attribute 2 outside \[0, 2\)"):
        ClassificationRecord("x", "p", 0, 2, "train")
    with pytest.raises(RecordError, match="negative"):
        ClassificationRecord("x", "p", -1, 0, "train")
