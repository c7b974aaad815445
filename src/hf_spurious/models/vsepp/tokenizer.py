"""VSE++'s word-level vocabulary as a ``PreTrainedTokenizerFast``, and the model's processor.

VSE++ builds its vocabulary from the training captions: lower-cased word tokens seen at least 4 times,
plus ``<pad>`` (0), ``<start>`` (1), ``<end>`` (2) and ``<unk>`` (3); a caption is encoded as
``<start> words <end>``. The tokenizer here does the same with the ``tokenizers`` library (lower-casing,
words and punctuation split apart), so it saves and reloads with ``save_pretrained`` / ``AutoTokenizer``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "SPECIAL_TOKENS",
    "build_vsepp_processor",
    "build_vsepp_tokenizer",
]

SPECIAL_TOKENS = ("<pad>", "<start>", "<end>", "<unk>")
"""Ids 0-3, in VSE++'s order."""
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _backend(vocab: dict[str, int]) -> Any:
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors  # lazy: heavy
    from tokenizers.models import WordLevel

    backend = Tokenizer(WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(
        single="<start> $A <end>",
        pair="<start> $A <end> $B <end>",
        special_tokens=[("<start>", 1), ("<end>", 2)],
    )
    return backend


def build_vsepp_tokenizer(captions: Iterable[str], min_count: int = 4, model_max_length: int = 64) -> Any:
    """A word-level ``PreTrainedTokenizerFast`` from training captions (words with ``min_count``+ occurrences).

    Words are counted after the tokenizer's own normalisation and splitting, so every counted word
    encodes to its own id; rarer words become ``<unk>``. The vocabulary is sorted by count (then
    alphabetically) after the four special tokens.
    """
    from transformers import PreTrainedTokenizerFast  # lazy: heavy

    if int(min_count) < 1:
        raise ValueError(f"min_count must be >= 1 (VSE++ uses 4), got {min_count!r}")
    splitter = _backend({t: i for i, t in enumerate(SPECIAL_TOKENS)})
    counts: Counter[str] = Counter()
    for i, caption in enumerate(captions):
        if not isinstance(caption, str):
            raise ValueError(f"caption {i} is {type(caption).__name__}, not a string: pass the caption texts")
        text = splitter.normalizer.normalize_str(caption)
        counts.update(w for w, _ in splitter.pre_tokenizer.pre_tokenize_str(text))
    words = sorted((w for w, c in counts.items() if c >= min_count and w not in SPECIAL_TOKENS),
                   key=lambda w: (-counts[w], w))  # fmt: skip
    vocab = {t: i for i, t in enumerate([*SPECIAL_TOKENS, *words])}
    return PreTrainedTokenizerFast(
        tokenizer_object=_backend(vocab),
        pad_token="<pad>",
        bos_token="<start>",
        eos_token="<end>",
        unk_token="<unk>",
        model_max_length=model_max_length,
        padding_side="right",
    )


def build_vsepp_processor(tokenizer: Any, image_size: int = 224, resize: int | None = None) -> Any:
    """A ``CLIPProcessor`` pairing the word tokenizer with an ImageNet-normalised image processor.

    Images are resized (shortest edge ``resize``, default ``image_size * 256 / 224`` as for VGG) and
    centre-cropped to ``image_size``, then normalised with the ImageNet mean and std VGG was trained with.
    """
    from transformers import CLIPImageProcessorPil, CLIPProcessor  # lazy: heavy

    shortest = int(resize) if resize else max(int(image_size), round(image_size * 256 / 224))
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": shortest},
        crop_size={"height": int(image_size), "width": int(image_size)},
        image_mean=list(IMAGENET_MEAN),
        image_std=list(IMAGENET_STD),
    )
    return CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)
