"""SigLIP / SigLIP 2 as first-class models (issue 14): registry, sigmoid loss, adapters, tiny models, CLI."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from torch import nn

from hf_spurious.losses.sigmoid import sigmoid_pairwise_loss
from hf_spurious.models import UnsupportedModelError, apply_freezing, load_adapter, tiny
from hf_spurious.models.adapters import Siglip2Adapter
from hf_spurious.models.adapters.siglip import pack_naflex, unpack_naflex
from hf_spurious.models.registry import FAMILIES, ModelFamily, family_for_config, supported_summary

torch.set_num_threads(1)

TEXTS = ["a dog", "two cats sitting on a bench near the water", "a red kite", "an unknownword"]
KINDS = ("siglip", "siglip2")
BUILDERS = {"siglip": tiny.tiny_siglip, "siglip2": tiny.tiny_siglip2}


def _images(n: int, seed: int = 0) -> list[Image.Image]:
    """Images of different sizes and aspect ratios (SigLIP 2 gives them different patch grids)."""
    rng = np.random.default_rng(seed)
    return [
        Image.fromarray(rng.integers(0, 256, size=(30 + 9 * i, 40 - 3 * i, 3), dtype=np.uint8))
        for i in range(n)
    ]


@pytest.fixture(params=KINDS)
def kind(request):
    return request.param


@pytest.fixture()
def adapter(kind):
    return load_adapter(*BUILDERS[kind]())


# ------------------------------------------------------------------------------------------- the loss


def naive_sigmoid_loss(img, txt, scale, bias):
    """Zhai et al.'s loss, one pair at a time: -(1/B) sum_ij log sigmoid(l_ij (t <x_i, y_j> + b))."""
    b = img.shape[0]
    x = [v / v.norm() for v in img]
    y = [v / v.norm() for v in txt]
    total = 0.0
    for i in range(b):
        for j in range(b):
            label = 1.0 if i == j else -1.0
            z = scale * torch.dot(x[i], y[j]) + bias
            total = total - torch.log(1.0 / (1.0 + torch.exp(-label * z)))
    return total / b


@settings(max_examples=25, deadline=None)
@given(
    b=st.integers(1, 5),
    d=st.integers(1, 6),
    scale=st.floats(0.5, 20.0),
    bias=st.floats(-12.0, 3.0),
    seed=st.integers(0, 10_000),
)
def test_sigmoid_loss_and_gradients_equal_naive_loop(b, d, scale, bias, seed):
    gen = torch.Generator().manual_seed(seed)
    img = torch.randn(b, d, generator=gen, dtype=torch.float64, requires_grad=True)
    txt = torch.randn(b, d, generator=gen, dtype=torch.float64, requires_grad=True)
    t = torch.tensor(scale, dtype=torch.float64, requires_grad=True)
    c = torch.tensor(bias, dtype=torch.float64, requires_grad=True)
    got = sigmoid_pairwise_loss(img, txt, t, c)
    want = naive_sigmoid_loss(img, txt, t, c)
    torch.testing.assert_close(got, want)
    got_grads = torch.autograd.grad(got, (img, txt, t, c))
    want_grads = torch.autograd.grad(want, (img, txt, t, c))
    for g, w in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(g, w)
    per_pair = sigmoid_pairwise_loss(img, txt, t, c, reduction="none")
    assert per_pair.shape == (b,)
    torch.testing.assert_close(per_pair.mean(), got)
    torch.testing.assert_close(sigmoid_pairwise_loss(img, txt, t, c, reduction="sum"), got * b)


def test_sigmoid_loss_hand_case():
    """Two orthogonal pairs, t = 1, b = 0: diagonal cos 1, off-diagonal 0 -> (2 log(1+e^-1) + 2 log 2) / 2."""
    eye = torch.eye(2)
    want = math.log(1 + math.exp(-1)) + math.log(2)
    assert sigmoid_pairwise_loss(eye, eye, 1.0, 0.0).item() == pytest.approx(want)
    # float scale / bias and 0-d or (1,) tensors agree; embeddings are normalised inside
    assert sigmoid_pairwise_loss(3 * eye, eye, torch.ones(1), torch.zeros(())).item() == pytest.approx(want)


def test_sigmoid_loss_equals_siglip_model_loss(adapter):
    """The loss SiglipModel(return_loss=True) computes, from the adapter's embeddings, scale and bias."""
    proc, model = adapter.processor, adapter.base_model
    inputs = proc(text=TEXTS[:3], images=_images(3), padding="max_length", max_length=64, return_tensors="pt")
    if isinstance(adapter, Siglip2Adapter):
        inputs["pixel_values"] = unpack_naflex(inputs["pixel_values"])[0]
    inputs.pop("attention_mask")
    with torch.no_grad():
        out = model(**inputs, return_loss=True)
        img = adapter.embed_images(_images(3))
        txt = adapter.embed_texts(TEXTS[:3])
        ours = sigmoid_pairwise_loss(
            torch.from_numpy(img), torch.from_numpy(txt), adapter.logit_scale.exp(), adapter.logit_bias()
        )
    torch.testing.assert_close(ours, out.loss, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((torch.zeros(2, 3), torch.zeros(3, 3), 1.0, 0.0), "2 images vs 3 texts"),
        ((torch.zeros(3), torch.zeros(3), 1.0, 0.0), "image_embeds must be a 2-D"),
        ((torch.zeros(0, 3), torch.zeros(0, 3), 1.0, 0.0), "empty batch"),
        ((torch.ones(2, 3), torch.ones(2, 3), torch.ones(2), 0.0), "logit_scale must be a scalar"),
        ((torch.ones(2, 3), torch.ones(2, 3), 1.0, float("nan")), "logit_bias must be a finite"),
    ],
)
def test_sigmoid_loss_rejects_bad_inputs(args, message):
    with pytest.raises(ValueError, match=message):
        sigmoid_pairwise_loss(*args)
    with pytest.raises(ValueError, match="reduction"):
        sigmoid_pairwise_loss(torch.ones(2, 2), torch.ones(2, 2), 1.0, 0.0, reduction="max")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------- the registry


def test_registry_rows_import_and_are_unique():
    types = [f.model_type for f in FAMILIES]
    assert len(types) == len(set(types))
    assert {"clip", "clip_resnet", "blip", "siglip", "siglip2"} <= set(types)
    for family in FAMILIES:
        cls, adapter_cls = family.load_model_class(), family.load_adapter_class()
        assert cls.__name__ == family.class_name
        assert adapter_cls.retrieval_loss == family.retrieval_loss, family.model_type
    with pytest.raises(ValueError, match="retrieval_loss 'hinge' is not one of clip, sigmoid, triplet"):
        ModelFamily("x", "m:C", "m:A", "hinge", "")


def test_unsupported_models_list_every_family(tiny_model_dir):
    summary = supported_summary()
    for family in FAMILIES:
        assert family.class_name in summary
    with pytest.raises(UnsupportedModelError) as err:
        load_adapter(nn.Linear(2, 2))
    assert (
        "SiglipModel" in str(err.value) and "Siglip2Model" in str(err.value) and "CLIPModel" in str(err.value)
    )
    assert isinstance(err.value, ValueError)  # so the CLI reports it as a user error
    with pytest.raises(UnsupportedModelError, match=r"model_type 'owlvit'.*supported: .*SiglipModel"):
        load_adapter(tiny_model_dir("owlvit"))
    config = type("Cfg", (), {"model_type": "siglip_vision_model", "architectures": ["SiglipVisionModel"]})()
    with pytest.raises(UnsupportedModelError, match="here has model_type 'siglip_vision_model'"):
        family_for_config(config, "here")


def test_adapters_expose_loss_and_bias(adapter, kind):
    assert adapter.retrieval_loss == "sigmoid" and adapter.model_kind == kind
    assert adapter.logit_bias().item() == pytest.approx(-10.0)
    assert adapter.logit_scale.exp().item() == pytest.approx(10.0)
    clip = load_adapter(*tiny.tiny_clip())
    assert clip.retrieval_loss == "clip" and clip.logit_bias() is None
    assert set(adapter.projection_parameters()) == {
        "text_model.head.weight",
        "text_model.head.bias",
        "logit_scale",
        "logit_bias",
    }


# ------------------------------------------------------------------------------------------- adapters


def test_embeddings_and_logits_equal_the_models_forward(adapter):
    proc, model = adapter.processor, adapter.base_model
    inputs = proc(text=TEXTS, images=_images(3), padding="max_length", max_length=64, return_tensors="pt")
    pv = inputs["pixel_values"]
    if isinstance(adapter, Siglip2Adapter):
        inputs["pixel_values"] = unpack_naflex(pv)[0]
    mask = inputs.pop("attention_mask")  # SigLIP runs its text tower unmasked, as it was trained
    assert not bool(mask.all())  # (so the pads matter)
    with torch.no_grad():
        out = model(**inputs)
        img = adapter.encode_images(pv)
        txt = adapter.encode_texts(inputs["input_ids"], mask)
    torch.testing.assert_close(img, out.image_embeds)
    torch.testing.assert_close(txt, out.text_embeds)
    logits = adapter.logit_scale.exp() * img @ txt.t() + adapter.logit_bias()
    torch.testing.assert_close(logits, out.logits_per_image)
    np.testing.assert_allclose(adapter.embed_images(_images(3)), img.numpy(), atol=1e-6)
    np.testing.assert_allclose(adapter.embed_texts(TEXTS), txt.numpy(), atol=1e-6)


def test_embeddings_do_not_depend_on_batch_composition(adapter):
    """Alone, in a batch, padded to the longest text (a collator's padding=True) or to 64: the same vector."""
    texts = [*TEXTS, "a very long caption " * 3]
    together = adapter.embed_texts(texts, batch_size=len(texts))
    alone = np.concatenate([adapter.embed_texts([t]) for t in texts])
    np.testing.assert_allclose(alone, together, atol=1e-5)
    tok = adapter.processor.tokenizer
    short = tok(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
    assert short["input_ids"].shape[1] < 64  # the case that needs re-padding
    with torch.no_grad():
        repadded = adapter.encode_texts(short["input_ids"], short["attention_mask"]).numpy()
    np.testing.assert_allclose(repadded, together, atol=1e-5)
    images = _images(4, seed=1)
    np.testing.assert_allclose(
        np.concatenate([adapter.embed_images([im]) for im in images]),
        adapter.embed_images(images, batch_size=4),
        atol=1e-5,
    )


def test_text_padding_matters_so_it_is_fixed(adapter):
    """Without the fixed length, the last-position pooling would change with padding: the test above can fail."""
    tok = adapter.processor.tokenizer
    enc = tok(["a dog"], padding="max_length", max_length=20, return_tensors="pt")
    with torch.no_grad():
        raw = adapter.base_model.text_model(input_ids=enc["input_ids"]).pooler_output
        fixed = adapter.project_texts(adapter.text_features(enc["input_ids"], enc["attention_mask"]))
    assert not torch.allclose(raw, fixed, atol=1e-4)
    too_long = torch.ones(1, 65, dtype=torch.long)
    with pytest.raises(
        ValueError, match=r"65 tokens is longer than .* 64 positions; tokenize with truncation"
    ):
        adapter.text_features(too_long)


def test_naflex_packing_round_trip():
    pv = torch.randn(2, 5, 12)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    grids = torch.tensor([[1, 3], [5, 1]])
    packed = pack_naflex(pv, mask, grids)
    assert packed.shape == (2, 5, 15)
    back = unpack_naflex(packed)
    torch.testing.assert_close(back[0], pv)
    assert torch.equal(back[1], mask) and torch.equal(back[2], grids)
    with pytest.raises(ValueError, match="packed NaFlex patches"):
        unpack_naflex(torch.zeros(2, 3, 8, 8))
    with pytest.raises(ValueError, match="NaFlex inputs disagree"):
        pack_naflex(pv, mask[:1], grids)


def test_patch_grids(adapter):
    pv = adapter.preprocess_images(_images(3))
    grids = adapter.patch_grids(pv)
    if isinstance(adapter, Siglip2Adapter):
        assert len(set(grids)) > 1  # different aspect ratios, different grids
        assert all(h * w <= 16 for h, w in grids)
    else:
        assert grids == [(4, 4)] * 3
    assert adapter.cls_tokens == 0 and adapter.gradcam_layer == "vision_model.head"


def test_freezing_policies(kind):
    projection = apply_freezing(load_adapter(*BUILDERS[kind]()), "projection")
    assert set(projection.trainable_names) == {
        "logit_scale",
        "logit_bias",
        "text_model.head.weight",
        "text_model.head.bias",
    }
    lora = apply_freezing(load_adapter(*BUILDERS[kind]()), "lora")
    assert any("vision_model" in n and "lora_A" in n for n in lora.trainable_names)
    assert any("text_model" in n and "lora_A" in n for n in lora.trainable_names)


# ------------------------------------------------------------------------------ saving, loading, sharing


def test_save_load_round_trip(tiny_model_dir, kind, tmp_path):
    folder = tiny_model_dir(kind)
    loaded = load_adapter(folder)
    ref = load_adapter(*BUILDERS[kind]())
    assert type(loaded) is type(ref)
    np.testing.assert_allclose(loaded.embed_texts(TEXTS), ref.embed_texts(TEXTS), atol=1e-6)
    np.testing.assert_allclose(loaded.embed_images(_images(2)), ref.embed_images(_images(2)), atol=1e-6)
    assert loaded.fingerprint == ref.fingerprint
    again = load_adapter(loaded.save_pretrained(tmp_path / "again"))
    assert again.fingerprint == ref.fingerprint
    saved = json.loads((tmp_path / "again" / "config.json").read_text())
    assert saved["model_type"] == kind


def test_push_to_hub_mocked(tiny_model_dir, kind, tmp_path, monkeypatch):
    """push_to_hub with the Hub client replaced by a recorder that keeps the uploaded folder."""
    import transformers.utils.hub as hub

    remote = tmp_path / "remote"

    class FakeApi:
        def create_repo(self, repo_id, **kw):
            return type("Url", (), {"repo_id": f"me/{repo_id}"})()

    class Card:
        def save(self, path):
            Path(path).write_text("---\ntags: [siglip]\n---\n")

    def upload(self, folder, repo_id, **kw):
        shutil.copytree(folder, remote / repo_id, dirs_exist_ok=True)
        return repo_id

    monkeypatch.setattr(hub, "hf_api", lambda *a, **k: FakeApi())
    monkeypatch.setattr(hub, "create_and_tag_model_card", lambda *a, **k: Card())
    monkeypatch.setattr(hub.PushToHubMixin, "_upload_modified_files", upload)
    adapter = load_adapter(tiny_model_dir(kind))
    adapter.base_model.push_to_hub(f"tiny-{kind}")
    adapter.processor.push_to_hub(f"tiny-{kind}")  # the SigLIP 2 wrapper delegates to the real processor
    folder = remote / "me" / f"tiny-{kind}"
    assert {"config.json", "model.safetensors", "tokenizer.json", "processor_config.json"} <= {
        p.name for p in folder.iterdir()
    }
    pulled = load_adapter(folder)
    assert pulled.fingerprint == adapter.fingerprint
    np.testing.assert_allclose(pulled.embed_texts(TEXTS), adapter.embed_texts(TEXTS), atol=1e-6)


def test_tiny_kinds_include_siglip():
    assert {"siglip", "siglip2"} <= set(tiny.TINY_KINDS)
    with pytest.raises(ValueError, match="max_num_patches=15 must be a square number"):
        tiny.tiny_siglip2(max_num_patches=15)


def test_tiny_tokenizers_keep_words_whole_and_reload(kind, tmp_path):
    from transformers import AutoTokenizer

    _, proc = BUILDERS[kind]()
    tok = proc.tokenizer
    ids = tok("the dog runs on the grass")["input_ids"]
    pieces = tok.convert_ids_to_tokens(ids)
    assert "▁dog" in pieces and "▁grass" in pieces and pieces[-1] == tok.eos_token
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert again("the dog runs on the grass")["input_ids"] == ids
    assert again.padding_side == "right" and again.model_max_length == 64


def test_loss_grads_reach_scale_bias_and_text_head(adapter):
    """The spurious-aware training path: the sigmoid loss on adapter outputs trains scale, bias and head."""
    apply_freezing(adapter, "projection")
    adapter.train()
    pv = adapter.preprocess_images(_images(3))
    enc = adapter.tokenize(TEXTS[:3])
    out = adapter(pixel_values=pv, **enc)
    loss = sigmoid_pairwise_loss(
        out["image_embeds"], out["text_embeds"], out["logit_scale"].exp(), adapter.logit_bias()
    )
    loss.backward()
    params = adapter.projection_parameters()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in params.values())
    assert params["logit_bias"].grad.abs().item() > 0
    assert F.normalize(out["image_embeds"], dim=-1).shape == (3, adapter.embedding_dim)


def test_token_grids_and_network_images(adapter):
    """What GradCAM reads: per image, its patch tokens on its grid, and the image as the network saw it."""
    images = _images(3)
    pv = adapter.preprocess_images(images)
    grids = adapter.patch_grids(pv)
    n = int(pv.shape[1]) if isinstance(adapter, Siglip2Adapter) else grids[0][0] * grids[0][1]
    tokens = torch.arange(3 * n).reshape(3, n, 1).float()
    maps = adapter.token_grids(tokens, pv)
    p = int(adapter.base_model.config.vision_config.patch_size)
    for i, ((h, w), grid, picture) in enumerate(zip(grids, maps, adapter.network_images(pv), strict=True)):
        assert grid.shape == (h, w, 1) and grid[0, 0, 0] == i * n and grid[-1, -1, 0] == i * n + h * w - 1
        assert picture.shape == (3, h * p, w * p)
    if isinstance(adapter, Siglip2Adapter):  # the un-patchified image equals the processor's resized image
        from transformers.image_transforms import resize

        ip = adapter.processor.image_processor
        (h, w) = grids[1]
        arr = np.asarray(images[1]).astype(np.float32)
        want = resize(arr, (h * p, w * p), resample=ip.resample, input_data_format="channels_last") / 255.0
        want = (want - 0.5) / 0.5
        got = adapter.network_images(pv)[1].permute(1, 2, 0).numpy()
        np.testing.assert_allclose(got, want, atol=2e-2)
    with pytest.raises(ValueError, match="cannot hold"):
        adapter.token_grids(tokens[:, :3], pv)


# ------------------------------------------------------------------------------------------------- CLI


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


@pytest.mark.slow
def test_cli_evaluate_train_discover(tiny_model_dir, kind, shapes_world, waterbirds_world, tmp_path):
    """evaluate (retrieval + classification groups), train (sigmoid loss: the bias learns), discover."""
    from hf_spurious.cli import main

    model_dir = tiny_model_dir(kind)
    rec = tmp_path / "recall"
    assert main(["evaluate", "--model", str(model_dir), "--metrics", "recall", "--data-dir", str(shapes_world),
                 "--source", "shapes", "--out", str(rec)]) == 0  # fmt: skip
    assert "recall" in json.dumps(json.loads((rec / "results.json").read_text())).lower()
    groups = tmp_path / "groups"
    assert main(["evaluate", "--task", "classification", "--model", str(model_dir), "--data-dir",
                 str(waterbirds_world), "--templates", "simple", "--max-overlays", "2", "--out", str(groups)]) == 0  # fmt: skip
    res = json.loads((groups / "results.json").read_text())
    assert "vision_model.head" in res["aiou"]["by_layer"] and 0 <= res["aiou"]["aiou"] <= 1
    assert len(list((groups / "gradcam").glob("*.png"))) == 2
    out = tmp_path / "trained"
    assert main(["train", "--model", str(model_dir), "--dataset", "shapes", "--data_dir", str(shapes_world),
                 "--task", "retrieval", "--freeze_policy", "projection", "--output_dir", str(out), "--max_steps",
                 "2", "--per_device_train_batch_size", "8", "--use_cpu", "--eval_split", "", "--disable_tqdm",
                 "true", "--report_to", "none", "--learning_rate", "1e-2"]) == 0  # fmt: skip
    before, after = _tensors(model_dir / "model.safetensors"), _tensors(out / "model.safetensors")
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert "logit_bias" in changed and changed <= {"logit_scale", "logit_bias", "text_model.head.weight",
                                                   "text_model.head.bias"}  # fmt: skip
    assert type(load_adapter(out)).__name__ == type(load_adapter(model_dir)).__name__
    cls = tmp_path / "cls"
    assert main(["train", "--model", str(model_dir), "--dataset", "waterbirds", "--data_dir", str(waterbirds_world),
                 "--freeze_policy", "projection", "--output_dir", str(cls), "--max_steps", "2",
                 "--per_device_train_batch_size", "8", "--use_cpu", "--eval_split", "", "--disable_tqdm", "true",
                 "--report_to", "none", "--learning_rate", "1e-2", "--templates", "simple", "--image_class_weight",
                 "1", "--class_names", "landbird", "waterbird"]) == 0  # fmt: skip
    trained = _tensors(cls / "model.safetensors")
    assert not torch.equal(before["text_model.head.weight"], trained["text_model.head.weight"])
    disc = tmp_path / "disc"
    assert main(["discover", "--model", str(model_dir), "--data-dir", str(waterbirds_world), "--attribute-column",
                 "place", "--min-detections", "2", "--out", str(disc)]) == 0  # fmt: skip
    assert json.loads((disc / "discovery.json").read_text())["detections_per_attribute"]


def test_siglip2_processor_wrapper_copies_pickles_and_uses_its_own_patch_settings():
    """DataLoader workers pickle the collator's processor; the trainer may deepcopy the adapter."""
    import copy
    import pickle

    adapter = load_adapter(*tiny.tiny_siglip2())
    images = _images(2)
    want = adapter.processor(images=images, return_tensors="pt")["pixel_values"]
    assert (
        want.shape[-1] == 8 * 8 * 3 + 3
    )  # the tiny model's patch 8, not Siglip2Processor's class default 16
    for proc in (copy.deepcopy(adapter.processor), pickle.loads(pickle.dumps(adapter.processor))):
        torch.testing.assert_close(proc(images=images, return_tensors="pt")["pixel_values"], want)
    assert type(copy.deepcopy(adapter).processor).__name__ == "NaflexPackingProcessor"


def test_left_padding_tokenizers_are_padded_on_their_side(kind):
    """Siglip2Tokenizer's class default pads on the left: the fixed-length padding follows the tokenizer."""
    adapter = load_adapter(*BUILDERS[kind]())
    tok = adapter.processor.tokenizer
    tok.padding_side = "left"
    full = tok(TEXTS, padding="max_length", max_length=64, return_tensors="pt")
    assert full["input_ids"][0, 0] == tok.pad_token_id  # left-padded
    short = tok(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        want = F.normalize(adapter.base_model.text_model(input_ids=full["input_ids"]).pooler_output, dim=-1)
        got = adapter.encode_texts(short["input_ids"], short["attention_mask"])
    torch.testing.assert_close(got, want)
    np.testing.assert_allclose(adapter.embed_texts(TEXTS), want.numpy(), atol=1e-6)


def test_patchify_round_trip_and_square_gradcam_pixels():
    """SigLIP 2 also takes plain square pixels (GradCAM's input): same embedding as the packed form."""
    from hf_spurious.models.adapters.naflex import patchify, unpatchify

    x = torch.randn(2, 3, 16, 24)
    patches = patchify(x, 8)
    assert patches.shape == (2, 6, 192)
    torch.testing.assert_close(unpatchify(patches[1], (2, 3), 8), x[1])
    with pytest.raises(ValueError, match="not a multiple of the patch size 8"):
        patchify(torch.zeros(1, 3, 10, 16), 8)
    adapter = load_adapter(*tiny.tiny_siglip2())
    images = _images(3)
    square = adapter.gradcam_image_processor(images=images)["pixel_values"]
    assert square.shape == (3, 3, 32, 32)  # 16 patches of 8 px -> 4 x 4 grid
    resized = [im.convert("RGB").resize((32, 32), resample=Image.Resampling.BILINEAR) for im in images]
    packed = adapter.preprocess_images(resized)
    assert adapter.patch_grids(packed) == [(4, 4)] * 3 == adapter.patch_grids(square)
    with torch.no_grad():
        torch.testing.assert_close(adapter.encode_images(square), adapter.encode_images(packed))
    torch.testing.assert_close(torch.stack(adapter.network_images(packed)), square)


@pytest.mark.parametrize("kind", KINDS)
def test_vit_gradcam_runs_over_the_attention_pool_input(kind):
    """GradCAM on SigLIP / SigLIP 2 (square pixels): maps in [0, 1] over the h x w patch grid, no CLS."""
    from hf_spurious.evaluation.gradcam import ClassSimilarityTarget, ViTGradCAM

    adapter = load_adapter(*BUILDERS[kind]())
    processor = getattr(adapter, "gradcam_image_processor", adapter.processor.image_processor)
    pv = processor(images=_images(2), return_tensors="pt")["pixel_values"]
    cam = ViTGradCAM(adapter)
    assert cam.layer is adapter.base_model.vision_model.head
    text = torch.from_numpy(adapter.embed_texts(["a dog"]))[0]
    maps = cam(pv, [ClassSimilarityTarget(text)])
    assert maps.shape == (2, 1, 32, 32) and maps.min() >= 0 and maps.max() <= 1 and maps.max() > 0
