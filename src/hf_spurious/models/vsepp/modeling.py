"""``VseppModel``: VSE++ (Faghri et al., BMVC 2018) as a ``PreTrainedModel``, in plain torch.

Image: backbone (:class:`~.vgg.VggFeatures` fc7, or a ``transformers`` vision model's pooled output)
-> ``img_fc`` (linear) -> L2-normalised ``embed_size`` embedding. Text: ``embed`` (word vectors) -> ``rnn``
(GRU over the unpadded tokens; bidirectional: the final states of the two directions averaged) ->
L2-normalised ``embed_size`` embedding. ``forward`` is CLIP-like (``logits_per_image`` / ``logits_per_text``,
cosine times ``exp(logit_scale)``, scale 1 by default) and ``return_loss=True`` gives the VSE++ triplet loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.utils import ModelOutput

from hf_spurious.losses.triplet import triplet_ranking_loss

from .configuration import VseppConfig
from .vgg import VggFeatures, load_torchvision_vgg

__all__ = ["VseppModel", "VseppOutput", "VseppPreTrainedModel"]


@dataclass
class VseppOutput(ModelOutput):
    """CLIP-like output: triplet ``loss`` (with ``return_loss``), logits (B_img, B_txt) / transposed, embeddings."""

    loss: torch.Tensor | None = None
    logits_per_image: torch.Tensor | None = None
    logits_per_text: torch.Tensor | None = None
    text_embeds: torch.Tensor | None = None
    image_embeds: torch.Tensor | None = None


def _pooled_size(vision_config: Any) -> int:
    """Width of a transformers vision model's pooled output (``hidden_sizes[-1]`` for CNNs, else ``hidden_size``)."""
    sizes = getattr(vision_config, "hidden_sizes", None)
    if sizes:
        return int(sizes[-1])
    size = getattr(vision_config, "hidden_size", None)
    if size is None:
        raise ValueError(
            f"cannot tell the pooled width of a {vision_config.model_type} backbone (no hidden_sizes / hidden_size)"
        )
    return int(size)


class VseppPreTrainedModel(PreTrainedModel):
    config_class = VseppConfig
    config: VseppConfig
    base_model_prefix = "vsepp"
    main_input_name = "input_ids"
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = False

    def _init_weights(self, module: nn.Module) -> None:
        r = self.config.initializer_range
        if isinstance(module, nn.Conv2d):
            init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")  # torchvision's VGG init
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            init.xavier_uniform_(module.weight)  # VSE++'s init of its fc layer
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            init.uniform_(module.weight, -r, r)  # VSE++: word vectors uniform(-0.1, 0.1)
        elif isinstance(module, nn.GRU):
            for name, param in module.named_parameters():
                init.uniform_(param, -r, r) if "weight" in name else init.zeros_(param)
        elif isinstance(module, VseppModel):
            init.constant_(module.logit_scale, self.config.logit_scale_init_value)
        else:
            super()._init_weights(module)


class VseppModel(VseppPreTrainedModel):
    """VSE++: CNN image encoder + GRU text encoder in a joint space (see :class:`VseppConfig`)."""

    def __init__(self, config: VseppConfig) -> None:
        super().__init__(config)
        if config.image_backbone == "vgg":
            self.backbone: nn.Module = VggFeatures(config.vgg_layers, config.vgg_fc_size, config.vgg_dropout)
            feature_size = config.vgg_fc_size
        else:
            from transformers import AutoConfig, AutoModel  # lazy: only for a transformers backbone

            vision = dict(config.vision_config or {})
            vision_config = AutoConfig.for_model(vision.pop("model_type"), **vision)
            self.backbone = AutoModel.from_config(vision_config)
            feature_size = _pooled_size(vision_config)
        self.img_fc = nn.Linear(feature_size, config.embed_size)
        self.embed = nn.Embedding(config.vocab_size, config.word_dim, padding_idx=None)
        self.rnn = nn.GRU(
            config.word_dim,
            config.embed_size,
            num_layers=config.num_layers,
            batch_first=True,
            bidirectional=config.bidirectional,
        )
        self.logit_scale = nn.Parameter(torch.tensor(config.logit_scale_init_value))
        self.post_init()
        self.set_backbone_trainable(config.finetune_backbone)

    @classmethod
    def with_pretrained_backbone(cls, backbone: str, **config_kwargs: Any) -> VseppModel:
        """A VSE++ whose image backbone is the ``transformers`` vision model ``backbone`` (hub id or folder).

        E.g. ``VseppModel.with_pretrained_backbone("microsoft/resnet-152", vocab_size=len(tokenizer))``: VSE++'s
        ResNet-152 variant. The backbone's weights are copied; ``img_fc`` and the text side start random.
        """
        from transformers import AutoModel  # lazy: only for a transformers backbone

        vision = AutoModel.from_pretrained(backbone)
        config = VseppConfig(
            image_backbone="transformers", vision_config=vision.config.to_dict(), **config_kwargs
        )
        model = cls(config)
        model.backbone.load_state_dict(vision.state_dict())
        return model

    # --- backbone ---------------------------------------------------------------------------------
    def set_backbone_trainable(self, trainable: bool) -> None:
        """``False``: freeze the backbone (the paper's "VSE++", cacheable features); ``True``: "VSE++ (FT)"."""
        self.config.finetune_backbone = bool(trainable)
        self.backbone.requires_grad_(bool(trainable))
        if not trainable:
            self.backbone.eval()

    def keep_frozen(self) -> None:
        """Re-freeze what the config says is frozen (the backbone unless ``finetune_backbone``).

        Called by ``apply_freezing(..., "full")`` after it unfreezes everything, so "full" training of the
        paper's frozen-backbone VSE++ trains ``img_fc``, the word embeddings and the GRU only.
        """
        if not self.config.finetune_backbone:
            self.backbone.requires_grad_(False)

    def train(self, mode: bool = True) -> VseppModel:
        """Like ``nn.Module.train``, but a frozen backbone stays in eval mode (no dropout in fc6 / fc7)."""
        super().train(mode)
        if not self.config.finetune_backbone:
            self.backbone.eval()
        return self

    def load_torchvision_vgg(self, state_dict: Any) -> None:
        """Load a torchvision VGG state dict (dict or ``.safetensors`` / ``.pth`` file) into the VGG backbone."""
        if not isinstance(self.backbone, VggFeatures):
            raise ValueError(
                f"this VSE++ has a {self.config.image_backbone!r} backbone, not a VGG: build it with "
                "image_backbone='vgg' to load VGG weights"
            )
        load_torchvision_vgg(self.backbone, state_dict)

    def backbone_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Pooled backbone features before ``img_fc`` (B, F): VGG fc7 or the transformers pooled output."""
        if isinstance(self.backbone, VggFeatures):
            return self.backbone(pixel_values)
        return self.backbone(pixel_values=pixel_values).pooler_output.flatten(1)

    # --- text -------------------------------------------------------------------------------------
    def text_states(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The GRU's final state over each caption's real tokens (B, embed_size), directions averaged."""
        if attention_mask is None:
            attention_mask = (input_ids != self.config.pad_token_id).long()
        lengths = attention_mask.sum(dim=1).clamp(min=1).cpu()
        packed = nn.utils.rnn.pack_padded_sequence(
            self.embed(input_ids), lengths, batch_first=True, enforce_sorted=False
        )
        _, h_n = self.rnn(packed)  # (layers * directions, B, H), in the input's batch order
        if self.config.bidirectional:
            return (h_n[-2] + h_n[-1]) / 2
        return h_n[-1]

    # --- the CLIP-like interface ------------------------------------------------------------------
    def get_image_features(self, pixel_values: torch.Tensor, **_: Any) -> BaseModelOutputWithPooling:
        """``pooler_output``: the L2-normalised image embedding (B, embed_size); ``last_hidden_state``: backbone features."""
        features = self.backbone_features(pixel_values)
        emb = F.normalize(self.img_fc(features), dim=-1)
        return BaseModelOutputWithPooling(last_hidden_state=features, pooler_output=emb)

    def get_text_features(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **_: Any
    ) -> BaseModelOutputWithPooling:
        """``pooler_output``: the L2-normalised caption embedding (B, embed_size)."""
        states = self.text_states(input_ids, attention_mask)
        return BaseModelOutputWithPooling(last_hidden_state=states, pooler_output=F.normalize(states, dim=-1))

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        return_loss: bool | None = None,
        **_: Any,
    ) -> VseppOutput:
        """Embeddings of both sides, ``logits_per_image`` = exp(logit_scale) · cos, optional VSE++ triplet loss."""
        if input_ids is None or pixel_values is None:
            raise ValueError(
                "forward needs both input_ids and pixel_values (use get_*_features for one side)"
            )
        image_embeds = self.get_image_features(pixel_values).pooler_output
        text_embeds = self.get_text_features(input_ids, attention_mask).pooler_output
        logits_per_image = self.logit_scale.exp() * image_embeds @ text_embeds.t()
        loss = triplet_ranking_loss(image_embeds, text_embeds) if return_loss else None
        return VseppOutput(
            loss=loss,
            logits_per_image=logits_per_image,
            logits_per_text=logits_per_image.t(),
            text_embeds=text_embeds,
            image_embeds=image_embeds,
        )


def _register() -> None:
    from transformers import AutoConfig, AutoModel  # lazy: already loaded with PreTrainedModel

    AutoConfig.register(VseppConfig.model_type, VseppConfig, exist_ok=True)
    AutoModel.register(VseppConfig, VseppModel, exist_ok=True)


_register()
