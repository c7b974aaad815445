"""The protocol every caller relies on: :class:`VisionLanguageAdapter`, with its shared logic.

The pipeline of every adapter is ``pixel_values -> image_features (pooled, pre-projection) ->
project_images -> L2-normalise`` (and the same for text), so cached pooled features can be trained
through the projections alone. The adapter is a ``torch.nn.Module`` whose ``forward`` returns the
normalised embeddings, so it can also be handed to a ``Trainer`` / DDP wrapper directly. Subclasses
(:mod:`.clip`, :mod:`.blip`) only say where the encoders, projections and scale live.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from hf_spurious.models.adapters.batching import batches, eval_mode, progress_bar

__all__ = ["RetrievalLoss", "UnsupportedModelError", "VisionLanguageAdapter", "peft_base"]


class UnsupportedModelError(TypeError, ValueError):
    """The model is of no supported family (see :mod:`hf_spurious.models.registry`).

    A ``ValueError`` too, so the CLI reports it as a user error (two lines, exit code 2)."""


class RetrievalLoss(NamedTuple):
    """BLIP retrieval-mode loss: ``loss = itc + itm`` (all scalars)."""

    loss: torch.Tensor
    itc: torch.Tensor
    itm: torch.Tensor


def peft_base(model: nn.Module) -> nn.Module:
    """The underlying transformers model of a peft-wrapped model (or the model itself)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


# Keys that differ between an in-memory model and the same model reloaded (weights' dtypes are hashed anyway).
_UNSTABLE_CONFIG_KEYS = frozenset(
    {"transformers_version", "name_or_path", "architectures", "dtype", "torch_dtype"}
)


def _stable_config_json(model: nn.Module) -> str:
    cfg = model.config.to_dict() if hasattr(model, "config") else {}

    def clean(obj: Any) -> Any:
        if isinstance(obj, dict):
            return {
                k: clean(v)
                for k, v in obj.items()
                if not str(k).startswith("_") and k not in _UNSTABLE_CONFIG_KEYS
            }
        if isinstance(obj, (list, tuple)):
            return [clean(v) for v in obj]
        return obj

    return json.dumps(clean(cfg), sort_keys=True, default=str)


class VisionLanguageAdapter(nn.Module):
    """Common interface; subclasses say where the encoders, projections and scale live.

    ``model`` is the wrapped model (possibly a peft ``PeftModel`` after LoRA freezing; the adapter's
    methods then run through the LoRA-injected base model). ``processor`` is the model's processor
    (needed only by :meth:`preprocess_images`, :meth:`tokenize` and the ``embed_*`` helpers).
    Shapes: B = batch, D = :attr:`embedding_dim`, H = a tower's hidden size, N = number of inputs.
    """

    model_kind: str = "base"
    """Short name of the model family (``"clip"``, ``"blip-retrieval"``)."""
    has_itm: bool = False
    """Whether :meth:`itm_scores` / :meth:`itm_loss` work (an image-text matching head)."""
    projection_modules: tuple[str, ...] = ()
    """Modules (dotted paths in the base model) that project pooled features into the joint space."""
    scale_parameter: str = ""
    """Name of the base model's logit-scale (or temperature) parameter."""
    bias_parameter: str = ""
    """Name of the base model's logit-bias parameter (SigLIP's ``logit_bias``), empty when it has none."""
    retrieval_loss: str = "clip"
    """The retrieval loss the family trains with: ``"clip"`` (symmetric InfoNCE), ``"sigmoid"`` (SigLIP's
    pairwise sigmoid loss with :meth:`logit_bias`) or ``"triplet"`` (VSE++'s hinge loss)."""

    def __init__(self, model: nn.Module, processor: Any = None) -> None:
        super().__init__()
        self.model = model
        self.processor = processor
        self.training = model.training

    # --- subclass hooks ------------------------------------------------------------------------
    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Pooled image features before the projection: (B, 3, S, S) -> (B, H_vision)."""
        raise NotImplementedError

    def project_images(self, features: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """Pooled image features (B, H_vision) -> joint space (B, D), optionally L2-normalised."""
        raise NotImplementedError

    def text_features(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Pooled text features before the projection: ids (B, L) -> (B, H_text)."""
        raise NotImplementedError

    def project_texts(self, features: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """Pooled text features (B, H_text) -> joint space (B, D), optionally L2-normalised."""
        raise NotImplementedError

    @property
    def logit_scale(self) -> torch.Tensor:
        """Scalar log of the multiplicative logit scale: ``logits = logit_scale.exp() * cos``."""
        raise NotImplementedError

    @property
    def embedding_dim(self) -> int:
        """Size D of the joint embedding space."""
        raise NotImplementedError

    def logit_bias(self) -> torch.Tensor | None:
        """Scalar additive logit bias (``logits = logit_scale.exp() * cos + bias``), None when the model has none."""
        if not self.bias_parameter:
            return None
        return self.base_model.get_parameter(self.bias_parameter)

    # --- vision-token layout (GradCAM) ----------------------------------------------------------
    cls_tokens: int = 1
    """Tokens before the patch grid in the ViT's token sequence (CLIP / BLIP: the CLS token; SigLIP: 0)."""
    gradcam_layer: str | None = None
    """Dotted path (from the base model) of the module whose *input* GradCAM reads; None = the evaluation's
    default (the last encoder layer's ``layer_norm1``)."""

    def patch_grids(self, pixel_values: torch.Tensor) -> list[tuple[int, int]]:
        """Each image's (h, w) patch grid: tokens ``cls_tokens : cls_tokens + h*w`` of its sequence, row-major."""
        patch = getattr(self.base_model.config.vision_config, "patch_size", None)
        if patch is None:
            raise ValueError(f"{type(self.base_model).__name__}'s vision tower has no patch grid (not a ViT)")
        h, w = int(pixel_values.shape[-2]) // int(patch), int(pixel_values.shape[-1]) // int(patch)
        return [(h, w)] * int(pixel_values.shape[0])

    def token_grids(self, tokens: torch.Tensor, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        """Per image, its patch tokens (B, T, ...) reshaped to its grid (h, w, ...); CLS and padding dropped."""
        out = []
        for i, (h, w) in enumerate(self.patch_grids(pixel_values)):
            start = self.cls_tokens
            if tokens.shape[1] < start + h * w:
                raise ValueError(
                    f"{tokens.shape[1]} tokens cannot hold {start} leading token(s) and a {h}x{w} patch grid; "
                    "is the layer inside the vision transformer?"
                )
            out.append(tokens[i, start : start + h * w].reshape(h, w, *tokens.shape[2:]))
        return out

    def network_images(self, pixel_values: torch.Tensor) -> list[torch.Tensor]:
        """Each image as the network sees it, (3, H, W) (still normalised), for overlays and mask alignment."""
        return list(pixel_values)

    def itm_scores(
        self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Probability that each (image_i, text_i) pair matches (BLIP's ITM head), shape (B,)."""
        raise NotImplementedError(f"{type(self.base_model).__name__} has no image-text matching head")

    def itm_loss(self, *args: Any, **kwargs: Any) -> RetrievalLoss:
        """BLIP retrieval-mode ITC + ITM loss, a :class:`RetrievalLoss` of scalars."""
        raise NotImplementedError(f"{type(self.base_model).__name__} has no image-text matching head")

    # --- shared ------------------------------------------------------------------------------
    def projection_parameter_names(self) -> tuple[str, ...]:
        """Names (relative to the base model) of the projection and scale parameters (no LoRA weights)."""
        heads = tuple(h + "." for h in self.projection_modules)  # module paths, dotted for nested heads
        names = [n for n, _ in self.base_model.named_parameters() if n.startswith(heads) and "lora_" not in n]
        extra = (self.bias_parameter,) if self.bias_parameter else ()
        return (*names, self.scale_parameter, *extra)

    def projection_parameters(self) -> dict[str, nn.Parameter]:
        """``{name: parameter}`` of the visual and text projections and the logit scale / temperature."""
        params = dict(self.base_model.named_parameters())
        missing = [n for n in self.projection_parameter_names() if n not in params]
        if missing:
            raise KeyError(f"{type(self.base_model).__name__} has no parameters {missing}")
        return {n: params[n] for n in self.projection_parameter_names()}

    @property
    def base_model(self) -> nn.Module:
        """The transformers model (unwrapped from peft when LoRA is applied)."""
        return peft_base(self.model)

    @property
    def device(self) -> torch.device:
        """Device of the model's (first) parameters."""
        return next(self.base_model.parameters()).device

    @property
    def max_text_length(self) -> int:
        """Longest token sequence the text tower accepts (tokenizer and position embeddings)."""
        positions = int(self.base_model.config.text_config.max_position_embeddings)
        tok = getattr(self.processor, "tokenizer", None)
        tok_max = getattr(tok, "model_max_length", positions) or positions
        return int(min(positions, tok_max))

    @property
    def temperature(self) -> torch.Tensor:
        """Scalar ``1 / logit_scale.exp()`` (BLIP's ``temp``, CLIP's ``1/exp(logit_scale)``)."""
        return torch.exp(-self.logit_scale)

    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """L2-normalised joint-space image embeddings (B, D) (equal to CLIP's ``image_embeds``)."""
        return self.project_images(self.image_features(pixel_values), normalize=True)

    def encode_texts(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """L2-normalised joint-space text embeddings (B, D) (equal to CLIP's ``text_embeds``)."""
        return self.project_texts(self.text_features(input_ids, attention_mask), normalize=True)

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """``{"logit_scale": scalar (log), "image_embeds": (B, D), "text_embeds": (B, D)}`` for given inputs."""
        out: dict[str, torch.Tensor] = {"logit_scale": self.logit_scale}
        if pixel_values is not None:
            out["image_embeds"] = self.encode_images(pixel_values)
        if input_ids is not None:
            out["text_embeds"] = self.encode_texts(input_ids, attention_mask)
        return out

    # --- preprocessing and batched embedding ------------------------------------------------------
    def _require_processor(self, what: str) -> Any:
        if self.processor is None:
            raise ValueError(
                f"{what} needs a processor: pass processor= to load_adapter (or load from a checkpoint "
                "folder or hub id that contains one)"
            )
        return self.processor

    def preprocess_images(self, images: Sequence[Any]) -> torch.Tensor:
        """Images (PIL / numpy HxWx3) -> ``pixel_values`` (N, 3, S, S) on the model's device."""
        proc = self._require_processor("preprocess_images")
        image_processor = getattr(proc, "image_processor", proc)
        pixel_values = image_processor(images=list(images), return_tensors="pt")["pixel_values"]
        return pixel_values.to(self.device)

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Texts -> ``{"input_ids", "attention_mask"}``, each (N, L) padded and truncated, on the model's device."""
        proc = self._require_processor("tokenize")
        tok = getattr(proc, "tokenizer", proc)
        bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
        if bad:
            raise TypeError(f"tokenize expects strings; item {bad[0]} is {texts[bad[0]]!r}")
        enc = tok(
            list(texts), padding=True, truncation=True, max_length=self.max_text_length, return_tensors="pt"
        )
        return {
            "input_ids": enc["input_ids"].to(self.device),
            "attention_mask": enc["attention_mask"].to(self.device),
        }

    @torch.no_grad()
    def _map_batches(
        self,
        items: Sequence[Any],
        batch_size: int,
        fn: Callable[[Sequence[Any]], torch.Tensor],
        width: int,
        desc: str,
        progress: bool,
    ) -> np.ndarray:
        items = list(items)
        chunks = []
        with eval_mode(self):
            total = math.ceil(len(items) / batch_size) if items else 0
            for batch in progress_bar(batches(items, batch_size), total, desc, progress):
                chunks.append(fn(batch).float().cpu())
        if not chunks:
            return np.zeros((0, width), dtype=np.float32)
        return torch.cat(chunks).numpy().astype(np.float32, copy=False)

    def _image_fn(
        self, encode: Callable[[torch.Tensor], torch.Tensor]
    ) -> Callable[[Sequence[Any]], torch.Tensor]:
        def run(batch: Sequence[Any]) -> torch.Tensor:
            return encode(self.preprocess_images(batch))

        return run

    def _text_fn(self, encode: Callable[..., torch.Tensor]) -> Callable[[Sequence[str]], torch.Tensor]:
        def run(batch: Sequence[str]) -> torch.Tensor:
            enc = self.tokenize(batch)
            return encode(enc["input_ids"], enc["attention_mask"])

        return run

    def embed_images(self, images: Sequence[Any], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Normalised image embeddings as float32 numpy (N, D); no grad, eval mode, processor inside."""
        fn = self._image_fn(self.encode_images)
        return self._map_batches(images, batch_size, fn, self.embedding_dim, "embed images", progress)

    def embed_texts(self, texts: Sequence[str], batch_size: int = 256, progress: bool = False) -> np.ndarray:
        """Normalised text embeddings as float32 numpy (N, D); no grad, eval mode, tokenizer inside."""
        fn = self._text_fn(self.encode_texts)
        return self._map_batches(texts, batch_size, fn, self.embedding_dim, "embed texts", progress)

    def embed_image_features(
        self, images: Sequence[Any], batch_size: int = 64, progress: bool = False
    ) -> np.ndarray:
        """Pooled pre-projection image features (for feature caches with frozen encoders), float32 (N, H)."""
        fn = self._image_fn(self.image_features)
        width = int(self.base_model.config.vision_config.hidden_size)
        return self._map_batches(images, batch_size, fn, width, "image features", progress)

    def embed_text_features(
        self, texts: Sequence[str], batch_size: int = 256, progress: bool = False
    ) -> np.ndarray:
        """Pooled pre-projection text features (for feature caches with frozen encoders), float32 (N, H)."""
        width = int(self.base_model.config.text_config.hidden_size)
        return self._map_batches(
            texts, batch_size, self._text_fn(self.text_features), width, "text features", progress
        )

    # --- identity and saving ----------------------------------------------------------------------
    @property
    def fingerprint(self) -> str:
        """Stable 32-character hex string from the adapter kind, config, processor settings and every weight.

        Changes whenever a weight changes (training, LoRA) or preprocessing changes; use it to key
        embedding caches. Hashes all weights, so it costs one pass over the parameters.
        """
        h = hashlib.sha256()
        h.update(self.model_kind.encode())
        h.update(_stable_config_json(self.base_model).encode())
        if self.processor is not None:
            image_processor = getattr(self.processor, "image_processor", None)
            if image_processor is not None:
                h.update(json.dumps(image_processor.to_dict(), sort_keys=True, default=str).encode())
            tok = getattr(self.processor, "tokenizer", None)
            backend = getattr(tok, "backend_tokenizer", None)
            if backend is not None:  # drop the call-time padding/truncation state the tokenizer stores
                spec = {
                    k: v
                    for k, v in json.loads(backend.to_str()).items()
                    if k not in ("padding", "truncation")
                }
                h.update(json.dumps(spec, sort_keys=True).encode())
        for name, tensor in sorted(self.base_model.state_dict().items()):
            t = tensor.detach().cpu().contiguous()
            h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        return h.hexdigest()[:32]

    def save_pretrained(self, save_directory: str | Path, merge_lora: bool = True, **kwargs: Any) -> Path:
        """Save the model (LoRA merged into a plain checkpoint by default) and processor; return the folder.

        With ``merge_lora=False`` a peft-wrapped model saves only its adapter weights (peft's format).
        """
        out = Path(save_directory)
        out.mkdir(parents=True, exist_ok=True)
        model = self.model
        if merge_lora and model is not self.base_model and hasattr(model, "merge_and_unload"):
            model = copy.deepcopy(model).merge_and_unload()
        model.save_pretrained(out, **kwargs)
        if self.processor is not None:
            self.processor.save_pretrained(out)
        return out
