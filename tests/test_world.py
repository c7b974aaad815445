"""SpuriousShapes world: file formats, calibrated statistics, determinism, oracle counterfactuals, CLI."""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from hf_spurious.world import (
    ClassificationWorldConfig,
    World,
    WorldConfig,
    choose_classes,
    generate_world,
    load_world,
)

# Facts written out independently of the package: COCO category ids and the CHAIR word lists (spec §1.5).
COCO_IDS = {
    "person": 1,
    "bicycle": 2,
    "car": 3,
    "boat": 9,
    "traffic light": 10,
    "bench": 15,
    "bird": 16,
    "dog": 18,
    "horse": 19,
    "umbrella": 28,
    "frisbee": 34,
    "sports ball": 37,
    "kite": 38,
    "surfboard": 42,
}
CHAIR = {
    "person": "person girl boy man woman kid child chef baker people adult rider children baby worker passenger "
    "sister biker policeman cop officer lady cowboy bride groom male female guy traveler mother father gentleman "
    "pitcher player skier snowboarder skater skateboarder foreigner caller offender coworker trespasser patient "
    "politician soldier grandchild serviceman walker drinker doctor bicyclist thief buyer teenager student camper "
    "driver solider hunter shopper villager",
    "bicycle": "bicycle bike unicycle minibike trike",
    "car": "car automobile van minivan sedan suv hatchback cab jeep coupe taxicab limo taxi",
    "boat": "boat ship liner sailboat motorboat dinghy powerboat speedboat canoe skiff yacht kayak catamaran "
    "pontoon houseboat vessel rowboat trawler ferryboat watercraft tugboat schooner barge ferry sailboard "
    "paddleboat lifeboat freighter steamboat riverboat battleship steamship",
    "traffic light": "traffic_light street_light traffic_signal stop_light streetlight stoplight",
    "bench": "bench pew",
    "bird": "bird ostrich owl seagull goose duck parakeet falcon robin pelican waterfowl heron hummingbird mallard "
    "finch pigeon sparrow seabird osprey blackbird fowl shorebird woodpecker egret chickadee quail bluebird "
    "kingfisher buzzard willet gull swan bluejay flamingo cormorant parrot loon gosling waterbird pheasant rooster "
    "sandpiper crow raven turkey oriole cowbird warbler magpie peacock cockatiel lorikeet puffin vulture condor "
    "macaw peafowl cockatoo songbird",
    "dog": "dog puppy beagle pup chihuahua schnauzer dachshund rottweiler canine pitbull collie pug terrier poodle "
    "labrador doggie doberman mutt doggy spaniel bulldog sheepdog weimaraner corgi cocker greyhound retriever "
    "brindle hound whippet husky",
    "horse": "horse colt pony racehorse stallion equine mare foal palomino mustang clydesdale bronc bronco",
    "umbrella": "umbrella",
    "frisbee": "frisbee",
    "sports ball": "sports_ball ball",
    "kite": "kite",
    "surfboard": "surfboard longboard skimboard shortboard wakeboard",
}
# Head words of the other 66 COCO classes (and their commonest synonyms) that a careless grammar could use.
_OTHER_COCO_TEXT = (
    "motorcycle scooter airplane plane jet bus train truck hydrant sign meter cat kitten sheep lamb ram goat cow "
    "cattle bull elephant bear zebra giraffe backpack handbag purse tie bow suitcase luggage skis ski snowboard "
    "bat glove skateboard racket bottle glass cup fork knife spoon bowl container banana apple sandwich sub "
    "orange broccoli carrot pizza donut cake chair seat stool couch sofa plant bed table desk toilet tv monitor "
    "laptop computer notebook mouse remote keyboard phone microwave oven stove toaster sink refrigerator book "
    "clock vase scissors teddy drier toothbrush"
)
OTHER_COCO_WORDS = set(_OTHER_COCO_TEXT.split())
PLURAL = {"people": "person", "men": "man", "women": "woman", "children": "child"}


def _forms() -> dict[tuple[str, ...], str]:
    table: dict[tuple[str, ...], str] = {}
    for cls, words in CHAIR.items():
        for entry in (w.replace("_", " ") for w in words.split()):
            for form in {entry, entry + "s", entry + "es", entry[:-1] + "ies"}:
                table[tuple(form.split())] = cls
            for plural in (k for k, v in PLURAL.items() if v == entry):
                table[(plural,)] = cls
    return table


FORMS = _forms()


def naive_classes(caption: str) -> set[str]:
    """Independent reference matcher: whole words, two-word entries first, simple plurals."""
    words = re.findall(r"[a-z]+", caption.lower())
    found, i = set(), 0
    while i < len(words):
        for n in (2, 1):
            cls = FORMS.get(tuple(words[i : i + n]))
            if cls is not None:
                found.add(cls)
                i += n
                break
        else:
            i += 1
    return found


def files_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# ------------------------------------------------------------------------------------------- COCO layout


def test_instances_load_with_pycocotools(shapes_world: Path) -> None:
    from pycocotools.coco import COCO

    for split, n in (("train", 60), ("val", 20), ("test", 30)):
        coco = COCO(str(shapes_world / "annotations" / f"instances_{split}.json"))
        assert len(coco.getImgIds()) == n
        cats = {c["name"]: c["id"] for c in coco.loadCats(coco.getCatIds())}
        assert cats == COCO_IDS
        anns = coco.loadAnns(coco.getAnnIds())
        assert anns and all(a["iscrowd"] == 0 for a in anns)
        for ann in anns[:40]:
            img = coco.loadImgs(ann["image_id"])[0]
            x, y, w, h = ann["bbox"]
            assert x >= 0 and y >= 0 and x + w <= img["width"] + 1e-6 and y + h <= img["height"] + 1e-6
            poly = np.array(ann["segmentation"][0]).reshape(-1, 2)
            # the box holds the polygon and its rasterised outline: within 1 px of the polygon's extents
            lo, hi = poly.min(axis=0), poly.max(axis=0)
            assert np.all(lo >= np.array([x, y]) - 0.02) and np.all(hi <= np.array([x + w, y + h]) + 0.02)
            assert np.all(lo - np.array([x, y]) <= 1.05) and np.all(np.array([x + w, y + h]) - hi <= 1.05)
            mask = coco.annToMask(ann)
            assert mask.shape == (img["height"], img["width"])
            assert abs(mask.sum() - ann["area"]) <= 0.15 * ann["area"] + 4  # area = polygon area
        for img in coco.loadImgs(coco.getImgIds()):
            assert (shapes_world / "images" / split / img["file_name"]).is_file()


def test_karpathy_and_captions_files_parse_as_plain_json(shapes_world: Path) -> None:
    data = json.loads((shapes_world / "dataset_coco.json").read_text())
    images = data["images"]
    assert Counter(im["split"] for im in images) == {"train": 60, "val": 20, "test": 30}
    sentids = [s["sentid"] for im in images for s in im["sentences"]]
    assert len(sentids) == len(set(sentids)) == 110 * 5
    assert len({im["cocoid"] for im in images}) == 110
    for n, im in enumerate(images):
        assert im["imgid"] == n
        assert (shapes_world / im["filepath"] / im["filename"]).is_file()
        assert im["sentids"] == [s["sentid"] for s in im["sentences"]]
        for s in im["sentences"]:
            assert s["imgid"] == n and s["raw"].strip()
            assert s["tokens"] == re.findall(r"[a-z0-9]+", s["raw"].lower())
    by_id = {im["cocoid"]: [s["raw"] for s in im["sentences"]] for im in images}
    for split in ("train", "val", "test"):
        caps = json.loads((shapes_world / "annotations" / f"captions_{split}.json").read_text())
        got: dict[int, list[str]] = {}
        for ann in caps["annotations"]:
            got.setdefault(ann["image_id"], []).append(ann["caption"])
        assert got == {i["id"]: by_id[i["id"]] for i in caps["images"]}


def test_world_json_round_trips_the_config(tmp_path: Path) -> None:
    cfg = WorldConfig(
        train_size=3, val_size=1, test_size=1, seed=5, p_partner=0.6, pairs=(("dog", "frisbee"),)
    )
    generate_world(cfg, tmp_path)
    assert load_world(tmp_path).config == cfg
    assert json.loads((tmp_path / "world.json").read_text())["variant"] == "retrieval"


# ------------------------------------------------------------------------------------------- statistics


@pytest.fixture(scope="module")
def big_world(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("big_world")
    cfg = WorldConfig(train_size=2000, val_size=0, test_size=0, image_size=32, seed=3)
    return out, generate_world(cfg, out)


def _image_classes(root: Path, split: str) -> dict[int, set[str]]:
    data = json.loads((root / "annotations" / f"instances_{split}.json").read_text())
    names = {c["id"]: c["name"] for c in data["categories"]}
    out: dict[int, set[str]] = {im["id"]: set() for im in data["images"]}
    for ann in data["annotations"]:
        out[ann["image_id"]].add(names[ann["category_id"]])
    return out


def test_partner_rate_matches_configuration(big_world) -> None:
    root, summary = big_world
    classes = _image_classes(root, "train")
    assert len(classes) == 2000
    for anchor, partner in WorldConfig().pairs:
        with_anchor = [c for c in classes.values() if anchor in c]
        rate = sum(partner in c for c in with_anchor) / len(with_anchor)
        assert len(with_anchor) > 150
        assert abs(rate - 0.9) <= 0.05, (anchor, partner, rate)
        reported = summary["pairs"][f"{anchor}->{partner}"]["p_partner_given_anchor"]
        assert reported == pytest.approx(rate, abs=1e-4)
    sizes = Counter(len(c) for c in classes.values())
    assert set(sizes) <= {2, 3, 4} and sizes[2] and sizes[3] and sizes[4]


@pytest.mark.parametrize("p_partner", [0.0, 0.5])
def test_partner_rate_follows_the_knob(p_partner: float) -> None:
    world = World(WorldConfig(train_size=1500, val_size=0, test_size=0, p_partner=p_partner, seed=1))
    scenes = [world.scene("train", i) for i in world.image_ids("train")]
    for anchor, partner in world.config.pairs:
        with_anchor = [s.counts for s in scenes if anchor in s.counts]
        rate = sum(partner in c for c in with_anchor) / len(with_anchor)
        assert abs(rate - p_partner) <= 0.06, (anchor, rate)


def test_captions_name_only_present_classes_with_calibrated_co_naming(big_world) -> None:
    root, summary = big_world
    classes = _image_classes(root, "train")
    data = json.loads((root / "dataset_coco.json").read_text())
    pairs = WorldConfig().pairs
    named_either = Counter()
    named_both = Counter()
    anchor_only = Counter()
    for im in data["images"]:
        present = classes[im["cocoid"]]
        for s in im["sentences"]:
            words = set(re.findall(r"[a-z]+", s["raw"].lower()))
            assert not words & OTHER_COCO_WORDS, s["raw"]
            named = naive_classes(s["raw"])
            assert named and named <= present, (s["raw"], present)
            assert 1 <= len(named) <= 3
            for a, p in pairs:
                if a in present and p in present and named & {a, p}:
                    named_either[a] += 1
                    named_both[a] += {a, p} <= named
                    anchor_only[a] += a in named and p not in named
    for a, p in pairs:
        rate = named_both[a] / named_either[a]
        assert abs(rate - 0.75) <= 0.05, (a, rate)
        assert anchor_only[a] >= 0.1 * named_either[a]  # enough anchor-only text for a right answer to exist
        assert summary["pairs"][f"{a}->{p}"]["anchor_only_captions"] == anchor_only[a]


def test_captions_match_the_package_vocabularies(shapes_world: Path) -> None:
    vocab = pytest.importorskip("hf_spurious.vocab", reason="hf_spurious.vocab is not built yet")
    coco, shapes = vocab.load_vocabulary("coco"), vocab.load_vocabulary("shapes")
    classes = _image_classes(shapes_world, "train")
    data = json.loads((shapes_world / "dataset_coco.json").read_text())
    for im in data["images"]:
        if im["split"] != "train":
            continue
        for s in im["sentences"]:
            expected = naive_classes(s["raw"])
            assert set(coco.classes_in(s["raw"])) == expected, s["raw"]
            assert set(shapes.classes_in(s["raw"])) == expected, s["raw"]
            assert expected <= classes[im["cocoid"]]


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 5), st.floats(0, 1))
def test_choose_classes_respects_counts_and_pairs(seed: int, target: int, p: float) -> None:
    cfg = WorldConfig()
    max_classes = max(target, 4)
    chosen = choose_classes(np.random.default_rng(seed), cfg.classes, cfg.pairs, p, target, max_classes)
    assert len(set(chosen)) == len(chosen)
    assert target <= len(chosen) <= max_classes
    assert not {"horse", "surfboard"} <= set(chosen)  # anchors sharing a partner never meet
    if p == 1.0:
        assert all(b in chosen for a, b in cfg.pairs if a in chosen)
    if p == 0.0:
        assert not any(b in chosen for a, b in cfg.pairs if a in chosen)


# ------------------------------------------------------------------------------------------- determinism


def test_same_seed_gives_byte_identical_files(tmp_path: Path) -> None:
    cfg = WorldConfig(train_size=12, val_size=4, test_size=4, seed=7)
    generate_world(cfg, tmp_path / "a")
    generate_world(cfg, tmp_path / "b")
    a, b = files_digest(tmp_path / "a"), files_digest(tmp_path / "b")
    assert len(a) == 20 + 6 + 2 and a == b
    generate_world(WorldConfig(train_size=12, val_size=4, test_size=4, seed=8), tmp_path / "c")
    c = files_digest(tmp_path / "c")
    assert a.keys() == c.keys()
    changed = [k for k in a if a[k] != c[k]]
    assert "dataset_coco.json" in changed and "annotations/instances_train.json" in changed
    assert sum(k.startswith("images/") for k in changed) == 20


def test_identical_across_processes_with_different_hash_seeds(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    retrieval = WorldConfig(train_size=10, val_size=3, test_size=3, seed=2)
    classification = ClassificationWorldConfig(train_size=8, val_size=4, test_size=4, pretrain_size=4)
    code = (
        "import sys; from hf_spurious.world import *; "
        f"generate_world({retrieval!r}, sys.argv[1] + '/r'); "
        f"generate_world({classification!r}, sys.argv[1] + '/c')"
    )
    hash_seed = "1" if os.environ.get("PYTHONHASHSEED") != "1" else "2"
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "a")], check=True, env=env)
    generate_world(retrieval, tmp_path / "b" / "r")
    generate_world(classification, tmp_path / "b" / "c")
    assert files_digest(tmp_path / "a") == files_digest(tmp_path / "b")


def test_classification_same_seed_identical_other_seed_differs(tmp_path: Path) -> None:
    cfg = ClassificationWorldConfig(train_size=8, val_size=4, test_size=4, pretrain_size=4, seed=1)
    generate_world(cfg, tmp_path / "a")
    generate_world(cfg, tmp_path / "b")
    assert files_digest(tmp_path / "a") == files_digest(tmp_path / "b")
    generate_world(
        ClassificationWorldConfig(train_size=8, val_size=4, test_size=4, pretrain_size=4, seed=2),
        tmp_path / "c",
    )
    a, c = files_digest(tmp_path / "a"), files_digest(tmp_path / "c")
    shared = a.keys() & c.keys()
    assert sum(a[k] != c[k] for k in shared if k.endswith(".png")) >= 0.9 * sum(
        k.endswith(".png") for k in shared
    )


# ------------------------------------------------------------------------------------------- oracle


def _read_png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def test_render_reproduces_the_written_images(shapes_world: Path) -> None:
    world = load_world(shapes_world)
    data = json.loads((shapes_world / "dataset_coco.json").read_text())
    for im in data["images"][::7]:
        rendered = world.render(im["split"], im["cocoid"])
        assert np.array_equal(rendered, _read_png(shapes_world / im["filepath"] / im["filename"]))
    with pytest.raises(KeyError, match="not in split"):
        world.render("val", data["images"][0]["cocoid"])


def test_render_without_removes_exactly_the_removed_objects(shapes_world: Path) -> None:
    world = load_world(shapes_world)
    kernel = np.ones((3, 3), np.uint8)  # glyph outlines are 1 px outside the filled polygon
    checked = 0
    for image_id in world.image_ids("test"):
        scene = world.scene("test", image_id)
        original = world.render("test", image_id)
        masks = world.masks("test", image_id)
        for removed in sorted(scene.counts):
            cf = world.render_without("test", image_id, [removed])
            removed_area = np.zeros(original.shape[:2], bool)
            visible = np.zeros(original.shape[:2], bool)  # removed pixels not covered by a later object
            for cls, mask in masks:
                grown = cv2.dilate(mask.astype(np.uint8), kernel).astype(bool)
                if cls == removed:
                    removed_area |= grown
                    visible |= mask
                else:
                    visible &= ~grown
            diff = np.any(cf != original, axis=2)
            assert not (diff & ~removed_area).any(), "pixels changed outside the removed objects"
            if visible.sum() >= 10:
                assert diff[visible].mean() > 0.9
            checked += 1
        everything = world.render_without("test", image_id, list(scene.counts))
        background = world.render_without("test", image_id, [])
        assert np.array_equal(background, original)
        assert not np.array_equal(everything, original)
    assert checked >= 60
    with pytest.raises(ValueError, match="unknown classes"):
        world.render_without("test", world.image_ids("test")[0], ["unicorn"])


# ------------------------------------------------------------------------------------------- classification


def test_waterbirds_layout_and_groups(waterbirds_world: Path) -> None:
    with (waterbirds_world / "metadata.csv").open(newline="") as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == ["img_id", "img_filename", "y", "split", "place"]
        rows = list(reader)
    assert Counter(r["split"] for r in rows) == {"0": 80, "1": 40, "2": 40}
    groups = {s: Counter((r["y"], r["place"]) for r in rows if r["split"] == s) for s in "012"}
    for s in "12":
        assert groups[s] == {("0", "0"): 10, ("0", "1"): 10, ("1", "0"): 10, ("1", "1"): 10}
    assert len(groups["0"]) == 4  # every train group present
    agree = (groups["0"][("0", "0")] + groups["0"][("1", "1")]) / 80
    assert 0.9 <= agree <= 0.975
    world = load_world(waterbirds_world)
    for r in rows[::9]:
        image = _read_png(waterbirds_world / r["img_filename"])
        mask = np.asarray(Image.open(waterbirds_world / "segmentations" / r["img_filename"]))
        assert set(np.unique(mask)) == {0, 255}
        split = ("train", "val", "test")[int(r["split"])]
        assert np.array_equal(image, world.render(split, int(r["img_id"])))
        ((family, own),) = world.masks(split, int(r["img_id"]))
        assert family == ("landbird", "waterbird")[int(r["y"])]
        assert np.array_equal(own, mask == 255)
        background = world.render_without(split, int(r["img_id"]), [family])
        diff = np.any(background != image, axis=2)
        assert diff[mask == 255].mean() > 0.9 and not diff[mask == 0].any()


def test_classification_train_agreement_and_colour_cue() -> None:
    cfg = ClassificationWorldConfig(train_size=2000, val_size=0, test_size=0, pretrain_size=0, seed=4)
    world = World(cfg)
    scenes = [world.scene("train", i) for i in world.image_ids("train")]
    agree = np.mean([s.label == s.place for s in scenes])
    assert abs(agree - 0.95) <= 0.002  # exact group counts by construction
    assert abs(np.mean([s.label for s in scenes]) - 0.23) <= 0.001
    warm = np.array([s.objects[0].colour[0] > s.objects[0].colour[2] for s in scenes])
    labels = np.array([s.label for s in scenes])
    informative = np.mean(warm == (labels == 0))  # landbirds warm, waterbirds cool
    assert abs(informative - 0.9) <= 0.03
    alphas = [s.objects[0].alpha for s in scenes]
    assert cfg.alpha_range[0] <= min(alphas) and max(alphas) <= cfg.alpha_range[1]


def test_pretraining_set_in_coco_captions_format(tmp_path: Path) -> None:
    cfg = ClassificationWorldConfig(
        train_size=4, val_size=4, test_size=4, pretrain_size=600, image_size=32, seed=2
    )
    summary = generate_world(cfg, tmp_path)
    data = json.loads((tmp_path / "pretrain" / "captions.json").read_text())
    assert len(data["images"]) == 600 and len(data["annotations"]) == 600
    for im in data["images"][::50]:
        assert (tmp_path / "pretrain" / "images" / im["file_name"]).is_file()
    place_words = {
        "grass",
        "field",
        "meadow",
        "sand",
        "dunes",
        "desert",
        "ocean",
        "sea",
        "waves",
        "lake",
        "pond",
        "lagoon",
    }
    kinds = Counter()
    for ann in data["annotations"]:
        text = ann["caption"]
        bird = bool(re.search(r"\b(land ?bird|water ?bird)\b", text))
        place = bool(set(text.split()) & place_words)
        kinds[(bird, place)] += 1
    assert kinds[(False, False)] == 0
    assert abs(kinds[(True, True)] / 600 - 0.75) <= 0.06
    assert abs(kinds[(True, False)] / 600 - 0.15) <= 0.05
    assert abs(kinds[(False, True)] / 600 - 0.10) <= 0.04
    groups = summary["pretrain"]["groups"]
    assert (groups["landbird/land"] + groups["waterbird/water"]) / 600 == pytest.approx(0.9, abs=0.002)


# ------------------------------------------------------------------------------------------- config + CLI


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"p_partner": 1.5}, "p_partner"),
        ({"pairs": (("dog", "frisbee"), ("frisbee", "kite"))}, "cannot also be an anchor"),
        ({"classes": ("dog", "unicorn")}, "unknown classes"),
        ({"min_classes": 3, "max_classes": 2}, "min_classes"),
        ({"object_size_range": (0.5, 0.2)}, "object_size_range"),
    ],
)
def test_world_config_rejects_bad_settings(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        WorldConfig(**kwargs)


def test_classification_config_rejects_bad_caption_mix() -> None:
    with pytest.raises(ValueError, match="caption_mix"):
        ClassificationWorldConfig(caption_mix=(0.5, 0.5, 0.5))


def test_cli_writes_world_summary_and_contact_sheet(tmp_path: Path, capsys) -> None:
    from hf_spurious.cli import main

    code = main(
        [
            "world",
            "--out",
            str(tmp_path / "r"),
            "--train-size",
            "10",
            "--val-size",
            "2",
            "--test-size",
            "2",
            "--p-partner",
            "0.8",
            "--pair",
            "dog:frisbee",
            "--seed",
            "3",
        ]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["images"] == {"train": 10, "val": 2, "test": 2}
    assert list(summary["pairs"]) == ["dog->frisbee"]
    assert load_world(tmp_path / "r").config.p_partner == 0.8
    sheet = Image.open(tmp_path / "r" / "contact_sheet.png")
    assert sheet.width > 64 * 4
    code = main(
        [
            "world",
            "--out",
            str(tmp_path / "c"),
            "--variant",
            "classification",
            "--train-size",
            "8",
            "--val-size",
            "4",
            "--test-size",
            "4",
            "--pretrain-size",
            "0",
        ]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["groups"]["val"] == {
        f"{b}/{p}": 1 for b in ("landbird", "waterbird") for p in ("land", "water")
    }
    assert (tmp_path / "c" / "contact_sheet.png").is_file()


def test_cli_set_overrides_any_field_and_reports_bad_values(tmp_path: Path, capsys) -> None:
    from hf_spurious.cli import main

    args = ["world", "--out", str(tmp_path), "--train-size", "4", "--val-size", "1", "--test-size", "1"]
    assert (
        main(
            [*args, "--no-contact-sheet", "--set", "p_duplicate=0.5", "--set", "object_size_range=[0.2,0.3]"]
        )
        == 0
    )
    config = load_world(tmp_path).config
    assert config.p_duplicate == 0.5 and config.object_size_range == (0.2, 0.3)
    assert not (tmp_path / "contact_sheet.png").exists()
    capsys.readouterr()
    assert main([*args, "--set", "p_partner=2"]) == 2
    assert "p_partner must be in [0, 1]" in capsys.readouterr().err
    assert main([*args, "--set", "bogus=1"]) == 2
    assert "FIELD one of" in capsys.readouterr().err


def test_annotated_boxes_hold_every_drawn_pixel(shapes_world):
    """Each object's pixels (fill and outline, drawn alone) lie inside its COCO box."""
    from hf_spurious.world import load_world, object_mask
    from hf_spurious.world.render import outline_mask

    world = load_world(shapes_world)
    instances = json.loads((shapes_world / "annotations" / "instances_test.json").read_text())
    boxes: dict[int, list] = {}
    for ann in instances["annotations"]:
        boxes.setdefault(ann["image_id"], []).append(ann["bbox"])
    checked = 0
    for image_id in world.image_ids("test"):
        scene = world.scene("test", image_id)
        for obj, (x, y, w, h) in zip(scene.objects, boxes[image_id], strict=True):
            drawn = object_mask(obj, scene.size) | outline_mask(obj.outer, obj.inner, scene.size)
            rows, cols = np.nonzero(drawn)
            assert cols.min() >= np.floor(x) and cols.max() + 1 <= np.ceil(x + w) + 1e-6
            assert rows.min() >= np.floor(y) and rows.max() + 1 <= np.ceil(y + h) + 1e-6
            checked += 1
    assert checked > 30


@pytest.mark.parametrize("command", ["world", "counterfactuals"])
def test_every_flag_has_help_and_shows_its_default(command):
    """Issue 15 item 3: a help string on every flag, and its default (or 'required') in the help."""
    from hf_spurious.cli import command_parser

    parser = command_parser(command)
    for action in parser._actions:
        if not action.option_strings or action.dest == "help":
            continue
        flag = action.option_strings[0]
        assert action.help and len(action.help) > 10, f"{command} {flag}: no help"
        formatted = parser.formatter_class(prog="x")._get_help_string(action) or ""
        assert action.required or "default" in formatted, f"{command} {flag}: default not shown"
