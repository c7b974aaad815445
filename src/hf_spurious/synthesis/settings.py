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
IMAGE_SIZE_MISMATCH = "image_size_mismatch"
INPAINTER_FLAGGED = "inpainter_safety_flagged"


class SynthesisError(RuntimeError):
    """A generation problem the user must fix; the message names the item and the fix."""


@dataclass
class SynthesisSettings:
    """Every knob of a counterfactual split. Same settings + same source files -> identical bytes."""

    source: str = "coco"
    split: str = "test"  # train -> fine-tuning set D', test -> ODmAP query set
    inpainter: str = "opencv"  # opencv[:telea|:ns] | zero | mean | blur | oracle | diffusers:<id or dir>
    inpainter_options: dict[str, Any] = field(default_factory=dict)
    text_method: str = "np_removal"  # np_removal | prompt | captioner
    captioner: str | None = None  # transformers image-to-text model id or dir (text_method="captioner")
    spacy_model: str = "en_core_web_sm"
    vocabulary: str | None = None  # None: the source's default ("coco" = CHAIR word list substitute)
    seed: int = 0
    alpha1: float = 0.4
    alpha2: float = 0.8
    alpha3: float = 0.7
    dilation: int = 0
    use_segmentation: bool = False
    captions_per_image: int = 1
    target_policy: str = "random"  # random | partner | anchor
    target_pairs: list[tuple[str, str]] | None = None  # (anchor, partner); shapes: read from world.json
    require_present_mention: bool | None = None  # None: on for split "train" (D'), off otherwise
    store_mask: bool = True
    shard_size: int = 64
    batch_size: int = 8
    num_workers: int = 2
    on_error: str = "skip"  # skip | raise
    max_images: int | None = None
    flickr30k_classes: tuple[str, ...] = ("people", "animals", "vehicles", "instruments")

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise a ValueError naming the first inconsistent setting."""
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
            (self.shard_size >= 1 and self.batch_size >= 1, "shard_size and batch_size must be >= 1"),
            (self.captions_per_image >= 1, "captions_per_image must be >= 1"),
            (self.dilation >= 0, "dilation must be >= 0 pixels"),
            (
                self.text_method != "captioner" or bool(self.captioner),
                "text_method='captioner' needs captioner=<model id or dir>",
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
