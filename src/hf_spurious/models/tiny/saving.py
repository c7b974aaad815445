"""``save_tiny``: build a tiny random model of a kind and save it like a real checkpoint."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from hf_spurious.models.tiny.blip import tiny_blip_captioner, tiny_blip_retrieval
from hf_spurious.models.tiny.clip import tiny_clip
from hf_spurious.models.tiny.clip_resnet import tiny_clip_resnet
from hf_spurious.models.tiny.detector import tiny_owlvit
from hf_spurious.models.tiny.inpaint import tiny_inpaint_pipeline
from hf_spurious.models.tiny.siglip import tiny_siglip, tiny_siglip2
from hf_spurious.models.tiny.vsepp import tiny_vsepp

__all__ = ["TINY_KINDS", "save_tiny"]

_BUILDERS: dict[str, Callable[..., Any]] = {
    "clip": tiny_clip,
    "clip-resnet": tiny_clip_resnet,
    "blip": tiny_blip_retrieval,
    "blip-captioner": tiny_blip_captioner,
    "siglip": tiny_siglip,
    "siglip2": tiny_siglip2,
    "inpaint": tiny_inpaint_pipeline,
    "owlvit": tiny_owlvit,
    "vsepp": tiny_vsepp,
}
TINY_KINDS = tuple(_BUILDERS)
"""The kinds :func:`save_tiny` builds."""

_README = """---
tags: [hf-spurious, random-test-model]
---
# Tiny random `{kind}` test model

Built by `hf_spurious.models.tiny.save_tiny({kind!r}, ...)` with random weights (seed {seed}).
**This is not a real checkpoint**: it only exercises the loading and inference code offline.
"""


def save_tiny(kind: str, out_dir: str | Path, **kw: Any) -> Path:
    """Build a tiny random model of ``kind`` and ``save_pretrained`` it (with its processor) into ``out_dir``.

    ``kind`` is one of ``"clip"``, ``"clip-resnet"`` (CLIP with a modified-ResNet tower), ``"blip"`` (retrieval), ``"blip-captioner"``, ``"siglip"``, ``"siglip2"`` (NaFlex), ``"inpaint"``,
    ``"owlvit"``;
    ``kw`` goes to the builder. The folder reloads with ``from_pretrained(out_dir)`` like a real checkpoint.
    Returns ``out_dir`` as a ``Path``.
    """
    if kind not in _BUILDERS:
        raise ValueError(f"unknown tiny model kind {kind!r}; choose one of {', '.join(TINY_KINDS)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    built = _BUILDERS[kind](**kw)
    if kind == "inpaint":
        built.save_pretrained(out)
    else:
        model, processor = built
        model.save_pretrained(out)
        processor.save_pretrained(out)
    (out / "README.md").write_text(_README.format(kind=kind, seed=kw.get("seed", 0)), encoding="utf-8")
    return out
