"""Tiny offline models: tokenizers, save/reload round trips, and each model's real entry points."""

from __future__ import annotations

import string

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from hf_spurious.models import tiny

torch.set_num_threads(1)


def _image(seed: int, size=(40, 48)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(*size, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def default_tok():
    return tiny.build_word_tokenizer()


# ----------------------------------------------------------------------------------------- tokenizers


def test_default_words_cover_the_required_lists():
    words = set(tiny.DEFAULT_WORDS)
    for w in ["person", "dog", "frisbee", "surfboard", "traffic", "light", "teddy", "bear", "hot", "knive"]:
        assert w in words  # CHAIR lists (multi-word entries split)
    for w in ["itap", "origami", "plushie", "embroidered", "pixelated", "jpeg", "sculpture"]:
        assert w in words  # template words
    for w in ["a", "the", "two", "three", "red", "blue", "sitting", "on", "near", "dogs"]:
        assert w in words
    assert len(words) == len(tiny.DEFAULT_WORDS)  # no duplicates


def test_every_default_word_is_one_token_and_decodes_back(default_tok):
    for w in tiny.DEFAULT_WORDS:
        ids = default_tok(w, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1, (w, ids)
        assert default_tok.decode(ids).strip() == w
    # upper case is lower-cased like CLIP
    assert (
        default_tok("Dog", add_special_tokens=False)["input_ids"]
        == default_tok("dog", add_special_tokens=False)["input_ids"]
    )


def test_unknown_words_fall_back_to_bytes_and_round_trip(default_tok):
    text = "a zqxv of qwerty-ish émigré 42!"
    ids = default_tok(text)["input_ids"]
    assert ids[0] == default_tok.bos_token_id and ids[-1] == default_tok.eos_token_id
    assert default_tok.unk_token_id not in ids[1:-1]
    assert len(ids) > len(text.split()) + 2  # unknown words need several byte tokens
    assert default_tok.decode(ids, skip_special_tokens=True) == "a zqxv of qwerty - ish émigré 4 2 !"


def test_special_ids_are_safe_for_clip_and_owlvit(default_tok):
    assert default_tok.eos_token_id != 2
    assert default_tok.eos_token_id == len(default_tok) - 1  # OWL-ViT pools at the argmax id
    assert default_tok.pad_token_id == default_tok.eos_token_id
    assert default_tok.model_max_length == 32
    batch = default_tok(["a dog", "a dog on the grass"], padding="max_length", max_length=32)
    assert all(len(x) == 32 for x in batch["input_ids"])


_word = st.text(alphabet=string.ascii_lowercase, min_size=1, max_size=9)


@settings(max_examples=15, deadline=None)
@given(st.lists(_word, min_size=1, max_size=25, unique=True))
def test_any_word_list_gives_single_tokens(words):
    tok = tiny.build_word_tokenizer(words, model_max_length=16)
    for w in words:
        assert len(tok(w, add_special_tokens=False)["input_ids"]) == 1, w
    sentence = " ".join(words[:5])
    assert tok.decode(tok(sentence)["input_ids"], skip_special_tokens=True) == sentence


def test_bad_words_are_rejected():
    with pytest.raises(ValueError, match="letters only"):
        tiny.build_word_tokenizer(["dog", "r2d2"])
    with pytest.raises(TypeError, match="strings"):
        tiny.build_word_tokenizer(["dog", 3])  # type: ignore[list-item]


def test_tokenizer_save_reload(tmp_path, default_tok):
    from transformers import AutoTokenizer

    default_tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    text = ["two dogs chasing a frisbee", "an unknownword near a bench"]
    assert again(text)["input_ids"] == default_tok(text)["input_ids"]


def test_bert_tokenizer_words_and_fallback(tmp_path):
    from transformers import AutoTokenizer

    tok = tiny.build_bert_tokenizer()
    for w in ["dog", "frisbee", "surfboard", "the"]:
        assert len(tok(w, add_special_tokens=False)["input_ids"]) == 1
    ids = tok("A Dog zqx!")["input_ids"]
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
    assert tok.unk_token_id not in ids
    assert tok.decode(ids, skip_special_tokens=True) == "a dog zqx!"
    assert tok.bos_token == "[DEC]"
    tok.save_pretrained(tmp_path)
    assert AutoTokenizer.from_pretrained(tmp_path)("a dog zqx")["input_ids"] == tok("a dog zqx")["input_ids"]


# ------------------------------------------------------------------------------------------- models


def _state_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_clip_is_deterministic_and_seed_dependent():
    a, _ = tiny.tiny_clip(seed=3)
    b, _ = tiny.tiny_clip(seed=3)
    c, _ = tiny.tiny_clip(seed=4)
    assert _state_equal(a, b)
    assert not _state_equal(a, c)


def test_clip_builder_keeps_global_rng():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    tiny.tiny_clip()
    assert torch.equal(torch.rand(3), expected)


def test_clip_sizes_are_parameters():
    model, proc = tiny.tiny_clip(image_size=64, patch_size=8, hidden_size=48, num_layers=3, projection_dim=24)
    assert model.config.vision_config.image_size == 64
    assert model.config.vision_config.num_hidden_layers == 3
    assert model.visual_projection.out_features == 24
    pix = proc(images=[_image(0)], return_tensors="pt")["pixel_values"]
    assert pix.shape == (1, 3, 64, 64)
    with pytest.raises(ValueError, match="multiple of patch_size"):
        tiny.tiny_clip(image_size=30, patch_size=8)


def test_clip_save_reload_identical(tiny_model_dir):
    from transformers import AutoModel, AutoProcessor, CLIPImageProcessorPil, CLIPModel

    d = tiny_model_dir("clip")
    model = AutoModel.from_pretrained(d)
    proc = AutoProcessor.from_pretrained(d)
    assert isinstance(model, CLIPModel)
    assert isinstance(proc.image_processor, CLIPImageProcessorPil)
    ref_model, ref_proc = tiny.tiny_clip()
    assert _state_equal(model, ref_model)
    assert model.config.text_config.eos_token_id == proc.tokenizer.eos_token_id != 2
    texts = ["a dog on the grass", "two red kites"]
    images = [_image(1), _image(2)]
    inputs = proc(text=texts, images=images, return_tensors="pt", padding=True)
    ref_inputs = ref_proc(text=texts, images=images, return_tensors="pt", padding=True)
    for k in inputs:
        assert torch.equal(inputs[k], ref_inputs[k])
    with torch.no_grad():
        out, ref = model(**inputs), ref_model(**ref_inputs)
    assert torch.equal(out.logits_per_image, ref.logits_per_image)
    assert (d / "README.md").read_text().count("not a real checkpoint") == 1


def test_clip_pools_text_at_the_eos_token():
    model, proc = tiny.tiny_clip()
    enc = proc.tokenizer(
        ["a dog", "a dog on a bench"], padding="max_length", max_length=32, return_tensors="pt"
    )
    with torch.no_grad():
        out = model.text_model(**enc)
    eos_pos = (enc["input_ids"] == proc.tokenizer.eos_token_id).int().argmax(-1)
    expected = out.last_hidden_state[torch.arange(2), eos_pos]
    assert torch.equal(out.pooler_output, expected)
    assert eos_pos.tolist() == [3, 6]


def test_blip_retrieval_save_reload_identical(tiny_model_dir):
    from transformers import AutoProcessor, BlipForImageTextRetrieval

    d = tiny_model_dir("blip")
    model = BlipForImageTextRetrieval.from_pretrained(d)
    proc = AutoProcessor.from_pretrained(d)
    ref_model, _ = tiny.tiny_blip_retrieval()
    assert _state_equal(model, ref_model)
    inputs = proc(images=[_image(3)], text=["a dog near a boat"], return_tensors="pt")
    with torch.no_grad():
        itm = model(**inputs, use_itm_head=True).itm_score
        ref = ref_model(**inputs, use_itm_head=True).itm_score
    assert itm.shape == (1, 2)
    assert torch.equal(itm, ref)


def test_blip_captioner_generates_and_runs_in_pipeline(tiny_model_dir):
    from transformers import (
        AutoModelForImageTextToText,
        AutoProcessor,
        BlipForConditionalGeneration,
        pipeline,
    )

    d = tiny_model_dir("blip-captioner")
    model = AutoModelForImageTextToText.from_pretrained(d)
    assert isinstance(model, BlipForConditionalGeneration)
    proc = AutoProcessor.from_pretrained(d)
    inputs = proc(images=_image(4), return_tensors="pt")
    a = model.generate(**inputs, max_new_tokens=5)
    b = model.generate(**inputs, max_new_tokens=5)
    assert torch.equal(a, b) and a.shape[1] <= 6
    caption = proc.batch_decode(a, skip_special_tokens=True)[0]
    assert isinstance(caption, str) and caption.strip()
    pipe = pipeline("image-text-to-text", model=str(d))
    out = pipe(images=_image(4), text="", max_new_tokens=5)
    assert isinstance(out[0]["generated_text"], str)


def test_owlvit_detects_and_post_processes(tiny_model_dir):
    from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

    d = tiny_model_dir("owlvit")
    model = AutoModelForZeroShotObjectDetection.from_pretrained(d)
    proc = AutoProcessor.from_pretrained(d)
    ref_model, _ = tiny.tiny_owlvit()
    assert _state_equal(model, ref_model)
    labels = [["a dog", "a frisbee"]]
    inputs = proc(text=labels, images=_image(5), return_tensors="pt")
    with torch.no_grad():
        out = model(**inputs)
    num_patches = (32 // 8) ** 2
    assert out.pred_boxes.shape == (1, num_patches, 4)
    res = proc.post_process_grounded_object_detection(
        out, threshold=0.0, target_sizes=[(40, 48)], text_labels=labels
    )
    assert res[0]["boxes"].shape == (num_patches, 4)
    assert set(res[0]["labels"].tolist()) <= {0, 1}
    res2 = proc.image_processor.post_process_object_detection(out, threshold=0.0, target_sizes=[(40, 48)])
    assert torch.equal(res2[0]["boxes"], res[0]["boxes"])


def test_inpaint_pipeline_runs_from_disk(tiny_model_dir):
    from diffusers import AutoPipelineForInpainting, StableDiffusionInpaintPipeline

    d = tiny_model_dir("inpaint")
    pipe = AutoPipelineForInpainting.from_pretrained(d)
    assert isinstance(pipe, StableDiffusionInpaintPipeline)
    pipe.set_progress_bar_config(disable=True)
    image = _image(6, size=(64, 64))
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))

    def run() -> np.ndarray:
        return pipe(
            "a dog on the grass",
            image=image,
            mask_image=mask,
            num_inference_steps=2,
            height=64,
            width=64,
            output_type="np",
            generator=torch.Generator().manual_seed(0),
        ).images[0]

    a, b = run(), run()
    assert a.shape == (64, 64, 3) and a.dtype == np.float32
    assert np.isfinite(a).all() and a.min() >= 0.0 and a.max() <= 1.0
    np.testing.assert_array_equal(a, b)


def test_save_tiny_rejects_unknown_kind(tmp_path):
    with pytest.raises(ValueError, match="unknown tiny model kind 'bert'"):
        tiny.save_tiny("bert", tmp_path)


# ------------------------------------------------------------------------------------ SigLIP / SigLIP 2

_SIGLIP_TOKENIZERS = {"siglip": tiny.build_siglip_tokenizer, "siglip2": tiny.build_siglip2_tokenizer}


@pytest.mark.parametrize("kind", list(_SIGLIP_TOKENIZERS))
def test_siglip_tokenizers_keep_every_default_word_whole(kind):
    tok = _SIGLIP_TOKENIZERS[kind]()
    for w in tiny.DEFAULT_WORDS:
        pieces = tok.convert_ids_to_tokens(tok("x " + w, add_special_tokens=False)["input_ids"])
        assert pieces[-1] == "▁" + w, (w, pieces)
    ids = tok("Two Dogs")["input_ids"]
    assert ids[-1] == tok.eos_token_id and tok.unk_token_id not in ids
    assert tok.decode(ids, skip_special_tokens=True) == "two dogs"  # lower-cased, like SigLIP's


@settings(max_examples=10, deadline=None)
@given(st.lists(_word, min_size=1, max_size=20, unique=True))
def test_siglip_tokenizer_any_word_list(words):
    tok = tiny.build_siglip_tokenizer(words)
    sentence = " ".join(words[:6])
    pieces = tok.convert_ids_to_tokens(tok(sentence, add_special_tokens=False)["input_ids"])
    assert pieces == ["▁" + w for w in words[:6]]
    assert tok.decode(tok(sentence)["input_ids"], skip_special_tokens=True) == sentence


@pytest.mark.parametrize("builder", [tiny.tiny_siglip, tiny.tiny_siglip2])
def test_siglip_builders_are_seeded_and_keep_global_rng(builder):
    a, _ = builder(seed=3)
    b, _ = builder(seed=3)
    c, _ = builder(seed=4)
    assert _state_equal(a, b) and not _state_equal(a, c)
    assert a.logit_scale.item() == pytest.approx(np.log(10.0)) and a.logit_bias.item() == -10.0
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    builder()
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("kind", ["siglip", "siglip2"])
def test_siglip_save_reload_identical(tiny_model_dir, kind):
    from transformers import AutoModel, AutoProcessor

    folder = tiny_model_dir(kind)
    model = AutoModel.from_pretrained(folder).eval()
    proc = AutoProcessor.from_pretrained(folder)
    ref, ref_proc = (tiny.tiny_siglip if kind == "siglip" else tiny.tiny_siglip2)()
    assert type(model) is type(ref) and _state_equal(model, ref)
    assert (
        proc.tokenizer("a dog on a bench")["input_ids"] == ref_proc.tokenizer("a dog on a bench")["input_ids"]
    )
    assert (folder / "README.md").read_text().count("not a real checkpoint") == 1
