"""SigLIP 2 NaFlex inputs as one tensor: packing, patch layout, and the processor wrappers.

``Siglip2Model`` takes patch sequences of variable grid size: ``pixel_values`` (B, N, 3·p·p),
``pixel_attention_mask`` (B, N) and ``spatial_shapes`` (B, 2). Every caller of an adapter passes a single
``pixel_values`` tensor, so :class:`NaflexPackingProcessor` **packs** the three into one tensor
(B, N, 3·p·p + 3): the last three channels hold the mask and the grid height and width
(:func:`pack_naflex` / :func:`unpack_naflex`). Each image's first h·w patches are its grid, row-major, each
patch laid out as (p, p, 3) (the processor's layout; :func:`patchify` / :func:`unpatchify` convert).

:class:`SquareImageProcessor` is the one place where the aspect ratio is not kept: it resizes every image
(no crop) to the square grid of ``max_num_patches`` patches and returns ordinary (B, 3, S, S) pixel
values, which ``Siglip2Adapter`` also accepts, so that GradCAM / AIoU (which need image-shaped pixels and
one grid per batch) run on SigLIP 2.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from PIL import Image

__all__ = [
    "NaflexPackingProcessor",
    "SquareImageProcessor",
    "pack_naflex",
    "patchify",
    "unpack_naflex",
    "unpatchify",
]


def pack_naflex(
    pixel_values: torch.Tensor, pixel_attention_mask: torch.Tensor, spatial_shapes: torch.Tensor
) -> torch.Tensor:
    """(B, N, C) patches + (B, N) mask + (B, 2) grids -> one (B, N, C + 3) tensor (see the module doc)."""
    b, n, _ = pixel_values.shape
    if pixel_attention_mask.shape != (b, n) or spatial_shapes.shape != (b, 2):
        raise ValueError(
            f"NaFlex inputs disagree: pixel_values {tuple(pixel_values.shape)}, pixel_attention_mask "
            f"{tuple(pixel_attention_mask.shape)}, spatial_shapes {tuple(spatial_shapes.shape)}"
        )
    mask = pixel_attention_mask.to(pixel_values.dtype).unsqueeze(-1)
    grids = spatial_shapes.to(pixel_values.dtype).unsqueeze(1).expand(b, n, 2)
    return torch.cat([pixel_values, mask, grids], dim=-1)


def unpack_naflex(packed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inverse of :func:`pack_naflex`: ``(pixel_values, pixel_attention_mask, spatial_shapes)``."""
    if packed.ndim != 3 or packed.shape[-1] < 4:
        raise ValueError(
            f"SigLIP 2 pixel_values must be packed NaFlex patches (B, N, 3*p*p + 3), got {tuple(packed.shape)}; "
            "preprocess with the adapter's processor (adapter.preprocess_images)"
        )
    mask = packed[..., -3].round().long()
    grids = packed[:, 0, -2:].float().round().long()
    return packed[..., :-3], mask, grids


def _delegate(wrapper: Any, name: str) -> Any:
    """Attribute lookup on the wrapped object; never for ``inner`` itself or dunders (copy / pickle probe those
    on an instance whose ``__init__`` did not run)."""
    if name == "inner" or name.startswith("__"):
        raise AttributeError(name)
    return getattr(wrapper.inner, name)


class _PackingImageProcessor:
    """Wraps a NaFlex image processor so that its ``pixel_values`` come out packed."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _pack_output(self.inner(*args, **kwargs))

    def __getattr__(self, name: str) -> Any:
        return _delegate(self, name)


class NaflexPackingProcessor:
    """A SigLIP 2 processor whose outputs carry packed ``pixel_values`` (everything else delegates).

    ``processor(images=..., text=...)`` and ``processor.image_processor(images=...)`` return
    ``pixel_values`` packed with :func:`pack_naflex` (and keep the separate mask and grids too);
    ``tokenizer``, ``save_pretrained`` and every other attribute are the wrapped processor's.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.image_processor = _PackingImageProcessor(getattr(inner, "image_processor", inner))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # Siglip2Processor's class defaults (patch 16, 256 patches) override its image processor's own
        # settings; pass the image processor's as images_kwargs (explicit call kwargs still win).
        images_kwargs = dict(kwargs.pop("images_kwargs", None) or {})
        for key in ("patch_size", "max_num_patches"):
            value = getattr(self.image_processor.inner, key, None)
            if value is not None and key not in kwargs:
                images_kwargs.setdefault(key, value)
        return _pack_output(self.inner(*args, images_kwargs=images_kwargs, **kwargs))

    def __getattr__(self, name: str) -> Any:
        return _delegate(self, name)


def _pack_output(out: Any) -> Any:
    keys = ("pixel_values", "pixel_attention_mask", "spatial_shapes")
    if all(k in out for k in keys) and all(torch.is_tensor(out[k]) for k in keys):
        out["pixel_values"] = pack_naflex(*(out[k] for k in keys))
    return out


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(B, C, h·p, w·p) pixels -> (B, h·w, p·p·C) patches, row-major, each patch (p, p, C) as NaFlex lays them."""
    b, c, height, width = images.shape
    p = int(patch_size)
    if height % p or width % p:
        raise ValueError(f"image size {height}x{width} is not a multiple of the patch size {p}")
    grid = images.reshape(b, c, height // p, p, width // p, p).permute(0, 2, 4, 3, 5, 1)
    return grid.reshape(b, (height // p) * (width // p), p * p * c)


def unpatchify(patches: torch.Tensor, grid: tuple[int, int], patch_size: int) -> torch.Tensor:
    """One image's (>= h·w, p·p·C) patches -> its (C, h·p, w·p) pixels (padding patches after h·w ignored)."""
    h, w = grid
    p = int(patch_size)
    cells = patches[: h * w].reshape(h, w, p, p, -1)
    return cells.permute(4, 0, 2, 1, 3).reshape(-1, h * p, w * p)


class SquareImageProcessor:
    """A NaFlex image processor that resizes every image to the square of ``max_num_patches`` patches.

    Returns ``{"pixel_values": (B, 3, S, S)}`` with S = sqrt(max_num_patches) · patch_size: each image is
    resized (no crop, aspect ratio not kept) to S x S and then preprocessed by the wrapped NaFlex
    processor, whose own resize is then the identity. Masks sent through it (AIoU) get the same geometry.
    Other attributes (``image_mean``, ``do_normalize``, ...) are the wrapped processor's.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    @property
    def side(self) -> int:
        """Patches per side of the square grid."""
        side = math.isqrt(int(self.inner.max_num_patches))
        if side < 1:
            raise ValueError(f"max_num_patches={self.inner.max_num_patches} gives no square patch grid")
        return side

    def __call__(self, images: Any = None, **kwargs: Any) -> dict[str, torch.Tensor]:
        p, side = int(self.inner.patch_size), self.side
        size = side * p
        resample = getattr(self.inner, "resample", Image.Resampling.BILINEAR)
        squares = [
            (im if isinstance(im, Image.Image) else Image.fromarray(np.asarray(im)))
            .convert("RGB")
            .resize((size, size), resample=resample)
            for im in images
        ]
        out = self.inner(images=squares, patch_size=p, max_num_patches=side * side, return_tensors="pt")
        grids = out["spatial_shapes"].tolist()
        if any(
            tuple(g) != (side, side) for g in grids
        ):  # pragma: no cover - the processor keeps a fitting size
            raise ValueError(f"NaFlex processor resized a {size}x{size} image to grids {grids}")
        pixels = [unpatchify(pv, (side, side), p) for pv in out["pixel_values"]]
        return {"pixel_values": torch.stack(pixels)}

    def __getattr__(self, name: str) -> Any:
        return _delegate(self, name)
