"""The gallery's caption -> classes matrix (for ODmAP relevance), computed once and cached on disk."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
from tqdm.auto import tqdm

from hf_spurious.text.phrases import PhraseExtractor
from hf_spurious.vocab import ClassVocabulary, load_vocabulary

MatrixMethod = Literal["lexical", "spacy"]
_CHUNK = 4096


def _cache_key(captions: Sequence[str], vocab: ClassVocabulary, method_id: str) -> str:
    h = hashlib.sha256()
    h.update(f"{method_id}\n{vocab.fingerprint}\n{','.join(vocab.classes)}\n{len(captions)}\n".encode())
    for c in captions:
        h.update(c.encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()[:24]


def caption_class_matrix(
    captions: Sequence[str],
    vocabulary: ClassVocabulary | str,
    method: MatrixMethod = "lexical",
    cache_dir: str | os.PathLike[str] | None = None,
    extractor: PhraseExtractor | None = None,
    *,
    progress: bool = True,
) -> tuple[np.ndarray, tuple[str, ...]]:
    """``(M, class_names)``: ``M[g, c]`` is True when caption ``g`` mentions class ``c``.

    ``"lexical"`` matches the whole caption (:meth:`ClassVocabulary.classes_in`); ``"spacy"`` takes the
    union of the classes of its noun chunks (``extractor``, default ``PhraseExtractor()``; mentions outside
    every chunk do not count). With ``cache_dir`` the matrix is stored as ``.npz`` keyed by a hash of the
    captions, the vocabulary and the method, and read back on the next call.
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
    path = None
    if cache_dir is not None:
        path = Path(cache_dir) / f"caption_classes-{_cache_key(captions, vocab, method_id)}.npz"
        if path.is_file():
            with np.load(path, allow_pickle=False) as data:
                names = tuple(str(n) for n in data["class_names"])
                matrix = data["matrix"]
            if names == vocab.classes and matrix.shape == (len(captions), len(names)):
                return matrix.astype(bool, copy=False), names
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
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
        np.savez_compressed(tmp, matrix=matrix, class_names=np.array(vocab.classes, dtype=str))
        os.replace(tmp, path)
    return matrix, vocab.classes
