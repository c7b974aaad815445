"""The paper models at their real geometry (random weights, published configs): shapes the tiny models never hit.

Fast tests check the config records and the arithmetic they imply; the ``slow`` ones build CLIP ViT-B/32
(224 px), BLIP ITM base (384 px) and an SD-1.5 inpainting pipeline with narrowed channels but the real
geometry (4 levels, VAE factor 8, 64x64 latents, 9 UNet input channels) and run the real code paths;
VSE++ (VGG19 at 224 px, bi-GRU, 1024-d joint space) is counted against a hand-worked parameter total.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hf_spurious.models.real_size import REAL_SIZE_MODELS, build_real_size, real_size_config

WORDS = [
    "a",
    "dog",
    "cat",
    "on",
    "the",
    "couch",
    "next",
    "to",
    "bench",
    "red",
    "frisbee",
    "man",
    "riding",
    "horse",
]
CAPTIONS = ["a dog on the couch next to a cat", "a man riding a horse", "a red frisbee on the bench", "a cat"]


def _image(seed: int = 0, h: int = 480, w: int = 640) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# ------------------------------------------------------------------------------------------ fast


def test_every_listed_model_has_a_config_with_its_source():
    for name in REAL_SIZE_MODELS:
        rec = real_size_config(name)
        assert rec["name"] == name
        if rec["hub_id"] is None:  # not on the hub (VSE++): the authors' code repository
            assert rec["source"].startswith("https://github.com/")
        else:
            assert rec["source"].startswith("https://huggingface.co/" + rec["hub_id"])


@pytest.mark.parametrize(
    ("name", "size", "patch", "grid"),
    [
        ("clip-vit-base-patch32", 224, 32, 7),
        ("clip-vit-large-patch14-336", 336, 14, 24),
        ("blip-itm-base-coco", 384, 16, 24),
        ("siglip-base-patch16-224", 224, 16, 14),
    ],
)
def test_published_vision_geometry(name, size, patch, grid):
    vision = real_size_config(name)["config"]["vision_config"]
    assert (vision["image_size"], vision["patch_size"]) == (size, patch)
    assert vision["image_size"] // vision["patch_size"] == grid
    assert vision["image_size"] % vision["patch_size"] == 0


def test_clip_text_is_77_tokens_with_legacy_eos_pooling():
    for name in ("clip-vit-base-patch32", "clip-vit-large-patch14-336"):
        text = real_size_config(name)["config"]["text_config"]
        assert text["max_position_embeddings"] == 77
        assert text["eos_token_id"] == 2  # published value: transformers pools at argmax(input_ids)


def test_sd_latent_geometry_from_config():
    parts = real_size_config("sd-1.5-inpainting")["components"]
    factor = 2 ** (len(parts["vae"]["block_out_channels"]) - 1)
    assert factor == 8
    assert parts["unet"]["sample_size"] * factor == 512
    assert parts["unet"]["in_channels"] == 2 * parts["vae"]["latent_channels"] + 1
    assert parts["unet"]["cross_attention_dim"] == parts["text_encoder"]["hidden_size"]


@pytest.mark.slow
def test_overrides_merge_without_touching_the_file():
    pytest.importorskip("transformers")
    model, _ = build_real_size(
        "clip-vit-base-patch32",
        words=WORDS,
        overrides={
            "text_config": {
                "num_hidden_layers": 1,
                "hidden_size": 64,
                "intermediate_size": 64,
                "num_attention_heads": 2,
            },
            "vision_config": {
                "num_hidden_layers": 1,
                "hidden_size": 64,
                "intermediate_size": 64,
                "num_attention_heads": 2,
            },
        },
    )
    assert model.config.vision_config.hidden_size == 64
    assert model.config.vision_config.patch_size == 32  # untouched keys keep the published value
    assert real_size_config("clip-vit-base-patch32")["config"]["vision_config"]["hidden_size"] == 768


# ------------------------------------------------------------------------------------------ slow


@pytest.fixture(scope="module")
def clip_b32():
    from hf_spurious.models.loading import load_adapter

    model, processor = build_real_size("clip-vit-base-patch32", words=WORDS)
    return load_adapter(model, processor)


@pytest.mark.slow
def test_clip_b32_parameter_count_is_the_published_one(clip_b32):
    assert sum(p.numel() for p in clip_b32.base_model.parameters()) == 151_277_313


@pytest.mark.slow
def test_clip_b32_embeds_640x480_images_at_224(clip_b32):
    pv = clip_b32.preprocess_images([_image(0), _image(1)])
    assert tuple(pv.shape) == (2, 3, 224, 224)
    emb = clip_b32.embed_images([_image(0), _image(1)], batch_size=2)
    assert emb.shape == (2, 512)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
    enc = clip_b32.tokenize(CAPTIONS)
    assert enc["input_ids"].shape[1] == 11  # longest caption: 9 words + bos + eos, one token per known word
    # legacy eos pooling (eos_token_id=2 in the published config) must read the eos position, the argmax id
    eos_pos = enc["input_ids"].argmax(dim=1)
    assert (enc["input_ids"][torch.arange(4), eos_pos] == clip_b32.processor.tokenizer.eos_token_id).all()


@pytest.mark.slow
def test_clip_b32_gradcam_grid_is_7x7(clip_b32):
    from hf_spurious.evaluation.gradcam import ClassSimilarityTarget, ViTGradCAM

    cam = ViTGradCAM(clip_b32)
    seen = []
    handle = cam.layer.register_forward_pre_hook(lambda _m, args: seen.append(tuple(args[0].shape)))
    pv = clip_b32.preprocess_images([_image(2)])
    target = ClassSimilarityTarget(torch.randn(512, generator=torch.Generator().manual_seed(0)))
    maps = cam(pv, [target])
    grid = cam(pv, [target], size=(7, 7))  # the raw 7x7 grid, normalised, not resized
    handle.remove()
    assert seen[-1] == (1, 1 + 7 * 7, 768)
    assert tuple(maps.shape) == (1, 1, 224, 224) and tuple(grid.shape) == (1, 1, 7, 7)
    assert float(grid.max()) == pytest.approx(1.0) and float(grid.min()) == pytest.approx(0.0)
    assert float(maps.min()) >= 0.0 and float(maps.max()) <= 1.0


@pytest.mark.slow
def test_clip_b32_projection_only_step_moves_only_projections(clip_b32):
    import copy

    from hf_spurious.losses.contrastive import clip_contrastive_loss
    from hf_spurious.models.freezing import apply_freezing

    adapter = copy.deepcopy(clip_b32)
    summary = apply_freezing(adapter, "projection")
    assert summary.trainable == 768 * 512 + 512 * 512 + 1  # visual + text projection (no bias) + logit scale
    before = {n: p.detach().clone() for n, p in adapter.base_model.named_parameters()}
    opt = torch.optim.SGD([p for p in adapter.parameters() if p.requires_grad], lr=0.1)
    pv = adapter.preprocess_images([_image(i) for i in range(4)])
    out = adapter(pixel_values=pv, **adapter.tokenize(CAPTIONS))
    clip_contrastive_loss(out["image_embeds"], out["text_embeds"], out["logit_scale"]).backward()
    opt.step()
    changed = {n for n, p in adapter.base_model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == {"visual_projection.weight", "text_projection.weight", "logit_scale"}


@pytest.mark.slow
def test_blip_itm_rerank_at_384():
    from hf_spurious.evaluation.rerank import rerank_with_itm
    from hf_spurious.models.loading import load_adapter

    model, processor = build_real_size(
        "blip-itm-base-coco",
        words=WORDS,
        overrides={"text_config": {"num_hidden_layers": 2}, "vision_config": {"num_hidden_layers": 2}},
    )
    adapter = load_adapter(model, processor)
    assert tuple(adapter.preprocess_images([_image(0)]).shape) == (1, 3, 384, 384)
    assert adapter.max_text_length == 35  # BLIP's own limit, though the hub tokenizer allows 512
    vision_runs = []
    hook = model.vision_model.register_forward_hook(
        lambda _m, _a, out: vision_runs.append(tuple(out[0].shape[:2]))
    )
    ranked = rerank_with_itm(adapter, [_image(0)], CAPTIONS, np.array([[3, 2, 1, 0]]), top_n=4, batch_size=4)
    hook.remove()
    assert sorted(ranked[0].tolist()) == [0, 1, 2, 3]
    assert vision_runs == [(1, 1 + 24 * 24)]  # the query image is encoded once, not once per candidate
    scores = adapter.itm_scores(
        adapter.preprocess_images([_image(0)] * 4), **{k: v for k, v in adapter.tokenize(CAPTIONS).items()}
    )
    expected = np.array([3, 2, 1, 0])[np.argsort(-scores.detach().numpy()[[3, 2, 1, 0]], kind="stable")]
    assert ranked[0].tolist() == expected.tolist()


@pytest.mark.slow
def test_sd_inpainting_geometry_on_a_640x480_image():
    from unittest import mock

    from diffusers import AutoPipelineForInpainting

    from hf_spurious.synthesis.inpaint import DiffusersInpainter, context_window

    narrow = {
        "unet": {"block_out_channels": [32, 64, 64, 64]},
        "vae": {"block_out_channels": [32, 32, 64, 64]},
        "text_encoder": {"num_hidden_layers": 1},
    }
    pipe = build_real_size("sd-1.5-inpainting", words=WORDS, overrides=narrow)
    with mock.patch.object(AutoPipelineForInpainting, "from_pretrained", return_value=pipe):
        inpainter = DiffusersInpainter("random-sd", steps=1, device="cpu", dtype="fp32")
    assert inpainter.resolution == 512
    image, mask = _image(3), np.zeros((480, 640), dtype=bool)
    mask[150:330, 200:400] = True
    r0, c0, r1, c1 = context_window(mask, 512, 0.5)
    assert (r1 - r0, c1 - c0) == (480, 512) and r0 <= 150 and r1 >= 330 and c0 <= 200 and c1 >= 400
    seen: dict[str, tuple] = {}

    def keep(name):
        def hook(_m, args, kwargs):  # returns None: a pre-hook's return value would replace the inputs
            seen.setdefault(name, tuple((args[0] if args else next(iter(kwargs.values()))).shape))

        return hook

    hooks = [
        module.register_forward_pre_hook(keep(name), with_kwargs=True)
        for name, module in (("unet", pipe.unet), ("dec", pipe.vae.decoder), ("text", pipe.text_encoder))
    ]
    (out,) = inpainter.inpaint([image], [mask], seeds=[0])
    for h in hooks:
        h.remove()
    assert seen["unet"] == (
        2,
        9,
        64,
        64,
    )  # CFG doubles the batch; 4 latents + 1 mask + 4 masked-image latents
    assert seen["dec"] == (1, 4, 64, 64)
    assert seen["text"][1] == 77
    assert out.shape == (480, 640, 3)
    assert (out[~mask] == image[~mask]).all()
    assert not (out[mask] == image[mask]).all()


def test_gpu_suite_without_cuda_lists_its_jobs_and_exits_0():
    import subprocess
    import sys
    from pathlib import Path

    if torch.cuda.is_available():
        pytest.skip("this checks the CPU path")
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_suite.py"
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "needs CUDA" in proc.stdout and "nothing was run" in proc.stdout
    for job in (
        "clip-vit-base-patch32",
        "clip-vit-large-patch14-336",
        "blip-itm-base-coco",
        "sd-1.5-inpainting",
    ):
        assert f"| {job} |" in proc.stdout
    assert "retrieval engine" in proc.stdout and "Estimated total:" in proc.stdout


@pytest.mark.slow
def test_siglip_base_geometry_no_cls_token_and_64_positions():
    from hf_spurious.models.loading import load_adapter

    model, processor = build_real_size("siglip-base-patch16-224", words=WORDS)
    assert sum(p.numel() for p in model.parameters()) == 203_155_970
    adapter = load_adapter(model, processor)
    enc = adapter.tokenize(CAPTIONS)
    assert tuple(enc["input_ids"].shape) == (4, 64)  # SigLIP's fixed-length text
    seen = []
    layer = model.vision_model.encoder.layers[-1].layer_norm1
    handle = layer.register_forward_pre_hook(lambda _m, args: seen.append(tuple(args[0].shape)))
    with torch.no_grad():
        emb = adapter.encode_images(adapter.preprocess_images([_image(0)]))
    handle.remove()
    assert seen == [(1, 14 * 14, 768)]  # the patch grid alone: no CLS token in front
    assert tuple(emb.shape) == (1, 768)
    from hf_spurious.evaluation.gradcam import ClassSimilarityTarget, ViTGradCAM

    target = ClassSimilarityTarget(torch.randn(768, generator=torch.Generator().manual_seed(0)))
    grid = ViTGradCAM(adapter)(adapter.preprocess_images([_image(1)]), [target], size=(14, 14))
    assert tuple(grid.shape) == (1, 1, 14, 14)
    assert float(grid.max()) == pytest.approx(1.0) and float(grid.min()) == pytest.approx(0.0)


# ------------------------------------------------------------------------------------------ VSE++

VGG19_CONV_FC6_FC7 = 139_570_240
"""torchvision's vgg19: 143,667,240 parameters, minus fc8 (4096 x 1000 + 1000 = 4,097,000), as VSE++ drops it."""
VSEPP_TEXT = 11353 * 300 + 2 * (3 * 1024 * 300 + 3 * 1024 * 1024 + 2 * 3 * 1024)  # embeddings + bi-GRU
VSEPP_TOTAL = VGG19_CONV_FC6_FC7 + (4096 * 1024 + 1024) + VSEPP_TEXT + 1  # + img_fc + logit_scale


def test_vsepp_record_is_vgg19_at_224_with_a_1024_joint_space():
    from hf_spurious.models.vsepp.configuration import VGG19_LAYERS

    rec = real_size_config("vsepp-vgg19-coco")
    cfg, proc = rec["config"], rec["processor"]
    assert tuple(cfg["vgg_layers"]) == VGG19_LAYERS and cfg["image_backbone"] == "vgg"
    assert sum(1 for v in cfg["vgg_layers"] if v != "M") == 16  # VGG19 = 16 convs + 3 fc
    assert (cfg["vgg_fc_size"], cfg["embed_size"], cfg["word_dim"]) == (4096, 1024, 300)
    assert (cfg["num_layers"], cfg["bidirectional"], cfg["image_size"]) == (1, True, 224)
    assert cfg["vocab_size"] == rec["tokenizer"]["vocab_size"] == 11353
    assert (proc["shortest_edge"], proc["crop_size"]) == (256, 224)  # Resize(256) + CenterCrop(224)
    assert proc["image_mean"] == [0.485, 0.456, 0.406] and proc["image_std"] == [0.229, 0.224, 0.225]


def test_vgg19_without_fc8_parameter_arithmetic():
    """The published vgg19 total, rebuilt by hand from the record's layer list (conv 3x3, fc6, fc7, fc8)."""
    layers = real_size_config("vsepp-vgg19-coco")["config"]["vgg_layers"]
    convs, channels = 0, 3
    for width in (v for v in layers if v != "M"):
        convs += channels * width * 9 + width
        channels = width
    fc6, fc7, fc8 = 512 * 7 * 7 * 4096 + 4096, 4096 * 4096 + 4096, 4096 * 1000 + 1000
    assert convs == 20_024_384
    assert convs + fc6 + fc7 + fc8 == 143_667_240  # torchvision's vgg19
    assert fc8 == 4_097_000 and convs + fc6 + fc7 == VGG19_CONV_FC6_FC7
    assert VSEPP_TOTAL == 155_318_413


def test_vsepp_rejects_more_words_than_its_vocabulary():
    with pytest.raises(ValueError, match="vocabulary holds 8"):
        build_real_size("vsepp-vgg19-coco", words=WORDS, overrides={"vocab_size": 8})


def test_vsepp_config_round_trip_and_meta_parameter_count(tmp_path):
    from transformers import AutoConfig

    from hf_spurious.models.vsepp.configuration import VGG19_LAYERS, VseppConfig
    from hf_spurious.models.vsepp.modeling import VseppModel  # registers model_type "vsepp"

    config = VseppConfig(**real_size_config("vsepp-vgg19-coco")["config"])
    config.save_pretrained(tmp_path)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, VseppConfig)
    saved, built = loaded.to_dict(), config.to_dict()
    assert saved.pop("_name_or_path") == str(tmp_path) and built.pop("_name_or_path") == ""
    assert saved == built and saved["vgg_layers"] == list(VGG19_LAYERS)
    with torch.device("meta"):  # the real size without allocating 620 MB
        model = VseppModel(loaded)
    counts = {
        name: sum(p.numel() for p in module.parameters())
        for name, module in (("backbone", model.backbone), ("img_fc", model.img_fc), ("text", model.embed))
    }
    counts["rnn"] = sum(p.numel() for p in model.rnn.parameters())
    assert counts == {
        "backbone": VGG19_CONV_FC6_FC7,
        "img_fc": 4096 * 1024 + 1024,
        "text": 11353 * 300,
        "rnn": VSEPP_TEXT - 11353 * 300,
    }
    assert sum(p.numel() for p in model.parameters()) == VSEPP_TOTAL


@pytest.fixture(scope="module")
def vsepp_real():
    """The real-size VSE++ (about 2 s to build and 0.6 GB; its two tests take under 10 s, so not ``slow``)."""
    return build_real_size("vsepp-vgg19-coco", words=WORDS)


def test_vsepp_parameter_count_is_vgg19_fc7_plus_text(vsepp_real):
    model, processor = vsepp_real
    assert sum(p.numel() for p in model.parameters()) == VSEPP_TOTAL
    assert sum(p.numel() for p in model.backbone.parameters()) == VGG19_CONV_FC6_FC7
    assert len(processor.tokenizer) == 4 + len(WORDS) <= model.config.vocab_size


def test_vsepp_embeds_two_640x480_images_at_224(vsepp_real, tmp_path):
    from transformers import AutoProcessor

    model, processor = vsepp_real
    pv = processor(images=[_image(0), _image(1)], return_tensors="pt")["pixel_values"]
    assert tuple(pv.shape) == (2, 3, 224, 224)
    enc = processor(text=CAPTIONS[:2], return_tensors="pt", padding=True)
    assert enc["input_ids"].shape[1] == 9 + 2  # <start> + 9 known words + <end>, no <unk>
    assert (enc["input_ids"] != processor.tokenizer.unk_token_id).all()
    with torch.no_grad():
        img = model.get_image_features(pv).pooler_output
        txt = model.get_text_features(**enc).pooler_output
    assert tuple(img.shape) == tuple(txt.shape) == (2, 1024)
    torch.testing.assert_close(img.norm(dim=1), torch.ones(2))
    torch.testing.assert_close(txt.norm(dim=1), torch.ones(2))
    assert not torch.allclose(img[0], img[1]) and not torch.allclose(txt[0], txt[1])
    processor.save_pretrained(tmp_path)  # the processor (tokenizer + image settings) round trip
    again = AutoProcessor.from_pretrained(tmp_path)
    assert torch.equal(again(images=[_image(0)], return_tensors="pt")["pixel_values"], pv[:1])
    assert again(text=CAPTIONS[:2], return_tensors="pt", padding=True)["input_ids"].tolist() == (
        enc["input_ids"].tolist()
    )
