"""GradCAM for the vision towers of CLIP (ViT and modified ResNet) and BLIP (AIoU over a dataset: :mod:`.aiou`).

**Where the CAM is taken.** The pooled image embedding reads only the CLS token of the last block's
output (``post_layernorm(last_hidden_state[:, 0])``; LayerNorm acts per token), so the *patch* tokens of
the last block's output receive exactly zero gradient. The default target is therefore the patch-token
grid at the **input** of the last encoder layer's first LayerNorm
(``vision_model.encoder.layers[-1].layer_norm1``, the same path in CLIP and BLIP): the residual stream
entering the last block, where the CLS token still attends to every patch.

**Named layers** (``target_layer=`` a name, ``--target-layer`` in the CLI; :data:`GRADCAM_LAYERS`):

* ``"block_input"`` (**default**): the input of that LayerNorm, i.e. the raw residual stream;
* ``"ln_output"``: its output (the normalised tokens the attention reads), the convention of
  pytorch-grad-cam's CLIP example (``target_layers=[model.vision_model.encoder.layers[-1].layer_norm1]``
  with a forward hook).

The LayerNorm removes each token's mean and scale: on real CLIP a few huge residual-stream channels
dominate ``sum_k w_k A_k`` at the block input and are normalised away at its output, so AIoU can differ.
The default stays ``"block_input"`` (earlier results keep their meaning); the classification runner
reports both (``results["aiou"]["by_layer"]``). SigLIP (no CLS token) defaults to its adapter's
``gradcam_layer``, the attention-pool head's input; SigLIP 2 runs on the image resized (no crop) to the
square grid of ``max_num_patches`` patches (``adapter.gradcam_image_processor``), masks resized alike.

**Map.** For class c the score is ``scale * cos(image embedding, class text embedding)`` (templates
averaged, renormalised); GradCAM weights are the spatial mean of the gradients of that score w.r.t. the
grid activations; ``map = ReLU(sum_k w_k A_k)``; per image shift by the minimum and divide by
the maximum (flat maps become zero) so maps lie in [0, 1]; then resize bilinearly to the network input size.

**CNN towers** (``ClipResNetModel``, CLIP RN50 / RN101 / ...): the classic GradCAM on the output of the
last bottleneck stage, ``vision_model.layer4`` (Yang et al.'s ``visual.layer4``; the grid the attention
pool reads, 7 x 7 at 224 px), with pytorch-grad-cam's convention: weights = spatial mean of the gradients
per channel, ``map = ReLU(sum_k w_k A_k)``, then the same normalisation and resize.

Targets are small callables, as in pytorch-grad-cam: a target maps the (B, d) normalised image
embeddings to (B,) scores.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from hf_spurious.images import load_rgb
from hf_spurious.losses import class_prototypes
from hf_spurious.text import TEMPLATES
from hf_spurious.text.templates import check_template

if TYPE_CHECKING:
    from hf_spurious.models.adapters import VisionLanguageAdapter

__all__ = [
    "DEFAULT_GRADCAM_LAYER",
    "GRADCAM_LAYERS",
    "ClassSimilarityTarget",
    "ViTGradCAM",
    "align_masks",
    "class_text_embeddings",
    "default_target_layer",
    "gradcam_layer_name",
    "grid_cams",
    "is_cnn_tower",
    "load_mask",
    "logit_scale_value",
    "normalize_maps",
    "pixel_values_for",
    "spatial_cams",
    "unnormalize",
]

Target = Callable[[torch.Tensor], torch.Tensor]

#: Named GradCAM layers of a ViT vision tower (CLIP, BLIP): name -> (module path from the model, hook).
GRADCAM_LAYERS: dict[str, tuple[str, Literal["input", "output"]]] = {
    "block_input": ("vision_model.encoder.layers.-1.layer_norm1", "input"),
    "ln_output": ("vision_model.encoder.layers.-1.layer_norm1", "output"),
}
DEFAULT_GRADCAM_LAYER = "block_input"


# --------------------------------------------------------------------------------------------- targets


class ClassSimilarityTarget:
    """Score = ``scale * cos(image_embedding, text_embedding)`` for one class (zero-shot CLIP logit)."""

    def __init__(self, text_embedding: torch.Tensor, scale: float = 100.0) -> None:
        if text_embedding.ndim != 1:
            raise ValueError(
                f"a class target needs one (d,) text embedding, got shape {tuple(text_embedding.shape)}"
            )
        self.text_embedding = F.normalize(text_embedding.detach().float(), dim=0)
        self.scale = float(scale)

    def __call__(self, image_embeds: torch.Tensor) -> torch.Tensor:
        image_embeds = F.normalize(image_embeds.float(), dim=-1)
        return self.scale * (image_embeds @ self.text_embedding.to(image_embeds.device))


def class_text_embeddings(
    adapter: VisionLanguageAdapter,
    class_names: Sequence[str],
    templates: Sequence[str] | None = None,
    *,
    batch_size: int = 256,
) -> torch.Tensor:
    """(C, d) class prototypes: each class's template embeddings averaged, then L2-renormalised.

    ``templates`` are format strings with one ``{}`` (default: the 80 templates of ``hf_spurious.text``).
    """
    templates = list(TEMPLATES if templates is None else templates)
    if not templates or not class_names:
        raise ValueError("class prompts need at least one class name and one template")
    for i, t in enumerate(templates):
        check_template(t, f"template {i}")
    texts = [t.format(c) for c in class_names for t in templates]
    emb = np.asarray(adapter.embed_texts(texts, batch_size=batch_size), dtype=np.float32)
    if not np.isfinite(emb).all():
        raise ValueError("class prompt embeddings contain NaN; check the model and the templates")
    per_template = torch.from_numpy(emb.reshape(len(class_names), len(templates), -1)).transpose(0, 1)
    return class_prototypes(per_template)  # (T, C, D) -> (C, D), the same weights the losses train


def logit_scale_value(adapter: VisionLanguageAdapter, default: float = 100.0) -> float:
    """``exp(adapter.logit_scale)`` (CLIP's log-parameterised temperature), or ``default`` without one."""
    scale = getattr(adapter, "logit_scale", None)
    if scale is None:
        return default
    return float(scale.detach().exp()) if torch.is_tensor(scale) else float(np.exp(scale))


# --------------------------------------------------------------------------------------------- maps


def normalize_maps(cams: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Per map: shift by the minimum, divide by the maximum; then bilinear resize to ``size``.

    ``cams`` is (..., h, w); the result lies in [0, 1], a flat map becomes all zeros. Decision: the
    reference code divides by (maximum + 1e-7); that constant only guards against division by zero but
    also flattens maps whose raw magnitude is near 1e-7 (small or freshly initialised models), so a flat
    map is detected exactly instead and the normalisation is scale-invariant.
    """
    shape = cams.shape
    flat = cams.reshape(-1, shape[-2] * shape[-1]).float()
    flat = flat - flat.min(dim=1, keepdim=True).values
    peak = flat.max(dim=1, keepdim=True).values
    flat = flat / torch.where(peak > 0, peak, torch.ones_like(peak))
    maps = flat.reshape(-1, 1, shape[-2], shape[-1])
    if size is not None and tuple(size) != tuple(shape[-2:]):
        maps = F.interpolate(maps, size=tuple(size), mode="bilinear", align_corners=False).clamp_(0.0, 1.0)
    return maps.reshape(*shape[:-2], *maps.shape[-2:])


def grid_cams(
    activations: torch.Tensor, gradients: torch.Tensor, grid: tuple[int, int], cls_tokens: int = 1
) -> torch.Tensor:
    """GradCAM on ViT tokens: (B, cls_tokens + h*w, D) activations and gradients -> (B, h, w) ReLU maps.

    The leading ``cls_tokens`` tokens (CLIP, BLIP: the CLS token; SigLIP: none) are dropped; weights are
    the mean gradient over the h*w patch tokens.
    """
    h, w = grid
    if activations.shape != gradients.shape:
        raise ValueError(
            f"activations {tuple(activations.shape)} and gradients {tuple(gradients.shape)} differ"
        )
    if activations.shape[1] != cls_tokens + h * w:
        lead = f"{cls_tokens} leading token(s) + " if cls_tokens else ""
        raise ValueError(
            f"{activations.shape[1]} tokens do not form {lead}a {h}x{w} patch grid; "
            "is the target layer inside the vision transformer?"
        )
    acts, grads = activations[:, cls_tokens:].float(), gradients[:, cls_tokens:].float()
    weights = grads.mean(dim=1)  # (B, D)
    cam = torch.relu(torch.einsum("bnd,bd->bn", acts, weights))
    return cam.reshape(-1, h, w)


def spatial_cams(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    """Classic GradCAM on a CNN feature map: (B, K, h, w) activations and gradients -> (B, h, w) ReLU maps.

    Channel weights are the mean gradient over the h*w positions (pytorch-grad-cam's ``GradCAM``).
    """
    if activations.shape != gradients.shape or activations.ndim != 4:
        raise ValueError(
            f"activations {tuple(activations.shape)} and gradients {tuple(gradients.shape)} must be equal (B, K, h, w)"
        )
    weights = gradients.float().mean(dim=(2, 3))  # (B, K)
    return torch.relu(torch.einsum("bkhw,bk->bhw", activations.float(), weights))


def is_cnn_tower(model: torch.nn.Module) -> bool:
    """Whether the model's vision tower is a CNN with stages (CLIP's modified ResNet: ``vision_model.layer4``)."""
    return hasattr(getattr(model, "vision_model", None), "layer4")


def default_target_layer(model: torch.nn.Module) -> torch.nn.Module:
    """CNN towers: the last bottleneck stage ``vision_model.layer4``; ViTs (CLIP and BLIP): the first
    LayerNorm of the last vision encoder layer."""
    vision = getattr(model, "vision_model", None)
    if is_cnn_tower(model):
        return vision.layer4  # type: ignore[union-attr]
    try:
        return vision.encoder.layers[-1].layer_norm1  # type: ignore[union-attr]
    except AttributeError as err:
        raise ValueError(
            f"{type(model).__name__} has no vision_model.encoder.layers[-1].layer_norm1; pass target_layer= explicitly"
        ) from err


def gradcam_layer_name(model: torch.nn.Module, layer: torch.nn.Module | str | None) -> str:
    """A label for a GradCAM layer choice: the name given, the CNN default ``"layer4"`` or
    :data:`DEFAULT_GRADCAM_LAYER` for None, ``"custom"`` for a module object."""
    if isinstance(layer, str):
        return layer
    if layer is None:
        return "layer4" if is_cnn_tower(model) else DEFAULT_GRADCAM_LAYER
    return "custom"


def _resolve_layer(model: torch.nn.Module, layer: torch.nn.Module | str | None) -> torch.nn.Module:
    if layer is None:
        return default_target_layer(model)
    if isinstance(layer, torch.nn.Module):
        return layer
    module: Any = model
    for part in layer.split("."):
        try:
            module = module[int(part)] if part.lstrip("-").isdigit() else getattr(module, part)
        except (AttributeError, IndexError, TypeError) as err:
            raise ValueError(
                f"target layer {layer!r}: no submodule {part!r} in {type(module).__name__}"
            ) from err
    return module


class ViTGradCAM:
    """GradCAM for an adapter's vision tower: ViT tokens, or a CNN feature map (CLIP's modified ResNet).

    Args:
        adapter: exposes ``.model`` (with ``vision_model``), ``.processor`` and a differentiable
            ``.encode_images(pixel_values)``.
        target_layer: a name of :data:`GRADCAM_LAYERS` (``"block_input"``, ``"ln_output"``; ViTs only),
            a module, a dotted path from ``adapter.model`` (``"vision_model.encoder.layers.-1"``), or None
            for the default (``"block_input"``: the input of the last layer's ``layer_norm1``).
        hook: take the module's ``"input"`` or ``"output"``; None (default) = the named layer's hook,
            else ``"input"`` for a ViT, ``"output"`` for a CNN tower (default layer ``vision_model.layer4``).
    """

    def __init__(
        self,
        adapter: VisionLanguageAdapter,
        target_layer: torch.nn.Module | str | None = None,
        hook: Literal["input", "output"] | None = None,
    ) -> None:
        self.adapter = adapter
        self.model = getattr(adapter, "base_model", None) or adapter.model
        self.cnn = is_cnn_tower(self.model)
        self.cls_tokens = int(getattr(adapter, "cls_tokens", 1))
        if target_layer is None and isinstance(getattr(adapter, "gradcam_layer", None), str):
            target_layer = adapter.gradcam_layer  # e.g. SigLIP: the input of the attention-pool head
        self.layer_name = gradcam_layer_name(self.model, target_layer)
        if isinstance(target_layer, str) and target_layer in GRADCAM_LAYERS:
            if self.cnn:
                raise ValueError(
                    f"GradCAM layer {target_layer!r} names a ViT layer; this model's vision tower is a "
                    "CNN: leave the layer unset (vision_model.layer4) or pass a module path"
                )
            target_layer, named_hook = GRADCAM_LAYERS[target_layer]
            hook = hook or named_hook
        hook = hook or ("output" if self.cnn else "input")
        if hook not in ("input", "output"):
            raise ValueError(f"hook must be 'input' or 'output', got {hook!r}")
        self.layer = _resolve_layer(self.model, target_layer)
        self.hook = hook
        vision_config = getattr(self.model.config, "vision_config", self.model.config)
        self.patch_size = None if self.cnn else int(vision_config.patch_size)

    def activations_and_gradients(
        self, pixel_values: torch.Tensor, targets: Sequence[Target]
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Tokens at the target layer (B, T, D) and their gradient for each target's summed score."""
        captured: list[torch.Tensor] = []

        def keep(tensor: Any) -> None:
            t = tensor[0] if isinstance(tensor, (tuple, list)) else tensor
            captured.append(t)

        if self.hook == "input":
            handle = self.layer.register_forward_pre_hook(lambda _m, args: keep(args[0]))
        else:
            handle = self.layer.register_forward_hook(lambda _m, _a, out: keep(out))
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.enable_grad():
                pv = pixel_values.detach().clone().requires_grad_(True)
                embeds = self.adapter.encode_images(pv)
                if not captured:
                    raise RuntimeError(
                        "the target layer was not run by encode_images; choose a vision-tower layer"
                    )
                acts = captured[-1]
                grads = []
                for i, target in enumerate(targets):
                    score = target(embeds)
                    if score.ndim != 1 or score.shape[0] != embeds.shape[0]:
                        raise ValueError(
                            f"target {i} returned shape {tuple(score.shape)}, expected ({embeds.shape[0]},)"
                        )
                    (g,) = torch.autograd.grad(
                        score.sum(), acts, retain_graph=i < len(targets) - 1, allow_unused=True
                    )
                    grads.append(torch.zeros_like(acts) if g is None else g.detach())
        finally:
            handle.remove()
            self.model.train(was_training)
        return acts.detach(), grads

    def __call__(
        self, pixel_values: torch.Tensor, targets: Sequence[Target], size: tuple[int, int] | None = None
    ) -> torch.Tensor:
        """(B, len(targets), H, W) maps in [0, 1]; H, W = ``size`` or the network input size."""
        if pixel_values.ndim != 4:
            raise ValueError(
                f"pixel_values must be (B, 3, H, W), got {tuple(pixel_values.shape)} (SigLIP 2: use "
                "pixel_values_for(adapter, images), which resizes to the square patch grid)"
            )
        if not targets:
            raise ValueError("GradCAM needs at least one target (one class score callable)")
        acts, grads = self.activations_and_gradients(pixel_values, targets)
        if acts.ndim == 4:  # a CNN feature map (B, K, h, w)
            cams = torch.stack([spatial_cams(acts, g) for g in grads], dim=1)
        else:
            patch = self.patch_size or 1
            grid = (pixel_values.shape[-2] // patch, pixel_values.shape[-1] // patch)
            cams = torch.stack([grid_cams(acts, g, grid, self.cls_tokens) for g in grads], dim=1)
        return normalize_maps(cams, size or tuple(pixel_values.shape[-2:]))


# --------------------------------------------------------------------------------------------- data


def _image_processor(adapter: VisionLanguageAdapter) -> Any:
    square = getattr(adapter, "gradcam_image_processor", None)  # SigLIP 2 NaFlex: image-shaped pixels
    proc = adapter.processor
    return square if square is not None else getattr(proc, "image_processor", proc)


def pixel_values_for(adapter: VisionLanguageAdapter, images: Sequence[Any]) -> torch.Tensor:
    """Preprocess PIL images / HxWx3 uint8 arrays with the adapter's image processor."""
    pil = [
        Image.fromarray(np.asarray(im)) if not isinstance(im, Image.Image) else im.convert("RGB")
        for im in images
    ]
    return _image_processor(adapter)(images=pil, return_tensors="pt")["pixel_values"]


def load_mask(path: str | os.PathLike, *, binarize: bool = True) -> np.ndarray:
    """A mask image as float32 (H, W) in [0, 1]; grey levels binarised at 0.5 unless ``binarize=False``."""
    arr = np.asarray(load_rgb(path, where="mask").convert("L"), dtype=np.float32) / 255.0
    return (arr >= 0.5).astype(np.float32) if binarize else arr


def align_masks(
    adapter: VisionLanguageAdapter, masks: Sequence[np.ndarray], *, binarize: bool = True
) -> torch.Tensor:
    """Send (H, W) masks in [0, 1] through the image's own resize / crop (the adapter's image processor, on
    a grey RGB image, normalisation undone), giving (B, H', W') in [0, 1] aligned with the pixel values."""
    ip = _image_processor(adapter)
    rgb = []
    for i, m in enumerate(masks):
        m = np.asarray(m, dtype=np.float32)
        if m.ndim != 2:
            raise ValueError(f"mask {i} must be (H, W), got shape {m.shape}")
        if m.size and (m.min() < 0 or m.max() > 1):
            raise ValueError(f"mask {i} has values outside [0, 1]")
        rgb.append(np.repeat((m * 255).round().astype(np.uint8)[..., None], 3, axis=2))
    pv = pixel_values_for(adapter, rgb)[:, 0].cpu()
    norm = getattr(ip, "do_normalize", False)
    mean = float(np.atleast_1d(getattr(ip, "image_mean", [0.0]))[0]) if norm else 0.0
    std = float(np.atleast_1d(getattr(ip, "image_std", [1.0]))[0]) if norm else 1.0
    out = (pv * std + mean).clamp(0.0, 1.0)
    return (out >= 0.5).float() if binarize else out


def unnormalize(adapter: VisionLanguageAdapter, pixel_values: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) pixel values back to (B, H, W, 3) uint8 images, for overlays."""
    ip = _image_processor(adapter)
    mean = torch.tensor(getattr(ip, "image_mean", [0.0, 0.0, 0.0])).view(1, 3, 1, 1)
    std = torch.tensor(getattr(ip, "image_std", [1.0, 1.0, 1.0])).view(1, 3, 1, 1)
    x = pixel_values.detach().cpu()
    x = x * std + mean if getattr(ip, "do_normalize", False) else x
    return (x.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()
