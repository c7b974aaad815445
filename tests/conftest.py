"""Shared fixtures: offline environment, tiny saved models, a small SpuriousShapes world."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_EVALUATE_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """``tiny_model_dir(kind)`` -> a directory holding a saved tiny model of ``kind`` (built once per session)."""
    from hf_spurious.models.tiny import save_tiny

    root = tmp_path_factory.mktemp("tiny_models")
    cache: dict[str, Path] = {}

    def get(kind: str) -> Path:
        if kind not in cache:
            cache[kind] = Path(save_tiny(kind, root / kind))
        return cache[kind]

    return get


@pytest.fixture(scope="session")
def shapes_world(tmp_path_factory) -> Path:
    """A small retrieval SpuriousShapes world in the COCO / Karpathy layout (read it with the readers)."""
    from hf_spurious.world import WorldConfig, generate_world

    out = tmp_path_factory.mktemp("shapes_world")
    generate_world(WorldConfig(train_size=60, val_size=20, test_size=30, seed=0), out)
    return out


@pytest.fixture(scope="session")
def waterbirds_world(tmp_path_factory) -> Path:
    """A small classification SpuriousShapes world in the WILDS Waterbirds layout."""
    from hf_spurious.world import ClassificationWorldConfig, generate_world

    out = tmp_path_factory.mktemp("waterbirds_world")
    generate_world(
        ClassificationWorldConfig(train_size=80, val_size=40, test_size=40, pretrain_size=0, seed=0), out
    )
    return out
