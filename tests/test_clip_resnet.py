"""CLIP with a modified-ResNet image tower: converter vs an independent naive forward, round trips,
adapter / freezing / CLI on the tiny RN CLIP, and GradCAM on the CNN tower vs a hook-based reference."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from hf_spurious.models.clip_resnet import (
    ClipResNetModel,
    convert_openclip_checkpoint,
    hf_to_openclip,
    infer_config,
    openclip_to_hf,
    resnet_clip_config,
)

# ------------------------------------------------------------ open_clip layout, written independently here


def _bn(sd, prefix, c, g):
    sd[f"{prefix}.weight"] = 1 + 0.1 * torch.randn(c, generator=g)
    sd[f"{prefix}.bias"] = 0.1 * torch.randn(c, generator=g)
    sd[f"{prefix}.running_mean"] = 0.1 * torch.randn(c, generator=g)
    sd[f"{prefix}.running_var"] = 0.5 + torch.rand(c, generator=g)
    sd[f"{prefix}.num_batches_tracked"] = torch.tensor(0)


def _conv(sd, key, cout, cin, k, g):
    sd[key] = torch.randn(cout, cin, k, k, generator=g) * math.sqrt(2 / (cin * k * k))


def openclip_state_dict(layers, width, image, embed, text_width, text_layers, vocab, ctx, seed=0):
    """A random state dict with open_clip's key names and shapes for a ResNet CLIP."""
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}
    _conv(sd, "visual.conv1.weight", width // 2, 3, 3, g)
    _bn(sd, "visual.bn1", width // 2, g)
    _conv(sd, "visual.conv2.weight", width // 2, width // 2, 3, g)
    _bn(sd, "visual.bn2", width // 2, g)
    _conv(sd, "visual.conv3.weight", width, width // 2, 3, g)
    _bn(sd, "visual.bn3", width, g)
    cin = width
    for s, depth in enumerate(layers):
        planes = width * 2**s
        for i in range(depth):
            p = f"visual.layer{s + 1}.{i}"
            _conv(sd, f"{p}.conv1.weight", planes, cin, 1, g)
            _bn(sd, f"{p}.bn1", planes, g)
            _conv(sd, f"{p}.conv2.weight", planes, planes, 3, g)
            _bn(sd, f"{p}.bn2", planes, g)
            _conv(sd, f"{p}.conv3.weight", planes * 4, planes, 1, g)
            _bn(sd, f"{p}.bn3", planes * 4, g)
            if i == 0:
                _conv(sd, f"{p}.downsample.0.weight", planes * 4, cin, 1, g)
                _bn(sd, f"{p}.downsample.1", planes * 4, g)
            cin = planes * 4
    c = width * 32
    sd["visual.attnpool.positional_embedding"] = torch.randn((image // 32) ** 2 + 1, c, generator=g) / c**0.5
    for n in "qkv":
        sd[f"visual.attnpool.{n}_proj.weight"] = torch.randn(c, c, generator=g) / c**0.5
        sd[f"visual.attnpool.{n}_proj.bias"] = 0.1 * torch.randn(c, generator=g)
    sd["visual.attnpool.c_proj.weight"] = torch.randn(embed, c, generator=g) / c**0.5
    sd["visual.attnpool.c_proj.bias"] = 0.1 * torch.randn(embed, generator=g)
    d = text_width
    sd["token_embedding.weight"] = 0.02 * torch.randn(vocab, d, generator=g)
    sd["positional_embedding"] = 0.01 * torch.randn(ctx, d, generator=g)
    for n in range(text_layers):
        p = f"transformer.resblocks.{n}"
        for ln in ("ln_1", "ln_2"):
            sd[f"{p}.{ln}.weight"] = 1 + 0.1 * torch.randn(d, generator=g)
            sd[f"{p}.{ln}.bias"] = 0.1 * torch.randn(d, generator=g)
        sd[f"{p}.attn.in_proj_weight"] = torch.randn(3 * d, d, generator=g) / d**0.5
        sd[f"{p}.attn.in_proj_bias"] = 0.1 * torch.randn(3 * d, generator=g)
        sd[f"{p}.attn.out_proj.weight"] = torch.randn(d, d, generator=g) / d**0.5
        sd[f"{p}.attn.out_proj.bias"] = 0.1 * torch.randn(d, generator=g)
        sd[f"{p}.mlp.c_fc.weight"] = torch.randn(4 * d, d, generator=g) / d**0.5
        sd[f"{p}.mlp.c_fc.bias"] = 0.1 * torch.randn(4 * d, generator=g)
        sd[f"{p}.mlp.c_proj.weight"] = torch.randn(d, 4 * d, generator=g) / (4 * d) ** 0.5
        sd[f"{p}.mlp.c_proj.bias"] = 0.1 * torch.randn(d, generator=g)
    sd["ln_final.weight"] = 1 + 0.1 * torch.randn(d, generator=g)
    sd["ln_final.bias"] = 0.1 * torch.randn(d, generator=g)
    sd["text_projection"] = torch.randn(d, embed, generator=g) / d**0.5
    sd["logit_scale"] = torch.tensor(math.log(1 / 0.07))
    return sd


def _naive_bn(x, sd, p):
    return F.batch_norm(
        x,
        sd[f"{p}.running_mean"],
        sd[f"{p}.running_var"],
        sd[f"{p}.weight"],
        sd[f"{p}.bias"],
        False,
        0.0,
        1e-5,
    )


def naive_image(sd, x, layers, heads):
    """Modified-ResNet forward from the paper's description, straight on the open_clip dict."""
    for i, stride in ((1, 2), (2, 1), (3, 1)):
        x = F.relu(
            _naive_bn(
                F.conv2d(x, sd[f"visual.conv{i}.weight"], stride=stride, padding=1), sd, f"visual.bn{i}"
            )
        )
    x = F.avg_pool2d(x, 2)
    for s, depth in enumerate(layers):
        for i in range(depth):
            p = f"visual.layer{s + 1}.{i}"
            stride = 2 if (s > 0 and i == 0) else 1
            y = F.relu(_naive_bn(F.conv2d(x, sd[f"{p}.conv1.weight"]), sd, f"{p}.bn1"))
            y = F.relu(_naive_bn(F.conv2d(y, sd[f"{p}.conv2.weight"], padding=1), sd, f"{p}.bn2"))
            if stride > 1:
                y = F.avg_pool2d(y, stride)
            y = _naive_bn(F.conv2d(y, sd[f"{p}.conv3.weight"]), sd, f"{p}.bn3")
            skip = x
            if f"{p}.downsample.0.weight" in sd:
                skip = F.avg_pool2d(x, stride) if stride > 1 else x
                skip = _naive_bn(F.conv2d(skip, sd[f"{p}.downsample.0.weight"]), sd, f"{p}.downsample.1")
            x = F.relu(y + skip)
    # attention pool: every token attends (as open_clip computes it), keep the mean token's output
    b, c, h, w = x.shape
    t = x.reshape(b, c, h * w).permute(0, 2, 1)
    t = torch.cat([t.mean(1, keepdim=True), t], 1) + sd["visual.attnpool.positional_embedding"]
    q, k, v = (
        F.linear(t, sd[f"visual.attnpool.{n}_proj.weight"], sd[f"visual.attnpool.{n}_proj.bias"])
        for n in "qkv"
    )
    d = c // heads
    outs = []
    for hd in range(heads):
        sl = slice(hd * d, (hd + 1) * d)
        a = torch.softmax(q[..., sl] @ k[..., sl].transpose(1, 2) / d**0.5, -1)
        outs.append(a @ v[..., sl])
    o = F.linear(torch.cat(outs, -1), sd["visual.attnpool.c_proj.weight"], sd["visual.attnpool.c_proj.bias"])
    return o[:, 0]


def naive_text(sd, ids, text_layers, heads):
    x = sd["token_embedding.weight"][ids] + sd["positional_embedding"][: ids.shape[1]]
    n = ids.shape[1]
    causal = torch.full((n, n), float("-inf")).triu(1)
    d = x.shape[-1]
    hd = d // heads
    for i in range(text_layers):
        p = f"transformer.resblocks.{i}"
        y = F.layer_norm(x, (d,), sd[f"{p}.ln_1.weight"], sd[f"{p}.ln_1.bias"])
        q, k, v = F.linear(y, sd[f"{p}.attn.in_proj_weight"], sd[f"{p}.attn.in_proj_bias"]).chunk(3, -1)
        outs = []
        for h in range(heads):
            sl = slice(h * hd, (h + 1) * hd)
            a = torch.softmax(q[..., sl] @ k[..., sl].transpose(1, 2) / hd**0.5 + causal, -1)
            outs.append(a @ v[..., sl])
        x = x + F.linear(torch.cat(outs, -1), sd[f"{p}.attn.out_proj.weight"], sd[f"{p}.attn.out_proj.bias"])
        y = F.layer_norm(x, (d,), sd[f"{p}.ln_2.weight"], sd[f"{p}.ln_2.bias"])
        y = F.linear(y, sd[f"{p}.mlp.c_fc.weight"], sd[f"{p}.mlp.c_fc.bias"])
        y = y * torch.sigmoid(1.702 * y)  # QuickGELU
        x = x + F.linear(y, sd[f"{p}.mlp.c_proj.weight"], sd[f"{p}.mlp.c_proj.bias"])
    x = F.layer_norm(x, (d,), sd["ln_final.weight"], sd["ln_final.bias"])
    return x[torch.arange(len(ids)), ids.argmax(-1)] @ sd["text_projection"]


SMALL = dict(layers=(1, 2, 1, 2), width=8, image=64, embed=24, text_width=128, text_layers=2, vocab=60, ctx=9)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    sd = openclip_state_dict(**SMALL)
    path = tmp_path_factory.mktemp("ckpt") / "open_clip_model.safetensors"
    save_file(sd, str(path))
    out = convert_openclip_checkpoint(path, tmp_path_factory.mktemp("converted"))
    return sd, out


def test_converted_model_equals_the_naive_open_clip_forward(converted):
    sd, out = converted
    model = ClipResNetModel.from_pretrained(out).eval()
    assert model.config.vision_config.layers == [1, 2, 1, 2] and model.config.vision_config.heads == 4
    assert model.config.text_config.num_attention_heads == 2  # one head per 64 channels
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 3, 64, 64, generator=g)
    ids = torch.randint(0, 57, (3, 9), generator=g)
    ids[0, 4], ids[1, 8], ids[2, 2] = 59, 59, 59  # eot (the highest id) at different places, then padding
    ids[0, 5:], ids[2, 3:] = 0, 0
    with torch.no_grad():
        img = model.get_image_features(pixel_values=x).pooler_output
        txt = model.get_text_features(input_ids=ids).pooler_output
        want_img = naive_image(sd, x, SMALL["layers"], heads=4)
        want_txt = naive_text(sd, ids, SMALL["text_layers"], heads=2)
        logits = model(input_ids=ids, pixel_values=x).logits_per_image
    torch.testing.assert_close(img, want_img, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(txt, want_txt, rtol=1e-4, atol=1e-4)
    want_logits = (1 / 0.07) * F.normalize(want_img, dim=-1) @ F.normalize(want_txt, dim=-1).T
    torch.testing.assert_close(logits, want_logits, rtol=1e-4, atol=1e-3)


def test_key_mapping_round_trips_and_covers_every_key(converted):
    sd, out = converted
    hf = openclip_to_hf(sd)
    model = ClipResNetModel.from_pretrained(out)
    assert set(hf) == {k for k in model.state_dict() if not k.endswith("position_ids")}
    back = hf_to_openclip(hf)
    assert set(back) == set(sd) and all(torch.equal(back[k], sd[k]) for k in sd)
    # hand-checked entries
    assert torch.equal(hf["text_projection.weight"], sd["text_projection"].T)
    d = SMALL["text_width"]
    k_rows = sd["transformer.resblocks.1.attn.in_proj_weight"][d : 2 * d]
    assert torch.equal(hf["text_model.encoder.layers.1.self_attn.k_proj.weight"], k_rows)
    assert torch.equal(
        hf["vision_model.layer2.0.downsample.norm.running_var"],
        sd["visual.layer2.0.downsample.1.running_var"],
    )
    assert torch.equal(hf["visual_projection.c_proj.bias"], sd["visual.attnpool.c_proj.bias"])


def test_converter_errors_name_the_problem(tmp_path):
    sd = openclip_state_dict(**SMALL)
    with pytest.raises(ValueError, match=r"unexpected key 'visual\.proj'"):
        openclip_to_hf({**sd, "visual.proj": torch.zeros(2)})
    path = tmp_path / "m.safetensors"
    save_file(sd, str(path))
    with pytest.raises(ValueError, match="does not match --config rn50"):
        convert_openclip_checkpoint(path, tmp_path / "o", config="rn50")
    torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}}, tmp_path / "m.bin")
    out = convert_openclip_checkpoint(tmp_path / "m.bin", tmp_path / "o2")  # unwrapped, prefixes stripped
    assert (out / "model.safetensors").is_file()


def test_rn50_real_config_round_trips_converter_and_save_pretrained(tmp_path):
    """Random weights in the real RN50 geometry: HF -> open_clip dict -> converter -> from_pretrained (~9 s)."""
    config = resnet_clip_config("rn50")
    assert config.vision_config.grid_size == 7 and config.vision_config.heads == 32
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = ClipResNetModel(config).eval()
    sd = hf_to_openclip(model.state_dict())
    assert "visual.layer3.5.conv3.weight" in sd and "visual.layer1.0.downsample.0.weight" in sd
    assert "visual.layer2.1.downsample.0.weight" not in sd and sd["text_projection"].shape == (512, 1024)
    assert sum(v.numel() for k, v in sd.items() if k.startswith("visual.attnpool")) == 14_789_632
    inferred = infer_config(sd)
    assert inferred.vision_config.to_dict() == config.vision_config.to_dict()
    save_file(sd, str(tmp_path / "rn50.safetensors"))
    out = convert_openclip_checkpoint(tmp_path / "rn50.safetensors", tmp_path / "rn50", config="rn50")
    again = ClipResNetModel.from_pretrained(out).eval()
    x = torch.randn(2, 3, 224, 224)
    ids = torch.tensor([[49406, 320, 1929, 49407, 49407], [49406, 320, 49407, 49407, 49407]])
    with torch.no_grad():
        a, b = model(input_ids=ids, pixel_values=x), again(input_ids=ids, pixel_values=x)
        grid = model.vision_model(x).last_hidden_state
    assert grid.shape == (2, 2048, 7, 7)
    assert torch.equal(a.logits_per_image, b.logits_per_image) and torch.equal(a.image_embeds, b.image_embeds)


# ------------------------------------------------------------ adapter, freezing, CLI on the tiny RN CLIP


@pytest.fixture(scope="module")
def rn_dir(tiny_model_dir):
    return tiny_model_dir("clip-resnet")


def test_adapter_takes_the_rn_model_like_clip(rn_dir):
    from hf_spurious.models import apply_freezing, load_adapter
    from hf_spurious.models.adapters import ClipAdapter

    adapter = load_adapter(str(rn_dir))
    assert isinstance(adapter, ClipAdapter) and type(adapter.base_model).__name__ == "ClipResNetModel"
    images = [np.random.default_rng(i).integers(0, 256, (50, 70, 3), dtype=np.uint8) for i in range(3)]
    feats = adapter.embed_image_features(images)
    cfg = adapter.base_model.config.vision_config
    assert feats.shape == (3, cfg.embed_dim * cfg.grid_size**2)  # the grid, cached before the attention pool
    emb = adapter.embed_images(images)
    with torch.no_grad():
        via_features = F.normalize(adapter.project_images(torch.from_numpy(feats)), dim=-1).numpy()
        pv = adapter.preprocess_images(images)
        via_model = F.normalize(adapter.base_model.get_image_features(pixel_values=pv).pooler_output, dim=-1)
    np.testing.assert_allclose(emb, via_features, atol=1e-5)
    np.testing.assert_allclose(emb, via_model.numpy(), atol=1e-5)
    summary = apply_freezing(adapter, "projection")
    assert {n.split(".")[0] for n in summary.trainable_names} == {
        "visual_projection",
        "text_projection",
        "logit_scale",
    }
    assert (
        len([n for n in summary.trainable_names if n.startswith("visual_projection")]) == 9
    )  # whole attnpool
    lora = apply_freezing(load_adapter(str(rn_dir)), "lora")
    assert any("visual_projection.q_proj.lora_A" in n for n in lora.trainable_names)
    assert any("text_model" in n and "lora_A" in n for n in lora.trainable_names)


def _tensors(path):
    from safetensors.torch import load_file

    return load_file(str(path))


@pytest.mark.parametrize("policy", ["projection", "full"])
def test_cli_train_rn_clip(rn_dir, waterbirds_world, tmp_path, policy):
    from hf_spurious.cli import main

    out = tmp_path / policy
    argv = ["train", "--model", str(rn_dir), "--dataset", "waterbirds", "--data_dir", str(waterbirds_world),
            "--freeze_policy", policy, "--output_dir", str(out), "--max_steps", "2", "--per_device_train_batch_size",
            "8", "--use_cpu", "--eval_split", "", "--disable_tqdm", "true", "--report_to", "none",
            "--learning_rate", "1e-2", "--templates", "simple", "--class_names", "landbird", "waterbird"]  # fmt: skip
    assert main(argv) == 0
    before, after = _tensors(rn_dir / "model.safetensors"), _tensors(out / "model.safetensors")
    changed = {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])}
    if policy == "projection":
        assert changed and changed <= {"visual_projection", "text_projection", "logit_scale"}
    else:
        assert "vision_model" in changed and "text_model" in changed


def test_cli_evaluate_and_discover_rn_clip(rn_dir, waterbirds_world, tmp_path):
    from hf_spurious.cli import main

    out = tmp_path / "cls"
    assert main(["evaluate", "--task", "classification", "--model", str(rn_dir), "--data-dir", str(waterbirds_world),
                 "--templates", "simple", "--max-overlays", "2", "--out", str(out)]) == 0  # fmt: skip
    res = json.loads((out / "results.json").read_text())
    assert 0 <= res["aiou"]["aiou"] <= 1 and len(list((out / "gradcam").glob("*.png"))) == 2
    disc = tmp_path / "disc"
    assert main(["discover", "--model", str(rn_dir), "--data-dir", str(waterbirds_world), "--attribute-column",
                 "place", "--min-detections", "2", "--out", str(disc)]) == 0  # fmt: skip
    assert json.loads((disc / "discovery.json").read_text())["detections_per_attribute"]


def test_cli_convert_openclip(rn_dir, tmp_path):
    from hf_spurious.cli import main
    from hf_spurious.models import load_adapter

    sd = openclip_state_dict(**{**SMALL, "vocab": 600})
    save_file(sd, str(tmp_path / "ck.safetensors"))
    out = tmp_path / "conv"
    assert main(["convert-openclip", "--checkpoint", str(tmp_path / "ck.safetensors"), "--out", str(out),
                 "--processor", str(rn_dir)]) == 0  # fmt: skip
    adapter = load_adapter(str(out))
    assert adapter.embed_images([np.zeros((64, 64, 3), np.uint8)]).shape == (1, SMALL["embed"])
    assert json.loads((out / "config.json").read_text())["model_type"] == "clip_resnet"


# ------------------------------------------------------------ GradCAM on the CNN tower


def test_gradcam_on_the_rn_tower_equals_a_hook_reference(rn_dir):
    from hf_spurious.evaluation.gradcam import ClassSimilarityTarget, ViTGradCAM
    from hf_spurious.models import load_adapter

    adapter = load_adapter(str(rn_dir))
    model = adapter.base_model
    g = torch.Generator().manual_seed(0)
    pv = torch.randn(3, 3, 64, 64, generator=g)
    texts = F.normalize(torch.randn(2, adapter.embedding_dim, generator=g), dim=-1)
    targets = [ClassSimilarityTarget(t, 50.0) for t in texts]
    maps = ViTGradCAM(adapter)(pv, targets)
    assert maps.shape == (3, 2, 64, 64)
    # reference: forward hook on layer4, retain_grad, score = 50 * cos, pytorch-grad-cam's weights
    for c in range(2):
        kept: dict[str, torch.Tensor] = {}

        def keep(_m, _i, o, kept=kept):
            kept["a"] = o

        h = model.vision_model.layer4.register_forward_hook(keep)
        x = pv.clone()
        emb = model.get_image_features(pixel_values=x).pooler_output
        h.remove()
        act = kept["a"]
        assert act.shape[-2:] == (2, 2)  # 64 px / 32
        act.retain_grad()
        (50.0 * F.normalize(emb, dim=-1) @ texts[c]).sum().backward()
        cam = torch.relu((act.grad.mean(dim=(2, 3))[:, :, None, None] * act).sum(1)).detach()
        flat = cam.reshape(3, -1)
        flat = flat - flat.min(1, keepdim=True).values
        peak = flat.max(1, keepdim=True).values
        flat = torch.where(peak > 0, flat / torch.where(peak > 0, peak, torch.ones_like(peak)), flat)
        want = F.interpolate(flat.reshape(3, 1, 2, 2), size=(64, 64), mode="bilinear", align_corners=False)
        torch.testing.assert_close(maps[:, c], want[:, 0].clamp(0, 1), rtol=1e-4, atol=1e-5)
        model.zero_grad()
