"""Inpainting backends behind one interface: ``inpaint(images, masks) -> images`` (uint8 HxWx3, bool HxW).

Specs for :func:`get_inpainter`:

- ``"opencv"`` / ``"opencv:telea"`` / ``"opencv:ns"``: ``cv2.inpaint`` (CPU default, no weights); option ``radius``.
- ``"zero"``, ``"mean"`` (mean colour of the removed region), ``"blur"`` (Gaussian blur of the region;
  options ``sigma``, ``ksize``): the ablation fills of Kim et al. Table 3.
- ``"diffusers:<hub id or local dir>"``: any diffusers inpainting pipeline via
  ``AutoPipelineForInpainting.from_pretrained``; a context window around the mask is run at the pipeline's
  native resolution and only the masked pixels are pasted back.
- ``"oracle"``: SpuriousShapes only; the world re-draws the scene without the removed objects (needs
  ``contexts`` with ``split``, ``image_id``, ``removed_classes``; option ``world_dir``).

Every backend except the oracle leaves the pixels outside the mask unchanged (enforced in the base class).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from hf_spurious import world
from hf_spurious.synthesis.inpaint_options import check_inpainter_options

DEFAULT_PROMPT = "background, empty scene, natural continuation of the surroundings, high quality"
DEFAULT_NEGATIVE_PROMPT = "object, person, animal, text, watermark, blurry, artifacts"


class InpaintError(ValueError):
    """Bad input to an inpainter; the message names the item."""


def _check_pair(i: int, image: np.ndarray, mask: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise InpaintError(
            f"image {i}: expected a uint8 HxWx3 array, got {getattr(image, 'shape', type(image))}"
        )
    if mask.shape != image.shape[:2]:
        raise InpaintError(f"mask {i}: shape {mask.shape} does not match image {image.shape[:2]}")


class Inpainter:
    """Base class: validates, calls :meth:`_fill` on each image (or batch), then restores unmasked pixels."""

    spec: str = "base"
    preserves_unmasked: bool = True

    def inpaint(
        self,
        images: Sequence[np.ndarray],
        masks: Sequence[np.ndarray],
        *,
        seeds: Sequence[int] | None = None,
        contexts: Sequence[dict[str, Any]] | None = None,
    ) -> list[np.ndarray]:
        """Fill ``masks`` (True = replace) in ``images``; ``seeds`` fix per-image randomness."""
        if len(images) != len(masks):
            raise InpaintError(f"{len(images)} images but {len(masks)} masks")
        masks = [np.asarray(m, dtype=bool) for m in masks]
        for i, (img, m) in enumerate(zip(images, masks)):
            _check_pair(i, img, m)
        seeds = list(seeds) if seeds is not None else [0] * len(images)
        contexts = list(contexts) if contexts is not None else [{} for _ in images]
        filled = self._fill_batch(list(images), masks, seeds, contexts)
        if not self.preserves_unmasked:
            return filled
        return [_restore_outside(img, m, f) for img, m, f in zip(images, masks, filled)]

    def _fill_batch(
        self, images: list[np.ndarray], masks: list[np.ndarray], seeds: list[int], contexts: list[dict]
    ) -> list[np.ndarray]:
        return [self._fill(img, m) if m.any() else img for img, m in zip(images, masks)]

    def _fill(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec!r})"


class OpenCVInpainter(Inpainter):
    """``cv2.inpaint`` with Telea (default) or Navier-Stokes."""

    def __init__(self, method: str = "telea", radius: float = 3.0) -> None:
        import cv2  # lazy: heavy optional dependency

        flags = {"telea": cv2.INPAINT_TELEA, "ns": cv2.INPAINT_NS}
        if method not in flags:
            raise ValueError(f"unknown OpenCV inpainting method {method!r}; use 'telea' or 'ns'")
        self.method, self.radius, self._flag = method, float(radius), flags[method]
        self.spec = f"opencv:{method}"

    def _fill(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        import cv2  # lazy: heavy optional dependency

        # cv2.inpaint is local (fast marching, neighbourhood = radius): working on the mask's box plus a
        # margin gives the same pixels as the whole image, much faster on large images.
        r0, c0, r1, c1 = _mask_box(mask, margin=2 * math.ceil(self.radius) + 2)
        out = image.copy()
        roi = np.ascontiguousarray(image[r0:r1, c0:c1])
        m = mask[r0:r1, c0:c1].astype(np.uint8) * 255
        out[r0:r1, c0:c1] = cv2.inpaint(roi, m, self.radius, self._flag)
        return out


class ZeroFill(Inpainter):
    spec = "zero"

    def _fill(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        out = image.copy()
        out[mask] = 0
        return out


class MeanFill(Inpainter):
    """Fill with the per-channel mean colour of the removed region (Kim et al.: "average pixel value")."""

    spec = "mean"

    def _fill(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        out = image.copy()
        out[mask] = np.round(image[mask].astype(np.float64).mean(axis=0)).astype(np.uint8)
        return out


class BlurFill(Inpainter):
    """Replace the region by a Gaussian blur of the image (``sigma`` None: 5 % of the short side)."""

    spec = "blur"

    def __init__(self, sigma: float | None = None, ksize: int = 0) -> None:
        if ksize and ksize % 2 == 0:
            raise ValueError(f"blur ksize must be odd (or 0 = from sigma), got {ksize}")
        self.sigma, self.ksize = sigma, int(ksize)

    def _fill(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        import cv2  # lazy: heavy optional dependency

        sigma = self.sigma if self.sigma is not None else max(1.0, 0.05 * min(image.shape[:2]))
        k = self.ksize or (2 * math.ceil(3 * sigma) + 1)
        # only the mask's box needs blurring; a margin of k//2 keeps the kernel's support inside the crop,
        # and at the image border the crop's reflected border is the image's: same pixels under the mask
        r0, c0, r1, c1 = _mask_box(mask, margin=k // 2)
        out = image.copy()
        blurred = cv2.GaussianBlur(
            np.ascontiguousarray(image[r0:r1, c0:c1]),
            (k, k),
            sigmaX=sigma,
            sigmaY=sigma,
            borderType=cv2.BORDER_REFLECT,
        )
        out[r0:r1, c0:c1] = blurred
        return out


class OracleInpainter(Inpainter):
    """SpuriousShapes oracle: the world redraws the scene without the removed classes (no inpainting)."""

    spec = "oracle"
    preserves_unmasked = False

    def __init__(self, world_dir: str | None = None) -> None:
        self.world_dir = world_dir
        self._world = None

    def _fill_batch(self, images, masks, seeds, contexts):
        if self.world_dir is None:
            raise InpaintError("the oracle inpainter needs world_dir (a SpuriousShapes world directory)")
        if self._world is None:
            self._world = world.load_world(self.world_dir)
        out = []
        for i, ctx in enumerate(contexts):
            missing = {"split", "image_id", "removed_classes"} - set(ctx)
            if missing:
                raise InpaintError(f"oracle: context {i} lacks {sorted(missing)}")
            img = self._world.render_without(ctx["split"], ctx["image_id"], list(ctx["removed_classes"]))
            if img.shape != images[i].shape:
                raise InpaintError(
                    f"oracle: image {ctx['image_id']!r} renders as {img.shape}, file is {images[i].shape}"
                )
            out.append(np.asarray(img, dtype=np.uint8))
        return out


def _restore_outside(image: np.ndarray, mask: np.ndarray, filled: np.ndarray) -> np.ndarray:
    """``image`` with ``filled``'s pixels under ``mask`` (the copy-under-mask runs on the mask's box only)."""
    out = image.copy()
    if mask.any():
        r0, c0, r1, c1 = _mask_box(mask, margin=0)
        box = mask[r0:r1, c0:c1]
        out[r0:r1, c0:c1][box] = filled[r0:r1, c0:c1][box]
    return out


def _mask_box(mask: np.ndarray, margin: int) -> tuple[int, int, int, int]:
    """``(r0, c0, r1, c1)``: the mask's bounding box grown by ``margin`` pixels, clipped to the image."""
    h, w = mask.shape
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    return (
        max(int(rows[0]) - margin, 0),
        max(int(cols[0]) - margin, 0),
        min(int(rows[-1]) + 1 + margin, h),
        min(int(cols[-1]) + 1 + margin, w),
    )


def context_window(mask: np.ndarray, native: int, context: float = 0.5) -> tuple[int, int, int, int]:
    """``(r0, c0, r1, c1)``: a window around the mask's bounding box, at least ``native`` pixels (or the image)
    on each side, widened by ``context`` x the box size on every side, square where the image allows."""
    h, w = mask.shape
    rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
    r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    side = max(round(max(r1 - r0, c1 - c0) * (1 + 2 * context)), native)
    win_h, win_w = min(side, h), min(side, w)

    def place(lo: int, hi: int, size: int, limit: int) -> tuple[int, int]:
        size = max(size, hi - lo)
        start = (lo + hi) // 2 - size // 2
        start = min(max(start, 0), limit - size)
        return start, start + size

    wr0, wr1 = place(r0, r1, win_h, h)
    wc0, wc1 = place(c0, c1, win_w, w)
    return wr0, wc0, wr1, wc1


class DiffusersInpainter(Inpainter):
    """A diffusers inpainting pipeline run on a context window at native resolution, pasted back under the mask.

    The crop (``context`` x the mask box on each side, at least ``resolution`` pixels) is resized to the
    pipeline's native square resolution, inpainted with a per-image seeded generator, resized back, and only
    its masked pixels are pasted into the original. A pipeline's safety checker stays on unless
    ``safety_checker=False``; images it flags are listed in ``last_flagged`` (the generator skips them).
    """

    def __init__(
        self,
        model: str,
        prompt: str = DEFAULT_PROMPT,
        negative_prompt: str | None = DEFAULT_NEGATIVE_PROMPT,
        steps: int = 25,
        strength: float = 1.0,
        guidance_scale: float = 7.5,
        batch_size: int = 4,
        resolution: int | None = None,
        context: float = 0.5,
        device: str | None = None,
        dtype: str | None = None,
        safety_checker: bool = True,
    ) -> None:
        import torch  # lazy: only the diffusers backend needs it
        from diffusers import AutoPipelineForInpainting  # lazy: heavy optional dependency

        self.model, self.prompt, self.negative_prompt = model, prompt, negative_prompt
        self.steps, self.strength, self.guidance_scale = int(steps), float(strength), float(guidance_scale)
        self.batch_size, self.context = max(1, int(batch_size)), float(context)
        self.spec = f"diffusers:{model}"
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if dtype is None:
            torch_dtype = torch.float16 if self.device.startswith("cuda") else torch.float32
        else:
            torch_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[dtype]
        try:
            pipe = AutoPipelineForInpainting.from_pretrained(model, torch_dtype=torch_dtype)
        except (OSError, ValueError) as err:
            raise InpaintError(
                f"cannot load the diffusers inpainting pipeline {model!r} ({err}); pass a Hub id that is "
                "cached/reachable or a local directory written by pipeline.save_pretrained"
            ) from err
        if not safety_checker and getattr(pipe, "safety_checker", None) is not None:
            pipe.safety_checker = None
        self.last_flagged: list[bool] = []  # per image of the last call: the pipeline's safety checker fired
        pipe.set_progress_bar_config(disable=True)
        self.pipe = pipe.to(self.device)
        if resolution is None:
            unet = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
            sample = getattr(unet.config, "sample_size", 64) if unet is not None else 64
            sample = sample[0] if isinstance(sample, (list, tuple)) else sample
            resolution = int(sample) * int(getattr(pipe, "vae_scale_factor", 8))
        self.resolution = int(resolution) // 8 * 8

    def _fill_batch(self, images, masks, seeds, contexts):
        import cv2  # lazy: heavy optional dependency
        import torch  # lazy: only the diffusers backend needs it

        out = list(images)
        self.last_flagged = [False] * len(images)
        todo = [i for i, m in enumerate(masks) if m.any()]
        res = self.resolution
        for start in range(0, len(todo), self.batch_size):
            idx = todo[start : start + self.batch_size]
            windows, crops, crop_masks, gens = [], [], [], []
            for i in idx:
                r0, c0, r1, c1 = context_window(masks[i], res, self.context)
                windows.append((r0, c0, r1, c1))
                crop = cv2.resize(images[i][r0:r1, c0:c1], (res, res), interpolation=cv2.INTER_AREA)
                m = masks[i][r0:r1, c0:c1].astype(np.uint8) * 255
                crops.append(Image.fromarray(crop))
                crop_masks.append(Image.fromarray(cv2.resize(m, (res, res), interpolation=cv2.INTER_NEAREST)))
                gens.append(torch.Generator(device="cpu").manual_seed(int(seeds[i])))
            kwargs: dict[str, Any] = {
                "prompt": [self.prompt] * len(idx),
                "image": crops,
                "mask_image": crop_masks,
                "height": res,
                "width": res,
                "num_inference_steps": self.steps,
                "strength": self.strength,
                "guidance_scale": self.guidance_scale,
                "generator": gens,
                "output_type": "np",
            }
            if self.negative_prompt:
                kwargs["negative_prompt"] = [self.negative_prompt] * len(idx)
            with torch.inference_mode():
                output = self.pipe(**kwargs)
            flags = getattr(output, "nsfw_content_detected", None) or [False] * len(idx)
            for i, flag in zip(idx, flags):
                self.last_flagged[i] = bool(flag)
            for i, (r0, c0, r1, c1), arr in zip(idx, windows, output.images):
                patch = np.clip(np.asarray(arr, dtype=np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)
                patch = cv2.resize(patch, (c1 - c0, r1 - r0), interpolation=cv2.INTER_CUBIC)
                filled = images[i].copy()
                filled[r0:r1, c0:c1] = patch
                out[i] = filled
        return out


def parse_spec(spec: str) -> tuple[str, str]:
    """``"diffusers:runwayml/x"`` -> ``("diffusers", "runwayml/x")``; ``"opencv"`` -> ``("opencv", "")``."""
    kind, _, arg = spec.partition(":")
    return kind.strip().lower(), arg.strip()


def get_inpainter(spec: str, **options: Any) -> Inpainter:
    """Build an inpainter from a spec string (see the module docstring) and backend options (checked
    first: an unknown option or a value out of range is a ValueError naming it)."""
    check_inpainter_options(spec, options)
    kind, arg = parse_spec(spec)
    if kind == "opencv":
        method = options.pop("method", None)
        if arg and method and method != arg:
            raise ValueError(
                f"inpainter {spec!r} and option method={method!r} disagree; give the method once"
            )
        return OpenCVInpainter(method=arg or method or "telea", **options)
    if kind in ("zero", "mean") and not arg:
        if options:
            raise ValueError(f"the {kind!r} fill takes no options, got {sorted(options)}")
        return ZeroFill() if kind == "zero" else MeanFill()
    if kind == "blur" and not arg:
        return BlurFill(**options)
    if kind == "oracle":
        return OracleInpainter(world_dir=arg or options.pop("world_dir", None), **options)
    if kind == "diffusers":
        if not arg:
            raise ValueError("diffusers needs a model: 'diffusers:<hub id or local dir>'")
        return DiffusersInpainter(arg, **options)
    raise ValueError(
        f"unknown inpainter {spec!r}; use opencv[:telea|:ns], zero, mean, blur, oracle or diffusers:<id or dir>"
    )
