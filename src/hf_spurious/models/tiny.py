"""Tiny, randomly initialised models for tests and the offline demo.

Everything here is built from configs with deterministic random weights: these are **random test
models, never real checkpoints**. They exist because no weights can be downloaded on the machines
this project runs on; the real loading code (``from_pretrained(id or dir)``) is exercised on them.

Each builder returns the same objects a real checkpoint gives (model + processor, or a diffusers
pipeline), and :func:`save_tiny` writes them with ``save_pretrained`` so that
``AutoModel`` / ``AutoProcessor`` / ``AutoPipelineForInpainting`` ``.from_pretrained(dir)`` reload them.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "DEFAULT_WORDS",
    "TINY_KINDS",
    "build_bert_tokenizer",
    "build_word_tokenizer",
    "save_tiny",
    "tiny_blip_captioner",
    "tiny_blip_retrieval",
    "tiny_clip",
    "tiny_inpaint_pipeline",
    "tiny_owlvit",
]

TINY_KINDS = ("clip", "blip", "blip-captioner", "inpaint", "owlvit")

# --------------------------------------------------------------------------------------------------
# Built-in word list
# --------------------------------------------------------------------------------------------------

# COCO-80 CHAIR word lists (spec §1.5), multi-word entries split into words below.
_CHAIR_WORDS = """
person girl boy man woman kid child chef baker people adult rider children baby worker passenger sister
biker policeman cop officer lady cowboy bride groom male female guy traveler mother father gentleman
pitcher player skier snowboarder skater skateboarder foreigner caller offender coworker trespasser patient
politician soldier grandchild serviceman walker drinker doctor bicyclist thief buyer teenager student camper
driver solider hunter shopper villager
bicycle bike unicycle minibike trike
car automobile van minivan sedan suv hatchback cab jeep coupe taxicab limo taxi
motorcycle scooter motor bike cycle motorbike moped
airplane jetliner plane air monoplane aircraft jet airbus biplane seaplane
bus minibus trolley
train locomotive tramway caboose
truck pickup lorry hauler firetruck
boat ship liner sailboat motorboat dinghy powerboat speedboat canoe skiff yacht kayak catamaran pontoon
houseboat vessel rowboat trawler ferryboat watercraft tugboat schooner barge ferry sailboard paddleboat
lifeboat freighter steamboat riverboat battleship steamship
traffic light street signal stop streetlight stoplight
fire hydrant sign parking meter bench pew
bird ostrich owl seagull goose duck parakeet falcon robin pelican waterfowl heron hummingbird mallard finch
pigeon sparrow seabird osprey blackbird fowl shorebird woodpecker egret chickadee quail bluebird kingfisher
buzzard willet gull swan bluejay flamingo cormorant parrot loon gosling waterbird pheasant rooster sandpiper
crow raven turkey oriole cowbird warbler magpie peacock cockatiel lorikeet puffin vulture condor macaw
peafowl cockatoo songbird
cat kitten feline tabby
dog puppy beagle pup chihuahua schnauzer dachshund rottweiler canine pitbull collie pug terrier poodle
labrador doggie doberman mutt doggy spaniel bulldog sheepdog weimaraner corgi cocker greyhound retriever
brindle hound whippet husky
horse colt pony racehorse stallion equine mare foal palomino mustang clydesdale bronc bronco
sheep lamb ram goat ewe
cow cattle oxen ox calf holstein heifer buffalo bull zebu bison
elephant bear panda zebra giraffe backpack knapsack umbrella handbag wallet purse briefcase tie bow
suitcase suit case luggage frisbee skis ski snowboard sports ball kite baseball bat glove skateboard
surfboard longboard skimboard shortboard wakeboard tennis racket bottle wine glass cup fork knife
pocketknife knive spoon bowl container banana apple sandwich burger sub cheeseburger hamburger orange
broccoli carrot hot pizza donut doughnut bagel cake cheesecake cupcake shortcake coffeecake pancake
chair seat stool couch sofa recliner futon loveseat settee chesterfield potted plant houseplant bed dining
table desk toilet urinal commode lavatory potty tv monitor televison television laptop computer notebook
netbook lenovo macbook mouse remote keyboard cell phone mobile cellphone telephone phon smartphone iphone
microwave oven stovetop stove top toaster sink refrigerator fridge freezer book clock vase scissors teddy
teddybear hair drier hairdryer toothbrush
"""

# Words of the 80 prompt templates (spec §2.9).
_TEMPLATE_WORDS = """
a bad photo of many sculpture the hard to see low resolution rendering graffiti cropped tattoo embroidered
bright clean dirty dark drawing my plastic cool close up black and white painting pixelated jpeg corrupted
blurry good in video game one doodle origami sketch toy rendition large nice weird cartoon art itap plushie
small
"""

# Articles, numerals, colours, common verbs, prepositions and scene words of captions.
_CAPTION_WORDS = """
an some two three four five six seven eight nine ten several few group pair couple lot lots single
red green blue yellow brown gray grey pink purple striped spotted colorful colored
is are was were be being has have had with on at by near next beside behind front inside outside into onto
over under above below across along around through from for its their his her while other another
sitting standing walking running riding holding playing eating looking flying chasing catching jumping
swimming sailing parked driving waiting lying laying carrying throwing wearing watching crossing resting
grazing perched floating surfing skiing skating posing together each same
field grass grassy road beach water ocean sea lake river sand snow sky park city yard lawn forest tree trees
building sidewalk shore waves wave land bamboo background landbird photograph picture image scene view
of this that there it he she they them day night sunny cloudy top bottom left right middle side
shape shapes circle square triangle star disc ring object objects round
big little tiny huge medium dotted checkered plain textured patterned place
"""


def _word_list() -> tuple[str, ...]:
    words: dict[str, None] = {}
    for block in (_CHAIR_WORDS, _TEMPLATE_WORDS, _CAPTION_WORDS):
        for w in block.split():
            words.setdefault(w.lower(), None)
    # Plurals of the nouns make "two dogs" two tokens instead of a byte soup.
    for w in list(words):
        if w.isalpha() and len(w) > 2 and not w.endswith("s"):
            words.setdefault(w + "s", None)
    return tuple(words)


DEFAULT_WORDS: tuple[str, ...] = _word_list()
"""Built-in caption vocabulary: CHAIR COCO-80 words, template words, articles, numerals, colours, verbs."""

# --------------------------------------------------------------------------------------------------
# Tokenizers
# --------------------------------------------------------------------------------------------------

_BOS = "<|startoftext|>"
_EOS = "<|endoftext|>"
_WORD_RE = re.compile(r"^[^\W\d_]+$")


def _byte_chars() -> list[str]:
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    return list(bytes_to_unicode().values())


def _word_symbols(word: str, byte_map: dict[int, str]) -> list[str]:
    """A word's byte-level symbols, the last one carrying CLIP's end-of-word suffix."""
    symbols = [byte_map[b] for b in word.encode("utf-8")]
    symbols[-1] += "</w>"
    return symbols


def _bpe(symbols: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """Plain BPE on one word: repeatedly merge the adjacent pair of lowest rank (all its occurrences)."""
    symbols = list(symbols)
    while len(symbols) > 1:
        pairs = set(itertools.pairwise(symbols))
        best = min(pairs, key=lambda p: ranks.get(p, float("inf")))
        if best not in ranks:
            break
        merged: list[str] = []
        i = 0
        while i < len(symbols):
            if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                merged.append(symbols[i] + symbols[i + 1])
                i += 2
            else:
                merged.append(symbols[i])
                i += 1
        symbols = merged
    return symbols


def _clean_words(words: Iterable[str]) -> list[str]:
    out: dict[str, None] = {}
    for raw in words:
        if not isinstance(raw, str):
            raise TypeError(f"tokenizer words must be strings, got {raw!r}")
        for w in raw.lower().split():  # multi-word entries ("hot dog") become their words
            if not _WORD_RE.match(w):
                raise ValueError(
                    f"tokenizer word {w!r} must consist of letters only (CLIP's pre-tokenizer splits digits and "
                    "punctuation off); split it into words first"
                )
            out.setdefault(w, None)
    return list(out)


def _word_merges(words: Sequence[str]) -> list[tuple[str, str]]:
    """BPE merges that make every word a single token (fixed point: later merges never break earlier words)."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    byte_map = bytes_to_unicode()
    ranks: dict[tuple[str, str], int] = {}
    merges: list[tuple[str, str]] = []
    for word in words:
        symbols = _word_symbols(word, byte_map)
        pieces = _bpe(symbols, ranks)
        while len(pieces) > 1:
            # A new merge has the highest rank, so it only fires when nothing else does: words that are
            # already single tokens keep their tokenization.
            pair = (pieces[0], pieces[1])
            ranks[pair] = len(merges)
            merges.append(pair)
            pieces = _bpe(symbols, ranks)
    return merges


def build_word_tokenizer(words: Iterable[str] | None = None, model_max_length: int = 32):
    """A working CLIP-style byte-level BPE tokenizer built offline from a word list.

    The base vocabulary holds the 256 byte symbols (with and without CLIP's ``</w>`` end-of-word suffix),
    then BPE merges that make each listed word (lower-cased, like CLIP) a single token; any other text
    still tokenizes through bytes. ``<|startoftext|>`` and ``<|endoftext|>`` are the last two ids, so
    the eos id is the largest id (OWL-ViT pools at the argmax id) and never 2 (CLIP's legacy pooling).
    """
    from transformers import CLIPTokenizer

    word_list = _clean_words(DEFAULT_WORDS if words is None else words)
    merges = _word_merges(word_list)
    chars = _byte_chars()
    tokens = chars + [c + "</w>" for c in chars] + [a + b for a, b in merges] + [_BOS, _EOS]
    vocab = {t: i for i, t in enumerate(dict.fromkeys(tokens))}
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=model_max_length)


_BERT_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_BLIP_BOS = "[DEC]"


def build_bert_tokenizer(words: Iterable[str] | None = None, model_max_length: int = 32):
    """A BERT WordPiece tokenizer from a word list (the kind BLIP uses), built offline.

    Each listed word is one token; any other word falls back to single characters (``a``, ``##b``, ...).
    Like BLIP's tokenizer it adds ``[DEC]`` as the bos token (the captioner's decoder start).
    """
    import string

    from transformers import BertTokenizer

    word_list = _clean_words(DEFAULT_WORDS if words is None else words)
    singles = list(string.ascii_lowercase + string.digits + string.punctuation)
    tokens = [*_BERT_SPECIALS, *singles, *("##" + c for c in singles), *word_list, _BLIP_BOS]
    vocab = {t: i for i, t in enumerate(dict.fromkeys(tokens))}
    return BertTokenizer(vocab=vocab, bos_token=_BLIP_BOS, model_max_length=model_max_length)


# --------------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------------


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Deterministic weight initialisation without touching the caller's global RNG state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _check_sizes(image_size: int, patch_size: int, hidden_size: int, num_heads: int) -> None:
    if image_size % patch_size:
        raise ValueError(f"image_size={image_size} must be a multiple of patch_size={patch_size}")
    if hidden_size % num_heads:
        raise ValueError(f"hidden_size={hidden_size} must be a multiple of num_heads={num_heads}")


def _text_ids(tok) -> dict[str, int]:
    return {
        "bos_token_id": tok.bos_token_id,
        "eos_token_id": tok.eos_token_id,
        "pad_token_id": tok.pad_token_id,
    }


def tiny_clip(
    words: Iterable[str] | None = None,
    *,
    image_size: int = 32,
    patch_size: int = 8,
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 4,
    projection_dim: int = 16,
    max_length: int = 32,
    intermediate_size: int | None = None,
    text_hidden_size: int | None = None,
    text_num_layers: int | None = None,
    seed: int = 0,
):
    """A random tiny ``CLIPModel`` and its ``CLIPProcessor`` (PIL image processor, word tokenizer).

    A random test model, never a real one. Sizes are parameters (the demo uses e.g. 64 px, patch 8,
    hidden 128, 4 layers). ``text_hidden_size`` / ``text_num_layers`` default to the vision sizes and
    ``intermediate_size`` to 4 × hidden. The text config's bos/eos/pad ids are the tokenizer's; eos is
    never 2, so CLIP pools the text at the first eos token.
    """
    from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPProcessor

    _check_sizes(image_size, patch_size, hidden_size, num_heads)
    tok = build_word_tokenizer(words, model_max_length=max_length)
    t_hidden = text_hidden_size or hidden_size
    _check_sizes(image_size, patch_size, t_hidden, num_heads)
    ids = _text_ids(tok)
    if ids["eos_token_id"] == 2:  # pragma: no cover - impossible with the byte base vocabulary
        raise AssertionError("eos id 2 would turn on CLIP's legacy argmax pooling")
    config = CLIPConfig(
        text_config=_tower(
            t_hidden,
            text_num_layers or num_layers,
            num_heads,
            intermediate_size,
            vocab_size=len(tok),
            max_position_embeddings=max_length,
            **ids,
        ),
        vision_config=_tower(
            hidden_size,
            num_layers,
            num_heads,
            intermediate_size,
            image_size=image_size,
            patch_size=patch_size,
        ),
        projection_dim=projection_dim,
    )
    with _seeded(seed):
        model = CLIPModel(config)
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    processor = CLIPProcessor(image_processor=image_processor, tokenizer=tok)
    return model.eval(), processor


def _tower(hidden_size: int, num_layers: int, num_heads: int, intermediate_size: int | None, **extra) -> dict:
    """One transformer tower's config (text or vision): sizes, MLP width 4 x hidden unless given, extras."""
    return dict(
        hidden_size=hidden_size,
        intermediate_size=intermediate_size or 4 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        **extra,
    )


def _blip_config(
    tok,
    *,
    image_size: int,
    patch_size: int,
    hidden_size: int,
    num_layers: int,
    num_heads: int,
    projection_dim: int,
    max_length: int,
    intermediate_size: int | None,
):
    from transformers import BlipConfig

    _check_sizes(image_size, patch_size, hidden_size, num_heads)
    return BlipConfig(
        text_config=_tower(
            hidden_size,
            num_layers,
            num_heads,
            intermediate_size,
            vocab_size=len(tok),
            max_position_embeddings=max_length,
            encoder_hidden_size=hidden_size,
            bos_token_id=tok.bos_token_id,
            pad_token_id=tok.pad_token_id,
            sep_token_id=tok.sep_token_id,
            eos_token_id=tok.sep_token_id,
        ),
        vision_config=_tower(
            hidden_size,
            num_layers,
            num_heads,
            intermediate_size,
            image_size=image_size,
            patch_size=patch_size,
            # BLIP's default 1e-10 makes every image embed alike; random tests need distinct embeddings.
            initializer_range=0.02,
        ),
        projection_dim=projection_dim,
        image_text_hidden_size=projection_dim,
    )


def _blip_processor(tok, image_size: int):
    from transformers import BlipImageProcessorPil, BlipProcessor

    image_processor = BlipImageProcessorPil(size={"height": image_size, "width": image_size})
    return BlipProcessor(image_processor=image_processor, tokenizer=tok)


def tiny_blip_retrieval(
    words: Iterable[str] | None = None,
    *,
    image_size: int = 32,
    patch_size: int = 8,
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 4,
    projection_dim: int = 16,
    max_length: int = 32,
    intermediate_size: int | None = None,
    seed: int = 0,
):
    """A random tiny ``BlipForImageTextRetrieval`` and its ``BlipProcessor`` (a random test model)."""
    from transformers import BlipForImageTextRetrieval

    return _tiny_blip(
        BlipForImageTextRetrieval,
        words,
        image_size=image_size,
        patch_size=patch_size,
        hidden_size=hidden_size,
        num_layers=num_layers,
        num_heads=num_heads,
        projection_dim=projection_dim,
        max_length=max_length,
        intermediate_size=intermediate_size,
        seed=seed,
    )


def tiny_blip_captioner(
    words: Iterable[str] | None = None,
    *,
    image_size: int = 32,
    patch_size: int = 8,
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 4,
    max_length: int = 32,
    intermediate_size: int | None = None,
    seed: int = 0,
):
    """A random tiny ``BlipForConditionalGeneration`` captioner and its ``BlipProcessor`` (a random test model).

    Its captions are random words from the vocabulary (pass ``max_new_tokens`` to ``generate``). It runs in
    ``pipeline("image-text-to-text", model=dir)`` (transformers 5 has no "image-to-text" task any more).
    """
    from transformers import BlipForConditionalGeneration

    return _tiny_blip(
        BlipForConditionalGeneration,
        words,
        image_size=image_size,
        patch_size=patch_size,
        hidden_size=hidden_size,
        num_layers=num_layers,
        num_heads=num_heads,
        projection_dim=hidden_size,
        max_length=max_length,
        intermediate_size=intermediate_size,
        seed=seed,
    )


def _tiny_blip(
    model_class: type, words: Iterable[str] | None, *, image_size: int, max_length: int, seed: int, **sizes
):
    """Build ``model_class`` from a tiny BLIP config with a word-list BERT tokenizer, seeded; with its processor."""
    tok = build_bert_tokenizer(words, model_max_length=max_length)
    config = _blip_config(tok, image_size=image_size, max_length=max_length, **sizes)
    with _seeded(seed):
        model = model_class(config)
    return model.eval(), _blip_processor(tok, image_size)


def tiny_owlvit(
    words: Iterable[str] | None = None,
    *,
    image_size: int = 32,
    patch_size: int = 8,
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 4,
    max_length: int = 16,
    intermediate_size: int | None = None,
    seed: int = 0,
):
    """A random tiny ``OwlViTForObjectDetection`` and its ``OwlViTProcessor`` (a random test model).

    Its boxes are meaningless; it exercises the detection and post-processing code paths. OWL-ViT's
    class head needs the projection size to equal the text hidden size, so both are ``hidden_size``.
    """
    from transformers import OwlViTConfig, OwlViTForObjectDetection, OwlViTImageProcessorPil, OwlViTProcessor

    _check_sizes(image_size, patch_size, hidden_size, num_heads)
    tok = build_word_tokenizer(words, model_max_length=max_length)
    config = OwlViTConfig(
        text_config=_tower(
            hidden_size,
            num_layers,
            num_heads,
            intermediate_size,
            vocab_size=len(tok),
            max_position_embeddings=max_length,
            **_text_ids(tok),
        ),
        vision_config=_tower(
            hidden_size,
            num_layers,
            num_heads,
            intermediate_size,
            image_size=image_size,
            patch_size=patch_size,
        ),
        projection_dim=hidden_size,
    )
    with _seeded(seed):
        model = OwlViTForObjectDetection(config)
    image_processor = OwlViTImageProcessorPil(
        size={"height": image_size, "width": image_size},
        crop_size={"height": image_size, "width": image_size},
    )
    processor = OwlViTProcessor(image_processor=image_processor, tokenizer=tok)
    return model.eval(), processor


def tiny_inpaint_pipeline(
    seed: int = 0,
    *,
    words: Iterable[str] | None = None,
    max_length: int = 16,
    block_out_channels: tuple[int, int] = (16, 32),
    cross_attention_dim: int = 32,
):
    """A random tiny ``StableDiffusionInpaintPipeline`` (a random test pipeline; it paints noise).

    UNet with 9 input channels, a 2-block VAE (scale factor 2), a tiny CLIP text encoder and a DDIM
    scheduler; it runs 2 steps on a 64x64 image in a fraction of a second.
    """
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionInpaintPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tok = build_word_tokenizer(words, model_max_length=max_length)
    with _seeded(seed):
        unet = UNet2DConditionModel(
            block_out_channels=block_out_channels,
            layers_per_block=1,
            sample_size=32,
            in_channels=9,
            out_channels=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=cross_attention_dim,
            attention_head_dim=8,
            norm_num_groups=8,
        )
        vae = AutoencoderKL(
            block_out_channels=block_out_channels,
            in_channels=3,
            out_channels=3,
            latent_channels=4,
            norm_num_groups=8,
            down_block_types=("DownEncoderBlock2D",) * 2,
            up_block_types=("UpDecoderBlock2D",) * 2,
            sample_size=64,
        )
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=len(tok),
                hidden_size=cross_attention_dim,
                intermediate_size=37,
                num_hidden_layers=2,
                num_attention_heads=4,
                max_position_embeddings=max_length,
                **_text_ids(tok),
            )
        )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    pipe = StableDiffusionInpaintPipeline(
        vae=vae.eval(),
        text_encoder=text_encoder.eval(),
        tokenizer=tok,
        unet=unet.eval(),
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


# --------------------------------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------------------------------

_README = """---
tags: [hf-spurious, random-test-model]
---
# Tiny random `{kind}` test model

Built by `hf_spurious.models.tiny.save_tiny({kind!r}, ...)` with random weights (seed {seed}).
**This is not a real checkpoint**: it only exercises the loading and inference code offline.
"""


def save_tiny(kind: str, out_dir: str | Path, **kw: Any) -> Path:
    """Build a tiny random model of ``kind`` and ``save_pretrained`` it (with its processor) into ``out_dir``.

    ``kind`` is one of ``"clip"``, ``"blip"`` (retrieval), ``"blip-captioner"``, ``"inpaint"``, ``"owlvit"``;
    ``kw`` goes to the builder. The folder reloads with ``from_pretrained(out_dir)`` like a real checkpoint.
    Returns ``out_dir`` as a ``Path``.
    """
    builders = {
        "clip": tiny_clip,
        "blip": tiny_blip_retrieval,
        "blip-captioner": tiny_blip_captioner,
        "owlvit": tiny_owlvit,
        "inpaint": tiny_inpaint_pipeline,
    }
    if kind not in builders:
        raise ValueError(f"unknown tiny model kind {kind!r}; choose one of {', '.join(TINY_KINDS)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    built = builders[kind](**kw)
    if kind == "inpaint":
        built.save_pretrained(out)
    else:
        model, processor = built
        model.save_pretrained(out)
        processor.save_pretrained(out)
    (out / "README.md").write_text(_README.format(kind=kind, seed=kw.get("seed", 0)), encoding="utf-8")
    return out
