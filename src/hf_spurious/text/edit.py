"""Caption synthesis for counterfactual images (spec §1.3): NP removal, prompts, or a captioner.

Failure modes, all left to the caller to count:

* a caption with no phrase of a removed class comes back **unchanged** (``np_removal``); pick captions
  with :func:`choose_caption` to avoid it;
* a caption whose every word belongs to removed phrases comes back as ``""``;
* an empty caption raises ``ValueError``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any, Literal

import numpy as np

from hf_spurious.records import Phrase
from hf_spurious.text.phrases import (
    DEFAULT_SPACY_MODEL,
    PhraseExtractor,
    lexical_spans,
    merge_spans,
    to_phrases,
)
from hf_spurious.text.templates import RngLike, prompt_caption
from hf_spurious.vocab import ClassVocabulary, load_vocabulary

EditMethod = Literal["np_removal", "prompt", "captioner"]
EDIT_METHODS: tuple[str, ...] = ("np_removal", "prompt", "captioner")

_CONNECTOR = r"(?:\b(?:and|or|nor|but)\b|&)"
_EDGE = rf"(?:[,;:\-–—]|{_CONNECTOR})"
_LEADING = re.compile(rf"^(?:{_EDGE}\s*)+", re.I)
_TRAILING = re.compile(rf"(?:\s*{_EDGE})+(?=\s*[.!?]*$)", re.I)
_DOUBLE_CONNECTOR = re.compile(rf"({_CONNECTOR})(?:\s*[,;:]?\s*{_CONNECTOR})+", re.I)
_CONNECTOR_THEN_PUNCT = re.compile(rf"({_CONNECTOR})\s*[,;:]+", re.I)
_PREPOSITION = (
    r"\b(?:with|of|on|in|into|onto|near|over|by|from|to|at|under|beside|behind|between|above|below|for)\b"
)
_PREP_THEN_CONNECTOR = re.compile(rf"({_PREPOSITION})\s*,?\s+{_CONNECTOR}", re.I)
_CONNECTOR_THEN_PREP = re.compile(rf"\s*,?\s+{_CONNECTOR}\s+(?={_PREPOSITION})", re.I)

# Words a removal can leave dangling (issue: "A jeep parked near", "Two dogs playing with in a park").
_PREP = (
    r"(?:with|of|on|in|into|onto|near|over|by|from|to|at|under|beside|behind|between|above|below|for|"
    r"across|through|atop|against|toward|towards|beneath|underneath|among)"
)
# A preposition with what belongs to it: "on top of", "in front of", "next to", "in the middle of".
_FULL_PREP = (
    r"(?:\b(?:in\s+front|on\s+top|on\s+the\s+top|in\s+the\s+middle|on\s+the\s+side|at\s+the\s+edge|"
    r"on\s+the\s+edge|at\s+the\s+top|at\s+the\s+bottom|at\s+the\s+end|in\s+the\s+back|"
    r"on\s+the\s+back|in\s+the\s+center|in\s+the\s+corner|next|close|out|up|down|away|"
    r"right)\s+)?\b" + _PREP + r"\b"
)
# Articles and possessives never stand before a preposition or at the end; quantifiers may stand before
# "of" ("two of the dogs"). Not here: "her", "these", "those" (also pronouns: "a man holding her on ...").
_DET = r"\b(?:a|an|the|his|their|its|my|our|your)\b"
_QUANTIFIER = r"\b(?:some|several|two|three|four|five)\b"
_END = r"(?=[\s.!?;:)\]\-–—]*$)"
_PREP_AT_END = re.compile(rf"\s*{_FULL_PREP}{_END}", re.I)
_PREP_BEFORE_PREP = re.compile(rf"{_FULL_PREP}(?=[\s,()\[\]\-–—]*\b{_PREP}\b)", re.I)
# "topped with, carrots and chicken" -> "topped with carrots ..." (a list goes on after the comma) ...
_PREP_COMMA_NOUN = re.compile(rf"(\b{_PREP})\s*,\s*(?![^\W\d_]+(?:ing|ed)\b)(?=[^\W_])", re.I)
# ... but "sitting on, reading a book" -> "sitting, reading a book" (a clause goes on)
_PREP_BEFORE_COMMA = re.compile(rf"\s*{_FULL_PREP}(?=[\s()\[\]\-–—]*,)", re.I)
# "A bunch of hanging from a hook", "sitting on reading a book": a place preposition before a verb.
_PREP_BEFORE_VERB = re.compile(
    r"\s*\b(?:of|on|in|at|with|near|over|under|beside|behind|onto|into|atop)\b(?=[\s()\[\]\-–—]*[^\W\d_]+ing\b)",
    re.I,
)
_LEADING_OF = re.compile(r"^([(\[\s\-–—]*)of\b\s*", re.I)
_OF_GAP = re.compile(r"\s+of\s+", re.I)
_DET_DANGLING = re.compile(
    rf"\s*(?:{_DET}(?=[\s()\[\]\-–—]*(?:[,.!?;:]|{_CONNECTOR}|\b{_PREP}\b|$))"
    rf"|{_QUANTIFIER}(?=[\s()\[\]\-–—]*(?:[,.!?;:]|{_CONNECTOR}|\b(?!of\b){_PREP}\b|$)))",
    re.I,
)


_CONJUNCTION = re.compile(_CONNECTOR, re.I)
_LEFT_GAP = re.compile(r"[\s,]*")  # between a conjunct and the conjunction on its right
_RIGHT_GAP = re.compile(r"\s*")  # between a conjunction and the conjunct on its right


def _neighbour(caption: str, pos: int, spans: list[tuple[int, int, bool]], left: bool):
    """The phrase ``(start, end, removed)`` next to ``pos`` (only a gap between), or None."""
    for s, e, removed in reversed(spans) if left else spans:
        if left and e <= pos and _LEFT_GAP.fullmatch(caption, e, pos):
            return s, e, removed
        if not left and s >= pos and _RIGHT_GAP.fullmatch(caption, pos, s):
            return s, e, removed
    return None


def _kept_beyond(caption: str, pos: int, spans: list[tuple[int, int, bool]], left: bool) -> bool:
    """Whether, once removed phrases are deleted (and the conjunctions that then meet have merged into
    one), a kept phrase is next to ``pos`` on that side."""
    while True:
        hit = _neighbour(caption, pos, spans, left)
        if hit is not None:
            if not hit[2]:
                return True
            pos = hit[0] if left else hit[1]
            continue
        gap = _LEFT_GAP if left else _RIGHT_GAP
        conj = next(
            (
                m
                for m in _CONJUNCTION.finditer(caption)
                if (gap.fullmatch(caption, m.end(), pos) if left else gap.fullmatch(caption, pos, m.start()))
            ),
            None,
        )
        if conj is None:
            return False
        pos = conj.start() if left else conj.end()


def dangling_conjunctions(
    caption: str, removed: Sequence[tuple[int, int]], kept: Sequence[tuple[int, int]]
) -> list[tuple[int, int]]:
    """Spans of coordinating conjunctions that a deletion leaves dangling (pure).

    A conjunction that joined two phrases ("A man and his dog play") of which one is removed, and that
    no longer stands between two kept phrases once the removed ones are gone ("A man and play"), goes
    with the removed phrase, together with the gap to it. Conjunctions between other words ("sitting
    and a dog standing") and inside phrases are left alone; relation verbs and prepositions are words,
    never deleted here.
    """
    spans = sorted([(s, e, True) for s, e in removed] + [(s, e, False) for s, e in kept])
    out = []
    for m in _CONJUNCTION.finditer(caption):
        cs, ce = m.span()
        if any(s < ce and cs < e for s, e, _ in spans):
            continue
        left, right = _neighbour(caption, cs, spans, True), _neighbour(caption, ce, spans, False)
        if left is None or right is None or not (left[2] or right[2]):
            continue
        if _kept_beyond(caption, cs, spans, True) and _kept_beyond(caption, ce, spans, False):
            continue
        out.append((left[1] if left[2] else cs, right[0] if right[2] else ce))
    return out


def tidy(text: str) -> str:
    """Collapse whitespace and clean up punctuation, connectors and words left dangling by a deletion.

    Dangling words: a determiner with no noun after it ("A dog and a" -> "A dog"); a preposition with no
    object, with what belongs to it ("parked near" / "on top of" at the end, "near on the sand" ->
    "on the sand", "of hanging" -> "hanging", "sitting on, reading" -> "sitting, reading"); a comma right
    after a preposition whose object follows ("topped with, carrots" -> "topped with carrots").
    """
    s = re.sub(r"\s+", " ", text)
    s = re.sub(r"\(\s*\)|\[\s*\]", " ", s)
    s = re.sub(r"\s+", " ", s).strip()
    s = re.sub(r"\s+([,.;:!?)\]])", r"\1", s)  # no space before closing punctuation
    s = re.sub(r"([(\[])\s+", r"\1", s)
    s = re.sub(r"([,;:])(?:\s*[,;:])+", r"\1", s)  # ", ," -> ","
    s = re.sub(r"[,;:]+(?=[.!?]|$)", "", s)  # "dog, ." -> "dog."
    s = _CONNECTOR_THEN_PUNCT.sub(r"\1", s)  # "and, a cat" -> "and a cat"
    s = _DOUBLE_CONNECTOR.sub(r"\1", s)  # "and and" -> "and"
    s = _PREP_THEN_CONNECTOR.sub(r"\1", s)  # "a man with and a cat" -> "a man with a cat"
    s = _CONNECTOR_THEN_PREP.sub(" ", s)  # "a dog and on a bench" -> "a dog on a bench"
    prev = None
    while prev != s:
        prev = s
        s = re.sub(r"\(\s*\)|\[\s*\]", " ", s)
        s = re.sub(r"\s*[(\[]\s*(?=[,.;:!?]*$)", "", s).strip()  # an opening bracket with nothing after it
        s = re.sub(r"^[)\]\s]+", "", s)  # a closing bracket with nothing before it
        s = _dangling_words(s)
        s = _LEADING.sub("", s).strip()
        s = _TRAILING.sub("", s).strip()
        s = re.sub(r"\s+([,.;:!?)\]])", r"\1", s)
        s = re.sub(r"([(\[])[\s,;:]+", r"\1", s)
        s = re.sub(r"[,;:]+(?=[)\]]|$)", "", s)
        s = re.sub(r"([,;:])(?:\s*[,;:])+", r"\1", s)
    if not re.search(r"[^\W_]", s):  # only punctuation is left
        return ""
    return s


def _dangling_words(s: str) -> str:
    """One pass of the word rules: a determiner with no noun after it, a preposition with no object
    (at the end, before another preposition, or before a comma that starts a clause) goes; a comma
    right after a preposition whose object follows goes."""
    s = _DET_DANGLING.sub("", s)
    s = _PREP_BEFORE_VERB.sub(" ", s)
    s = _LEADING_OF.sub(r"\1", s)
    s = _PREP_COMMA_NOUN.sub(r"\1 ", s)
    s = _PREP_BEFORE_PREP.sub("", s)
    s = _PREP_BEFORE_COMMA.sub("", s)
    s = _PREP_AT_END.sub("", s)
    return re.sub(r"\s+", " ", s).strip()


def _of_complements(
    caption: str, spans: list[tuple[int, int]], phrases: Sequence[Phrase]
) -> list[tuple[int, int]]:
    """ "of <phrase naming no class>" right after a removed phrase belongs to it ("a cup of tea")."""
    starts = {p.start: p for p in phrases if not p.classes}
    out = []
    for _, e in spans:
        gap = _OF_GAP.match(caption, e)
        if gap and gap.end() in starts:
            out.append((e, starts[gap.end()].end))
    return out


_LIST_COMMA = re.compile(r"\s*,\s*")


def _list_conjunction(
    piece: str,
    caption: str,
    start: int,
    end: int,
    removed: list[tuple[int, int]],
    kept: list[tuple[int, int]],
    dangling: list[tuple[int, int]],
) -> str:
    """``piece`` (``caption[start:end]``, kept text before a deletion) with its list comma turned into the
    conjunction the deletion takes away: "A, B and C" without C is "A and B", not "A, B"."""
    conj = _CONJUNCTION.match(caption, end)  # the deletion starts at a dangling conjunction ...
    if conj is None or not any(s == end for s, _ in dangling):
        return piece
    kept_here = sorted((s, e) for s, e in kept if start <= s and e <= end)
    if len(kept_here) < 2 or not caption[kept_here[-1][1] : end].isspace():
        return piece
    (_, a_end), (b_start, _) = kept_here[-2], kept_here[-1]
    gap = _LIST_COMMA.fullmatch(caption, a_end, b_start)
    if gap is None or any(a_end <= s < b_start for s, _ in removed):
        return piece
    return caption[start:a_end] + f" {conj.group()} " + caption[b_start:end]


def remove_phrases(caption: str, phrases: Iterable[Phrase], removed_classes: Iterable[str]) -> str:
    """Delete every phrase that mentions a removed class, then :func:`tidy` (pure).

    Words outside those phrases are kept, relation verbs included, except what the deletion leaves
    dangling, so the result reads as English: a conjunction (:func:`dangling_conjunctions`: "A man and
    his dog play" without dog is "A man play"), an "of <phrase naming no class>" complement of a removed
    phrase ("a cup of tea"), and, in :func:`tidy`, a preposition with no object ("Two dogs fighting over
    a frisbee" without frisbee is "Two dogs fighting"), a determiner with no noun, stray commas. Returns
    ``caption`` unchanged when no phrase matches, and ``""`` when nothing is left. A leading capital
    letter is restored.
    """
    if not isinstance(caption, str) or not caption.strip():
        raise ValueError(f"cannot edit an empty caption ({caption!r}); drop empty captions upstream")
    removed = frozenset([removed_classes] if isinstance(removed_classes, str) else removed_classes)
    spans, others = [], []
    phrases = list(phrases)
    for p in phrases:
        if not (0 <= p.start < p.end <= len(caption)) or caption[p.start : p.end] != p.text:
            raise ValueError(
                f"phrase {p.text!r} at [{p.start}, {p.end}) does not match caption {caption!r}; "
                "phrases must come from this caption"
            )
        (spans if p.classes & removed else others).append((p.start, p.end))
    if not spans:
        return caption
    spans = merge_spans(spans + _of_complements(caption, spans, phrases))
    kept = [(s, e) for s, e in others if not any(rs < e and s < re_ for rs, re_ in spans)]
    dangling = dangling_conjunctions(caption, spans, kept)
    pieces, pos = [], 0
    for s, e in merge_spans(spans + dangling):
        pieces.append(_list_conjunction(caption[pos:s], caption, pos, s, spans, kept, dangling))
        pos = e
    pieces.append(caption[pos:])
    out = tidy(" ".join(pieces))
    if out and caption.lstrip()[:1].isupper():
        out = out[0].upper() + out[1:]
    return out


def remove_mentions(caption: str, vocabulary: ClassVocabulary, removed_classes: Iterable[str]) -> str:
    """:func:`remove_phrases` with lexical phrases (mentions widened over determiners)."""
    mentions = vocabulary.mentions(caption)
    return remove_phrases(
        caption, to_phrases(caption, lexical_spans(caption, mentions), mentions), removed_classes
    )


def _known(classes: Iterable[str], vocab: ClassVocabulary) -> frozenset[str]:
    out = frozenset([classes] if isinstance(classes, str) else classes)
    unknown = sorted(c for c in out if c not in vocab)
    if unknown:
        raise ValueError(
            f"classes {unknown} are not active classes of vocabulary {vocab.name!r}; known: {list(vocab.classes)}"
        )
    return out


@lru_cache(maxsize=2)
def _default_extractor(model: str) -> PhraseExtractor:
    return PhraseExtractor(model)


def _without_leftovers(text: str, removed: frozenset[str], vocabulary: ClassVocabulary) -> str:
    while text and removed & vocabulary.classes_in(text):
        text = remove_mentions(text, vocabulary, removed)
    return text


def np_removal(
    caption: str,
    removed: Iterable[str],
    vocabulary: ClassVocabulary,
    extractor: PhraseExtractor | None = None,
) -> str:
    """Noun-phrase removal; afterwards no mention of a removed class is left (leftovers, e.g. words that a
    deletion joined into a new mention, are removed lexically)."""
    return np_removal_batch([caption], [removed], vocabulary, extractor)[0]


def np_removal_batch(
    captions: Sequence[str],
    removed: Sequence[Iterable[str]],
    vocabulary: ClassVocabulary,
    extractor: PhraseExtractor | None = None,
    *,
    progress: bool = False,
) -> list[str]:
    """:func:`np_removal` over many captions with one batched parse (``removed[i]`` goes with ``captions[i]``)."""
    if len(captions) != len(removed):
        raise ValueError(f"{len(captions)} captions but {len(removed)} removed-class sets")
    extractor = extractor or _default_extractor(DEFAULT_SPACY_MODEL)
    sets = [_known(r, vocabulary) for r in removed]
    phrases = extractor.phrases_batch(captions, vocabulary, progress=progress)
    return [
        _without_leftovers(remove_phrases(c, p, r), r, vocabulary) for c, p, r in zip(captions, phrases, sets)
    ]


def edit_caption(
    caption: str,
    removed: Iterable[str],
    present: Iterable[str],
    method: EditMethod = "np_removal",
    *,
    vocabulary: ClassVocabulary | str,
    extractor: PhraseExtractor | None = None,
    rng: RngLike = None,
    image: Any = None,
    captioner: Any = None,
) -> str:
    """The caption y' of a counterfactual image whose ``removed`` classes were inpainted away.

    ``np_removal`` deletes the removed classes' noun phrases from ``caption`` (``extractor`` defaults to
    a shared ``PhraseExtractor()``); ``prompt`` fills a seeded template with the ``present`` classes;
    ``captioner`` runs ``captioner`` (a :class:`~hf_spurious.text.captioner.Captioner` or any callable
    image -> str) on ``image``.
    """
    vocab = load_vocabulary(vocabulary)
    removed = _known(removed, vocab)
    if method == "np_removal":
        if not removed:
            raise ValueError("np_removal needs at least one removed class")
        return np_removal(caption, removed, vocab, extractor)
    if method == "prompt":
        return prompt_caption(present if isinstance(present, (set, frozenset)) else list(present), rng)
    if method == "captioner":
        if captioner is None or image is None:
            raise ValueError(
                "method='captioner' needs both image= and captioner= (e.g. Captioner(model_dir))"
            )
        out = captioner(image)
        return out if isinstance(out, str) else out[0]
    raise ValueError(f"unknown caption method {method!r}; choose one of {EDIT_METHODS}")


def choose_caption(
    captions: Sequence[str], removed: Iterable[str], vocabulary: ClassVocabulary | str, rng: RngLike = None
) -> str | None:
    """The first caption, in a seeded random order (source order if ``rng`` is None), that mentions a
    removed class; ``None`` if none does (skip the image and count it)."""
    vocab = load_vocabulary(vocabulary)
    removed = _known(removed, vocab)
    order = range(len(captions)) if rng is None else np.random.default_rng(rng).permutation(len(captions))
    for i in order:
        if removed & vocab.classes_in(captions[int(i)]):
            return captions[int(i)]
    return None
