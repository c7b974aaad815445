"""Offline tokenizers from a word list: CLIP-style byte-level BPE and BERT WordPiece (BLIP's kind)."""

from __future__ import annotations

import itertools
import re
import string
from collections.abc import Iterable, Sequence
from typing import Any

from hf_spurious.models.tiny.words import DEFAULT_WORDS

__all__ = ["build_bert_tokenizer", "build_word_tokenizer"]

_BOS = "<|startoftext|>"
_EOS = "<|endoftext|>"
_WORD_RE = re.compile(r"^[^\W\d_]+$")
_BERT_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_BLIP_BOS = "[DEC]"


def _byte_map() -> dict[int, str]:
    from transformers.convert_slow_tokenizer import bytes_to_unicode  # lazy: heavy optional dependency

    return bytes_to_unicode()


def _word_symbols(word: str, byte_map: dict[int, str]) -> list[str]:
    """A word's byte-level symbols, the last one carrying CLIP's end-of-word suffix."""
    symbols = [byte_map[b] for b in word.encode("utf-8")]
    symbols[-1] += "</w>"
    return symbols


def _bpe(symbols: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """Plain BPE on one word: repeatedly merge the adjacent pair of lowest rank (all its occurrences)."""
    symbols = list(symbols)
    while len(symbols) > 1:
        pairs = set(itertools.pairwise(symbols))
        best = min(pairs, key=lambda p: ranks.get(p, float("inf")))
        if best not in ranks:
            break
        merged: list[str] = []
        i = 0
        while i < len(symbols):
            if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                merged.append(symbols[i] + symbols[i + 1])
                i += 2
            else:
                merged.append(symbols[i])
                i += 1
        symbols = merged
    return symbols


def _clean_words(words: Iterable[str]) -> list[str]:
    out: dict[str, None] = {}
    for raw in words:
        if not isinstance(raw, str):
            raise TypeError(f"tokenizer words must be strings, got {raw!r}")
        for w in raw.lower().split():  # multi-word entries ("hot dog") become their words
            if not _WORD_RE.match(w):
                raise ValueError(
                    f"tokenizer word {w!r} must consist of letters only (CLIP's pre-tokenizer splits digits and "
                    "punctuation off); split it into words first"
                )
            out.setdefault(w, None)
    return list(out)


def _word_merges(words: Sequence[str]) -> list[tuple[str, str]]:
    """BPE merges that make every word a single token (fixed point: later merges never break earlier words)."""
    byte_map = _byte_map()
    ranks: dict[tuple[str, str], int] = {}
    merges: list[tuple[str, str]] = []
    for word in words:
        symbols = _word_symbols(word, byte_map)
        pieces = _bpe(symbols, ranks)
        while len(pieces) > 1:
            # A new merge has the highest rank, so it only fires when nothing else does: words that are
            # already single tokens keep their tokenization.
            pair = (pieces[0], pieces[1])
            ranks[pair] = len(merges)
            merges.append(pair)
            pieces = _bpe(symbols, ranks)
    return merges


def build_word_tokenizer(words: Iterable[str] | None = None, model_max_length: int = 32) -> Any:
    """A working CLIP-style byte-level BPE tokenizer (a ``CLIPTokenizer``) built offline from a word list.

    The base vocabulary holds the 256 byte symbols (with and without CLIP's ``</w>`` end-of-word suffix),
    then BPE merges that make each listed word (lower-cased, like CLIP) a single token; any other text
    still tokenizes through bytes. ``<|startoftext|>`` and ``<|endoftext|>`` are the last two ids, so
    the eos id is the largest id (OWL-ViT pools at the argmax id) and never 2 (CLIP's legacy pooling).
    """
    from transformers import CLIPTokenizer  # lazy: heavy optional dependency

    word_list = _clean_words(DEFAULT_WORDS if words is None else words)
    merges = _word_merges(word_list)
    chars = list(_byte_map().values())
    tokens = chars + [c + "</w>" for c in chars] + [a + b for a, b in merges] + [_BOS, _EOS]
    vocab = {t: i for i, t in enumerate(dict.fromkeys(tokens))}
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=model_max_length)


def build_bert_tokenizer(words: Iterable[str] | None = None, model_max_length: int = 32) -> Any:
    """A BERT WordPiece tokenizer (a ``BertTokenizer``) from a word list (the kind BLIP uses), built offline.

    Each listed word is one token; any other word falls back to single characters (``a``, ``##b``, ...).
    Like BLIP's tokenizer it adds ``[DEC]`` as the bos token (the captioner's decoder start).
    """
    from transformers import BertTokenizer  # lazy: heavy optional dependency

    word_list = _clean_words(DEFAULT_WORDS if words is None else words)
    singles = list(string.ascii_lowercase + string.digits + string.punctuation)
    tokens = [*_BERT_SPECIALS, *singles, *("##" + c for c in singles), *word_list, _BLIP_BOS]
    vocab = {t: i for i, t in enumerate(dict.fromkeys(tokens))}
    return BertTokenizer(vocab=vocab, bos_token=_BLIP_BOS, model_max_length=model_max_length)
