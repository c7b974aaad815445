"""Tokens and word forms: the lexical rules shared by every vocabulary (pure, no I/O).

Matching is done on lower-cased word tokens (runs of letters and digits; hyphens, apostrophes and
punctuation separate tokens, so "hot-dog" is "hot dog" and "dog's" is "dog" + "s"). Instead of
lemmatising every caption token, each vocabulary word is expanded once into its surface forms (the word
and its plurals, from a small irregular table plus suffix rules), so matching a caption is a dictionary
lookup per token.
"""

from __future__ import annotations

import re

TOKEN_RE = re.compile(r"[^\W_]+")
"""One word token: a maximal run of unicode letters and digits."""

# Irregular singular -> plural(s). Used in both directions for vocabulary words (a list that names
# "people" also matches "person"); suffix rules cover everything else.
IRREGULAR_PLURALS: dict[str, tuple[str, ...]] = {
    "person": ("people", "persons"),
    "man": ("men",),
    "woman": ("women",),
    "child": ("children",),
    "foot": ("feet",),
    "tooth": ("teeth",),
    "goose": ("geese",),
    "mouse": ("mice",),
    "louse": ("lice",),
    "ox": ("oxen",),
    "die": ("dice",),
    "calf": ("calves",),
    "half": ("halves",),
    "knife": ("knives",),
    "wife": ("wives",),
    "life": ("lives",),
    "leaf": ("leaves",),
    "loaf": ("loaves",),
    "shelf": ("shelves",),
    "wolf": ("wolves",),
    "hoof": ("hooves", "hoofs"),
    "scarf": ("scarves", "scarfs"),
    "thief": ("thieves",),
    "elf": ("elves",),
    "cactus": ("cacti", "cactuses"),
    "fungus": ("fungi",),
    "octopus": ("octopuses", "octopi"),
    "bus": ("buses", "busses"),
    "sheep": ("sheep",),
    "deer": ("deer",),
    "fish": ("fish", "fishes"),
    "moose": ("moose",),
    "bison": ("bison",),
    "buffalo": ("buffalo", "buffaloes", "buffalos"),
    "salmon": ("salmon",),
    "aircraft": ("aircraft",),
    "watercraft": ("watercraft",),
    "cattle": ("cattle",),
    "police": ("police",),
    "tomato": ("tomatoes",),
    "potato": ("potatoes",),
    "hero": ("heroes",),
    "volcano": ("volcanoes", "volcanos"),
    "cello": ("cellos",),
    "piano": ("pianos",),
    "kimono": ("kimonos",),
}
IRREGULAR_SINGULARS: dict[str, str] = {
    plural: singular for singular, plurals in IRREGULAR_PLURALS.items() for plural in plurals
}

_VOWELS = frozenset("aeiou")
_SIBILANT_ENDINGS = ("s", "x", "z", "ch", "sh")


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens of ``text``."""
    return TOKEN_RE.findall(text.lower())


def plural_forms(word: str) -> tuple[str, ...]:
    """Plural surface forms of a single lower-case ``word`` (may over-generate; never includes ``word``).

    Irregular words use the table; "-man" words take "-men"; otherwise the regular English suffix
    rules: sibilant + "es", consonant + "y" -> "ies", "f"/"fe" -> "ves" (and "s"), "o" -> "os"/"oes".
    """
    if not word:
        return ()
    out: list[str] = []
    if word in IRREGULAR_PLURALS:
        out.extend(IRREGULAR_PLURALS[word])
    elif word.endswith("man") and len(word) > 3:
        out.extend((word[:-3] + "men", word + "s"))  # policeman -> policemen (and "humans" stays matched)
    elif word.endswith(_SIBILANT_ENDINGS):
        out.append(word + "es")
    elif word.endswith("y") and len(word) > 1 and word[-2] not in _VOWELS:
        out.append(word[:-1] + "ies")
    elif word.endswith("fe"):
        out.extend((word[:-2] + "ves", word + "s"))
    elif word.endswith("f"):
        out.extend((word[:-1] + "ves", word + "s"))
    elif word.endswith("o"):
        out.extend((word + "s", word + "es"))
    else:
        out.append(word + "s")
    if word in IRREGULAR_SINGULARS:  # the word is itself an irregular plural: also match its singular
        out.append(IRREGULAR_SINGULARS[word])
    return tuple(dict.fromkeys(f for f in out if f != word))


def entry_forms(tokens: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
    """Surface forms of a (multi-)token entry: as written, then with its last token pluralised."""
    if not tokens:
        return ()
    head = tokens[:-1]
    return (tokens, *((*head, p) for p in plural_forms(tokens[-1])))
