"""Core metrics against naive loop references (hypothesis), hand-worked numbers and bad-input errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from hf_spurious.metrics import (
    WATERBIRDS_GROUP_NAMES,
    WATERBIRDS_TRAIN_GROUP_COUNTS,
    accuracy_discrepancy,
    aiou,
    aiou_batch,
    aiou_summary,
    class_matrix,
    count_relevant,
    group_accuracies,
    mutual_information,
    odmap_at_k,
    rank_spurious_attributes,
    recall_at_k,
    recall_at_k_from_similarity,
    recall_both_directions,
    removed_mention_rate_at_k,
    retrieval_recall,
    soft_iou,
    top_k_indices,
)

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CLASSES = ("person", "dog", "frisbee", "car")


# ----------------------------------------------------------------------------- naive references
def naive_relevant(mentioned: set, removed: set, present: set, rule: str) -> bool:
    if any(c in mentioned for c in removed):
        return False
    if rule == "any":
        return any(c in mentioned for c in present)
    return len(present) > 0 and all(c in mentioned for c in present)


def naive_odmap(retrieved, gallery, removed, present, k, rule="any", normalizer="k"):
    """Returns (percent, list of per-query AP)."""
    aps = []
    for q, ranking in enumerate(retrieved):
        total_relevant = sum(naive_relevant(g, removed[q], present[q], rule) for g in gallery)
        hits, acc = 0, 0.0
        for i in range(k):
            if naive_relevant(gallery[ranking[i]], removed[q], present[q], rule):
                hits += 1
                acc += hits / (i + 1)
        denom = k if normalizer == "k" else min(k, total_relevant)
        aps.append(acc / denom if denom > 0 else 0.0)
    return 100.0 * sum(aps) / len(aps), aps


def naive_mention_rate(retrieved, gallery, removed, k):
    n = 0
    for q, ranking in enumerate(retrieved):
        if any(c in gallery[g] for g in ranking[:k] for c in removed[q]):
            n += 1
    return 100.0 * n / len(retrieved)


def naive_ranking(scores_row):
    return sorted(range(len(scores_row)), key=lambda j: (-scores_row[j], j))


# ----------------------------------------------------------------------------- strategies
class_sets = st.sets(st.sampled_from(CLASSES), max_size=len(CLASSES))


@st.composite
def odmap_cases(draw):
    num_gallery = draw(st.integers(1, 14))
    gallery = draw(st.lists(class_sets, min_size=num_gallery, max_size=num_gallery))
    num_queries = draw(st.integers(1, 6))
    depth = draw(st.integers(1, num_gallery))
    retrieved = [draw(st.permutations(range(num_gallery)))[:depth] for _ in range(num_queries)]
    removed = draw(st.lists(class_sets, min_size=num_queries, max_size=num_queries))
    present = draw(st.lists(class_sets, min_size=num_queries, max_size=num_queries))
    ks = draw(st.lists(st.integers(1, depth), min_size=1, max_size=3, unique=True))
    return gallery, retrieved, removed, present, ks


# ----------------------------------------------------------------------------- ODmAP
@SETTINGS
@given(odmap_cases(), st.sampled_from(["any", "all"]), st.sampled_from(["k", "min_k_r"]), st.booleans())
def test_odmap_matches_naive(case, rule, normalizer, as_matrix):
    gallery, retrieved, removed, present, ks = case
    if as_matrix:
        matrix, _ = class_matrix(gallery, CLASSES)
        result = odmap_at_k(
            np.array(retrieved),
            matrix,
            removed,
            present,
            k=ks,
            present_rule=rule,
            normalizer=normalizer,
            class_names=CLASSES,
            return_per_query=True,
        )
    else:
        result = odmap_at_k(
            retrieved,
            gallery,
            removed,
            present,
            k=ks,
            present_rule=rule,
            normalizer=normalizer,
            return_per_query=True,
        )
    for k in ks:
        expected, aps = naive_odmap(retrieved, gallery, removed, present, k, rule, normalizer)
        assert result[f"odmap@{k}"] == pytest.approx(expected, abs=1e-9)
        np.testing.assert_allclose(result[f"ap@{k}"], aps, atol=1e-12)


@SETTINGS
@given(odmap_cases(), st.sampled_from(["any", "all"]))
def test_count_relevant_matches_naive_and_feeds_min_k_r(case, rule):
    gallery, retrieved, removed, present, ks = case
    counts = count_relevant(gallery, removed, present, present_rule=rule, class_names=CLASSES)
    expected = [
        sum(naive_relevant(g, removed[q], present[q], rule) for g in gallery) for q in range(len(removed))
    ]
    assert counts.tolist() == expected
    given_counts = odmap_at_k(
        retrieved,
        gallery,
        removed,
        present,
        k=ks,
        present_rule=rule,
        normalizer="min_k_r",
        class_names=CLASSES,
        relevant_counts=counts,
    )
    computed = odmap_at_k(
        retrieved,
        gallery,
        removed,
        present,
        k=ks,
        present_rule=rule,
        normalizer="min_k_r",
        class_names=CLASSES,
    )
    assert given_counts == computed


@SETTINGS
@given(odmap_cases())
def test_removed_mention_rate_matches_naive(case):
    gallery, retrieved, removed, _, ks = case
    result = removed_mention_rate_at_k(retrieved, gallery, removed, k=ks, class_names=CLASSES)
    for k in ks:
        assert result[f"removed_mention_rate@{k}"] == pytest.approx(
            naive_mention_rate(retrieved, gallery, removed, k)
        )


def test_odmap_hand_worked():
    # gallery: 0 {person}, 1 {dog}, 2 {person, dog}, 3 {person}, 4 {}, 5 {frisbee}
    gallery = [{"person"}, {"dog"}, {"person", "dog"}, {"person"}, set(), {"frisbee"}]
    # relevance pattern [1, 0, 1] at k=3 -> AP = (1/3)(1 + 2/3) = 0.5556
    res = odmap_at_k([[0, 1, 3]], gallery, [{"dog"}], [{"person"}], k=(1, 2, 3), return_per_query=True)
    assert res["odmap@3"] == pytest.approx(100 * (1 + 2 / 3) / 3)
    assert round(res["odmap@3"], 2) == 55.56
    assert res["odmap@1"] == 100.0 and res["odmap@2"] == 50.0
    assert res["relevance"].tolist() == [[True, False, True]]
    # R_q = 2 (captions 0 and 3): min(k, R) normaliser -> (1 + 2/3) / 2
    res = odmap_at_k([[0, 1, 3]], gallery, [{"dog"}], [{"person"}], k=3, normalizer="min_k_r")
    assert res["odmap@3"] == pytest.approx(100 * (1 + 2 / 3) / 2)
    # two queries: pattern [0, 1, 1] -> (1/3)(1/2 + 2/3); a query with no relevant item -> 0
    res = odmap_at_k([[1, 0, 3], [4, 5, 1]], gallery, [{"dog"}, {"car"}], [{"person"}, {"person"}], k=3)
    assert res["odmap@3"] == pytest.approx(100 * ((0.5 + 2 / 3) / 3 + 0) / 2)
    # "all" rule: caption 2 names both person and dog; with nothing removed it is relevant only under "all"
    res_all = odmap_at_k([[2, 0]], gallery, [set()], [{"person", "dog"}], k=1, present_rule="all")
    res_none = odmap_at_k([[0, 2]], gallery, [set()], [{"person", "dog"}], k=1, present_rule="all")
    assert (res_all["odmap@1"], res_none["odmap@1"]) == (100.0, 0.0)
    # empty present set: never relevant, under both rules
    assert odmap_at_k([[0, 3]], gallery, [set()], [set()], k=2, present_rule="all")["odmap@2"] == 0.0


def test_odmap_min_k_r_with_zero_relevant_is_zero_and_k_larger_than_r():
    gallery = [{"person"}, {"dog"}, {"dog"}, {"dog"}]
    res = odmap_at_k(
        [[1, 2, 0, 3]], gallery, [{"dog"}], [{"car"}], k=4, normalizer="min_k_r", return_per_query=True
    )
    assert res["odmap@4"] == 0.0 and res["relevant_counts"].tolist() == [0]
    # one relevant caption (R=1 < k=4) found at rank 3: min_k_r -> 1/3, k -> (1/3)/4
    res = odmap_at_k([[1, 2, 0, 3]], gallery, [{"dog"}], [{"person"}], k=4, normalizer="min_k_r")
    assert res["odmap@4"] == pytest.approx(100 / 3)
    assert odmap_at_k([[1, 2, 0, 3]], gallery, [{"dog"}], [{"person"}], k=4)["odmap@4"] == pytest.approx(
        100 / 12
    )


def test_odmap_accepts_torch_and_ignores_extra_columns():
    gallery = [{"person"}, {"dog"}, {"person"}]
    a = odmap_at_k(torch.tensor([[2, 1, 0]]), gallery, [{"dog"}], [{"person"}], k=2)
    b = odmap_at_k([[2, 1]], gallery, [{"dog"}], [{"person"}], k=2)
    assert a == b == {"odmap@2": 50.0}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"k": 0}, "positive"),
        ({"k": (1, -2)}, "positive"),
        ({"k": 4}, "K=3"),
        ({"retrieved": [[0, 1, 9]]}, "outside"),
        ({"retrieved": [[0, 0, 1]]}, "same item twice"),
        ({"retrieved": [[0, 1, float("nan")]]}, "NaN"),
        ({"removed_classes": [{"dog"}, {"dog"}]}, "removed_classes"),
        ({"present_classes": [{"zebra"}]}, "unknown class 'zebra'"),
        ({"removed_classes": ["dog"]}, "string"),
        ({"present_rule": "some"}, "present_rule"),
        ({"normalizer": "hits"}, "normalizer"),
        ({"relevant_counts": [0], "normalizer": "min_k_r"}, "relevant_counts"),
    ],
)
def test_odmap_bad_input(kwargs, message):
    args = {
        "retrieved": [[0, 1, 2]],
        "gallery_classes": [{"person"}, {"dog"}, {"person"}],
        "removed_classes": [{"dog"}],
        "present_classes": [{"person"}],
        "k": 3,
        "class_names": CLASSES,
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        odmap_at_k(**args)


def test_odmap_matrix_needs_class_names_and_bool():
    m = np.zeros((3, 4), dtype=bool)
    with pytest.raises(ValueError, match="class_names"):
        odmap_at_k([[0, 1]], m, [{"dog"}], [{"person"}], k=1)
    with pytest.raises(ValueError, match="columns"):
        odmap_at_k([[0, 1]], m, [{"dog"}], [{"person"}], k=1, class_names=CLASSES[:3])
    with pytest.raises(ValueError, match="bool"):
        odmap_at_k([[0, 1]], m.astype(int) * 3 + 2, [{"dog"}], [{"person"}], k=1, class_names=CLASSES)
    with pytest.raises(ValueError, match="no queries"):
        odmap_at_k(np.zeros((0, 2), dtype=int), m, [], [], k=1, class_names=CLASSES)


# ----------------------------------------------------------------------------- Recall@K
@st.composite
def recall_cases(draw):
    num_images = draw(st.integers(1, 8))
    extra = draw(st.lists(st.integers(0, num_images - 1), max_size=12))
    owner = list(range(num_images)) + extra  # every image has at least one caption
    order = draw(st.permutations(range(len(owner))))
    owner = [owner[i] for i in order]
    # small integer scores: lots of ties
    scores = draw(
        st.lists(
            st.lists(st.integers(0, 3), min_size=len(owner), max_size=len(owner)),
            min_size=num_images,
            max_size=num_images,
        )
    )
    ks = draw(st.lists(st.integers(1, min(num_images, len(owner))), min_size=1, max_size=3, unique=True))
    return np.array(scores, dtype=np.float64), np.array(owner), ks


@SETTINGS
@given(recall_cases())
def test_recall_from_similarity_matches_naive_with_ties(case):
    scores, owner, ks = case
    result = recall_at_k_from_similarity(scores, owner, k=ks)
    for k in ks:
        hits_i2t = [any(owner[c] == q for c in naive_ranking(scores[q])[:k]) for q in range(scores.shape[0])]
        hits_t2i = [owner[c] in naive_ranking(scores[:, c])[:k] for c in range(scores.shape[1])]
        assert result[f"i2t_r@{k}"] == pytest.approx(100 * sum(hits_i2t) / len(hits_i2t))
        assert result[f"t2i_r@{k}"] == pytest.approx(100 * sum(hits_t2i) / len(hits_t2i))
    assert result["rsum"] == pytest.approx(sum(v for key, v in result.items() if "_r@" in key))


@SETTINGS
@given(st.lists(st.lists(st.integers(-2, 2), min_size=1, max_size=9), min_size=1, max_size=5), st.data())
def test_top_k_indices_is_stable_descending(rows, data):
    width = min(len(r) for r in rows)
    scores = np.array([r[:width] for r in rows], dtype=np.float32)
    k = data.draw(st.integers(1, width))
    got = top_k_indices(scores, k, chunk_size=2)
    assert got.tolist() == [naive_ranking(list(row))[:k] for row in scores]


def test_recall_agrees_with_torchmetrics():
    from torchmetrics.retrieval import RetrievalHitRate, RetrievalRecall

    rng = np.random.default_rng(0)
    for trial in range(5):
        num_images = int(rng.integers(5, 30))
        owner = np.concatenate([np.arange(num_images), rng.integers(0, num_images, size=4 * num_images)])
        rng.shuffle(owner)
        # continuous (no ties) and positive: torchmetrics 1.9 RetrievalRecall ignores items with score <= 0
        sims = rng.random((num_images, owner.size)) + 0.01
        ours = recall_at_k_from_similarity(sims, owner, k=(1, 5))
        target = torch.from_numpy(owner[None, :] == np.arange(num_images)[:, None])
        preds = torch.from_numpy(sims)
        for k in (1, 5):
            # image -> text: hit if any caption in top k == torchmetrics' hit rate per image query
            i2t = RetrievalHitRate(top_k=k)(
                preds.flatten(),
                target.flatten(),
                indexes=torch.arange(num_images).repeat_interleave(owner.size),
            )
            # text -> image: one relevant image, so recall == hit rate
            t2i = RetrievalRecall(top_k=k)(
                preds.T.flatten(),
                target.T.flatten(),
                indexes=torch.arange(owner.size).repeat_interleave(num_images),
            )
            assert ours[f"i2t_r@{k}"] == pytest.approx(100 * float(i2t), abs=1e-4), trial
            assert ours[f"t2i_r@{k}"] == pytest.approx(100 * float(t2i), abs=1e-4), trial


def test_recall_ranked_arrays_hand_worked_and_generic():
    owner = [0, 0, 1, 1, 2]  # captions 0,1 -> image 0; 2,3 -> image 1; 4 -> image 2
    ranked_i2t = [[4, 1, 2], [0, 4, 1], [2, 3, 4]]
    res = recall_at_k(ranked_i2t, owner, k=(1, 2, 3), direction="i2t", return_per_query=True)
    assert res["i2t_r@1"] == 0.0 and res["i2t_r@2"] == pytest.approx(100 / 3)
    assert res["i2t_r@3"] == pytest.approx(200 / 3)  # image 1's captions (2, 3) are never retrieved
    assert res["hits@2"].tolist() == [True, False, False]
    ranked_t2i = [[0, 1], [1, 0], [1, 2], [1, 0], [0, 1]]
    res = recall_at_k(ranked_t2i, owner, k=(1, 2), direction="t2i")
    assert res == {"t2i_r@1": 60.0, "t2i_r@2": 80.0}
    assert retrieval_recall([[4, 2, 0], [1, 3, 5]], [[0, 1], [7]], k=[1, 3]) == {
        "recall@1": 0.0,
        "recall@3": 50.0,
    }


def test_recall_both_directions_is_recall_at_k_twice_plus_rsum():
    owner = [0, 0, 1, 1, 2]
    ranked_i2t = [[4, 1, 2], [0, 4, 1], [2, 3, 4]]
    ranked_t2i = [[0, 1], [1, 0], [1, 2], [1, 0], [0, 1]]
    res = recall_both_directions(ranked_i2t, ranked_t2i, owner, k=(1, 2))
    assert list(res) == ["i2t_r@1", "i2t_r@2", "t2i_r@1", "t2i_r@2", "rsum"]
    expected = {
        **recall_at_k(ranked_i2t, owner, (1, 2), direction="i2t"),
        **recall_at_k(ranked_t2i, owner, (1, 2), direction="t2i"),
    }
    assert {key: res[key] for key in expected} == expected
    assert res["rsum"] == float(
        sum(v for key, v in expected.items() if "_r@" in key)
    )  # same order: same bits
    assert recall_both_directions(None, ranked_t2i, owner, k=2) == {"t2i_r@2": 80.0, "rsum": 80.0}
    with pytest.raises(ValueError, match="K=2"):
        recall_both_directions(ranked_i2t, ranked_t2i, owner, k=3)


def test_recall_from_similarity_is_top_k_then_both_directions():
    rng = np.random.default_rng(3)
    owner = np.array([0, 1, 2, 0, 1, 2, 3, 3])
    sims = rng.integers(0, 3, size=(4, owner.size)).astype(np.float32)  # ties included
    got = recall_at_k_from_similarity(sims, owner, k=(1, 3))
    assert got == recall_both_directions(top_k_indices(sims, 3), top_k_indices(sims.T, 3), owner, (1, 3))
    assert list(got) == ["i2t_r@1", "i2t_r@3", "t2i_r@1", "t2i_r@3", "rsum"]
    only = recall_at_k_from_similarity(sims, owner, k=(1, 3), directions=("t2i",))
    assert only == {
        "t2i_r@1": got["t2i_r@1"],
        "t2i_r@3": got["t2i_r@3"],
        "rsum": got["t2i_r@1"] + got["t2i_r@3"],
    }
    with pytest.raises(ValueError, match="directions"):
        recall_at_k_from_similarity(sims, owner, directions=("x2y",))  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: recall_at_k([[0, 1]], [0, 0], k=0), "positive"),
        (lambda: recall_at_k([[0, 1]], [0, 0], k=3), "K=2"),
        (lambda: recall_at_k([[0, 1]], [0, 1], k=1, direction="i2t"), "only 1 image"),
        (lambda: recall_at_k([[0, 1]], [0, 0], direction="x2y"), "direction"),
        (lambda: recall_at_k([[0], [0]], [0, 0, 0], k=1, direction="t2i"), "must match"),
        (lambda: recall_at_k_from_similarity(np.array([[0.1, np.nan]]), [0, 0], k=1), "NaN"),
        (lambda: recall_at_k_from_similarity(np.zeros((2, 3)), [0, 1], k=1), "must match"),
        (lambda: retrieval_recall([[1, 2]], [[1]], k=3), "k=3"),
        (lambda: recall_at_k([[0, 1]], [0.5, 0], k=1), "integer"),
    ],
)
def test_recall_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ----------------------------------------------------------------------------- AIoU
def naive_soft_iou(m, b):
    inter = union = 0.0
    for j in range(m.shape[0]):
        for i in range(m.shape[1]):
            inter += min(m[j, i], b[j, i])
            union += max(m[j, i], b[j, i])
    return inter / union if union > 0 else 0.0


def naive_aiou(maps, region, target):
    own = naive_soft_iou(maps[target], region)
    other = max(naive_soft_iou(maps[c], region) for c in range(maps.shape[0]) if c != target)
    return own / (own + other) if own + other > 0 else 0.5


@st.composite
def aiou_cases(draw):
    n, c = draw(st.integers(1, 3)), draw(st.integers(2, 3))
    h, w = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    level = st.sampled_from([0.0, 0.25, 0.5, 1.0]) | st.floats(0, 1, width=32)
    maps = np.array(draw(st.lists(level, min_size=n * c * h * w, max_size=n * c * h * w)), dtype=np.float64)
    regions = np.array(draw(st.lists(level, min_size=n * h * w, max_size=n * h * w)), dtype=np.float64)
    regions = regions.reshape(n, h, w)
    regions[:, 0, 0] = np.maximum(regions[:, 0, 0], 0.5)  # non-empty region
    targets = np.array(draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n)))
    return maps.reshape(n, c, h, w), regions, targets


@SETTINGS
@given(aiou_cases())
def test_aiou_matches_naive(case):
    maps, regions, targets = case
    got = aiou_batch(maps, regions, targets)
    expected = [naive_aiou(maps[i], regions[i], targets[i]) for i in range(len(targets))]
    np.testing.assert_allclose(got, expected, atol=1e-9)
    assert aiou(maps[0], regions[0], int(targets[0])) == pytest.approx(expected[0])
    ious = soft_iou(maps[0], regions[0][None])
    np.testing.assert_allclose(ious, [naive_soft_iou(m, regions[0]) for m in maps[0]], atol=1e-9)


def test_aiou_hand_worked():
    region = np.array([[1.0, 1.0], [0.0, 0.0]])
    true_map = np.array([[1.0, 0.5], [0.0, 0.0]])  # IoU = 1.5 / 2 = 0.75
    other = np.array([[0.0, 0.5], [0.5, 0.0]])  # IoU = 0.5 / (1 + 1 + 0.5) = 0.2
    assert soft_iou(true_map, region) == pytest.approx(0.75)
    assert soft_iou(other, region) == pytest.approx(0.2)
    assert aiou(np.stack([true_map, other]), region, 0) == pytest.approx(0.75 / 0.95)
    assert aiou(np.stack([true_map, other]), region, 1) == pytest.approx(0.2 / 0.95)
    zeros = np.zeros((3, 2, 2))
    assert aiou(zeros, region, 2) == 0.5  # every map misses the object
    assert soft_iou(np.zeros((2, 2)), np.zeros((2, 2))) == 0.0
    summary = aiou_summary([0.2, 0.4, 0.9, 0.7], [0, 0, 1, 1])
    assert summary["worst_group"] == 0 and summary["worst_group_aiou"] == pytest.approx(0.3)
    assert summary["average_aiou"] == pytest.approx(0.55)
    assert aiou_summary([0.2, 0.4, 0.9, 0.7], [0, 0, 1, 1], worst_group=1)[
        "worst_group_aiou"
    ] == pytest.approx(0.8)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: aiou(np.zeros((2, 3, 3)), np.ones((4, 4)), 0), "resize"),
        (lambda: aiou(np.full((2, 3, 3), 1.5), np.ones((3, 3)), 0), r"\[0, 1\]"),
        (lambda: aiou(np.full((2, 3, 3), np.nan), np.ones((3, 3)), 0), "NaN"),
        (lambda: aiou(np.zeros((2, 3, 3)), np.full((3, 3), 255.0), 0), r"\[0, 1\]"),
        (lambda: aiou(np.zeros((2, 3, 3)), np.zeros((3, 3)), 0), "empty"),
        (lambda: aiou(np.zeros((1, 3, 3)), np.ones((3, 3)), 0), ">= 2 classes"),
        (lambda: aiou(np.zeros((2, 3, 3)), np.ones((3, 3)), 2), "only 2 classes"),
        (lambda: aiou_batch(np.zeros((2, 2, 3, 3)), np.ones((3, 3, 3)), [0, 0]), "must match"),
        (lambda: aiou_summary([0.5], [0], worst_group=3), "no image"),
    ],
)
def test_aiou_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ----------------------------------------------------------------------------- group accuracies
def naive_groups(pred, true, grp, counts=None):
    per = {}
    for g in sorted(set(grp)):
        idx = [i for i in range(len(grp)) if grp[i] == g]
        per[g] = 100.0 * sum(pred[i] == true[i] for i in idx) / len(idx)
    avg = 100.0 * sum(p == t for p, t in zip(pred, true)) / len(pred)
    if counts is None:
        adj = sum(per.values()) / len(per)
    else:
        adj = sum(per[g] * counts[g] for g in per) / sum(counts[g] for g in per)
    worst = min(per, key=lambda g: (per[g], g))
    return avg, adj, per[worst], worst, per


@SETTINGS
@given(
    st.lists(st.tuples(st.integers(0, 1), st.integers(0, 1), st.integers(0, 3)), min_size=1, max_size=40),
    st.booleans(),
)
def test_group_accuracies_match_naive(rows, use_counts):
    pred, true, grp = (list(x) for x in zip(*rows))
    counts = WATERBIRDS_TRAIN_GROUP_COUNTS if use_counts else None
    res = group_accuracies(pred, true, grp, train_group_counts=counts)
    avg, adj, worst_acc, worst, per = naive_groups(pred, true, grp, counts)
    assert res["average_accuracy"] == pytest.approx(avg)
    assert res["adjusted_average_accuracy"] == pytest.approx(adj)
    assert res["worst_group_accuracy"] == pytest.approx(worst_acc)
    assert res["worst_group"] == worst == res["worst_group_id"]
    assert res["group_accuracy"] == pytest.approx(per)


def test_group_accuracies_waterbirds_hand_worked():
    # per group (landbird/land, landbird/water, waterbird/land, waterbird/water): 2/2, 1/2, 0/1, 3/4 correct
    pred = [0, 0, 0, 1, 0, 1, 1, 1, 0]
    true = [0, 0, 0, 0, 1, 1, 1, 1, 1]
    grp = [0, 0, 1, 1, 2, 3, 3, 3, 3]
    res = group_accuracies(pred, true, grp, WATERBIRDS_TRAIN_GROUP_COUNTS, WATERBIRDS_GROUP_NAMES)
    assert res["group_accuracy"] == {
        "landbird/land": 100.0,
        "landbird/water": 50.0,
        "waterbird/land": 0.0,
        "waterbird/water": 75.0,
    }
    assert res["average_accuracy"] == pytest.approx(100 * 6 / 9)
    assert res["adjusted_average_accuracy"] == pytest.approx((3498 * 100 + 184 * 50 + 0 + 1057 * 75) / 4795)
    assert (res["worst_group"], res["worst_group_accuracy"]) == ("waterbird/land", 0.0)
    # a group with no example is left out of the worst group and of the adjusted average
    res = group_accuracies([0, 1], [0, 0], [0, 1], WATERBIRDS_TRAIN_GROUP_COUNTS)
    assert res["adjusted_average_accuracy"] == pytest.approx(3498 * 100 / (3498 + 184))
    assert set(res["group_accuracy"]) == {0, 1}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (([0, 1], [0], [0, 1]), "labels"),
        (([0, 1], [0, 1], [0]), "groups"),
        (([0, float("nan")], [0, 1], [0, 1]), "NaN"),
        (([0, 1], [0, 1], [0, -1]), "non-negative"),
        (([], [], []), "empty"),
    ],
)
def test_group_accuracies_bad_input(args, message):
    with pytest.raises(ValueError, match=message):
        group_accuracies(*args)
    with pytest.raises(ValueError, match="one count per group"):
        group_accuracies([0], [0], [3], train_group_counts=[1, 2])


@SETTINGS
@given(
    st.lists(st.tuples(st.integers(0, 1), st.integers(0, 1), st.integers(0, 3)), min_size=1, max_size=40),
    st.lists(st.integers(0, 50), min_size=4, max_size=6),
    st.sampled_from(["list", "dict", "array", "tensor"]),
)
def test_group_accuracies_train_counts_as_mapping_or_sequence(rows, counts, kind):
    pred, true, grp = (list(x) for x in zip(*rows))
    if sum(counts[g] for g in set(grp)) == 0:
        counts[grp[0]] = 1
    given_counts = {
        "list": list(counts),
        "dict": {g: n for g, n in enumerate(counts)},
        "array": np.asarray(counts),
        "tensor": torch.tensor(counts),
    }[kind]
    res = group_accuracies(pred, true, grp, train_group_counts=given_counts)
    _, adj, *_ = naive_groups(pred, true, grp, counts)
    assert res["adjusted_average_accuracy"] == pytest.approx(adj)


def test_group_accuracies_mapping_counts_hand_worked():
    # groups 0, 3 present: 1/1 and 0/1 correct; weights 10 and 30 -> (100 * 10 + 0 * 30) / 40
    res = group_accuracies([0, 0], [0, 1], [0, 3], train_group_counts={3: 30, 0: 10, 1: 5})
    assert res["adjusted_average_accuracy"] == pytest.approx(25.0)


@pytest.mark.parametrize(
    ("counts", "message"),
    [
        ({0: 10, 1: 5}, r"no count for evaluated group\(s\) \[3\]"),
        ({0: 10, "3": 5}, "key '3' is not a group id"),
        ({0: 10, 3: "5"}, r"`train_group_counts`\[3\] is '5' \(str\)"),
        ({0: 10, 3: -1}, "non-negative"),
        ("1234", "sequence of counts indexed by group id or a mapping"),
        (7, "sequence of counts indexed by group id or a mapping"),
        (["a", "b", "c", "d"], "sequence of numbers"),
    ],
)
def test_group_accuracies_bad_train_counts_are_clear(counts, message):
    with pytest.raises(ValueError, match=message):
        group_accuracies([0, 0], [0, 1], [0, 3], train_group_counts=counts)


# ----------------------------------------------------------------------------- discovery
def naive_mi(x, y):
    n = len(x)
    total = 0.0
    for a in set(x):
        for b in set(y):
            nab = sum(1 for i in range(n) if x[i] == a and y[i] == b)
            if nab:
                na, nb = x.count(a), y.count(b)
                total += nab / n * math.log(nab * n / (na * nb))
    return total


@SETTINGS
@given(st.lists(st.tuples(st.integers(0, 2), st.booleans()), min_size=1, max_size=30))
def test_mutual_information_matches_naive(pairs):
    x, y = (list(v) for v in zip(*pairs))
    assert mutual_information(x, y) == pytest.approx(naive_mi(x, y), abs=1e-12)


def test_mutual_information_is_exactly_zero_when_independent():
    x = [0, 0, 1, 1] * 7 + [0] * 3
    y = [0, 1, 0, 1] * 7 + [0] * 3  # cells (10, 7, 7, 7): not independent
    assert mutual_information(x, y) > 0
    x = [0] * 3 + [1] * 6
    y = [0, 1, 1] * 3  # P(y=1 | x) = 2/3 for both x
    assert mutual_information(x, y) == 0.0


def test_accuracy_discrepancy_hand_worked_and_errors():
    correct = [1, 1, 1, 0, 1, 0, 0, 0]
    detected = [1, 1, 1, 1, 0, 0, 0, 0]  # acc(s=1) = 75 %, acc(s=0) = 25 %
    assert accuracy_discrepancy(correct, detected) == pytest.approx(50.0)
    with pytest.raises(ValueError, match="always"):
        accuracy_discrepancy([1, 0], [1, 1])
    with pytest.raises(ValueError, match="must match"):
        accuracy_discrepancy([1, 0], [1])
    with pytest.raises(ValueError, match="NaN"):
        accuracy_discrepancy([1.0, float("nan")], [1, 0])


def naive_rank(cls, ok, det, names, class_names, min_det, top):
    rows = []
    for c in sorted(set(cls)):
        idx = [i for i in range(len(cls)) if cls[i] == c]
        kept = []
        for a, word in enumerate(names):
            s = [det[i][a] for i in idx]
            if sum(s) < min_det or (class_names and word in class_names):
                continue
            o = [ok[i] for i in idx]
            mi = naive_mi(s, o)
            if mi <= 1e-12:
                continue
            with_s = [o[j] for j in range(len(idx)) if s[j]]
            without = [o[j] for j in range(len(idx)) if not s[j]]
            delta = 100 * sum(with_s) / len(with_s) - 100 * sum(without) / len(without)
            kept.append((c, word, mi, delta))
        kept.sort(key=lambda r: -r[2])
        rows.extend(kept[:top])
    return rows


@SETTINGS
@given(st.integers(0, 2**31 - 1), st.integers(1, 4), st.integers(1, 3))
def test_rank_spurious_attributes_matches_naive(seed, min_det, top):
    rng = np.random.default_rng(seed)
    n, a = int(rng.integers(5, 40)), int(rng.integers(1, 7))
    cls = rng.integers(0, 3, size=n)
    det = rng.random((n, a)) < rng.random(a)
    ok = rng.random(n) < np.where(det[:, 0], 0.9, 0.4)
    names = [f"w{j}" for j in range(a - 1)] + ["c1"]  # the last attribute is a class name: excluded
    class_names = ["c0", "c1", "c2"]
    got = rank_spurious_attributes(
        cls, ok, det, names, class_names, min_detections=min_det, top_per_class=top
    )
    expected = naive_rank(cls.tolist(), ok.tolist(), det.tolist(), names, class_names, min_det, top)
    # no near-ties in MI at the per-class cut, so the selection is well defined
    for c in set(cls.tolist()):
        mis = sorted(
            (
                round(r[2], 9)
                for r in naive_rank(cls.tolist(), ok.tolist(), det.tolist(), names, class_names, min_det, 99)
                if r[0] == c
            ),
            reverse=True,
        )
        assume(len(mis) <= top or mis[top - 1] != mis[top])
    assert {(r["class_id"], r["attribute"]) for r in got} == {(r[0], r[1]) for r in expected}
    by_key = {(r[0], r[1]): r for r in expected}
    for row in got:
        ref = by_key[(row["class_id"], row["attribute"])]
        assert row["mutual_information"] == pytest.approx(ref[2], abs=1e-12)
        assert row["delta"] == pytest.approx(ref[3])
        assert row["class"] == class_names[row["class_id"]] and row["attribute"] != "c1"
    deltas = [r["delta"] for r in got]
    assert deltas == sorted(deltas, reverse=True)


def test_rank_spurious_attributes_hand_worked():
    # class 0: 20 images; "baby" in the first 10 (all correct), absent in the rest (2 of 10 correct)
    cls = [0] * 20
    ok = [1] * 10 + [1, 1] + [0] * 8
    baby = [1] * 10 + [0] * 10
    rare = [1] * 9 + [0] * 11  # 9 detections < 10: dropped
    flat = [1, 0] * 10  # detected in 10 images, 6 of them correct; absent in 10, also 6 correct -> MI 0
    det = np.array([baby, rare, flat]).T
    rows = rank_spurious_attributes(cls, ok, det, ["baby", "rare", "flat"])
    assert [r["attribute"] for r in rows] == ["baby"]
    assert rows[0]["delta"] == pytest.approx(80.0) and rows[0]["detections"] == 10
    assert rows[0]["accuracy_with"] == 100.0 and rows[0]["accuracy_without"] == 20.0
    with pytest.raises(ValueError, match="attribute_names"):
        rank_spurious_attributes(cls, ok, det, ["baby"])


# ------------------------------------------------------------- raw-input check of the evaluate modules


def _naive_first_bad(rows: list[list[float]]) -> tuple[int, int] | None:
    """Index of the first value (row-major) that is not a whole number, by plain Python."""
    for i, row in enumerate(rows):
        for j, v in enumerate(row):
            if v != v or v in (math.inf, -math.inf) or int(v) != v:
                return i, j
    return None


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.lists(
            st.one_of(
                st.integers(-5, 5).map(float),
                st.floats(-5, 5),
                st.sampled_from([math.nan, math.inf, -math.inf]),
            ),
            min_size=3,
            max_size=3,
        ),
        min_size=1,
        max_size=4,
    )
)
def test_check_feature_names_the_first_non_integer_like_a_naive_scan(rows):
    from hf_spurious.metrics.checks import check_feature

    bad = _naive_first_bad(rows)
    if bad is None:
        check_feature(rows, [["int64"]], "predictions")
        return
    with pytest.raises(ValueError, match=rf"`predictions\[{bad[0]}\]\[{bad[1]}\]`"):
        check_feature(rows, [["int64"]], "predictions")


def test_check_feature_hand_cases():
    from hf_spurious.metrics.checks import check_feature

    spec = {"removed_classes": ["string"], "present_classes": ["string"]}
    check_feature([{"removed_classes": None, "present_classes": ["dog"]}], [spec], "references")
    with pytest.raises(ValueError, match=r"`references\[1\]` lacks keys \['present_classes'\]"):
        check_feature(
            [{"removed_classes": [], "present_classes": []}, {"removed_classes": []}], [spec], "references"
        )
    with pytest.raises(ValueError, match=r"`x\[2\]` must be an integer id; got None"):
        check_feature([1, 2, None], ["int64"], "x")
    check_feature([[0.5, 1], [2, 3]], [["float32"]], "maps")  # ragged-free floats fine for a float feature
    check_feature([[1], [2, 3]], [["int64"]], "ids")  # ragged lists are checked item by item
    with pytest.raises(ValueError, match=r"`ids\[1\]\[1\]` is 3.5"):
        check_feature([[1], [2, 3.5]], [["int64"]], "ids")
