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
        from hf_spurious.data import read_waterbirds
        from hf_spurious.training.data import classification_rows

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
    from hf_spurious.training.data import counterfactual_rows

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
        from hf_spurious.data import read_waterbirds  # noqa: F401
    except (ImportError, AttributeError):
        pytest.skip("hf_spurious.data.read_waterbirds (world+readers engineer) is not there yet")
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


DDP_SCRIPT = """
import json, os, sys
import numpy as np, torch
torch.set_num_threads(1)
from hf_spurious.training import SpuriousAwareTrainer, SpuriousTrainingArguments
rng = np.random.default_rng(0)
rows = [{"image": rng.integers(0, 255, (32, 32, 3), dtype=np.uint8), "label": i % 2, "attribute": (i // 2) % 2}
        for i in range(32)]
args = SpuriousTrainingArguments(output_dir=sys.argv[2], templates=["a photo of a {}.", "a {}."], class_names=["dog", "cat"],
    per_device_train_batch_size=4, max_steps=3, logging_steps=1, save_strategy="no", report_to="none", use_cpu=True,
    image_class_weight=1.0, sampling="group_balanced", learning_rate=1e-2, disable_tqdm=True,
    feature_cache_dir=os.path.join(sys.argv[2], "cache"))
tr = SpuriousAwareTrainer(sys.argv[1], args, train_dataset=rows, eval_dataset=rows[:16])
tr.train()
m = tr.evaluate()
w = tr.adapter.model.visual_projection.weight.detach()
json.dump({"checksum": float(w.double().sum()), "first": float(w.flatten()[0])},
          open(os.path.join(sys.argv[2], f"rank{tr.args.process_index}.json"), "w"))
if tr.is_world_process_zero():
    json.dump({"world": tr.args.world_size, "eval": m, "n_logs": len(tr.state.log_history)},
              open(os.path.join(sys.argv[2], "ddp.json"), "w"))
"""


def test_two_process_cpu_ddp_trains_and_evaluates(clip_dir, tmp_path):
    script = tmp_path / "ddp_train.py"
    script.write_text(DDP_SCRIPT)
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "TRANSFORMERS_VERBOSITY": "error",
        "PYTHONPATH": str(ROOT / "src"),
    }
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(script),
        str(clip_dir),
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "ddp.json").read_text())
    assert result["world"] == 2
    assert "eval_worst_group_accuracy" in result["eval"] and math.isfinite(result["eval"]["eval_loss"])
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0] == ranks[1]  # gradients were all-reduced: both replicas hold the same weights


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


def _feature_world(counts: list[int], seed: int, dim: int) -> list[dict]:
    """Pre-computed encoder features of a Waterbirds-like world: a noisy core feature (the label) on
    axis 0 and a clean spurious feature (the attribute) on axis 1; group g = 2 * label + attribute."""
    rng = np.random.default_rng(seed)
    rows = []
    for g, n in enumerate(counts):
        y, a = divmod(g, 2)
        for _ in range(n):
            f = rng.normal(0.0, 1.0, dim).astype(np.float32)
            f[0] += 2 * y - 1
            f[1] += 2.0 * (2 * a - 1)
            rows.append({"image_features": f, "label": y, "attribute": a})
    return rows


def test_group_balanced_and_group_dro_beat_uniform_on_worst_group(clip_dir, tmp_path):
    """95 % of train agrees (land/land, water/water): uniform ERM leans on the spurious axis; group-balanced
    sampling and Group DRO (WILDS: balanced sampling, eta 0.01) do not. Observed (3 seeds): uniform 18-26,
    balanced 66-74, DRO 66-72 worst-group on val; the test asks for a 25-point margin."""
    dim = json.loads((Path(clip_dir) / "config.json").read_text())["vision_config"]["hidden_size"]
    train, val = _feature_world([190, 10, 10, 190], 0, dim), _feature_world([50] * 4, 10, dim)
    best = {}
    for sampling, objective in (
        ("uniform", "erm"),
        ("group_balanced", "erm"),
        ("group_balanced", "group_dro"),
    ):
        args = _args(
            tmp_path / f"{sampling}-{objective}",
            templates=TEMPLATES[:2],
            sampling=sampling,
            objective=objective,
            max_steps=-1,
            num_train_epochs=6,
            per_device_train_batch_size=32,
            learning_rate=5e-2,
            eval_strategy="epoch",
            save_strategy="epoch",
            load_best_model_at_end=True,
            save_total_limit=1,
            logging_steps=50,
        )
        tr = _trainer(clip_dir, args, train=train, eval_rows=val)
        tr.train()
        best[(sampling, objective)] = tr.state.best_metric
    uniform = best[("uniform", "erm")]
    assert best[("group_balanced", "erm")] >= uniform + 25, best
    assert best[("group_balanced", "group_dro")] >= uniform + 25, best


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
