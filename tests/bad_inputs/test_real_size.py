"""Bad inputs to the real-size model builder (hf_spurious.models.real_size)."""

from __future__ import annotations

from hf_spurious.models.real_size import build_real_size, real_size_config

from ._cases import Case, cases, check

CASES = [
    Case(
        "real-size model name unknown",
        lambda tmp: real_size_config("clip-vit-huge"),
        raises=ValueError,
        says=("clip-vit-huge", "clip-vit-base-patch32", "choose one of"),
    ),
    Case(
        "real-size override key unknown",
        lambda tmp: build_real_size("clip-vit-base-patch32", overrides={"vision_config": {"patch_sise": 16}}),
        raises=ValueError,
        says=("vision_config.", "patch_sise", "not a key"),
    ),
    Case(
        "real-size override top-level key unknown",
        lambda tmp: build_real_size("sd-1.5-inpainting", overrides={"unett": {}}),
        raises=ValueError,
        says=("unett", "unet", "not a key"),
    ),
]


@cases(CASES)
def test_real_size_rejects(case, tmp_path):
    check(case, tmp_path)
