"""SpuriousAwareTrainer and its parts on tiny random CLIP models and tiny data (all CPU, seconds)."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hf_spurious.losses import NoPositivesError
from hf_spurious.training.collators import ClassificationCollator, RetrievalCollator
from hf_spurious.training.config import SpuriousTrainingArguments
from hf_spurious.training.group_dro import GroupDRO
from hf_spurious.training.samplers import GroupBalancedSampler, group_weights

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = ["a photo of a {}.", "a drawing of the {}.", "art of a {}."]
CLASSES = ["dog", "cat"]
torch.set_num_threads(1)


# ----------------------------------------------------------------------------- helpers
def _rows(n: int = 32, seed: int = 0) -> list[dict]:
    """Labelled random images: label = i % 2, attribute = (i // 2) % 2 -> 4 equal groups."""
    rng = np.random.default_rng(seed)
    return [
        {
            "image": rng.integers(0, 255, (32, 32, 3), dtype=np.uint8),
            "label": i % 2,
            "attribute": (i // 2) % 2,
        }
        for i in range(n)
    ]


def _args(tmp_path: Path, **kw) -> SpuriousTrainingArguments:
    base = dict(
        output_dir=str(tmp_path / "out"),
        templates=TEMPLATES,
        class_names=CLASSES,
        attribute_names=["land", "water"],
        per_device_train_batch_size=8,
        per_device_eval_batch_size=16,
        learning_rate=1e-2,
        max_steps=4,
        logging_steps=1,
        save_strategy="no",
        use_cpu=True,
        seed=0,
        report_to="none",
        disable_tqdm=True,
        feature_cache_dir=str(tmp_path / "cache"),
    )
    base.update(kw)
    return SpuriousTrainingArguments(**base)


def _trainer(model_dir, args, train=None, eval_rows=None, **kw):
    from hf_spurious.training import SpuriousAwareTrainer

    return SpuriousAwareTrainer(
        str(model_dir),
        args,
        train_dataset=train if train is not None else _rows(),
        eval_dataset=eval_rows,
        **kw,
    )


def _params(trainer) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in trainer.adapter.model.named_parameters()}


def _losses(trainer) -> list[float]:
    return [h["loss"] for h in trainer.state.log_history if "loss" in h]


def _need_templates() -> None:
    try:
        from hf_spurious.text import TEMPLATES  # noqa: F401
    except ImportError:
        pytest.skip(
            "hf_spurious.text.TEMPLATES (text engineer) is not there yet; the default templates come from it"
        )


@pytest.fixture(scope="module")
def clip_dir(tiny_model_dir):
    return tiny_model_dir("clip")


# ----------------------------------------------------------------------------- config
def test_arguments_parse_with_hfargumentparser_and_have_help():
    import dataclasses

    from transformers import HfArgumentParser, TrainingArguments

    _need_templates()
    own = [
        f
        for f in dataclasses.fields(SpuriousTrainingArguments)
        if f.name not in {g.name for g in dataclasses.fields(TrainingArguments)}
    ]
    assert own and all(f.metadata.get("help") for f in own)
    (args,) = HfArgumentParser(SpuriousTrainingArguments).parse_args_into_dataclasses(
        [
            "--output_dir",
            "x",
            "--class_names",
            "landbird",
            "waterbird",
            "--sampling",
            "group_balanced",
            "--objective",
            "group_dro",
            "--image_spurious_weight",
            "0.5",
            "--use_cpu",
        ]
    )
    assert args.class_names == ["landbird", "waterbird"] and args.objective == "group_dro"
    assert args.image_spurious_weight == 0.5 and len(args.templates) == 80
    assert args.remove_unused_columns is False and args.report_to in ("none", [])
    assert args.metric_for_best_model == "worst_group_accuracy" and args.greater_is_better is True
    assert args.cached is True  # projection policy -> cached features by default


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(task="detection"), "task"),
        (dict(clip_weight=-1.0), "clip_weight"),
        (dict(templates=["no placeholder"]), "placeholder|\\{\\}"),
        (dict(text_spurious_weight=1.0, attribute_names=None), "attribute_names"),
        (dict(freeze_policy="full", use_cached_features=True), "frozen encoders"),
    ],
)
def test_arguments_reject_bad_values(tmp_path, kw, match):
    with pytest.raises(ValueError, match=match):
        _args(tmp_path, **kw)


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(task="retrieval", class_names=None, objective="group_dro"), "needs --task classification"),
        (dict(objective="group_dro", clip_weight=0.0, image_class_weight=1.0), "per-example"),
        (dict(clip_weight=0.0), "every loss weight is 0"),
        (dict(task="retrieval", class_names=None, clip_weight=0.0, itm_weight=0.0), "every retrieval"),
        (dict(contrastive_form="cosine"), "contrastive_form"),
        (dict(sampling="balanced"), "sampling"),
        (dict(zero_shot_ce_weight=0.5, class_weight=1.0), "not both"),
        (dict(text_class_weight=1.0, templates=["a photo of a {}."]), "L_lc.*at least 2 templates"),
    ],
)
def test_bad_combinations_fail_when_the_arguments_are_built(tmp_path, kw, match):
    """Checks live in __post_init__ (TRL style): a bad combination fails at construction, not at step one."""
    with pytest.raises(ValueError, match=match):
        _args(tmp_path, **kw)


def test_class_weight_is_a_deprecated_alias_of_zero_shot_ce_weight(tmp_path):
    from transformers import HfArgumentParser

    with pytest.warns(FutureWarning, match="zero_shot_ce_weight"):
        args = _args(tmp_path, class_weight=0.25)
    assert args.zero_shot_ce_weight == 0.25 and args.class_weight is None
    assert _args(tmp_path).zero_shot_ce_weight == 0.0
    with pytest.warns(FutureWarning, match="class_weight is deprecated"):
        (parsed,) = HfArgumentParser(SpuriousTrainingArguments).parse_args_into_dataclasses(
            ["--output_dir", "x", "--class_names", "a", "b", "--templates", "{}", "--class_weight", "2"]
        )
    assert parsed.zero_shot_ce_weight == 2.0


def test_spurious_model_is_a_deprecated_alias_of_trainable_adapter(clip_dir):
    from hf_spurious.models import load_adapter
    from hf_spurious.training import SpuriousModel, TrainableAdapter

    adapter = load_adapter(str(clip_dir))
    with pytest.warns(FutureWarning, match="TrainableAdapter"):
        old = SpuriousModel(adapter)
    assert isinstance(old, TrainableAdapter) and old.model is adapter.model
    feats = torch.ones(2, adapter.model.visual_projection.in_features)
    out = TrainableAdapter(adapter)(image_features=feats)
    assert out["image_embeds"].shape[0] == 2 and out["text_embeds"] is None


def test_trainer_builds_the_loss_module_from_the_arguments(clip_dir, tmp_path):
    from hf_spurious.losses import SpuriousAwareLoss

    tr = _trainer(clip_dir, _args(tmp_path, zero_shot_ce_weight=0.5, image_spurious_weight=2.0, max_steps=1))
    assert isinstance(tr.loss_fn, SpuriousAwareLoss)
    assert tr.loss_fn.active == ("L_CLIP", "zero_shot_ce", "L_vs")
    assert tr.loss_fn.weights["zero_shot_ce"] == 0.5 and tr.loss_fn.weights["L_vs"] == 2.0
    tr.train()
    logs = [h for h in tr.state.log_history if "loss" in h]
    assert logs and all({"clip_loss", "class_ce_loss", "image_spurious_loss"} <= set(h) for h in logs)


# ----------------------------------------------------------------------------- sampler, Group DRO
def test_group_weights_match_naive_and_sampler_balances_groups():
    groups = [0] * 70 + [1] * 20 + [2] * 8 + [3] * 2
    naive = [1.0 / groups.count(g) for g in groups]
    np.testing.assert_allclose(group_weights(groups).numpy(), naive)
    sampler = GroupBalancedSampler(groups, seed=3)
    draws = list(sampler)
    assert len(draws) == len(sampler) == 100
    assert draws == list(GroupBalancedSampler(groups, seed=3))  # seeded
    assert len(set(draws)) < len(draws)  # with replacement (group 3 has only 2 members)
    sampler.set_epoch(1)
    assert list(sampler) != draws
    many = GroupBalancedSampler(groups, num_samples=8000, seed=0)
    freq = np.bincount([groups[i] for i in many], minlength=4) / 8000
    np.testing.assert_allclose(freq, 0.25, atol=0.03)  # binomial sd ~0.005
    with pytest.raises(ValueError, match="example 1"):
        group_weights([0, -1])


def test_group_dro_matches_hand_computed_update():
    dro = GroupDRO([10, 10, 10, 4], step_size=0.5, generalization_adjustment=2.0)
    losses = torch.tensor([1.0, 3.0, 2.0, 4.0])
    groups = torch.tensor([0, 0, 1, 2])  # group 3 absent
    # naive: group means 2, 2, 4, (absent); adjusted + 2/sqrt(n)
    means = {0: 2.0, 1: 2.0, 2: 4.0}
    q = [0.25] * 4
    for g, m in means.items():
        q[g] *= math.exp(0.5 * (m + 2.0 / math.sqrt(10)))
    q = [v / sum(q) for v in q]
    expect = sum(q[g] * m for g, m in means.items())
    got = dro.loss(losses, groups)
    assert got.item() == pytest.approx(expect, rel=1e-9)
    np.testing.assert_allclose(dro.q.numpy(), q, rtol=1e-12)
    before = dro.q.clone()
    dro.loss(losses, groups, update=False)
    assert torch.equal(dro.q, before)
    with pytest.raises(ValueError, match="group ids"):
        dro.loss(losses, torch.tensor([0, 1, 2, 7]))


# ----------------------------------------------------------------------------- collators
def test_collators_stack_exact_tensors(clip_dir):
    from transformers import AutoProcessor

    rows = [
        {"image_features": [1.0, 2.0], "label": 1, "attribute": 0},
        {"image_features": [3.0, 4.0], "label": 0},
    ]
    out = ClassificationCollator(num_attributes=2)(rows)
    torch.testing.assert_close(out["image_features"], torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    assert out["labels"].tolist() == [1, 0] and out["attributes"].tolist() == [0, -1]
    assert out["groups"].tolist() == [2, -1]
    proc = AutoProcessor.from_pretrained(clip_dir)
    raw = RetrievalCollator(proc)(
        [
            {"image": np.zeros((40, 50, 3), np.uint8), "caption": "a dog", "is_counterfactual": True},
            {"image": np.full((32, 32, 3), 255, np.uint8), "caption": "a cat on a bench"},
        ]
    )
    assert raw["pixel_values"].shape == (2, 3, 32, 32)
    assert raw["input_ids"].shape[0] == 2 and raw["is_counterfactual"].tolist() == [True, False]


# ----------------------------------------------------------------------------- one group-id rule
def test_group_id_hand_worked_and_matches_naive():
    from hf_spurious.records import ClassificationRecord, group_id

    # Waterbirds: 0 landbird/land, 1 landbird/water, 2 waterbird/land, 3 waterbird/water
    assert [group_id(y, a, 2) for y in (0, 1) for a in (0, 1)] == [0, 1, 2, 3]
    assert group_id(2, 1, 3) == 7
    rng = np.random.default_rng(0)
    for _ in range(50):
        n_attr = int(rng.integers(1, 6))
        y, a = int(rng.integers(0, 10)), int(rng.integers(0, n_attr))
        naive = [(yy, aa) for yy in range(10) for aa in range(n_attr)].index((y, a))
        assert group_id(y, a, n_attr) == naive
        assert ClassificationRecord("i", "p.png", y, a, "train", num_attributes=n_attr).group == naive
    for bad in [(0, 2, 2), (0, -1, 2), (-1, 0, 2), (0, 0, 0)]:
        with pytest.raises(ValueError):
            group_id(*bad)


def test_collator_and_dataset_groups_use_records_group_id(monkeypatch):
    import hf_spurious.training.collators as collators
    import hf_spurious.training.rows as trainer_module  # dataset_groups lives with the training rows
    from hf_spurious.records import group_id

    calls = []

    def spy(label, attribute, num_attributes):
        calls.append((label, attribute, num_attributes))
        return group_id(label, attribute, num_attributes)

    monkeypatch.setattr(collators, "group_id", spy)
    monkeypatch.setattr(trainer_module, "group_id", spy)
    rows = [{"image_features": [0.0], "label": y, "attribute": a} for y, a in [(0, 2), (1, 0), (2, 1)]]
    rows.append({"image_features": [0.0], "label": 1})  # no attribute -> MISSING, group_id not called
    out = ClassificationCollator(num_attributes=3)(rows)
    assert out["groups"].tolist() == [2, 3, 7, -1]
    assert calls == [(0, 2, 3), (1, 0, 3), (2, 1, 3)]
    calls.clear()
    assert trainer_module.dataset_groups(rows[:3], 3) == [2, 3, 7]
    assert calls == [(0, 2, 3), (1, 0, 3), (2, 1, 3)]
    with pytest.raises(ValueError, match=r"example 1: attribute 5 outside \[0, 3\)"):
        trainer_module.dataset_groups([rows[0], {"label": 0, "attribute": 5}], 3)


def test_feature_cache_key_is_the_adapters_fingerprint(clip_dir):
    from types import SimpleNamespace

    from hf_spurious.models import load_adapter
    from hf_spurious.training import features

    rows = _rows(4)
    key = features.features_fingerprint
    a, b = SimpleNamespace(fingerprint="aaa"), SimpleNamespace(fingerprint="bbb")
    assert key(a, rows, "classification") == key(SimpleNamespace(fingerprint="aaa"), rows, "classification")
    assert key(a, rows, "classification") != key(b, rows, "classification")
    adapter = load_adapter(str(clip_dir))
    before = key(adapter, rows, "classification")
    with torch.no_grad():
        adapter.model.visual_projection.weight[0, 0] += 1.0
    assert key(adapter, rows, "classification") != before  # a weight changed -> the adapter's fingerprint did
    assert not hasattr(features, "_model_fingerprint")  # one fingerprint: the adapter's own


# ----------------------------------------------------------------------------- D′ rows stay undecoded
def test_counterfactual_rows_hold_undecoded_image_cells(clip_dir, monkeypatch):
    import datasets
    from PIL import Image as PILImage
    from transformers import AutoProcessor

    from hf_spurious.images import load_rgb
    from hf_spurious.training.rows import counterfactual_rows

    rng = np.random.default_rng(3)
    arrays = [rng.integers(0, 255, (24, 24, 3), dtype=np.uint8) for _ in range(3)]
    ds = datasets.Dataset.from_dict(
        {
            "image": [PILImage.fromarray(a) for a in arrays],
            "mask": [PILImage.fromarray(np.zeros((24, 24), np.uint8)) for _ in arrays],
            "edited_caption": ["a dog", "a cat", "a kite"],
            "image_id": [5, 6, 7],
        }
    ).cast_column("image", datasets.Image())
    assert ds.features["image"].decode and isinstance(ds[0]["image"], PILImage.Image)

    def no_decoding(self, value, token_per_repo_id=None):
        raise AssertionError("counterfactual_rows decoded an image")

    monkeypatch.setattr(datasets.Image, "decode_example", no_decoding)
    rows = counterfactual_rows(ds)
    monkeypatch.undo()
    assert [r["caption"] for r in rows] == ["a dog", "a cat", "a kite"]
    assert [r["image_id"] for r in rows] == ["cf-5", "cf-6", "cf-7"]
    for row, array in zip(rows, arrays):
        assert set(row) == {"image", "caption", "image_id", "is_counterfactual"}  # no mask
        assert isinstance(row["image"], dict) and isinstance(row["image"]["bytes"], bytes)
        np.testing.assert_array_equal(load_rgb(row["image"], "row"), array)  # PNG: lossless
    batch = RetrievalCollator(AutoProcessor.from_pretrained(clip_dir))(rows)
    assert batch["pixel_values"].shape[0] == 3 and batch["is_counterfactual"].all()


# ----------------------------------------------------------------------------- retrieval Recall@K
def _naive_recall(emb: np.ndarray, owner: np.ndarray, ks) -> dict[str, float]:
    """Dense similarities, stable descending sort, hit = the right image / any own caption in top k."""
    d = emb.shape[1] // 2
    ids = sorted(set(owner.tolist()))
    first = [int(np.flatnonzero(owner == i)[0]) for i in ids]
    img, txt = emb[first, :d].astype(np.float64), emb[:, d:].astype(np.float64)
    cap_img = np.array([ids.index(o) for o in owner])
    out = {}
    for k in ks:
        hits = []
        for i in range(len(ids)):
            order = sorted(range(len(txt)), key=lambda j: (-float(img[i] @ txt[j]), j))[:k]
            hits.append(any(cap_img[j] == i for j in order))
        out[f"i2t_r@{k}"] = 100.0 * float(np.mean(hits))
        hits = []
        for j in range(len(txt)):
            order = sorted(range(len(ids)), key=lambda i: (-float(img[i] @ txt[j]), i))[:k]
            hits.append(cap_img[j] in order)
        out[f"t2i_r@{k}"] = 100.0 * float(np.mean(hits))
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_retrieval_metrics_use_chunked_topk_and_match_naive(seed, monkeypatch):
    import hf_spurious.evaluation.retrieval as engine  # bidirectional_recall's top-k (one Recall@K)
    from hf_spurious.evaluation.topk import topk_similarities
    from hf_spurious.training.trainer import retrieval_recall_metrics

    rng = np.random.default_rng(seed)
    n_images = int(rng.integers(6, 14))
    owner = np.sort(rng.integers(0, n_images, 3 * n_images))
    owner = np.concatenate([np.arange(n_images), owner])  # every image has >= 1 caption
    rng.shuffle(owner)
    emb = rng.integers(-2, 3, (len(owner), 8)).astype(np.float32)  # small ints: many exact ties
    calls = []
    real = topk_similarities

    def spy(queries, gallery, k, **kw):
        calls.append((queries.shape, gallery.shape, k))
        return real(queries, gallery, k, **{**kw, "query_chunk_size": 3, "chunk_size": 5})

    monkeypatch.setattr(engine, "topk_similarities", spy)
    got = retrieval_recall_metrics(emb, owner)
    ks = [k for k in (1, 5, 10) if k <= n_images]
    assert got == pytest.approx(_naive_recall(emb, owner, ks))
    assert calls == [((n_images, 4), (len(owner), 4), max(ks)), ((len(owner), 4), (n_images, 4), max(ks))]


# ----------------------------------------------------------------------------- freezing policies
def _changed(before, after) -> set[str]:
    return {n for n in before if n in after and not torch.equal(before[n], after[n])}


def test_projection_policy_changes_only_projections_and_logit_scale(clip_dir, tmp_path):
    tr = _trainer(
        clip_dir, _args(tmp_path, freeze_policy="projection", image_class_weight=1.0, text_class_weight=1.0)
    )
    before = _params(tr)
    tr.train()
    changed = _changed(before, _params(tr))
    assert changed == {"visual_projection.weight", "text_projection.weight", "logit_scale"}
    assert tr.state.log_history[-1]["train_loss"] is not None


def test_train_text_embeddings_adds_the_codes_extra_text_parameters(clip_dir, tmp_path):
    tr = _trainer(clip_dir, _args(tmp_path, freeze_policy="projection", train_text_embeddings=True))
    assert not tr.args.cached
    before = _params(tr)
    tr.train()
    changed = _changed(before, _params(tr))
    extra = {n for n in changed if n.startswith(("text_model.embeddings.", "text_model.final_layer_norm."))}
    assert "text_model.embeddings.token_embedding.weight" in extra
    assert changed - extra == {"visual_projection.weight", "text_projection.weight", "logit_scale"}


def test_full_policy_changes_encoders_too(clip_dir, tmp_path):
    tr = _trainer(clip_dir, _args(tmp_path, freeze_policy="full"))
    before = _params(tr)
    tr.train()
    changed = _changed(before, _params(tr))
    assert any(n.startswith("vision_model.") for n in changed) and any(
        n.startswith("text_model.") for n in changed
    )
    assert "visual_projection.weight" in changed


def test_lora_policy_changes_only_adapter_weights(clip_dir, tmp_path):
    tr = _trainer(clip_dir, _args(tmp_path, freeze_policy="lora", lora_target_modules=["q_proj", "v_proj"]))
    before = _params(tr)
    tr.train()
    changed = _changed(before, _params(tr))
    assert changed and all("lora_" in n for n in changed)


# ----------------------------------------------------------------------------- cached features
def test_cached_features_give_the_same_loss_trajectory(clip_dir, tmp_path):
    kw = dict(
        freeze_policy="projection",
        image_class_weight=1.0,
        text_class_weight=1.0,
        image_spurious_weight=1.0,
        text_spurious_weight=1.0,
        max_steps=6,
    )
    cached = _trainer(clip_dir, _args(tmp_path / "a", use_cached_features=True, **kw))
    plain = _trainer(clip_dir, _args(tmp_path / "b", use_cached_features=False, **kw))
    assert "image_features" in cached.train_dataset[0] and "image" in plain.train_dataset[0]
    cached.train()
    plain.train()
    a, b = _losses(cached), _losses(plain)
    assert len(a) == len(b) == 6
    # documented tolerance: float32 re-association between batched and per-batch encoder passes
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    for key in ("image_class_loss", "text_spurious_loss"):
        np.testing.assert_allclose(
            [h[key] for h in cached.state.log_history if key in h],
            [h[key] for h in plain.state.log_history if key in h],
            rtol=1e-5,
        )
    assert len(a) > 1 and a[0] != a[-1]  # it trained


def test_one_attribute_prompt_keeps_the_data_s_attribute_groups(clip_dir, tmp_path):
    """L_ls with a single prompt ("water", as Yang et al.'s ImageNet study uses "baby") on data with two
    attribute values: 2 x 2 groups, not 2 x 1 (where landbird/water and waterbird/land shared group 1)."""
    args = _args(
        tmp_path,
        attribute_names=["water"],
        text_spurious_weight=1.0,
        sampling="group_balanced",
        objective="group_dro",
        max_steps=2,
    )
    tr = _trainer(clip_dir, args)
    assert tr.num_attributes == 2
    assert sorted(set(tr.train_groups)) == [0, 1, 2, 3] and tr.dro.q.numel() == 4
    tr.train()
    assert "train_loss" in tr.state.log_history[-1]


def test_feature_cache_is_reused_by_fingerprint(clip_dir, tmp_path):
    from hf_spurious.training.features import cache_features

    tr = _trainer(clip_dir, _args(tmp_path))
    rows = _rows(6)
    first = cache_features(tr.adapter, rows, task="classification", cache_dir=tmp_path / "fc")
    assert len(list((tmp_path / "fc").iterdir())) == 1
    second = cache_features(tr.adapter, rows, task="classification", cache_dir=tmp_path / "fc")
    np.testing.assert_array_equal(first["image_features"], second["image_features"])
    cache_features(tr.adapter, _rows(6, seed=1), task="classification", cache_dir=tmp_path / "fc")
    assert len(list((tmp_path / "fc").iterdir())) == 2  # other data -> other fingerprint
    with torch.no_grad():
        pv = tr.processing_class(images=[r["image"] for r in rows], return_tensors="pt")["pixel_values"]
        direct = tr.adapter.image_features(pv).numpy()
    np.testing.assert_allclose(first["image_features"], direct, rtol=1e-5, atol=1e-6)


def test_feature_cache_key_follows_image_content_not_paths(clip_dir, tmp_path, caplog, monkeypatch):
    """Issue 13 rule 1: replacing every image file with black (same paths) recomputes the features; the
    same content is reused and the log says so and why; a datasets.Dataset of paths is keyed the same way."""
    import logging

    import datasets
    from PIL import Image

    from hf_spurious.training.features import cache_features, content_digest

    tr = _trainer(clip_dir, _args(tmp_path))
    rows = []
    for i, row in enumerate(_rows(4)):
        path = tmp_path / f"im{i}.png"
        Image.fromarray(row["image"]).save(path)
        rows.append({**row, "image": str(path)})
    cache = tmp_path / "fc"
    first = cache_features(tr.adapter, rows, task="classification", cache_dir=cache)
    ds = datasets.Dataset.from_dict({k: [r[k] for r in rows] for k in rows[0]}).cast_column(
        "image", datasets.Image()
    )
    before = content_digest(ds)
    monkeypatch.setattr(logging.getLogger("transformers"), "propagate", True)
    with caplog.at_level(logging.WARNING):
        cache_features(tr.adapter, rows, task="classification", cache_dir=cache)
    assert "reusing" in caplog.text and "same row content" in caplog.text
    for r in rows:
        Image.new("RGB", (32, 32)).save(r["image"])  # same paths, black pixels
    assert content_digest(ds) != before
    black = cache_features(tr.adapter, rows, task="classification", cache_dir=cache)
    assert len([p for p in cache.iterdir() if not p.name.startswith(".")]) == 2
    assert not np.allclose(first["image_features"], black["image_features"])
    with pytest.raises(ValueError, match=r"missing\.png"):
        content_digest([{"image": str(tmp_path / "missing.png"), "label": 0}])


def test_feature_rows_match_the_cached_dataset(clip_dir, tmp_path):
    from hf_spurious.training.features import cache_features, feature_rows

    tr = _trainer(clip_dir, _args(tmp_path))
    cached = cache_features(tr.adapter, _rows(7), task="classification", cache_dir=tmp_path / "fc")
    rows = feature_rows(cached)
    assert isinstance(rows, list) and len(rows) == len(cached) == 7
    for i, row in enumerate(rows):
        expected = cached[i]
        assert set(row) == set(expected)
        for key, value in expected.items():
            np.testing.assert_array_equal(row[key], value)
    assert feature_rows(cached, max_bytes=0) is cached  # too large for memory: stays memory-mapped


# ----------------------------------------------------------------------------- logging, eval, bad input
def test_terms_are_logged_and_eval_reports_group_accuracies(clip_dir, tmp_path):
    tr = _trainer(
        clip_dir,
        _args(tmp_path, image_class_weight=1.0, image_spurious_weight=1.0, max_steps=2),
        eval_rows=_rows(16, seed=5),
    )
    tr.train()
    train_logs = [h for h in tr.state.log_history if "loss" in h]
    assert all(
        "clip_loss" in h and "image_class_loss" in h and "image_spurious_loss" in h for h in train_logs
    )
    metrics = tr.evaluate()
    for key in (
        "eval_loss",
        "eval_clip_loss",
        "eval_worst_group_accuracy",
        "eval_average_accuracy",
        "eval_group_0_accuracy",
        "eval_group_3_accuracy",
    ):
        assert key in metrics, key
    groups = [metrics[f"eval_group_{g}_accuracy"] for g in range(4)]
    assert metrics["eval_worst_group_accuracy"] == pytest.approx(min(groups))


def test_missing_attribute_labels_for_attribute_loss_is_a_clear_error(clip_dir, tmp_path):
    rows = _rows(16)
    for r in rows[:3]:
        del r["attribute"]
    tr = _trainer(clip_dir, _args(tmp_path, image_spurious_weight=1.0, max_steps=1), train=rows)
    with pytest.raises(ValueError, match="attribute"):
        tr.train()


def test_group_balanced_sampling_needs_attributes(clip_dir, tmp_path):
    rows = [{k: v for k, v in r.items() if k != "attribute"} for r in _rows(8)]
    with pytest.raises(ValueError, match="attribute"):
        _trainer(clip_dir, _args(tmp_path, sampling="group_balanced"), train=rows)


def test_batch_without_positives_raises_or_is_skipped_and_counted(clip_dir, tmp_path):
    rows = _rows(
        4
    )  # 4 distinct (class, attribute) groups: with batch 4, L_vs(class_attribute) has no positive
    kw = dict(
        image_spurious_weight=1.0,
        spurious_grouping="class_attribute",
        per_device_train_batch_size=4,
        max_steps=2,
    )
    with pytest.raises(NoPositivesError):
        _trainer(clip_dir, _args(tmp_path / "r", if_no_positives="raise", **kw), train=rows).train()
    tr = _trainer(clip_dir, _args(tmp_path / "s", if_no_positives="skip", **kw), train=rows)
    tr.train()
    logs = [h for h in tr.state.log_history if "loss" in h]
    assert all(h["skipped_image_spurious"] == 1 and "image_spurious_loss" not in h for h in logs)
    assert all(math.isfinite(h["loss"]) for h in logs)


def test_nan_loss_is_a_clear_error(clip_dir, tmp_path):
    tr = _trainer(clip_dir, _args(tmp_path, max_steps=1))
    rows = [dict(r) for r in tr.train_dataset]
    for r in rows[::4]:  # every batch of 8 gets NaN features
        r["image_features"] = np.full_like(r["image_features"], np.nan)
    tr.train_dataset = rows
    with pytest.raises(FloatingPointError, match="non-finite loss"):
        tr.train()


# ----------------------------------------------------------------------------- checkpoints
def test_checkpoint_resume_continues_the_same_run(clip_dir, tmp_path):
    kw = dict(
        max_steps=6,
        save_strategy="steps",
        save_steps=3,
        sampling="group_balanced",
        objective="group_dro",
        image_class_weight=1.0,
    )
    full = _trainer(clip_dir, _args(tmp_path / "full", **kw))
    full.train()
    part = _trainer(clip_dir, _args(tmp_path / "part", **kw))
    ckpt = tmp_path / "part" / "out" / "checkpoint-3"
    part.train()
    assert (ckpt / "model.safetensors").exists() and (ckpt / "group_dro.json").exists()
    resumed = _trainer(clip_dir, _args(tmp_path / "part", **kw))
    resumed.train(resume_from_checkpoint=str(ckpt))
    np.testing.assert_allclose(_losses(resumed)[-3:], _losses(full)[-3:], rtol=1e-5)
    for name, value in _params(full).items():
        torch.testing.assert_close(_params(resumed)[name], value, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(resumed.dro.q.numpy(), full.dro.q.numpy(), rtol=1e-6)


def test_saved_model_reloads_and_card_has_tags(clip_dir, tmp_path):
    from hf_spurious.models import load_adapter

    tr = _trainer(clip_dir, _args(tmp_path, max_steps=2))
    tr.train()
    tr.save_model()
    out = Path(tr.args.output_dir)
    reloaded = load_adapter(str(out))
    for name, value in tr.adapter.model.state_dict().items():
        torch.testing.assert_close(reloaded.model.state_dict()[name], value)
    tr.create_model_card(model_name="tiny-spurious")
    card = (out / "README.md").read_text()
    assert "hf-spurious" in card and "spurious-correlations" in card


# ----------------------------------------------------------------------------- a small classification world
def _world_rows(world: Path, split: str) -> list[dict]:
    try:
        from hf_spurious.sources import read_waterbirds
        from hf_spurious.training.rows import classification_rows

        return classification_rows(read_waterbirds(str(world), split))
    except (ImportError, AttributeError):  # reader not there yet: read the WILDS metadata.csv directly
        code = {"train": "0", "val": "1", "test": "2"}[split]
        with open(world / "metadata.csv") as f:
            return [
                {"image": str(world / r["img_filename"]), "label": int(r["y"]), "attribute": int(r["place"])}
                for r in csv.DictReader(f)
                if r["split"] == code
            ]


@pytest.mark.parametrize("sampling, objective", [("group_balanced", "erm"), ("group_balanced", "group_dro")])
def test_world_training_selects_best_checkpoint_by_val_worst_group(
    clip_dir, waterbirds_world, tmp_path, sampling, objective
):
    train, val = _world_rows(waterbirds_world, "train"), _world_rows(waterbirds_world, "val")
    args = _args(
        tmp_path,
        class_names=["landbird", "waterbird"],
        sampling=sampling,
        objective=objective,
        max_steps=-1,
        num_train_epochs=4,
        per_device_train_batch_size=16,
        learning_rate=5e-2,
        eval_strategy="epoch",
        save_strategy="epoch",
        load_best_model_at_end=True,
        logging_steps=5,
    )
    tr = _trainer(clip_dir, args, train=train, eval_rows=val)
    tr.train()
    evals = [h for h in tr.state.log_history if "eval_worst_group_accuracy" in h]
    assert len(evals) == 4
    scores = [h["eval_worst_group_accuracy"] for h in evals]
    best = int(np.argmax(scores))  # first epoch reaching the max (strict improvement)
    assert tr.state.best_metric == pytest.approx(scores[best])
    assert tr.state.best_model_checkpoint.endswith(f"checkpoint-{evals[best]['step']}")
    final = tr.evaluate()
    assert final["eval_worst_group_accuracy"] == pytest.approx(scores[best])
    # the weights in memory are the best checkpoint's, not the last epoch's
    from safetensors.torch import load_file

    saved = load_file(str(Path(tr.state.best_model_checkpoint) / "model.safetensors"))
    current = tr.adapter.model.state_dict()
    for name, value in current.items():
        torch.testing.assert_close(value, saved[name])
    last = load_file(str(Path(args.output_dir) / f"checkpoint-{evals[-1]['step']}" / "model.safetensors"))
    if best != len(evals) - 1:
        assert any(
            not torch.equal(current[n], last[n]) for n in last
        )  # training moved on after the best epoch


# ----------------------------------------------------------------------------- retrieval
def test_retrieval_on_d_and_counterfactuals_reports_recall(clip_dir, tmp_path):
    from hf_spurious.training.rows import counterfactual_rows

    rng = np.random.default_rng(0)
    words = ["dog", "cat", "frisbee", "horse", "car", "boat", "kite", "bench"]
    d = [
        {
            "image": rng.integers(0, 255, (32, 32, 3), dtype=np.uint8),
            "caption": f"a {words[i % 8]} and a {words[(i + 3) % 8]}",
            "image_id": f"img{i}",
            "is_counterfactual": False,
        }
        for i in range(12)
    ]
    d_prime = counterfactual_rows(
        [
            {
                "image": rng.integers(0, 255, (32, 32, 3), dtype=np.uint8),
                "edited_caption": f"a {words[i % 8]}",
                "image_id": i,
            }
            for i in range(4)
        ]
    )
    assert all(r["is_counterfactual"] and r["image_id"].startswith("cf-") for r in d_prime)
    args = _args(tmp_path, task="retrieval", class_names=None, attribute_names=None, max_steps=3)
    tr = _trainer(clip_dir, args, train=d + d_prime, eval_rows=d)
    tr.train()
    metrics = tr.evaluate()
    assert {"eval_loss", "eval_i2t_r@1", "eval_t2i_r@1", "eval_i2t_r@10"} <= set(metrics)
    assert 0.0 <= metrics["eval_i2t_r@1"] <= metrics["eval_i2t_r@5"] <= metrics["eval_i2t_r@10"] <= 100.0


# ----------------------------------------------------------------------------- CLI and DDP
def test_cli_train_runs_on_a_waterbirds_world(clip_dir, waterbirds_world, tmp_path):
    _need_templates()
    try:
        from hf_spurious.sources import read_waterbirds  # noqa: F401
    except (ImportError, AttributeError):
        pytest.skip("hf_spurious.sources.read_waterbirds (world+readers engineer) is not there yet")
    from hf_spurious.cli import main

    out = tmp_path / "cli"
    code = main(
        [
            "train",
            "--model",
            str(clip_dir),
            "--dataset",
            "waterbirds",
            "--data_dir",
            str(waterbirds_world),
            "--preset",
            "waterbirds",
            "--output_dir",
            str(out),
            "--num_train_epochs",
            "1",
            "--per_device_train_batch_size",
            "32",
            "--use_cpu",
            "--save_total_limit",
            "1",
            "--disable_tqdm",
            "true",
        ]
    )
    assert code == 0
    metrics = json.loads((out / "final_metrics.json").read_text())
    assert "eval_worst_group_accuracy" in metrics and (out / "model.safetensors").exists()
    args = __import__("torch").load(out / "training_args.bin", weights_only=False)
    assert args.optim == "sgd" and args.learning_rate == 1e-4 and args.sampling == "group_balanced"


def test_cli_train_infers_the_task_from_the_dataset(clip_dir, shapes_world, tmp_path):
    from hf_spurious.cli import main

    out = tmp_path / "shapes"
    argv = ["train", "--model", str(clip_dir), "--dataset", "shapes", "--data_dir", str(shapes_world)]
    code = main(
        [
            *argv,
            "--output_dir",
            str(out),
            "--max_steps",
            "1",
            "--per_device_train_batch_size",
            "8",
            "--use_cpu",
            "--eval_split",
            "",
            "--max_train_samples",
            "16",
            "--disable_tqdm",
            "true",
            "--report_to",
            "none",
        ]
    )
    assert code == 0
    args = torch.load(out / "training_args.bin", weights_only=False)
    assert args.task == "retrieval" and (out / "model.safetensors").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--task", "classification"],
            "--dataset shapes is a retrieval dataset but the task is classification",
        ),
        (["--data_dir", "/nonexistent/shapes"], "/nonexistent/shapes"),
        (["--clip_weight", "-1"], "clip_weight must be >= 0"),
    ],
)
def test_cli_train_user_errors_are_parser_errors(clip_dir, shapes_world, tmp_path, capsys, extra, message):
    from hf_spurious.cli import main

    argv = ["train", "--model", str(clip_dir), "--dataset", "shapes", "--data_dir", str(shapes_world)]
    with pytest.raises(SystemExit) as info:
        main([*argv, "--output_dir", str(tmp_path / "o"), "--use_cpu", *extra])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "hf-spurious train: error:" in err and message in err and "Traceback" not in err


@pytest.mark.slow
def test_accelerate_launch_two_cpu_processes_trains_and_evaluates(clip_dir, waterbirds_world, tmp_path):
    """examples/accelerate/ddp_cpu.yaml (MULTI_GPU launcher, gloo on CPU) starts 2 real processes of ONE
    training (world size 2 without passing --use_cpu: the arguments turn it on); the Waterbirds example
    trains 2 steps under DDP and evaluates."""
    _need_templates()
    out = tmp_path / "ddp"
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "TRANSFORMERS_VERBOSITY": "error",
        "TQDM_DISABLE": "1",
        "PYTHONPATH": str(ROOT / "src"),
    }
    cmd = [
        str(Path(sys.executable).with_name("accelerate")),
        "launch",
        "--config_file",
        str(ROOT / "examples" / "accelerate" / "ddp_cpu.yaml"),
        str(ROOT / "examples" / "finetune_waterbirds.py"),
        "--model",
        str(clip_dir),
        "--data_dir",
        str(waterbirds_world),
        "--output_dir",
        str(out),
        "--max_steps",
        "2",
        "--per_device_train_batch_size",
        "8",
        "--eval_strategy",
        "no",
        "--save_strategy",
        "no",
        "--load_best_model_at_end",
        "false",
        "--report_to",
        "none",
    ]
    if not Path(cmd[0]).exists():
        cmd[:1] = [sys.executable, "-m", "accelerate.commands.launch"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "final_metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["global_step"] == 2
    caches = [p.name for p in (out / "feature_cache").iterdir()]
    assert len(caches) == 2 and all(c.startswith("features-") for c in caches)  # train + val, built once
    assert "eval_worst_group_accuracy" in metrics and math.isfinite(metrics["eval_loss"])
    assert (out / "model.safetensors").exists()


def test_blip_retrieval_trains_itc_and_itm(tiny_model_dir, tmp_path):
    blip = tiny_model_dir("blip")
    rng = np.random.default_rng(1)
    rows = [
        {
            "image": rng.integers(0, 255, (32, 32, 3), dtype=np.uint8),
            "caption": f"a dog number {i % 3}",
            "image_id": f"im{i // 2}",
        }
        for i in range(8)
    ]
    args = _args(
        tmp_path,
        task="retrieval",
        class_names=None,
        attribute_names=None,
        freeze_policy="full",
        itm_weight=1.0,
        max_steps=2,
        per_device_train_batch_size=4,
        lr_step_decay_every_epochs=0.5,
    )
    tr = _trainer(blip, args, train=rows, eval_rows=rows)
    before = _params(tr)
    tr.train()
    logs = [h for h in tr.state.log_history if "loss" in h]
    assert all("itm_loss" in h and "clip_loss" in h for h in logs)
    assert logs[0]["loss"] == pytest.approx(logs[0]["clip_loss"] + logs[0]["itm_loss"], rel=1e-5)
    changed = _changed(before, _params(tr))
    assert any(n.startswith("itm_head.") for n in changed) and "temp" in changed
    # step decay x0.5 every half epoch (1 step here): lr halves after each step
    lrs = [h["learning_rate"] for h in logs]
    assert lrs[1] == pytest.approx(lrs[0] * 0.5)
    assert "eval_i2t_r@1" in tr.evaluate()


def _blip_rows(n: int, images: list[int], seed: int = 1) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [
        {
            "image": rng.integers(0, 255, (32, 32, 3), dtype=np.uint8),
            "caption": f"a dog number {i % 3}",
            "image_id": f"im{images[i]}",
        }
        for i in range(n)
    ]


def test_blip_evaluation_survives_a_batch_of_one_images_captions(tiny_model_dir, tmp_path):
    """Issue 12 item 8: the last eval batch holds 2 captions of one image (10 rows at eval batch 4). ITM has
    no negative there: the term is skipped and counted, the evaluation finishes (it raised before)."""
    blip = tiny_model_dir("blip")
    eval_rows = _blip_rows(10, [0, 0, 1, 1, 2, 2, 3, 3, 4, 4])
    args = _args(
        tmp_path,
        task="retrieval",
        class_names=None,
        attribute_names=None,
        freeze_policy="full",
        itm_weight=1.0,
        per_device_eval_batch_size=4,
    )
    tr = _trainer(blip, args, train=_blip_rows(8, [i // 2 for i in range(8)]), eval_rows=eval_rows)
    metrics = tr.evaluate()
    assert metrics["eval_skipped_itm"] == 1 and math.isfinite(metrics["eval_loss"])
    assert "eval_i2t_r@1" in metrics and metrics["eval_itm_loss"] > 0


@pytest.mark.parametrize("temp, clamped", [(0.6, 0.5), (0.0005, 0.001)])
def test_blip_temperature_is_clamped_after_every_optimizer_step(tiny_model_dir, tmp_path, temp, clamped):
    """Issue 12 item 7: BLIP's temp is clamped to [0.001, 0.5] after each step, as BLIP trains (a learning
    rate of 1e-9 barely moves it, so without the clamp it would stay outside the range)."""
    blip = tiny_model_dir("blip")
    args = _args(
        tmp_path,
        task="retrieval",
        class_names=None,
        attribute_names=None,
        logit_scale_init=-math.log(temp),
        learning_rate=1e-9,
        max_steps=1,
        per_device_train_batch_size=4,
    )
    tr = _trainer(blip, args, train=_blip_rows(8, [i // 2 for i in range(8)]))
    assert tr.adapter.temp.item() == pytest.approx(temp)
    tr.train()
    assert tr.adapter.temp.item() == pytest.approx(clamped)


def test_group_dro_all_reduce_uses_global_group_means():
    """Two 'processes' with half batches each reach the q of one process with the whole batch."""
    losses, groups = torch.tensor([1.0, 3.0, 2.0, 4.0, 0.5, 1.5]), torch.tensor([0, 1, 1, 2, 3, 0])
    whole = GroupDRO([5, 5, 5, 5], step_size=0.3)
    whole.loss(losses, groups)
    halves = [GroupDRO([5, 5, 5, 5], step_size=0.3) for _ in range(2)]
    parts = [(losses[:3], groups[:3]), (losses[3:], groups[3:])]
    total = halves[0]._stats(*parts[0]) + halves[1]._stats(*parts[1])
    for dro, part in zip(halves, parts):
        dro.loss(*part, all_reduce=lambda _: total)
        torch.testing.assert_close(dro.q, whole.q)


@pytest.mark.slow
def test_on_a_shapes_world_balanced_sampling_and_group_dro_beat_uniform_erm_on_worst_group(tmp_path):
    """A SpuriousShapes classification world (32 px, 90 % of train images with the bird on its own place,
    birds drawn large and opaque so a tiny random frozen CLIP's pooled features carry their colour);
    projection-only training on cached features, zero-shot-head cross-entropy; selection by val
    worst-group accuracy (the Trainer's best-checkpoint metric). Arms: uniform ERM, group-balanced ERM,
    uniform sampling + Group DRO (eta 0.1). Measured best val worst-group (uniform / balanced / DRO), world
    seeds 0-2 with 12 epochs: 24/66/58, 16/54/56, 2/62/60; seed 0 with 20 epochs: 30/64/76. The test
    (seed 0) asks for a 25-point margin; the smallest margin seen was 34."""
    from hf_spurious.models.tiny import save_tiny
    from hf_spurious.world import ClassificationWorldConfig, generate_world

    world = tmp_path / "world"
    config = ClassificationWorldConfig(
        train_size=800,
        val_size=200,
        test_size=4,
        pretrain_size=0,
        image_size=32,
        seed=0,
        train_agreement=0.9,
        train_waterbird_fraction=0.5,
        bird_size_range=(0.4, 0.6),
        alpha_range=(0.9, 1.0),
        colour_informativeness=1.0,
    )
    generate_world(config, world)
    model = save_tiny("clip", tmp_path / "clip", image_size=32, patch_size=8, hidden_size=32, num_layers=2)
    train, val = _world_rows(world, "train"), _world_rows(world, "val")
    best = {}
    for sampling, objective in (("uniform", "erm"), ("group_balanced", "erm"), ("uniform", "group_dro")):
        args = _args(
            tmp_path / f"{sampling}-{objective}",
            templates=TEMPLATES[:1],
            class_names=["landbird", "waterbird"],
            sampling=sampling,
            objective=objective,
            dro_step_size=0.1,
            clip_weight=0.0,
            zero_shot_ce_weight=1.0,
            logit_scale_init=4.6,
            max_steps=-1,
            num_train_epochs=12,
            per_device_train_batch_size=32,
            per_device_eval_batch_size=256,
            learning_rate=1e-2,
            eval_strategy="epoch",
            logging_steps=1000,
            feature_cache_dir=str(tmp_path / "cache"),
        )
        tr = _trainer(model, args, train=train, eval_rows=val)
        tr.train()
        scores = [
            h["eval_worst_group_accuracy"] for h in tr.state.log_history if "eval_worst_group_accuracy" in h
        ]
        best[(sampling, objective)] = max(scores)  # = the best checkpoint's val worst-group accuracy
    uniform = best[("uniform", "erm")]
    assert best[("group_balanced", "erm")] >= uniform + 25, best
    assert best[("uniform", "group_dro")] >= uniform + 25, best


def test_push_to_hub_uploads_model_processor_and_tagged_card(clip_dir, tmp_path, monkeypatch):
    """push_to_hub behaviour, with the Hub client replaced by a recorder (no network here)."""
    import transformers.trainer as trainer_module

    uploaded: dict = {}

    class FakeApi:
        def create_repo(self, repo_id, **kw):
            return type("Url", (), {"repo_id": f"me/{repo_id}"})()

        def upload_folder(self, repo_id, folder_path, **kw):
            uploaded["repo"] = repo_id
            uploaded["files"] = sorted(p.name for p in Path(folder_path).iterdir())
            uploaded["card"] = (Path(folder_path) / "README.md").read_text()

    monkeypatch.setattr(trainer_module, "hf_api", lambda *a, **k: FakeApi())
    tr = _trainer(clip_dir, _args(tmp_path, max_steps=1, push_to_hub=True, hub_model_id="tiny-spurious"))
    tr.train()
    tr.push_to_hub()
    assert uploaded["repo"] == "me/tiny-spurious"
    assert {"model.safetensors", "config.json", "README.md"} <= set(uploaded["files"])
    assert "hf-spurious" in uploaded["card"] and "spurious-correlations" in uploaded["card"]


def test_lora_checkpoint_resume_restores_adapter_weights(clip_dir, tmp_path):
    kw = dict(freeze_policy="lora", max_steps=4, save_strategy="steps", save_steps=2)
    full = _trainer(clip_dir, _args(tmp_path / "full", **kw))
    full.train()
    part = _trainer(clip_dir, _args(tmp_path / "part", **kw))
    part.train()
    ckpt = tmp_path / "part" / "out" / "checkpoint-2"
    assert (ckpt / "adapter_model.safetensors").exists()
    resumed = _trainer(clip_dir, _args(tmp_path / "part", **kw))
    resumed.train(resume_from_checkpoint=str(ckpt))
    lora = {n: p for n, p in _params(full).items() if "lora_" in n}
    assert lora
    for name, value in lora.items():
        torch.testing.assert_close(_params(resumed)[name], value, rtol=1e-5, atol=1e-6)
