"""The text side of a counterfactual run: which captions are candidates, how they are edited and checked.

A thin layer over :mod:`hf_spurious.text` (noun phrases, NP removal, prompts, captioner) that adds the
run's settings, its phrase cache and the skip reasons of rejected edits.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from hf_spurious import text
from hf_spurious.cache import JsonlStore
from hf_spurious.records import Phrase, SceneRecord
from hf_spurious.synthesis.planner import RemovalPlan
from hf_spurious.synthesis.settings import (
    EDIT_EMPTY,
    EDIT_NAMES_NO_PRESENT,
    EDIT_STILL_MENTIONS_REMOVED,
    NO_CAPTION_MENTIONS_REMOVED,
    SynthesisError,
    SynthesisSettings,
)
from hf_spurious.vocab import load_vocabulary


class TextSide:
    """Phrase extraction, caption choice and editing for one run (wraps :mod:`hf_spurious.text`).

    ``phrase_cache_dir``: where noun-phrase parses are kept on disk (a :class:`hf_spurious.cache.JsonlStore`);
    None keeps them in memory for this run only.
    """

    def __init__(self, settings: SynthesisSettings, phrase_cache_dir: str | Path | None = None) -> None:
        self.settings = settings
        self.vocabulary = load_vocabulary(settings.vocabulary_name)
        self._extractor: text.PhraseExtractor | None = None
        self._captioner: text.Captioner | None = None
        self._cache_dir = phrase_cache_dir

    @property
    def extractor(self) -> text.PhraseExtractor:
        if self._extractor is None:
            cache = JsonlStore(self._cache_dir) if self._cache_dir is not None else None
            self._extractor = text.PhraseExtractor(spacy_model=self.settings.spacy_model, cache=cache)
        return self._extractor

    @property
    def backend(self) -> str:
        if self.annotated():
            return "flickr30k-entities annotations"
        return str(getattr(self.extractor, "backend", "unknown"))

    def annotated(self) -> bool:
        return self.settings.source == "flickr30k"

    def prepare(
        self, records: Sequence[SceneRecord], removed: Sequence[Iterable[str]] | None = None
    ) -> list[list[list[Phrase]] | None]:
        """Flickr30k: the annotated phrases per caption. Others: parse the captions that can be edited once
        (batched spaCy, cached by the extractor) so the per-caption edits below hit the cache; returns None
        per record. With ``removed`` (the classes removed from each record), only the captions that mention
        one of them are parsed: the others are never candidates."""
        if self.annotated():
            out: list[list[list[Phrase]] | None] = []
            for r in records:
                if r.caption_phrases is None:
                    raise SynthesisError(
                        f"flickr30k image {r.image_id!r} has no annotated phrases; read it with read_flickr30k"
                    )
                out.append([list(p) for p in r.caption_phrases])
            return out
        if self.settings.text_method == "np_removal":
            gone = [None] * len(records) if removed is None else [set(g) for g in removed]
            flat = [c for r, g in zip(records, gone) for c in r.captions if g is None or self._mentions(c, g)]
            if flat:
                self.extractor.chunk_spans(flat, progress=False)
        return [None] * len(records)

    def _mentions(self, caption: str, removed: set[str]) -> bool:
        return bool(self.vocabulary.classes_in(caption) & removed)

    def candidates(
        self, captions: Sequence[str], phrases: Sequence[Sequence[Phrase]] | None, removed: Sequence[str], rng
    ) -> list[int]:
        """Caption indices in a seeded order, keeping those that mention a removed class (the order of
        :func:`hf_spurious.text.choose_caption`; Flickr30k: an annotated phrase of a removed type)."""
        removed_set = set(removed)
        order = [int(i) for i in rng.permutation(len(captions))]
        if phrases is not None:
            return [i for i in order if any(p.classes & removed_set for p in phrases[i])]
        return [i for i in order if self._mentions(captions[i], removed_set)]

    def edit(self, caption: str, phrases: Sequence[Phrase] | None, removed, kept, rng) -> str:
        method = self.settings.text_method
        if method == "np_removal":
            if phrases is not None:
                return text.remove_phrases(caption, list(phrases), frozenset(removed))
            return text.np_removal(caption, frozenset(removed), self.vocabulary, self.extractor)
        if method == "prompt":
            return text.prompt_caption(list(kept), rng)
        return caption  # captioner: replaced after inpainting

    def choose(
        self,
        record: SceneRecord,
        plan: RemovalPlan,
        phrases: Sequence[Sequence[Phrase]] | None,
        rng: np.random.Generator,
    ) -> tuple[list[tuple[int, str]], str | None]:
        """Up to ``captions_per_image`` accepted ``(source caption index, edited caption)`` pairs, tried in the
        seeded candidate order; with none, the skip reason (the last rejection, or no candidate at all)."""
        cands = self.candidates(record.captions, phrases, plan.removed_classes, rng)
        if not cands:
            return [], NO_CAPTION_MENTIONS_REMOVED
        chosen: list[tuple[int, str]] = []
        last_reason = None
        for i in cands:
            edited = self.edit(
                record.captions[i],
                None if phrases is None else phrases[i],
                plan.removed_classes,
                plan.kept_classes,
                rng,
            )
            reason = (
                self.check(edited, plan.removed_classes, plan.kept_classes)
                if self.settings.text_method != "captioner"
                else None
            )
            if reason is None:
                chosen.append((i, edited))
                if len(chosen) == self.settings.captions_per_image:
                    break
            else:
                last_reason = reason
        return chosen, (None if chosen else last_reason or NO_CAPTION_MENTIONS_REMOVED)

    def caption_images(self, images: Sequence[np.ndarray]) -> list[str]:
        if self._captioner is None:
            self._captioner = text.Captioner(self.settings.captioner)
        return [str(c) for c in self._captioner.caption(list(images))]  # arrays: hf_spurious.images.load_rgb

    def check(self, edited: str, removed, kept) -> str | None:
        """None if the edited caption is acceptable, else the skip reason (an empty edit is never kept:
        training cannot tokenize it)."""
        if not edited or not edited.strip():
            return EDIT_EMPTY
        mentioned = self.vocabulary.classes_in(edited)
        if mentioned & set(removed):
            return EDIT_STILL_MENTIONS_REMOVED
        if self.settings.require_present and not mentioned & set(kept):
            return EDIT_NAMES_NO_PRESENT
        return None
