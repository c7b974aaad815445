"""``ClassVocabulary``: which object classes a caption or phrase mentions (pure, no I/O).

Rules (spec §1.4, §3.A.8):

* lower-case word tokens (see :mod:`hf_spurious.vocab.forms`); each word matches in its written form
  and its plural forms (irregular table + suffix rules), so "dogs" is dog and "women" is person;
* multi-word entries are matched first, longest first (left to right within one length), as whole token
  sequences, and their tokens are consumed: "hot dog" is not "dog", "teddy bear" is not "bear";
* rule phrases: ``phrases`` maps a multi-word phrase to a class or to ``None`` (a blocker that consumes its
  tokens and names no class: "train track"); ``modifiers`` turn "<modifier> <word of class X>" into X
  ("baby elephant" is elephant, not person; "passenger train" is train, not person);
* verb rule: ``verbs`` lists class words that are also verbs; their third-person form directly
  followed by a determiner or possessive ("A boy *trains his* dog", "A woman *ties her* shoe") is a
  verb and names no class, unless a determiner or number precedes it ("two trains the ..." stays a noun);
* priority when two entries produce the same surface form: rule phrase > written word > modifier rule >
  generated plural; among generated forms of equal priority the class listed first wins. Two classes
  listing the same written word is an error.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hf_spurious.records import Phrase
from hf_spurious.vocab.forms import TOKEN_RE, entry_forms, plural_forms, tokenize

Span = tuple[int, int, str]
_PRIORITY_PHRASE, _PRIORITY_WORD, _PRIORITY_MODIFIER, _PRIORITY_PLURAL = 0, 1, 2, 3


class VocabularyError(ValueError):
    """A vocabulary definition that cannot be used; the message names the entry and the fix."""


@dataclass(frozen=True)
class ModifierRule:
    """``"<modifier> <word of one of classes>"`` means that class (and the modifier names nothing)."""

    modifiers: tuple[str, ...]
    classes: tuple[str, ...]


@dataclass(frozen=True)
class VerbRule:
    """Class words that double as verbs: ``<-s form> <one of before>`` is a verb, not a mention."""

    words: tuple[str, ...]
    before: tuple[str, ...] = (
        "a", "an", "the", "his", "her", "their", "its", "my", "our", "your", "this", "that", "these",
        "those", "him", "them",
    )  # fmt: skip


#: Words before a verb-rule form that make it a noun ("the trains", "two ties").
_NOUN_LEFT = frozenset(
    [
        "a",
        "an",
        "the",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "several",
        "many",
        "some",
        "these",
        "those",
        "his",
        "her",
        "their",
        "its",
        "my",
        "our",
        "your",
        "no",
    ]
)


class ClassVocabulary:
    """Classes with their related words, and a fast lexical matcher over captions.

    ``words`` maps each class to its words (the class name is not added implicitly). ``classes`` selects
    the active classes (default: ``default_classes`` if given, else all); the words of inactive classes
    still consume their tokens but name no class, so "train station" stays a scene when only vehicles
    are active.
    """

    def __init__(
        self,
        name: str,
        words: Mapping[str, Sequence[str]],
        *,
        phrases: Mapping[str, str | None] | None = None,
        modifiers: Iterable[ModifierRule] = (),
        verbs: VerbRule | None = None,
        classes: Iterable[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        if not words:
            raise VocabularyError(f"vocabulary {name!r} has no classes")
        self.name = str(name)
        self._words = {str(c): tuple(dict.fromkeys(w.strip().lower() for w in ws)) for c, ws in words.items()}
        self._phrases = dict(phrases or {})
        self._modifiers = tuple(modifiers)
        self._verbs = verbs
        self.metadata: dict[str, Any] = dict(metadata or {})
        all_classes = tuple(self._words)
        selected = tuple(all_classes if classes is None else dict.fromkeys(classes))
        unknown = [c for c in selected if c not in self._words]
        if unknown:
            raise VocabularyError(
                f"vocabulary {name!r}: unknown classes {unknown}; choose among {list(all_classes)}"
            )
        if not selected:
            raise VocabularyError(f"vocabulary {name!r}: the class selection is empty")
        self.classes: tuple[str, ...] = selected
        self.all_classes: tuple[str, ...] = all_classes
        self._check()
        table = self._build_table()
        active = frozenset(selected)
        self._unigrams: dict[str, str | None] = {}
        self._ngrams: dict[tuple[str, ...], str | None] = {}
        for form, cls in table.items():
            value = cls if cls in active else None
            if len(form) == 1:
                self._unigrams[form[0]] = value
            else:
                self._ngrams[form] = value
        self._lengths = tuple(sorted({len(f) for f in self._ngrams}, reverse=True))
        self._starters = frozenset(f[0] for f in self._ngrams)
        self._index = {c: i for i, c in enumerate(self.classes)}
        self._verb_forms: frozenset[str] = frozenset(
            f for w in (verbs.words if verbs else ()) for f in plural_forms(w.lower()) if " " not in w
        )
        self._verb_next: frozenset[str] = frozenset(verbs.before if verbs else ())

    # ------------------------------------------------------------------ construction
    def _check(self) -> None:
        for cls, ws in self._words.items():
            if not ws or any(not tokenize(w) for w in ws):
                raise VocabularyError(
                    f"vocabulary {self.name!r}: class {cls!r} needs a non-empty list of words "
                    "(each with at least one letter or digit)"
                )
        for phrase, cls in self._phrases.items():
            if not tokenize(phrase):
                raise VocabularyError(f"vocabulary {self.name!r}: rule phrase {phrase!r} has no word")
            if cls is not None and cls not in self._words:
                raise VocabularyError(
                    f"vocabulary {self.name!r}: rule phrase {phrase!r} names unknown class {cls!r}"
                )
        for rule in self._modifiers:
            missing = [c for c in rule.classes if c not in self._words]
            if missing or not rule.modifiers:
                raise VocabularyError(
                    f"vocabulary {self.name!r}: modifier rule {rule.modifiers} -> {rule.classes} "
                    f"names unknown classes {missing} or has no modifier"
                )

    def _build_table(self) -> dict[tuple[str, ...], str | None]:
        best: dict[tuple[str, ...], tuple[int, str | None]] = {}
        written: dict[tuple[str, ...], str] = {}

        def offer(form: tuple[str, ...], cls: str | None, priority: int) -> None:
            old = best.get(form)
            if old is None or priority < old[0]:
                best[form] = (priority, cls)

        for phrase, cls in self._phrases.items():
            for form in entry_forms(tuple(tokenize(phrase))):
                offer(form, cls, _PRIORITY_PHRASE)
        for cls, ws in self._words.items():
            for w in ws:
                toks = tuple(tokenize(w))
                if toks in written and written[toks] != cls:
                    raise VocabularyError(
                        f"vocabulary {self.name!r}: word {w!r} is listed under both {written[toks]!r} and "
                        f"{cls!r}; keep it in one class"
                    )
                written[toks] = cls
                offer(toks, cls, _PRIORITY_WORD)
        for rule in self._modifiers:
            for cls in rule.classes:
                for w in self._words[cls]:
                    for form in entry_forms(tuple(tokenize(w))):
                        for mod in rule.modifiers:
                            offer((*tokenize(mod), *form), cls, _PRIORITY_MODIFIER)
        for cls, ws in self._words.items():
            for w in ws:
                for form in entry_forms(tuple(tokenize(w)))[1:]:
                    offer(form, cls, _PRIORITY_PLURAL)
        return {form: cls for form, (_, cls) in best.items()}

    # ------------------------------------------------------------------ matching
    def _match(self, toks: Sequence[str]) -> list[tuple[int, int, str]]:
        """Token spans ``(i, j, class)`` of class mentions, in token order (blockers consume silently)."""
        n_tok = len(toks)
        found: list[tuple[int, int, str | None]] = []
        taken: list[bool] | None = None
        if self._lengths and any(t in self._starters for t in toks):
            taken = [False] * n_tok
            ngrams = self._ngrams
            for n in self._lengths:
                i = 0
                while i <= n_tok - n:
                    if toks[i] in self._starters and not any(taken[i : i + n]):
                        key = tuple(toks[i : i + n])
                        if key in ngrams:
                            found.append((i, i + n, ngrams[key]))
                            for k in range(i, i + n):
                                taken[k] = True
                            i += n
                            continue
                    i += 1
        uni = self._unigrams
        for i, t in enumerate(toks):
            if t in uni and (taken is None or not taken[i]) and not self._is_verb(toks, i):
                found.append((i, i + 1, uni[t]))
        found.sort()
        return [(i, j, c) for i, j, c in found if c is not None]

    def _is_verb(self, toks: Sequence[str], i: int) -> bool:
        """The verb rule: ``toks[i]`` is a listed verb's -s form before a determiner, not after one."""
        return (
            toks[i] in self._verb_forms
            and i + 1 < len(toks)
            and toks[i + 1] in self._verb_next
            and (i == 0 or toks[i - 1] not in _NOUN_LEFT)
        )

    def _tokens(self, text: str) -> tuple[list[str], list[tuple[int, int]]]:
        if not isinstance(text, str):
            raise TypeError(f"expected a caption string, got {type(text).__name__}")
        low = text.lower()
        if len(low) == len(text):
            ms = list(TOKEN_RE.finditer(low))
            return [m.group() for m in ms], [m.span() for m in ms]
        ms = list(TOKEN_RE.finditer(text))  # lower() changed the length (rare unicode): lower per token
        return [m.group().lower() for m in ms], [m.span() for m in ms]

    def classes_in(self, text: str) -> frozenset[str]:
        """The active classes that ``text`` mentions."""
        if not isinstance(text, str):
            raise TypeError(f"expected a caption string, got {type(text).__name__}")
        low = text.lower()
        toks = TOKEN_RE.findall(low) if len(low) == len(text) else self._tokens(text)[0]
        uni = self._unigrams
        slow = any(t in self._starters or t in self._verb_forms for t in toks)
        if not (self._lengths or self._verb_forms) or not slow:
            return frozenset(c for t in toks if (c := uni.get(t)) is not None)
        return frozenset(c for _, _, c in self._match(toks))

    def mentions(self, text: str) -> list[Span]:
        """Character spans ``(start, end, class)`` of every class mention in ``text``, in order."""
        toks, spans = self._tokens(text)
        return [(spans[i][0], spans[j - 1][1], c) for i, j, c in self._match(toks)]

    def classes_in_phrases(
        self, phrases: Iterable[str | Phrase], *, annotated: bool = False
    ) -> frozenset[str]:
        """Union of the classes mentioned by ``phrases`` (strings or :class:`Phrase`).

        With ``annotated=True`` a :class:`Phrase` contributes its own ``classes`` (e.g. Flickr30k Entities
        types) restricted to the active classes, instead of being matched lexically.
        """
        out: set[str] = set()
        active = frozenset(self.classes)
        for p in phrases:
            if isinstance(p, Phrase):
                out |= (p.classes & active) if annotated else self.classes_in(p.text)
            else:
                out |= self.classes_in(p)
        return frozenset(out)

    def class_vector(self, text: str) -> list[bool]:
        """``classes_in(text)`` as a boolean row in ``self.classes`` order."""
        row = [False] * len(self.classes)
        for c in self.classes_in(text):
            row[self._index[c]] = True
        return row

    def words(self, cls: str) -> tuple[str, ...]:
        """The written words of class ``cls`` (lower-cased, as listed)."""
        if cls not in self._words:
            raise KeyError(f"class {cls!r} is not in vocabulary {self.name!r}; classes: {list(self._words)}")
        return self._words[cls]

    # ------------------------------------------------------------------ identity
    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable definition that :func:`load_vocabulary` reads back."""
        return {
            "name": self.name,
            **({"metadata": self.metadata} if self.metadata else {}),
            "classes": {c: list(ws) for c, ws in self._words.items()},
            "default_classes": list(self.classes),
            "rules": {
                "phrases": dict(self._phrases),
                "modifiers": [
                    {"words": list(r.modifiers), "classes": list(r.classes)} for r in self._modifiers
                ],
                **(
                    {"verbs": {"words": list(self._verbs.words), "before": list(self._verbs.before)}}
                    if self._verbs
                    else {}
                ),
            },
        }

    @property
    def fingerprint(self) -> str:
        """A short hash of everything that affects matching (for cache keys)."""
        spec = self.to_dict()
        spec.pop("metadata", None)
        blob = json.dumps(spec, sort_keys=True, ensure_ascii=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"ClassVocabulary({self.name!r}, {len(self.classes)} classes)"

    def __contains__(self, cls: object) -> bool:
        return cls in self._index

    def __len__(self) -> int:
        return len(self.classes)
