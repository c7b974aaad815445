"""Counterfactual generation, the `datasets` builders and Hub export, on a SpuriousShapes world.

Every property is checked independently of the planner: α rules recomputed from ``removed_boxes`` and the
source annotations with plain numpy, captions re-matched with the vocabulary, pixels compared with the
source PNG files.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path
from unittest import mock

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest

from hf_spurious.data.builders import ShapesDecorrelated, build_gallery, load_source_records, world_pairs
from hf_spurious.data.export import export_parquet, push_decorrelated_to_hub
from hf_spurious.records import SceneRecord
from hf_spurious.synthesis.generator import generate_counterfactuals
from hf_spurious.synthesis.merge import merge_shards
from hf_spurious.synthesis.settings import SynthesisError, SynthesisSettings
from hf_spurious.synthesis.shards import collect_stats
from hf_spurious.vocab import load_vocabulary

VOCAB = load_vocabulary("shapes")


def _settings(**kw) -> SynthesisSettings:
    base = {"source": "shapes", "split": "test", "inpainter": "opencv", "shard_size": 8, "num_workers": 1}
    base.update(kw)
    return SynthesisSettings(**base)


def _run(records, settings, work, **kw):
    kw = {"process_index": 0, "num_processes": 1, "show_progress": False, **kw}
    return generate_counterfactuals(records, settings, work, **kw)


def _rows(path_or_paths) -> list[dict]:
    paths = path_or_paths if isinstance(path_or_paths, list) else [path_or_paths]
    return [r for p in paths for r in pq.read_table(p).to_pylist()]


def _decode(png: bytes, flags=cv2.IMREAD_COLOR) -> np.ndarray:
    arr = cv2.imdecode(np.frombuffer(png, np.uint8), flags)
    return cv2.cvtColor(arr, cv2.COLOR_BGR2RGB) if arr.ndim == 3 else arr


def _box_pixels(box, w, h) -> np.ndarray:
    """Independent rasteriser: pixel (r, c) is in the box iff its unit square overlaps the box."""
    x, y, bw, bh = box
    rows = np.arange(h)[:, None]
    cols = np.arange(w)[None, :]
    return (cols + 1 > x) & (cols < x + bw) & (rows + 1 > y) & (rows < y + bh)


def check_rows(rows, records_by_id, settings, *, oracle=False):
    """The must-show properties of every row."""
    for row in rows:
        rec: SceneRecord = records_by_id[row["source_image_id"]]
        w, h = rec.width, rec.height
        removed, present = set(row["removed_classes"]), set(row["present_classes"])
        source_classes = {o.category for o in rec.objects}
        # present classes are visible in the source annotations, and partition the source classes
        assert present and present <= source_classes and removed <= source_classes
        assert present | removed == source_classes and not present & removed
        # removed_boxes are exactly the source boxes of the removed classes
        expected_boxes = sorted(tuple(o.bbox) for o in rec.objects if o.category in removed)
        got_boxes = sorted(tuple(b) for b in row["removed_boxes"])
        np.testing.assert_allclose(np.array(got_boxes), np.array(expected_boxes, dtype=np.float32), rtol=1e-6)
        # α rules, recomputed from the annotations
        region = {c: np.zeros((h, w), bool) for c in source_classes}
        for o in rec.objects:
            region[o.category] |= _box_pixels(o.bbox, w, h)
        b_prime = np.zeros((h, w), bool)
        for b in row["removed_boxes"]:
            b_prime |= _box_pixels(b, w, h)
        target = region[row["target_class"]]
        for c in source_classes - {row["target_class"]}:
            ratio = (target & region[c]).sum() / region[c].sum()
            assert (ratio > settings.alpha2) == (c in removed), (row["source_image_id"], c, ratio)
        for c in present:
            assert (b_prime & region[c]).sum() / region[c].sum() < settings.alpha1
        assert b_prime.sum() / (w * h) < settings.alpha3
        # the caption names no removed class (and, for D', a present one)
        mentioned = VOCAB.classes_in(row["caption"])
        assert not mentioned & removed, row["caption"]
        if settings.require_present:
            assert mentioned & present
        assert row["source_caption"] == rec.captions[row["source_caption_index"]]
        if settings.text_method == "np_removal" and not VOCAB.classes_in(row["source_caption"]) & removed:
            # only a query may lack a caption naming c^r (spec §1.6); it keeps its caption unedited
            assert not settings.require_removed and row["caption"] in (row["source_caption"], "")
        # pixels: mask == dilated union of removed boxes; outside it the source pixels are kept
        mask = _decode(row["mask"]["bytes"], cv2.IMREAD_GRAYSCALE) > 0
        dil = settings.dilation
        expected_mask = cv2.dilate(b_prime.astype(np.uint8), np.ones((2 * dil + 1,) * 2, np.uint8)) > 0
        np.testing.assert_array_equal(mask, expected_mask)
        image = _decode(row["image"]["bytes"])
        source = cv2.cvtColor(cv2.imread(rec.image_path), cv2.COLOR_BGR2RGB)
        assert image.shape == source.shape == (h, w, 3)
        np.testing.assert_array_equal(image[~mask], source[~mask])
        if not oracle:  # a redrawn background may coincide with the removed object in places
            assert not np.array_equal(image[mask], source[mask])


@pytest.fixture(scope="module")
def test_records(shapes_world):
    return load_source_records(_settings(), shapes_world, "test")


@pytest.fixture(scope="module")
def reference_run(shapes_world, test_records, tmp_path_factory):
    work = tmp_path_factory.mktemp("ref")
    settings = _settings()
    result = _run(test_records, settings, work / "work")
    files = merge_shards(work / "work", work / "out")
    return settings, result, files


def test_rows_obey_the_rules(reference_run, test_records):
    settings, result, files = reference_run
    assert result.complete and result.num_shards == 4
    rows = _rows(files)
    stats = collect_stats(result.work_dir)
    assert stats["images"] == len(test_records) == 30
    assert stats["eligible"] == len(rows) == stats["rows"] > 0
    assert stats["eligible"] + sum(stats["skipped"].values()) == stats["images"]
    check_rows(rows, {r.image_id: r for r in test_records}, settings)
    # images with fewer than two classes are exactly the counted ones
    single = sum(len(r.classes) < 2 for r in test_records)
    assert stats["skipped"].get("fewer_than_two_classes", 0) == single


def test_resume_and_processes_give_identical_bytes(reference_run, test_records, tmp_path):
    settings, _, files = reference_run
    ref_bytes = [f.read_bytes() for f in files]
    # two processes, run one after the other in-process
    two = tmp_path / "two"
    r1 = _run(test_records, settings, two, process_index=1, num_processes=2)
    assert r1.ran_shards == [1, 3] and not r1.complete
    with pytest.raises(SynthesisError, match="not done yet"):
        merge_shards(two, tmp_path / "two_out")
    _run(test_records, settings, two, process_index=0, num_processes=2)
    assert [f.read_bytes() for f in merge_shards(two, tmp_path / "two_out")] == ref_bytes
    # killed after one shard, then resumed: the finished shard is not redone
    kill = tmp_path / "kill"
    first = _run(test_records, settings, kill, max_shards=1)
    assert first.ran_shards == [0] and first.done_shards == [0]
    before = (kill / "shards" / "00000.parquet").stat().st_mtime_ns
    rest = _run(test_records, settings, kill)
    assert rest.ran_shards == [1, 2, 3] and rest.complete
    assert (kill / "shards" / "00000.parquet").stat().st_mtime_ns == before
    # a crash in the middle of the second shard: shard 0 is kept, nothing half-written, resume completes
    crash = tmp_path / "crash"
    from hf_spurious.synthesis import generator

    real_encode, calls = generator.encode_png, []
    first_shard_encodes = 2 * len(_rows(kill / "shards" / "00000.parquet"))  # image + mask per row

    def flaky(image):
        calls.append(1)
        if len(calls) > first_shard_encodes + 1:
            raise RuntimeError("boom")
        return real_encode(image)

    with mock.patch.object(generator, "encode_png", flaky), pytest.raises(RuntimeError, match="boom"):
        _run(test_records, settings, crash)
    assert sorted(p.name for p in (crash / "shards").iterdir()) == ["00000.json", "00000.parquet"]
    resumed = _run(test_records, settings, crash)
    assert resumed.ran_shards == [1, 2, 3]
    assert [f.read_bytes() for f in merge_shards(crash, tmp_path / "crash_out")] == ref_bytes
    assert [f.read_bytes() for f in merge_shards(kill, tmp_path / "kill_out")] == ref_bytes
    # another seed is another run: refused in the same directory
    with pytest.raises(SynthesisError, match="other settings"):
        _run(test_records, _settings(seed=1), kill)


@pytest.mark.parametrize("spec", ["zero", "mean", "blur", "opencv:ns"])
def test_fill_methods_keep_outside_pixels(spec, test_records, tmp_path):
    settings = _settings(inpainter=spec, dilation=1, max_images=12)
    _run(test_records, settings, tmp_path / "w")
    rows = _rows(merge_shards(tmp_path / "w", tmp_path / "o"))
    assert rows and {r["image_method"] for r in rows} == {"opencv:ns" if spec == "opencv:ns" else spec}
    check_rows(rows, {r.image_id: r for r in test_records}, settings)


def test_partner_policy_and_oracle_builder(shapes_world, test_records, tmp_path):
    pairs = world_pairs(shapes_world)
    builder = ShapesDecorrelated(
        data_dir=str(shapes_world),
        config_name="test_partner_oracle",
        cache_dir=str(tmp_path / "c"),
    )
    builder.download_and_prepare()
    ds = builder.as_dataset(split="test")
    assert len(ds) > 0 and ds.features["image"].__class__.__name__ == "Image"
    from hf_spurious.world import load_world

    world = load_world(shapes_world)
    by_id = {r.image_id: r for r in test_records}
    for row in ds.with_format("numpy"):
        rec = by_id[row["source_image_id"]]
        assert any(p == row["target_class"] and a in rec.classes for a, p in pairs)
        np.testing.assert_array_equal(
            np.asarray(row["image"]),
            world.render_without("test", int(rec.image_id), list(row["removed_classes"])),
        )
    settings = builder.config.settings()
    check_rows(_rows(builder.generation_result.shard_files), by_id, settings, oracle=True)
    stats = builder.generation_result.stats()
    no_pair = sum(not any(a in r.classes and p in r.classes for a, p in pairs) for r in test_records)
    assert stats["skipped"].get("no_target_pair", 0) == no_pair


def test_builders_share_one_phrase_cache(shapes_world, tmp_path):
    shared = tmp_path / "phrases"

    def build(work: str, policy: str = "partner") -> int:
        builder = ShapesDecorrelated(
            data_dir=str(shapes_world),
            config_name="test",
            cache_dir=str(tmp_path / f"c-{work}"),
            target_policy=policy,
            text_method="np_removal",
            work_dir=str(tmp_path / work),
            phrase_cache_dir=str(shared),
        )
        builder.download_and_prepare()
        assert len(builder.as_dataset(split="test")) > 0
        assert not (tmp_path / work / "phrase_cache").exists()
        return sum(len(f.read_text().splitlines()) for f in shared.rglob("*.jsonl"))

    parsed = build("w1")
    assert parsed > 0  # spaCy parses landed in the shared cache
    assert build("w2") == parsed  # a second run over the same captions parses nothing new
    assert build("w3", policy="random") >= parsed  # another policy reuses them and adds its own


def test_builder_rows_equal_generator_rows(shapes_world, reference_run, tmp_path):
    _, _, files = reference_run
    builder = ShapesDecorrelated(
        data_dir=str(shapes_world),
        config_name="test",
        cache_dir=str(tmp_path / "c"),
        shard_size=8,
        num_workers=1,
    )
    builder.download_and_prepare()
    ds = builder.as_dataset(split="test")
    expected = _rows(files)
    got = ds.cast_column("image", ds.features["image"].__class__(decode=False)).cast_column(
        "mask", ds.features["mask"].__class__(decode=False)
    )
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        assert a["image"]["bytes"] == b["image"]["bytes"] and a["caption"] == b["caption"]
        assert a["removed_classes"] == b["removed_classes"] and a["mask"]["bytes"] == b["mask"]["bytes"]


@pytest.fixture
def one_torch_thread():
    """Tiny diffusers runs are ~10x faster on one thread when the 2 shared cores are busy."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
def test_diffusers_end_to_end_from_local_dir(test_records, tiny_model_dir, tmp_path, one_torch_thread):
    model = tiny_model_dir("inpaint")
    settings = _settings(
        inpainter=f"diffusers:{model}",
        inpainter_options={"steps": 2, "batch_size": 4},
        batch_size=4,
        max_images=10,
    )
    result = _run(test_records, settings, tmp_path / "w")
    rows = _rows(merge_shards(result.work_dir, tmp_path / "o"))
    assert rows and rows[0]["image_method"] == f"diffusers:{model}"
    check_rows(rows, {r.image_id: r for r in test_records}, settings)


def _record(image_id, path, objects, captions, w=64, h=64):
    return SceneRecord.build(
        image_id=image_id,
        image_path=str(path),
        width=w,
        height=h,
        objects=objects,
        captions=captions,
        split="test",
    )


def test_bad_inputs_are_counted_or_named(shapes_world, tmp_path):
    src = cv2.imread(str(next((shapes_world / "images" / "test").glob("*.png"))))
    good, bad = tmp_path / "good.png", tmp_path / "bad.png"
    cv2.imwrite(str(good), src)
    bad.write_bytes(b"not a png at all")
    two = [((2, 2, 10, 10), "dog"), ((40, 40, 10, 10), "frisbee")]
    records = [
        _record(1, good, two, ["A dog with a frisbee on the grass"]),
        _record(2, bad, two, ["A dog with a frisbee on the grass"]),
        _record(3, good, [((2, 2, 10, 10), "dog")], ["A dog on the grass"]),  # one class
        _record(4, good, two, ["Something green"]),  # no caption names any class
        _record(5, good, [((0, 0, 60, 60), "dog"), ((58, 58, 6, 6), "frisbee")], ["A big dog and a frisbee"]),
        _record(6, good, two, ["A dog with a frisbee"], w=70),  # annotation size != file size
        _record(7, good, two, ["Frisbee!"]),  # the edit removes every word: ""
    ]
    settings = _settings(
        split="train", target_policy="partner", target_pairs=[("dog", "frisbee")], dilation=0
    )
    _run(records, settings, tmp_path / "w")
    stats = collect_stats(tmp_path / "w")
    assert stats["eligible"] == 2  # records 1 and 5 (partner removal keeps the big dog)
    assert stats["skipped"] == {
        "unreadable_image": 1,
        "fewer_than_two_classes": 1,
        "no_caption_mentions_removed": 1,
        "image_size_mismatch": 1,
        "edited_caption_empty": 1,
    }
    assert stats["skipped_examples"]["edited_caption_empty"] == ["7"]
    assert stats["skipped_examples"]["unreadable_image"] == ["2"]
    # queries (test split) need no caption edit (spec §1.6): 4 and 7 are kept with an unedited caption
    # that names no removed class ("Something green"), or an empty one when every caption names it
    _run(records, dataclasses.replace(settings, split="test"), tmp_path / "q")
    q_stats = collect_stats(tmp_path / "q")
    assert q_stats["eligible"] == 4 and q_stats["notes"] == {"query_without_caption_edit": 2}
    q_rows = {r["source_image_id"]: r for r in _rows(merge_shards(tmp_path / "q", tmp_path / "q_out"))}
    assert (q_rows["4"]["caption"], q_rows["7"]["caption"]) == ("Something green", "")
    assert q_rows["1"]["caption"].startswith("A dog") and "frisbee" not in q_rows["1"]["caption"].lower()
    # a mask that would cover everything is a counted skip
    _run(records[:1], _settings(dilation=63), tmp_path / "cover")
    assert collect_stats(tmp_path / "cover")["skipped"] == {"mask_covers_image": 1}
    # the unreadable file named with on_error="raise"
    with pytest.raises(SynthesisError, match=r"bad\.png"):
        _run(records[1:2], _settings(on_error="raise"), tmp_path / "raise")
    # export: the card lists every skip reason with its count
    out = export_parquet(tmp_path / "w", tmp_path / "export")
    card = (out / "README.md").read_text()
    for reason in stats["skipped"]:
        assert f"| {reason} | 1 |" in card
    assert "CHAIR word list (substitute)" in card


def test_missing_spacy_model_warns_and_is_recorded(test_records, tmp_path):
    from hf_spurious.text import SpacyFallbackWarning

    settings = _settings(spacy_model="no_such_spacy_model_xyz", inpainter="zero", max_images=8)
    with pytest.warns(SpacyFallbackWarning, match="no_such_spacy_model_xyz"):
        _run(test_records, settings, tmp_path / "w")
    rows = _rows(merge_shards(tmp_path / "w", tmp_path / "o"))
    check_rows(rows, {r.image_id: r for r in test_records}, settings)
    backends = collect_stats(tmp_path / "w")["text_backends"]
    assert backends and "no_such_spacy_model_xyz" not in backends
    card = (export_parquet(tmp_path / "w", tmp_path / "e") / "README.md").read_text()
    assert f"| noun phrases | {backends[0]} |" in card


def test_export_round_trip_and_card(reference_run, tmp_path):
    import datasets

    _, result, _ = reference_run
    out = export_parquet(result.work_dir, tmp_path / "export")
    files = sorted((out / "test").glob("*.parquet"))
    card = (out / "README.md").read_text()
    header = card.split("---")[1]
    import yaml

    meta = yaml.safe_load(header)
    assert meta["configs"][0]["config_name"] == "test"
    assert meta["configs"][0]["data_files"] == [{"split": "test", "path": "test/test-*.parquet"}]
    cache = str(tmp_path / "hf_cache")
    a = datasets.load_dataset(
        "parquet", data_files={"test": [str(f) for f in files]}, split="test", cache_dir=cache
    )
    b = datasets.load_dataset(str(out), "test", split="test", cache_dir=cache)
    c = datasets.load_dataset(str(out), split="test", cache_dir=cache)  # the default config
    raw = _rows(files)
    assert len(a) == len(b) == len(c) == len(raw) > 0
    for ds in (a, b, c):
        undecoded = ds.cast_column("image", datasets.Image(decode=False))
        assert [r["bytes"] for r in undecoded["image"]] == [r["image"]["bytes"] for r in raw]
        assert ds["caption"] == [r["caption"] for r in raw]
        assert ds.features["removed_boxes"] == datasets.List(
            datasets.List(datasets.Value("float32"), length=4)
        )
    # a Dataset whose images are file paths: export embeds the bytes (the to_parquet pitfall)
    img_dir = tmp_path / "imgs"
    img_dir.mkdir()
    paths = []
    for i in range(3):
        p = img_dir / f"{i}.png"
        cv2.imwrite(str(p), np.full((8, 8, 3), i * 40, np.uint8))
        paths.append(str(p))
    ds = datasets.Dataset.from_dict(
        {"image": paths, "caption": ["a", "b", "c"]},
        features=datasets.Features({"image": datasets.Image(), "caption": datasets.Value("string")}),
    )
    out2 = export_parquet(ds, tmp_path / "export2", config_name="tiny", split="test")
    table = pq.read_table(next((out2 / "tiny").glob("*.parquet"))).to_pylist()
    assert [r["image"]["bytes"] for r in table] == [Path(p).read_bytes() for p in paths]
    first = datasets.load_dataset(str(out2), "tiny", split="test", cache_dir=cache)
    # a new export into a folder of the same name is not shadowed by datasets' cache of the old one
    other = export_parquet(
        ds.select([0]), tmp_path / "elsewhere" / "export2", config_name="tiny", split="test"
    )
    shutil.rmtree(img_dir)  # the exports must not depend on the image files any more
    assert len(datasets.load_dataset(str(other), "tiny", split="test", cache_dir=cache)) == 1
    assert len(first) == 3 and np.asarray(first[2]["image"]).max() == 80


def test_push_uses_hfapi(tmp_path, reference_run):
    _, result, _ = reference_run
    out = export_parquet(result.work_dir, tmp_path / "export")
    api = mock.MagicMock()
    api.create_repo.return_value = "https://huggingface.co/datasets/me/shapes"
    url = push_decorrelated_to_hub(out, api=api, private=True)
    assert url.endswith("me/shapes")
    api.create_repo.assert_called_once()
    assert api.create_repo.call_args.kwargs["repo_id"] == "hf_spurious/shapes_decorrelated"
    assert api.create_repo.call_args.kwargs["repo_type"] == "dataset"
    upload = api.upload_folder.call_args.kwargs
    assert upload["folder_path"] == str(out) and upload["repo_type"] == "dataset"
    with mock.patch("huggingface_hub.HfApi") as hf:
        hf.return_value = api
        push_decorrelated_to_hub(out, "org/custom", token="t")
        hf.assert_called_once_with(token="t")
    with pytest.raises(FileNotFoundError, match="export_parquet"):
        push_decorrelated_to_hub(tmp_path, "org/x", api=api)


def test_gallery_is_complete_and_cached(shapes_world, tmp_path):
    captions, ids, matrix, names = build_gallery(shapes_world, "shapes", cache_dir=tmp_path)
    records = [r for s in ("train", "val", "test") for r in load_source_records(_settings(), shapes_world, s)]
    assert captions == [c for r in records for c in r.captions]
    assert len(ids) == len(captions) == matrix.shape[0] == 110 * 5
    expected = np.array([[c in VOCAB.classes_in(t) for c in names] for t in captions])
    np.testing.assert_array_equal(matrix, expected)
    with mock.patch("hf_spurious.text.caption_class_matrix", side_effect=AssertionError("not cached")):
        again = build_gallery(shapes_world, "shapes", cache_dir=tmp_path)
    np.testing.assert_array_equal(again[2], matrix)


def test_cli_end_to_end(shapes_world, tmp_path):
    from hf_spurious.cli import main

    out = tmp_path / "out"
    argv = ["counterfactuals", "--source", "shapes", "--data-dir", str(shapes_world), "--out", str(out),
            "--push-to-hub", "me/shapes_cf"]  # fmt: skip
    # Hub access is checked before any work: a failure leaves nothing behind
    denied = PermissionError("no Hugging Face token: run `hf auth login`")
    with mock.patch("hf_spurious.cli.counterfactuals.check_push_access", side_effect=denied):
        assert main(argv) == 2
    assert not out.exists()
    with (
        mock.patch("huggingface_hub.HfApi") as hf,
        mock.patch("hf_spurious.cli.counterfactuals.check_push_access"),
        mock.patch("hf_spurious.cli.push.check_push_access"),
    ):
        code = main(
            ["counterfactuals", "--source", "shapes", "--data-dir", str(shapes_world), "--split", "test",
             "--inpainter", "blur", "--text", "np_removal", "--out", str(out), "--num-shards", "3",
             "--target-policy", "partner", "--num-workers", "1", "--push-to-hub", "me/shapes_cf"]
        )  # fmt: skip
    assert code == 0
    assert hf.return_value.upload_folder.call_args.kwargs["repo_id"] == "me/shapes_cf"
    meta = json.loads((out / "provenance.json").read_text())["test"]
    assert meta["settings"]["target_pairs"] and meta["stats"]["rows"] > 0
    import datasets

    ds = datasets.load_dataset(str(out), "test", split="test", cache_dir=str(tmp_path / "hf_cache"))
    assert len(ds) == meta["stats"]["rows"]


@pytest.mark.slow
def test_torchrun_two_processes_match(shapes_world, reference_run, tmp_path):
    """One real 2-process run (torchrun, gloo): the same bytes as the in-process single run."""
    _, _, files = reference_run
    out = tmp_path / "dist"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "hf_spurious.cli", "counterfactuals", "--source", "shapes", "--data-dir", str(shapes_world),
        "--inpainter", "opencv", "--shard-size", "8", "--num-workers", "1", "--out", str(out),
    ]  # fmt: skip
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=240,
        env={**__import__("os").environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "(2 processes)" in proc.stdout  # the two processes saw each other and split the shards
    got = sorted((out / "test").glob("*.parquet"))
    assert [f.read_bytes() for f in got] == [f.read_bytes() for f in files]


def _write_flickr30k(root: Path) -> Path:
    """A 3-image Flickr30k Entities folder in the real layout (Karpathy json, Annotations, Sentences)."""
    (root / "flickr30k-images").mkdir(parents=True)
    (root / "Annotations").mkdir()
    (root / "Sentences").mkdir()
    rng = np.random.default_rng(0)
    scenes = {
        "101": ([("1", (6, 6, 25, 45)), ("2", (50, 20, 70, 40))],
                ["[/EN#1/people A man] walks [/EN#2/animals a brown dog] in [/EN#3/scene the park] .",
                 "[/EN#1/people A person] and [/EN#2/animals a dog] outside ."]),
        "102": ([("1", (6, 6, 25, 45))], ["[/EN#1/people A woman] stands in [/EN#3/scene the snow] ."]),
        "103": ([("1", (4, 4, 30, 50)), ("4", (45, 10, 75, 30))],
                ["[/EN#1/people A boy] rides [/EN#4/vehicles a red bike] .", "[/EN#1/people Someone] smiles ."]),
    }  # fmt: skip
    images = []
    for stem, (boxes, sentences) in scenes.items():
        cv2.imwrite(
            str(root / "flickr30k-images" / f"{stem}.jpg"), rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)
        )
        objs = "".join(
            f"<object><name>{e}</name><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax>"
            "</bndbox></object>"
            for e, (x0, y0, x1, y1) in boxes
        )
        (root / "Annotations" / f"{stem}.xml").write_text(
            f"<annotation><size><width>80</width><height>60</height><depth>3</depth></size>{objs}</annotation>"
        )
        (root / "Sentences" / f"{stem}.txt").write_text("\n".join(sentences) + "\n")
        images.append(
            {"filename": f"{stem}.jpg", "split": "test", "sentences": [{"raw": s} for s in sentences]}
        )
    (root / "dataset_flickr30k.json").write_text(json.dumps({"images": images}))
    return root


def test_flickr30k_builder_edits_annotated_phrases(tmp_path):
    from hf_spurious.data.builders import Flickr30kDecorrelated

    root = _write_flickr30k(tmp_path / "f30k")
    builder = Flickr30kDecorrelated(
        data_dir=str(root), config_name="test", inpainter="mean", cache_dir=str(tmp_path / "c"), num_workers=1
    )
    builder.download_and_prepare()
    ds = builder.as_dataset(split="test")
    stats = builder.generation_result.stats()
    assert stats["images"] == 3 and stats["skipped"].get("fewer_than_two_classes") == 1
    assert stats["text_backends"] == ["flickr30k-entities annotations"]
    assert len(ds) == stats["rows"] >= 1
    import re

    for row in ds:
        stem = row["source_image_id"]
        assert set(row["present_classes"]) | set(row["removed_classes"]) <= {"people", "animals", "vehicles"}
        line = (root / "Sentences" / f"{stem}.txt").read_text().splitlines()[row["source_caption_index"]]
        phrases = re.findall(r"\[/EN#\d+/(\w+) ([^\]]*)\]", line)
        assert any(t in row["removed_classes"] for t, _ in phrases)  # the chosen caption named a removed type
        for entity_type, words in phrases:
            if entity_type in row["removed_classes"]:
                assert words not in row["caption"], (row["caption"], words)
            else:
                assert words in row["caption"], (row["caption"], words)
    # the default gallery matching is lexical for every source (as the odmap evaluate module); the
    # annotated phrase types of Flickr30k are there on request
    default = build_gallery(root, "flickr30k", splits=("test",))
    lexical = build_gallery(root, "flickr30k", splits=("test",), method="lexical")
    assert default[3] == lexical[3]
    np.testing.assert_array_equal(default[2], lexical[2])
    captions, ids, matrix, names = build_gallery(root, "flickr30k", splits=("test",), method="annotated")
    assert names == ("people", "animals", "vehicles", "instruments") and len(captions) == 5
    assert matrix[0].tolist() == [True, True, False, False] and matrix[2].tolist() == [
        True,
        False,
        False,
        False,
    ]
    assert ids[0] == "test/101"


def test_coco_builder_prompt_and_captioner_methods(shapes_world, tiny_model_dir, tmp_path, one_torch_thread):
    from hf_spurious.data.builders import CocoDecorrelated
    from hf_spurious.text import TEMPLATES, join_classes

    coco_records = {
        r.image_id: r for r in load_source_records(SynthesisSettings(source="coco"), shapes_world, "test")
    }
    builder = CocoDecorrelated(
        data_dir=str(shapes_world), config_name="test", inpainter="zero", text_method="prompt",
        cache_dir=str(tmp_path / "c"), num_workers=1,
    )  # fmt: skip
    builder.download_and_prepare()
    ds = builder.as_dataset(split="test")
    assert len(ds) > 0
    for row in ds:
        filled = {t.format(join_classes(row["present_classes"])) for t in TEMPLATES}
        assert row["caption"] in filled and row["text_method"] == "prompt"
        assert set(row["present_classes"]) <= coco_records[row["source_image_id"]].classes
    settings = _settings(
        inpainter="zero",
        text_method="captioner",
        captioner=str(tiny_model_dir("blip-captioner")),
        max_images=6,
    )
    _run(list(coco_records.values()), settings, tmp_path / "cap")
    rows = _rows(merge_shards(tmp_path / "cap", tmp_path / "cap_out"))
    assert rows and all(isinstance(r["caption"], str) and r["text_method"] == "captioner" for r in rows)
    assert len({r["source_image_id"] for r in rows}) == len(rows)  # one generated caption per image


def test_images_flagged_by_the_inpainter_are_counted(test_records, tmp_path):
    from hf_spurious.synthesis.inpaint import ZeroFill

    class FlagEveryOther(ZeroFill):
        spec = "flagging"
        pipe = None  # batched like a diffusers pipeline

        def _fill_batch(self, images, masks, seeds, contexts):
            self.last_flagged = [i % 2 == 0 for i in range(len(images))]
            return super()._fill_batch(images, masks, seeds, contexts)

    settings = _settings(inpainter="zero", max_images=16)
    _run(test_records, settings, tmp_path / "ref")
    _run(test_records, settings, tmp_path / "w", inpainter=FlagEveryOther())
    ref, got = collect_stats(tmp_path / "ref"), collect_stats(tmp_path / "w")
    flagged = got["skipped"]["inpainter_safety_flagged"]
    assert flagged > 0 and got["eligible"] + flagged == ref["eligible"]
    rows = _rows(merge_shards(tmp_path / "w", tmp_path / "o"))
    assert len(rows) == got["rows"] and {r["image_method"] for r in rows} == {"flagging"}


def test_several_configs_in_one_folder_and_repo_id_path(reference_run, tmp_path, monkeypatch):
    """Configs exported one after the other into one folder all load; and the documented offline step
    (the folder placed at ./<repo id>) makes load_dataset("hf_spurious/shapes_decorrelated") itself work."""
    import datasets

    _, result, files = reference_run
    monkeypatch.chdir(tmp_path)
    out = Path("hf_spurious") / "shapes_decorrelated"
    export_parquet(result.work_dir, out, config_name="test")
    export_parquet(result.work_dir, out, config_name="test_copy", split="test")
    cache = str(tmp_path / "hf_cache")
    n = len(_rows(files))
    for config in ("test", "test_copy"):
        ds = datasets.load_dataset("hf_spurious/shapes_decorrelated", config, split="test", cache_dir=cache)
        assert len(ds) == n
    assert len(datasets.load_dataset("hf_spurious/shapes_decorrelated", split="test", cache_dir=cache)) == n


def test_segmentation_masks_in_the_generator(test_records, tmp_path):
    settings = _settings(inpainter="zero", use_segmentation=True, max_images=12)
    _run(test_records, settings, tmp_path / "w")
    rows = _rows(merge_shards(tmp_path / "w", tmp_path / "o"))
    assert rows
    by_id = {r.image_id: r for r in test_records}
    smaller = 0
    for row in rows:
        rec = by_id[row["source_image_id"]]
        mask = _decode(row["mask"]["bytes"], cv2.IMREAD_GRAYSCALE) > 0
        boxes = np.zeros_like(mask)
        for b in row["removed_boxes"]:
            boxes |= _box_pixels(b, rec.width, rec.height)
        near = cv2.dilate(boxes.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        assert mask.any() and not (mask & ~near).any()  # polygons lie in their boxes (±1 px rounding)
        smaller += int(mask.sum() < boxes.sum())
        image = _decode(row["image"]["bytes"])
        source = cv2.cvtColor(cv2.imread(rec.image_path), cv2.COLOR_BGR2RGB)
        np.testing.assert_array_equal(image[~mask], source[~mask])
        assert (image[mask] == 0).all()
    assert smaller == len(rows)  # glyph polygons are never full rectangles here


@pytest.mark.parametrize("split", ["test", "train"])
def test_an_empty_edited_caption_is_never_kept(split):
    """np_removal can delete every word ("Frisbee!" -> ""); whatever the split, that is a counted skip."""
    from hf_spurious.synthesis.captions import TextSide
    from hf_spurious.synthesis.settings import EDIT_EMPTY

    side = TextSide(_settings(split=split, spacy_model="lexical"))
    edited = side.edit("Frisbee!", None, ("frisbee",), ("dog",), np.random.default_rng(0))
    assert edited == ""
    assert side.check(edited, ("frisbee",), ("dog",)) == EDIT_EMPTY
    assert side.check("  ", ("frisbee",), ("dog",)) == EDIT_EMPTY
    assert side.check("A dog on the grass", ("frisbee",), ("dog",)) is None


def test_prepare_parses_only_captions_that_mention_a_removed_class():
    from types import SimpleNamespace

    from hf_spurious.synthesis.captions import TextSide

    side = TextSide(_settings(text_method="np_removal"))
    parsed: list[str] = []
    side._extractor = SimpleNamespace(chunk_spans=lambda captions, progress: parsed.extend(captions))
    records = [
        SimpleNamespace(captions=["A dog catches a frisbee.", "A dog on grass.", "Two dogs."]),
        SimpleNamespace(captions=["A horse and a person.", "A horse in a field."]),
    ]
    assert side.prepare(records, [("frisbee",), ("person",)]) == [None, None]
    assert parsed == ["A dog catches a frisbee.", "A horse and a person."]
    parsed.clear()
    side.prepare(records)  # without the removed classes: every caption
    assert parsed == [c for r in records for c in r.captions]


def test_empty_generated_captions_are_counted(test_records, tmp_path):
    """text_method="captioner": an image whose generated caption is empty is skipped and counted."""
    from hf_spurious.synthesis.captions import TextSide
    from hf_spurious.synthesis.settings import EDIT_EMPTY

    settings = _settings(inpainter="zero", text_method="captioner", captioner="unused", max_images=16)

    class EveryOtherEmpty(TextSide):
        def caption_images(self, images):
            return ["" if i % 2 else "a photo" for i in range(len(images))]

    _run(test_records, settings, tmp_path / "w", text_side=EveryOtherEmpty(settings))
    stats = collect_stats(tmp_path / "w")
    rows = _rows(merge_shards(tmp_path / "w", tmp_path / "o"))
    assert stats["skipped"][EDIT_EMPTY] > 0 and stats["eligible"] == len(rows) > 0
    assert all(r["caption"] == "a photo" for r in rows)


@pytest.mark.parametrize("source", ["coco", "flickr30k", "shapes"])
def test_build_scripts_read_the_repo_id_from_the_package(source, tmp_path):
    """build.sh has no hard-coded id: its REPO/OUT defaults follow hf_spurious.data.export (and its org)."""
    import os
    import re

    from hf_spurious.hub import DATASET_REPOS, dataset_repo_id

    assert dataset_repo_id(source) == DATASET_REPOS[source]
    with pytest.raises(ValueError, match="no dataset repo"):
        dataset_repo_id("imagenet")
    script = (
        Path(__file__).parents[1] / "dataset_scripts" / f"{source}_decorrelated" / "build.sh"
    ).read_text()
    assignments = [line for line in script.splitlines() if re.match(r"(REPO|OUT)=", line)]
    assert len(assignments) == 2 and not any(f"{source}_decorrelated" in line for line in assignments)
    env = {
        **os.environ,
        "HF_SPURIOUS_HUB_ORG": "someorg",
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    env.pop("REPO", None), env.pop("OUT", None)
    code = "\n".join(["set -euo pipefail", *assignments, 'echo "$REPO $OUT"'])
    got = subprocess.run(
        ["bash", "-c", code], env=env, capture_output=True, text=True, check=True, cwd=tmp_path
    )
    assert got.stdout.split() == [f"someorg/{source}_decorrelated"] * 2
    assert subprocess.run(["bash", "-n", "-c", script]).returncode == 0


@pytest.mark.parametrize("name", ["../x", "..", ".", "a/b", ".hidden"])
def test_unsafe_config_names_are_rejected_before_any_path_is_used(name, tmp_path, capsys):
    import argparse

    from hf_spurious.cli import counterfactuals as cli
    from hf_spurious.cli import main

    out = tmp_path / "nest" / "out"
    argv = ["--data-dir", str(tmp_path / "missing"), "--out", str(out), "--config-name", name]
    with pytest.raises(SystemExit) as exc:
        main(["counterfactuals", *argv])
    assert exc.value.code == 2 and "config name" in capsys.readouterr().err
    # a Namespace built in code (argparse type skipped) is validated first too: the missing data dir
    # would otherwise be the error, and no directory is created
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(argv[:4])
    args.config_name = name
    with pytest.raises(ValueError, match="config name"):
        cli.run(args)
    assert not (tmp_path / "nest").exists() and not (tmp_path / "x").exists()
    assert cli._config_name("test_partner") == "test_partner"


def test_shard_writes_overlap_but_fail_loudly_and_resume(test_records, reference_run, tmp_path, monkeypatch):
    """Shards are written by a background thread: a failed write surfaces, the run resumes to the same bytes,
    and the PNG columns are stored without dictionary pages (they cost time and never pay off)."""
    from hf_spurious.synthesis import generator, shards

    settings, _, ref_files = reference_run
    real = generator.write_shard

    def flaky(work, shard, rows, stats):
        if shard == 1:
            raise OSError("disk full")
        real(work, shard, rows, stats)

    monkeypatch.setattr(generator, "write_shard", flaky)
    with pytest.raises(OSError, match="disk full"):
        _run(test_records, settings, tmp_path / "w")
    assert shards.shard_done(tmp_path / "w", 0) and not shards.shard_done(tmp_path / "w", 1)
    monkeypatch.setattr(generator, "write_shard", real)
    _run(test_records, settings, tmp_path / "w")
    files = merge_shards(tmp_path / "w", tmp_path / "o")
    assert [f.read_bytes() for f in files] == [f.read_bytes() for f in ref_files]
    meta = pq.ParquetFile(files[0]).metadata
    for i in range(meta.num_columns):
        col = meta.row_group(0).column(i)
        dictionary = any("DICTIONARY" in e for e in col.encodings)
        assert dictionary == (col.path_in_schema.split(".")[0] not in ("image", "mask")), col.path_in_schema


def test_thread_count_does_not_change_the_bytes(test_records, reference_run, tmp_path):
    """Decode -> fill -> encode run one image per pool task; 3 threads give the 1-thread bytes."""
    settings, _, ref_files = reference_run
    _run(test_records, SynthesisSettings(**{**settings.to_dict(), "num_workers": 3}), tmp_path / "w")
    files = merge_shards(tmp_path / "w", tmp_path / "o")
    assert [f.read_bytes() for f in files] == [f.read_bytes() for f in ref_files]


# ------------------------------------------------------------------ reliability (issue 13 rules 1-3)


def _small_world(tmp_path, shapes_world, n=4):
    """``n`` two-class records over copies of one world image: shard_size 2 -> n / 2 shards."""
    src = cv2.imread(str(next((shapes_world / "images" / "test").glob("*.png"))))
    two = [((2, 2, 10, 10), "dog"), ((40, 40, 10, 10), "frisbee")]
    records = []
    for i in range(1, n + 1):
        path = tmp_path / "img" / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), src)
        records.append(_record(i, path, two, [f"A dog with a frisbee, photo {i}"]))
    return records


def _with_caption(rec: SceneRecord, caption: str) -> SceneRecord:
    return dataclasses.replace(rec, captions=(caption,))


def test_edited_caption_or_fixed_image_regenerates_only_its_shard(shapes_world, tmp_path, caplog):
    records = _small_world(tmp_path, shapes_world)
    settings = _settings(target_policy="partner", target_pairs=[("dog", "frisbee")], shard_size=2)
    work = tmp_path / "w"
    _run(records, settings, work)
    before = {r["source_image_id"]: r for r in _rows(merge_shards(work, tmp_path / "o1"))}
    assert before["3"]["source_caption"] == "A dog with a frisbee, photo 3"
    shard0 = (work / "shards" / "00000.parquet").stat().st_mtime_ns
    # the same command after a caption of image 3 was edited: shard 1 is redone, shard 0 reused (and logged)
    edited = [*records[:2], _with_caption(records[2], "A dog and a frisbee on the beach"), records[3]]
    caplog.set_level("INFO", logger="hf_spurious.synthesis.generator")
    result = _run(edited, settings, work)
    assert result.ran_shards == [1]
    assert "reusing 1 finished shards" in caplog.text and "inputs changed" in caplog.text
    after = {r["source_image_id"]: r for r in _rows(merge_shards(work, tmp_path / "o2"))}
    assert after["3"]["source_caption"] == "A dog and a frisbee on the beach"
    assert after["3"]["caption"] != before["3"]["caption"] and "beach" in after["3"]["caption"]
    assert (work / "shards" / "00000.parquet").stat().st_mtime_ns == shard0
    # a replaced (fixed) image file: its shard is redone, and the new pixels are in the row
    img = cv2.imread(records[0].image_path)
    cv2.imwrite(records[0].image_path, 255 - img)
    assert _run(edited, settings, work).ran_shards == [0]
    fixed = {r["source_image_id"]: r for r in _rows(merge_shards(work, tmp_path / "o3"))}
    mask = _decode(fixed["1"]["mask"]["bytes"], cv2.IMREAD_GRAYSCALE) == 0
    np.testing.assert_array_equal(
        _decode(fixed["1"]["image"]["bytes"])[mask],
        _decode(cv2.imencode(".png", 255 - img)[1].tobytes())[mask],
    )
    # an unchanged rerun regenerates nothing
    assert _run(edited, settings, work).ran_shards == []


def _export_bytes(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.glob("*/*.parquet"))}


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_a_corrupt_work_shard_keeps_the_export_and_the_rerun_repairs_it(shapes_world, tmp_path, damage):
    records = _small_world(tmp_path, shapes_world)
    settings = _settings(target_policy="partner", target_pairs=[("dog", "frisbee")], shard_size=2)
    work, out = tmp_path / "w", tmp_path / "out"
    _run(records, settings, work)
    export_parquet(work, out, config_name="test")
    good = _export_bytes(out)
    card = (out / "README.md").read_text()
    shard = work / "shards" / "00001.parquet"
    data = bytearray(shard.read_bytes())
    if damage == "truncate":  # what a killed copy or a full disk leaves: found before anything is merged
        shard.write_bytes(bytes(data[: len(data) // 2]))
        assert _run(records, settings, work).ran_shards == [1]
    else:  # same size, bytes changed in the middle: found by the merge's checksum, which fails cleanly
        data[len(data) // 2] ^= 0xFF
        shard.write_bytes(bytes(data))
        with pytest.raises(SynthesisError, match=r"00001\.parquet is corrupt.*Rerun the same command"):
            export_parquet(work, out, config_name="test")
        assert (
            _export_bytes(out) == good and (out / "README.md").read_text() == card
        )  # previous export intact
        assert _run(records, settings, work).ran_shards == [1]  # the rerun regenerates the shard
    export_parquet(work, out, config_name="test")
    assert _export_bytes(out) == good
    assert not [p for p in out.iterdir() if p.name.startswith((".staging", ".old"))]


def test_two_concurrent_exports_into_one_folder_keep_both_configs(reference_run, tmp_path, monkeypatch):
    """Two exports of different configs at once, the provenance write slowed down: without the folder lock
    both read the old provenance.json and the second write drops the first config (checked: it does)."""
    import threading
    import time

    import datasets

    from hf_spurious.data import export as export_mod

    work = reference_run[1].work_dir
    real_write = export_mod.atomic_write_json

    def slow_write(*args, **kwargs):
        time.sleep(0.4)
        return real_write(*args, **kwargs)

    monkeypatch.setattr(export_mod, "atomic_write_json", slow_write)
    out, errors = tmp_path / "shared", []

    def export(name):
        try:
            export_parquet(work, out, config_name=name)
        except Exception as err:
            errors.append(err)

    threads = [threading.Thread(target=export, args=(name,)) for name in ("test_a", "test_b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert set(json.loads((out / "provenance.json").read_text())) == {"test_a", "test_b"}
    for name in ("test_a", "test_b"):
        ds = datasets.load_dataset(str(out), name, split="test", cache_dir=str(tmp_path / "cache"))
        assert len(ds) == reference_run[1].stats()["rows"]


def test_an_unreadable_provenance_is_rebuilt_not_fatal(reference_run, tmp_path, caplog):
    work, out = reference_run[1].work_dir, tmp_path / "out"
    export_parquet(work, out, config_name="first")
    (out / "provenance.json").write_text('{"first": {"splits": ')  # truncated by an older, non-atomic writer
    export_parquet(work, out, config_name="second")
    provenance = json.loads((out / "provenance.json").read_text())
    assert set(provenance) == {"first", "second"} and provenance["first"]["splits"] == {
        "test": ["test-00000-of-00001.parquet"]
    }
    assert (out / "provenance.json.corrupt").exists() and "unreadable" in caplog.text
    assert "config_name: first" in (out / "README.md").read_text()


def test_zero_rows_is_an_error_unless_allowed(shapes_world, tmp_path, capsys):
    from hf_spurious.cli import main

    out = tmp_path / "out"
    argv = ["counterfactuals", "--source", "shapes", "--data-dir", str(shapes_world), "--out", str(out),
            "--max-images", "0", "--num-workers", "1"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "0 rows" in err and "--allow-empty" in err and "Traceback" not in err
    assert not list(out.glob("*/*.parquet")) and not (out / "provenance.json").exists()
    assert main([*argv, "--allow-empty"]) == 0
    assert json.loads((out / "provenance.json").read_text())["test"]["stats"]["rows"] == 0


def test_train_tries_the_next_valid_class_before_dropping_an_image(shapes_world, tmp_path):
    """Issue 12 item 3: the first valid class (seeded) is one no caption names; the next one is used."""
    from hf_spurious.synthesis import planner
    from hf_spurious.synthesis.jobs import image_rng

    src = cv2.imread(str(next((shapes_world / "images" / "test").glob("*.png"))))
    path = tmp_path / "x.png"
    cv2.imwrite(str(path), src)
    objects = [((2, 2, 10, 10), "dog"), ((40, 40, 10, 10), "frisbee"), ((2, 40, 12, 12), "person")]
    rec = _record(1, path, objects, ["A person throws a frisbee in the park"])
    boxes, classes = [o[0] for o in objects], [o[1] for o in objects]

    def first_class(seed):
        return planner.plan_removal(boxes, classes, (64, 64), rng=image_rng(seed, "1")).target_class

    seed = next(s for s in range(50) if first_class(s) == "dog")  # no caption names the dog
    settings = _settings(split="train", seed=seed)
    _run([rec], settings, tmp_path / "w")
    stats = collect_stats(tmp_path / "w")
    assert stats["eligible"] == 1 and stats["notes"] == {"later_valid_class": 1}
    (row,) = _rows(merge_shards(tmp_path / "w", tmp_path / "o"))
    assert row["target_class"] in ("frisbee", "person")
    named = VOCAB.classes_in(row["caption"])
    assert not named & set(row["removed_classes"]) and named & set(row["present_classes"])
    # and the old behaviour with only the first class would have had nothing to edit
    assert not VOCAB.classes_in(rec.captions[0]) & {"dog"}


@pytest.mark.slow
def test_two_concurrent_cli_exports_into_one_folder(shapes_world, tmp_path):
    """The issue's scenario with real processes: two `hf-spurious counterfactuals` runs of different configs
    into one folder at once; both finish and both configs load."""
    import datasets

    out = tmp_path / "shared"
    base = [sys.executable, "-m", "hf_spurious.cli", "counterfactuals", "--source", "shapes", "--data-dir",
            str(shapes_world), "--out", str(out), "--max-images", "24", "--num-workers", "1", "--inpainter", "zero"]  # fmt: skip
    procs = [
        subprocess.Popen(
            [*base, "--config-name", name, "--seed", str(seed)], stderr=subprocess.PIPE, text=True
        )
        for seed, name in enumerate(("cfg_a", "cfg_b"))
    ]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
    provenance = json.loads((out / "provenance.json").read_text())
    assert set(provenance) == {"cfg_a", "cfg_b"}
    for name in provenance:
        ds = datasets.load_dataset(str(out), name, split="test", cache_dir=str(tmp_path / "cache"))
        assert len(ds) == provenance[name]["stats"]["rows"] > 0


def test_swap_in_replaces_a_config_folder_in_one_step(tmp_path, monkeypatch):
    """On Linux the staged and the old folder are exchanged atomically (no instant without the config);
    the fallback (two renames) gives the same end state."""
    from hf_spurious.data import export_folder

    for exchange in (True, False):
        root = tmp_path / str(exchange)
        (root / "cfg").mkdir(parents=True)
        (root / "cfg" / "old.parquet").write_text("old")
        staged = export_folder.staging_dir(root, "cfg")
        (staged / "new.parquet").write_text("new")
        if not exchange:
            monkeypatch.setattr(export_folder, "_exchange", lambda a, b: False)
        else:
            assert export_folder._exchange(staged, staged) or sys.platform != "linux"
        export_folder.swap_in(staged, root / "cfg")
        assert [p.name for p in (root / "cfg").iterdir()] == ["new.parquet"]
        assert sorted(p.name for p in root.iterdir()) == ["cfg"]


def test_cli_rerun_says_which_shards_it_reused(shapes_world, tmp_path, capsys):
    from hf_spurious.cli import main

    argv = ["counterfactuals", "--source", "shapes", "--data-dir", str(shapes_world), "--out", str(tmp_path / "o"),
            "--max-images", "16", "--shard-size", "8", "--num-workers", "1", "--inpainter", "zero"]  # fmt: skip
    assert main(argv) == 0
    assert "reused" not in capsys.readouterr().out
    assert main(argv) == 0
    assert "reused 2 of 2 finished shards" in capsys.readouterr().out
