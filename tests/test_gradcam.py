"""GradCAM on tiny CLIP / BLIP vision towers against a hand-written reference; AIoU over a dataset."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from hf_spurious.evaluation.aiou import aiou_for_records, aiou_over_dataset
from hf_spurious.evaluation.gradcam import (
    ClassSimilarityTarget,
    ViTGradCAM,
    align_masks,
    class_text_embeddings,
    grid_cams,
    normalize_maps,
    pixel_values_for,
)

torch.set_num_threads(1)
TEMPLATES = ("a photo of a {}.", "a {} in the picture.")


def _adapter(kind: str, tiny_model_dir):
    from hf_spurious.models import load_adapter

    return load_adapter(str(tiny_model_dir(kind)))


@pytest.fixture(scope="module")
def clip_adapter(tiny_model_dir):
    return _adapter("clip", tiny_model_dir)


@pytest.fixture(scope="module")
def blip_adapter(tiny_model_dir):
    return _adapter("blip", tiny_model_dir)


def _images(n: int, size: int = 32, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8) for _ in range(n)]


# ----------------------------------------------------------------------------------------- pure parts


def test_normalize_maps_hand_worked() -> None:
    cams = torch.tensor([[[0.0, 1.0], [2.0, 3.0]], [[5.0, 5.0], [5.0, 5.0]]])
    out = normalize_maps(cams)
    np.testing.assert_allclose(out[0].numpy(), [[0, 1 / 3], [2 / 3, 1]], rtol=1e-6)
    tiny = normalize_maps(cams * 1e-12)  # scale-invariant: a tiny-magnitude map is not flattened
    np.testing.assert_allclose(tiny[0].numpy(), out[0].numpy(), rtol=1e-5)
    np.testing.assert_array_equal(out[1].numpy(), np.zeros((2, 2)))  # a flat map is all zeros, not NaN
    big = normalize_maps(torch.rand(3, 4, 5) * 10, size=(17, 23))
    assert big.shape == (3, 17, 23) and float(big.min()) >= 0 and float(big.max()) <= 1


def test_grid_cams_against_loops() -> None:
    rng = np.random.default_rng(0)
    acts = torch.from_numpy(rng.normal(size=(2, 1 + 6, 5)))
    grads = torch.from_numpy(rng.normal(size=(2, 1 + 6, 5)))
    out = grid_cams(acts, grads, (2, 3)).numpy()
    for b in range(2):
        w = [np.mean([float(grads[b, 1 + t, d]) for t in range(6)]) for d in range(5)]
        for t in range(6):
            val = max(0.0, sum(w[d] * float(acts[b, 1 + t, d]) for d in range(5)))
            assert out[b, t // 3, t % 3] == pytest.approx(val, abs=1e-6)
    with pytest.raises(ValueError, match="patch grid"):
        grid_cams(acts, grads, (3, 3))


# ----------------------------------------------------------------------------------------- tiny CLIP


def _reference_clip_cams(adapter, pv: torch.Tensor, text: torch.Tensor, scale: float) -> np.ndarray:
    """Independent path: hidden_states[-2] is the last block's input; re-run the last block by hand."""
    vm = adapter.base_model.vision_model
    with torch.no_grad():
        hs = vm(pixel_values=pv, output_hidden_states=True).hidden_states[-2]
    h = hs.detach().clone().requires_grad_(True)
    x = vm.encoder.layers[-1](h, None)
    x = x[0] if isinstance(x, tuple) else x
    emb = adapter.base_model.visual_projection(vm.post_layernorm(x[:, 0]))
    score = scale * (F.normalize(emb, dim=-1) @ F.normalize(text, dim=0))
    (g,) = torch.autograd.grad(score.sum(), h)
    n_patch = h.shape[1] - 1
    side = round(n_patch**0.5)
    out = np.zeros((pv.shape[0], side, side))
    for b in range(pv.shape[0]):
        w = g[b, 1:].mean(dim=0)
        cam = torch.relu(h[b, 1:].detach() @ w).reshape(side, side).numpy()
        cam = cam - cam.min()
        out[b] = cam / cam.max() if cam.max() > 0 else cam
    return out


def test_clip_cams_match_reference(clip_adapter) -> None:
    pv = pixel_values_for(clip_adapter, _images(3))
    text = class_text_embeddings(clip_adapter, ["dog", "car"], TEMPLATES)
    cam = ViTGradCAM(clip_adapter)
    grid = (pv.shape[-2] // cam.patch_size, pv.shape[-1] // cam.patch_size)
    for c in range(2):
        maps = cam(pv, [ClassSimilarityTarget(text[c], 100.0)], size=grid)[:, 0].numpy()
        np.testing.assert_allclose(maps, _reference_clip_cams(clip_adapter, pv, text[c], 100.0), atol=1e-5)


def _reference_ln_output_cams(adapter, pv: torch.Tensor, text: torch.Tensor, scale: float) -> np.ndarray:
    """Independent path for "ln_output": the last block re-run by hand from its input h, with the
    LayerNorm output n = LN1(h) as the leaf; the residual still adds h (not n), as in the block."""
    vm = adapter.base_model.vision_model
    layer = vm.encoder.layers[-1]
    with torch.no_grad():
        h = vm(pixel_values=pv, output_hidden_states=True).hidden_states[-2]
        n = layer.layer_norm1(h)
    n = n.detach().clone().requires_grad_(True)
    x = h + layer.self_attn(hidden_states=n, attention_mask=None)[0]
    x = x + layer.mlp(layer.layer_norm2(x))
    emb = adapter.base_model.visual_projection(vm.post_layernorm(x[:, 0]))
    score = scale * (F.normalize(emb, dim=-1) @ F.normalize(text, dim=0))
    (g,) = torch.autograd.grad(score.sum(), n)
    side = round((n.shape[1] - 1) ** 0.5)
    out = np.zeros((pv.shape[0], side, side))
    for b in range(pv.shape[0]):
        cam = torch.relu(n[b, 1:].detach() @ g[b, 1:].mean(dim=0)).reshape(side, side).numpy()
        cam = cam - cam.min()
        out[b] = cam / cam.max() if cam.max() > 0 else cam
    return out


def test_named_layers_match_references(clip_adapter) -> None:
    from hf_spurious.evaluation.gradcam import DEFAULT_GRADCAM_LAYER, GRADCAM_LAYERS

    assert DEFAULT_GRADCAM_LAYER == "block_input" and set(GRADCAM_LAYERS) == {"block_input", "ln_output"}
    pv = pixel_values_for(clip_adapter, _images(3, seed=4))
    text = class_text_embeddings(clip_adapter, ["dog", "car"], TEMPLATES)
    named = {n: ViTGradCAM(clip_adapter, n) for n in GRADCAM_LAYERS}
    assert ViTGradCAM(clip_adapter).layer_name == "block_input" and named["ln_output"].hook == "output"
    grid = (pv.shape[-2] // named["ln_output"].patch_size,) * 2
    differ = 0.0
    for c in range(2):
        target = [ClassSimilarityTarget(text[c], 100.0)]
        maps = {n: cam(pv, target, size=grid)[:, 0].numpy() for n, cam in named.items()}
        np.testing.assert_allclose(
            maps["block_input"], _reference_clip_cams(clip_adapter, pv, text[c], 100.0), atol=1e-5
        )
        np.testing.assert_allclose(
            maps["ln_output"], _reference_ln_output_cams(clip_adapter, pv, text[c], 100.0), atol=1e-5
        )
        differ = max(differ, float(np.abs(maps["block_input"] - maps["ln_output"]).max()))
    assert differ > 1e-3, "the two layers should give different maps (else the choice is moot)"


def test_named_vit_layer_on_cnn_tower_is_an_error(tiny_model_dir) -> None:
    cnn = _adapter("clip-resnet", tiny_model_dir)
    with pytest.raises(ValueError, match="CNN"):
        ViTGradCAM(cnn, "ln_output")


def test_clip_maps_range_shape_nondegenerate(clip_adapter) -> None:
    imgs = _images(4, seed=1)
    pv = pixel_values_for(clip_adapter, imgs)
    text = class_text_embeddings(clip_adapter, ["dog", "car", "kite"], TEMPLATES)
    maps = ViTGradCAM(clip_adapter)(pv, [ClassSimilarityTarget(t) for t in text])
    assert maps.shape == (4, 3, *pv.shape[-2:])
    assert float(maps.min()) >= 0.0 and float(maps.max()) <= 1.0
    spread = maps.flatten(2).std(dim=2)
    assert (spread > 0.05).float().mean() > 0.5, "most maps should vary over the image"
    assert not torch.isnan(maps).any()


def test_patch_gradients_zero_at_last_output_nonzero_at_input(clip_adapter) -> None:
    pv = pixel_values_for(clip_adapter, _images(2, seed=2))
    text = class_text_embeddings(clip_adapter, ["dog"], TEMPLATES)
    target = [ClassSimilarityTarget(text[0])]
    _, (g_in,) = ViTGradCAM(clip_adapter).activations_and_gradients(pv, target)
    assert g_in[:, 1:].abs().max() > 1e-6  # patch tokens receive gradient at the last block's input
    out_cam = ViTGradCAM(clip_adapter, target_layer="vision_model.encoder.layers.-1", hook="output")
    _, (g_out,) = out_cam.activations_and_gradients(pv, target)
    # At the last block's output only CLS feeds the pooled embedding (LayerNorm is per token): the
    # patch tokens get exactly zero gradient, which is why the default target is the block's input.
    assert torch.count_nonzero(g_out[:, 1:]) == 0
    assert g_out[:, 0].abs().max() > 0
    maps = out_cam(pv, target)
    assert torch.count_nonzero(maps) == 0  # degenerate by construction


def test_bad_target_layer_and_pixels(clip_adapter) -> None:
    with pytest.raises(ValueError, match="no submodule"):
        ViTGradCAM(clip_adapter, target_layer="vision_model.nothing")
    with pytest.raises(ValueError, match="hook"):
        ViTGradCAM(clip_adapter, hook="middle")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        ViTGradCAM(clip_adapter)(torch.zeros(3, 32, 32), [])
    with pytest.raises(ValueError, match="at least one target"):
        ViTGradCAM(clip_adapter)(torch.zeros(1, 3, 32, 32), [])


# ----------------------------------------------------------------------------------------- tiny BLIP


def test_blip_cams(blip_adapter) -> None:
    pv = pixel_values_for(blip_adapter, _images(2, seed=3))
    text = class_text_embeddings(blip_adapter, ["dog", "car"], TEMPLATES)
    cam = ViTGradCAM(blip_adapter)
    _, (g,) = cam.activations_and_gradients(pv, [ClassSimilarityTarget(text[0])])
    assert torch.count_nonzero(g[:, 1:]) > 0  # tiny random BLIP: small but non-zero patch gradients
    maps = cam(pv, [ClassSimilarityTarget(t) for t in text])
    assert maps.shape == (2, 2, *pv.shape[-2:])
    assert float(maps.min()) >= 0 and float(maps.max()) <= 1 and float(maps.max()) > 0.5


# ----------------------------------------------------------------------------------------- AIoU over data


def _soft_iou(m: np.ndarray, b: np.ndarray) -> float:
    return float(np.minimum(m, b).sum() / np.maximum(m, b).sum())


def test_align_masks_identity_and_downscale(clip_adapter) -> None:
    size = pixel_values_for(clip_adapter, _images(1))[0].shape[-1]
    m = np.zeros((size, size), np.float32)
    m[3:17, 5:20] = 1
    np.testing.assert_array_equal(align_masks(clip_adapter, [m])[0].numpy(), m)
    big = np.kron(m, np.ones((2, 2), np.float32))  # the same mask at twice the resolution
    np.testing.assert_array_equal(align_masks(clip_adapter, [big])[0].numpy(), m)
    with pytest.raises(ValueError, match="outside"):
        align_masks(clip_adapter, [m * 2])


def test_aiou_over_dataset_matches_manual(clip_adapter, tmp_path) -> None:
    imgs = _images(5, seed=4)
    size = imgs[0].shape[0]
    masks = []
    for i in range(5):
        m = np.zeros((size, size), np.float32)
        m[i : i + 12, 2 * i : 2 * i + 14] = 1
        masks.append(m)
    labels = [0, 1, 2, 0, 1]
    groups = [0, 1, 2, 3, 3]
    names = ["dog", "car", "kite"]
    res = aiou_over_dataset(
        clip_adapter,
        imgs,
        masks,
        labels,
        names,
        TEMPLATES,
        groups=groups,
        batch_size=2,
        overlay_dir=tmp_path,
        max_overlays=3,
    )
    # manual: all maps, soft IoU per class, AIoU = own / (own + best other)
    pv = pixel_values_for(clip_adapter, imgs)
    text = class_text_embeddings(clip_adapter, names, TEMPLATES)
    maps = ViTGradCAM(clip_adapter)(
        pv, [ClassSimilarityTarget(t, float(clip_adapter.logit_scale.detach().exp())) for t in text]
    ).numpy()
    for i in range(5):
        ious = [_soft_iou(maps[i, c], masks[i]) for c in range(3)]
        own = ious[labels[i]]
        other = max(v for c, v in enumerate(ious) if c != labels[i])
        assert res["per_image_aiou"][i] == pytest.approx(own / (own + other), abs=1e-5)
    assert res["aiou"] == pytest.approx(np.mean(res["per_image_aiou"]))
    assert res["group_aiou"][3] == pytest.approx(np.mean(res["per_image_aiou"][3:]))
    assert res["worst_group_aiou"] == res["group_aiou"][res["worst_accuracy_group"]]
    assert len(list(tmp_path.glob("gradcam_*.png"))) == 3
    with pytest.raises(ValueError, match="mask shape"):
        aiou_over_dataset(clip_adapter, imgs[:1], [np.zeros((5, 5), np.float32)], [0], names, TEMPLATES)
    with pytest.raises(ValueError, match="labels"):
        aiou_over_dataset(clip_adapter, imgs[:2], masks[:2], [0, 1], ["dog"], TEMPLATES)
    with pytest.raises(ValueError, match="2 masks for 3 images"):
        aiou_over_dataset(clip_adapter, imgs[:3], masks[:2], [0, 1, 0], names, TEMPLATES)


def test_aiou_for_records_reads_files(clip_adapter, tmp_path) -> None:
    from hf_spurious.records import ClassificationRecord

    recs = []
    for i, img in enumerate(_images(3, seed=5)):
        Image.fromarray(img).save(tmp_path / f"{i}.png")
        mask = np.zeros(img.shape[:2], np.uint8)
        mask[4:20, 4:20] = 255
        Image.fromarray(mask).save(tmp_path / f"{i}_mask.png")
        recs.append(
            ClassificationRecord(
                str(i),
                str(tmp_path / f"{i}.png"),
                i % 2,
                (i + 1) % 2,
                "test",
                str(tmp_path / f"{i}_mask.png"),
            )
        )
    res = aiou_for_records(clip_adapter, recs, ["landbird", "waterbird"], TEMPLATES)
    assert len(res["per_image_aiou"]) == 3 and all(0 <= v <= 1 for v in res["per_image_aiou"])
    assert set(res["group_aiou"]) == {r.group for r in recs}
    no_mask = [ClassificationRecord("x", str(tmp_path / "0.png"), 0, 0, "test")]
    with pytest.raises(ValueError, match="no mask_path"):
        aiou_for_records(clip_adapter, no_mask, ["a", "b"], TEMPLATES)


# ----------------------------------------------------------------------------------------- SigLIP (no CLS)


def test_grid_cams_without_cls_equals_dummy_cls_prepended() -> None:
    rng = np.random.default_rng(5)
    acts = torch.from_numpy(rng.normal(size=(2, 6, 4)))
    grads = torch.from_numpy(rng.normal(size=(2, 6, 4)))
    pad = torch.from_numpy(rng.normal(size=(2, 1, 4)))  # any CLS row: it is dropped
    want = grid_cams(torch.cat([pad, acts], 1), torch.cat([pad, grads], 1), (2, 3))
    torch.testing.assert_close(grid_cams(acts, grads, (2, 3), cls_tokens=0), want)
    with pytest.raises(ValueError, match="a 3x3 patch grid"):
        grid_cams(acts, grads, (3, 3), cls_tokens=0)


@pytest.mark.parametrize("kind", ["siglip", "siglip2"])
def test_siglip_gradcam_and_classification(kind, tiny_model_dir, waterbirds_world) -> None:
    from hf_spurious.evaluation.classification import evaluate_classification
    from hf_spurious.sources import read_waterbirds

    siglip = _adapter(kind, tiny_model_dir)
    pv = pixel_values_for(siglip, _images(2, seed=6))
    text = class_text_embeddings(siglip, ["dog", "car"], TEMPLATES)
    cam = ViTGradCAM(siglip)
    assert cam.layer_name == "vision_model.head" and cam.cls_tokens == 0
    maps = cam(pv, [ClassSimilarityTarget(t) for t in text])
    assert maps.shape == (2, 2, *pv.shape[-2:]) and float(maps.min()) >= 0 and 0.5 < float(maps.max()) <= 1.0
    recs = read_waterbirds(waterbirds_world, "test")[:8]
    res = evaluate_classification(siglip, recs, ["landbird", "waterbird"], TEMPLATES, compare_layers="auto")
    assert res["aiou"]["layer"] == "vision_model.head"
    assert set(res["aiou"]["by_layer"]) == {"vision_model.head", "block_input", "ln_output"}
    assert all(0 <= v["aiou"] <= 1 for v in res["aiou"]["by_layer"].values())
