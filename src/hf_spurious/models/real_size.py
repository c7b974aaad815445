"""Paper models at their real size with random weights, built from the published configurations.

The JSON files in :mod:`hf_spurious.models.configs` hold the published configuration values of each model
(the source is noted in each file); :func:`build_real_size` builds the model from them with random weights,
so every code path (position embeddings, patch grids, 77-token text, latent sizes) runs at the real geometry
without downloading anything. The models are random: they measure speed, memory and shapes, never quality.

The tokenizers are offline word tokenizers (:mod:`hf_spurious.models.tiny.tokenizer`) whose ids all fall
inside the real vocabulary; the embedding tables have the real vocabulary size. A caption whose words are in
the tokenizer's word list becomes one token per word, close to the real BPE / WordPiece lengths of COCO
captions (about 1.1 tokens per word). VSE++ is word-level itself: its tokenizer
(:func:`~hf_spurious.models.vsepp.tokenizer.build_vsepp_tokenizer`) is built from the given words, and its
embedding table has the size of VSE++'s COCO vocabulary.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from importlib import resources
from typing import Any

__all__ = ["REAL_SIZE_MODELS", "build_real_size", "real_size_config"]

REAL_SIZE_MODELS = (
    "clip-vit-base-patch32",
    "clip-vit-large-patch14-336",
    "blip-itm-base-coco",
    "sd-1.5-inpainting",
    "siglip-base-patch16-224",
    "vsepp-vgg19-coco",
)
"""Names accepted by :func:`build_real_size` (one JSON file each in ``hf_spurious/models/configs``)."""


def _available() -> tuple[str, ...]:
    folder = resources.files("hf_spurious.models") / "configs"
    found = sorted(p.name[: -len(".json")] for p in folder.iterdir() if p.name.endswith(".json"))
    return tuple(found)


def real_size_config(name: str) -> dict[str, Any]:
    """The published configuration record of ``name`` (a fresh copy of the JSON file's content)."""
    available = _available()
    if name not in available:
        raise ValueError(f"unknown real-size model {name!r}; choose one of {', '.join(available)}")
    path = resources.files("hf_spurious.models") / "configs" / f"{name}.json"
    return json.loads(path.read_text(encoding="utf-8"))


def _merge(base: dict[str, Any], overrides: Mapping[str, Any] | None, where: str) -> dict[str, Any]:
    """``base`` with ``overrides`` merged in recursively (dicts merge, other values replace)."""
    out = copy.deepcopy(base)
    for key, value in (overrides or {}).items():
        if key not in out:
            raise ValueError(
                f"override {where}{key!r} is not a key of the published config; known: {sorted(out)}"
            )
        if isinstance(value, Mapping) and isinstance(out[key], dict):
            out[key] = _merge(out[key], value, f"{where}{key}.")
        else:
            out[key] = copy.deepcopy(value)
    return out


def build_real_size(
    name: str,
    *,
    seed: int = 0,
    words: Iterable[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Any:
    """A random-weight model at its published size: ``(model, processor)`` (CLIP, BLIP, SigLIP, VSE++), a pipeline for SD.

    Args:
        name: one of :func:`available names <real_size_config>` (see :data:`REAL_SIZE_MODELS`).
        seed: weight initialisation seed (the global RNG state is left untouched).
        words: the tokenizer's word list (default: the tiny models' list); put the captions' words here so
            each word is one token.
        overrides: values merged into the published ``config`` (CLIP, BLIP, SigLIP, VSE++) or ``components`` (SD), e.g.
            ``{"unet": {"block_out_channels": [32, 64, 128, 128]}}`` for a narrow UNet with the real
            geometry. Unknown keys raise ``ValueError``.
    """
    record = real_size_config(name)
    family = record["family"]
    if family == "clip":
        return _build_clip(record, seed, words, overrides)
    if family == "blip":
        return _build_blip(record, seed, words, overrides)
    if family == "siglip":
        return _build_siglip(record, seed, words, overrides)
    if family == "vsepp":
        return _build_vsepp(record, seed, words, overrides)
    if family == "stable-diffusion-inpainting":
        return _build_sd_inpaint(record, seed, words, overrides)
    raise ValueError(f"{name}: no builder for family {family!r}")  # pragma: no cover - files are ours


def _image_kwargs(proc: Mapping[str, Any]) -> dict[str, Any]:
    from PIL import Image

    return {
        "resample": getattr(Image.Resampling, str(proc["resample"]).upper()),
        "image_mean": list(proc["image_mean"]),
        "image_std": list(proc["image_std"]),
    }


def _build_clip(record: dict, seed: int, words: Iterable[str] | None, overrides: Any) -> tuple[Any, Any]:
    config = _merge(record["config"], overrides, "")
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPProcessor  # lazy: heavy

    from hf_spurious.models.tiny.tokenizer import build_word_tokenizer
    from hf_spurious.models.tiny.towers import seeded_model

    tok = build_word_tokenizer(words, model_max_length=record["tokenizer"]["model_max_length"])
    _check_vocab(record["name"], len(tok), config["text_config"]["vocab_size"])
    model = seeded_model(CLIPModel, CLIPConfig(**config), seed)
    proc = record["processor"]
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": proc["shortest_edge"]},
        crop_size={"height": proc["crop_size"], "width": proc["crop_size"]},
        **_image_kwargs(proc),
    )
    return model, CLIPProcessor(image_processor=image_processor, tokenizer=tok)


def _build_blip(record: dict, seed: int, words: Iterable[str] | None, overrides: Any) -> tuple[Any, Any]:
    config = _merge(record["config"], overrides, "")
    from transformers import (  # lazy: heavy optional dependency
        BlipConfig,
        BlipForImageTextRetrieval,
        BlipImageProcessorPil,
        BlipProcessor,
    )

    from hf_spurious.models.tiny.tokenizer import build_bert_tokenizer
    from hf_spurious.models.tiny.towers import seeded_model

    tok = build_bert_tokenizer(words, model_max_length=record["tokenizer"]["model_max_length"])
    _check_vocab(record["name"], len(tok), config["text_config"]["vocab_size"])
    model = seeded_model(BlipForImageTextRetrieval, BlipConfig(**config), seed)
    proc = record["processor"]
    image_processor = BlipImageProcessorPil(
        size={"height": proc["size"], "width": proc["size"]}, **_image_kwargs(proc)
    )
    return model, BlipProcessor(image_processor=image_processor, tokenizer=tok)


def _build_siglip(record: dict, seed: int, words: Iterable[str] | None, overrides: Any) -> tuple[Any, Any]:
    config = _merge(record["config"], overrides, "")
    from transformers import SiglipConfig, SiglipImageProcessorPil, SiglipModel, SiglipProcessor  # lazy

    from hf_spurious.models.tiny.siglip_tokenizer import build_siglip_tokenizer
    from hf_spurious.models.tiny.towers import seeded_model

    tok = build_siglip_tokenizer(words, model_max_length=record["tokenizer"]["model_max_length"])
    _check_vocab(record["name"], len(tok), config["text_config"]["vocab_size"])
    model = seeded_model(SiglipModel, SiglipConfig(**config), seed)
    proc = record["processor"]
    image_processor = SiglipImageProcessorPil(
        size={"height": proc["size"], "width": proc["size"]}, **_image_kwargs(proc)
    )
    return model, SiglipProcessor(image_processor=image_processor, tokenizer=tok)


def _build_vsepp(record: dict, seed: int, words: Iterable[str] | None, overrides: Any) -> tuple[Any, Any]:
    config = _merge(record["config"], overrides, "")
    from transformers import CLIPImageProcessorPil, CLIPProcessor  # lazy: heavy

    from hf_spurious.models.tiny.towers import seeded_model
    from hf_spurious.models.tiny.words import DEFAULT_WORDS
    from hf_spurious.models.vsepp.configuration import VseppConfig
    from hf_spurious.models.vsepp.modeling import VseppModel
    from hf_spurious.models.vsepp.tokenizer import build_vsepp_tokenizer

    texts = list(DEFAULT_WORDS if words is None else words)  # each word once: kept with min_count=1
    tok = build_vsepp_tokenizer(texts, min_count=1, model_max_length=record["tokenizer"]["model_max_length"])
    _check_vocab(record["name"], len(tok), config["vocab_size"])
    model = seeded_model(VseppModel, VseppConfig(**config), seed)
    proc = record["processor"]
    image_processor = CLIPImageProcessorPil(  # VSE++'s test transform: Resize(256), CenterCrop(224)
        size={"shortest_edge": proc["shortest_edge"]},
        crop_size={"height": proc["crop_size"], "width": proc["crop_size"]},
        **_image_kwargs(proc),
    )
    return model, CLIPProcessor(image_processor=image_processor, tokenizer=tok)


def _check_vocab(name: str, tokenizer_size: int, vocab_size: int) -> None:
    if tokenizer_size > vocab_size:
        raise ValueError(
            f"{name}: the word tokenizer has {tokenizer_size} ids but the model's vocabulary holds {vocab_size}; "
            "pass fewer words"
        )


def _build_sd_inpaint(record: dict, seed: int, words: Iterable[str] | None, overrides: Any) -> Any:
    parts = _merge(record["components"], overrides, "")
    import diffusers  # lazy: heavy optional dependency
    from transformers import CLIPTextConfig, CLIPTextModel  # lazy: heavy optional dependency

    from hf_spurious.models.tiny.inpaint import inpaint_pipeline
    from hf_spurious.models.tiny.tokenizer import build_word_tokenizer
    from hf_spurious.models.tiny.towers import seeded

    tok = build_word_tokenizer(words, model_max_length=record["tokenizer"]["model_max_length"])
    _check_vocab(record["name"], len(tok), parts["text_encoder"]["vocab_size"])
    scheduler_args = dict(parts["scheduler"])
    # from_config, as diffusers loads a scheduler_config.json: keys the class does not take are ignored
    scheduler = getattr(diffusers, scheduler_args.pop("class")).from_config(scheduler_args)
    with seeded(seed):  # one seeded stream: UNet, VAE, text encoder
        unet = diffusers.UNet2DConditionModel(**parts["unet"])
        vae = diffusers.AutoencoderKL(**parts["vae"])
        text_encoder = CLIPTextModel(CLIPTextConfig(**parts["text_encoder"]))
    return inpaint_pipeline(unet, vae, text_encoder, tok, scheduler)
