"""VSE++ (issue 14): the triplet loss against a per-pair loop, the plain-torch VGG19 against torchvision's
key layout, the word tokenizer, the model's save / load / push round trips, the Auto-class registration on
``import hf_spurious``, the adapter, and the CLI commands on the tiny VSE++."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from hf_spurious.losses.triplet import triplet_ranking_loss

# ----------------------------------------------------------------------------------- triplet loss


def naive_triplet(x, y, margin=0.2, max_violation=True):
    """Per-pair loop straight from the VSE++ definition: both directions, hardest or all negatives."""
    total = []
    for i in range(len(x)):
        pos = torch.dot(x[i], y[i])
        to_text = [torch.clamp(margin + torch.dot(x[i], y[j]) - pos, min=0) for j in range(len(x)) if j != i]
        to_image = [torch.clamp(margin + torch.dot(x[j], y[i]) - pos, min=0) for j in range(len(x)) if j != i]
        pick = (lambda h: torch.stack(h).max()) if max_violation else (lambda h: torch.stack(h).sum())
        total.append(pick(to_text) + pick(to_image) if to_text else (x[i] * y[i]).sum() * 0)
    return torch.stack(total)


def _unit(seed, b, d):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(b, d, generator=g, dtype=torch.float64), dim=-1)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    b=st.integers(1, 7),
    d=st.integers(2, 6),
    margin=st.sampled_from([0.0, 0.2, 0.5]),
    max_violation=st.booleans(),
)
def test_triplet_loss_and_its_gradients_equal_the_per_pair_loop(seed, b, d, margin, max_violation):
    x1, y1 = _unit(seed, b, d).requires_grad_(), _unit(seed + 1, b, d).requires_grad_()
    x2, y2 = x1.detach().clone().requires_grad_(), y1.detach().clone().requires_grad_()
    got = triplet_ranking_loss(x1, y1, margin=margin, max_violation=max_violation, reduction="none")
    want = naive_triplet(x2, y2, margin, max_violation)
    torch.testing.assert_close(got, want)
    weights = torch.arange(1, b + 1, dtype=torch.float64)  # a non-uniform upstream gradient
    (got * weights).sum().backward()
    (want * weights).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad)
    torch.testing.assert_close(y1.grad, y2.grad)
    mean = triplet_ranking_loss(x1, y1, margin=margin, max_violation=max_violation)
    total = triplet_ranking_loss(x1, y1, margin=margin, max_violation=max_violation, reduction="sum")
    torch.testing.assert_close(mean, want.mean())
    torch.testing.assert_close(total, want.sum())


def test_triplet_loss_hand_case():
    e = torch.eye(3)
    assert triplet_ranking_loss(e, e).item() == 0.0  # every negative 1 below its positive: no hinge
    # captions rotated: image i's caption is e[i+1]; S = e @ rot.T has ones at (i, i-1) and zero diagonal.
    rot = e[[1, 2, 0]]
    # every positive scores 0; one negative per row / column scores 1 -> hinge 1.2, the other 0.2
    assert triplet_ranking_loss(e, rot, reduction="sum").item() == pytest.approx(3 * (1.2 + 1.2))
    assert triplet_ranking_loss(e, rot, max_violation=False, reduction="sum").item() == pytest.approx(
        3 * 2 * (1.2 + 0.2)
    )
    assert triplet_ranking_loss(e, rot).item() == pytest.approx(2.4)


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"image_embeds": torch.ones(2, 3), "text_embeds": torch.ones(3, 3)}, "same (B, D) shape"),
        ({"image_embeds": torch.ones(3), "text_embeds": torch.ones(3)}, "image_embeds must be a 2-D"),
        ({"margin": -0.1}, "margin must be"),
        ({"reduction": "avg"}, "reduction must be"),
    ],
)
def test_triplet_loss_rejects_bad_input(kwargs, says):
    args = {"image_embeds": torch.eye(2), "text_embeds": torch.eye(2), **kwargs}
    with pytest.raises(ValueError, match=None) as err:
        triplet_ranking_loss(args.pop("image_embeds"), args.pop("text_embeds"), **args)
    assert says in str(err.value)


# ----------------------------------------------------------------------------------- VGG19

# torchvision's vgg19 state-dict keys, written out by hand (16 convs at these Sequential indices, 3 fcs).
VGG19_CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34)
TORCHVISION_VGG19_KEYS = sorted(
    [f"features.{i}.{p}" for i in VGG19_CONV_INDICES for p in ("weight", "bias")]
    + [f"classifier.{i}.{p}" for i in (0, 3, 6) for p in ("weight", "bias")]
)
SMALL_VGG19 = [4, 4, "M", 4, 4, "M", 4, 4, 4, 4, "M", 8, 8, 8, 8, "M", 8, 8, 8, 8, "M"]  # VGG19 layout, thin


def torchvision_layout_state_dict(widths=SMALL_VGG19, fc=16, seed=0):
    """A random state dict with torchvision's vgg19 keys and the shapes of ``widths`` (fc8: 1000 classes)."""
    g = torch.Generator().manual_seed(seed)
    convs = [w for w in widths if w != "M"]
    state, cin = {}, 3
    for idx, cout in zip(VGG19_CONV_INDICES, convs, strict=True):
        state[f"features.{idx}.weight"] = torch.randn(cout, cin, 3, 3, generator=g)
        state[f"features.{idx}.bias"] = torch.randn(cout, generator=g)
        cin = cout
    for idx, (n_in, n_out) in zip((0, 3, 6), [(cin * 49, fc), (fc, fc), (fc, 1000)], strict=True):
        state[f"classifier.{idx}.weight"] = torch.randn(n_out, n_in, generator=g) * 0.05
        state[f"classifier.{idx}.bias"] = torch.randn(n_out, generator=g)
    return state


def naive_vgg_fc7(state, widths, x):
    """fc7 of a VGG straight from the state dict (functional ops, eval mode)."""
    idx = iter(VGG19_CONV_INDICES)
    for w in widths:
        if w == "M":
            x = F.max_pool2d(x, 2)
        else:
            i = next(idx)
            x = F.relu(F.conv2d(x, state[f"features.{i}.weight"], state[f"features.{i}.bias"], padding=1))
    x = F.adaptive_avg_pool2d(x, 7).flatten(1)
    x = F.relu(F.linear(x, state["classifier.0.weight"], state["classifier.0.bias"]))
    return F.relu(F.linear(x, state["classifier.3.weight"], state["classifier.3.bias"]))


@pytest.mark.parametrize("fmt", ["safetensors", "pth"])
def test_vgg19_loads_a_torchvision_layout_state_dict(tmp_path, fmt):
    from safetensors.torch import save_file

    from hf_spurious.models.vsepp import VGG19_LAYERS, VseppConfig, VseppModel

    state = torchvision_layout_state_dict()
    assert sorted(state) == TORCHVISION_VGG19_KEYS
    file = tmp_path / f"vgg19.{fmt}"
    save_file(state, str(file)) if fmt == "safetensors" else torch.save(state, file)
    model = VseppModel(
        VseppConfig(vgg_layers=SMALL_VGG19, vgg_fc_size=16, embed_size=8, vocab_size=5, word_dim=4)
    )
    own = sorted(model.backbone.state_dict())
    assert own == [k for k in TORCHVISION_VGG19_KEYS if not k.startswith("classifier.6.")]
    model.load_torchvision_vgg(file)
    for key, value in model.backbone.state_dict().items():
        assert torch.equal(value, state[key]), key
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(model.eval().backbone_features(x), naive_vgg_fc7(state, SMALL_VGG19, x))
    # the real VGG19 layout has the same keys
    real = VseppModel.__new__(VseppModel)  # no weights allocated: only the module tree's names matter
    from hf_spurious.models.vsepp import VggFeatures

    with torch.device("meta"):
        real = VggFeatures(VGG19_LAYERS)
    assert sorted(real.state_dict()) == own
    assert real.classifier[0].in_features == 512 * 7 * 7 and real.output_size == 4096


def test_vgg_loader_rejects_a_different_layout(tmp_path):
    from hf_spurious.models.vsepp import VseppConfig, VseppModel

    model = VseppModel(
        VseppConfig(vgg_layers=SMALL_VGG19, vgg_fc_size=16, embed_size=8, vocab_size=5, word_dim=4)
    )
    state = torchvision_layout_state_dict()
    del state["features.34.weight"]
    with pytest.raises(ValueError, match=r"missing keys \['features.34.weight'\]"):
        model.load_torchvision_vgg(state)
    with pytest.raises(ValueError, match=r"features\.0\.weight has shape"):
        model.load_torchvision_vgg(
            torchvision_layout_state_dict(widths=[8 if w == 4 else w for w in SMALL_VGG19])
        )
    import argparse
    import pickle

    torch.save({"features.0.weight": argparse.Namespace(a=1)}, tmp_path / "pickled.pth")  # arbitrary object
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        model.load_torchvision_vgg(tmp_path / "pickled.pth")
    with pytest.raises(FileNotFoundError, match="no VGG weights file"):
        model.load_torchvision_vgg(tmp_path / "absent.pth")


# ----------------------------------------------------------------------------------- tokenizer

CAPTIONS = [
    "A dog catches a frisbee.",
    "a dog runs on the grass",
    "Two dogs and a frisbee",
    "A dog, a frisbee and a ball.",
    "a red ball on the grass",
    "A dog sleeps.",
    "a Frisbee on grass",
    "the dog and the ball",
]


def test_tokenizer_keeps_words_seen_min_count_times_and_round_trips(tmp_path):
    import re

    from transformers import AutoTokenizer

    from hf_spurious.models.vsepp import SPECIAL_TOKENS, build_vsepp_tokenizer

    tok = build_vsepp_tokenizer(CAPTIONS, min_count=4)
    counts = Counter(w for c in CAPTIONS for w in re.findall(r"\w+|[^\w\s]+", c.lower()))  # naive count
    kept = {w for w, n in counts.items() if n >= 4}
    assert set(tok.get_vocab()) == set(SPECIAL_TOKENS) | kept
    assert [tok.convert_ids_to_tokens(i) for i in range(4)] == list(SPECIAL_TOKENS)
    enc = tok("A dog chases a cat.")["input_ids"]
    assert tok.convert_ids_to_tokens(enc) == [
        "<start>",
        "a",
        "dog",
        "<unk>",
        "a",
        "<unk>",
        "<unk>",
        "<end>",
    ]  # "." 3 times
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    batch = ["a dog", "the frisbee and a ball on grass"]
    assert again(batch, padding=True)["input_ids"] == tok(batch, padding=True)["input_ids"]
    with pytest.raises(ValueError, match="caption 1 is int"):
        build_vsepp_tokenizer(["a", 3])
    with pytest.raises(ValueError, match="min_count must be >= 1"):
        build_vsepp_tokenizer(CAPTIONS, min_count=0)


# ----------------------------------------------------------------------------------- the model


@pytest.fixture(scope="module")
def tiny():
    from hf_spurious.models.tiny import tiny_vsepp

    return tiny_vsepp(CAPTIONS)


def _inputs(processor, n=3, seed=0):
    import numpy as np

    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 255, (40, 40, 3), dtype=np.uint8) for _ in range(n)]
    enc = processor(text=CAPTIONS[:n], images=images, return_tensors="pt", padding=True)
    return {k: enc[k] for k in ("input_ids", "attention_mask", "pixel_values")}


@pytest.mark.parametrize("bidirectional", [True, False])
def test_text_encoder_equals_the_gru_run_on_each_unpadded_caption(bidirectional):
    from hf_spurious.models.tiny import tiny_vsepp

    model, processor = tiny_vsepp(CAPTIONS, bidirectional=bidirectional, num_layers=2)
    enc = processor.tokenizer(CAPTIONS, padding=True, return_tensors="pt")
    got = model.text_states(enc["input_ids"], enc["attention_mask"])
    for i, caption in enumerate(CAPTIONS):
        ids = torch.tensor([processor.tokenizer(caption)["input_ids"]])
        _, h = model.rnn(model.embed(ids))  # one caption, no padding at all
        want = (h[-2] + h[-1]) / 2 if bidirectional else h[-1]
        torch.testing.assert_close(got[i], want[0])
    assert model.rnn.bidirectional is bidirectional


def test_forward_is_clip_like_and_its_loss_is_the_triplet_loss(tiny):
    model, processor = tiny
    batch = _inputs(processor)
    out = model.eval()(**batch, return_loss=True)
    img = model.get_image_features(batch["pixel_values"]).pooler_output
    txt = model.get_text_features(batch["input_ids"], batch["attention_mask"]).pooler_output
    torch.testing.assert_close(img.norm(dim=-1), torch.ones(3))
    torch.testing.assert_close(out.logits_per_image, img @ txt.t())  # logit_scale 0: plain cosine
    torch.testing.assert_close(out.logits_per_text, out.logits_per_image.t())
    torch.testing.assert_close(out.loss, naive_triplet(img, txt).mean())
    with pytest.raises(ValueError, match="needs both input_ids and pixel_values"):
        model(input_ids=batch["input_ids"])


def test_frozen_backbone_stays_frozen_and_in_eval_mode():
    from hf_spurious.models.tiny import tiny_vsepp

    model, _ = tiny_vsepp(CAPTIONS, finetune_backbone=False)
    model.train()
    assert not model.backbone.training and model.rnn.training
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert all(p.requires_grad for p in model.img_fc.parameters())
    model.set_backbone_trainable(True)
    model.train()
    assert model.backbone.training and all(p.requires_grad for p in model.backbone.parameters())


def test_save_pretrained_round_trip_through_the_auto_classes(tiny, tmp_path):
    from transformers import AutoConfig, AutoModel, AutoProcessor

    import hf_spurious  # noqa: F401  registers model_type "vsepp"

    model, processor = tiny
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "vsepp"
    assert type(AutoConfig.from_pretrained(tmp_path)).__name__ == "VseppConfig"
    again, proc = AutoModel.from_pretrained(tmp_path), AutoProcessor.from_pretrained(tmp_path)
    assert type(again).__name__ == "VseppModel"
    batch = _inputs(proc)
    torch.testing.assert_close(again.eval()(**batch).logits_per_image, model.eval()(**batch).logits_per_image)
    assert proc.tokenizer.get_vocab() == processor.tokenizer.get_vocab()


def test_push_to_hub_uploads_what_from_pretrained_reads(tiny, tmp_path, monkeypatch):
    """``push_to_hub`` with the Hub client replaced by a recorder that keeps the uploaded folder."""
    import shutil

    import transformers.utils.hub as hub
    from transformers import AutoModel

    model, processor = tiny
    remote = tmp_path / "remote"

    class FakeApi:
        def create_repo(self, repo_id, **kw):
            return type("Url", (), {"repo_id": f"me/{repo_id}"})()

    class Card:
        def save(self, path):
            Path(path).write_text("---\ntags: [vsepp]\n---\n")

    def upload(self, folder, repo_id, **kw):
        shutil.copytree(folder, remote / repo_id, dirs_exist_ok=True)
        return repo_id

    monkeypatch.setattr(hub, "hf_api", lambda *a, **k: FakeApi())
    monkeypatch.setattr(hub, "create_and_tag_model_card", lambda *a, **k: Card())
    monkeypatch.setattr(hub.PushToHubMixin, "_upload_modified_files", upload)
    model.push_to_hub("tiny-vsepp")
    processor.push_to_hub("tiny-vsepp")
    folder = remote / "me" / "tiny-vsepp"
    assert {"config.json", "model.safetensors", "tokenizer.json", "processor_config.json"} <= {
        p.name for p in folder.iterdir()
    }
    batch = _inputs(processor)
    torch.testing.assert_close(
        AutoModel.from_pretrained(folder).eval()(**batch).logits_per_image,
        model.eval()(**batch).logits_per_image,
    )


def test_transformers_backbone_by_config(tmp_path):
    from transformers import AutoModel, ResNetConfig

    from hf_spurious.models.vsepp import VseppConfig, VseppModel

    vision = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_channels=3).to_dict()
    model = VseppModel(
        VseppConfig(
            image_backbone="transformers", vision_config=vision, embed_size=8, vocab_size=6, word_dim=4
        )
    ).eval()
    x = torch.randn(2, 3, 32, 32)
    pooled = model.backbone(pixel_values=x).pooler_output.flatten(1)
    torch.testing.assert_close(model.backbone_features(x), pooled)
    assert model.img_fc.in_features == 16
    model.save_pretrained(tmp_path)
    again = AutoModel.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(
        again.get_image_features(x).pooler_output, model.get_image_features(x).pooler_output
    )
    backbone = AutoModel.from_config(ResNetConfig.from_dict(vision))
    backbone.save_pretrained(tmp_path / "resnet")
    built = VseppModel.with_pretrained_backbone(
        str(tmp_path / "resnet"), embed_size=8, vocab_size=6, word_dim=4
    )
    for key, value in backbone.state_dict().items():
        assert torch.equal(built.backbone.state_dict()[key], value), key
    with pytest.raises(ValueError, match="needs vision_config"):
        VseppConfig(image_backbone="transformers")
    with pytest.raises(ValueError, match="image_backbone must be one of"):
        VseppConfig(image_backbone="resnet")


def test_import_hf_spurious_registers_auto_classes(tiny, tmp_path):
    """In a fresh interpreter: ``import hf_spurious`` loads no transformers, yet AutoModel then finds VSE++."""
    model, _ = tiny
    model.save_pretrained(tmp_path)
    code = (
        "import sys\nimport hf_spurious\n"
        "assert 'transformers' not in sys.modules and 'torch' not in sys.modules\n"
        "from transformers import AutoModel\n"
        f"print(type(AutoModel.from_pretrained({str(tmp_path)!r})).__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "VseppModel"


# ----------------------------------------------------------------------------------- adapter and CLI


def test_adapter_maps_vsepp_onto_the_common_interface(tiny, tmp_path):
    from hf_spurious.models import load_adapter
    from hf_spurious.models.registry import family_for_model
    from hf_spurious.models.vsepp import VseppAdapter

    model, processor = tiny
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    adapter = load_adapter(str(tmp_path))
    assert isinstance(adapter, VseppAdapter) and adapter.retrieval_loss == "triplet"
    assert family_for_model(model).model_type == "vsepp" and adapter.logit_bias() is None
    assert set(adapter.projection_parameters()) == {"img_fc.weight", "img_fc.bias", "logit_scale"}
    batch = _inputs(processor)
    out = model.eval()(**batch)
    torch.testing.assert_close(adapter.encode_images(batch["pixel_values"]), out.image_embeds)
    torch.testing.assert_close(
        adapter.encode_texts(batch["input_ids"], batch["attention_mask"]), out.text_embeds
    )
    texts = adapter.embed_texts(CAPTIONS[:3])
    torch.testing.assert_close(torch.from_numpy(texts), out.text_embeds)
    assert adapter.embed_image_features([torch.zeros(40, 40, 3, dtype=torch.uint8).numpy()]).shape == (1, 32)


@pytest.fixture(scope="module")
def vsepp_dir(tmp_path_factory, shapes_world):
    from hf_spurious.models.tiny import save_tiny
    from hf_spurious.sources import read_coco

    captions = [c for r in read_coco(shapes_world, "train", vocabulary="shapes") for c in r.captions]
    captions += ["a photo of a landbird.", "a photo of a waterbird."]
    return save_tiny("vsepp", tmp_path_factory.mktemp("vsepp"), captions=captions)


@pytest.mark.slow
def test_cli_evaluate_train_discover_on_tiny_vsepp(vsepp_dir, shapes_world, waterbirds_world, tmp_path):
    from safetensors.torch import load_file

    from hf_spurious.cli import main

    rec = tmp_path / "recall"
    assert main(["evaluate", "--model", str(vsepp_dir), "--metrics", "recall", "--data-dir", str(shapes_world),
                 "--source", "shapes", "--out", str(rec)]) == 0  # fmt: skip
    recall = json.loads((rec / "results.json").read_text())
    assert any("r@1" in k for k in json.dumps(recall).split('"'))
    out = tmp_path / "trained"
    assert main(["train", "--model", str(vsepp_dir), "--dataset", "shapes", "--data_dir", str(shapes_world),
                 "--task", "retrieval", "--freeze_policy", "full", "--output_dir", str(out), "--max_steps", "2",
                 "--per_device_train_batch_size", "8", "--use_cpu", "--eval_split", "", "--disable_tqdm", "true",
                 "--report_to", "none", "--learning_rate", "1e-2"]) == 0  # fmt: skip
    before, after = load_file(str(vsepp_dir / "model.safetensors")), load_file(str(out / "model.safetensors"))
    changed = {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])}
    assert {"backbone", "img_fc", "rnn", "embed"} <= changed
    disc = tmp_path / "disc"
    assert main(["discover", "--model", str(vsepp_dir), "--data-dir", str(waterbirds_world), "--attribute-column",
                 "place", "--min-detections", "2", "--out", str(disc)]) == 0  # fmt: skip
    assert json.loads((disc / "discovery.json").read_text())["detections_per_attribute"]


@pytest.mark.parametrize("finetune_backbone", [False, True])
def test_full_freezing_keeps_a_frozen_backbone_frozen(finetune_backbone):
    """The paper's "VSE++" (VGG frozen) trains img_fc + words + GRU under "full"; "VSE++ (FT)" trains all."""
    from hf_spurious.models import apply_freezing, load_adapter
    from hf_spurious.models.tiny import tiny_vsepp

    model, processor = tiny_vsepp(CAPTIONS, finetune_backbone=finetune_backbone)
    summary = apply_freezing(load_adapter(model, processor), "full")
    trains_backbone = any(n.startswith("backbone.") for n in summary.trainable_names)
    assert trains_backbone is finetune_backbone
    assert {"img_fc.weight", "embed.weight"} <= set(summary.trainable_names)
    assert any(n.startswith("rnn.") for n in summary.trainable_names)
