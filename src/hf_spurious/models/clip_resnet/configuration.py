"""Configs of CLIP with a modified-ResNet image tower (OpenAI's RN50, RN101, RN50x4, RN50x16, RN50x64).

The image tower is described by :class:`ClipResNetVisionConfig` (stage depths, stem width, attention-pool
heads, output dim, input size); the text tower is transformers' own ``CLIPTextConfig``.
:data:`OPENAI_RESNET_CONFIGS` holds the real geometries of the released checkpoints (open_clip's
``model_configs/RN*.json``; attention-pool heads = width * 32 / 64, text heads = text width / 64).
"""

from __future__ import annotations

from typing import Any

from transformers import CLIPTextConfig, PreTrainedConfig

__all__ = ["OPENAI_RESNET_CONFIGS", "ClipResNetConfig", "ClipResNetVisionConfig", "resnet_clip_config"]

#: Bottleneck expansion of the modified ResNet (a stage of ``planes`` outputs ``4 * planes`` channels).
EXPANSION = 4


class ClipResNetVisionConfig(PreTrainedConfig):
    """The modified ResNet: ``layers`` bottlenecks per stage, stem ``width``, attention pool, projection.

    ``heads`` defaults to ``width * 32 // 64`` (one head per 64 channels, as OpenAI's checkpoints).
    ``hidden_size`` is derived, not set: the size of the flattened last-stage grid
    (``width * 32 * (image_size // 32) ** 2``), i.e. what the attention pool (this model's trainable
    "visual projection") reads.
    """

    model_type = "clip_resnet_vision_model"
    base_config_key = "vision_config"

    def __init__(
        self,
        layers: list[int] | tuple[int, ...] = (3, 4, 6, 3),
        width: int = 64,
        heads: int | None = None,
        image_size: int = 224,
        output_dim: int = 1024,
        batch_norm_eps: float = 1e-5,
        initializer_range: float = 0.02,
        **kwargs: Any,
    ) -> None:
        kwargs.pop("hidden_size", None)  # derived below; a saved value is recomputed
        self.layers = [int(n) for n in layers]
        self.width = int(width)
        self.heads = int(heads) if heads is not None else self.width * 32 // 64
        self.image_size = int(image_size)
        self.output_dim = int(output_dim)
        self.batch_norm_eps = float(batch_norm_eps)
        self.initializer_range = float(initializer_range)
        super().__init__(**kwargs)
        self._check()
        self.hidden_size = self.embed_dim * self.grid_size**2

    def _check(self) -> None:
        if len(self.layers) != 4 or min(self.layers) < 1:
            raise ValueError(f"layers must be four stage depths >= 1, got {self.layers}")
        if self.width < 2 or self.width % 2:
            raise ValueError(f"width must be an even number >= 2 (the stem halves it), got {self.width}")
        if self.image_size < 32 or self.image_size % 32:
            raise ValueError(f"image_size must be a multiple of 32 (total stride), got {self.image_size}")
        if self.heads < 1 or self.embed_dim % self.heads:
            raise ValueError(f"heads={self.heads} must divide the last-stage width {self.embed_dim}")

    @property
    def embed_dim(self) -> int:
        """Channels of the last stage (``width * 8 * 4``), the attention pool's token width."""
        return self.width * 8 * EXPANSION

    @property
    def grid_size(self) -> int:
        """Side of the last-stage grid (``image_size // 32``: 7 at 224 px)."""
        return self.image_size // 32


class ClipResNetConfig(PreTrainedConfig):
    """A CLIP whose image tower is a modified ResNet and whose text tower is transformers' CLIP text model.

    ``projection_dim`` is the joint embedding size; it must equal ``vision_config.output_dim``.
    """

    model_type = "clip_resnet"
    sub_configs = {"text_config": CLIPTextConfig, "vision_config": ClipResNetVisionConfig}

    def __init__(
        self,
        text_config: dict | CLIPTextConfig | None = None,
        vision_config: dict | ClipResNetVisionConfig | None = None,
        projection_dim: int = 1024,
        logit_scale_init_value: float = 2.6592,
        initializer_factor: float = 1.0,
        **kwargs: Any,
    ) -> None:
        if not isinstance(text_config, CLIPTextConfig):
            text_config = CLIPTextConfig(**(text_config or {}))
        if not isinstance(vision_config, ClipResNetVisionConfig):
            vision_config = ClipResNetVisionConfig(**{"output_dim": projection_dim, **(vision_config or {})})
        if vision_config.output_dim != projection_dim:
            raise ValueError(
                f"vision_config.output_dim={vision_config.output_dim} differs from projection_dim={projection_dim}"
            )
        self.text_config = text_config
        self.vision_config = vision_config
        self.projection_dim = int(projection_dim)
        self.logit_scale_init_value = float(logit_scale_init_value)
        self.initializer_factor = float(initializer_factor)
        super().__init__(**kwargs)


#: Real geometries (open_clip ``model_configs``): vision layers / width / image size, embed dim, text width.
OPENAI_RESNET_CONFIGS: dict[str, dict[str, Any]] = {
    "rn50": {"layers": (3, 4, 6, 3), "width": 64, "image_size": 224, "embed_dim": 1024, "text_width": 512},
    "rn101": {"layers": (3, 4, 23, 3), "width": 64, "image_size": 224, "embed_dim": 512, "text_width": 512},
    "rn50x4": {"layers": (4, 6, 10, 6), "width": 80, "image_size": 288, "embed_dim": 640, "text_width": 640},
    "rn50x16": {"layers": (6, 8, 18, 8), "width": 96, "image_size": 384, "embed_dim": 768, "text_width": 768},
    "rn50x64": {
        "layers": (3, 15, 36, 10),
        "width": 128,
        "image_size": 448,
        "embed_dim": 1024,
        "text_width": 1024,
    },
}


def resnet_clip_config(
    name: str = "rn50",
    *,
    quick_gelu: bool = True,
    vocab_size: int = 49408,
    context_length: int = 77,
    text_layers: int = 12,
    **overrides: Any,
) -> ClipResNetConfig:
    """The :class:`ClipResNetConfig` of a released geometry (``rn50``, ``rn101``, ``rn50x4``, ...).

    Text tower: ``text_layers`` blocks of width ``text_width`` with one head per 64 channels, MLP 4 x
    width, QuickGELU (every OpenAI-trained checkpoint uses it), OpenAI's BPE ids (bos 49406, eos = pad
    49407; pooling at the first eos equals OpenAI's argmax pooling). ``overrides`` go to the top config.
    """
    key = name.lower().replace("-", "")
    if key not in OPENAI_RESNET_CONFIGS:
        raise ValueError(f"unknown ResNet CLIP {name!r}; choose one of {', '.join(OPENAI_RESNET_CONFIGS)}")
    geo = OPENAI_RESNET_CONFIGS[key]
    text = CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=geo["text_width"],
        intermediate_size=4 * geo["text_width"],
        num_hidden_layers=text_layers,
        num_attention_heads=geo["text_width"] // 64,
        max_position_embeddings=context_length,
        hidden_act="quick_gelu" if quick_gelu else "gelu",
        projection_dim=geo["embed_dim"],
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=49407,
    )
    vision = ClipResNetVisionConfig(
        layers=geo["layers"], width=geo["width"], image_size=geo["image_size"], output_dim=geo["embed_dim"]
    )
    return ClipResNetConfig(
        text_config=text, vision_config=vision, projection_dim=geo["embed_dim"], **overrides
    )
