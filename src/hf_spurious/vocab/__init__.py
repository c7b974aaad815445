"""Class vocabularies: which object classes a caption or phrase mentions.

>>> from hf_spurious.vocab import load_vocabulary
>>> sorted(load_vocabulary("coco").classes_in("Two dogs fighting over a frisbee"))
['dog', 'frisbee']

Built-in vocabularies (data files in ``hf_spurious/vocab/data``): ``"coco"`` (the COCO-80 CHAIR word list,
a substitute for Kim et al.'s unpublished list), ``"flickr30k"`` (Flickr30k Entities types; active by
default: people, animals, vehicles, instruments) and ``"shapes"`` (the SpuriousShapes classes). Any YAML or
JSON file mapping ``class -> [words]`` works too.
"""

from hf_spurious.vocab.core import ClassVocabulary, ModifierRule, VocabularyError
from hf_spurious.vocab.forms import plural_forms, tokenize
from hf_spurious.vocab.io import available_vocabularies, load_vocabulary, vocabulary_from_dict

__all__ = [
    "ClassVocabulary",
    "ModifierRule",
    "VocabularyError",
    "available_vocabularies",
    "load_vocabulary",
    "plural_forms",
    "tokenize",
    "vocabulary_from_dict",
]
