"""``VseppConfig``: the VSE++ model's settings (image backbone, joint space, word embeddings + GRU).

Imports only ``transformers.PretrainedConfig`` (no torch), so registering ``model_type="vsepp"`` with
``AutoConfig`` is cheap.
"""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig

__all__ = ["VGG19_LAYERS", "VseppConfig"]

VGG19_LAYERS: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M",
)  # fmt: skip
"""VGG19 ("configuration E" of Simonyan & Zisserman): conv widths, ``"M"`` = 2×2 max-pool (torchvision's order)."""

_BACKBONES = ("vgg", "transformers")


class VseppConfig(PretrainedConfig):
    """VSE++ (Faghri et al., BMVC 2018) as Kim et al. used it: a CNN image encoder, a GRU text encoder.

    Image side (``image_backbone``):

    - ``"vgg"``: a VGG in plain torch (``vgg_layers``, default VGG19) whose fc7 output (``vgg_fc_size``,
      4096 in VGG19) is mapped by a linear layer to the joint space; its state dict uses torchvision's keys
      (``features.N.*``, ``classifier.N.*``), see :func:`~hf_spurious.models.vsepp.vgg.load_torchvision_vgg`;
    - ``"transformers"``: any ``transformers`` vision model built from ``vision_config`` (a config dict with
      its ``model_type``; e.g. a ResNet-152, VSE++'s other backbone) whose pooled output is mapped instead.

    ``finetune_backbone=False`` is the paper's "VSE++" (backbone frozen: only the linear map and the text
    side train, so pooled backbone features can be cached); ``True`` is "VSE++ (FT)".

    Text side: ``vocab_size`` word embeddings of ``word_dim`` (300) and a GRU of ``embed_size`` units
    (``num_layers``; bidirectional by default as in Kim et al., the two directions' final states averaged).
    Both sides are L2-normalised into the ``embed_size`` (1024) joint space. ``logit_scale_init_value`` is
    the (log) scale of the CLIP-like ``logits_per_image``: VSE++ ranks by plain cosine, so it is 0 (scale 1)
    and not trained by the triplet loss.
    """

    model_type = "vsepp"

    def __init__(
        self,
        embed_size: int = 1024,
        image_backbone: str = "vgg",
        vgg_layers: list[int | str] | tuple[int | str, ...] = VGG19_LAYERS,
        vgg_fc_size: int = 4096,
        vgg_dropout: float = 0.5,
        vision_config: dict[str, Any] | None = None,
        finetune_backbone: bool = False,
        image_size: int = 224,
        vocab_size: int = 4,
        word_dim: int = 300,
        num_layers: int = 1,
        bidirectional: bool = True,
        pad_token_id: int = 0,
        logit_scale_init_value: float = 0.0,
        initializer_range: float = 0.1,
        **kwargs: Any,
    ) -> None:
        if image_backbone not in _BACKBONES:
            raise ValueError(f"image_backbone must be one of {_BACKBONES}, got {image_backbone!r}")
        if image_backbone == "transformers" and not (vision_config and "model_type" in vision_config):
            raise ValueError(
                "image_backbone='transformers' needs vision_config: a transformers config dict with its "
                "'model_type' (e.g. AutoConfig.from_pretrained('microsoft/resnet-152').to_dict())"
            )
        for name, value in (("embed_size", embed_size), ("word_dim", word_dim), ("vocab_size", vocab_size)):
            if int(value) < 1:
                raise ValueError(f"{name} must be >= 1, got {value!r}")
        if int(num_layers) < 1:
            raise ValueError(f"num_layers (GRU layers) must be >= 1, got {num_layers!r}")
        bad = [v for v in vgg_layers if v != "M" and (not isinstance(v, int) or v < 1)]
        if bad or not any(v != "M" for v in vgg_layers):
            raise ValueError(
                f"vgg_layers must be conv widths (ints >= 1) and 'M' max-pools with at least one conv; got "
                f"{list(vgg_layers)!r}"
            )
        self.embed_size = int(embed_size)
        self.image_backbone = image_backbone
        self.vgg_layers = list(vgg_layers)
        self.vgg_fc_size = int(vgg_fc_size)
        self.vgg_dropout = float(vgg_dropout)
        self.vision_config = dict(vision_config) if vision_config else None
        self.finetune_backbone = bool(finetune_backbone)
        self.image_size = int(image_size)
        self.vocab_size = int(vocab_size)
        self.word_dim = int(word_dim)
        self.num_layers = int(num_layers)
        self.bidirectional = bool(bidirectional)
        self.logit_scale_init_value = float(logit_scale_init_value)
        self.initializer_range = float(initializer_range)
        super().__init__(pad_token_id=pad_token_id, **kwargs)

    @property
    def hidden_size(self) -> int:
        """The joint-space size (``embed_size``): what callers asking a config for its width get."""
        return self.embed_size
