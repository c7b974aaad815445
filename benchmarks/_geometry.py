"""The measured parts of the real-geometry benchmark (shared by real_geometry.py and gpu_suite.py).

Every part builds one random-weight paper model from its published config
(``hf_spurious.models.real_size``), runs one real code path at the real input size on 640x480 world
images and COCO-length captions, and returns a dict of numbers. Peak memory: ``ru_maxrss`` of the process
on CPU (run one part per process), ``torch.cuda.max_memory_allocated`` on CUDA.
"""

from __future__ import annotations

import resource
import time
from contextlib import contextmanager, nullcontext
from typing import Any

import numpy as np
import torch

CLIP_LIKE = ("clip-vit-base-patch32", "clip-vit-large-patch14-336", "blip-itm-base-coco")
SD = "sd-1.5-inpainting"
PARTS = ("embed", "gradcam", "train-projection", "train-lora", "train-full", "itm")

# COCO-style caption pieces: 5 + 1..3 + 2..4 words, mean ~10.5 words like COCO's captions
_SUBJECTS = ["man", "woman", "dog", "cat", "child", "person", "horse", "bird", "player", "girl", "boy"]
_VERBS = ["sitting on", "standing next to", "holding", "riding", "walking past", "looking at", "lying on"]
_OBJECTS = ["bench", "table", "couch", "frisbee", "bicycle", "surfboard", "umbrella", "pizza", "kite", "car"]
_ADJ = ["large", "small", "red", "white", "wooden", "old", "green", "black", "brown", "blue"]
_PLACES = ["in a park", "on the beach", "in the kitchen", "near the road", "on a sunny day", "in the snow"]
WORDS = sorted(
    {w for group in (_SUBJECTS, _VERBS, _OBJECTS, _ADJ, _PLACES) for p in group for w in p.split()}
    | {"a", "an", "the", "with", "and", "of", "two"}
)


def make_captions(n: int, seed: int = 0) -> list[str]:
    """``n`` COCO-like captions (about 10 words, every word in :data:`WORDS`)."""
    rng = np.random.default_rng(seed)

    def pick(options: list[str]) -> str:
        return options[int(rng.integers(len(options)))]

    out = []
    for _ in range(n):
        words = ["a", pick(_ADJ), pick(_SUBJECTS), pick(_VERBS), "a", pick(_ADJ), pick(_OBJECTS)]
        if rng.random() < 0.6:
            words += pick(_PLACES).split()
        out.append(" ".join(words))
    return out


def make_images(n: int, seed: int = 0) -> list[np.ndarray]:
    """``n`` world scenes rendered at 640 px and cropped to 640x480 (uint8 HxWx3)."""
    from hf_spurious.world import WorldConfig
    from hf_spurious.world.render import draw_scene
    from hf_spurious.world.scenes import sample_retrieval_scene

    cfg = WorldConfig(image_size=640, seed=seed)
    return [
        np.ascontiguousarray(draw_scene(sample_retrieval_scene(cfg, "test", i))[80:560]) for i in range(n)
    ]


def peak_mb(device: str) -> float:
    """Peak memory so far in MiB: CUDA allocator peak, or the process's peak RSS."""
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


@contextmanager
def timer(out: dict[str, Any], key: str, device: str):
    _sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    yield
    _sync(device)
    out[key] = time.perf_counter() - t0
    out[key + "_cpu"] = time.process_time() - c0


def _autocast(device: str, dtype: str):
    if dtype == "bf16":
        return torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16)
    return nullcontext()


def build_adapter(name: str, device: str):
    from hf_spurious.models.loading import load_adapter
    from hf_spurious.models.real_size import build_real_size

    model, processor = build_real_size(name, words=WORDS)
    return load_adapter(model, processor, device=device)


def part_embed(adapter, device: str, dtype: str, n_images: int, n_texts: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    images, captions = make_images(n_images), make_captions(n_texts)
    lengths = adapter.tokenize(captions)["attention_mask"].sum(1)
    out["tokens"] = f"{float(lengths.float().mean()):.1f} (max {int(lengths.max())})"
    with _autocast(device, dtype):
        adapter.embed_images(images[:1], batch_size=1)  # warm-up
        with timer(out, "image_s", device):
            emb = adapter.embed_images(images, batch_size=n_images)
        adapter.embed_texts(captions[:2], batch_size=2)
        with timer(out, "text_s", device):
            adapter.embed_texts(captions, batch_size=n_texts)
    with timer(out, "preprocess_s", device):
        pv = adapter.preprocess_images(images)
    out["input"] = "x".join(str(s) for s in pv.shape[1:])
    out["dim"] = int(emb.shape[1])
    out["images_per_s"] = n_images / out["image_s"]
    out["texts_per_s"] = n_texts / out["text_s"]
    return out


def part_gradcam(adapter, device: str, dtype: str, n_images: int) -> dict[str, Any]:
    from hf_spurious.evaluation.gradcam import ClassSimilarityTarget, ViTGradCAM

    cam = ViTGradCAM(adapter)
    shapes: list[tuple[int, ...]] = []
    handle = cam.layer.register_forward_pre_hook(lambda _m, args: shapes.append(tuple(args[0].shape)))
    pv = adapter.preprocess_images(make_images(n_images))
    gen = torch.Generator().manual_seed(0)
    target = ClassSimilarityTarget(torch.randn(adapter.embedding_dim, generator=gen))
    out: dict[str, Any] = {}
    with _autocast(device, dtype):
        cam(pv[:1], [target])  # warm-up
        with timer(out, "seconds", device):
            maps = cam(pv, [target])
    handle.remove()
    tokens = shapes[-1][1] - 1
    side = round(tokens**0.5)
    out["grid"] = f"{side}x{side}" if side * side == tokens else f"{tokens} tokens"
    out["maps"] = "x".join(str(s) for s in maps.shape)
    out["s_per_map"] = out["seconds"] / n_images
    return out


def part_train(adapter, device: str, dtype: str, policy: str, batch: int) -> dict[str, Any]:
    from hf_spurious.losses.contrastive import clip_contrastive_loss
    from hf_spurious.models.freezing import apply_freezing

    summary = apply_freezing(adapter, policy)
    params = [p for p in adapter.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-5)
    pv = adapter.preprocess_images(make_images(batch))
    enc = adapter.tokenize(make_captions(batch))
    adapter.train()
    out: dict[str, Any] = {"trainable": f"{summary.trainable / 1e6:.2f} M / {summary.total / 1e6:.1f} M"}
    with timer(out, "seconds", device):
        with _autocast(device, dtype):
            emb = adapter(pixel_values=pv, **enc)
            loss = clip_contrastive_loss(emb["image_embeds"], emb["text_embeds"], emb["logit_scale"])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    out["loss"] = float(loss.detach())
    return out


def part_itm(adapter, device: str, dtype: str, n_candidates: int, batch: int) -> dict[str, Any]:
    from hf_spurious.evaluation.rerank import rerank_with_itm

    vision_s: list[float] = []
    starts: list[float] = []
    vision = adapter.base_model.vision_model

    images: list[int] = []

    def pre(_m: Any, args: tuple, kwargs: dict) -> None:
        _sync(device)
        pv = args[0] if args else kwargs.get("pixel_values")
        images.append(int(pv.shape[0]) if torch.is_tensor(pv) else 0)
        starts.append(time.perf_counter())

    def post(*_: Any) -> None:
        _sync(device)
        vision_s.append(time.perf_counter() - starts[-1])

    h1 = vision.register_forward_pre_hook(pre, with_kwargs=True)
    h2 = vision.register_forward_hook(post)
    image = make_images(1)[0]
    captions = make_captions(n_candidates, seed=1)
    indices = np.arange(n_candidates)[None, :]
    out: dict[str, Any] = {}
    with _autocast(device, dtype), timer(out, "seconds", device):
        ranked = rerank_with_itm(
            adapter, [image], captions, indices, top_n=n_candidates, query="image", batch_size=batch
        )
    h1.remove()
    h2.remove()
    out["vision_calls"] = len(vision_s)
    out["vision_images"] = sum(images)
    out["vision_s"] = sum(vision_s)
    out["ranked"] = bool(sorted(ranked[0].tolist()) == list(range(n_candidates)))
    return out


def _component_timer(module, name: str, device: str, log: dict[str, Any]) -> list:
    """Hooks adding each forward's seconds to ``log[name]`` and its first input's shape to ``log[name + ' in']``."""
    starts: list[float] = []

    def pre(_m, args, kwargs):
        _sync(device)
        starts.append(time.perf_counter())
        first = args[0] if args else next(iter(kwargs.values()), None)
        if torch.is_tensor(first):
            log.setdefault(name + " in", tuple(first.shape))

    def post(_m, _args, _kwargs, _out):
        _sync(device)
        log[name] = log.get(name, 0.0) + time.perf_counter() - starts.pop()
        log[name + " calls"] = log.get(name + " calls", 0) + 1

    return [
        module.register_forward_pre_hook(pre, with_kwargs=True),
        module.register_forward_hook(post, with_kwargs=True),
    ]


def build_inpainter(device: str, dtype: str, overrides: dict | None = None, **options: Any):
    """``DiffusersInpainter`` over a random-weight SD-1.5 inpainting pipeline built from the published configs.

    The pipeline object is handed to the inpainter in place of ``AutoPipelineForInpainting.from_pretrained``
    (no weights to load); everything after loading is the inpainter's own code.
    """
    from unittest import mock

    from diffusers import AutoPipelineForInpainting

    from hf_spurious.models.real_size import build_real_size
    from hf_spurious.synthesis.inpaint import DiffusersInpainter

    pipe = build_real_size(SD, words=WORDS, overrides=overrides)
    if dtype == "bf16":
        pipe = pipe.to(torch.bfloat16)
    with mock.patch.object(AutoPipelineForInpainting, "from_pretrained", return_value=pipe):
        return DiffusersInpainter("random-sd-1.5-inpainting", device=device, dtype=dtype, **options)


def box_mask(h: int = 480, w: int = 640, box: tuple[int, int, int, int] = (150, 200, 330, 400)) -> np.ndarray:
    """A (h, w) bool mask, True inside ``box`` = (r0, c0, r1, c1) (an object of about COCO's median size)."""
    mask = np.zeros((h, w), dtype=bool)
    r0, c0, r1, c1 = box
    mask[r0:r1, c0:c1] = True
    return mask


def part_inpaint(inpainter, device: str, n_images: int = 1) -> dict[str, Any]:
    """One call of the inpainter on ``n_images`` 640x480 images (steps as configured), per-component seconds."""
    pipe = inpainter.pipe
    log: dict[str, Any] = {}
    hooks = _component_timer(pipe.unet, "unet", device, log)
    hooks += _component_timer(pipe.vae.encoder, "vae encoder", device, log)
    hooks += _component_timer(pipe.vae.decoder, "vae decoder", device, log)
    hooks += _component_timer(pipe.text_encoder, "text encoder", device, log)
    images = make_images(n_images)
    masks = [box_mask() for _ in images]
    out: dict[str, Any] = {}
    with timer(out, "seconds", device):
        filled = inpainter.inpaint(images, masks, seeds=list(range(n_images)))
    for h in hooks:
        h.remove()
    out["components"] = log
    out["resolution"] = inpainter.resolution
    out["out_shape"] = tuple(filled[0].shape)
    out["unmasked_kept"] = bool(all((f[~m] == i[~m]).all() for f, i, m in zip(filled, images, masks)))
    return out
