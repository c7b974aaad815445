"""Offline SentencePiece-style tokenizers for the tiny SigLIP (T5-like) and SigLIP 2 (Gemma-like) models.

Both are BPE over ``▁``-marked text (spaces become ``▁``, as SentencePiece does), built from a word list:
the vocabulary holds the special tokens, the 256 byte-fallback tokens ``<0x00>`` ... ``<0xFF>``, single
characters, and BPE merges that make each listed word one token (``▁cat``): every merge extends a
``▁``-led prefix and ``▁`` is never a merge's right part, so merges never cross words and a listed word
always ends as a single token when ``▁``-led. The SigLIP one prefixes the text with ``▁`` (as T5's
SentencePiece does); the SigLIP 2 one, like Gemma's (and ``Siglip2Tokenizer``, which rebuilds its
normaliser on load), does not, so a text's first word is spelled out in characters.

* :func:`build_siglip_tokenizer` (SigLIP): lower-cases, prefixes ``▁`` like T5's SentencePiece, appends
  ``</s>``; ``</s>`` is also the pad token (as in ``google/siglip-*``); a ``PreTrainedTokenizerFast``.
* :func:`build_siglip2_tokenizer` (SigLIP 2): a ``Siglip2Tokenizer`` (Gemma BPE + lower-casing), with
  ``<eos>`` appended and ``<pad>`` padding. Both pad on the right, to ``model_max_length`` = 64 by default.
"""

from __future__ import annotations

import string
from collections.abc import Iterable
from typing import Any

from hf_spurious.models.tiny.words import DEFAULT_WORDS

__all__ = ["build_siglip2_tokenizer", "build_siglip_tokenizer"]

_SPACE = "▁"
_SIGLIP_SPECIALS = ("<pad>", "</s>", "<unk>")
_SIGLIP2_SPECIALS = ("<pad>", "<eos>", "<bos>", "<unk>", "<mask>")


def _words(words: Iterable[str] | None) -> list[str]:
    out: dict[str, None] = {}
    for raw in DEFAULT_WORDS if words is None else words:
        if not isinstance(raw, str):
            raise TypeError(f"tokenizer words must be strings, got {raw!r}")
        for w in raw.lower().split():
            out.setdefault(w, None)
    return list(out)


def _chain(word: str) -> list[tuple[str, str]]:
    """Merges that build ``word`` left to right: (w0, w1), (w0w1, w2), ..."""
    return [(word[:i], word[i]) for i in range(1, len(word))]


def _vocab_and_merges(
    words: list[str], specials: tuple[str, ...]
) -> tuple[dict[str, int], list[tuple[str, str]]]:
    merges: dict[tuple[str, str], None] = {}
    for w in words:
        merges.update(dict.fromkeys(_chain(_SPACE + w)))
    chars = [*string.ascii_lowercase, *string.digits, *string.punctuation, _SPACE]
    chars += sorted({c for w in words for c in w} - set(chars))
    tokens = [*specials, *(f"<0x{b:02X}>" for b in range(256)), *chars, *(a + b for a, b in merges)]
    return {t: i for i, t in enumerate(dict.fromkeys(tokens))}, list(merges)


def build_siglip_tokenizer(words: Iterable[str] | None = None, model_max_length: int = 64) -> Any:
    """A T5-style SentencePiece BPE tokenizer like SigLIP's (``</s>`` appended and used as pad), offline."""
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import BPE
    from transformers import PreTrainedTokenizerFast  # lazy: heavy optional dependency

    vocab, merges = _vocab_and_merges(_words(words), _SIGLIP_SPECIALS)
    backend = Tokenizer(BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement=_SPACE, prepend_scheme="always")
    backend.decoder = decoders.Metaspace(replacement=_SPACE, prepend_scheme="always")
    backend.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", vocab["</s>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="</s>",
        pad_token="</s>",
        unk_token="<unk>",
        model_max_length=model_max_length,
        padding_side="right",
    )


def build_siglip2_tokenizer(words: Iterable[str] | None = None, model_max_length: int = 64) -> Any:
    """A Gemma-style ``Siglip2Tokenizer`` (lower-casing BPE, byte fallback), ``<eos>`` appended, offline."""
    from tokenizers import processors
    from transformers import Siglip2Tokenizer  # lazy: heavy optional dependency

    vocab, merges = _vocab_and_merges(_words(words), _SIGLIP2_SPECIALS)
    tok = Siglip2Tokenizer(
        vocab=vocab, merges=merges, model_max_length=model_max_length, padding_side="right"
    )
    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="$A <eos>", pair="$A <eos> $B <eos>", special_tokens=[("<eos>", vocab["<eos>"])]
    )
    return tok
