"""The 80 CLIP ImageNet prompt templates (spec §2.9) and prompt captions (spec §1.3, §3.A.11)."""

from __future__ import annotations

import string
from collections.abc import Iterable, Set

import numpy as np

TEMPLATES: tuple[str, ...] = (
    "a bad photo of a {}.",
    "a photo of many {}.",
    "a sculpture of a {}.",
    "a photo of the hard to see {}.",
    "a low resolution photo of the {}.",
    "a rendering of a {}.",
    "graffiti of a {}.",
    "a bad photo of the {}.",
    "a cropped photo of the {}.",
    "a tattoo of a {}.",
    "the embroidered {}.",
    "a photo of a hard to see {}.",
    "a bright photo of a {}.",
    "a photo of a clean {}.",
    "a photo of a dirty {}.",
    "a dark photo of the {}.",
    "a drawing of a {}.",
    "a photo of my {}.",
    "the plastic {}.",
    "a photo of the cool {}.",
    "a close-up photo of a {}.",
    "a black and white photo of the {}.",
    "a painting of the {}.",
    "a painting of a {}.",
    "a pixelated photo of the {}.",
    "a sculpture of the {}.",
    "a bright photo of the {}.",
    "a cropped photo of a {}.",
    "a plastic {}.",
    "a photo of the dirty {}.",
    "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.",
    "a photo of the {}.",
    "a good photo of the {}.",
    "a rendering of the {}.",
    "a {} in a video game.",
    "a photo of one {}.",
    "a doodle of a {}.",
    "a close-up photo of the {}.",
    "a photo of a {}.",
    "the origami {}.",
    "the {} in a video game.",
    "a sketch of a {}.",
    "a doodle of the {}.",
    "a origami {}.",
    "a low resolution photo of a {}.",
    "the toy {}.",
    "a rendition of the {}.",
    "a photo of the clean {}.",
    "a photo of a large {}.",
    "a rendition of a {}.",
    "a photo of a nice {}.",
    "a photo of a weird {}.",
    "a blurry photo of a {}.",
    "a cartoon {}.",
    "art of a {}.",
    "a sketch of the {}.",
    "a embroidered {}.",
    "a pixelated photo of a {}.",
    "itap of the {}.",
    "a jpeg corrupted photo of the {}.",
    "a good photo of a {}.",
    "a plushie {}.",
    "a photo of the nice {}.",
    "a photo of the small {}.",
    "a photo of the weird {}.",
    "the cartoon {}.",
    "art of the {}.",
    "a drawing of the {}.",
    "a photo of the large {}.",
    "a black and white photo of a {}.",
    "the plushie {}.",
    "a dark photo of a {}.",
    "itap of a {}.",
    "graffiti of the {}.",
    "a toy {}.",
    "itap of my {}.",
    "a photo of a cool {}.",
    "a photo of a small {}.",
    "a tattoo of the {}.",
)

#: Template sets by name, as every ``--templates`` flag and ``SpuriousTrainingArguments.templates`` accept them.
TEMPLATE_SETS: dict[str, tuple[str, ...]] = {"default": TEMPLATES, "simple": ("a photo of a {}.",)}

RngLike = np.random.Generator | int | None


def check_template(template: object, where: str = "template") -> str:
    """``template`` if it is a string with exactly one ``{}`` slot (and no other ``{...}`` field), else a
    ``ValueError`` naming it and the fix (``where`` says which template, e.g. "template 3 of prompts.txt")."""
    if not isinstance(template, str):
        raise ValueError(f"{where} must be a string with one '{{}}' slot, got {type(template).__name__}")
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as err:
        raise ValueError(
            f"{where} {template!r} is not a valid template ({err}); write literal braces as '{{{{' and '}}}}'"
        ) from None
    if fields != [""]:
        raise ValueError(
            f"{where} {template!r} has {len(fields)} slots {['{' + f + '}' for f in fields]}; a template needs "
            "exactly one '{}' where the class name goes, e.g. 'a photo of a {}.'"
        )
    return template


def join_classes(classes: Iterable[str]) -> str:
    """``"c1"``, ``"c1 and c2"``, ``"c1, c2 and c3"`` (sets are sorted first, sequences keep their order)."""
    names = sorted(classes) if isinstance(classes, Set) else list(classes)
    if not names or any(not isinstance(c, str) or not c.strip() for c in names):
        raise ValueError(f"need at least one non-empty class name to fill a prompt, got {names!r}")
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def prompt_caption(classes: Iterable[str], rng: RngLike = None) -> str:
    """A uniformly chosen template filled with the class names, e.g. ``"a photo of a person and dog."``."""
    text = join_classes(classes)
    template = TEMPLATES[int(np.random.default_rng(rng).integers(len(TEMPLATES)))]
    return template.format(text)
