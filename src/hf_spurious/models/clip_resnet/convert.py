"""Convert open_clip-format state dicts of ResNet CLIPs (RN50, RN101, RN50x4, ...) to :class:`ClipResNetModel`.

Input: the ``state_dict`` of open_clip's ``CLIP`` with a ``ModifiedResNet`` visual tower, e.g. the Hub's
``timm/resnet50_clip.openai/open_clip_model.safetensors`` (or ``open_clip_pytorch_model.bin``, read with
``torch.load(weights_only=True)``; a ``{"state_dict": ...}`` training checkpoint with ``module.``
prefixes is unwrapped). OpenAI's TorchScript ``.pt`` archives are not read (they need unpickling).

Key mapping (open_clip -> this model; ``N`` a text block, ``S`` a stage 1..4, ``I`` a block index,
``P`` one of ``weight, bias, running_mean, running_var, num_batches_tracked``):

==========================================================  ==========================================================
open_clip                                                   ClipResNetModel
==========================================================  ==========================================================
``visual.conv{1,2,3}.weight``, ``visual.bn{1,2,3}.P``        ``vision_model.conv{1,2,3}.weight``, ``vision_model.bn{1,2,3}.P``
``visual.layerS.I.conv{1,2,3}.weight``, ``...bn{1,2,3}.P``   ``vision_model.layerS.I.conv{1,2,3}.weight``, ``...bn{1,2,3}.P``
``visual.layerS.I.downsample.0.weight`` (1x1 conv)           ``vision_model.layerS.I.downsample.conv.weight``
``visual.layerS.I.downsample.1.P`` (batch norm)              ``vision_model.layerS.I.downsample.norm.P``
``visual.attnpool.positional_embedding`` (h*w+1, C)         ``visual_projection.positional_embedding``
``visual.attnpool.{q,k,v,c}_proj.{weight,bias}``             ``visual_projection.{q,k,v,c}_proj.{weight,bias}``
``token_embedding.weight``                                  ``text_model.embeddings.token_embedding.weight``
``positional_embedding`` (L, D)                             ``text_model.embeddings.position_embedding.weight``
``transformer.resblocks.N.ln_1.{weight,bias}``               ``text_model.encoder.layers.N.layer_norm1.{weight,bias}``
``transformer.resblocks.N.attn.in_proj_weight`` (3D, D)      rows [0:D], [D:2D], [2D:3D] -> ``...self_attn.{q,k,v}_proj.weight``
``transformer.resblocks.N.attn.in_proj_bias`` (3D,)          the same thirds -> ``...self_attn.{q,k,v}_proj.bias``
``transformer.resblocks.N.attn.out_proj.{weight,bias}``      ``text_model.encoder.layers.N.self_attn.out_proj.{weight,bias}``
``transformer.resblocks.N.ln_2.{weight,bias}``               ``text_model.encoder.layers.N.layer_norm2.{weight,bias}``
``transformer.resblocks.N.mlp.c_fc.{weight,bias}``           ``text_model.encoder.layers.N.mlp.fc1.{weight,bias}``
``transformer.resblocks.N.mlp.c_proj.{weight,bias}``         ``text_model.encoder.layers.N.mlp.fc2.{weight,bias}``
``ln_final.{weight,bias}``                                   ``text_model.final_layer_norm.{weight,bias}``
``text_projection`` (D, E), used as ``x @ W``               ``text_projection.weight`` = its transpose (E, D)
``logit_scale`` (scalar or (1,))                            ``logit_scale`` (scalar)
==========================================================  ==========================================================

Dropped when present: ``attn_mask`` (the causal mask buffer) and OpenAI's ``input_resolution``,
``context_length``, ``vocab_size`` entries. Any other key is an error naming it. The configuration is read
off the tensor shapes (:func:`infer_config`); heads follow OpenAI's rule of one per 64 channels.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from .configuration import OPENAI_RESNET_CONFIGS, ClipResNetConfig, resnet_clip_config

__all__ = [
    "convert_openclip_checkpoint",
    "hf_to_openclip",
    "infer_config",
    "load_openclip_state_dict",
    "openclip_to_hf",
]

DROPPED = ("attn_mask", "input_resolution", "context_length", "vocab_size")
_TEXT_BLOCK = "text_model.encoder.layers."
_RENAMES = (  # (open_clip pattern, HF replacement), applied by re.fullmatch in order
    (r"visual\.attnpool\.(.+)", r"visual_projection.\1"),
    (r"visual\.(layer\d\.\d+)\.downsample\.0\.(.+)", r"vision_model.\1.downsample.conv.\2"),
    (r"visual\.(layer\d\.\d+)\.downsample\.1\.(.+)", r"vision_model.\1.downsample.norm.\2"),
    (r"visual\.((?:conv|bn)\d|layer\d\.\d+\.(?:conv|bn)\d)\.(.+)", r"vision_model.\1.\2"),
    (r"token_embedding\.weight", r"text_model.embeddings.token_embedding.weight"),
    (r"positional_embedding", r"text_model.embeddings.position_embedding.weight"),
    (r"transformer\.resblocks\.(\d+)\.ln_1\.(.+)", _TEXT_BLOCK + r"\1.layer_norm1.\2"),
    (r"transformer\.resblocks\.(\d+)\.ln_2\.(.+)", _TEXT_BLOCK + r"\1.layer_norm2.\2"),
    (r"transformer\.resblocks\.(\d+)\.attn\.out_proj\.(.+)", _TEXT_BLOCK + r"\1.self_attn.out_proj.\2"),
    (r"transformer\.resblocks\.(\d+)\.mlp\.c_fc\.(.+)", _TEXT_BLOCK + r"\1.mlp.fc1.\2"),
    (r"transformer\.resblocks\.(\d+)\.mlp\.c_proj\.(.+)", _TEXT_BLOCK + r"\1.mlp.fc2.\2"),
    (r"ln_final\.(.+)", r"text_model.final_layer_norm.\1"),
    (r"logit_scale", r"logit_scale"),
)
_IN_PROJ = re.compile(r"transformer\.resblocks\.(\d+)\.attn\.in_proj_(weight|bias)")


def _rename(key: str) -> str | None:
    for pattern, repl in _RENAMES:
        if re.fullmatch(pattern, key):
            return re.sub(pattern, repl, key)
    return None


def openclip_to_hf(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename / split / transpose an open_clip ResNet-CLIP state dict into :class:`ClipResNetModel`'s keys."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if key in DROPPED:
            continue
        if key == "text_projection":
            out["text_projection.weight"] = value.t().contiguous()
            continue
        if key == "logit_scale":
            out[key] = value.reshape(())
            continue
        m = _IN_PROJ.fullmatch(key)
        if m:
            for name, part in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3, dim=0)):
                out[f"{_TEXT_BLOCK}{m.group(1)}.self_attn.{name}.{m.group(2)}"] = part.contiguous()
            continue
        new = _rename(key)
        if new is None:
            raise ValueError(
                f"unexpected key {key!r} in the open_clip state dict; only ResNet CLIPs (visual.conv1, "
                "visual.layer*, visual.attnpool, a CLIP text transformer) can be converted"
            )
        out[new] = value
    return out


def hf_to_openclip(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of :func:`openclip_to_hf` (q/k/v re-fused, projection transposed back)."""
    inverse = (
        (r"visual_projection\.(.+)", r"visual.attnpool.\1"),
        (r"vision_model\.(layer\d\.\d+)\.downsample\.conv\.(.+)", r"visual.\1.downsample.0.\2"),
        (r"vision_model\.(layer\d\.\d+)\.downsample\.norm\.(.+)", r"visual.\1.downsample.1.\2"),
        (r"vision_model\.(.+)", r"visual.\1"),
        (r"text_model\.embeddings\.token_embedding\.weight", "token_embedding.weight"),
        (r"text_model\.embeddings\.position_embedding\.weight", "positional_embedding"),
        (r"text_model\.encoder\.layers\.(\d+)\.layer_norm1\.(.+)", r"transformer.resblocks.\1.ln_1.\2"),
        (r"text_model\.encoder\.layers\.(\d+)\.layer_norm2\.(.+)", r"transformer.resblocks.\1.ln_2.\2"),
        (
            r"text_model\.encoder\.layers\.(\d+)\.self_attn\.out_proj\.(.+)",
            r"transformer.resblocks.\1.attn.out_proj.\2",
        ),
        (r"text_model\.encoder\.layers\.(\d+)\.mlp\.fc1\.(.+)", r"transformer.resblocks.\1.mlp.c_fc.\2"),
        (r"text_model\.encoder\.layers\.(\d+)\.mlp\.fc2\.(.+)", r"transformer.resblocks.\1.mlp.c_proj.\2"),
        (r"text_model\.final_layer_norm\.(.+)", r"ln_final.\1"),
        (r"logit_scale", "logit_scale"),
    )
    qkv = re.compile(r"text_model\.encoder\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)")
    out: dict[str, torch.Tensor] = {}
    parts: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for key, value in state_dict.items():
        if key.endswith("position_ids"):
            continue
        if key == "text_projection.weight":
            out["text_projection"] = value.t().contiguous()
            continue
        m = qkv.fullmatch(key)
        if m:
            parts.setdefault((m.group(1), m.group(3)), {})[m.group(2)] = value
            continue
        for pattern, repl in inverse:
            if re.fullmatch(pattern, key):
                out[re.sub(pattern, repl, key)] = value
                break
        else:
            raise ValueError(f"no open_clip name for {key!r}")
    for (block, kind), qkv_parts in parts.items():
        out[f"transformer.resblocks.{block}.attn.in_proj_{kind}"] = torch.cat(
            [qkv_parts["q"], qkv_parts["k"], qkv_parts["v"]]
        )
    return out


def _count(state_dict: Mapping[str, torch.Tensor], pattern: str) -> int:
    found = {m.group(1) for k in state_dict if (m := re.match(pattern, k))}
    return len(found)


def infer_config(state_dict: Mapping[str, torch.Tensor], *, quick_gelu: bool = True) -> ClipResNetConfig:
    """The :class:`ClipResNetConfig` an open_clip ResNet-CLIP state dict was built from (read off the shapes)."""
    need = (
        "visual.conv1.weight",
        "visual.attnpool.positional_embedding",
        "visual.attnpool.c_proj.weight",
        "token_embedding.weight",
        "positional_embedding",
        "text_projection",
    )
    missing = [k for k in need if k not in state_dict]
    if missing:
        raise ValueError(f"not an open_clip ResNet-CLIP state dict: missing {missing}")
    width = int(state_dict["visual.conv1.weight"].shape[0]) * 2
    layers = [_count(state_dict, rf"visual\.layer{s}\.(\d+)\.") for s in range(1, 5)]
    grid = round((state_dict["visual.attnpool.positional_embedding"].shape[0] - 1) ** 0.5)
    embed_dim = int(state_dict["visual.attnpool.c_proj.weight"].shape[0])
    vocab, text_width = (int(n) for n in state_dict["token_embedding.weight"].shape)
    text_layers = _count(state_dict, r"transformer\.resblocks\.(\d+)\.")
    text = dict(
        vocab_size=vocab,
        hidden_size=text_width,
        intermediate_size=int(state_dict["transformer.resblocks.0.mlp.c_fc.weight"].shape[0]),
        num_hidden_layers=text_layers,
        num_attention_heads=max(1, text_width // 64),
        max_position_embeddings=int(state_dict["positional_embedding"].shape[0]),
        hidden_act="quick_gelu" if quick_gelu else "gelu",
        projection_dim=embed_dim,
        bos_token_id=vocab - 2,
        eos_token_id=vocab - 1,
        pad_token_id=vocab - 1,
    )
    vision = dict(layers=layers, width=width, image_size=32 * grid, output_dim=embed_dim)
    return ClipResNetConfig(text_config=text, vision_config=vision, projection_dim=embed_dim)


def load_openclip_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a ``.safetensors`` file, or a ``.bin`` / ``.pt`` state dict with ``torch.load(weights_only=True)``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file  # lazy: only for conversion

        sd: Any = load_file(str(path))
    else:
        try:
            sd = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as err:
            raise ValueError(
                f"{path} is not a plain state dict readable with weights_only=True ({err}); OpenAI's "
                "TorchScript .pt files are not supported: use open_clip_model.safetensors from the Hub"
            ) from err
    if isinstance(sd, Mapping) and "state_dict" in sd:
        sd = sd["state_dict"]
    if not isinstance(sd, Mapping):
        raise ValueError(f"{path} holds a {type(sd).__name__}, not a state dict")
    return {k.removeprefix("module."): v for k, v in sd.items()}


def convert_openclip_checkpoint(
    checkpoint: str | Path,
    out_dir: str | Path,
    *,
    config: str | ClipResNetConfig | None = None,
    quick_gelu: bool = True,
    processor: Any = None,
) -> Path:
    """Convert an open_clip ResNet-CLIP checkpoint into a ``from_pretrained`` folder; return the folder.

    ``config``: a released geometry name (``"rn50"``, ...; checked against the tensors), a config, or
    None to infer it from the tensor shapes. ``processor`` (e.g. a ``CLIPProcessor`` with OpenAI's
    tokenizer and a ``CLIPImageProcessor`` at the model's image size) is saved beside the model.
    """
    from .modeling import ClipResNetModel

    sd = load_openclip_state_dict(checkpoint)
    inferred = infer_config(sd, quick_gelu=quick_gelu)
    if isinstance(config, str):
        named = resnet_clip_config(config, quick_gelu=quick_gelu)
        for attr in ("layers", "width", "image_size", "output_dim"):
            a, b = getattr(named.vision_config, attr), getattr(inferred.vision_config, attr)
            if a != b:
                raise ValueError(
                    f"{checkpoint} does not match --config {config}: vision {attr} is {b}, "
                    f"{config} has {a}; omit --config to infer it (known: {', '.join(OPENAI_RESNET_CONFIGS)})"
                )
        config = named
    model = ClipResNetModel(config or inferred)
    result = model.load_state_dict(openclip_to_hf(sd), strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("position_ids")]
    if missing or result.unexpected_keys:
        raise ValueError(
            f"{checkpoint}: converted weights do not fit the model: missing {missing[:5]}, "
            f"unexpected {list(result.unexpected_keys)[:5]}"
        )
    out = Path(out_dir)
    model.eval().save_pretrained(out)
    if processor is not None:
        processor.save_pretrained(out)
    return out
