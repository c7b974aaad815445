"""Bad model inputs (issue 13, rule 8; issue 14): a mistyped local path, an offline hub id, a folder that is
not a checkpoint, an unsupported model, and misuse of the SigLIP pieces each get a message naming the thing
and the fix (and the CLI exits 2 without a traceback)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ._cases import Case, cases, check, expect_cli_error


def _load(where):
    from hf_spurious.models import load_adapter

    return load_adapter(where)


def _typo_next_to_real_folder(tmp):
    (tmp / "runs" / "model_a").mkdir(parents=True)
    return _load(str(tmp / "runs" / "modle_a"))


def _folder_without_config(tmp):
    (tmp / "empty").mkdir()
    return _load(str(tmp / "empty"))


def _offline_hub_id(tmp):
    import huggingface_hub.constants as constants

    saved = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        return _load("no-such-org/siglip-not-cached")
    finally:
        constants.HF_HUB_OFFLINE = saved


def _unsupported_instance(tmp):
    from hf_spurious.models import load_adapter

    return load_adapter(nn.Linear(2, 2))


def _owlvit_checkpoint(tmp):
    from hf_spurious.models.tiny import save_tiny

    return _load(save_tiny("owlvit", tmp / "owlvit"))


def _blip_captioner(tmp):
    from hf_spurious.models.tiny import save_tiny

    return _load(save_tiny("blip-captioner", tmp / "cap"))


def _siglip():
    from hf_spurious.models import load_adapter
    from hf_spurious.models.tiny import tiny_siglip

    return load_adapter(*tiny_siglip(hidden_size=16, num_layers=1))


def _siglip_text_too_long(tmp):
    return _siglip().encode_texts(torch.ones(1, 70, dtype=torch.long))


def _siglip2(pixels):
    from hf_spurious.models import load_adapter
    from hf_spurious.models.tiny import tiny_siglip2

    return load_adapter(*tiny_siglip2(hidden_size=16, num_layers=1)).encode_images(pixels)


def _sigmoid_loss_unpaired(tmp):
    from hf_spurious.losses.sigmoid import sigmoid_pairwise_loss

    return sigmoid_pairwise_loss(torch.randn(3, 4), torch.randn(2, 4), 10.0, -10.0)


def _sigmoid_loss_vector_scale(tmp):
    from hf_spurious.losses.sigmoid import sigmoid_pairwise_loss

    return sigmoid_pairwise_loss(torch.randn(3, 4), torch.randn(3, 4), torch.ones(3), -10.0)


def _unknown_tiny_kind(tmp):
    from hf_spurious.models.tiny import save_tiny

    return save_tiny("siglip3", tmp / "x")


def _siglip2_non_square_positions(tmp):
    from hf_spurious.models.tiny import tiny_siglip2

    return tiny_siglip2(max_num_patches=12)


def _freeze(policy, **kw):
    from hf_spurious.models import apply_freezing

    return apply_freezing(_siglip(), policy, **kw)


CASES = [
    Case("model path typo next to a real folder", _typo_next_to_real_folder, raises=FileNotFoundError,
         says=("modle_a", "does not exist", "did you mean", "model_a")),
    Case("model path with a missing parent folder", lambda tmp: _load("./no_runs_here/model"),
         raises=FileNotFoundError, says=("./no_runs_here/model", "parent folder", "does not exist")),
    Case("model folder without config.json", _folder_without_config, raises=FileNotFoundError,
         says=("empty", "no config.json", "save_pretrained")),
    Case("hub id while offline", _offline_hub_id, raises=OSError,
         says=("no-such-org/siglip-not-cached", "HF_HUB_OFFLINE", "offline", "local folder")),
    Case("unsupported model instance", _unsupported_instance, raises=ValueError,
         says=("Linear", "supported", "CLIPModel", "SiglipModel", "Siglip2Model", "BlipForImageTextRetrieval")),
    Case("unsupported checkpoint type", _owlvit_checkpoint, raises=ValueError,
         says=("owlvit", "model_type", "supported", "SiglipModel")),
    Case("BLIP checkpoint without the retrieval head", _blip_captioner, raises=ValueError,
         says=("BlipForConditionalGeneration", "BlipForImageTextRetrieval checkpoint")),
    Case("SigLIP text longer than its 64 positions", _siglip_text_too_long, raises=ValueError,
         says=("70 tokens", "64 positions", "truncation=True")),
    Case("SigLIP 2 pixel values of the wrong rank", lambda tmp: _siglip2(torch.zeros(2, 32)), raises=ValueError,
         says=("packed NaFlex", "(2, 32)", "preprocess_images")),
    Case("SigLIP 2 image not a multiple of the patch size", lambda tmp: _siglip2(torch.zeros(2, 3, 30, 32)),
         raises=ValueError, says=("30x32", "patch size 8")),
    Case("sigmoid loss on unpaired batches", _sigmoid_loss_unpaired, raises=ValueError,
         says=("3 images vs 2 texts",)),
    Case("sigmoid loss with a vector logit scale", _sigmoid_loss_vector_scale, raises=ValueError,
         says=("logit_scale must be a scalar", "(3,)")),
    Case("unknown tiny model kind", _unknown_tiny_kind, raises=ValueError,
         says=("siglip3", "siglip", "siglip2", "clip")),
    Case("unknown freezing policy", lambda tmp: _freeze("everything"), raises=ValueError,
         says=("everything", "projection", "full", "lora")),
    Case("LoRA targets that match no module", lambda tmp: _freeze("lora", lora_target_modules=["qkv_nope"]),
         raises=ValueError, says=("qkv_nope", "SiglipModel")),
    Case("LoRA rank zero", lambda tmp: _freeze("lora", lora_r=0), raises=ValueError, says=("lora_r", ">= 1")),
    Case("tiny SigLIP 2 with a non-square position grid", _siglip2_non_square_positions, raises=ValueError,
         says=("max_num_patches=12", "square")),
]  # fmt: skip


@cases(CASES)
def test_model_inputs_rejected(case, tmp_path):
    check(case, tmp_path)


@pytest.mark.parametrize("command", ["evaluate", "discover"])
def test_cli_model_path_typo(command, capsys, tmp_path, waterbirds_world):
    """The data is fine; the model path has a typo: exit 2 naming the path and the near miss."""
    (tmp_path / "model_a").mkdir()
    argv = [command, "--model", str(tmp_path / "modle_a"), "--data-dir", str(waterbirds_world)]
    argv += ["--attribute-column", "place"] if command == "discover" else ["--task", "classification"]
    expect_cli_error(argv, capsys, code=2, says=("modle_a", "does not exist", "did you mean", "model_a"))
