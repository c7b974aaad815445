"""Readers on tiny hand-written fixtures in the real formats (COCO, Karpathy, Flickr30k Entities, WILDS)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from hf_spurious.records import RecordError
from hf_spurious.sources import (
    MissingFileError,
    parse_entities_sentence,
    read_coco,
    read_flickr30k,
    read_waterbirds,
)


def _image(path: Path, size: tuple[int, int]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (120, 30, 60)).save(path)
    return path


def _json(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


# ------------------------------------------------------------------------------------------- COCO fixture

CATEGORIES = [
    {"id": 1, "name": "person", "supercategory": "person"},
    {"id": 18, "name": "dog", "supercategory": "animal"},
    {"id": 34, "name": "frisbee", "supercategory": "sports"},
]
# image 42: dog + frisbee (val2014 file); image 7: person (train2014 file); image 9: no instances.
INSTANCES_VAL = {
    "images": [{"id": 42, "file_name": "COCO_val2014_000000000042.jpg", "width": 40, "height": 30}],
    "annotations": [
        {
            "id": 1,
            "image_id": 42,
            "category_id": 18,
            "bbox": [2, 3, 10, 8],
            "area": 80,
            "iscrowd": 0,
            "segmentation": [[2, 3, 12, 3, 12, 11, 2, 11]],
        },
        {
            "id": 2,
            "image_id": 42,
            "category_id": 34,
            "bbox": [30, 20, 15, 5],
            "area": 75,
            "iscrowd": 0,
            "segmentation": [[30, 20, 45, 20, 45, 25]],
        },  # sticks out on the right: clipped to w=10
    ],
    "categories": CATEGORIES,
}
INSTANCES_TRAIN = {
    "images": [{"id": 7, "file_name": "COCO_train2014_000000000007.jpg", "width": 20, "height": 20}],
    "annotations": [
        {"id": 3, "image_id": 7, "category_id": 1, "bbox": [1, 1, 5, 9], "area": 45, "iscrowd": 0}
    ],
    "categories": CATEGORIES,
}


def _sent(raw: str, imgid: int, sentid: int) -> dict:
    return {"raw": raw, "tokens": re.findall(r"[a-z]+", raw.lower()), "imgid": imgid, "sentid": sentid}


def _karpathy(images: list[tuple[str, str, int, str]]) -> dict:
    out = []
    for n, (filepath, filename, cocoid, split) in enumerate(images):
        sents = [_sent(f"caption {k} of image {cocoid}", n, 10 * n + k) for k in range(2)]
        out.append(
            {
                "filepath": filepath,
                "filename": filename,
                "cocoid": cocoid,
                "split": split,
                "imgid": n,
                "sentids": [s["sentid"] for s in sents],
                "sentences": sents,
            }
        )
    return {"images": out, "dataset": "coco"}


KARPATHY_IMAGES = [
    ("val2014", "COCO_val2014_000000000042.jpg", 42, "restval"),
    ("train2014", "COCO_train2014_000000000007.jpg", 7, "test"),
    ("val2014", "COCO_val2014_000000000009.jpg", 9, "test"),
]


def make_coco(root: Path, *, year: int = 2014) -> Path:
    _json(root / "annotations" / "instances_val2014.json", INSTANCES_VAL)
    _json(root / "annotations" / "instances_train2014.json", INSTANCES_TRAIN)
    _json(root / "dataset_coco.json", _karpathy(KARPATHY_IMAGES))
    sizes = {42: (40, 30), 7: (20, 20), 9: (16, 12)}
    for folder, name, cocoid, _ in KARPATHY_IMAGES:
        if year == 2014:
            _image(root / folder / name, sizes[cocoid])
        else:  # COCO 2017 naming: the 2014 val image 42 now lives in train2017
            _image(root / ("train2017" if cocoid != 9 else "val2017") / f"{cocoid:012d}.jpg", sizes[cocoid])
    return root


@pytest.mark.parametrize("year", [2014, 2017])
def test_read_coco_karpathy_with_2014_and_2017_naming(tmp_path: Path, year: int) -> None:
    root = make_coco(tmp_path, year=year)
    train = read_coco(root, "train")
    assert [r.image_id for r in train] == ["42"]  # restval -> train
    rec = train[0]
    assert Path(rec.image_path).is_file()
    assert Path(rec.image_path).name == (
        "COCO_val2014_000000000042.jpg" if year == 2014 else "000000000042.jpg"
    )
    assert (rec.width, rec.height, rec.split, rec.source) == (40, 30, "train", "coco")
    assert rec.captions == ("caption 0 of image 42", "caption 1 of image 42")
    assert [(o.category, o.bbox) for o in rec.objects] == [
        ("dog", (2, 3, 10, 8)),
        ("frisbee", (30, 20, 10, 5)),
    ]
    assert rec.objects[0].segmentation == ((2, 3, 12, 3, 12, 11, 2, 11),)
    test = {r.image_id: r for r in read_coco(root, "test")}
    assert set(test) == {"7", "9"}
    assert test["7"].classes == {"person"}  # indexed from the *train* instance file
    assert test["9"].objects == () and (test["9"].width, test["9"].height) == (16, 12)  # size from the image
    assert read_coco(root, "val") == []


def test_read_coco_captions_files_without_karpathy(tmp_path: Path) -> None:
    _json(tmp_path / "annotations" / "instances_val2014.json", INSTANCES_VAL)
    caps = {
        "images": INSTANCES_VAL["images"],
        "annotations": [
            {"id": 5, "image_id": 42, "caption": "A dog with a frisbee."},
            {"id": 6, "image_id": 42, "caption": "a puppy playing "},
        ],
    }
    _json(tmp_path / "annotations" / "captions_val2014.json", caps)
    _image(tmp_path / "val2014" / "COCO_val2014_000000000042.jpg", (40, 30))
    (rec,) = read_coco(tmp_path, "val")
    assert rec.captions == ("A dog with a frisbee.", "a puppy playing")
    assert rec.classes == {"dog", "frisbee"}
    with pytest.raises(MissingFileError, match=r"captions_train\*\.json"):
        read_coco(tmp_path, "train")
    with pytest.raises(MissingFileError, match=r"elsewhere\.json: file not found"):
        read_coco(tmp_path, "val", karpathy_json=tmp_path / "elsewhere.json")


def test_read_coco_karpathy_file_elsewhere(tmp_path: Path) -> None:
    root = make_coco(tmp_path / "coco")
    moved = (root / "dataset_coco.json").rename(tmp_path / "karpathy.json")
    assert [r.image_id for r in read_coco(root, "train", karpathy_json=moved)] == ["42"]
    with pytest.raises(MissingFileError, match=r"captions_train\*\.json"):
        read_coco(root, "train")  # no Karpathy file in data_dir and no captions files either


def test_read_coco_box_policy_and_vocabulary(tmp_path: Path) -> None:
    root = make_coco(tmp_path)
    with pytest.raises(
        RecordError, match=r"instances_val2014\.json: annotation 2 of image 42.*box_policy='clip'"
    ):
        read_coco(root, "train", box_policy="reject")
    with pytest.raises(RecordError, match="'frisbee' is not a class of the vocabulary"):
        read_coco(root, "train", vocabulary=["dog", "person"])
    assert read_coco(root, "train", vocabulary=None)[0].classes == {"dog", "frisbee"}


@pytest.mark.parametrize(
    "bad_name, message",
    [
        ("../outside.jpg", r"contains '\.\.'"),
        ("/etc/passwd", "absolute path"),
        ("C:\\x\\y.jpg", "absolute path"),
    ],
)
def test_read_coco_refuses_path_traversal(tmp_path: Path, bad_name: str, message: str) -> None:
    root = make_coco(tmp_path)
    data = _karpathy([("val2014", bad_name, 42, "train")])
    _json(root / "dataset_coco.json", data)
    with pytest.raises(RecordError, match=rf"dataset_coco\.json: image 42.*{message}"):
        read_coco(root, "train")
    data = _karpathy([("../val2014", "COCO_val2014_000000000042.jpg", 42, "train")])
    _json(root / "dataset_coco.json", data)
    with pytest.raises(RecordError, match=r"contains '\.\.'"):
        read_coco(root, "train")


def test_read_coco_refuses_traversal_in_captions_file(tmp_path: Path) -> None:
    _json(tmp_path / "annotations" / "instances_val2014.json", INSTANCES_VAL)
    caps = {"images": [{"id": 42, "file_name": "../../x.jpg", "width": 4, "height": 4}], "annotations": []}
    _json(tmp_path / "annotations" / "captions_val2014.json", caps)
    with pytest.raises(RecordError, match=r"captions_val2014\.json: image 42 .*'\.\.'"):
        read_coco(tmp_path, "val")


def test_read_coco_missing_image(tmp_path: Path) -> None:
    root = make_coco(tmp_path)
    (root / "train2014" / "COCO_train2014_000000000007.jpg").unlink()
    with pytest.raises(MissingFileError, match=r"dataset_coco\.json: image 7 .*not found") as info:
        read_coco(root, "test")
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, RecordError)
    assert [r.image_id for r in read_coco(root, "test", on_missing="skip")] == ["9"]


@pytest.mark.parametrize("name", ["dataset_coco.json", "annotations/instances_train2014.json"])
def test_read_coco_truncated_json(tmp_path: Path, name: str) -> None:
    root = make_coco(tmp_path)
    path = root / name
    path.write_text(path.read_text()[:-25])
    with pytest.raises(RecordError, match=rf"{re.escape(str(path))}: not valid JSON.*truncated"):
        read_coco(root, "train")


@pytest.mark.parametrize(
    "bbox, cat, message",
    [
        ([50, 40, 5, 5], 18, "lies outside the 40x30 image"),
        ([1, 1, -3, 2], 18, "negative size"),
        ([1, 1, 3, 3], 99, "unknown category id 99"),
    ],
)
def test_read_coco_bad_annotations(tmp_path: Path, bbox, cat, message: str) -> None:
    root = make_coco(tmp_path)
    bad = json.loads(json.dumps(INSTANCES_VAL))
    bad["annotations"].append(
        {"id": 77, "image_id": 42, "category_id": cat, "bbox": bbox, "area": 1, "iscrowd": 0}
    )
    _json(root / "annotations" / "instances_val2014.json", bad)
    with pytest.raises(RecordError, match=rf"instances_val2014\.json: annotation 77 of image 42.*{message}"):
        read_coco(root, "train")


def test_read_coco_on_world_matches_naive_parse(shapes_world: Path) -> None:
    """The world is read by the same reader; compare with a plain-json parse written here."""
    karpathy = json.loads((shapes_world / "dataset_coco.json").read_text())
    for split, n in (("train", 60), ("val", 20), ("test", 30)):
        inst = json.loads((shapes_world / "annotations" / f"instances_{split}.json").read_text())
        names = {c["id"]: c["name"] for c in inst["categories"]}
        expected: dict[str, set] = {str(im["id"]): set() for im in inst["images"]}
        for ann in inst["annotations"]:
            expected[str(ann["image_id"])].add((names[ann["category_id"]], tuple(ann["bbox"])))
        caps = {str(im["cocoid"]): tuple(s["raw"] for s in im["sentences"]) for im in karpathy["images"]}
        records = read_coco(shapes_world, split)
        assert len(records) == n
        for rec in records:
            got = {(o.category, tuple(round(v, 2) for v in o.bbox)) for o in rec.objects}
            assert got == expected[rec.image_id]
            assert rec.captions == caps[rec.image_id] and len(rec.captions) == 5
            assert Path(rec.image_path) == shapes_world / "images" / split / f"{int(rec.image_id):012d}.png"
        via_captions = read_coco(shapes_world, split, karpathy_json=False)
        assert via_captions == records


# ------------------------------------------------------------------------------------------- Flickr30k

SENTENCES_1000 = [
    "[/EN#18/people A man] in [/EN#19/clothing an orange hat] walks [/EN#20/animals a dog] .",
    "[/EN#18/people/other Someone] rides [/EN#21/vehicles a bike] near [/EN#0/notvisual the crowd] .",
]
XML_1000 = """<annotation>
<filename>1000.jpg</filename>
<size><width>50</width><height>40</height><depth>3</depth></size>
<object><name>18</name><bndbox><xmin>1</xmin><ymin>2</ymin><xmax>10</xmax><ymax>20</ymax></bndbox></object>
<object><name>19</name><bndbox><xmin>3</xmin><ymin>3</ymin><xmax>8</xmax><ymax>6</ymax></bndbox></object>
<object><name>20</name><name>21</name><bndbox><xmin>20</xmin><ymin>10</ymin><xmax>49</xmax><ymax>39</ymax></bndbox></object>
<object><name>0</name><nobndbox>1</nobndbox><scene>0</scene></object>
<object><name>22</name><nobndbox>0</nobndbox><scene>1</scene></object>
</annotation>
"""


def make_flickr(root: Path) -> Path:
    images = [
        {
            "filename": "1000.jpg",
            "split": "train",
            "imgid": 0,
            "sentids": [0, 1],
            "sentences": [_sent("karpathy one", 0, 0), _sent("karpathy two", 0, 1)],
        },
        {
            "filename": "2000.jpg",
            "split": "test",
            "imgid": 1,
            "sentids": [2],
            "sentences": [_sent("a lone caption", 1, 2)],
        },
    ]
    _json(root / "dataset_flickr30k.json", {"images": images, "dataset": "flickr30k"})
    _image(root / "flickr30k-images" / "1000.jpg", (50, 40))
    _image(root / "flickr30k-images" / "2000.jpg", (30, 30))
    (root / "Annotations").mkdir()
    (root / "Sentences").mkdir()
    (root / "Annotations" / "1000.xml").write_text(XML_1000)
    (root / "Sentences" / "1000.txt").write_text("\n".join(SENTENCES_1000) + "\n")
    (root / "Annotations" / "2000.xml").write_text("<annotation><filename>2000.jpg</filename></annotation>")
    return root


def test_read_flickr30k_phrases_and_boxes(tmp_path: Path) -> None:
    (rec,) = read_flickr30k(make_flickr(tmp_path), "train")
    assert rec.captions == ("A man in an orange hat walks a dog .", "Someone rides a bike near the crowd .")
    assert rec.image_id == "1000" and (rec.width, rec.height) == (50, 40) and rec.source == "flickr30k"
    first, second = rec.caption_phrases
    assert [(p.text, p.classes) for p in first] == [
        ("A man", frozenset({"people"})),
        ("an orange hat", frozenset()),
        ("a dog", frozenset({"animals"})),
    ]
    assert [(p.text, p.classes) for p in second] == [
        ("Someone", frozenset({"people"})),
        ("a bike", frozenset({"vehicles"})),
        ("the crowd", frozenset()),
    ]
    for caption, phrases in zip(rec.captions, rec.caption_phrases):
        assert all(caption[p.start : p.end] == p.text for p in phrases)
    # 1-based inclusive corners -> xywh; clothing dropped; a box named by two entities gets both types.
    assert sorted((o.category, o.bbox) for o in rec.objects) == [
        ("animals", (19.0, 9.0, 30.0, 30.0)),
        ("people", (0.0, 1.0, 10.0, 19.0)),
        ("vehicles", (19.0, 9.0, 30.0, 30.0)),
    ]
    (rec,) = read_flickr30k(tmp_path, "train", classes=("people", "clothing"))
    assert rec.classes == {"people", "clothing"}


def test_read_flickr30k_without_sentence_file_uses_karpathy(tmp_path: Path) -> None:
    (rec,) = read_flickr30k(make_flickr(tmp_path), "test")
    assert rec.captions == ("a lone caption",) and rec.caption_phrases is None and rec.objects == ()
    assert (rec.width, rec.height) == (30, 30)  # no <size>: read from the image


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda r: (r / "Annotations" / "1000.xml").unlink(), r"1000\.xml not found"),
        (lambda r: (r / "flickr30k-images" / "1000.jpg").unlink(), r"1000\.jpg not found"),
        (lambda r: (r / "Annotations" / "1000.xml").write_text(XML_1000[:120]), "not valid XML"),
        (
            lambda r: (r / "Annotations" / "1000.xml").write_text(
                XML_1000.replace("<xmin>20</xmin>", "<xmin>90</xmin>").replace(
                    "<xmax>49</xmax>", "<xmax>99</xmax>"
                )
            ),
            "outside the 50x40 image",
        ),
        (
            lambda r: (r / "Sentences" / "1000.txt").write_text("[/EN#1/people a man] and [/EN#2/people a\n"),
            r"1000\.txt: line 1: unbalanced",
        ),
        (
            lambda r: (r / "dataset_flickr30k.json").write_text(
                '{"images": [{"filename": "../1000.jpg", "split": "train"}]}'
            ),
            r"contains '\.\.'",
        ),
        (lambda r: (r / "dataset_flickr30k.json").write_text('{"images": [{"filen'), "not valid JSON"),
    ],
)
def test_read_flickr30k_bad_input(tmp_path: Path, mutate, message: str) -> None:
    root = make_flickr(tmp_path)
    mutate(root)
    with pytest.raises(RecordError, match=message):
        read_flickr30k(root, "train")


def test_read_flickr30k_skip_missing(tmp_path: Path) -> None:
    root = make_flickr(tmp_path)
    (root / "flickr30k-images" / "1000.jpg").unlink()
    assert read_flickr30k(root, "train", on_missing="skip") == []


def naive_entities(line: str) -> tuple[str, list[tuple[str, list[str]]]]:
    """Token-by-token reference parser in the style of the Flickr30k Entities utilities."""
    words, phrases, current, types = [], [], None, None
    for token in line.split(" "):
        if current is not None:
            if token.endswith("]"):
                current.append(token[:-1])
                phrases.append((" ".join(current), types))
                words.extend(current)
                current = None
            else:
                current.append(token)
        elif token.startswith("[/EN#"):
            types = token.split("/")[2:]
            current = []
        else:
            words.append(token)
    return " ".join(words), phrases


_word = st.text("abcdefgh", min_size=1, max_size=5)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.one_of(
            _word.map(lambda w: ("w", w)),
            st.tuples(
                st.integers(0, 99),
                st.lists(st.sampled_from(["people", "animals", "other", "scene"]), min_size=1, max_size=2),
                st.lists(_word, min_size=1, max_size=3),
            ).map(lambda t: ("e", t)),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_entity_parser_matches_naive_reference(segments) -> None:
    parts = []
    for kind, value in segments:
        if kind == "w":
            parts.append(value)
        else:
            entity, kinds, words = value
            parts.append(f"[/EN#{entity}/{'/'.join(kinds)} {' '.join(words)}]")
    line = " ".join(parts)
    caption, phrases, _ = parse_entities_sentence(line, ("people", "animals"))
    ref_caption, ref_phrases = naive_entities(line)
    assert caption == ref_caption
    assert [(p.text, p.classes) for p in phrases] == [
        (t, frozenset(k for k in kinds if k in ("people", "animals"))) for t, kinds in ref_phrases
    ]
    assert all(caption[p.start : p.end] == p.text for p in phrases)


# ------------------------------------------------------------------------------------------- Waterbirds

METADATA = """img_id,img_filename,y,split,place,place_filename
1,001.Black_footed_Albatross/Black_Footed_Albatross_0046_18.jpg,1,0,1,/o/ocean/00002178.jpg
2,002.Laysan_Albatross/Laysan_Albatross_0002_1027.jpg,1,1,0,/b/bamboo_forest/00000071.jpg
3,010.Red_winged_Blackbird/Red_Winged_Blackbird_0001_3695.jpg,0,2,1,/l/lake/natural/00000065.jpg
4,010.Red_winged_Blackbird/Red_Winged_Blackbird_0002_3696.jpg,0,0,0,/f/forest/broadleaf/00000001.jpg
"""


def make_waterbirds(root: Path) -> Path:
    (root / "metadata.csv").parent.mkdir(parents=True, exist_ok=True)
    (root / "metadata.csv").write_text(METADATA)
    for line in METADATA.splitlines()[1:]:
        _image(root / line.split(",")[1], (12, 10))
    seg = root / "segmentations" / "001.Black_footed_Albatross" / "Black_Footed_Albatross_0046_18.png"
    seg.parent.mkdir(parents=True)
    Image.new("L", (12, 10), 0).save(seg)
    return root


def test_read_waterbirds(tmp_path: Path) -> None:
    root = make_waterbirds(tmp_path)
    records = read_waterbirds(root)
    assert [(r.image_id, r.label, r.attribute, r.split, r.group) for r in records] == [
        ("1", 1, 1, "train", 3),
        ("2", 1, 0, "val", 2),
        ("3", 0, 1, "test", 1),
        ("4", 0, 0, "train", 0),
    ]
    assert records[0].mask_path is not None and Path(records[0].mask_path).is_file()
    assert all(r.mask_path is None for r in records[1:])
    assert [r.image_id for r in read_waterbirds(root, "train")] == ["1", "4"]
    assert (
        Path(records[2].image_path)
        == root / "010.Red_winged_Blackbird" / "Red_Winged_Blackbird_0001_3695.jpg"
    )


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda t: t.replace(",0,1,/o/", ",5,1,/o/"), r"line 2 \(img_id '1'\): split 5 is not 0/1/2"),
        (lambda t: t.replace(",1,0,1,/o/", ",1,0,3,/o/"), r"line 2: .*attribute 3"),
        (lambda t: t.replace(",1,0,1,/o/", ",x,0,1,/o/"), "must be integers"),
        (lambda t: t.replace("001.Black", "../001.Black"), r"line 2 .*contains '\.\.'"),
        (lambda t: t.replace("001.Black", "/abs/001.Black"), "absolute path"),
        (lambda t: t.replace("img_filename", "image"), r"missing columns \['img_filename'\]"),
    ],
)
def test_read_waterbirds_bad_metadata(tmp_path: Path, edit, message: str) -> None:
    root = make_waterbirds(tmp_path)
    (root / "metadata.csv").write_text(edit(METADATA))
    with pytest.raises(RecordError, match=message):
        read_waterbirds(root)


def test_read_waterbirds_missing_files(tmp_path: Path) -> None:
    with pytest.raises(MissingFileError, match=r"metadata\.csv: file not found"):
        read_waterbirds(tmp_path)
    root = make_waterbirds(tmp_path)
    (root / "002.Laysan_Albatross" / "Laysan_Albatross_0002_1027.jpg").unlink()
    with pytest.raises(
        MissingFileError, match=r"line 3 \(img_id '2'\): image .*Laysan_Albatross_0002_1027\.jpg not found"
    ):
        read_waterbirds(root)
    assert [r.image_id for r in read_waterbirds(root, on_missing="skip")] == ["1", "3", "4"]


def test_read_waterbirds_on_world(waterbirds_world: Path) -> None:
    import csv

    with (waterbirds_world / "metadata.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    records = read_waterbirds(waterbirds_world)
    assert len(records) == len(rows) == 160
    for row, rec in zip(rows, records):
        assert (rec.image_id, rec.label, rec.attribute) == (row["img_id"], int(row["y"]), int(row["place"]))
        assert rec.split == ("train", "val", "test")[int(row["split"])]
        assert rec.mask_path == str(waterbirds_world / "segmentations" / row["img_filename"])
    assert len(read_waterbirds(waterbirds_world, "val")) == 40


def test_readers_reject_unknown_split(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        read_coco(tmp_path, "dev")
    with pytest.raises(ValueError, match="unknown split"):
        read_waterbirds(tmp_path, "restval")
