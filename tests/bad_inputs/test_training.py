"""Bad training settings and inputs (issue 13, rule 4): each is refused when read, naming the setting,
the allowed range and the value, instead of "every loss weight is 0", "Lower the learning rate", a
gradient-ascent schedule or every prediction becoming class 0."""

from __future__ import annotations

import math

import torch

from ._cases import Case, cases, check

NAN, INF = math.nan, math.inf


def _args(tmp, **kw):
    from hf_spurious.training import SpuriousTrainingArguments

    base = dict(
        output_dir=str(tmp / "out"),
        class_names=["landbird", "waterbird"],
        templates=["a photo of a {}."],
        use_cpu=True,
        report_to="none",
    )
    return SpuriousTrainingArguments(**{**base, **kw})


def _loss(**kw):
    from hf_spurious.losses import SpuriousAwareLoss

    return SpuriousAwareLoss(**kw)


def _sigmoid_without_bias(tmp):
    loss = _loss(task="retrieval", retrieval_loss="sigmoid")
    return loss(torch.randn(4, 3), torch.randn(4, 3), 1.0)


def _dro_group_out_of_range(tmp):
    from hf_spurious.training.group_dro import GroupDRO

    return GroupDRO([3, 3, 3, 3]).loss(torch.ones(3), torch.tensor([0, 1, 4]))


def _dro_state_of_other_groups(tmp):
    from hf_spurious.training.group_dro import GroupDRO

    return GroupDRO([3, 3, 3, 3]).load_state_dict({"q": [0.5, 0.5]})


def _sampler_example_without_group(tmp):
    from hf_spurious.training.samplers import GroupBalancedSampler

    return GroupBalancedSampler([0, -1, 1])


def _feature_cache_missing_image(tmp):
    from hf_spurious.training.features import content_digest

    return content_digest([{"image": str(tmp / "gone.jpg"), "label": 0}])


CASES = [
    Case("loss weight NaN", lambda t: _args(t, clip_weight=NAN), says=("clip_weight", "finite", "nan")),
    Case(
        "loss weight inf", lambda t: _args(t, image_class_weight=INF), says=("image_class_weight", "finite")
    ),
    Case(
        "loss weight negative",
        lambda t: _args(t, text_spurious_weight=-1.0),
        says=("text_spurious_weight", ">= 0"),
    ),
    Case("loss weight not a number", lambda t: _args(t, itm_weight="high"), says=("itm_weight", "number")),
    Case(
        "lr decay factor negative",
        lambda t: _args(t, lr_step_decay_factor=-2.0),
        says=("lr_step_decay_factor", "(0, 1]", "-2"),
    ),
    Case(
        "lr decay factor zero",
        lambda t: _args(t, lr_step_decay_factor=0.0),
        says=("lr_step_decay_factor", "(0, 1]"),
    ),
    Case(
        "lr decay factor NaN",
        lambda t: _args(t, lr_step_decay_factor=NAN),
        says=("lr_step_decay_factor", "(0, 1]"),
    ),
    Case(
        "lr decay factor above 1",
        lambda t: _args(t, lr_step_decay_factor=2.0),
        says=("lr_step_decay_factor", "(0, 1]"),
    ),
    Case(
        "lr decay interval zero",
        lambda t: _args(t, lr_step_decay_every_epochs=0.0),
        says=("lr_step_decay_every_epochs", "(0, inf)"),
    ),
    Case(
        "lr decay interval negative",
        lambda t: _args(t, lr_step_decay_every_epochs=-1.0),
        says=("lr_step_decay_every_epochs", "> 0"),
    ),
    Case(
        "group dro adjustment negative",
        lambda t: _args(t, dro_generalization_adjustment=-1.0),
        says=("dro_generalization_adjustment", "[0, inf)"),
    ),
    Case("group dro step size NaN", lambda t: _args(t, dro_step_size=NAN), says=("dro_step_size", "finite")),
    Case(
        "duplicate class names",
        lambda t: _args(t, class_names=["bird", "bird"]),
        says=("class_names", "'bird' twice", "distinct"),
    ),
    Case(
        "duplicate class names differing in case",
        lambda t: _args(t, class_names=["Bird", "bird "]),
        says=("class_names", "twice"),
    ),
    Case("empty class name", lambda t: _args(t, class_names=["bird", " "]), says=("class_names[1]", "empty")),
    Case("one class only", lambda t: _args(t, class_names=["bird"]), says=("class_names", "at least 2")),
    Case(
        "class names as one string",
        lambda t: _args(t, class_names="landbird waterbird"),
        says=("class_names", "list"),
    ),
    Case(
        "duplicate attribute names",
        lambda t: _args(t, attribute_names=["land", "land"]),
        says=("attribute_names", "twice"),
    ),
    Case("triplet margin negative", lambda t: _args(t, triplet_margin=-0.1), says=("triplet_margin", ">= 0")),
    Case(
        "logit scale init NaN", lambda t: _args(t, logit_scale_init=NAN), says=("logit_scale_init", "finite")
    ),
    Case("lora rank zero", lambda t: _args(t, lora_r=0), says=("lora_r", "> 0")),
    Case(
        "unknown retrieval loss",
        lambda t: _args(t, retrieval_loss="hinge"),
        says=("retrieval_loss", "triplet"),
    ),
    Case(
        "template with two placeholders",
        lambda t: _args(t, templates=["a {} of a {}."]),
        says=("template", "exactly one"),
    ),
    Case(
        "loss module weight NaN",
        lambda t: _loss(zero_shot_ce_weight=NAN),
        says=("zero_shot_ce_weight", "finite"),
    ),
    Case(
        "loss module unknown retrieval loss",
        lambda t: _loss(retrieval_loss="infonce"),
        says=("retrieval_loss", "clip"),
    ),
    Case(
        "loss module triplet margin inf",
        lambda t: _loss(triplet_margin=INF),
        says=("triplet_margin", "finite"),
    ),
    Case("sigmoid loss without logit bias", _sigmoid_without_bias, says=("sigmoid", "logit_bias")),
    Case("group dro group id out of range", _dro_group_out_of_range, says=("group ids", "[0, 4)")),
    Case("group dro state with other groups", _dro_state_of_other_groups, says=("2 groups", "expected 4")),
    Case("sampler example without group", _sampler_example_without_group, says=("example 1", "no group")),
    Case(
        "feature cache image file missing", _feature_cache_missing_image, says=("gone.jpg", "cannot be read")
    ),
]


@cases(CASES)
def test_training_rejects(case, tmp_path):
    check(case, tmp_path)
