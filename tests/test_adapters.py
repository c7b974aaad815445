"""Model adapters and freezing policies, checked against the models' own forward passes and naive references."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from hf_spurious.models import (
    BlipRetrievalAdapter,
    ClipAdapter,
    UnsupportedModelError,
    apply_freezing,
    load_adapter,
    tiny,
)

torch.set_num_threads(1)

TEXTS = ["a dog", "two cats sitting on a bench near the water", "a red kite", "an unknownword"]


def _images(n: int, seed: int = 0, size: int = 37) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, size=(size, size + 5, 3), dtype=np.uint8)) for _ in range(n)]


@pytest.fixture()
def clip():
    return load_adapter(*tiny.tiny_clip())


@pytest.fixture()
def blip():
    return load_adapter(*tiny.tiny_blip_retrieval())


# ----------------------------------------------------------------------------------------------- CLIP


def test_clip_encodings_equal_clip_forward(clip):
    model, proc = clip.model, clip.processor
    inputs = proc(text=TEXTS, images=_images(3), return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model(**inputs)
        img = clip.encode_images(inputs["pixel_values"])
        txt = clip.encode_texts(inputs["input_ids"], inputs["attention_mask"])
        fwd = clip(**inputs)
    torch.testing.assert_close(img, out.image_embeds)
    torch.testing.assert_close(txt, out.text_embeds)
    torch.testing.assert_close(fwd["image_embeds"], out.image_embeds)
    torch.testing.assert_close(fwd["text_embeds"], out.text_embeds)
    # the logits CLIP reports are exp(logit_scale) * cosines in the adapter's space
    torch.testing.assert_close(clip.logit_scale.exp() * img @ txt.t(), out.logits_per_image)


def test_clip_features_are_pre_projection_pooled_outputs(clip):
    model = clip.model
    pix = clip.preprocess_images(_images(2))
    enc = clip.tokenize(TEXTS)
    with torch.no_grad():
        f_img = clip.image_features(pix)
        f_txt = clip.text_features(**enc)
        assert torch.equal(f_img, model.vision_model(pixel_values=pix).pooler_output)
        assert f_img.shape == (2, model.config.vision_config.hidden_size)
        assert torch.equal(
            clip.project_images(f_img), model.get_image_features(pixel_values=pix).pooler_output
        )
        assert torch.equal(clip.project_texts(f_txt), model.get_text_features(**enc).pooler_output)
    assert clip.logit_scale is model.logit_scale


def test_clip_embed_helpers_match_forward_and_are_batch_invariant(clip):
    images = _images(5, seed=1)
    embs = clip.embed_images(images, batch_size=2)
    assert embs.dtype == np.float32 and embs.shape == (5, clip.embedding_dim)
    np.testing.assert_allclose(np.linalg.norm(embs, axis=1), 1.0, rtol=1e-5)
    inputs = clip.processor(images=images, return_tensors="pt")
    with torch.no_grad():
        ref = clip.model.get_image_features(**inputs).pooler_output
    np.testing.assert_allclose(embs, F.normalize(ref, dim=-1).numpy(), atol=1e-6)
    np.testing.assert_allclose(clip.embed_images(images, batch_size=64), embs, atol=1e-6)

    texts = clip.embed_texts(TEXTS, batch_size=3)
    assert texts.shape == (len(TEXTS), clip.embedding_dim)
    # padding does not leak into the pooled eos state
    one_by_one = np.concatenate([clip.embed_texts([t]) for t in TEXTS])
    np.testing.assert_allclose(texts, one_by_one, atol=1e-6)
    assert clip.embed_texts([]).shape == (0, clip.embedding_dim)


@pytest.mark.parametrize("make", [tiny.tiny_clip, tiny.tiny_blip_retrieval])
def test_cached_features_project_to_the_same_embeddings(make):
    adapter = load_adapter(*make())
    images = _images(3, seed=9)
    feats = adapter.embed_image_features(images, batch_size=2)
    tfeats = adapter.embed_text_features(TEXTS, batch_size=3)
    assert feats.dtype == np.float32 and feats.shape == (
        3,
        adapter.base_model.config.vision_config.hidden_size,
    )
    assert tfeats.shape == (4, adapter.base_model.config.text_config.hidden_size)
    with torch.no_grad():
        img = adapter.project_images(torch.from_numpy(feats), normalize=True).numpy()
        # one text at a time: the cached features must not depend on the batch's padding
        txt = np.concatenate(
            [
                adapter.project_texts(torch.from_numpy(adapter.embed_text_features([t])), normalize=True)
                for t in TEXTS
            ]
        )
    np.testing.assert_allclose(img, adapter.embed_images(images), atol=1e-6)
    np.testing.assert_allclose(txt, adapter.embed_texts(TEXTS), atol=1e-5)
    assert adapter.embed_image_features([]).shape == (0, feats.shape[1])


def test_embed_keeps_training_mode_and_has_no_grad(clip):
    clip.model.train()
    out = clip.embed_images(_images(1))
    assert clip.model.training and all(m.training for m in clip.model.modules())
    assert isinstance(out, np.ndarray)
    clip.model.eval()
    clip.embed_texts(["a dog"])
    assert not any(m.training for m in clip.model.modules())


def test_tokenize_truncates_to_the_text_tower(clip):
    enc = clip.tokenize(["dog " * 100, "a cat"])
    assert enc["input_ids"].shape[1] == clip.max_text_length == 32
    assert enc["input_ids"][0, -1].item() == clip.processor.tokenizer.eos_token_id
    with pytest.raises(TypeError, match="item 1"):
        clip.tokenize(["a dog", 3])


def test_processor_is_required_for_convenience_methods():
    model, _ = tiny.tiny_clip()
    adapter = load_adapter(model)
    with pytest.raises(ValueError, match="needs a processor"):
        adapter.embed_texts(["a dog"])


# ----------------------------------------------------------------------------------------------- BLIP


def test_blip_embeddings_equal_manual_computation(blip):
    model = blip.model
    pix = blip.preprocess_images(_images(3, seed=2))
    enc = blip.tokenize(TEXTS)
    with torch.no_grad():
        img = blip.encode_images(pix)
        txt = blip.encode_texts(**enc)
        manual_img = F.normalize(model.vision_proj(model.vision_model(pix)[0][:, 0]), dim=-1)
        manual_txt = F.normalize(
            model.text_proj(
                model.text_encoder(enc["input_ids"], enc["attention_mask"]).last_hidden_state[:, 0]
            ),
            dim=-1,
        )
        sims = model(input_ids=enc["input_ids"][:3], attention_mask=enc["attention_mask"][:3], pixel_values=pix,
                     use_itm_head=False).itm_score  # fmt: skip
    torch.testing.assert_close(img, manual_img)
    torch.testing.assert_close(txt, manual_txt)
    torch.testing.assert_close(img @ txt[:3].t(), sims)
    assert blip.embed_texts(TEXTS).shape == (4, blip.embedding_dim)


def test_blip_itm_scores_equal_the_itm_head(blip):
    model = blip.model
    pix = blip.preprocess_images(_images(2, seed=3))
    enc = blip.tokenize(TEXTS[:2])
    with torch.no_grad():
        ours = blip.itm_scores(pix, **enc)
        logits = model(pixel_values=pix, use_itm_head=True, **enc).itm_score
    torch.testing.assert_close(ours, logits.softmax(-1)[:, 1])
    with pytest.raises(ValueError, match="pairs"):
        blip.itm_scores(pix, **blip.tokenize(TEXTS))


def test_blip_itm_from_states_encodes_the_image_once(blip):
    """Re-ranking one image's candidates: states computed once and broadcast = per-pair itm_scores."""
    pix = blip.preprocess_images(_images(1, seed=4))
    enc = blip.tokenize(TEXTS)
    with torch.no_grad():
        per_pair = blip.itm_scores(pix.expand(len(TEXTS), -1, -1, -1), **enc)
        states = blip.image_states(pix)
        once = blip.itm_scores_from_states(states, **enc)
    assert states.shape[0] == 1
    torch.testing.assert_close(once, per_pair)
    with pytest.raises(ValueError, match="2 image states and 4 texts"):
        blip.itm_scores_from_states(states.expand(2, -1, -1), **enc)


def test_blip_text_length_is_blips_35_tokens():
    model, proc = tiny.tiny_blip_retrieval(max_length=64)
    proc.tokenizer.model_max_length = 512  # as the published tokenizer says
    blip = load_adapter(model, proc)
    assert blip.max_text_length == 35
    assert blip.tokenize([" ".join(["dog"] * 60)])["input_ids"].shape[1] == 35


def test_blip_temperature_is_the_logit_scale(blip):
    assert isinstance(blip, BlipRetrievalAdapter)
    assert blip.temp.item() == pytest.approx(0.07, rel=1e-3)  # BLIP's initial temperature
    assert blip.logit_scale.exp().item() == pytest.approx(1 / blip.temp.item(), rel=1e-5)
    blip.logit_scale.backward()
    assert blip.temp.grad.item() == pytest.approx(-1 / blip.temp.item(), rel=1e-5)  # d(-log t)/dt
    with torch.no_grad():
        blip.temp.fill_(5.0)
    blip.clamp_temperature()
    assert blip.temp.item() == 0.5


def _naive_itc(img: torch.Tensor, txt: torch.Tensor, scale: float, ids: list[int]) -> float:
    b = len(ids)
    total = 0.0
    for direction in ("i2t", "t2i"):
        for i in range(b):
            row = [
                scale * float((img[i] @ txt[j]) if direction == "i2t" else (txt[i] @ img[j]))
                for j in range(b)
            ]
            log_z = math.log(sum(math.exp(v) for v in row))
            pos = [j for j in range(b) if ids[j] == ids[i]]
            total += -sum(row[j] - log_z for j in pos) / len(pos) / b
    return total / 2


def _naive_itm(blip, pix, input_ids, att, neg_image_of_text, neg_text_of_image) -> float:
    model = blip.model
    states = model.vision_model(pix)[0]
    losses = []

    def head(i_img: int, j_txt: int) -> torch.Tensor:
        out = model.text_encoder(
            input_ids=input_ids[j_txt : j_txt + 1],
            attention_mask=att[j_txt : j_txt + 1],
            encoder_hidden_states=states[i_img : i_img + 1],
            encoder_attention_mask=torch.ones(states.shape[1:2], dtype=torch.long)[None],
        )
        return model.itm_head(out.last_hidden_state[:, 0])[0]

    b = pix.shape[0]
    for i in range(b):
        losses.append(-F.log_softmax(head(i, i), -1)[1])
    for j in range(b):
        losses.append(-F.log_softmax(head(neg_image_of_text[j], j), -1)[0])
    for i in range(b):
        losses.append(-F.log_softmax(head(i, neg_text_of_image[i]), -1)[0])
    return float(sum(losses) / len(losses))


@pytest.mark.parametrize("ids", [[0, 1], [5, 5, 9]])
def test_blip_itm_loss_equals_naive_reference(blip, ids):
    """ITC against a per-element loop; ITM equals the naive loss of one admissible choice of negatives."""
    b = len(ids)
    pix = blip.preprocess_images(_images(b, seed=4))
    enc = blip.tokenize(TEXTS[:b])
    with torch.no_grad():
        res = blip.itm_loss(pix, enc["input_ids"], enc["attention_mask"], ids=ids)
        img, txt = blip.encode_images(pix), blip.encode_texts(**enc)
        itc = _naive_itc(img, txt, float(blip.logit_scale.exp()), ids)
        # every admissible negative: a pair with a different id
        choices = [[j for j in range(b) if ids[j] != ids[i]] for i in range(b)]
        outcomes = [
            _naive_itm(blip, pix, enc["input_ids"], enc["attention_mask"], list(neg_img), list(neg_txt))
            for neg_img in itertools.product(*choices)
            for neg_txt in itertools.product(*choices)
        ]
    assert res.itc.item() == pytest.approx(itc, rel=1e-5)
    assert min(abs(res.itm.item() - o) for o in outcomes) <= 1e-5 * max(map(abs, outcomes))
    if b == 2:
        assert len(outcomes) == 1  # one negative per row: fully determined
    assert res.loss.item() == pytest.approx(res.itc.item() + res.itm.item(), rel=1e-6)


def test_blip_itm_loss_backpropagates_and_validates(blip):
    pix = blip.preprocess_images(_images(4, seed=5))
    enc = blip.tokenize(TEXTS)
    res = blip.itm_loss(pix, **enc, generator=torch.Generator().manual_seed(0))
    res.loss.backward()
    assert blip.model.itm_head.weight.grad.abs().sum() > 0
    assert blip.temp.grad is not None and blip.temp.grad.abs() > 0
    again = blip.itm_loss(pix, **enc, generator=torch.Generator().manual_seed(0))
    assert again.loss.item() == pytest.approx(res.loss.item(), rel=1e-6)
    with pytest.raises(ValueError, match="two distinct ids"):
        blip.itm_loss(pix, **enc, ids=[1, 1, 1, 1])
    with pytest.raises(ValueError, match="one entry per pair"):
        blip.itm_loss(pix, **enc, ids=[1, 2])


def test_clip_has_no_itm(clip):
    with pytest.raises(NotImplementedError, match="image-text matching"):
        clip.itm_scores(torch.zeros(1, 3, 32, 32), torch.zeros(1, 4, dtype=torch.long))


# -------------------------------------------------------------------------------- loading, saving, ids


def test_load_from_saved_dirs(tiny_model_dir):
    clip = load_adapter(tiny_model_dir("clip"))
    blip = load_adapter(str(tiny_model_dir("blip")), device="cpu")
    assert isinstance(clip, ClipAdapter) and isinstance(blip, BlipRetrievalAdapter)
    assert clip.processor is not None and blip.processor is not None
    ref = load_adapter(*tiny.tiny_clip())
    np.testing.assert_allclose(clip.embed_texts(TEXTS), ref.embed_texts(TEXTS), atol=1e-6)
    assert clip.fingerprint == ref.fingerprint


def test_unsupported_models_get_clear_errors(tiny_model_dir):
    with pytest.raises(UnsupportedModelError, match="supported: CLIPModel"):
        load_adapter(nn.Linear(2, 2))
    with pytest.raises(UnsupportedModelError, match="BlipForImageTextRetrieval checkpoint"):
        load_adapter(tiny_model_dir("blip-captioner"))
    with pytest.raises(UnsupportedModelError, match="'owlvit'"):
        load_adapter(tiny_model_dir("owlvit"))
    with pytest.raises(TypeError, match="hub id or a folder"):
        load_adapter(42)  # type: ignore[arg-type]


def test_same_shape_models_are_accepted():
    model, proc = tiny.tiny_clip()

    class ClipLike(nn.Module):
        def __init__(self, m):
            super().__init__()
            self.vision_model, self.text_model = m.vision_model, m.text_model
            self.visual_projection, self.text_projection = m.visual_projection, m.text_projection
            self.logit_scale = m.logit_scale
            self.config = m.config

    like = load_adapter(ClipLike(model), proc)
    assert isinstance(like, ClipAdapter)
    np.testing.assert_allclose(
        like.embed_texts(TEXTS), load_adapter(model, proc).embed_texts(TEXTS), atol=1e-6
    )


def test_fingerprint_tracks_weights_and_preprocessing():
    a = load_adapter(*tiny.tiny_clip(seed=0))
    b = load_adapter(*tiny.tiny_clip(seed=0))
    assert a.fingerprint == b.fingerprint and len(a.fingerprint) == 32
    assert load_adapter(*tiny.tiny_clip(seed=1)).fingerprint != a.fingerprint
    with torch.no_grad():
        b.model.visual_projection.weight[0, 0] += 1e-3
    assert b.fingerprint != a.fingerprint
    model, proc = tiny.tiny_clip(seed=0)
    proc.image_processor.image_mean = [0.0, 0.0, 0.0]
    assert load_adapter(model, proc).fingerprint != a.fingerprint


def test_fingerprint_is_stable_across_tokenizer_calls():
    adapter = load_adapter(*tiny.tiny_clip(seed=0))
    before = adapter.fingerprint
    adapter.embed_texts(TEXTS)  # tokenizing stores padding/truncation state in the backend tokenizer
    adapter.tokenize(["a dog"])
    assert adapter.fingerprint == before


def test_blip_temperature_survives_save_and_trainer_style_save(blip, tmp_path):
    with torch.no_grad():
        blip.temp.fill_(0.031)
    fp = blip.fingerprint
    blip.save_pretrained(tmp_path / "adapter")
    again = load_adapter(tmp_path / "adapter")
    assert again.temp.item() == pytest.approx(0.031)
    assert again.fingerprint == fp
    blip.model.save_pretrained(tmp_path / "plain")  # what a Trainer checkpoint does
    blip.processor.save_pretrained(tmp_path / "plain")
    assert load_adapter(tmp_path / "plain").temp.item() == pytest.approx(0.031)
    from transformers import BlipForImageTextRetrieval

    user_loaded = BlipForImageTextRetrieval.from_pretrained(tmp_path / "plain")
    assert load_adapter(user_loaded).temp.item() == pytest.approx(0.031)


# --------------------------------------------------------------------------------------------- freezing


def _snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in module.named_parameters()}


def _train_step(adapter, steps: int = 1) -> None:
    params = [p for p in adapter.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.5)
    pix = adapter.preprocess_images(_images(3, seed=7))
    enc = adapter.tokenize(TEXTS[:3])
    for _ in range(steps):
        opt.zero_grad()
        out = adapter(pixel_values=pix, **enc)
        logits = out["logit_scale"].exp() * out["image_embeds"] @ out["text_embeds"].t()
        labels = torch.arange(3)
        loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2
        if isinstance(adapter, BlipRetrievalAdapter):
            loss = loss + adapter.itm_loss(pix, **enc, generator=torch.Generator().manual_seed(0)).loss
        loss.backward()
        opt.step()


def _changed(before: dict[str, torch.Tensor], module: nn.Module) -> set[str]:
    now = dict(module.named_parameters())
    return {n for n, p in before.items() if not torch.equal(p, now[n].detach())}


@pytest.mark.parametrize("make", [tiny.tiny_clip, tiny.tiny_blip_retrieval])
def test_projection_policy_trains_only_projections(make):
    adapter = load_adapter(*make())
    summary = apply_freezing(adapter, "projection")
    expected = set(adapter.projection_parameter_names())
    if isinstance(adapter, ClipAdapter):
        assert expected == {"visual_projection.weight", "text_projection.weight", "logit_scale"}
    else:
        assert expected == {
            "vision_proj.weight",
            "vision_proj.bias",
            "text_proj.weight",
            "text_proj.bias",
            "temp",
        }
    assert set(summary.trainable_names) == expected
    params = dict(adapter.base_model.named_parameters())
    assert summary.trainable == sum(params[n].numel() for n in expected)
    assert summary.total == sum(p.numel() for p in params.values())
    before = _snapshot(adapter.base_model)
    _train_step(adapter)
    assert _changed(before, adapter.base_model) == expected


@pytest.mark.parametrize("make", [tiny.tiny_clip, tiny.tiny_blip_retrieval])
def test_full_policy_trains_encoders(make):
    adapter = load_adapter(*make())
    apply_freezing(adapter, "projection")
    summary = apply_freezing(adapter, "full")
    assert summary.trainable == summary.total
    before = _snapshot(adapter.base_model)
    _train_step(adapter)
    changed = _changed(before, adapter.base_model)
    assert any(n.startswith("vision_model.encoder") for n in changed)
    assert any(n.startswith(("text_model.encoder", "text_encoder.encoder")) for n in changed)


@pytest.mark.parametrize("make", [tiny.tiny_clip, tiny.tiny_blip_retrieval])
def test_lora_policy_trains_only_adapter_weights(make):
    adapter = load_adapter(*make())
    pix = adapter.preprocess_images(_images(2, seed=8))
    with torch.no_grad():
        plain = adapter.encode_images(pix)
    summary = apply_freezing(adapter, "lora", lora_r=4, lora_alpha=8)
    assert adapter.model is not adapter.base_model  # peft-wrapped in place
    cfg = adapter.base_model.config
    h, layers = cfg.vision_config.hidden_size, cfg.vision_config.num_hidden_layers
    if isinstance(adapter, ClipAdapter):
        # q and v (h -> h) in every layer of both towers: r * (h + h) each
        expected = 2 * 2 * layers * 4 * (h + h)
    else:
        # text: self- and cross-attention query/value (h -> h); vision: fused qkv (h -> 3h)
        expected = 2 * 2 * layers * 4 * (h + h) + layers * 4 * (h + 3 * h)
    assert summary.trainable == expected
    assert all("lora_" in n for n in summary.trainable_names)
    with torch.no_grad():
        torch.testing.assert_close(adapter.encode_images(pix), plain)  # LoRA B starts at zero
    before = _snapshot(adapter.base_model)
    _train_step(adapter, steps=2)
    changed = _changed(before, adapter.base_model)
    assert changed and all("lora_" in n for n in changed)
    assert any("lora_B" in n for n in changed)
    assert adapter.embed_texts(TEXTS).shape == (4, adapter.embedding_dim)


def test_lora_custom_targets_and_errors(clip, tmp_path):
    with pytest.raises(ValueError, match="unknown freezing policy 'frozen'"):
        apply_freezing(clip, "frozen")
    summary = apply_freezing(clip, "lora", lora_target_modules=r".*vision_model.*\.(q_proj|v_proj)", lora_r=4)
    assert summary.trainable_names and all("vision_model" in n for n in summary.trainable_names)
    with pytest.raises(ValueError, match="already carries LoRA"):
        apply_freezing(clip, "lora")
    with pytest.raises(ValueError, match="already carries LoRA"):
        apply_freezing(clip, "projection")
    # a LoRA model saves merged into a plain checkpoint that reloads to the same embeddings
    with torch.no_grad():
        for n, p in clip.base_model.named_parameters():
            if "lora_B" in n:
                p.normal_()
    clip.save_pretrained(tmp_path)
    merged = load_adapter(tmp_path)
    np.testing.assert_allclose(merged.embed_images(_images(2)), clip.embed_images(_images(2)), atol=1e-5)


def test_bad_lora_targets_are_named(blip):
    with pytest.raises(ValueError, match="do not match"):
        apply_freezing(blip, "lora", lora_target_modules=["no_such_module"])


def test_lora_folder_reloads_onto_its_base(tiny_model_dir, tmp_path):
    adapter = load_adapter(tiny_model_dir("clip"))
    apply_freezing(adapter, "lora", lora_r=2)
    with torch.no_grad():
        for n, p in adapter.base_model.named_parameters():
            if "lora_B" in n:
                p.normal_()
    adapter.save_pretrained(tmp_path, merge_lora=False)
    assert (tmp_path / "adapter_config.json").is_file() and not (tmp_path / "config.json").exists()
    again = load_adapter(tmp_path)
    assert again.model is not again.base_model
    np.testing.assert_allclose(again.embed_texts(TEXTS), adapter.embed_texts(TEXTS), atol=1e-6)
    assert not np.allclose(again.embed_texts(TEXTS), load_adapter(tiny_model_dir("clip")).embed_texts(TEXTS))


@pytest.mark.parametrize("finetune_backbone", [False, True])
def test_full_freezing_keeps_what_the_model_declares_frozen(finetune_backbone):
    """VSE++ without backbone fine-tuning ("VSE++", not "VSE++ (FT)"): "full" trains all but the VGG."""
    adapter = load_adapter(*tiny.tiny_vsepp(finetune_backbone=finetune_backbone))
    summary = apply_freezing(adapter, "full")
    backbone = [n for n in summary.trainable_names if n.startswith("backbone.")]
    assert bool(backbone) is finetune_backbone
    assert any(n.startswith("img_fc.") for n in summary.trainable_names)
    clip = apply_freezing(load_adapter(*tiny.tiny_clip()), "full")  # no keep_frozen: everything trains
    assert clip.trainable == clip.total
