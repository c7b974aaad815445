"""CLIP with OpenAI's modified-ResNet image tower, in plain torch (no torchvision, no open_clip).

Image tower (:class:`ClipResNetVisionModel`): a three-convolution stem (3x3 convs, the first with
stride 2, then a 2x2 average pool), four stages of bottlenecks whose stride is an average pool
*before* the last 1x1 convolution (and before the 1x1 convolution of the shortcut: anti-aliased
downsampling), total stride 32. Its output is the last-stage grid (B, C, h, w); ``pooler_output`` is
that grid flattened to (B, C*h*w).

Visual projection (:class:`AttentionPool`): attention pooling over the h*w grid tokens plus their mean
(positional embedding over h*w+1 tokens, multi-head attention with the mean token as the only query,
q/k/v projections, output projection ``c_proj`` to the joint embedding). It is this model's
``visual_projection`` because Yang et al. train the whole attention pool as RN50's "projection"
(CLIP-spurious-finetune ``models/initializer.py``; spec §2.4, §3.B.6); so the projection-only policy
trains it, and cached features are the last-stage grid taken before it.

Text tower: transformers' ``CLIPTextModel`` plus a bias-free ``text_projection``. The model has
CLIPModel's shape (``vision_model``, ``text_model``, ``visual_projection``, ``text_projection``,
``logit_scale``), ``get_image_features`` / ``get_text_features`` return ``BaseModelOutputWithPooling``
whose ``pooler_output`` is the projected embedding (as transformers v5's ``CLIPModel``), and ``forward``
returns a ``CLIPOutput``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from transformers import CLIPTextModel, PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.models.clip.modeling_clip import CLIPOutput

from .configuration import EXPANSION, ClipResNetConfig, ClipResNetVisionConfig

__all__ = ["AttentionPool", "Bottleneck", "ClipResNetModel", "ClipResNetVisionModel"]


class Shortcut(nn.Module):
    """The projection shortcut: average pool (stride), 1x1 conv, batch norm."""

    def __init__(self, inplanes: int, outplanes: int, stride: int, eps: float) -> None:
        super().__init__()
        self.pool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.conv = nn.Conv2d(inplanes, outplanes, 1, bias=False)
        self.norm = nn.BatchNorm2d(outplanes, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(self.pool(x)))


class Bottleneck(nn.Module):
    """1x1 -> 3x3 -> (avg pool when strided) -> 1x1 (x4 channels), residual, ReLU after each and the sum."""

    def __init__(self, inplanes: int, planes: int, stride: int, eps: float) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes, eps=eps)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, eps=eps)
        self.pool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.conv3 = nn.Conv2d(planes, planes * EXPANSION, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * EXPANSION, eps=eps)
        needs_shortcut = stride > 1 or inplanes != planes * EXPANSION
        self.downsample = Shortcut(inplanes, planes * EXPANSION, stride, eps) if needs_shortcut else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.pool(F.relu(self.bn2(self.conv2(y))))
        y = self.bn3(self.conv3(y))
        skip = x if self.downsample is None else self.downsample(x)
        return F.relu(y + skip)


class ClipResNetVisionModel(nn.Module):
    """Stem + four bottleneck stages; returns the last-stage grid (``last_hidden_state``) and it flattened."""

    def __init__(self, config: ClipResNetVisionConfig) -> None:
        super().__init__()
        self.config = config
        w, eps = config.width, config.batch_norm_eps
        self.conv1 = nn.Conv2d(3, w // 2, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(w // 2, eps=eps)
        self.conv2 = nn.Conv2d(w // 2, w // 2, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(w // 2, eps=eps)
        self.conv3 = nn.Conv2d(w // 2, w, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(w, eps=eps)
        self.avgpool = nn.AvgPool2d(2)
        inplanes = w
        for i, depth in enumerate(config.layers):
            planes = w * 2**i
            blocks = [Bottleneck(inplanes, planes, 1 if i == 0 else 2, eps)]
            blocks += [Bottleneck(planes * EXPANSION, planes, 1, eps) for _ in range(depth - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            inplanes = planes * EXPANSION

    def stem(self, pixel_values: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(pixel_values)))
        x = F.relu(self.bn2(self.conv2(x)))
        x = F.relu(self.bn3(self.conv3(x)))
        return self.avgpool(x)

    def forward(self, pixel_values: torch.Tensor, **_: object) -> BaseModelOutputWithPooling:
        if pixel_values.ndim != 4 or pixel_values.shape[1] != 3:
            raise ValueError(f"pixel_values must be (B, 3, H, W), got {tuple(pixel_values.shape)}")
        x = self.stem(pixel_values)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return BaseModelOutputWithPooling(last_hidden_state=x, pooler_output=x.flatten(1))


class AttentionPool(nn.Module):
    """Multi-head attention of the grid's mean token over [mean; grid tokens] (+ positions), then ``c_proj``.

    Takes the grid (B, C, h, w) or its flattening (B, C*h*w) (the cached-feature form) and returns
    (B, output_dim). The grid size is fixed by the positional embedding (h*w + 1 rows).
    """

    def __init__(self, config: ClipResNetVisionConfig) -> None:
        super().__init__()
        c = config.embed_dim
        self.grid_size = config.grid_size
        self.num_heads = config.heads
        self.positional_embedding = nn.Parameter(torch.zeros(self.grid_size**2 + 1, c))
        self.q_proj = nn.Linear(c, c)
        self.k_proj = nn.Linear(c, c)
        self.v_proj = nn.Linear(c, c)
        self.c_proj = nn.Linear(c, config.output_dim)

    @property
    def out_features(self) -> int:
        """Size of the joint embedding (``c_proj``'s output), like ``nn.Linear.out_features``."""
        return self.c_proj.out_features

    def tokens(self, features: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) or (B, C*h*w) -> (B, 1 + h*w, C): mean token first, positions added."""
        c, g = self.positional_embedding.shape[1], self.grid_size
        if features.ndim == 2:
            if features.shape[1] != c * g * g:
                raise ValueError(f"flat features of width {features.shape[1]} are not a {c}x{g}x{g} grid")
            features = features.reshape(-1, c, g, g)
        if features.ndim != 4 or tuple(features.shape[1:]) != (c, g, g):
            raise ValueError(f"attention pool expects (B, {c}, {g}, {g}), got {tuple(features.shape)}")
        grid = features.flatten(2).transpose(1, 2)  # (B, h*w, C)
        seq = torch.cat([grid.mean(dim=1, keepdim=True), grid], dim=1)
        return seq + self.positional_embedding.to(seq.dtype)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        seq = self.tokens(features)
        b, n, c = seq.shape
        h, d = self.num_heads, c // self.num_heads
        q = self.q_proj(seq[:, :1]).reshape(b, 1, h, d).transpose(1, 2)  # (B, h, 1, d)
        k = self.k_proj(seq).reshape(b, n, h, d).transpose(1, 2)  # (B, h, N, d)
        v = self.v_proj(seq).reshape(b, n, h, d).transpose(1, 2)
        attn = torch.softmax((q @ k.transpose(-1, -2)) / math.sqrt(d), dim=-1)
        pooled = (attn @ v).transpose(1, 2).reshape(b, c)
        return self.c_proj(pooled)


class ClipResNetPreTrainedModel(PreTrainedModel):
    config_class = ClipResNetConfig
    config: ClipResNetConfig
    base_model_prefix = "clip_resnet"
    main_input_name = "input_ids"
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = False
    _no_split_modules = ["Bottleneck", "AttentionPool", "CLIPEncoderLayer", "CLIPTextEmbeddings"]

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Conv2d):
            fan_in = module.in_channels * module.kernel_size[0] * module.kernel_size[1]
            init.normal_(module.weight, mean=0.0, std=math.sqrt(2.0 / fan_in))  # He init for ReLU nets
        elif isinstance(module, AttentionPool):
            init.normal_(module.positional_embedding, std=module.positional_embedding.shape[1] ** -0.5)
        elif isinstance(module, ClipResNetModel):
            init.constant_(module.logit_scale, self.config.logit_scale_init_value)
        else:  # Linear / Embedding: normal(0, initializer_range); norms: ones / zeros
            super()._init_weights(module)


class ClipResNetModel(ClipResNetPreTrainedModel):
    """CLIP RN50 / RN101 / RN50x4 / ...: :class:`ClipResNetVisionModel` + :class:`AttentionPool` + CLIP text."""

    def __init__(self, config: ClipResNetConfig) -> None:
        super().__init__(config)
        self.vision_model = ClipResNetVisionModel(config.vision_config)
        self.visual_projection = AttentionPool(config.vision_config)
        self.text_model = CLIPTextModel._from_config(config.text_config)
        self.text_projection = nn.Linear(config.text_config.hidden_size, config.projection_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(config.logit_scale_init_value))
        self.post_init()

    def get_image_features(self, pixel_values: torch.Tensor, **kwargs: object) -> BaseModelOutputWithPooling:
        """The vision output with ``pooler_output`` replaced by the attention-pooled embedding (B, D)."""
        out = self.vision_model(pixel_values=pixel_values)
        out.pooler_output = self.visual_projection(out.last_hidden_state)
        return out

    def get_text_features(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        **kwargs: object,
    ) -> BaseModelOutputWithPooling:
        """The text output with ``pooler_output`` replaced by the projected eos state (B, D)."""
        out = self.text_model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids)
        out.pooler_output = self.text_projection(out.pooler_output)
        return out

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        return_loss: bool | None = None,
        **kwargs: object,
    ) -> CLIPOutput:
        """CLIP's forward: normalised embeddings, ``logits_per_image`` = exp(logit_scale) * cos, optional loss."""
        if input_ids is None or pixel_values is None:
            raise ValueError(
                "forward needs both input_ids and pixel_values (use get_*_features for one tower)"
            )
        vision = self.get_image_features(pixel_values)
        text = self.get_text_features(input_ids, attention_mask, position_ids)
        image_embeds = F.normalize(vision.pooler_output, dim=-1)
        text_embeds = F.normalize(text.pooler_output, dim=-1)
        logits_per_text = self.logit_scale.exp() * text_embeds @ image_embeds.t()
        loss = None
        if return_loss:
            target = torch.arange(len(logits_per_text), device=logits_per_text.device)
            loss = (
                F.cross_entropy(logits_per_text, target) + F.cross_entropy(logits_per_text.t(), target)
            ) / 2
        return CLIPOutput(
            loss=loss,
            logits_per_image=logits_per_text.t(),
            logits_per_text=logits_per_text,
            text_embeds=text_embeds,
            image_embeds=image_embeds,
            text_model_output=text,
            vision_model_output=vision,
        )
