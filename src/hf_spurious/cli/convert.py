"""``hf-spurious convert-openclip``: an open_clip ResNet-CLIP checkpoint -> a ``from_pretrained`` folder.

    hf-spurious convert-openclip --checkpoint open_clip_model.safetensors --out clip-rn50 --config rn50

The folder holds ``config.json`` (``model_type: clip_resnet``) and ``model.safetensors``, plus the
processor of ``--processor`` (OpenAI's tokenizer is the same for every OpenAI CLIP; the image processor's
size is set to the model's input size). The key mapping is in :mod:`hf_spurious.models.clip_resnet.convert`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hf_spurious.cli._common import add_out

CONFIGS = ("auto", "rn50", "rn101", "rn50x4", "rn50x16", "rn50x64")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--checkpoint",
        required=True,
        help="open_clip state dict: .safetensors, or .bin/.pt (loaded as tensors only: no code in the file runs)",
    )
    add_out(parser, None, "output folder for the converted model")
    parser.add_argument(
        "--config",
        choices=CONFIGS,
        default="auto",
        help="released geometry to check the weights against; auto = read it off the tensor shapes",
    )
    parser.add_argument(
        "--processor",
        default="openai/clip-vit-base-patch32",
        help="hub id or folder of a CLIP processor (tokenizer + image processor) to save beside the "
        "model; 'none' saves no processor",
    )
    parser.add_argument(
        "--gelu",
        choices=("quick", "exact"),
        default="quick",
        help="text-tower activation: quick (QuickGELU, every OpenAI-trained checkpoint) or exact GELU",
    )


def _processor(spec: str, image_size: int):
    if spec.lower() == "none":
        return None
    from transformers import AutoProcessor  # lazy: heavy optional dependency

    try:
        processor = AutoProcessor.from_pretrained(spec)
    except OSError as err:
        raise ValueError(
            f"cannot load the processor {spec!r} ({err}); pass --processor with a local CLIP processor "
            "folder, or --processor none and add one later"
        ) from err
    image_processor = getattr(processor, "image_processor", None)
    if image_processor is not None:
        image_processor.size = {"shortest_edge": image_size}
        image_processor.crop_size = {"height": image_size, "width": image_size}
    return processor


def run(args: argparse.Namespace) -> int:
    from hf_spurious.models.clip_resnet import (  # lazy: heavy
        convert_openclip_checkpoint,
        infer_config,
        load_openclip_state_dict,
    )

    if not Path(args.checkpoint).is_file():
        raise FileNotFoundError(
            f"--checkpoint {args.checkpoint}: no such file; pass the open_clip weights file "
            "(.safetensors, .bin or .pt)"
        )
    quick = args.gelu == "quick"
    image_size = infer_config(
        load_openclip_state_dict(args.checkpoint), quick_gelu=quick
    ).vision_config.image_size
    out = convert_openclip_checkpoint(
        args.checkpoint,
        args.out,
        config=None if args.config == "auto" else args.config,
        quick_gelu=quick,
        processor=_processor(args.processor, image_size),
    )
    print(f"converted {args.checkpoint} -> {Path(out)} (load with hf_spurious.models.load_adapter)")
    return 0
