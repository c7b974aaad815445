"""Every loss against a naive per-sample loop written independently here (values and gradients)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hf_spurious.losses import (
    NoPositivesError,
    class_prototypes,
    clip_contrastive_loss,
    cross_group_similarity,
    image_class_loss,
    image_spurious_loss,
    linear_group_similarity,
    text_class_loss,
    text_spurious_loss,
    zero_shot_logits,
)


@pytest.fixture(autouse=True, scope="module")
def _float64():
    """Exact comparisons against the float loops: run this module in float64, restore afterwards."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def _unit(v):
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]


def _dot(u, v):
    return sum(a * b for a, b in zip(u, v))


def _cos(u, v):
    return _dot(_unit(u), _unit(v))


def naive_cs(anchors, candidates, pos, s, exclude_self, neg=None):
    """SupCon CS written as plain loops over anchors and positives."""
    scale = math.exp(s)
    per_anchor = []
    for i, a in enumerate(anchors):
        members = []
        positives = []
        for j in range(len(candidates)):
            if exclude_self and i == j:
                continue
            is_pos = bool(pos[i][j])
            is_neg = (not is_pos) if neg is None else bool(neg[i][j])
            if is_pos:
                positives.append(j)
            if is_pos or is_neg:
                members.append(j)
        if not positives:
            continue
        denom = sum(math.exp(scale * _cos(a, candidates[j])) for j in members)
        terms = [-math.log(math.exp(scale * _cos(a, candidates[p])) / denom) for p in positives]
        per_anchor.append(sum(terms) / len(terms))
    return sum(per_anchor) / len(per_anchor)


def naive_infonce(img, txt, s):
    """Symmetric InfoNCE as in open_clip: CE over rows and over columns, averaged."""
    scale = math.exp(s)
    n = len(img)
    sim = [[scale * _cos(img[i], txt[j]) for j in range(n)] for i in range(n)]
    row = sum(-sim[i][i] + math.log(sum(math.exp(sim[i][j]) for j in range(n))) for i in range(n)) / n
    col = sum(-sim[j][j] + math.log(sum(math.exp(sim[i][j]) for i in range(n))) for j in range(n)) / n
    return (row + col) / 2


def _rows(t):
    return t.detach().tolist()


def _num_grad(fn, x, eps=1e-6):
    """Central-difference gradient of a python-float function of a tensor."""
    g = torch.zeros_like(x)
    flat = x.detach().clone().view(-1)
    for k in range(flat.numel()):
        old = flat[k].item()
        flat[k] = old + eps
        hi = fn(flat.view_as(x))
        flat[k] = old - eps
        lo = fn(flat.view_as(x))
        flat[k] = old
        g.view(-1)[k] = (hi - lo) / (2 * eps)
    return g


labels_st = st.lists(st.integers(0, 2), min_size=3, max_size=7)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(2, 6), d=st.integers(2, 5), s=st.floats(-1.0, 3.0), seed=st.integers(0, 10_000))
def test_clip_loss_equals_naive_infonce(n, d, s, seed):
    g = torch.Generator().manual_seed(seed)
    img, txt = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)
    got = clip_contrastive_loss(img, txt, torch.tensor(s))
    assert got.item() == pytest.approx(naive_infonce(_rows(img), _rows(txt), s), rel=1e-9, abs=1e-9)
    per = clip_contrastive_loss(img, txt, s, reduction="none")
    assert per.mean().item() == pytest.approx(got.item(), rel=1e-9)


def test_clip_loss_gradients_match_naive():
    g = torch.Generator().manual_seed(0)
    img = torch.randn(4, 3, generator=g, requires_grad=True)
    txt = torch.randn(4, 3, generator=g)
    s = torch.tensor(1.3, requires_grad=True)
    clip_contrastive_loss(img, txt, s).backward()
    expect = _num_grad(lambda x: naive_infonce(_rows(x), _rows(txt), 1.3), img.detach())
    torch.testing.assert_close(img.grad, expect, rtol=1e-5, atol=1e-6)
    expect_s = (
        naive_infonce(_rows(img), _rows(txt), 1.3 + 1e-6) - naive_infonce(_rows(img), _rows(txt), 1.3 - 1e-6)
    ) / 2e-6
    assert s.grad.item() == pytest.approx(expect_s, rel=1e-5)


def test_clip_loss_same_label_mask_hand_worked():
    # two identical images/texts of the same class: with the mask each row only sees itself -> loss 0
    img = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    txt = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    assert clip_contrastive_loss(img, txt, 0.0).item() == pytest.approx(math.log(2))
    assert clip_contrastive_loss(img, txt, 0.0, labels=torch.tensor([0, 0])).item() == pytest.approx(0.0)


@settings(max_examples=30, deadline=None)
@given(labels=labels_st, d=st.integers(2, 4), s=st.floats(-1.0, 2.5), seed=st.integers(0, 10_000))
def test_cross_group_similarity_same_set_equals_naive(labels, d, s, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(len(labels), d, generator=g)
    lab = torch.tensor(labels)
    pos = (lab[:, None] == lab[None, :]).tolist()
    has_pos = any(labels.count(v) > 1 for v in labels)
    if not has_pos:
        with pytest.raises(NoPositivesError):
            cross_group_similarity(x, x, lab[:, None] == lab[None, :], s)
        assert cross_group_similarity(x, x, lab[:, None] == lab[None, :], s, if_no_positives="skip") is None
        return
    got = cross_group_similarity(x, x, lab[:, None] == lab[None, :], s)
    assert got.item() == pytest.approx(naive_cs(_rows(x), _rows(x), pos, s, True), rel=1e-9, abs=1e-9)


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 5), m=st.integers(2, 6), seed=st.integers(0, 10_000), s=st.floats(-1.0, 2.0))
def test_cross_group_similarity_two_sets_with_negative_mask(n, m, seed, s):
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randn(n, 3, generator=g), torch.randn(m, 3, generator=g)
    code = torch.randint(0, 3, (n, m), generator=g)  # 0 pos, 1 neg, 2 ignored
    code[:, 0] = 0  # every anchor has a positive
    pos, neg = code == 0, code == 1
    got = cross_group_similarity(a, b, pos, s, exclude_self=False, negative_mask=neg)
    expect = naive_cs(_rows(a), _rows(b), pos.tolist(), s, False, neg.tolist())
    assert got.item() == pytest.approx(expect, rel=1e-9, abs=1e-9)


def test_cross_group_similarity_gradient_matches_naive():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(5, 3, generator=g, requires_grad=True)
    lab = torch.tensor([0, 0, 1, 1, 2])  # anchor 4 has no positive: skipped, but still a negative
    pos = lab[:, None] == lab[None, :]
    cross_group_similarity(x, x, pos, 0.7).backward()
    expect = _num_grad(lambda v: naive_cs(_rows(v), _rows(v), pos.tolist(), 0.7, True), x.detach())
    torch.testing.assert_close(x.grad, expect, rtol=1e-5, atol=1e-7)


def test_cross_group_similarity_hand_worked():
    # anchors 0,1 same class, orthogonal to 2; tau = 1: anchor 0 sees {1 (cos 1), 2 (cos 0)}
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    lab = torch.tensor([0, 0, 1])
    got = cross_group_similarity(x, x, lab[:, None] == lab[None, :], 0.0)
    assert got.item() == pytest.approx(-math.log(math.e / (math.e + 1)))


def test_cross_group_similarity_bad_input():
    x = torch.randn(3, 2)
    with pytest.raises(ValueError, match="same set"):
        cross_group_similarity(x, torch.randn(4, 2), torch.ones(3, 4, dtype=torch.bool), 0.0)
    with pytest.raises(ValueError, match="overlap"):
        m = torch.ones(3, 3, dtype=torch.bool)
        cross_group_similarity(x, x, m, 0.0, negative_mask=m)
    with pytest.raises(ValueError, match="shape"):
        cross_group_similarity(x, x, torch.ones(2, 3, dtype=torch.bool), 0.0)


def naive_linear(a, b, pos):
    m = len(b)
    vals = []
    for i in range(len(a)):
        p = sum(_cos(a[i], b[j]) for j in range(m) if pos[i][j])
        q = sum(_cos(a[i], b[j]) for j in range(m) if not pos[i][j])
        vals.append((-p + q) / m)
    return sum(vals) / len(vals)


@settings(max_examples=20, deadline=None)
@given(labels=labels_st, seed=st.integers(0, 10_000))
def test_linear_form_equals_naive(labels, seed):
    x = torch.randn(len(labels), 3, generator=torch.Generator().manual_seed(seed))
    lab = torch.tensor(labels)
    pos = lab[:, None] == lab[None, :]
    expect = naive_linear(_rows(x), _rows(x), pos.tolist())
    assert linear_group_similarity(x, x, pos).item() == pytest.approx(expect, rel=1e-9, abs=1e-12)
    assert image_class_loss(x, lab, 0.0, form="linear").item() == pytest.approx(expect, rel=1e-9, abs=1e-12)


def test_image_class_loss_equals_naive_and_grad():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(6, 4, generator=g, requires_grad=True)
    lab = torch.tensor([1, 0, 1, 0, 2, 2])
    pos = (lab[:, None] == lab[None, :]).tolist()
    loss = image_class_loss(x, lab, 1.1)
    assert loss.item() == pytest.approx(naive_cs(_rows(x), _rows(x), pos, 1.1, True), rel=1e-9)
    loss.backward()
    expect = _num_grad(lambda v: naive_cs(_rows(v), _rows(v), pos, 1.1, True), x.detach())
    torch.testing.assert_close(x.grad, expect, rtol=1e-5, atol=1e-7)


def naive_text_class(e, s):
    """Loop over (template, class) anchors; positives = same class, other template."""
    t_count, c_count = len(e), len(e[0])
    scale = math.exp(s)
    per = []
    for t in range(t_count):
        for c in range(c_count):
            others = [(t2, c2) for t2 in range(t_count) for c2 in range(c_count) if (t2, c2) != (t, c)]
            denom = sum(math.exp(scale * _cos(e[t][c], e[t2][c2])) for t2, c2 in others)
            pos = [(t2, c) for t2 in range(t_count) if t2 != t]
            per.append(
                sum(-math.log(math.exp(scale * _cos(e[t][c], e[a][b])) / denom) for a, b in pos) / len(pos)
            )
    return sum(per) / len(per)


@settings(max_examples=15, deadline=None)
@given(t=st.integers(2, 4), c=st.integers(1, 3), seed=st.integers(0, 10_000), s=st.floats(-1.0, 2.0))
def test_text_class_loss_equals_naive(t, c, seed, s):
    e = torch.randn(t, c, 3, generator=torch.Generator().manual_seed(seed))
    got = text_class_loss(e, s)
    assert got.item() == pytest.approx(naive_text_class(e.tolist(), s), rel=1e-9, abs=1e-12)


def test_text_class_loss_gradient_and_single_template():
    e = torch.randn(3, 2, 4, generator=torch.Generator().manual_seed(3), requires_grad=True)
    text_class_loss(e, 0.5).backward()
    expect = _num_grad(lambda v: naive_text_class(v.tolist(), 0.5), e.detach())
    torch.testing.assert_close(e.grad, expect, rtol=1e-5, atol=1e-7)
    with pytest.raises(NoPositivesError):
        text_class_loss(torch.randn(1, 2, 4), 0.0)


@settings(max_examples=20, deadline=None)
@given(
    data=st.lists(st.tuples(st.integers(0, 1), st.integers(0, 1)), min_size=3, max_size=7),
    seed=st.integers(0, 10_000),
)
def test_image_spurious_loss_groupings_equal_naive(data, seed):
    labels = torch.tensor([y for y, _ in data])
    attrs = torch.tensor([a for _, a in data])
    x = torch.randn(len(data), 3, generator=torch.Generator().manual_seed(seed))
    for grouping, key in (("attribute", lambda i: data[i][1]), ("class_attribute", lambda i: data[i])):
        pos = [[key(i) == key(j) for j in range(len(data))] for i in range(len(data))]
        if not any(pos[i][j] for i in range(len(data)) for j in range(len(data)) if i != j):
            assert (
                image_spurious_loss(x, attrs, 0.3, labels=labels, grouping=grouping, if_no_positives="skip")
                is None
            )
            continue
        got = image_spurious_loss(x, attrs, 0.3, labels=labels, grouping=grouping)
        assert got.item() == pytest.approx(naive_cs(_rows(x), _rows(x), pos, 0.3, True), rel=1e-9, abs=1e-12)


def test_image_spurious_cross_entropy_form_equals_naive():
    g = torch.Generator().manual_seed(4)
    x, protos = torch.randn(5, 3, generator=g), torch.randn(2, 3, generator=g)
    attrs = torch.tensor([0, 1, 1, 0, 1])
    frob = math.sqrt(sum(v * v for row in protos.tolist() for v in row))
    expect = 0.0
    for i in range(5):
        f = _unit(x[i].tolist())
        logits = [math.exp(0.8) * _dot(f, [v / frob for v in protos[k].tolist()]) for k in range(2)]
        expect += -logits[attrs[i]] + math.log(sum(math.exp(v) for v in logits))
    got = image_spurious_loss(x, attrs, 0.8, form="cross_entropy", attribute_prototypes=protos)
    assert got.item() == pytest.approx(expect / 5, rel=1e-9)


def test_image_spurious_loss_missing_attributes_is_a_clear_error():
    x = torch.randn(4, 3)
    with pytest.raises(ValueError, match="attribute"):
        image_spurious_loss(x, None, 0.0)
    with pytest.raises(ValueError, match=r"attributes\[2\]"):
        image_spurious_loss(x, torch.tensor([0, 1, -1, 0]), 0.0)
    with pytest.raises(ValueError, match="class labels"):
        image_spurious_loss(x, torch.tensor([0, 1, 1, 0]), 0.0, grouping="class_attribute")


def naive_text_spurious(cls, att, labels):
    t_count, c_count = len(cls), len(cls[0])
    per_class = []
    for c in range(c_count):
        vals = [
            abs(_cos(cls[t][c], att[t2][s]))
            for t in range(t_count)
            for t2 in range(len(att))
            for s in range(len(att[0]))
        ]
        per_class.append(sum(vals) / len(vals))
    if labels is None:
        return sum(per_class) / c_count
    return sum(per_class[y] for y in labels) / len(labels)


@settings(max_examples=15, deadline=None)
@given(
    t=st.integers(1, 3),
    c=st.integers(1, 3),
    t2=st.integers(1, 3),
    s=st.integers(1, 2),
    seed=st.integers(0, 10_000),
)
def test_text_spurious_loss_equals_naive(t, c, t2, s, seed):
    g = torch.Generator().manual_seed(seed)
    cls, att = torch.randn(t, c, 4, generator=g), torch.randn(t2, s, 4, generator=g)
    labels = torch.randint(0, c, (5,), generator=g)
    assert text_spurious_loss(cls, att).item() == pytest.approx(
        naive_text_spurious(cls.tolist(), att.tolist(), None), rel=1e-9
    )
    got = text_spurious_loss(cls, att, labels)
    assert got.item() == pytest.approx(
        naive_text_spurious(cls.tolist(), att.tolist(), labels.tolist()), rel=1e-9
    )


def test_text_spurious_loss_gradient():
    g = torch.Generator().manual_seed(5)
    cls = torch.randn(2, 2, 3, generator=g, requires_grad=True)
    att = torch.randn(2, 1, 3, generator=g)
    text_spurious_loss(cls, att, torch.tensor([0, 1, 1])).backward()
    expect = _num_grad(lambda v: naive_text_spurious(v.tolist(), att.tolist(), [0, 1, 1]), cls.detach())
    torch.testing.assert_close(cls.grad, expect, rtol=1e-5, atol=1e-7)


def test_zero_shot_logits_hand_worked():
    # prompts: class 0 along x under both templates, class 1 along y -> prototypes are the axes
    text = torch.tensor([[[2.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, 3.0]]])
    torch.testing.assert_close(class_prototypes(text), torch.eye(2))
    logits = zero_shot_logits(torch.tensor([[3.0, 4.0]]), text, math.log(10.0))
    torch.testing.assert_close(logits, torch.tensor([[6.0, 8.0]]))


# ----------------------------------------------------------------------------- the objective module
def _batch(seed=0, b=8, d=5, t=3, c=2, s=2):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(b) % c
    attributes = (torch.arange(b) // c) % s
    return dict(
        img=torch.randn(b, d, generator=g),
        labels=labels,
        attributes=attributes,
        class_embeds=torch.randn(t, c, d, generator=g),
        attribute_rows=torch.randn(t * s, d, generator=g),
        scale=torch.tensor(1.3),
    )


def test_objective_terms_equal_the_loss_functions():
    import torch.nn.functional as F

    from hf_spurious.losses import LOG_NAMES, TERMS, SpuriousAwareLoss

    assert set(LOG_NAMES) == set(TERMS)
    x = _batch()
    loss = SpuriousAwareLoss(
        clip_weight=0.7,
        zero_shot_ce_weight=0.3,
        image_class_weight=0.5,
        text_class_weight=0.2,
        image_spurious_weight=0.4,
        text_spurious_weight=0.9,
        itm_weight=1.0,  # ignored by classification
    )
    assert loss.active == ("L_CLIP", "zero_shot_ce", "L_vc", "L_lc", "L_vs", "L_ls")
    out = loss(
        x["img"],
        None,
        x["scale"],
        labels=x["labels"],
        attributes=x["attributes"],
        class_embeds=x["class_embeds"],
        attribute_embeds=x["attribute_rows"],
    )
    assert list(out) == ["per_example", "groups", *loss.active]
    protos = class_prototypes(x["class_embeds"])[x["labels"]]
    clip = clip_contrastive_loss(x["img"], protos, x["scale"], reduction="none")
    logits = zero_shot_logits(x["img"], x["class_embeds"], x["scale"])
    ce = F.cross_entropy(logits, x["labels"], reduction="none")
    attr = x["attribute_rows"].reshape(3, 2, -1)
    expected = {
        "L_CLIP": clip.mean(),
        "zero_shot_ce": ce.mean(),
        "L_vc": image_class_loss(x["img"], x["labels"], x["scale"]),
        "L_lc": text_class_loss(x["class_embeds"], x["scale"]),
        "L_vs": image_spurious_loss(x["img"], x["attributes"], x["scale"]),
        "L_ls": text_spurious_loss(x["class_embeds"], attr, x["labels"]),
    }
    for name, value in expected.items():
        torch.testing.assert_close(out[name], value, rtol=0, atol=0)
    per_example = torch.stack([0.7 * clip, 0.3 * ce]).sum(0)
    torch.testing.assert_close(out["per_example"], per_example, rtol=0, atol=0)
    total = per_example.mean()
    for name, w in (("L_vc", 0.5), ("L_lc", 0.2), ("L_vs", 0.4), ("L_ls", 0.9)):
        total = total + w * expected[name]
    terms = {k: v for k, v in out.items() if k != "per_example"}
    assert loss.add_batch_terms(out["per_example"].mean(), terms).item() == total.item()


def test_objective_retrieval_terms_and_itm_order():
    from hf_spurious.losses import SpuriousAwareLoss

    x = _batch()
    txt = torch.randn(8, 5, generator=torch.Generator().manual_seed(4))
    calls = []

    def itm():
        calls.append("itm")
        return torch.tensor(0.25)

    loss = SpuriousAwareLoss("retrieval", clip_weight=2.0, image_class_weight=1.0, itm_weight=0.5)
    assert loss.active == ("L_CLIP", "L_itm")  # class terms have no meaning for image-caption pairs
    out = loss(x["img"], txt, x["scale"], itm_loss=itm)
    clip = clip_contrastive_loss(x["img"], txt, x["scale"], reduction="none")
    torch.testing.assert_close(out["per_example"], 2.0 * clip, rtol=0, atol=0)
    torch.testing.assert_close(out["L_CLIP"], (2.0 * clip).mean() / 2.0, rtol=0, atol=0)
    assert calls == ["itm"] and out["L_itm"].item() == 0.25
    assert loss.add_batch_terms(torch.tensor(1.0), out).item() == 1.0 + 0.5 * 0.25
    with pytest.raises(ValueError, match="itm_loss"):
        loss(x["img"], txt, x["scale"])
    assert SpuriousAwareLoss("retrieval").active == ("L_CLIP",)  # itm weight 0: itm_loss never called
    assert "L_itm" not in SpuriousAwareLoss("retrieval")(x["img"], txt, x["scale"], itm_loss=itm)
    assert calls == ["itm"]


def test_objective_skipped_terms_are_none_and_not_added():
    from hf_spurious.losses import SpuriousAwareLoss

    x = _batch(b=4)  # 4 distinct (class, attribute) groups: class_attribute L_vs has no positive
    kw = dict(image_spurious_weight=1.0, spurious_grouping="class_attribute")
    inputs = dict(labels=x["labels"], attributes=x["attributes"], class_embeds=x["class_embeds"])
    with pytest.raises(NoPositivesError):
        SpuriousAwareLoss(**kw)(x["img"], None, x["scale"], **inputs)
    loss = SpuriousAwareLoss(if_no_positives="skip", **kw)
    out = loss(x["img"], None, x["scale"], **inputs)
    assert out["L_vs"] is None
    base = out["per_example"].mean()
    assert loss.add_batch_terms(base, out) is base


def test_objective_rejects_bad_weights():
    from hf_spurious.losses import SpuriousAwareLoss

    with pytest.raises(ValueError, match="every loss weight is 0"):
        SpuriousAwareLoss(clip_weight=0.0)
    with pytest.raises(ValueError, match="every loss weight is 0"):
        SpuriousAwareLoss("retrieval", clip_weight=0.0, text_class_weight=1.0)
    with pytest.raises(ValueError, match=">= 0"):
        SpuriousAwareLoss(image_class_weight=-1.0)
    with pytest.raises(ValueError, match="task"):
        SpuriousAwareLoss("detection")
