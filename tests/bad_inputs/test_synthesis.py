"""Bad inputs of the counterfactual side: settings, inpainter options, world configs, generator inputs,
work directories, exports and zero rows (issue 13 rules 1-4). Each case asserts its exact outcome."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from hf_spurious.data.export import check_config_name, export_parquet, push_decorrelated_to_hub
from hf_spurious.records import SceneRecord
from hf_spurious.synthesis.generator import generate_counterfactuals
from hf_spurious.synthesis.inpaint import get_inpainter
from hf_spurious.synthesis.merge import merge_shards
from hf_spurious.synthesis.settings import SynthesisError, SynthesisSettings
from hf_spurious.synthesis.shards import collect_stats
from hf_spurious.world import ClassificationWorldConfig, WorldConfig

from ._cases import Case, cases, check, expect_cli_error, expect_error, expect_skip

NAN = float("nan")
TWO = [((2, 2, 10, 10), "dog"), ((40, 40, 10, 10), "frisbee")]


def S(**kw) -> SynthesisSettings:
    base = {"source": "shapes", "inpainter": "zero", "shard_size": 4, "num_workers": 1}
    return SynthesisSettings(**{**base, **kw})


def _image(tmp: Path, name: str = "a.png", size: int = 64) -> Path:
    path = tmp / name
    arr = np.full((size, size, 3), 120, np.uint8)
    arr[2:12, 2:12] = (200, 30, 30)
    cv2.imwrite(str(path), arr)
    return path


def _record(image_id, path, objects=TWO, captions=("A dog with a frisbee",), w=64, h=64) -> SceneRecord:
    return SceneRecord.build(
        image_id=image_id,
        image_path=str(path),
        width=w,
        height=h,
        objects=objects,
        captions=captions,
        split="test",
    )


def _run(records, settings, work, **kw):
    return generate_counterfactuals(
        records, settings, work, process_index=0, num_processes=1, show_progress=False, **kw
    )


def _bomb(tmp: Path) -> Path:
    """A PNG whose header declares 100000 x 100000 pixels (a decompression bomb)."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)
    path = tmp / "bomb.png"
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )
    return path


# ----------------------------------------------------------------------------- settings (rule 4)

SETTINGS = [
    Case("alpha1 above 1", lambda t: S(alpha1=40), says=("alpha1", "(0, 1]")),
    Case("alpha2 NaN", lambda t: S(alpha2=NAN), says=("alpha2", "(0, 1]")),
    Case("alpha3 zero", lambda t: S(alpha3=0), says=("alpha3", "(0, 1]")),
    Case("alpha1 a string", lambda t: S(alpha1="0.4"), says=("alpha1", "number")),
    Case("max-images negative", lambda t: S(max_images=-1), says=("max_images", ">= 0")),
    Case("max-images a float", lambda t: S(max_images=2.5), says=("max_images", "integer")),
    Case("dilation negative", lambda t: S(dilation=-3), says=("dilation", ">= 0")),
    Case("seed not an integer", lambda t: S(seed=1.5), says=("seed", "integer")),
    Case("shard size zero", lambda t: S(shard_size=0), says=("shard_size", ">= 1")),
    Case("captions per image zero", lambda t: S(captions_per_image=0), says=("captions_per_image", ">= 1")),
    Case("unknown text method", lambda t: S(text_method="gpt"), says=("text_method", "np_removal")),
    Case("unknown on-error", lambda t: S(on_error="ignore"), says=("on_error", "skip")),
    Case("captioner method without model", lambda t: S(text_method="captioner"), says=("--captioner",)),
    Case("oracle outside shapes", lambda t: S(source="coco", inpainter="oracle"), says=("oracle", "shapes")),
    Case("target pair of one class", lambda t: S(target_pairs=[("dog", "dog")]), says=("dog:dog", "twice")),
    Case("target pair of three", lambda t: S(target_pairs=[("dog", "frisbee", "x")]), says=("target_pairs",)),
    Case("unknown inpainter", lambda t: S(inpainter="photoshop"), says=("photoshop", "opencv")),
    Case(
        "inpainter option not numeric",
        lambda t: S(inpainter="opencv", inpainter_options={"radius": "big"}),
        says=("radius", "opencv", "number"),
    ),
    Case(
        "inpainter option of another inpainter",
        lambda t: S(inpainter="opencv", inpainter_options={"steps": 30}),
        says=("steps", "radius", "remove it"),
    ),
    Case(
        "blur ksize even",
        lambda t: S(inpainter="blur", inpainter_options={"ksize": 4}),
        says=("ksize", "odd"),
    ),
    Case(
        "diffusers strength above 1",
        lambda t: S(inpainter="diffusers:x/y", inpainter_options={"strength": 2}),
        says=("strength", "(0, 1]"),
    ),
    Case(
        "opencv method given twice",
        lambda t: get_inpainter("opencv:ns", method="telea"),
        says=("opencv:ns", "method", "once"),
    ),
    Case("fill option for zero fill", lambda t: get_inpainter("zero", sigma=3), says=("zero", "no options")),
    Case("num workers negative", lambda t: S(num_workers=-1), says=("num_workers", ">= 0")),
    Case(
        "inpainter options not a dict",
        lambda t: S(inpainter_options=[1]),
        says=("inpainter_options", "object"),
    ),
]


@cases(SETTINGS)
def test_settings_are_checked_when_read(case, tmp_path):
    check(case, tmp_path)


# ----------------------------------------------------------------------------- world configs

WORLD = [
    Case("world size a string", lambda t: WorldConfig(train_size="10"), says=("train_size", "integer")),
    Case("world probability NaN", lambda t: WorldConfig(p_partner=NAN), says=("p_partner", "finite")),
    Case("world probability above 1", lambda t: WorldConfig(p_partner=2.0), says=("p_partner", "[0, 1]")),
    Case("world image size huge", lambda t: WorldConfig(image_size=100000), says=("image_size", "1024")),
    Case("world negative size", lambda t: WorldConfig(test_size=-1), says=("test_size", ">= 0")),
    Case("world pair of three", lambda t: WorldConfig(pairs=(("dog", "frisbee", "x"),)), says=("pairs",)),
    Case("world unknown class", lambda t: WorldConfig(classes=("dog", "unicorn")), says=("unicorn",)),
    Case("world duplicate classes", lambda t: WorldConfig(classes=("dog", "dog")), says=("duplicates",)),
    Case("world outline not bool", lambda t: WorldConfig(outline=1), says=("outline", "true or false")),
    Case(
        "world range inverted",
        lambda t: WorldConfig(object_size_range=(0.5, 0.2)),
        says=("object_size_range", "min <= max"),
    ),
    Case(
        "classification caption mix",
        lambda t: ClassificationWorldConfig(caption_mix=(0.5, 0.5, 0.5)),
        says=("caption_mix", "summing to 1"),
    ),
]


@cases(WORLD)
def test_world_configs_are_checked(case, tmp_path):
    check(case, tmp_path)


def _interrupted_world(tmp: Path, monkeypatch) -> Path:
    """A world, then a regeneration into the same folder that dies half-way."""
    from hf_spurious.world import generate as gen_mod

    small = WorldConfig(train_size=2, val_size=1, test_size=1)
    gen_mod.generate_world(small, tmp / "w")

    def boom(config, out):
        (out / "images").mkdir(exist_ok=True)
        raise OSError("disk full")

    monkeypatch.setattr(gen_mod, "write_retrieval", boom)
    with pytest.raises(OSError, match="disk full"):
        gen_mod.generate_world(small, tmp / "w")
    return tmp / "w"


def test_an_interrupted_world_is_not_read_as_complete(tmp_path, monkeypatch):
    from hf_spurious.world import load_world

    world = _interrupted_world(tmp_path, monkeypatch)
    expect_error(
        lambda: load_world(world), FileNotFoundError, ("world.json", "interrupted", "hf-spurious world")
    )
    (world / "world.json").write_text("{truncated")
    expect_error(lambda: load_world(world), ValueError, ("world.json", "invalid JSON"))
    expect_error(lambda: generate_world_of([1]), ValueError, ("WorldConfig", "list"))


def generate_world_of(config):
    from hf_spurious.world import generate_world

    return generate_world(config, "unused")


def test_world_cli_bad_values(tmp_path, capsys):
    base = ["world", "--out", str(tmp_path / "w"), "--train-size", "2", "--val-size", "1", "--test-size", "1"]
    expect_cli_error([*base, "--set", "bogus=1"], capsys, says=("bogus", "FIELD one of"))
    expect_cli_error([*base, "--image-size", "5"], capsys, says=("image_size", "[16, 1024]"))
    expect_cli_error([*base, "--set", "train_size=abc"], capsys, says=("train_size", "integer"))


# ----------------------------------------------------------------------------- generator inputs


def test_unreadable_and_bomb_images_are_counted_skips(tmp_path):
    good = _image(tmp_path)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    records = [_record(1, good), _record(2, bad), _record(3, _bomb(tmp_path)), _record(4, good, w=70)]
    records.append(_record(5, tmp_path / "missing.png"))
    _run(records, S(), tmp_path / "w")
    skipped = collect_stats(tmp_path / "w")["skipped"]
    expect_skip(skipped, "unreadable_image", 2)
    expect_skip(skipped, "image_too_large", 1)
    expect_skip(skipped, "image_size_mismatch", 1)
    expect_error(
        lambda: _run(records[2:3], S(on_error="raise"), tmp_path / "r"), SynthesisError, ("bomb.png",)
    )


GENERATOR = [
    Case(
        "dilation beyond the image",
        lambda t: _run([_record(1, _image(t))], S(dilation=100000), t / "w"),
        raises=SynthesisError,
        says=("dilation 100000", "largest image side", "64"),
    ),
    Case(
        "target pair class absent",
        lambda t: _run(
            [_record(1, _image(t))], S(target_policy="partner", target_pairs=[("dgo", "frisbee")]), t / "w"
        ),
        raises=SynthesisError,
        says=("dgo", "did you mean", "dog"),
    ),
    Case(
        "duplicate image ids",
        lambda t: _run([_record(1, _image(t)), _record(1, _image(t))], S(), t / "w"),
        raises=SynthesisError,
        says=("'1'", "twice"),
    ),
    Case(
        "box outside the image",
        lambda t: SceneRecord.build(
            image_id=1,
            image_path="x.png",
            width=64,
            height=64,
            objects=[((70, 70, 5, 5), "dog")],
            captions=["a dog"],
            split="test",
            box_policy="reject",
        ),
        says=("image '1'", "box"),
    ),
    Case(
        "finished run with other settings",
        lambda t: (
            _run([_record(1, _image(t))], S(), t / "w"),
            _run([_record(1, _image(t))], S(seed=1), t / "w"),
        ),
        raises=SynthesisError,
        says=("finished shards", "other settings", "--overwrite"),
    ),
    Case(
        "failed first run is retried",
        lambda t: (
            (t / "w" / "shards").mkdir(parents=True),
            (t / "w" / "manifest.json").write_text('{"fingerprint": "from another attempt"}'),
            _run([_record(1, _image(t))], S(), t / "w"),
        )[-1],
        raises=None,
        expect=lambda result: result.complete or pytest.fail("the retry did not finish"),
    ),
    Case(
        "unreadable manifest without shards",
        lambda t: (
            (t / "w").mkdir(),
            (t / "w" / "manifest.json").write_text('{"fingerp'),
            _run([_record(1, _image(t))], S(), t / "w"),
        )[-1],
        raises=None,
        expect=lambda result: result.complete or pytest.fail("the run did not finish"),
    ),
    Case(
        "merge before the run is done",
        lambda t: (
            _run([_record(i, _image(t)) for i in range(1, 7)], S(), t / "w", max_shards=1),
            merge_shards(t / "w", t / "o"),
        ),
        raises=SynthesisError,
        says=("not done yet", "rerun the same command"),
    ),
]


@cases(GENERATOR)
def test_generator_inputs(case, tmp_path):
    check(case, tmp_path)


def test_truncated_work_shard_is_regenerated_not_fatal(tmp_path, caplog):
    records = [_record(i, _image(tmp_path)) for i in range(1, 7)]
    _run(records, S(), tmp_path / "w")
    shard = tmp_path / "w" / "shards" / "00001.parquet"
    shard.write_bytes(shard.read_bytes()[:100])
    assert _run(records, S(), tmp_path / "w").ran_shards == [1]
    assert "shard 1" in caplog.text and "is regenerated: its parquet file is unreadable" in caplog.text
    (tmp_path / "w" / "shards" / "00000.json").write_text("{not json")
    assert _run(records, S(), tmp_path / "w").ran_shards == [0]


# ----------------------------------------------------------------------------- exports, zero rows (rule 3)


def _done_run(t: Path, records=None, **kw) -> Path:
    _run(records or [_record(1, _image(t))], S(**kw), t / "w")
    return t / "w"


EXPORT = [
    Case(
        "zero rows exported",
        lambda t: export_parquet(_done_run(t, max_images=0), t / "out"),
        raises=SynthesisError,
        says=("0 rows", "--allow-empty"),
    ),
    Case(
        "zero rows: every image skipped",
        lambda t: export_parquet(_done_run(t, [_record(1, _image(t), objects=TWO[:1])]), t / "out"),
        raises=SynthesisError,
        says=("0 rows", "fewer_than_two_classes"),
    ),
    Case(
        "zero rows allowed",
        lambda t: export_parquet(_done_run(t, max_images=0), t / "out", allow_empty=True),
        raises=None,
        expect=lambda out: (
            json.loads((out / "provenance.json").read_text())["test"]["stats"]["rows"] == 0
            or pytest.fail("rows != 0")
        ),
    ),
    Case(
        "empty Dataset exported",
        lambda t: export_parquet(
            __import__("datasets").Dataset.from_dict({"a": []}), t / "out", config_name="x"
        ),
        raises=SynthesisError,
        says=("'x'", "0 rows"),
    ),
    Case(
        "export of a folder that is no run",
        lambda t: export_parquet(t, t / "out"),
        raises=FileNotFoundError,
        says=("manifest.json", "--work-dir"),
    ),
    Case("export of a list", lambda t: export_parquet([1, 2], t / "out"), says=("Dataset", "list")),
    Case(
        "push of a folder that is no export",
        lambda t: push_decorrelated_to_hub(t, "me/x", api=object()),
        raises=FileNotFoundError,
        says=("provenance.json",),
    ),
    Case("config name escapes the folder", lambda t: check_config_name("../x"), says=("'../x'", "folder")),
    Case(
        "truncated provenance",
        lambda t: (
            export_parquet(_done_run(t), t / "out", config_name="a"),
            (t / "out" / "provenance.json").write_text('{"a": '),
            export_parquet(t / "w", t / "out", config_name="b"),
        )[-1],
        raises=None,
        expect=lambda out: (
            set(json.loads((out / "provenance.json").read_text())) == {"a", "b"}
            or pytest.fail("config a lost")
        ),
    ),
]


@cases(EXPORT)
def test_exports(case, tmp_path):
    check(case, tmp_path)


# ----------------------------------------------------------------------------- the command line


@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--alpha1", "40"], ("alpha1", "(0, 1]")),
        (["--alpha2", "nan"], ("alpha2", "(0, 1]")),
        (["--max-images", "-1"], ("max_images", ">= 0")),
        (["--target-policy", "partner", "--target-pair", "dgo:frisbee"], ("dgo", "did you mean")),
        (["--inpainter-options", '{"radius": "big"}'], ("radius", "number")),
        (["--inpainter", "blur", "--inpainter-options", '{"steps": 30}'], ("steps", "sigma")),
        (["--dilation", "100000"], ("dilation 100000", "--dilation 8")),
        (["--max-images", "0"], ("0 rows", "--allow-empty")),
        (["--captions-per-image", "0"], ("captions_per_image", ">= 1")),
        (["--num-shards", "-2"], ("--num-shards", ">= 1")),
        (["--inpainter-options", "{radius: 5"], ("--inpainter-options", "JSON")),
    ],
    ids=["alpha1-40", "alpha2-nan", "max-images-negative", "unknown-target-class", "inpainter-option-text",
         "inpainter-option-foreign", "dilation-huge", "max-images-zero", "captions-per-image-zero",
         "num-shards-negative", "inpainter-options-not-json"],
)  # fmt: skip
def test_counterfactuals_cli_bad_values(shapes_world, tmp_path, capsys, flags, says):
    argv = [
        "counterfactuals",
        "--source",
        "shapes",
        "--data-dir",
        str(shapes_world),
        "--out",
        str(tmp_path / "o"),
    ]
    expect_cli_error([*argv, "--num-workers", "1", *flags], capsys, says=says)
    assert not list((tmp_path / "o").glob("*/*.parquet"))
