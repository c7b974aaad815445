"""The settings of a counterfactual run: every knob, its validation, and the fingerprint of the output bytes.

Also the vocabulary the generator reports in: :class:`SynthesisError` and the skip reasons (beyond the
planner's) counted in the shard statistics.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from hf_spurious.synthesis.inpaint_options import check_inpainter_options
from hf_spurious.synthesis.planner import check_alphas

TEXT_METHODS = ("np_removal", "prompt", "captioner")
TARGET_POLICIES = ("random", "partner", "anchor")
SOURCES = ("coco", "flickr30k", "shapes")
DEFAULT_VOCABULARY = {"coco": "coco", "flickr30k": "flickr30k", "shapes": "shapes"}

# skip reasons beyond the planner's
NO_TARGET_PAIR = "no_target_pair"
NO_CAPTION_MENTIONS_REMOVED = "no_caption_mentions_removed"
EDIT_STILL_MENTIONS_REMOVED = "edited_caption_mentions_removed"
EDIT_NAMES_NO_PRESENT = "edited_caption_names_no_present_class"
EDIT_EMPTY = "edited_caption_empty"  # every word belonged to removed phrases ("Frisbee!" -> "")
UNREADABLE_IMAGE = "unreadable_image"
IMAGE_TOO_LARGE = "image_too_large"  # the header declares more pixels than images.MAX_PIXELS (a bomb?)
IMAGE_SIZE_MISMATCH = "image_size_mismatch"
INPAINTER_FLAGGED = "inpainter_safety_flagged"


class SynthesisError(RuntimeError, ValueError):
    """A generation problem the user must fix; the message names the item and the fix. Also a ValueError,
    so the command line reports it as a user error (two lines, exit code 2)."""


def _f(default: Any, help: str) -> Any:
    """A dataclass field with its help text."""
    return field(default=default, metadata={"help": help})


@dataclass
class SynthesisSettings:
    """Every knob of a counterfactual split. Same settings + same source files -> identical bytes."""

    source: str = _f("coco", "source dataset: coco | flickr30k | shapes")
    split: str = _f("test", "source split: train -> fine-tuning set D', test -> ODmAP query set")
    inpainter: str = _f("opencv", "opencv[:telea|:ns] | zero | mean | blur | oracle | diffusers:<id or dir>")
    inpainter_options: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "the inpainter's options (checked: inpaint_options.OPTIONS)"}
    )
    text_method: str = _f("np_removal", "caption editing: np_removal | prompt | captioner")
    captioner: str | None = _f(None, "transformers image-to-text model id or dir (text_method='captioner')")
    spacy_model: str = _f("en_core_web_sm", "spaCy pipeline for noun chunks")
    vocabulary: str | None = _f(None, "word list name or file (None: the source's; coco = CHAIR substitute)")
    seed: int = _f(0, "seed of plans, caption choice and inpainting (>= 0)")
    alpha1: float = _f(0.4, "α1 in (0, 1]: a kept class must lose less than this share of its box area")
    alpha2: float = _f(0.8, "α2 in (0, 1]: a class with more of its box under c^r is removed too")
    alpha3: float = _f(0.7, "α3 in (0, 1]: the removed region must cover less than this share of the image")
    dilation: int = _f(0, "grow masks by this many pixels (>= 0, below the largest image side)")
    use_segmentation: bool = _f(False, "COCO polygons instead of boxes for the rules and the mask")
    captions_per_image: int = _f(1, "edited captions kept per image (one row each)")
    target_policy: str = _f("random", "which class to remove: random | partner | anchor of a target pair")
    target_pairs: list[tuple[str, str]] | None = field(
        default=None, metadata={"help": "(anchor, partner) class pairs; shapes default: the world's pairs"}
    )
    require_present_mention: bool | None = _f(
        None, "the edited caption must name a kept class (None: on for train, off otherwise)"
    )
    require_removed_mention: bool | None = _f(
        None,
        "an image needs a caption naming a removed class (None: on for train, D'; off otherwise: a query "
        "comes from the image rules alone, spec §1.6, and keeps an unedited caption naming no removed class)",
    )
    store_mask: bool = _f(True, "store the inpainting mask column")
    shard_size: int = _f(64, "images per shard (the resume unit)")
    batch_size: int = _f(8, "images per inpainter batch")
    num_workers: int = _f(2, "threads for decode / CPU fills / encode")
    on_error: str = _f("skip", "an unreadable image: skip (counted) | raise")
    max_images: int | None = _f(None, "only the first N >= 0 source images (None: all)")
    flickr30k_classes: tuple[str, ...] = _f(
        ("people", "animals", "vehicles", "instruments"), "Flickr30k Entities types used as classes"
    )

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise a ValueError naming the first inconsistent or out-of-range setting (with the allowed range)."""
        _check_numbers(self)
        check_alphas(self.alpha1, self.alpha2, self.alpha3)
        check_inpainter_options(self.inpainter, self.inpainter_options)
        _check_pairs(self.target_pairs)
        checks = [
            (self.source in SOURCES, f"source must be one of {SOURCES}, got {self.source!r}"),
            (
                self.text_method in TEXT_METHODS,
                f"text_method must be one of {TEXT_METHODS}, got {self.text_method!r}",
            ),
            (
                self.target_policy in TARGET_POLICIES,
                f"target_policy must be one of {TARGET_POLICIES}, got {self.target_policy!r}",
            ),
            (
                self.on_error in ("skip", "raise"),
                f"on_error must be 'skip' or 'raise', got {self.on_error!r}",
            ),
            (
                self.text_method != "captioner" or bool(self.captioner),
                "text_method 'captioner' needs a captioning model: --captioner <model id or dir> (captioner= in Python)",
            ),
            (
                self.inpainter != "oracle" or self.source == "shapes",
                "the oracle inpainter exists only for shapes",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    @property
    def require_removed(self) -> bool:
        """A caption mentioning a removed class is needed (else the image is skipped): D' yes, queries no."""
        if self.require_removed_mention is None:
            return self.split == "train"
        return bool(self.require_removed_mention)

    @property
    def vocabulary_name(self) -> str:
        return self.vocabulary or DEFAULT_VOCABULARY[self.source]

    @property
    def require_present(self) -> bool:
        return (
            self.split == "train"
            if self.require_present_mention is None
            else bool(self.require_present_mention)
        )

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["target_pairs"] = None if self.target_pairs is None else [list(p) for p in self.target_pairs]
        d["flickr30k_classes"] = list(self.flickr30k_classes)
        return d

    def fingerprint(self) -> str:
        """16 hex digits over the settings that change the output bytes (names work dirs and manifests).

        Plain sha256 of the canonical JSON, not :func:`hf_spurious.cache.digest`: the value is stored in the
        manifests and default work-dir names of existing runs, which must keep resuming.
        """
        d = self.to_dict()
        for k in ("num_workers", "on_error"):  # do not change the output bytes
            d.pop(k)
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


# name -> (lowest allowed value, allows None, what it is)
_INTEGERS = {
    "seed": (0, False, "the run's seed"),
    "dilation": (0, False, "mask growth in pixels (at most the image size)"),
    "captions_per_image": (1, False, "edited captions kept per image"),
    "shard_size": (1, False, "images per shard"),
    "batch_size": (1, False, "images per inpainter batch"),
    "num_workers": (0, False, "threads"),
    "max_images": (0, True, "source images to use (None: all)"),
}


def _check_numbers(settings: SynthesisSettings) -> None:
    for name, (low, optional, what) in _INTEGERS.items():
        value = getattr(settings, name)
        if value is None and optional:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} ({what}) must be an integer >= {low}, got {value!r}")


def _check_pairs(pairs: Any) -> None:
    if pairs is None:
        return
    for pair in pairs:
        if (
            not isinstance(pair, (tuple, list))
            or len(pair) != 2
            or not all(isinstance(c, str) and c.strip() for c in pair)
        ):
            raise ValueError(f"target_pairs holds (anchor, partner) class-name pairs, got {pair!r}")
        if pair[0] == pair[1]:
            raise ValueError(f"target pair {pair[0]}:{pair[1]} names one class twice; give two classes")
