"""D′ for training: exactly one config and split of an export, no evaluation image, memory-mapped rows."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from hf_spurious.cli.train import load_counterfactuals, load_data
from hf_spurious.training.rows import counterfactual_rows, training_pairs


@pytest.fixture(scope="module")
def export_dir(shapes_world, tmp_path_factory) -> Path:
    """Train and test configs exported side by side, as ``build.sh`` and the Hub hold them (``.work`` kept)."""
    from hf_spurious.cli import main

    out = tmp_path_factory.mktemp("dprime") / "cf"
    for split in ("train", "test"):
        argv = ["counterfactuals", "--source", "shapes", "--data-dir", str(shapes_world), "--split", split,
                "--inpainter", "zero", "--out", str(out), "--num-workers", "1", "--target-policy", "partner"]  # fmt: skip
        assert main(argv) == 0
    assert list((out / ".work").rglob("*.parquet")), "the work shards stay next to the export"
    return out


def _ns(shapes_world: Path, cf: Path, **kw) -> argparse.Namespace:
    values = dict(
        dataset="shapes",
        data_dir=str(shapes_world),
        counterfactual_dir=str(cf),
        counterfactual_config=None,
        counterfactual_split="train",
        caption_column=None,
        train_split="train",
        eval_split="val",
        max_train_samples=None,
    )
    return argparse.Namespace(**{**values, **kw})


def _written_rows(export: Path, config: str) -> int:
    return json.loads((export / "provenance.json").read_text())[config]["stats"]["rows"]


def test_an_export_with_two_configs_needs_a_config_name(shapes_world, export_dir):
    with pytest.raises(ValueError, match=r"configs \['test', 'train'\].*--counterfactual-config"):
        load_data(_ns(shapes_world, export_dir), "retrieval")


def test_d_prime_rows_are_exactly_the_rows_the_builder_wrote(shapes_world, export_dir, capsys):
    from hf_spurious.sources import read_coco

    train, _ = load_data(_ns(shapes_world, export_dir, counterfactual_config="train"), "retrieval")
    d = len([c for r in read_coco(shapes_world, "train", vocabulary="shapes") for c in r.captions])
    written = _written_rows(export_dir, "train")
    assert written > 0
    flags = list(train["is_counterfactual"])
    assert len(train) == d + written and sum(flags) == written  # no .work shard, no other config
    cf_ids = [i for i, f in zip(train["image_id"], flags) if f]
    cf_captions = [c for c, f in zip(train["caption"], flags) if f]
    assert len(set(zip(cf_ids, cf_captions))) == written  # every pair once
    assert f"D {d} + D′ {written}" in capsys.readouterr().out


def test_a_d_prime_built_from_the_test_split_is_refused(shapes_world, export_dir):
    with pytest.raises(ValueError, match=r"another split than 'train'.*source_split 'test'"):
        load_data(
            _ns(shapes_world, export_dir, counterfactual_config="test", counterfactual_split="test"),
            "retrieval",
        )


def test_a_d_prime_row_from_an_evaluation_image_is_refused(shapes_world):
    from hf_spurious.sources import read_coco

    val_id = next(iter(read_coco(shapes_world, "val", vocabulary="shapes"))).image_id
    rows = [
        {"image": b"png", "caption": "a circle", "source_image_id": "train-1", "source_split": "train"},
        {"image": b"png", "caption": "a square", "source_image_id": val_id, "source_split": "train"},
    ]
    with pytest.raises(ValueError, match=rf"1 counterfactual rows.*row 1: source_image_id '{val_id}'"):
        counterfactual_rows(rows, train_split="train", exclude_image_ids={val_id})
    assert len(counterfactual_rows(rows[:1], train_split="train", exclude_image_ids={val_id})) == 1


def test_the_loader_takes_one_split_of_a_parquet_file_or_folder(export_dir, tmp_path):
    files = sorted((export_dir / "train").glob("train-*.parquet"))
    assert len(load_counterfactuals(str(files[0]))) == _written_rows(export_dir, "train")
    with pytest.raises(FileNotFoundError, match="no 'val' split"):
        load_counterfactuals(str(export_dir), "train", "val")
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        load_counterfactuals(str(tmp_path / "missing" / "cf"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="not a D′ export"):
        load_counterfactuals(str(empty))


def test_d_prime_stays_memory_mapped_and_undecoded(export_dir, shapes_world):
    from hf_spurious.images import load_rgb
    from hf_spurious.sources import read_coco
    from hf_spurious.training.rows import retrieval_rows

    loaded = load_counterfactuals(str(export_dir), "train")
    d_prime = counterfactual_rows(loaded, train_split="train")
    assert d_prime.cache_files, "D′ must stay an Arrow table on disk, not Python objects"
    assert set(d_prime.column_names) == {"image", "caption", "image_id", "is_counterfactual"}
    d = retrieval_rows(read_coco(shapes_world, "train", vocabulary="shapes"))[:5]
    pairs = training_pairs(d, d_prime)
    assert len(pairs) == 5 + len(d_prime)
    first_cf = pairs[5]
    assert first_cf["is_counterfactual"] and isinstance(first_cf["image"]["bytes"], bytes)
    assert pairs[0]["image"]["path"] == str(d[0]["image"]) and not pairs[0]["is_counterfactual"]
    assert load_rgb(first_cf["image"]).size == load_rgb(pairs[0]["image"]).size


def test_cli_train_on_d_and_d_prime(tiny_model_dir, shapes_world, export_dir, tmp_path):
    from hf_spurious.cli import main

    out = tmp_path / "run"
    code = main(
        [
            "train",
            "--model",
            str(tiny_model_dir("clip")),
            "--dataset",
            "shapes",
            "--data_dir",
            str(shapes_world),
            "--counterfactual_dir",
            str(export_dir),
            "--counterfactual_config",
            "train",
            "--output_dir",
            str(out),
            "--max_steps",
            "2",
            "--per_device_train_batch_size",
            "8",
            "--use_cpu",
            "--eval_split",
            "",
            "--disable_tqdm",
            "true",
            "--report_to",
            "none",
        ]
    )
    assert code == 0 and (out / "model.safetensors").exists()
