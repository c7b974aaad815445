"""Tiny, randomly initialised models for tests and the offline demo.

Everything here is built from configs with deterministic random weights: these are **random test
models, never real checkpoints**. They exist because no weights can be downloaded on the machines
this project runs on; the real loading code (``from_pretrained(id or dir)``) is exercised on them.

Each builder returns the same objects a real checkpoint gives (model + processor, or a diffusers
pipeline), and :func:`save_tiny` writes them with ``save_pretrained`` so that
``AutoModel`` / ``AutoProcessor`` / ``AutoPipelineForInpainting`` ``.from_pretrained(dir)`` reload them.
Modules: :mod:`.words` (the built-in vocabulary), :mod:`.tokenizer`, :mod:`.towers` (shared config and
seeding), :mod:`.clip`, :mod:`.clip_resnet`, :mod:`.blip`, :mod:`.siglip` (SigLIP and SigLIP 2, tokenizers in
:mod:`.siglip_tokenizer`), :mod:`.detector` (OWL-ViT), :mod:`.inpaint`, :mod:`.saving`.
"""

from __future__ import annotations

from hf_spurious.models.tiny.blip import tiny_blip_captioner, tiny_blip_retrieval
from hf_spurious.models.tiny.clip import tiny_clip
from hf_spurious.models.tiny.clip_resnet import tiny_clip_resnet
from hf_spurious.models.tiny.detector import tiny_owlvit
from hf_spurious.models.tiny.inpaint import tiny_inpaint_pipeline
from hf_spurious.models.tiny.saving import TINY_KINDS, save_tiny
from hf_spurious.models.tiny.siglip import tiny_siglip, tiny_siglip2
from hf_spurious.models.tiny.siglip_tokenizer import build_siglip2_tokenizer, build_siglip_tokenizer
from hf_spurious.models.tiny.tokenizer import build_bert_tokenizer, build_word_tokenizer
from hf_spurious.models.tiny.vsepp import tiny_vsepp
from hf_spurious.models.tiny.words import DEFAULT_WORDS

__all__ = [
    "DEFAULT_WORDS",
    "TINY_KINDS",
    "build_bert_tokenizer",
    "build_siglip2_tokenizer",
    "build_siglip_tokenizer",
    "build_word_tokenizer",
    "save_tiny",
    "tiny_blip_captioner",
    "tiny_blip_retrieval",
    "tiny_clip",
    "tiny_clip_resnet",
    "tiny_inpaint_pipeline",
    "tiny_owlvit",
    "tiny_siglip",
    "tiny_siglip2",
    "tiny_vsepp",
]
