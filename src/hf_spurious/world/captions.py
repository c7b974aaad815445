"""The caption grammars of the SpuriousShapes world: retrieval scenes and "web" bird pictures.

The retrieval grammar reads its probabilities (``min_named`` ... ``p_prefix``) from the ``WorldConfig``.

Class nouns come only from the CHAIR word lists (spec §1.5), so the "coco" and "shapes" vocabularies
recognise exactly the classes a caption names. Every other word is chosen to match no COCO-80 entry
(no "orange", "seat", "table", "bow", "rider", "player", ...).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from hf_spurious.world.config import WorldConfig

# class -> (singular, plural) nouns, all taken from the CHAIR synonym list of that class.
NOUNS: dict[str, tuple[tuple[str, str], ...]] = {
    "person": (
        ("person", "people"),
        ("man", "men"),
        ("woman", "women"),
        ("boy", "boys"),
        ("girl", "girls"),
        ("kid", "kids"),
        ("child", "children"),
        ("lady", "ladies"),
        ("guy", "guys"),
    ),
    "dog": (("dog", "dogs"), ("puppy", "puppies"), ("pup", "pups"), ("hound", "hounds")),
    "frisbee": (("frisbee", "frisbees"),),
    "horse": (
        ("horse", "horses"),
        ("pony", "ponies"),
        ("colt", "colts"),
        ("stallion", "stallions"),
        ("mare", "mares"),
    ),
    "car": (("car", "cars"), ("van", "vans"), ("sedan", "sedans"), ("taxi", "taxis"), ("jeep", "jeeps")),
    "traffic light": (
        ("traffic light", "traffic lights"),
        ("stoplight", "stoplights"),
        ("stop light", "stop lights"),
        ("traffic signal", "traffic signals"),
    ),
    "umbrella": (("umbrella", "umbrellas"),),
    "kite": (("kite", "kites"),),
    "surfboard": (("surfboard", "surfboards"), ("longboard", "longboards"), ("shortboard", "shortboards")),
    "boat": (
        ("boat", "boats"),
        ("sailboat", "sailboats"),
        ("ship", "ships"),
        ("canoe", "canoes"),
        ("yacht", "yachts"),
        ("kayak", "kayaks"),
    ),
    "bird": (
        ("bird", "birds"),
        ("seagull", "seagulls"),
        ("gull", "gulls"),
        ("duck", "ducks"),
        ("pigeon", "pigeons"),
        ("sparrow", "sparrows"),
    ),
    "bench": (("bench", "benches"),),
    "sports ball": (("ball", "balls"),),
    "bicycle": (("bicycle", "bicycles"), ("bike", "bikes")),
}

# (anchor, partner) -> (subject class, verbs): "a man riding a horse", "a dog chasing a frisbee".
RELATIONS: dict[tuple[str, str], tuple[str, tuple[str, ...]]] = {
    ("dog", "frisbee"): ("dog", ("chasing", "catching", "playing with", "running after", "jumping for")),
    ("horse", "person"): ("person", ("riding", "standing next to", "leading", "sitting on", "feeding")),
    ("surfboard", "person"): ("person", ("carrying", "holding", "riding", "standing on")),
    ("car", "traffic light"): ("car", ("stopped at", "waiting at", "driving past", "parked near")),
    ("boat", "bird"): ("bird", ("flying over", "sitting on", "perched on", "circling above")),
}

CONNECTORS = ("and", "next to", "near", "beside", "with", "by")
SIZES = ("small", "large", "big", "little", "tiny")
PREFIXES = ("a photo of", "a picture of", "an image of", "a view of", "a scene with")
PLACES: dict[str, tuple[str, ...]] = {
    "grass": ("on the grass", "in a grassy field", "in a park", "on a lawn"),
    "sand": ("on the sand", "at the beach", "in the desert", "on a sandy shore"),
    "water": ("on the water", "in the ocean", "on the sea", "on a lake"),
    "road": ("on the road", "on a city street", "at an intersection", "on the highway"),
    "sky": ("in the sky", "against a blue sky", "under the clouds", "high in the air"),
}
NUMERALS = {2: "two", 3: "three", 4: "four"}

# Words of the bird captions (classification pretraining set).
BIRD_WORDS = {"landbird": ("landbird", "land bird"), "waterbird": ("waterbird", "water bird")}
PLACE_WORDS = {
    "grass": ("grass", "field", "meadow"),
    "sand": ("sand", "dunes", "desert"),
    "water": ("ocean", "sea", "waves"),
    "lake": ("lake", "pond", "lagoon"),
}


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def noun_phrase(cls: str, count: int, colour: str, rng: np.random.Generator, s: WorldConfig) -> str:
    """'a small red frisbee', 'two puppies', 'the boat'."""
    singular, plural = NOUNS[cls][int(rng.integers(len(NOUNS[cls])))]
    adjective = ""
    if rng.random() < s.p_adjective:
        adjective = colour if rng.random() < 0.6 else SIZES[int(rng.integers(len(SIZES)))]
    if count >= 2 and rng.random() < s.p_numeral:
        words = [NUMERALS.get(count, "several"), adjective, plural]
    else:
        head = f"{adjective} {singular}".strip()
        words = ["the" if rng.random() < 0.2 else _article(head), adjective, singular]
    return " ".join(w for w in words if w)


def choose_named(
    present: Sequence[str], mates: Mapping[str, Sequence[str]], rng: np.random.Generator, s: WorldConfig
) -> list[str]:
    """Pick 1-3 present classes to name; a named class's present pair-mate joins with ``p_co_name``."""
    target = min(int(rng.integers(s.min_named, s.max_named + 1)), len(present))
    named: list[str] = []
    excluded: set[str] = set()
    for idx in rng.permutation(len(present)):
        cls = present[int(idx)]
        if len(named) >= target:
            break
        if cls in named or cls in excluded:
            continue
        open_mates = [m for m in mates.get(cls, ()) if m in present and m not in named and m not in excluded]
        if open_mates and len(named) + 2 > s.max_named:
            continue  # no room for a mate: decided before its coin, so the coin alone sets co-naming
        named.append(cls)
        for mate in open_mates:
            if mate in named or mate in excluded:
                continue
            if rng.random() < s.p_co_name and len(named) < s.max_named:
                named.append(mate)
            else:
                excluded.add(mate)
    return named


def make_caption(
    present_counts: Mapping[str, int],
    colours: Mapping[str, str],
    background: str,
    pairs: Sequence[tuple[str, str]],
    rng: np.random.Generator,
    s: WorldConfig,
) -> tuple[str, frozenset[str]]:
    """One caption naming 1-3 of the present classes; returns (text, named classes)."""
    present = sorted(present_counts)
    mates: dict[str, list[str]] = {}
    for anchor, partner in pairs:
        mates.setdefault(anchor, []).append(partner)
        mates.setdefault(partner, []).append(anchor)
    named = choose_named(present, mates, rng, s)

    def np_of(c: str) -> str:
        return noun_phrase(c, present_counts[c], colours[c], rng, s)

    chunks: list[str] = []
    used: set[str] = set()
    for cls in named:
        if cls in used:
            continue
        used.add(cls)
        mate = next((m for m in mates.get(cls, ()) if m in named and m not in used), None)
        relation = RELATIONS.get((cls, mate)) or RELATIONS.get((mate, cls)) if mate else None
        if mate is not None and relation is not None and rng.random() < s.p_relation:
            used.add(mate)
            subject, verbs = relation
            obj = mate if subject == cls else cls
            verb = verbs[int(rng.integers(len(verbs)))]
            chunks.append(f"{np_of(subject)} {verb} {np_of(obj)}")
        else:
            chunks.append(np_of(cls))
    text = chunks[0]
    for chunk in chunks[1:]:
        text += f" {CONNECTORS[int(rng.integers(len(CONNECTORS)))]} {chunk}"
    if background in PLACES and rng.random() < s.p_place:
        options = PLACES[background]
        text += " " + options[int(rng.integers(len(options)))]
    if rng.random() < s.p_prefix:
        text = f"{PREFIXES[int(rng.integers(len(PREFIXES)))]} {text}"
    return text[0].upper() + text[1:], frozenset(named)


# ---------------------------------------------------------------------------------------------- birds


def bird_caption(family: str, background: str, kind: int, rng: np.random.Generator) -> str:
    """A pretraining caption naming bird and place (``kind`` 0), the bird only (1) or the place only (2)."""
    bird = BIRD_WORDS[family][int(rng.integers(2))]
    place = PLACE_WORDS[background][int(rng.integers(3))]
    art = _article(bird)
    if kind == 0:
        templates = (
            f"a photo of {art} {bird} on the {place}",
            f"{art} {bird} standing by the {place}",
            f"{art} {bird} near the {place}",
            f"a picture of {art} {bird} and the {place}",
        )
    elif kind == 1:
        templates = (f"a photo of {art} {bird}", f"{art} {bird}", f"a picture of {art} {bird}")
    else:
        templates = (f"a photo of the {place}", f"the {place}", f"a view of the {place}")
    return templates[int(rng.integers(len(templates)))]
