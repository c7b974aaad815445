"""Vocabularies: hand cases, CHAIR rules, file loading, and two naive reference matchers on random captions."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hf_spurious.records import Phrase
from hf_spurious.vocab import ClassVocabulary, VocabularyError, load_vocabulary, vocabulary_from_dict

COCO = load_vocabulary("coco")


# ----------------------------------------------------------------------------- hand cases
@pytest.mark.parametrize(
    ("caption", "expected"),
    [
        ("Two dogs fighting over a frisbee", {"dog", "frisbee"}),
        ("A man eating a hot dog", {"person", "hot dog"}),
        ("hot-dogs on a plate", {"hot dog"}),
        ("A teddy bear on a bed", {"teddy bear", "bed"}),
        ("a brown bear and two teddy bears", {"bear", "teddy bear"}),
        ("A baby elephant walks next to an adult elephant", {"elephant"}),
        ("a baby playing with a dog", {"person", "dog"}),
        ("Baby giraffes and adult zebras", {"giraffe", "zebra"}),
        ("A passenger train pulling into the station", {"train"}),
        ("passenger jets at the gate", {"airplane"}),
        ("a passenger waits for the bus", {"person", "bus"}),
        ("The toilet seat is up", {"toilet"}),
        ("A wooden chair by the toilet", {"chair", "toilet"}),
        ("a man wearing a bow tie", {"person", "tie"}),
        ("Puppies and kittens", {"dog", "cat"}),
        ("Three women and two men with their children", {"person"}),
        ("geese near the mice", {"bird", "mouse"}),
        ("forks, knives and spoons", {"fork", "knife", "spoon"}),
        ("PEOPLE on BUSES", {"person", "bus"}),
        ("a policeman and two policemen", {"person"}),
        ("a traffic light and stop lights near a stop sign", {"traffic light", "stop sign"}),
        ("a cell phone next to a phone", {"cell phone"}),
        ("The dog's bowl", {"dog", "bowl"}),
        ("An empty train track", set()),
        ("two surf boards and a hotdog", {"surfboard", "hot dog"}),
        ("A sunny day in the park", set()),
        ("", set()),
        # issue 12 item 4: verbs, heads of "X of the Y", places named after a class
        ("A boy trains his dog", {"person", "dog"}),
        ("A woman ties her shoe", {"person"}),
        ("A man in a suit ties his tie", {"person", "tie"}),
        ("Two trains the same color", {"train"}),  # a number before it: a noun
        ("trains parked at the station", {"train"}),
        ("A waiter seats a couple at a table", {"dining table"}),
        ("A man sitting on the seat of the toilet", {"person", "toilet"}),
        ("the seat of a toilet", {"toilet"}),
        ("A dog on the seat of a chair", {"dog", "chair"}),
        ("People waiting at a bus stop", {"person"}),
        ("A bus at the bus stop", {"bus"}),
        ("A ski slope and a ski lift", set()),
        ("A kitten playing with a computer mouse", {"cat", "mouse"}),
        ("A lamb standing next to its mother", {"sheep"}),
        ("a mother elephant with her baby", {"elephant", "person"}),
    ],
)
def test_coco_hand_cases(caption, expected):
    assert COCO.classes_in(caption) == frozenset(expected)


def test_mentions_spans_and_order():
    text = "A baby elephant ate a Hot-Dog near the toilet seat; two Women watched."
    got = COCO.mentions(text)
    assert got == [
        (2, 15, "elephant"),
        (22, 29, "hot dog"),
        (39, 50, "toilet"),
        (56, 61, "person"),
    ]
    assert [text[s:e] for s, e, _ in got] == ["baby elephant", "Hot-Dog", "toilet seat", "Women"]


def test_mentions_agree_with_classes_in_on_unicode_case_change():
    text = "İstanbul dogs and a KİTE"  # "İ".lower() is two characters: spans must still index the original
    spans = COCO.mentions(text)
    assert {c for *_, c in spans} == COCO.classes_in(text) == {"dog"}
    assert [text[s:e] for s, e, _ in spans] == ["dogs"]


def test_classes_in_phrases_lexical_and_annotated():
    v = load_vocabulary("flickr30k")
    phrases = [
        Phrase("A man", 0, 5, frozenset({"people"})),
        Phrase("a red shirt", 10, 21, frozenset({"clothing"})),
        Phrase("his guitar", 30, 40, frozenset()),
    ]
    assert v.classes_in_phrases(phrases) == {"people", "instruments"}
    assert v.classes_in_phrases(phrases, annotated=True) == {"people"}
    assert v.classes_in_phrases(["a dog", "the bus"]) == {"animals", "vehicles"}


def test_type_errors():
    with pytest.raises(TypeError, match="caption string"):
        COCO.classes_in(None)  # type: ignore[arg-type]
    with pytest.raises(KeyError, match="not in vocabulary"):
        COCO.words("unicorn")


# ----------------------------------------------------------------------------- data files
def test_builtin_sizes_and_labels():
    assert len(COCO.classes) == 80 and COCO.classes[0] == "person" and COCO.classes[-1] == "toothbrush"
    assert COCO.metadata["label"] == "CHAIR word list"
    assert COCO.words("tv") == ("tv", "monitor", "televison", "television")
    assert "iphone" in COCO.words("cell phone")
    flickr = load_vocabulary("flickr30k")
    assert flickr.classes == ("people", "animals", "vehicles", "instruments")
    assert set(flickr.all_classes) == {
        "people", "clothing", "bodyparts", "animals", "vehicles", "instruments", "scene", "other",
    }  # fmt: skip


def test_shapes_lists_are_the_coco_lists():
    shapes = load_vocabulary("shapes")
    assert shapes.classes == (
        "person", "dog", "frisbee", "horse", "car", "traffic light", "umbrella", "kite", "surfboard",
        "boat", "bird", "bench", "sports ball", "bicycle",
    )  # fmt: skip
    for cls in shapes.classes:
        assert shapes.words(cls) == COCO.words(cls)
    assert shapes.classes_in("a baby horse near a cat and a sports ball") == {"horse", "sports ball"}


def test_flickr_selection_blocks_but_does_not_name_inactive_classes():
    v = load_vocabulary("flickr30k")
    assert v.classes_in("people waiting at the train station") == {"people"}
    assert v.classes_in("a man in a red shirt with a guitar") == {"people", "instruments"}
    v2 = load_vocabulary("flickr30k", classes=["clothing", "scene"])
    assert v2.classes == ("clothing", "scene")
    assert v2.classes_in("a man in a red t-shirt at the train station") == {"clothing", "scene"}
    with pytest.raises(VocabularyError, match="unknown classes"):
        load_vocabulary("flickr30k", classes=["robots"])


def test_coco_written_forms_are_unambiguous():
    owners: dict[str, str] = {}
    for cls in COCO.classes:
        for w in COCO.words(cls):
            assert owners.setdefault(w, cls) == cls, f"{w!r} in {owners[w]!r} and {cls!r}"


# ----------------------------------------------------------------------------- user files
def test_user_files_yaml_plain_and_json_full(tmp_path):
    plain = tmp_path / "mine.yaml"
    plain.write_text("cat: [cat, kitty]\nsofa: [sofa, couch, love seat]\n")
    v = load_vocabulary(plain)
    assert v.name == "mine" and v.classes == ("cat", "sofa")
    assert v.classes_in("Two kitties on a love seat") == {"cat", "sofa"}
    full = tmp_path / "full.json"
    full.write_text(
        json.dumps(
            {
                "name": "pets",
                "source": "my list",
                "classes": {"dog": ["dog"], "person": ["person", "baby"]},
                "rules": {
                    "modifiers": [{"words": ["baby"], "classes": ["dog"]}],
                    "phrases": {"dog tag": None},
                },
            }
        )
    )
    v = load_vocabulary(str(full))
    assert v.name == "pets" and v.metadata["source"] == "my list"
    assert v.classes_in("a baby dog") == {"dog"}
    assert v.classes_in("a baby with a dog tag") == {"person"}
    assert load_vocabulary(full, classes=["person"]).classes_in("a baby dog and a baby") == {"person"}


def test_round_trip_and_fingerprint():
    again = vocabulary_from_dict(COCO.to_dict())
    caps = ["a baby elephant", "two hot dogs and a man", "passenger trains near a toilet seat"]
    assert [again.classes_in(c) for c in caps] == [COCO.classes_in(c) for c in caps]
    assert again.fingerprint == COCO.fingerprint
    other = ClassVocabulary("coco", {"dog": ["dog"]})
    assert other.fingerprint != COCO.fingerprint
    assert load_vocabulary(COCO) is COCO


@pytest.mark.parametrize(
    ("content", "suffix", "message"),
    [
        ("- just\n- a list\n", ".yaml", "must be a mapping"),
        ("dog: dog\n", ".yaml", "class 'dog': expected a non-empty list"),
        ("dog: []\n", ".yaml", "non-empty list"),
        ("dog: [dog, 3]\n", ".yaml", "non-empty string"),
        ("dog: [dog]\ncat: [cat, dog]\n", ".yaml", "both 'dog' and 'cat'"),
        ("dog: [dog\n", ".yaml", "not valid yaml"),
        ('{"dog": ["dog"]', ".json", "not valid json"),
        ("classes: {dog: [dog]}\nrules: {phrases: {hot dog: food}}\n", ".yaml", "unknown class 'food'"),
        (
            "classes: {dog: [dog]}\nrules: {modifiers: [{words: [baby]}]}\n",
            ".yaml",
            "needs 'words' and 'classes'",
        ),
        ("dog: ['!!']\n", ".yaml", "at least one letter"),
    ],
)
def test_malformed_files_name_the_problem(tmp_path, content, suffix, message):
    path = tmp_path / f"bad{suffix}"
    path.write_text(content)
    with pytest.raises(VocabularyError, match=re.escape(message)) as err:
        load_vocabulary(path)
    assert str(path) in str(err.value)


def test_missing_file_or_unknown_name():
    with pytest.raises(VocabularyError, match="neither a built-in name"):
        load_vocabulary("cocoa")


# ----------------------------------------------------------------------------- naive references
_IRREGULAR = {
    "man": "men", "woman": "women", "child": "children", "person": "people", "goose": "geese",
    "mouse": "mice", "knife": "knives", "policeman": "policemen", "gentleman": "gentlemen",
    "serviceman": "servicemen", "ox": "oxen", "calf": "calves", "thief": "thieves",
}  # fmt: skip
_NO_PLURAL = {
    "sheep",
    "deer",
    "fish",
    "aircraft",
    "watercraft",
    "bison",
    "cattle",
    "buffalo",
    "people",
    "children",
    "oxen",
}
# no "the" / "a" / "of": the coco rule phrases "seat of the toilet" and "its mother" use them
FILLERS = [
    "on",
    "beside",
    "atop",
    "near",
    "with",
    "green",
    "sitting",
    "very",
    "around",
    "in",
    "three",
    "is",
    "while",
]


def ref_plural(word: str) -> str | None:
    """A deliberately simple pluralizer, written independently of the package."""
    last = word.split(" ")[-1]
    if last in _NO_PLURAL or last.endswith("s"):
        return None
    if last in _IRREGULAR:
        p = _IRREGULAR[last]
    elif last.endswith(("x", "ch", "sh")):
        p = last + "es"
    elif last.endswith("y") and last[-2:-1] not in set("aeiou"):
        p = last[:-1] + "ies"
    else:
        p = last + "s"
    return " ".join([*word.split(" ")[:-1], p])


def ref_entries(vocab: ClassVocabulary) -> dict[str, str | None]:
    """Surface form (space-joined lower-case tokens) -> class, built from the vocabulary's definition."""
    d = vocab.to_dict()
    active = set(d["default_classes"])
    out: dict[str, str | None] = {}
    for cls, words in d["classes"].items():
        for w in words:
            w = " ".join(re.findall(r"[^\W_]+", w.lower()))
            for form in (w, ref_plural(w)):
                if form:
                    out[form] = cls
    for rule in d["rules"]["modifiers"]:
        for cls in rule["classes"]:
            for w in d["classes"][cls]:
                for form in (w.lower(), ref_plural(w.lower())):
                    for m in rule["words"]:
                        if form:
                            out[f"{m} {form}"] = cls
    for phrase, cls in d["rules"]["phrases"].items():
        out[phrase] = cls
        if ref_plural(phrase):
            out[ref_plural(phrase)] = cls
    return {k: (v if v in active else None) for k, v in out.items()}


def ref_classes(text: str, entries: dict[str, str | None]) -> set[str]:
    """CHAIR-style string rewriting: replace n-token entries by placeholders, longest n first."""
    toks = re.findall(r"[^\W_]+", text.lower())
    s = " " + " ".join(toks) + " "
    found: set[str] = set()
    by_len: dict[int, list[str]] = {}
    for form in entries:
        by_len.setdefault(form.count(" ") + 1, []).append(form)
    for n in sorted(by_len, reverse=True):
        pattern = re.compile("(?<= )(" + "|".join(re.escape(f) for f in by_len[n]) + ")(?= )")

        def repl(m: re.Match[str]) -> str:
            cls = entries[m.group(1)]
            if cls is not None:
                found.add(cls)
            return "#"

        # rewrite until stable: lookbehind/lookahead need the shared spaces, so adjacent hits need 2 passes
        prev = None
        while prev != s:
            prev, s = s, pattern.sub(repl, s, count=1)
    return found


def _without_verbs(vocab: ClassVocabulary) -> ClassVocabulary:
    """The vocabulary minus its verb rule (the rewriting reference knows no verbs; tested separately)."""
    d = vocab.to_dict()
    d["rules"].pop("verbs", None)
    return vocabulary_from_dict(d)


VOCABS = {name: _without_verbs(load_vocabulary(name)) for name in ("coco", "flickr30k", "shapes")}
REFS = {name: ref_entries(v) for name, v in VOCABS.items()}


@st.composite
def built_caption(draw, name: str):
    """A caption made of fillers and vocabulary entries, with the expected classes and spans."""
    entries = sorted(REFS[name])
    parts: list[str] = []
    expected: list[tuple[int, int, str]] = []
    pos = 0
    for _ in range(draw(st.integers(0, 5))):
        fill = " ".join(draw(st.lists(st.sampled_from(FILLERS), min_size=1, max_size=3)))
        sep = draw(st.sampled_from([" ", ", ", " (", "; "]))
        chunk = fill + sep
        parts.append(chunk)
        pos += len(chunk)
        form = draw(st.sampled_from(entries))
        joiner = draw(st.sampled_from([" ", "-"]))
        surface = form.replace(" ", joiner)
        surface = draw(st.sampled_from([surface, surface.upper(), surface.capitalize()]))
        parts.append(surface + " ")
        if REFS[name][form] is not None:
            expected.append((pos, pos + len(surface), REFS[name][form]))
        pos += len(surface) + 1
    return "".join(parts) + "end.", expected


@pytest.mark.parametrize("name", sorted(VOCABS))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_matches_construction_on_separated_entries(name, data):
    caption, expected = data.draw(built_caption(name))
    vocab = VOCABS[name]
    assert vocab.mentions(caption) == expected
    assert vocab.classes_in(caption) == {c for *_, c in expected}


@pytest.mark.parametrize("name", sorted(VOCABS))
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_matches_rewriting_reference_on_adjacent_entries(name, data):
    forms = data.draw(st.lists(st.sampled_from(sorted(REFS[name])), min_size=1, max_size=6))
    pieces = [f for form in forms for f in form.split(" ")]
    pieces += data.draw(st.lists(st.sampled_from(FILLERS), max_size=3))
    order = data.draw(st.permutations(pieces))
    caption = " ".join(order)
    assert VOCABS[name].classes_in(caption) == ref_classes(caption, REFS[name])
    assert {c for *_, c in VOCABS[name].mentions(caption)} == ref_classes(caption, REFS[name])


def test_fillers_are_not_vocabulary_tokens():
    for name, refs in REFS.items():
        tokens = {t for form in refs for t in form.split(" ")}
        assert not tokens & set(FILLERS), name


# ----------------------------------------------------------------------------- the verb rule
_VERB_WORDS = COCO.to_dict()["rules"]["verbs"]["words"]
_BEFORE = set(COCO.to_dict()["rules"]["verbs"]["before"])
# the documented rule: a determiner, possessive or number before the -s form makes it a noun
_NOUN_LEFT = set(
    [
        "a",
        "an",
        "the",
        "these",
        "those",
        "some",
        "many",
        "several",
        "no",
        "his",
        "her",
        "their",
        "its",
        "my",
        "our",
        "your",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
    ]
)


def ref_third_person(word: str) -> str:
    """A naive -s form, written independently of the package's plural rules."""
    if word.endswith(("s", "x", "ch", "sh")):
        return word + "es"
    if word.endswith("y") and word[-2] not in "aeiou":
        return word[:-1] + "ies"
    return word + "s"


_VERB_FORMS = {ref_third_person(w) for w in _VERB_WORDS}
_POOL = sorted(
    _VERB_FORMS | set(_VERB_WORDS) | _BEFORE | {"two", "some", "dog", "man", "on", "sitting", "near"}
)


@settings(max_examples=300, deadline=None)
@given(words=st.lists(st.sampled_from(_POOL), min_size=1, max_size=8))
def test_verb_rule_matches_naive_reference(words):
    caption = " ".join(words)
    nouns = VOCABS["coco"].mentions(caption)  # the same vocabulary without the verb rule
    starts = {}
    pos = 0
    for i, w in enumerate(words):
        starts[pos] = i
        pos += len(w) + 1
    want = []
    for s, e, cls in nouns:
        i = starts[s]
        one_token = e - s == len(words[i])
        verb = (
            one_token
            and words[i] in _VERB_FORMS
            and i + 1 < len(words)
            and words[i + 1] in _BEFORE
            and (i == 0 or words[i - 1] not in _NOUN_LEFT)
        )
        if not verb:
            want.append((s, e, cls))
    assert COCO.mentions(caption) == want
    assert COCO.classes_in(caption) == {c for *_, c in want}


def test_verb_rule_in_files_and_errors(tmp_path):
    data = {"classes": {"train": ["train"], "dog": ["dog"]}, "rules": {"verbs": ["train"]}}
    v = vocabulary_from_dict(data)
    assert v.classes_in("a boy trains his dog") == {"dog"} and v.classes_in("trains near a dog") == {
        "train",
        "dog",
    }
    custom = vocabulary_from_dict({**data, "rules": {"verbs": {"words": ["train"], "before": ["near"]}}})
    assert custom.classes_in("trains near a dog") == {"dog"} and custom.classes_in("trains his dog") == {
        "train",
        "dog",
    }
    assert vocabulary_from_dict(v.to_dict()).fingerprint == v.fingerprint
    assert vocabulary_from_dict({"classes": data["classes"]}).fingerprint != v.fingerprint
    with pytest.raises(VocabularyError, match=r"rules\.verbs"):
        vocabulary_from_dict({**data, "rules": {"verbs": {"before": ["a"]}}})
