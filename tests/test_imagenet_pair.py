"""ImageNet two-class studies (Yang et al. Table 5): the localisation-release reader, the val draw, the box
masks and the WILDS folder, on a tiny copy of the real layout; then train and evaluate (AIoU) on it."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from hf_spurious.data.imagenet_pair import box_mask, choose_val, write_imagenet_pair
from hf_spurious.records import RecordError
from hf_spurious.sources.common import MissingFileError
from hf_spurious.sources.imagenet import PAIRS, ImageNetImage, read_imagenet_pair
from hf_spurious.sources.waterbirds import read_waterbirds

WNIDS = [f"n{i:08d}" for i in range(1000)]
PAIR = PAIRS["baby_pacifier"]
BOTTLE, PACIFIER = WNIDS[898], WNIDS[680]


def _jpeg(path: Path, seed: int, size: tuple[int, int] = (40, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path, "JPEG")


def _loc(root: Path, train_per_class: int = 12, val_per_class: int = 6) -> Path:
    """The localisation release's layout: synsets, solution CSVs with boxes, train and val JPEGs (plus a
    third class that must be ignored)."""
    (root / "LOC_synset_mapping.txt").parent.mkdir(parents=True, exist_ok=True)
    (root / "LOC_synset_mapping.txt").write_text("".join(f"{w} class {i}\n" for i, w in enumerate(WNIDS)))
    data = root / "ILSVRC" / "Data" / "CLS-LOC"
    train_rows, val_rows, n = [], [], 0
    for wnid in (BOTTLE, PACIFIER, WNIDS[0]):
        for k in range(train_per_class):
            image_id = f"{wnid}_{k}"
            _jpeg(data / "train" / wnid / f"{image_id}.JPEG", n)
            if k % 3 == 0:  # ImageNet has train boxes for a subset
                train_rows.append([image_id, f"{wnid} 1 2 10 12 "])
            n += 1
        for _ in range(val_per_class):
            image_id = f"ILSVRC2012_val_{n:08d}"
            _jpeg(data / "val" / f"{image_id}.JPEG", n)
            val_rows.append([image_id, f"{wnid} 0 0 5 5 {wnid} 20 10 39 29"])
            n += 1
    for name, rows in (("train", train_rows), ("val", val_rows)):
        with open(root / f"LOC_{name}_solution.csv", "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["ImageId", "PredictionString"])
            writer.writerows(rows)
    return root


@pytest.fixture(scope="module")
def loc(tmp_path_factory) -> Path:
    return _loc(tmp_path_factory.mktemp("imagenet"))


def test_reader_takes_the_two_classes_with_their_boxes(loc):
    images = read_imagenet_pair(loc, "baby_pacifier")
    train = [im for im in images if im.split == "train"]
    test = [im for im in images if im.split == "test"]
    assert len(train) == 24 and len(test) == 12  # the third class is left out
    assert {im.label for im in train if im.path.parent.name == BOTTLE} == {0}  # class 898 is label 0
    assert {im.label for im in train if im.path.parent.name == PACIFIER} == {1}
    assert sum(bool(im.boxes) for im in train) == 8 and all(
        im.boxes == ((1, 2, 10, 12),) for im in train if im.boxes
    )
    assert all(im.boxes == ((0, 0, 5, 5), (20, 10, 39, 29)) for im in test)
    assert [im.image_id for im in test] == sorted(im.image_id for im in test)


def test_reader_errors_name_the_file_and_the_fix(loc, tmp_path):
    bad = _loc(tmp_path / "a", train_per_class=2, val_per_class=1)
    (bad / "LOC_val_solution.csv").write_text(
        "ImageId,PredictionString\n../../etc/passwd,n00000898 0 0 1 1\n"
    )
    with pytest.raises(RecordError, match=r"'\.\./\.\./etc/passwd' is not a plain file stem"):
        read_imagenet_pair(bad, PAIR)
    (bad / "LOC_val_solution.csv").write_text("ImageId,Prediction\n")
    with pytest.raises(RecordError, match="header must be 'ImageId,PredictionString'"):
        read_imagenet_pair(bad, PAIR)
    (bad / "LOC_val_solution.csv").write_text(f"ImageId,PredictionString\nx1,{BOTTLE} 0 0 one 1\n")
    with pytest.raises(RecordError, match="non-numeric coordinate"):
        read_imagenet_pair(bad, PAIR)
    (bad / "LOC_val_solution.csv").write_text(f"ImageId,PredictionString\nx1,{BOTTLE} 0 0 1 1\n")
    with pytest.raises(MissingFileError, match=r"x1\.JPEG: not found"):
        read_imagenet_pair(bad, PAIR)
    (bad / "LOC_val_solution.csv").write_text(
        f"ImageId,PredictionString\nx1,{BOTTLE} 0 0 1 1 {PACIFIER} 0 0 1 1\n"
    )
    with pytest.raises(RecordError, match="x1 has boxes of two chosen classes"):
        read_imagenet_pair(bad, PAIR)
    (bad / "LOC_synset_mapping.txt").write_text("n1 a\n")
    with pytest.raises(RecordError, match="expected 1000 distinct synsets"):
        read_imagenet_pair(bad, PAIR)
    empty = _loc(tmp_path / "b", train_per_class=1, val_per_class=0)
    with pytest.raises(RecordError, match="no test image of class 898"):
        read_imagenet_pair(empty, PAIR)


def test_box_mask_hand_worked():
    mask = box_mask([(1, 2, 3, 4)], (6, 7), where="x")
    expected = np.zeros((7, 6), dtype=np.uint8)
    expected[2:5, 1:4] = 255  # inclusive corners: columns 1..3, rows 2..4
    np.testing.assert_array_equal(mask, expected)
    assert box_mask([(0, 0, 9, 9)], (4, 3), where="x").all()  # a box past the border is clipped
    with pytest.raises(ValueError, match=r"x: box .* outside the 4x3 image"):
        box_mask([(4, 0, 5, 1)], (4, 3), where="x")
    with pytest.raises(ValueError, match="inverted"):
        box_mask([(2, 0, 1, 1)], (4, 3), where="x")


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 12),
    st.integers(1, 12),
    st.lists(st.tuples(*[st.integers(0, 14)] * 4), min_size=0, max_size=4),
)
def test_box_mask_equals_a_per_pixel_reference(width, height, corners):
    boxes = [
        (min(a, c), min(b, d), max(a, c), max(b, d))
        for a, b, c, d in corners
        if min(a, c) < width and min(b, d) < height
    ]
    reference = np.array(
        [[255 * any(x0 <= x <= x1 and y0 <= y <= y1 for x0, y0, x1, y1 in boxes) for x in range(width)]
         for y in range(height)],
        dtype=np.uint8,
    )  # fmt: skip
    np.testing.assert_array_equal(box_mask(boxes, (width, height), where="x"), reference)


def _images(n: int) -> list[ImageNetImage]:
    return [
        ImageNetImage(f"i{i}", Path(f"i{i}.JPEG"), i % 2, "train" if i < n - 4 else "test") for i in range(n)
    ]


def test_val_draw_takes_per_cell_images_deterministically():
    images = _images(44)
    attributes = [(i // 2) % 2 for i in range(44)]
    val = choose_val(images, attributes, per_cell=3, seed=0)
    assert (
        val == choose_val(images, attributes, per_cell=3, seed=0) != choose_val(images, attributes, 3, seed=1)
    )
    assert all(images[i].split == "train" for i in val)
    cells = [(images[i].label, attributes[i]) for i in val]
    assert sorted(cells) == sorted([(y, a) for y in (0, 1) for a in (0, 1)] * 3)
    with pytest.raises(ValueError, match=r"cell \(label 0, attribute 0\) has 10 images, fewer than the 11"):
        choose_val(images, attributes, per_cell=11, seed=0)


def test_written_folder_is_a_waterbirds_folder(loc, tmp_path):
    images = read_imagenet_pair(loc, PAIR)
    attributes = [i % 2 for i in range(len(images))]
    out = tmp_path / "pacifier"
    summary = write_imagenet_pair(images, attributes, out, PAIR, val_per_cell=2, seed=0)
    records = {s: read_waterbirds(out, s) for s in ("train", "val", "test")}
    assert [len(records[s]) for s in ("train", "val", "test")] == [16, 8, 12]
    assert sum(summary["groups"]["val"].values()) == 8 and set(summary["groups"]["val"].values()) == {2}
    assert all(r.mask_path for r in records["test"])  # every test image has its boxes as a mask: AIoU works
    from hf_spurious.evaluation.gradcam import load_mask

    first = next(r for r in records["test"])
    mask = load_mask(first.mask_path)
    assert mask.shape == (30, 40) and mask[0, 0] == 1 and mask[15, 10] == 0 and mask[29, 39] == 1
    again = tmp_path / "again"
    write_imagenet_pair(images, attributes, again, PAIR, val_per_cell=2, seed=0)
    assert (again / "metadata.csv").read_bytes() == (out / "metadata.csv").read_bytes()  # deterministic
    write_imagenet_pair(images, attributes, out, PAIR, val_per_cell=3, seed=0)  # replaces the folder whole
    assert json.loads((out / "imagenet_pair.json").read_text())["val_per_cell"] == 3
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    with pytest.raises(ValueError, match="3 attribute values for 36 images"):
        write_imagenet_pair(images, [0, 1, 0], out, PAIR)


@pytest.mark.slow
def test_cli_builds_the_study_then_train_and_evaluate_take_it(loc, tiny_model_dir, tmp_path, monkeypatch):
    """imagenet-pair (tiny OWL-ViT; its random scores are replaced by a fixed pattern after the real call so
    that every cell is filled), then train on it and evaluate group accuracies and AIoU."""
    from hf_spurious.cli import imagenet_pair, main

    real = imagenet_pair.detect_attributes

    def detect(*args, **kwargs):
        found = real(*args, **kwargs)
        assert found.shape == (36, 1)
        return (np.arange(36) % 2 == 0)[:, None]

    monkeypatch.setattr(imagenet_pair, "detect_attributes", detect)
    out = tmp_path / "pacifier"
    assert main(["imagenet-pair", "--data-dir", str(loc), "--out", str(out), "--detector",
                 str(tiny_model_dir("owlvit")), "--val-per-cell", "2"]) == 0  # fmt: skip
    assert len(read_waterbirds(out, "val")) == 8
    model = tiny_model_dir("clip")
    trained = tmp_path / "trained"
    assert main(["train", "--model", str(model), "--dataset", "waterbirds", "--data_dir", str(out),
                 "--class_names", "water bottle", "baby pacifier", "--attribute_names", "baby", "--text_spurious_weight", "1",
                 "--freeze_policy", "projection", "--output_dir", str(trained), "--max_steps", "2",
                 "--per_device_train_batch_size", "8", "--use_cpu", "--disable_tqdm", "true", "--report_to",
                 "none", "--templates", "simple", "--image_class_weight", "1"]) == 0  # fmt: skip
    res = tmp_path / "results"
    assert main(["evaluate", "--task", "classification", "--model", str(trained), "--data-dir", str(out),
                 "--class-names", "water bottle,baby pacifier", "--attribute-names", "no baby,baby", "--templates",
                 "simple", "--metrics",
                 "group,aiou", "--max-overlays", "1", "--out", str(res)]) == 0  # fmt: skip
    results = json.loads((res / "results.json").read_text())
    assert 0 <= results["aiou"]["aiou"] <= 1
    assert list(results["group"]["group_accuracy"]) == [
        "water bottle/no baby", "water bottle/baby", "baby pacifier/no baby", "baby pacifier/baby"
    ]  # fmt: skip
    disc = tmp_path / "disc"
    assert main(["discover", "--model", str(trained), "--data-dir", str(out), "--class-names",
                 "water bottle,baby pacifier", "--attribute-names", "no baby,baby", "--attribute-column", "place",
                 "--min-detections", "2", "--out", str(disc)]) == 0  # fmt: skip
    assert set(json.loads((disc / "discovery.json").read_text())["detections_per_attribute"]) == {
        "place=no baby", "place=baby"
    }  # fmt: skip


def test_clip_imagenet_class_names_by_index_and_name():
    from hf_spurious.sources.imagenet import class_indices, imagenet_class_names

    names = imagenet_class_names()
    assert len(names) == 1000 and names[0] == "tench" and names[-1] == "toilet paper"
    assert [names[i] for i in (680, 898, 623, 473)] == [
        "baby pacifier",
        "water bottle",
        "letter opener",
        "can opener",
    ]
    assert class_indices(["680", "water bottle", 473]) == [680, 898, 473]
    with pytest.raises(ValueError, match="unknown ImageNet class 'bottle'"):
        class_indices(["bottle"])


def test_most_confused_class_hand_worked_and_against_a_loop():
    from hf_spurious.evaluation.discovery import most_confused_classes

    logits = np.array([[5.0, 4, 1], [5, 1, 4], [1, 5, 4], [3, 2, 9]])
    # class 0: its other-best classes are 1 and 2 (one each: tie -> 1); class 1: 2 then 2 -> 2
    assert most_confused_classes([0, 0, 1, 1], logits) == {0: 1, 1: 2}
    rng = np.random.default_rng(0)
    for trial in range(20):
        n, c = (
            (9000, 3) if trial == 0 else (int(rng.integers(1, 30)), int(rng.integers(2, 6)))
        )  # 9000: 3 blocks
        labels = rng.integers(0, c, n)
        scores = rng.integers(0, 4, (n, c)).astype(float)  # many ties
        want = {}
        for cls in sorted(set(labels.tolist())):
            votes = [0] * c
            for i in range(n):
                if labels[i] == cls:
                    best = max((j for j in range(c) if j != cls), key=lambda j: (scores[i, j], -j))
                    votes[best] += 1
            want[cls] = max(range(c), key=lambda j: (votes[j], -j))
        assert most_confused_classes(labels, scores) == want


def test_ranking_class_by_class_equals_one_call():
    """discover runs the detector and the ranking class by class; merged and sorted by δ it is the ranking of
    one call over all images."""
    from hf_spurious.evaluation.discovery import discover_spurious_attributes

    rng = np.random.default_rng(1)
    labels, preds = rng.integers(0, 4, 400), rng.integers(0, 4, 400)
    det = rng.random((400, 6)) < 0.3
    names = [f"w{i}" for i in range(6)]
    whole = discover_spurious_attributes(labels, preds, det, names, min_detections=3, top_per_class=2)
    merged = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        merged += discover_spurious_attributes(
            labels[idx], preds[idx], det[idx], names, min_detections=3, top_per_class=2
        )
    merged.sort(key=lambda r: -r["delta"])
    assert merged == whole and len(whole) > 2


def test_discover_on_imagenet_classes(loc, tiny_model_dir, tmp_path):
    """--source imagenet: the chosen classes' train images, classified among the 1000 CLIP names."""
    from hf_spurious.cli import main

    out = tmp_path / "disc"
    assert main(["discover", "--source", "imagenet", "--data-dir", str(loc), "--classes", "water bottle,680",
                 "--model", str(tiny_model_dir("clip")), "--templates", "simple", "--detector",
                 str(tiny_model_dir("owlvit")), "--words", "baby,bottle", "--min-detections", "1",
                 "--out", str(out)]) == 0  # fmt: skip
    res = json.loads((out / "discovery.json").read_text())
    assert res["num_images"] == 24 and set(res["detections_per_attribute"]) == {"baby", "bottle"}
    assert all(r["class"] in ("water bottle", "baby pacifier") and r["confused_with"] for r in res["ranking"])
    assert main(["discover", "--source", "imagenet", "--data-dir", str(loc), "--classes", "680", "--model",
                 str(tiny_model_dir("clip")), "--attribute-column", "place", "--out", str(out)]) == 2  # fmt: skip
