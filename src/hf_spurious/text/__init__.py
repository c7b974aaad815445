"""Caption text tools: noun phrases, caption editing (NP removal, prompts, captioner), the gallery matrix.

>>> from hf_spurious.text import remove_phrases, PhraseExtractor
>>> from hf_spurious.vocab import load_vocabulary
>>> voc = load_vocabulary("coco")
>>> cap = "Two dogs fighting over a frisbee"
>>> remove_phrases(cap, PhraseExtractor().phrases(cap, voc), {"frisbee"})  # doctest: +SKIP
'Two dogs fighting'
"""

from hf_spurious.text.captioner import Captioner
from hf_spurious.text.edit import (
    EDIT_METHODS,
    choose_caption,
    dangling_conjunctions,
    edit_caption,
    np_removal,
    np_removal_batch,
    remove_mentions,
    remove_phrases,
    tidy,
)
from hf_spurious.text.mentions import caption_class_matrix, matcher_agreement, matrix_key
from hf_spurious.text.phrases import (
    DEFAULT_SPACY_MODEL,
    PhraseExtractor,
    SpacyFallbackWarning,
    lexical_spans,
)
from hf_spurious.text.templates import TEMPLATE_SETS, TEMPLATES, join_classes, prompt_caption

__all__ = [
    "DEFAULT_SPACY_MODEL",
    "EDIT_METHODS",
    "TEMPLATES",
    "TEMPLATE_SETS",
    "Captioner",
    "PhraseExtractor",
    "SpacyFallbackWarning",
    "caption_class_matrix",
    "choose_caption",
    "dangling_conjunctions",
    "edit_caption",
    "join_classes",
    "lexical_spans",
    "matcher_agreement",
    "matrix_key",
    "np_removal",
    "np_removal_batch",
    "prompt_caption",
    "remove_mentions",
    "remove_phrases",
    "tidy",
]
