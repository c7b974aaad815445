"""Retrieval engine: exact chunked top-k, an on-disk embedding cache, gallery/query embedding, ITM re-ranking.

Exact top-k never builds the dense ``queries x gallery`` matrix: queries are processed in chunks of
``query_chunk_size`` rows, and for each query chunk the gallery is scanned in chunks of ``chunk_size``
rows, keeping a running top-k per query that is merged with each gallery chunk's top-k.

**Ties** are broken by the lower gallery index (a stable order): among equal similarities the caption
that comes first in the gallery ranks first. The result is therefore exactly the first ``k`` entries of a
stable descending sort of each dense similarity row.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from hf_spurious.images import load_rgb

ArrayLike = np.ndarray | torch.Tensor

__all__ = [
    "EmbeddingCache",
    "check_finite",
    "embed_gallery",
    "embed_queries",
    "fingerprint_captions",
    "fingerprint_images",
    "itm_pair_scores",
    "rerank_with_itm",
    "topk_similarities",
]


# --------------------------------------------------------------------------------------------- top-k


def _as_2d(x: ArrayLike, name: str) -> ArrayLike:
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (n, d) array of embeddings, got shape {tuple(x.shape)}")
    return x


def check_finite(x: ArrayLike, name: str, *, chunk_rows: int = 65536) -> None:
    """Raise ``ValueError`` naming the first row of ``x`` that holds a NaN or an infinity."""
    for start in range(0, x.shape[0], chunk_rows):
        block = x[start : start + chunk_rows]
        bad = ~torch.isfinite(block).all(dim=1) if torch.is_tensor(block) else ~np.isfinite(block).all(axis=1)
        if bool(bad.any()):
            row = start + int(np.flatnonzero(np.asarray(bad.cpu() if torch.is_tensor(bad) else bad))[0])
            raise ValueError(
                f"{name} row {row} contains NaN or infinite values; re-embed that item "
                "(a NaN usually means an empty input or a model loaded in the wrong dtype)"
            )


def _to_device(block: ArrayLike, device: torch.device) -> torch.Tensor:
    if not torch.is_tensor(block):
        arr = np.ascontiguousarray(block, dtype=np.float32)
        block = torch.from_numpy(arr if arr.flags.writeable else arr.copy())
    t = block
    return t.to(device=device, dtype=torch.float32)


def _resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _lexsort_desc(values: torch.Tensor, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sort each row by value descending, then by index ascending (ties)."""
    by_index = torch.argsort(indices, dim=1, stable=True)
    values, indices = values.gather(1, by_index), indices.gather(1, by_index)
    by_value = torch.argsort(values, dim=1, descending=True, stable=True)
    return values.gather(1, by_value), indices.gather(1, by_value)


def _chunk_topk(sims: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-k of each row of ``sims`` with ties broken by lower column index, sorted."""
    n = sims.shape[1]
    if k >= n:
        cols = torch.arange(n, device=sims.device).expand_as(sims)
        return _lexsort_desc(sims, cols)
    # Take k+1: when the (k+1)-th value is strictly smaller than the k-th, the top-k *set* is unique.
    vals, idx = torch.topk(sims, k + 1, dim=1, largest=True, sorted=True)
    ambiguous = vals[:, k - 1] == vals[:, k]
    vals, idx = vals[:, :k], idx[:, :k]
    if bool(ambiguous.any()):
        rows = torch.nonzero(ambiguous).squeeze(1)
        sub = sims[rows]
        thr = vals[rows, k - 1 : k]
        greater = sub > thr
        need = k - greater.sum(dim=1, keepdim=True)
        equal = sub == thr
        take = greater | (equal & (torch.cumsum(equal, dim=1) <= need))
        cols = torch.nonzero(take)[:, 1].view(len(rows), k)  # row-major: k columns per row, ascending
        idx[rows] = cols
        vals[rows] = sub.gather(1, cols)
    return _lexsort_desc(vals, idx)


def _merge(
    run_v: torch.Tensor | None, run_i: torch.Tensor | None, v: torch.Tensor, i: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    if run_v is None or run_i is None:
        return v[:, :k], i[:, :k]
    vals, idx = _lexsort_desc(torch.cat([run_v, v], dim=1), torch.cat([run_i, i], dim=1))
    return vals[:, :k], idx[:, :k]


def topk_similarities(
    queries: ArrayLike,
    gallery: ArrayLike,
    k: int,
    *,
    chunk_size: int = 32768,
    query_chunk_size: int = 1024,
    device: str | torch.device | None = None,
    check: bool = True,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` inner products of each query with the gallery, by chunked matrix products.

    ``queries`` (Q, d) and ``gallery`` (G, d) are numpy arrays (memory-mapped ones too) or tensors;
    pass L2-normalised embeddings to rank by cosine. Returns ``(scores, indices)``, both (Q, min(k, G)),
    scores descending, ties broken by the lower gallery index. Runs on ``device`` (default: CUDA when
    present). Peak extra memory is about ``query_chunk_size * chunk_size * 4`` bytes.
    """
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k <= 0:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if chunk_size <= 0 or query_chunk_size <= 0:
        raise ValueError(f"chunk sizes must be positive, got {chunk_size=} {query_chunk_size=}")
    _as_2d(queries, "queries")
    _as_2d(gallery, "gallery")
    if queries.shape[1] != gallery.shape[1]:
        raise ValueError(
            f"queries have dimension {queries.shape[1]} but gallery has {gallery.shape[1]}; "
            "embed both with the same model"
        )
    n_q, n_g = int(queries.shape[0]), int(gallery.shape[0])
    if n_g == 0:
        raise ValueError("the gallery is empty; nothing to retrieve")
    if check:
        check_finite(queries, "queries")
        check_finite(gallery, "gallery")
    k = int(min(k, n_g))
    dev = _resolve_device(device)
    out_v = np.empty((n_q, k), dtype=np.float32)
    out_i = np.empty((n_q, k), dtype=np.int64)
    steps = [(qs, gs) for qs in range(0, n_q, query_chunk_size) for gs in range(0, n_g, chunk_size)]
    bar = tqdm(total=len(steps), desc="top-k", unit="chunk", disable=not progress, leave=False)
    gallery_on_device = None
    if torch.is_tensor(gallery) and gallery.device == dev:
        gallery_on_device = gallery.float()
    with torch.no_grad():
        for qs in range(0, n_q, query_chunk_size):
            q = _to_device(queries[qs : qs + query_chunk_size], dev)
            run_v = run_i = None
            for gs in range(0, n_g, chunk_size):
                g = (
                    gallery_on_device[gs : gs + chunk_size]
                    if gallery_on_device is not None
                    else _to_device(gallery[gs : gs + chunk_size], dev)
                )
                sims = q @ g.T
                v, i = _chunk_topk(sims, k)
                run_v, run_i = _merge(run_v, run_i, v, i + gs, k)
                del sims
                bar.update(1)
            assert run_v is not None and run_i is not None
            out_v[qs : qs + len(q)] = run_v.cpu().numpy()
            out_i[qs : qs + len(q)] = run_i.cpu().numpy()
    bar.close()
    return out_v, out_i


# --------------------------------------------------------------------------------------------- fingerprints


def _hasher() -> Any:
    return hashlib.sha256()


def fingerprint_captions(captions: Iterable[str]) -> str:
    """A sha256 over the captions in order (length-prefixed, so joins cannot collide)."""
    h = _hasher()
    n = 0
    for caption in captions:
        data = caption.encode("utf-8")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
        n += 1
    h.update(b"captions:" + str(n).encode())
    return h.hexdigest()


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
    h = _hasher()
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


# --------------------------------------------------------------------------------------------- cache


class EmbeddingCache:
    """Embeddings on disk as ``.npy`` (never pickle), keyed by model fingerprint + data fingerprint + kind.

    Each entry is ``<key>.npy`` beside ``<key>.json`` (the key's parts, shape, dtype). Writes are atomic.
    """

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)

    @staticmethod
    def key(model_fingerprint: str, data_fingerprint: str, kind: str) -> str:
        if not model_fingerprint:
            raise ValueError(
                "the model fingerprint is empty; the adapter must expose a non-empty .fingerprint"
            )
        parts = json.dumps([kind, model_fingerprint, data_fingerprint]).encode()
        return f"{kind}-{hashlib.sha256(parts).hexdigest()[:32]}"

    def path(self, key: str) -> Path:
        return self.directory / f"{key}.npy"

    def get(self, key: str, *, mmap: bool = False) -> np.ndarray | None:
        """The cached array for ``key``, or None on a miss (a corrupt entry counts as a miss)."""
        path = self.path(key)
        if not path.exists():
            return None
        try:
            return np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
        except (ValueError, OSError):
            return None

    def put(self, key: str, array: np.ndarray, **meta: Any) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        array = np.ascontiguousarray(array)
        path = self.path(key)
        fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".npy.tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.save(f, array, allow_pickle=False)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        info = {"key": key, "shape": list(array.shape), "dtype": array.dtype.str, **meta}
        path.with_suffix(".json").write_text(json.dumps(info, indent=1, default=str))
        return path

    def get_or_compute(self, key: str, compute: Callable[[], np.ndarray], **meta: Any) -> np.ndarray:
        cached = self.get(key)
        if cached is not None:
            return cached
        array = compute()
        self.put(key, array, **meta)
        return array


# --------------------------------------------------------------------------------------------- embedding


def _model_fingerprint(adapter: Any, given: str | None = None) -> str:
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
    adapter: Any,
    captions: Sequence[str],
    cache_dir: str | os.PathLike | None = None,
    *,
    batch_size: int = 256,
    model_fingerprint: str | None = None,
) -> np.ndarray:
    """Embed caption texts with ``adapter.embed_texts`` (L2-normalised, float32 (G, d)), cached on disk.

    The cache key uses ``model_fingerprint`` when given, else ``adapter.fingerprint``; runners take the
    fingerprint once, before any tokenisation (a tokenizer's padding state can leak into it).
    """
    captions = list(captions)
    for i, c in enumerate(captions):
        if not isinstance(c, str):
            raise TypeError(f"gallery caption {i} is a {type(c).__name__}, not a string")

    def compute() -> np.ndarray:
        return _embed_in_batches(
            lambda b, bs: adapter.embed_texts(b, batch_size=bs), captions, batch_size, "embed gallery"
        )

    if cache_dir is None:
        return compute()
    cache = EmbeddingCache(cache_dir)
    key = cache.key(_model_fingerprint(adapter, model_fingerprint), fingerprint_captions(captions), "text")
    return cache.get_or_compute(key, compute, n=len(captions))


def embed_queries(
    adapter: Any,
    images: Sequence[Any],
    cache_dir: str | os.PathLike | None = None,
    *,
    ids: Sequence[str] | None = None,
    batch_size: int = 64,
    model_fingerprint: str | None = None,
) -> np.ndarray:
    """Embed images (paths, PIL images, HxWx3 arrays, image cells) with ``adapter.embed_images``, cached."""
    if not isinstance(images, Sequence):
        images = list(images)
    if ids is not None and len(ids) != len(images):
        raise ValueError(f"{len(ids)} ids for {len(images)} images; pass one id per image")

    def compute() -> np.ndarray:
        return _embed_in_batches(
            lambda b, bs: adapter.embed_images([load_rgb(x) for x in b], batch_size=bs),
            images,
            batch_size,
            "embed queries",
        )

    if cache_dir is None:
        return compute()
    cache = EmbeddingCache(cache_dir)
    key = cache.key(_model_fingerprint(adapter, model_fingerprint), fingerprint_images(images, ids), "image")
    return cache.get_or_compute(key, compute, n=len(images))


# --------------------------------------------------------------------------------------------- ITM re-ranking


def itm_pair_scores(
    adapter: Any, images: Sequence[Any], texts: Sequence[str], *, batch_size: int = 64
) -> np.ndarray:
    """ITM match probability of each (image_i, text_i) pair, float64 (N,), in batches without grad."""
    if len(images) != len(texts):
        raise ValueError(f"ITM scores pairs: got {len(images)} images and {len(texts)} texts")
    out = []
    with torch.no_grad():
        for s in range(0, len(texts), batch_size):
            pv = adapter.preprocess_images(list(images[s : s + batch_size]))
            enc = adapter.tokenize(list(texts[s : s + batch_size]))
            out.append(adapter.itm_scores(pv, enc["input_ids"], enc["attention_mask"]).float().cpu().numpy())
    return np.concatenate(out).astype(np.float64) if out else np.zeros(0)


def rerank_with_itm(
    adapter: Any,
    images: Sequence[Any],
    captions: Sequence[str],
    indices: np.ndarray,
    top_n: int = 16,
    *,
    query: str = "image",
    batch_size: int = 64,
) -> np.ndarray:
    """Re-rank each query's first ``top_n`` candidates by ``adapter.itm_scores`` (BLIP's ITM head).

    ``query="image"``: rows of ``indices`` are images and hold caption indices; ``query="text"``: rows are
    captions and hold image indices. Candidates past ``top_n`` keep their order; equal ITM scores keep
    the similarity order. Returns the re-ordered (Q, K) index array.
    """
    if not hasattr(adapter, "itm_scores"):
        raise ValueError(
            "this adapter has no ITM head (itm_scores); ITM re-ranking needs a BLIP retrieval model"
        )
    if top_n <= 0:
        raise ValueError(f"top_n must be positive, got {top_n}")
    if query not in ("image", "text"):
        raise ValueError(f"query must be 'image' or 'text', got {query!r}")
    n_rows = len(images) if query == "image" else len(captions)
    if n_rows != indices.shape[0]:
        raise ValueError(f"{n_rows} {query} queries for {indices.shape[0]} rows of candidate indices")
    out = indices.copy()
    n = min(top_n, indices.shape[1])
    for q in tqdm(range(n_rows), desc="ITM re-rank", unit="query", leave=False):
        cand = indices[q, :n]
        if query == "image":
            pair_images = [load_rgb(images[q])] * n
            texts = [captions[int(j)] for j in cand]
        else:
            pair_images = [load_rgb(images[int(j)]) for j in cand]
            texts = [captions[q]] * n
        scores = itm_pair_scores(adapter, pair_images, texts, batch_size=batch_size)
        if scores.shape[0] != n:
            raise ValueError(f"itm_scores returned {scores.shape[0]} scores for {n} pairs")
        out[q, :n] = cand[np.argsort(-scores, kind="stable")]
    return out
