"""The gallery's caption -> classes matrix (for ODmAP relevance), computed once and kept in a store."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

import numpy as np
from tqdm.auto import tqdm

from hf_spurious.cache import ArrayStore, digest, digest_texts
from hf_spurious.text.phrases import PhraseExtractor
from hf_spurious.vocab import ClassVocabulary, load_vocabulary

MatrixMethod = Literal["lexical", "spacy"]
_CHUNK = 4096


def matrix_key(captions: Sequence[str], vocab: ClassVocabulary, method_id: str) -> str:
    """Store key of the matrix: the method (and parser), the vocabulary, its classes and the captions."""
    return "caption_classes-" + digest(
        method_id, vocab.fingerprint, list(vocab.classes), digest_texts(captions)
    )


def _cached(
    cache: ArrayStore, key: str, vocab: ClassVocabulary, n_captions: int
) -> tuple[np.ndarray, tuple[str, ...]] | None:
    """The stored matrix and its class names, or None on a miss (or a stale / mismatched entry)."""
    matrix = cache.get(key)
    meta = cache.meta(key)
    if matrix is None or meta is None:
        return None
    names = tuple(str(n) for n in meta.get("class_names", ()))
    if names != vocab.classes or matrix.shape != (n_captions, len(names)):
        return None
    return matrix.astype(bool, copy=False), names


def _compute(
    captions: list[str],
    vocab: ClassVocabulary,
    method: MatrixMethod,
    extractor: PhraseExtractor | None,
    progress: bool,
) -> np.ndarray:
    matrix = np.zeros((len(captions), len(vocab.classes)), dtype=bool)
    index = {c: j for j, c in enumerate(vocab.classes)}
    bar = tqdm(total=len(captions), desc=f"caption classes ({method})", unit="caption", disable=not progress)
    for lo in range(0, len(captions), _CHUNK):
        block = captions[lo : lo + _CHUNK]
        if method == "lexical":
            found = [vocab.classes_in(c) for c in block]
        else:
            assert extractor is not None
            found = [
                vocab.classes_in_phrases(phrases, annotated=True)
                for phrases in extractor.phrases_batch(block, vocab, cover_mentions=False, progress=False)
            ]
        for g, classes in enumerate(found, start=lo):
            for c in classes:
                matrix[g, index[c]] = True
        bar.update(len(block))
    bar.close()
    return matrix


def caption_class_matrix(
    captions: Sequence[str],
    vocabulary: ClassVocabulary | str,
    method: MatrixMethod = "lexical",
    cache: ArrayStore | None = None,
    extractor: PhraseExtractor | None = None,
    *,
    progress: bool = True,
) -> tuple[np.ndarray, tuple[str, ...]]:
    """``(M, class_names)``: ``M[g, c]`` is True when caption ``g`` mentions class ``c``.

    ``"lexical"`` matches the whole caption (:meth:`ClassVocabulary.classes_in`); ``"spacy"`` takes the
    union of the classes of its noun chunks (``extractor``, default ``PhraseExtractor()``; mentions outside
    every chunk do not count). With ``cache`` (an :class:`~hf_spurious.cache.ArrayStore` or anything with
    its ``get`` / ``meta`` / ``put``) the matrix is stored under :func:`matrix_key` and read back on the
    next call.
    """
    vocab = load_vocabulary(vocabulary)
    if method not in ("lexical", "spacy"):
        raise ValueError(f"unknown method {method!r}; choose 'lexical' or 'spacy'")
    captions = list(captions)
    bad = [i for i, c in enumerate(captions) if not isinstance(c, str)]
    if bad:
        raise TypeError(f"captions must be strings; item {bad[0]} is {type(captions[bad[0]]).__name__}")
    if method == "spacy":
        extractor = extractor or PhraseExtractor()
        method_id = f"spacy:{extractor.parser_id}"
    else:
        method_id = "lexical"
    if cache is None:
        return _compute(captions, vocab, method, extractor, progress), vocab.classes
    key = matrix_key(captions, vocab, method_id)
    hit = _cached(cache, key, vocab, len(captions))
    if hit is not None:
        return hit
    matrix = _compute(captions, vocab, method, extractor, progress)
    cache.put(key, matrix, class_names=list(vocab.classes))
    return matrix, vocab.classes


def matcher_agreement(predicted: Sequence[Iterable[str]], gold: Sequence[Iterable[str]]) -> dict[str, float]:
    """Agreement of a caption -> classes matcher with hand labels, per caption, in percent.

    ``precision``: mean over captions with at least one predicted class of |P ∩ G| / |P|; ``recall``: mean
    over captions with at least one labelled class of |P ∩ G| / |G|; ``exact_match``: share of captions
    with P == G (all captions). ``captions``: how many were compared.
    """
    if len(predicted) != len(gold):
        raise ValueError(f"{len(predicted)} predicted class sets for {len(gold)} labelled captions")
    pairs = [(frozenset(p), frozenset(g)) for p, g in zip(predicted, gold)]
    prec = [len(p & g) / len(p) for p, g in pairs if p]
    rec = [len(p & g) / len(g) for p, g in pairs if g]
    exact = [p == g for p, g in pairs]

    def pct(xs: list) -> float:
        return 100.0 * sum(xs) / len(xs) if xs else float("nan")

    return {
        "precision": pct(prec), "recall": pct(rec), "exact_match": pct(exact), "captions": float(len(pairs)),
    }  # fmt: skip
