"""The on-disk embedding cache (keyed by model + data fingerprints) and cached gallery / query embedding."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm.auto import tqdm

from hf_spurious.cache import ArrayStore, digest_texts
from hf_spurious.images import load_rgb

from .topk import check_finite

if TYPE_CHECKING:
    from hf_spurious.models.adapters import VisionLanguageAdapter

__all__ = [
    "EmbeddingCache",
    "adapter_fingerprint",
    "embed_gallery",
    "embed_queries",
    "fingerprint_captions",
    "fingerprint_images",
]


def fingerprint_captions(captions: Iterable[str]) -> str:
    """A sha256 over the captions in order (length-prefixed, so joins cannot collide)."""
    return digest_texts(captions)


def _image_bytes(image: Any) -> bytes:
    if isinstance(image, (str, os.PathLike)):
        return Path(image).read_bytes()
    if isinstance(image, dict):  # a `datasets` Image cell stored with decode=False
        if image.get("bytes") is not None:
            return bytes(image["bytes"])
        if image.get("path"):
            return Path(image["path"]).read_bytes()
        raise ValueError("an image cell has neither bytes nor a path")
    if isinstance(image, np.ndarray):
        arr = np.ascontiguousarray(image)
        return str((arr.shape, arr.dtype.str)).encode() + arr.tobytes()
    if torch.is_tensor(image):
        return _image_bytes(image.detach().cpu().numpy())
    if hasattr(image, "tobytes") and hasattr(image, "mode") and hasattr(image, "size"):  # PIL
        return f"{image.mode}{image.size}".encode() + image.tobytes()
    raise TypeError(
        f"cannot fingerprint an image of type {type(image).__name__}; pass a path, PIL image or array"
    )


def fingerprint_images(images: Iterable[Any], ids: Sequence[str] | None = None) -> str:
    """A sha256 over each image's id (when given) and its bytes (file bytes for paths, pixels otherwise)."""
    h = hashlib.sha256()
    n = 0
    for i, image in enumerate(images):
        if ids is not None:
            ident = str(ids[i]).encode()
            h.update(len(ident).to_bytes(8, "little") + ident)
        data = _image_bytes(image)
        h.update(len(data).to_bytes(8, "little"))
        h.update(hashlib.sha256(data).digest())
        n += 1
    h.update(b"images:" + str(n).encode())
    return h.hexdigest()


class EmbeddingCache(ArrayStore):
    """Embeddings on disk as ``.npy`` (never pickle), keyed by model fingerprint + data fingerprint + kind.

    Each entry is ``<key>.npy`` beside ``<key>.json`` (the key's parts, shape, dtype). Writes are atomic.
    """

    @staticmethod
    def key(model_fingerprint: str, data_fingerprint: str, kind: str) -> str:
        """``<kind>-<32 hex>``: a sha256 over the three parts (JSON list)."""
        if not model_fingerprint:
            raise ValueError(
                "the model fingerprint is empty; the adapter must expose a non-empty .fingerprint"
            )
        parts = json.dumps([kind, model_fingerprint, data_fingerprint]).encode()
        return f"{kind}-{hashlib.sha256(parts).hexdigest()[:32]}"


def adapter_fingerprint(adapter: VisionLanguageAdapter, given: str | None = None) -> str:
    """``given`` when set, else ``adapter.fingerprint``; an error when neither is there."""
    fp = given or getattr(adapter, "fingerprint", None)
    if not fp:
        raise ValueError("the adapter has no .fingerprint; it is needed to key the embedding cache")
    return str(fp)


def _embed_in_batches(
    embed: Callable[[list[Any], int], np.ndarray], items: Sequence[Any], batch_size: int, desc: str
) -> np.ndarray:
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    outs = []
    for start in tqdm(range(0, len(items), batch_size), desc=desc, unit="batch", leave=False):
        outs.append(np.asarray(embed(list(items[start : start + batch_size]), batch_size), dtype=np.float32))
    if not outs:
        raise ValueError(f"{desc}: nothing to embed (empty input)")
    out = np.concatenate(outs, axis=0)
    if out.shape[0] != len(items):
        raise ValueError(f"{desc}: the adapter returned {out.shape[0]} embeddings for {len(items)} inputs")
    check_finite(out, desc)
    return out


def embed_gallery(
    adapter: VisionLanguageAdapter,
    captions: Sequence[str],
    cache_dir: str | os.PathLike | None = None,
    *,
    batch_size: int = 256,
    model_fingerprint: str | None = None,
    desc: str = "embed gallery captions",
) -> np.ndarray:
    """Embed caption texts with ``adapter.embed_texts`` (L2-normalised, float32 (G, d)), cached on disk
    (``desc``: the progress bar's label).

    The cache key uses ``model_fingerprint`` when given, else ``adapter.fingerprint``; runners take the
    fingerprint once, before any tokenisation (a tokenizer's padding state can leak into it).
    """
    captions = list(captions)
    for i, c in enumerate(captions):
        if not isinstance(c, str):
            raise TypeError(f"gallery caption {i} is a {type(c).__name__}, not a string")

    def compute() -> np.ndarray:
        return _embed_in_batches(
            lambda b, bs: adapter.embed_texts(b, batch_size=bs), captions, batch_size, desc
        )

    if cache_dir is None:
        return compute()
    cache = EmbeddingCache(cache_dir)
    fp = adapter_fingerprint(adapter, model_fingerprint)
    return cache.get_or_compute(
        cache.key(fp, fingerprint_captions(captions), "text"), compute, n=len(captions)
    )


def embed_queries(
    adapter: VisionLanguageAdapter,
    images: Sequence[Any],
    cache_dir: str | os.PathLike | None = None,
    *,
    ids: Sequence[str] | None = None,
    batch_size: int = 64,
    model_fingerprint: str | None = None,
    desc: str = "embed query images",
) -> np.ndarray:
    """Embed images (paths, PIL images, HxWx3 arrays, image cells) with ``adapter.embed_images``, cached
    (``desc``: the progress bar's label)."""
    if not isinstance(images, Sequence):
        images = list(images)
    if ids is not None and len(ids) != len(images):
        raise ValueError(f"{len(ids)} ids for {len(images)} images; pass one id per image")

    def compute() -> np.ndarray:
        return _embed_in_batches(
            lambda b, bs: adapter.embed_images([load_rgb(x) for x in b], batch_size=bs),
            images,
            batch_size,
            desc,
        )

    if cache_dir is None:
        return compute()
    cache = EmbeddingCache(cache_dir)
    fp = adapter_fingerprint(adapter, model_fingerprint)
    return cache.get_or_compute(
        cache.key(fp, fingerprint_images(images, ids), "image"), compute, n=len(images)
    )
