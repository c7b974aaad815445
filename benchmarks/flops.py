"""FLOPs per item of the paper models at real size (``torch.utils.flop_counter`` on meta-device models) and
the compute budget of each paper experiment derived from them.

The models are built on the ``meta`` device from the published configs (``hf_spurious.models.real_size``),
so counting needs no memory and no weights; the counter sees every matrix product and convolution of the
real forward / backward graphs (element-wise work, softmax and normalisation are not counted: the totals
are a slight under-count). Prints two markdown tables (per-item FLOPs; the budget) for docs/reproduction.md.

Run: ``.venv/bin/python benchmarks/flops.py [--tflops 100]``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
from torch.utils.flop_counter import FlopCounterMode

TEXT_LEN = 20  # COCO captions: ~11 words, ~14 BPE tokens + bos/eos, padded to the longest in a batch
SD_STEPS = 25


def count(fn) -> float:
    with FlopCounterMode(display=False) as fc:
        fn()
    return float(fc.get_total_flops())


def _params(model) -> float:
    return float(sum(p.numel() for p in model.parameters()))


def _meta(cls, config):
    with torch.device("meta"):
        return cls(config)


def _train_flops(model, image_fn, text_fn, trainable) -> float:
    """Forward + backward FLOPs of one (image, caption) pair with only ``trainable`` parameters requiring grad."""
    for n, p in model.named_parameters():
        p.requires_grad_(trainable(n))

    def step():
        loss = image_fn().float().sum() + text_fn().float().sum()
        loss.backward()

    return count(step)


def clip_items(name: str) -> dict[str, float]:
    from transformers import CLIPConfig, CLIPModel

    from hf_spurious.models.real_size import real_size_config

    cfg = real_size_config(name)["config"]
    model = _meta(CLIPModel, CLIPConfig(**cfg))
    size = cfg["vision_config"]["image_size"]
    pv = torch.empty(1, 3, size, size, device="meta")
    ids = torch.zeros(1, TEXT_LEN, dtype=torch.long, device="meta")

    def img():
        return model.get_image_features(pixel_values=pv).pooler_output

    def txt():
        return model.get_text_features(input_ids=ids).pooler_output

    out = {"image": count(img), "text": count(txt), "params": _params(model)}
    out["train-full"] = _train_flops(model, img, txt, lambda n: True)
    out["train-projection"] = _train_flops(
        model, img, txt, lambda n: n.split(".")[0] in ("visual_projection", "text_projection", "logit_scale")
    )
    layers = cfg["vision_config"]["num_hidden_layers"]
    out["gradcam"] = out["image"] * (1 + 2 / layers)  # forward + backward through the last block only
    return out


def rn50_items() -> dict[str, float]:
    from hf_spurious.models.clip_resnet import ClipResNetModel
    from hf_spurious.models.clip_resnet.configuration import resnet_clip_config

    model = _meta(ClipResNetModel, resnet_clip_config("rn50"))
    pv = torch.empty(1, 3, 224, 224, device="meta")
    ids = torch.zeros(1, TEXT_LEN, dtype=torch.long, device="meta")
    image = count(lambda: model.get_image_features(pixel_values=pv))
    text = count(lambda: model.get_text_features(input_ids=ids))
    return {"image": image, "text": text, "gradcam": image * 1.1, "params": _params(model)}


@torch.no_grad()
def blip_items() -> dict[str, float]:
    from transformers import BlipConfig, BlipForImageTextRetrieval

    from hf_spurious.models.real_size import real_size_config

    # BLIP's text encoder calls .item() on its mask, which meta tensors cannot do: count on CPU tensors
    cfg = real_size_config("blip-itm-base-coco")["config"]
    model = BlipForImageTextRetrieval(BlipConfig(**cfg)).eval()
    pv = torch.zeros(1, 3, 384, 384)
    ids = torch.ones(1, TEXT_LEN, dtype=torch.long)
    mask = torch.ones(1, TEXT_LEN, dtype=torch.long)
    states = torch.zeros(1, 577, 768)
    image = count(lambda: model.vision_proj(model.vision_model(pixel_values=pv)[0][:, 0]))
    text = count(lambda: model.text_proj(model.text_encoder(input_ids=ids, attention_mask=mask)[0][:, 0]))
    cross = count(
        lambda: model.itm_head(
            model.text_encoder(input_ids=ids, attention_mask=mask, encoder_hidden_states=states)[0][:, 0]
        )
    )
    # ITC + ITM step of BLIP's retrieval fine-tuning: both towers, the fused encoder on the positive pair
    # and 2 mined negatives; backward = 2 x forward for the trainable weights
    train_full = 3 * (image + text + 3 * cross)
    return {
        "image": image,
        "text": text,
        "itm-cross": cross,
        "itm-pair": image + cross,
        "train-full": train_full,
        "params": _params(model),
    }


def sd_items() -> dict[str, float]:
    import diffusers
    from transformers import CLIPTextConfig, CLIPTextModel

    from hf_spurious.models.real_size import real_size_config

    parts = real_size_config("sd-1.5-inpainting")["components"]
    with torch.device("meta"):
        unet = diffusers.UNet2DConditionModel(**parts["unet"])
        vae = diffusers.AutoencoderKL(**parts["vae"])
        te = CLIPTextModel(CLIPTextConfig(**parts["text_encoder"]))
    lat = torch.empty(2, 9, 64, 64, device="meta")
    ctx = torch.empty(2, 77, 768, device="meta")
    t = torch.zeros(2, device="meta")
    unet_f = count(lambda: unet(lat, t, encoder_hidden_states=ctx))
    enc = count(lambda: vae.encode(torch.empty(1, 3, 512, 512, device="meta")))
    dec = count(lambda: vae.decode(torch.empty(1, 4, 64, 64, device="meta")))
    text = count(lambda: te(input_ids=torch.zeros(2, 77, dtype=torch.long, device="meta")))
    per_image = SD_STEPS * unet_f + enc + dec + text
    return {
        "unet-cfg-step": unet_f,
        "vae-encode": enc,
        "vae-decode": dec,
        "text-x2": text,
        "inpaint-image": per_image,
        "params": _params(unet) + _params(vae) + _params(te),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tflops", type=float, default=100.0, help="sustained TFLOP/s per GPU (default 100)")
    args = parser.parse_args()
    items = {
        "clip-vit-base-patch32": clip_items("clip-vit-base-patch32"),
        "clip-vit-large-patch14-336": clip_items("clip-vit-large-patch14-336"),
        "blip-itm-base-coco": blip_items(),
        "clip-rn50": rn50_items(),
        "sd-1.5-inpainting": sd_items(),
    }
    from _budget import budget_tables

    print(budget_tables(items, args.tflops))


if __name__ == "__main__":
    main()
