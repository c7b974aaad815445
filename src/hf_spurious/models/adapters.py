"""One interface over CLIP-style and BLIP-retrieval models: encoders, projections, logit scale, ITM.

``load_adapter(model_or_id_or_dir)`` returns a :class:`VisionLanguageAdapter`:

* :class:`ClipAdapter` for ``CLIPModel`` (and any model with CLIP's shape: ``vision_model``,
  ``text_model``, ``visual_projection``, ``text_projection``, ``logit_scale``);
* :class:`BlipRetrievalAdapter` for ``BlipForImageTextRetrieval`` (and anything with its shape:
  ``vision_model``, ``text_encoder``, ``vision_proj``, ``text_proj``, ``itm_head``).

The pipeline of every adapter is ``pixel_values -> image_features (pooled, pre-projection) ->
project_images -> L2-normalise`` (and the same for text), so cached pooled features can be trained
through the projections alone. The adapter is a ``torch.nn.Module`` whose ``forward`` returns the
normalised embeddings, so it can also be handed to a ``Trainer`` / DDP wrapper directly.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "BlipRetrievalAdapter",
    "ClipAdapter",
    "RetrievalLoss",
    "UnsupportedModelError",
    "VisionLanguageAdapter",
    "load_adapter",
]

BLIP_TEMP_KEY = "temp"
"""Name of the ITC temperature parameter the BLIP adapter registers on the model (BLIP's own name)."""
BLIP_TEMP_RANGE = (0.001, 0.5)
"""BLIP clamps its temperature to this range during training (``temp.clamp_(0.001, 0.5)``)."""


class UnsupportedModelError(TypeError):
    """The model is neither CLIP- nor BLIP-retrieval-shaped."""


class RetrievalLoss(NamedTuple):
    """BLIP retrieval-mode loss: ``loss = itc + itm`` (all scalars)."""

    loss: torch.Tensor
    itc: torch.Tensor
    itm: torch.Tensor


def _peft_base(model: nn.Module) -> nn.Module:
    """The underlying transformers model of a peft-wrapped model (or the model itself)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


@contextmanager
def _eval_mode(module: nn.Module) -> Iterator[None]:
    """Eval mode inside the block; every submodule's own training flag is restored afterwards."""
    flags = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, flag in flags:
            m.training = flag


def _batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    if size < 1:
        raise ValueError(f"batch_size must be >= 1, got {size}")
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _progress(iterable: Iterable[Any], total: int, desc: str, enabled: bool) -> Iterable[Any]:
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="batch")


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
    """

    model_kind: str = "base"
    has_itm: bool = False

    def __init__(self, model: nn.Module, processor: Any = None) -> None:
        super().__init__()
        self.model = model
        self.processor = processor
        self.training = model.training

    # --- subclass hooks ------------------------------------------------------------------------
    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Pooled image features before the projection, shape (B, vision_hidden)."""
        raise NotImplementedError

    def project_images(self, features: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """Project pooled image features into the joint space (optionally L2-normalised)."""
        raise NotImplementedError

    def text_features(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Pooled text features before the projection, shape (B, text_hidden)."""
        raise NotImplementedError

    def project_texts(self, features: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """Project pooled text features into the joint space (optionally L2-normalised)."""
        raise NotImplementedError

    @property
    def logit_scale(self) -> torch.Tensor:
        """Log of the multiplicative logit scale: ``logits = logit_scale.exp() * cos``."""
        raise NotImplementedError

    projection_modules: tuple[str, ...] = ()
    """Top-level modules of the base model that project pooled features into the joint space."""
    scale_parameter: str = ""
    """Name of the base model's logit-scale (or temperature) parameter."""

    def projection_parameter_names(self) -> tuple[str, ...]:
        """Names (relative to the base model) of the projection and scale parameters (no LoRA weights)."""
        heads = set(self.projection_modules)
        names = [
            n for n, _ in self.base_model.named_parameters() if n.split(".")[0] in heads and "lora_" not in n
        ]
        return (*names, self.scale_parameter)

    # --- shared ------------------------------------------------------------------------------
    @property
    def base_model(self) -> nn.Module:
        """The transformers model (unwrapped from peft when LoRA is applied)."""
        return _peft_base(self.model)

    @property
    def device(self) -> torch.device:
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
        """``1 / logit_scale.exp()`` (BLIP's ``temp``, CLIP's ``1/exp(logit_scale)``)."""
        return torch.exp(-self.logit_scale)

    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """L2-normalised joint-space image embeddings (equal to CLIP's ``image_embeds``)."""
        return self.project_images(self.image_features(pixel_values), normalize=True)

    def encode_texts(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """L2-normalised joint-space text embeddings (equal to CLIP's ``text_embeds``)."""
        return self.project_texts(self.text_features(input_ids, attention_mask), normalize=True)

    def forward(
        self,
        pixel_values: torch.Tensor | None = None,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Normalised ``image_embeds`` / ``text_embeds`` for the given inputs, and ``logit_scale`` (log)."""
        out: dict[str, torch.Tensor] = {"logit_scale": self.logit_scale}
        if pixel_values is not None:
            out["image_embeds"] = self.encode_images(pixel_values)
        if input_ids is not None:
            out["text_embeds"] = self.encode_texts(input_ids, attention_mask)
        return out

    def projection_parameters(self) -> dict[str, nn.Parameter]:
        """``{name: parameter}`` of the visual and text projections and the logit scale / temperature."""
        params = dict(self.base_model.named_parameters())
        missing = [n for n in self.projection_parameter_names() if n not in params]
        if missing:
            raise KeyError(f"{type(self.base_model).__name__} has no parameters {missing}")
        return {n: params[n] for n in self.projection_parameter_names()}

    def _require_processor(self, what: str) -> Any:
        if self.processor is None:
            raise ValueError(
                f"{what} needs a processor: pass processor= to load_adapter (or load from a checkpoint "
                "folder or hub id that contains one)"
            )
        return self.processor

    def preprocess_images(self, images: Sequence[Any]) -> torch.Tensor:
        """Images (PIL / numpy HxWx3) -> ``pixel_values`` on the model's device."""
        proc = self._require_processor("preprocess_images")
        image_processor = getattr(proc, "image_processor", proc)
        pixel_values = image_processor(images=list(images), return_tensors="pt")["pixel_values"]
        return pixel_values.to(self.device)

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Texts -> ``{"input_ids", "attention_mask"}`` (padded, truncated) on the model's device."""
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
        with _eval_mode(self):
            total = math.ceil(len(items) / batch_size) if items else 0
            for batch in _progress(_batches(items, batch_size), total, desc, progress):
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

    @property
    def embedding_dim(self) -> int:
        """Size of the joint embedding space."""
        raise NotImplementedError

    def itm_scores(
        self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Probability that each (image_i, text_i) pair matches (BLIP's ITM head)."""
        raise NotImplementedError(f"{type(self.base_model).__name__} has no image-text matching head")

    def itm_loss(self, *args: Any, **kwargs: Any) -> RetrievalLoss:
        """BLIP retrieval-mode ITC + ITM loss."""
        raise NotImplementedError(f"{type(self.base_model).__name__} has no image-text matching head")

    @property
    def fingerprint(self) -> str:
        """Stable hex string from the adapter kind, config, processor settings and every weight.

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
        """Save the model (LoRA merged into a plain checkpoint by default) and processor to a folder.

        With ``merge_lora=False`` a peft-wrapped model saves only its adapter weights (peft's format).
        """
        out = Path(save_directory)
        out.mkdir(parents=True, exist_ok=True)
        model = self.model
        if merge_lora and model is not self.base_model and hasattr(model, "merge_and_unload"):
            import copy

            model = copy.deepcopy(model).merge_and_unload()
        model.save_pretrained(out, **kwargs)
        if self.processor is not None:
            self.processor.save_pretrained(out)
        return out


class ClipAdapter(VisionLanguageAdapter):
    """``CLIPModel`` (or same shape): pooled = ``*_model(...).pooler_output``; scale = ``logit_scale``."""

    model_kind = "clip"

    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.base_model.vision_model(pixel_values=pixel_values).pooler_output

    def project_images(self, features: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        emb = self.base_model.visual_projection(features)
        return F.normalize(emb, dim=-1) if normalize else emb

    def text_features(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.base_model.text_model(input_ids=input_ids, attention_mask=attention_mask).pooler_output

    def project_texts(self, features: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        emb = self.base_model.text_projection(features)
        return F.normalize(emb, dim=-1) if normalize else emb

    @property
    def logit_scale(self) -> torch.Tensor:
        """CLIP's own ``logit_scale`` parameter (a log scale; CLIP multiplies cosines by its exp)."""
        return self.base_model.logit_scale

    @property
    def embedding_dim(self) -> int:
        return int(self.base_model.visual_projection.out_features)

    projection_modules = ("visual_projection", "text_projection")
    scale_parameter = "logit_scale"


class BlipRetrievalAdapter(VisionLanguageAdapter):
    """``BlipForImageTextRetrieval`` (or same shape).

    Pooled features are the CLS states: image ``vision_model(...)[0][:, 0]``, text
    ``text_encoder(input_ids, attention_mask)`` (unimodal mode, no cross-attention) ``[:, 0]``, exactly as
    the model's own ``use_itm_head=False`` forward computes them.

    **Temperature.** BLIP trains its contrastive (ITC) loss with a learnable temperature ``temp``
    (logits = cos / temp), which the transformers port does not keep. The adapter registers it on the
    model as the parameter ``temp`` so that it is trained, saved and counted like any weight. Its value
    comes from a ``temp`` tensor in the checkpoint when present (written by this adapter's or a
    ``Trainer``'s ``save_pretrained``), otherwise from ``exp(-config.logit_scale_init_value)`` (0.07, BLIP's
    initial value). :attr:`logit_scale` is ``-log(temp)``, so ``logit_scale.exp() == 1 / temp``.
    """

    model_kind = "blip-retrieval"
    has_itm = True

    def __init__(self, model: nn.Module, processor: Any = None, temp: float | None = None) -> None:
        super().__init__(model, processor)
        base = self.base_model
        if not isinstance(getattr(base, BLIP_TEMP_KEY, None), nn.Parameter):
            if temp is None:
                temp = math.exp(-float(getattr(base.config, "logit_scale_init_value", math.log(1 / 0.07))))
            if not temp > 0:
                raise ValueError(f"BLIP temperature must be positive, got {temp}")
            ref = next(base.parameters())
            base.register_parameter(
                BLIP_TEMP_KEY, nn.Parameter(torch.tensor(float(temp), dtype=ref.dtype, device=ref.device))
            )

    @property
    def temp(self) -> nn.Parameter:
        """BLIP's ITC temperature parameter (registered on the model)."""
        return getattr(self.base_model, BLIP_TEMP_KEY)

    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.base_model.vision_model(pixel_values=pixel_values)[0][:, 0]

    def _image_states(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.base_model.vision_model(pixel_values=pixel_values)[0]

    def project_images(self, features: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        emb = self.base_model.vision_proj(features)
        return F.normalize(emb, dim=-1) if normalize else emb

    def text_features(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        out = self.base_model.text_encoder(input_ids=input_ids, attention_mask=attention_mask)
        return out.last_hidden_state[:, 0]

    def project_texts(self, features: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        emb = self.base_model.text_proj(features)
        return F.normalize(emb, dim=-1) if normalize else emb

    @property
    def logit_scale(self) -> torch.Tensor:
        """``-log(temp)`` (differentiable in ``temp``); ``logit_scale.exp() == 1 / temp``."""
        return -torch.log(self.temp)

    @property
    def embedding_dim(self) -> int:
        return int(self.base_model.vision_proj.out_features)

    projection_modules = ("vision_proj", "text_proj")
    scale_parameter = BLIP_TEMP_KEY

    def clamp_temperature(self) -> None:
        """Clamp ``temp`` in place to BLIP's training range (call after an optimizer step if wanted)."""
        with torch.no_grad():
            self.temp.clamp_(*BLIP_TEMP_RANGE)

    def _itm_logits(
        self, image_states: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor | None
    ) -> torch.Tensor:
        atts = torch.ones(image_states.shape[:-1], dtype=torch.long, device=image_states.device)
        out = self.base_model.text_encoder(
            input_ids=input_ids,
            attention_mask=attention_mask,
            encoder_hidden_states=image_states,
            encoder_attention_mask=atts,
        )
        return self.base_model.itm_head(out.last_hidden_state[:, 0])

    def itm_scores(
        self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``P(match)`` of each pair (image_i, text_i): softmax of the ITM head, column 1. Shape (B,)."""
        if pixel_values.shape[0] != input_ids.shape[0]:
            raise ValueError(
                f"itm_scores scores pairs: got {pixel_values.shape[0]} images and {input_ids.shape[0]} texts"
            )
        logits = self._itm_logits(self._image_states(pixel_values), input_ids, attention_mask)
        return logits.softmax(dim=-1)[:, 1]

    def itm_loss(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        ids: torch.Tensor | Sequence[int] | None = None,
        generator: torch.Generator | None = None,
    ) -> RetrievalLoss:
        """BLIP's retrieval-mode training loss on a batch of B (image_i, text_i) pairs.

        * ITC: cross-entropy of ``cos / temp`` (both directions, averaged) against soft targets that
          spread the mass uniformly over the pairs with the same ``ids`` (default: all distinct).
        * ITM: the ITM head on B positives, B texts with a hard-negative image and B images with a
          hard-negative text (label 1 for positives, 0 for negatives); negatives are sampled with
          probability ``softmax(ITC similarities)`` restricted to different ``ids`` (no gradient).

        No momentum encoder / queue (BLIP's distillation is left out). Returns ``RetrievalLoss``.
        """
        b = pixel_values.shape[0]
        if input_ids.shape[0] != b:
            raise ValueError(f"itm_loss needs paired inputs: got {b} images and {input_ids.shape[0]} texts")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        idx = torch.arange(b) if ids is None else torch.as_tensor(ids).reshape(-1)
        if idx.shape[0] != b:
            raise ValueError(f"ids must have one entry per pair ({b}), got {idx.shape[0]}")
        idx = idx.to(pixel_values.device)
        same = idx[:, None] == idx[None, :]
        if bool(same.all()):
            raise ValueError("itm_loss needs at least two distinct ids in the batch to draw negatives")

        image_states = self._image_states(pixel_values)
        img = self.project_images(image_states[:, 0], normalize=True)
        txt = self.encode_texts(input_ids, attention_mask)
        scale = self.logit_scale.exp()
        sim_i2t = scale * img @ txt.t()
        sim_t2i = sim_i2t.t()
        targets = same.float() / same.float().sum(dim=1, keepdim=True)
        loss_i2t = -(F.log_softmax(sim_i2t, dim=1) * targets).sum(dim=1).mean()
        loss_t2i = -(F.log_softmax(sim_t2i, dim=1) * targets).sum(dim=1).mean()
        itc = (loss_i2t + loss_t2i) / 2

        with torch.no_grad():
            w_i2t = F.softmax(sim_i2t.float(), dim=1).masked_fill(same, 0)
            w_t2i = F.softmax(sim_t2i.float(), dim=1).masked_fill(same, 0)
            # Rows whose probabilities underflowed to 0: fall back to uniform over the valid negatives.
            for w in (w_i2t, w_t2i):
                dead = w.sum(dim=1) <= 0
                w[dead] = (~same[dead]).float()
            neg_image = torch.multinomial(w_t2i.cpu(), 1, generator=generator).squeeze(1).to(idx.device)
            neg_text = torch.multinomial(w_i2t.cpu(), 1, generator=generator).squeeze(1).to(idx.device)

        ids_all = torch.cat([input_ids, input_ids, input_ids[neg_text]])
        att_all = torch.cat([attention_mask, attention_mask, attention_mask[neg_text]])
        states_all = torch.cat([image_states, image_states[neg_image], image_states])
        logits = self._itm_logits(states_all, ids_all, att_all)
        labels = torch.cat([torch.ones(b), torch.zeros(2 * b)]).long().to(logits.device)
        itm = F.cross_entropy(logits, labels)
        return RetrievalLoss(loss=itc + itm, itc=itc, itm=itm)


# ------------------------------------------------------------------------------------------ loading

_CLIP_SHAPE = ("vision_model", "text_model", "visual_projection", "text_projection", "logit_scale")
_BLIP_SHAPE = ("vision_model", "text_encoder", "vision_proj", "text_proj", "itm_head")
SUPPORTED = (
    "CLIPModel (or a model with attributes " + ", ".join(_CLIP_SHAPE) + ")",
    "BlipForImageTextRetrieval (or a model with attributes " + ", ".join(_BLIP_SHAPE) + ")",
)


def _adapter_class(model: nn.Module) -> type[VisionLanguageAdapter]:
    from transformers import BlipForImageTextRetrieval, CLIPModel

    if isinstance(model, CLIPModel):
        return ClipAdapter
    if isinstance(model, BlipForImageTextRetrieval):
        return BlipRetrievalAdapter
    if all(hasattr(model, a) for a in _CLIP_SHAPE):
        return ClipAdapter
    if all(hasattr(model, a) for a in _BLIP_SHAPE):
        return BlipRetrievalAdapter
    raise UnsupportedModelError(
        f"no vision-language adapter for {type(model).__name__}; supported: " + "; ".join(SUPPORTED)
    )


def _model_class_for(config: Any, where: str) -> type:
    from transformers import BlipForImageTextRetrieval, CLIPModel

    model_type = getattr(config, "model_type", None)
    architectures = list(getattr(config, "architectures", None) or [])
    if model_type == "clip":
        return CLIPModel
    if model_type == "blip":
        if architectures and "BlipForImageTextRetrieval" not in architectures:
            raise UnsupportedModelError(
                f"{where} is a BLIP {architectures[0]} checkpoint; retrieval needs a BlipForImageTextRetrieval "
                "checkpoint (e.g. Salesforce/blip-itm-base-coco)"
            )
        return BlipForImageTextRetrieval
    raise UnsupportedModelError(
        f"{where} has model_type {model_type!r} ({', '.join(architectures) or 'no architectures'}); "
        "supported: " + "; ".join(SUPPORTED)
    )


def _checkpoint_tensor(where: str | Path, key: str) -> torch.Tensor | None:
    """Read one tensor from a local safetensors checkpoint (single file or sharded), if present."""
    folder = Path(where)
    if not folder.is_dir():
        return None
    from safetensors import safe_open

    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shard = json.loads(index.read_text(encoding="utf-8")).get("weight_map", {}).get(key)
        if shard is None or Path(shard).name != shard:  # never follow paths out of the folder
            return None
        files = [folder / shard]
    else:
        files = [folder / "model.safetensors"]
    for file in files:
        if file.is_file():
            with safe_open(str(file), framework="pt") as f:
                if key in set(f.keys()):
                    return f.get_tensor(key)
    return None


def _is_peft_folder(where: str | Path) -> bool:
    folder = Path(where)
    return (folder / "adapter_config.json").is_file() and not (folder / "config.json").is_file()


def _load_peft_folder(
    folder: Path, processor: Any, device: str | torch.device | None, **kwargs: Any
) -> VisionLanguageAdapter:
    """A LoRA folder (peft format): load its base model by name, then the adapter weights on top."""
    from peft import PeftConfig, PeftModel

    base_id = PeftConfig.from_pretrained(str(folder)).base_model_name_or_path
    if not base_id:
        raise ValueError(
            f"{folder}/adapter_config.json names no base_model_name_or_path to load the LoRA onto"
        )
    if processor is None and any(
        (folder / f).is_file() for f in ("processor_config.json", "preprocessor_config.json")
    ):
        from transformers import AutoProcessor

        processor = AutoProcessor.from_pretrained(str(folder))
    base = load_adapter(base_id, processor, device, **kwargs)
    base.model = PeftModel.from_pretrained(base.model, str(folder))
    return base


@contextmanager
def _expect_temp_key(cls: type) -> Iterator[None]:
    """While loading a BLIP checkpoint, don't report the adapter's saved ``temp`` as an unexpected key."""
    if cls.__name__ != "BlipForImageTextRetrieval":
        yield
        return
    before = cls.__dict__.get("_keys_to_ignore_on_load_unexpected", None)
    had = "_keys_to_ignore_on_load_unexpected" in cls.__dict__
    cls._keys_to_ignore_on_load_unexpected = {*(before or ()), rf"^{BLIP_TEMP_KEY}$"}
    try:
        yield
    finally:
        if had:
            cls._keys_to_ignore_on_load_unexpected = before
        else:
            del cls._keys_to_ignore_on_load_unexpected


def load_adapter(
    model_or_id_or_dir: nn.Module | str | Path,
    processor: Any = None,
    device: str | torch.device | None = None,
    **from_pretrained_kwargs: Any,
) -> VisionLanguageAdapter:
    """Wrap a model instance, or load a hub id / local folder, into the matching adapter.

    A string or path loads with the concrete class named by the config (``CLIPModel`` for
    ``model_type="clip"``, ``BlipForImageTextRetrieval`` for BLIP) and ``AutoProcessor`` from the same
    place unless ``processor`` is given. A peft-wrapped model is accepted as is. Anything else raises
    :class:`UnsupportedModelError` listing the supported types.
    """
    blip_temp: float | None = None
    if isinstance(model_or_id_or_dir, (str, Path)) and _is_peft_folder(model_or_id_or_dir):
        return _load_peft_folder(Path(model_or_id_or_dir), processor, device, **from_pretrained_kwargs)
    if isinstance(model_or_id_or_dir, (str, Path)):
        from transformers import AutoConfig, AutoProcessor

        where = str(model_or_id_or_dir)
        config = AutoConfig.from_pretrained(where)
        cls = _model_class_for(config, where)
        with _expect_temp_key(cls):
            model = cls.from_pretrained(where, **from_pretrained_kwargs)
        if processor is None:
            processor = AutoProcessor.from_pretrained(where)
        saved = (
            _checkpoint_tensor(where, BLIP_TEMP_KEY) if cls.__name__ == "BlipForImageTextRetrieval" else None
        )
        if saved is not None:
            blip_temp = float(saved)
    elif isinstance(model_or_id_or_dir, nn.Module):
        model = model_or_id_or_dir
        # A model loaded by the caller from a local folder: take its processor and BLIP temp from there.
        source = getattr(_peft_base(model), "name_or_path", "") or ""
        if source and Path(source).is_dir():
            if processor is None and any(
                (Path(source) / f).is_file() for f in ("processor_config.json", "preprocessor_config.json")
            ):
                from transformers import AutoProcessor

                processor = AutoProcessor.from_pretrained(source)
            saved = _checkpoint_tensor(source, BLIP_TEMP_KEY)
            if saved is not None:
                blip_temp = float(saved)
    else:
        raise TypeError(
            f"load_adapter takes a model, a hub id or a folder, got {type(model_or_id_or_dir).__name__}"
        )
    adapter_cls = _adapter_class(_peft_base(model))
    if adapter_cls is BlipRetrievalAdapter:
        adapter: VisionLanguageAdapter = BlipRetrievalAdapter(model, processor, temp=blip_temp)
    else:
        adapter = adapter_cls(model, processor)
    if device is not None:
        adapter.to(device)
    return adapter
