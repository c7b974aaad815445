"""The removal planner against a naive per-pixel reference and hand-worked cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hf_spurious.synthesis.planner import (
    ALPHA1_KEEP,
    ALPHA3_SIZE,
    FEWER_THAN_TWO_CLASSES,
    MASK_COVERS_IMAGE,
    NOTHING_KEPT,
    OK,
    TARGET_ABSENT,
    check_alphas,
    dilate_mask,
    explain_removal,
    explain_removals,
    plan_removal,
)

# ---------------------------------------------------------------- naive reference (Python sets of pixels)


def ref_pixels(box, w, h):
    x, y, bw, bh = box
    return {
        (r, c)
        for r in range(max(math.floor(y), 0), min(math.ceil(y + bh), h))
        for c in range(max(math.floor(x), 0), min(math.ceil(x + bw), w))
    }


def ref_eval(target, boxes, classes, w, h, a1=0.4, a2=0.8, a3=0.7):
    """Spec §1.2 steps 3-5 written out literally; returns (removed set, kept set) or a failure string."""
    union = {}
    for b, c in zip(boxes, classes):
        union.setdefault(c, set()).update(ref_pixels(b, w, h))
    b_r = union[target]
    removed = {target} | {c for c in union if c != target and len(b_r & union[c]) / len(union[c]) > a2}
    kept = set(union) - removed
    if not kept:
        return "nothing"
    b_prime = set().union(*(union[c] for c in removed))
    for c in kept:
        if len(b_prime & union[c]) / len(union[c]) >= a1:
            return "a1"
    if len(b_prime) / (w * h) >= a3:
        return "a3"
    return removed, kept, b_prime


boxes_strategy = st.lists(
    st.tuples(
        st.floats(0, 11, allow_nan=False),
        st.floats(0, 9, allow_nan=False),
        st.floats(0.5, 12, allow_nan=False),
        st.floats(0.5, 10, allow_nan=False),
        st.sampled_from(["a", "b", "c", "d"]),
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=300, deadline=None)
@given(objs=boxes_strategy, a1=st.sampled_from([0.2, 0.4, 0.6]), a2=st.sampled_from([0.5, 0.8, 1.0]))
def test_matches_naive_reference_for_every_target(objs, a1, a2):
    w, h = 12, 10
    boxes = [o[:4] for o in objs]
    classes = [o[4] for o in objs]
    if len(set(classes)) < 2:
        assert plan_removal(boxes, classes, (w, h)) is None
        return
    for target in sorted(set(classes)):
        expected = ref_eval(target, boxes, classes, w, h, a1=a1, a2=a2)
        plan = plan_removal(boxes, classes, (w, h), target_class=target, alpha1=a1, alpha2=a2)
        if isinstance(expected, str):
            assert plan is None
            continue
        removed, kept, b_prime = expected
        assert plan is not None
        assert plan.removed_classes[0] == target
        assert set(plan.removed_classes) == removed and set(plan.kept_classes) == kept
        assert {(int(r), int(c)) for r, c in zip(*np.nonzero(plan.mask))} == b_prime
        assert sorted(plan.removed_boxes) == sorted(
            tuple(float(v) for v in b) for b, c in zip(boxes, classes) if c in removed
        )


@settings(max_examples=100, deadline=None)
@given(objs=boxes_strategy, seed=st.integers(0, 2**31))
def test_random_choice_is_the_first_valid_in_the_seeded_order(objs, seed):
    w, h = 12, 10
    boxes, classes = [o[:4] for o in objs], [o[4] for o in objs]
    present = sorted(set(classes))
    plan = plan_removal(boxes, classes, (w, h), rng=np.random.default_rng(seed))
    if len(present) < 2:
        assert plan is None
        return
    order = [present[i] for i in np.random.default_rng(seed).permutation(len(present))]
    valid = [c for c in order if not isinstance(ref_eval(c, boxes, classes, w, h), str)]
    if not valid:
        assert plan is None
    else:
        assert plan is not None and plan.target_class == valid[0]
        # same seed, same answer; input order does not matter
        again = plan_removal(boxes[::-1], classes[::-1], (w, h), rng=seed)
        assert again is not None and again.target_class == plan.target_class


def test_hand_single_class_removal():
    # dog at left, frisbee small at right: remove the frisbee, dog kept untouched
    boxes = [(0, 0, 50, 50), (70, 10, 10, 10)]
    plan = plan_removal(boxes, ["dog", "frisbee"], (100, 100), target_class="frisbee")
    assert plan.removed_classes == ("frisbee",) and plan.kept_classes == ("dog",)
    assert plan.mask.sum() == 100 and plan.mask[10:20, 70:80].all()
    assert plan.removed_boxes == ((70.0, 10.0, 10.0, 10.0),)


def test_hand_alpha2_extension_and_alpha1_boundaries():
    # person box 0..40 x 0..40 (1600 px); hat 10x10 fully inside -> ratio 1.0 > 0.8 -> removed too
    # car elsewhere kept
    boxes = [(0, 0, 40, 40), (5, 5, 10, 10), (60, 60, 20, 20)]
    plan = plan_removal(boxes, ["person", "tie", "car"], (100, 100), target_class="person")
    assert plan.removed_classes == ("person", "tie") and plan.kept_classes == ("car",)
    # ratio exactly 0.8 does NOT join (strict >) and then fails alpha1 (0.8 >= 0.4)
    boxes = [(0, 0, 40, 40), (32, 0, 10, 10)]  # tie 10x10: 8 columns inside -> 80/100 = 0.8
    ex = explain_removal(
        [*boxes, (60, 60, 5, 5)], ["person", "tie", "car"], (100, 100), target_class="person"
    )
    assert ex.plan is None and ex.reason == ALPHA1_KEEP
    assert ex.ratios["person"]["tie"] == pytest.approx(0.8)
    # alpha1 boundary: exactly 0.4 overlap is rejected (strict <), 0.3 accepted
    boxes = [(0, 0, 40, 40), (36, 0, 10, 10)]  # 4 of 10 columns inside -> 0.4
    assert plan_removal(boxes, ["person", "car"], (100, 100), target_class="person") is None
    boxes = [(0, 0, 40, 40), (37, 0, 10, 10)]  # 0.3
    assert plan_removal(boxes, ["person", "car"], (100, 100), target_class="person") is not None


def test_hand_alpha1_uses_union_of_removed_boxes():
    # kept car overlaps the removed person by 0.3 and the removed tie (joined via alpha2) by 0.2 more:
    # against B^r alone 0.3 < 0.4 passes; against B' = person ∪ tie 0.5 fails.
    boxes = [(0, 0, 40, 40), (30, 30, 12, 10), (37, 30, 10, 10)]
    # tie cols 30..41 rows 30..39: inside person cols 30..39 -> 100/120 = 0.833 > 0.8 -> removed
    # car cols 37..46: person covers cols 37..39 (0.3); tie adds 40..41 (0.2) -> B' covers 0.5
    ex = explain_removal(boxes, ["person", "tie", "car"], (100, 100), target_class="person")
    assert ex.ratios["person"]["car"] == pytest.approx(0.3)
    assert ex.plan is None and ex.reason == ALPHA1_KEEP


def test_hand_alpha3_and_nothing_kept():
    boxes = [(0, 0, 90, 80), (95, 95, 5, 5)]  # 7200/10000 = 0.72 >= 0.7
    ex = explain_removal(boxes, ["bed", "cat"], (100, 100), target_class="bed")
    assert ex.reason == ALPHA3_SIZE
    boxes = [(0, 0, 60, 60), (10, 10, 10, 10)]  # the only other class inside -> nothing kept
    assert explain_removal(boxes, ["bed", "cat"], (100, 100), target_class="bed").reason == NOTHING_KEPT
    # removing the cat instead is fine (bed loses 100/3600)
    assert plan_removal(boxes, ["bed", "cat"], (100, 100), target_class="cat").removed_classes == ("cat",)


def test_eligibility_and_target_absent_and_bad_boxes():
    assert explain_removal([(0, 0, 5, 5)] * 2, ["dog", "dog"], (10, 10)).reason == FEWER_THAN_TWO_CLASSES
    assert explain_removal([], [], (10, 10)).reason == FEWER_THAN_TWO_CLASSES
    ex = explain_removal([(0, 0, 2, 2), (5, 5, 2, 2)], ["a", "b"], (10, 10), target_class="zebra")
    assert ex.reason == TARGET_ABSENT and ex.plan is None
    with pytest.raises(ValueError, match="covers no pixel"):
        plan_removal([(0, 0, 0, 5), (1, 1, 2, 2)], ["a", "b"], (10, 10))
    with pytest.raises(ValueError, match="must align"):
        plan_removal([(0, 0, 1, 1)], ["a", "b"], (10, 10))
    with pytest.raises(ValueError, match="invalid box"):
        plan_removal([(0, 0, float("nan"), 1), (1, 1, 2, 2)], ["a", "b"], (10, 10))


def test_all_candidates_failing_reports_common_reason():
    boxes = [(0, 0, 10, 10), (6, 0, 10, 10)]  # each covers 0.4 of the other -> alpha1 both ways
    ex = explain_removal(boxes, ["a", "b"], (50, 50), rng=0)
    assert ex.plan is None and ex.reason == ALPHA1_KEEP and set(ex.per_class) == {"a", "b"}


def ref_dilate(mask, p):
    h, w = mask.shape
    out = np.zeros_like(mask)
    for r, c in zip(*np.nonzero(mask)):
        out[max(r - p, 0) : min(r + p + 1, h), max(c - p, 0) : min(c + p + 1, w)] = True
    return out


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 1000), p=st.integers(0, 3))
def test_dilation_matches_reference(seed, p):
    mask = np.random.default_rng(seed).random((9, 11)) > 0.9
    np.testing.assert_array_equal(dilate_mask(mask, p), ref_dilate(mask, p))


def test_dilated_plan_mask_and_mask_covering_everything():
    boxes = [(2, 2, 3, 3), (8, 8, 2, 2)]
    plan = plan_removal(boxes, ["a", "b"], (10, 10), target_class="a", dilation=1)
    assert plan.mask.sum() == 25 and plan.mask[1:6, 1:6].all()
    # dilation so large that the mask would cover the whole image -> counted reason
    ex = explain_removal(boxes, ["a", "b"], (10, 10), target_class="a", dilation=20)
    assert ex.plan is None and ex.reason == MASK_COVERS_IMAGE


def test_segmentation_polygons_replace_boxes():
    # a triangle inside a big box: by boxes the kept class overlaps too much; by polygons it does not
    boxes = [(0, 0, 20, 20), (10, 0, 10, 10)]
    tri = [[0, 0, 0, 19, 19, 19]]  # lower-left triangle (row >= col) of the first box
    seg_b = [[10, 0, 19, 0, 19, 9, 10, 9]]  # the full second box as a polygon
    assert plan_removal(boxes, ["a", "b"], (20, 20), target_class="a") is None
    plan = plan_removal(
        boxes, ["a", "b"], (20, 20), target_class="a", segmentations=[tri, seg_b], use_segmentation=True
    )
    assert plan is not None and plan.reason == OK
    assert plan.mask[0, 0] and plan.mask[15, 1] and not plan.mask[0, 19] and not plan.mask[2, 12]
    assert plan.mask.sum() < 400 / 2 + 25
    # not asked -> boxes are used even when polygons are given
    assert plan_removal(boxes, ["a", "b"], (20, 20), target_class="a", segmentations=[tri, seg_b]) is None


@settings(max_examples=100, deadline=None)
@given(objs=boxes_strategy, seed=st.integers(0, 2**31))
def test_later_valid_plans_follow_the_seeded_order(objs, seed):
    """Issue 12 item 3: the first plan and then every later valid class, in the seeded order (naive reference)."""
    w, h = 12, 10
    boxes, classes = [o[:4] for o in objs], [o[4] for o in objs]
    present = sorted(set(classes))
    first, rest = explain_removals(boxes, classes, (w, h), rng=np.random.default_rng(seed))
    got = ([first.plan] if first.plan is not None else []) + list(rest)
    if len(present) < 2:
        assert got == []
        return
    order = [present[i] for i in np.random.default_rng(seed).permutation(len(present))]
    expected = [c for c in order if not isinstance(ref_eval(c, boxes, classes, w, h), str)]
    assert [p.target_class for p in got] == expected
    for plan in got:
        removed, kept, b_prime = ref_eval(plan.target_class, boxes, classes, w, h)
        assert set(plan.removed_classes) == removed and set(plan.kept_classes) == kept
        assert {(int(r), int(c)) for r, c in zip(*np.nonzero(plan.mask))} == b_prime


def test_hand_later_plans_and_forced_target():
    # three separate small objects: every class is valid, so the walk yields all three, first one first
    boxes, classes = [(0, 0, 10, 10), (40, 0, 10, 10), (0, 40, 10, 10)], ["dog", "frisbee", "person"]
    first, rest = explain_removals(boxes, classes, (64, 64), rng=None)  # sorted order without rng
    assert first.plan.target_class == "dog" and [p.target_class for p in rest] == ["frisbee", "person"]
    first, rest = explain_removals(boxes, classes, (64, 64), target_class="person")
    assert first.plan.target_class == "person" and list(rest) == []


@pytest.mark.parametrize("bad", [0, -0.1, 1.5, 40, float("nan"), float("inf"), "0.4", None, True])
def test_alphas_outside_the_unit_interval_are_named(bad):
    for name in ("alpha1", "alpha2", "alpha3"):
        values = {"alpha1": 0.4, "alpha2": 0.8, "alpha3": 0.7, name: bad}
        with pytest.raises(ValueError, match=name):
            check_alphas(**values)
        with pytest.raises(ValueError, match=name):
            plan_removal([(0, 0, 5, 5), (8, 8, 2, 2)], ["a", "b"], (12, 12), **values)
    check_alphas(1, 1.0, 0.5)  # 1 switches a rule off: allowed


def test_a_huge_dilation_is_clamped_not_allocated():
    """A reach beyond the image equals a reach of the image size (every pixel is within it): the answer of
    a 10^6 px dilation is the naive one, without a (2*10^6+1)^2 kernel."""
    mask = np.zeros((30, 40), bool)
    mask[3, 5] = True
    out = dilate_mask(mask, 10**6)
    assert out.all()
    rows, cols = np.indices(mask.shape)
    naive = np.maximum(abs(rows - 3), abs(cols - 5)) <= 10**6
    np.testing.assert_array_equal(out, naive)
    assert not dilate_mask(np.zeros((30, 40), bool), 10**6).any()
