"""Bad inputs to VSE++ (issue 13 battery, issue 14 area): the triplet loss, the config, the word tokenizer,
the VGG weight loader and the model's forward; each names the item and the fix."""

from __future__ import annotations

import pickle

import pytest
import torch

from ._cases import Case, cases, check


def _loss(**kw):
    from hf_spurious.losses.triplet import triplet_ranking_loss

    args = {"image_embeds": torch.eye(3), "text_embeds": torch.eye(3), **kw}
    return triplet_ranking_loss(args.pop("image_embeds"), args.pop("text_embeds"), **args)


def _config(**kw):
    from hf_spurious.models.vsepp import VseppConfig

    return VseppConfig(**{"embed_size": 8, "vgg_layers": [4, "M"], "vgg_fc_size": 8, "vocab_size": 6, **kw})


def _model(**kw):
    from hf_spurious.models.vsepp import VseppModel

    return VseppModel(_config(word_dim=4, **kw))


def _vgg_state(model, **changes):
    state = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    state.update(changes)
    return {k: v for k, v in state.items() if v is not None}


def _save(tmp, obj, name="weights.pth"):
    torch.save(obj, tmp / name)
    return tmp / name


CASES = [
    Case("triplet pairs of different sizes", lambda tmp: _loss(text_embeds=torch.eye(2, 3)),
         says=("image_embeds (3, 3)", "text_embeds (2, 3)", "same (B, D) shape")),
    Case("triplet one-dimensional embeddings", lambda tmp: _loss(image_embeds=torch.ones(3)),
         says=("image_embeds", "2-D (N, D)")),
    Case("triplet negative margin", lambda tmp: _loss(margin=-0.2), says=("margin", ">= 0", "0.2")),
    Case("triplet NaN margin", lambda tmp: _loss(margin=float("nan")), says=("margin", ">= 0")),
    Case("triplet unknown reduction", lambda tmp: _loss(reduction="avg"), says=("reduction", "'mean'", "'avg'")),
    Case("vsepp unknown image backbone", lambda tmp: _config(image_backbone="resnet"),
         says=("image_backbone", "'vgg'", "'transformers'")),
    Case("vsepp transformers backbone without its config", lambda tmp: _config(image_backbone="transformers"),
         says=("vision_config", "model_type")),
    Case("vsepp vgg layer width zero", lambda tmp: _config(vgg_layers=[4, 0, "M"]), says=("vgg_layers", ">= 1")),
    Case("vsepp vgg layers without a conv", lambda tmp: _config(vgg_layers=["M", "M"]),
         says=("vgg_layers", "at least one conv")),
    Case("vsepp zero joint space", lambda tmp: _config(embed_size=0), says=("embed_size", ">= 1")),
    Case("vsepp zero gru layers", lambda tmp: _config(num_layers=0), says=("num_layers", "GRU", ">= 1")),
    Case("vsepp tokenizer non-string caption", lambda tmp: _tokenizer(["a dog", None]),
         says=("caption 1", "NoneType", "caption texts")),
    Case("vsepp tokenizer min count zero", lambda tmp: _tokenizer(["a dog"], min_count=0),
         says=("min_count", ">= 1", "4")),
    Case("vgg weights file missing", lambda tmp: _model().load_torchvision_vgg(tmp / "vgg19.pth"),
         raises=FileNotFoundError, says=("vgg19.pth", ".safetensors or .pth")),
    Case("vgg weights of another layout", lambda tmp: _bad_layout(tmp), says=("missing keys", "vgg_layers")),
    Case("vgg weights of another width", lambda tmp: _bad_shape(tmp),
         says=("features.0.weight", "shape", "vgg_layers")),
    Case("vgg weights file holds a list", lambda tmp: _model().load_torchvision_vgg(_save(tmp, [torch.ones(1)])),
         says=("weights.pth", "list", "not a state dict")),
    Case("vgg weights file holds a pickled object", lambda tmp: _pickled(tmp),
         raises=pickle.UnpicklingError, says=("weights only load failed",)),
    Case("vgg weights into a transformers backbone", lambda tmp: _resnet_vsepp().load_torchvision_vgg({}),
         says=("'transformers' backbone", "image_backbone='vgg'")),
    Case("vsepp forward without images", lambda tmp: _model()(input_ids=torch.ones(1, 3, dtype=torch.long)),
         says=("input_ids and pixel_values", "get_*_features")),
]  # fmt: skip


def _tokenizer(captions, **kw):
    from hf_spurious.models.vsepp import build_vsepp_tokenizer

    return build_vsepp_tokenizer(captions, **kw)


def _bad_layout(tmp):
    model = _model()
    model.load_torchvision_vgg(_save(tmp, _vgg_state(model, **{"features.0.weight": None})))


def _bad_shape(tmp):
    model = _model()
    model.load_torchvision_vgg(_vgg_state(model, **{"features.0.weight": torch.zeros(5, 3, 3, 3)}))


def _pickled(tmp):
    import argparse

    _model().load_torchvision_vgg(_save(tmp, {"features.0.weight": argparse.Namespace(x=1)}))


def _resnet_vsepp():
    from transformers import ResNetConfig

    vision = ResNetConfig(embedding_size=4, hidden_sizes=[4], depths=[1]).to_dict()
    return _model(image_backbone="transformers", vision_config=vision)


@cases(CASES)
def test_vsepp_rejects(case, tmp_path):
    check(case, tmp_path)


def test_vsepp_battery_is_not_empty():
    assert len(CASES) >= 18
    with pytest.raises(AssertionError):  # the harness itself flags a bare builtin error
        check(Case("bare", lambda tmp: {}["x"], raises=KeyError, says=("x",)), None)
