"""Bad inputs of the readers (issue 13 rule 5): every error names the file, the item and the fix.

Each case writes a tiny valid dataset (COCO + Karpathy, COCO captions, Flickr30k Entities, WILDS Waterbirds),
breaks ONE thing, reads it, and checks the outcome: a ``RecordError`` / ``MissingFileError`` whose message
names the file and the item (never a bare ``KeyError`` / ``TypeError`` / ``UnicodeDecodeError``), or, for
inputs that are fine after all (a UTF-8 byte-order mark), the records read.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

from hf_spurious.records import RecordError
from hf_spurious.sources import MissingFileError, read_coco, read_flickr30k, read_waterbirds

from ._cases import Case, cases, check

COCO_NAME = "COCO_val2014_000000000042.jpg"
KARPATHY = {
    "images": [
        {
            "filepath": "val2014",
            "filename": COCO_NAME,
            "cocoid": 42,
            "imgid": 0,
            "split": "test",
            "sentences": [{"raw": "A dog with a frisbee.", "tokens": ["a", "dog", "with", "a", "frisbee"]}],
        }
    ]
}
INSTANCES = {
    "images": [{"id": 42, "file_name": COCO_NAME, "width": 40, "height": 30}],
    "annotations": [
        {
            "id": 1,
            "image_id": 42,
            "category_id": 18,
            "bbox": [2, 3, 10, 8],
            "segmentation": [[2, 3, 12, 3, 12, 11]],
        }
    ],
    "categories": [{"id": 18, "name": "dog"}],
}
CAPTIONS = {
    "images": [{"id": 42, "file_name": COCO_NAME, "width": 40, "height": 30}],
    "annotations": [{"id": 5, "image_id": 42, "caption": "A dog."}],
}


def _image(path: Path, size: tuple[int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (120, 30, 60)).save(path)


def _write(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data if isinstance(data, str) else json.dumps(data))


Edit = Callable[[dict], Any]


def coco(
    karpathy: Edit | None = None, instances: Edit | None = None, *, image: bool | bytes = True
) -> Callable:
    """A run function: a one-image COCO folder (Karpathy + instances) with one edit, read as split test."""

    def run(tmp: Path) -> Any:
        k, inst = copy.deepcopy(KARPATHY), copy.deepcopy(INSTANCES)
        k = karpathy(k) or k if karpathy else k
        inst = instances(inst) or inst if instances else inst
        _write(tmp / "dataset_coco.json", k)
        _write(tmp / "annotations" / "instances_val2014.json", inst)
        if isinstance(image, bytes):
            _write(tmp / "val2014" / COCO_NAME, image)
        elif image:
            _image(tmp / "val2014" / COCO_NAME, (40, 30))
        return read_coco(tmp, "test", vocabulary=None)

    return run


def coco_raw_karpathy(data: bytes) -> Callable:
    def run(tmp: Path) -> Any:
        _write(tmp / "dataset_coco.json", data)
        _write(tmp / "annotations" / "instances_val2014.json", INSTANCES)
        return read_coco(tmp, "test", vocabulary=None)

    return run


def coco_captions(edit: Edit) -> Callable:
    """A one-image COCO folder with a COCO captions file (no Karpathy file) with one edit, split val."""

    def run(tmp: Path) -> Any:
        caps = copy.deepcopy(CAPTIONS)
        caps = edit(caps) or caps
        _write(tmp / "annotations" / "captions_val2014.json", caps)
        _write(tmp / "annotations" / "instances_val2014.json", INSTANCES)
        _image(tmp / "val2014" / COCO_NAME, (40, 30))
        return read_coco(tmp, "val", vocabulary=None)

    return run


def put(path: str, value: Any) -> Edit:
    """An edit setting ``data[a][b]...`` (path ``"a.0.b"``) to ``value`` (``DELETE`` removes the key)."""

    def edit(data: dict) -> None:
        *parents, last = path.split(".")
        node: Any = data
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        key: Any = int(last) if last.isdigit() else last
        if value is DELETE:
            del node[key]
        else:
            node[key] = value

    return edit


DELETE = object()

# ----------------------------------------------------------------------------------------- Flickr30k

XML = (
    "<annotation><size><width>{w}</width><height>40</height><depth>3</depth></size>"
    "<object><name>1</name><bndbox><xmin>{x0}</xmin><ymin>1</ymin><xmax>20</xmax><ymax>30</ymax></bndbox>"
    "</object></annotation>"
)
SENTENCES = "[/EN#1/people A man] walks a [/EN#2/animals dog] .\n"
FLICKR_KARPATHY = {
    "images": [{"filename": "1000.jpg", "split": "test", "sentences": [{"raw": "A man walks."}]}]
}


def write_flickr(
    tmp: Path, *, xml: str | None = None, sentences: str | bytes = SENTENCES, karpathy: Edit | None = None
) -> None:
    k = copy.deepcopy(FLICKR_KARPATHY)
    k = karpathy(k) or k if karpathy else k
    _write(tmp / "dataset_flickr30k.json", k)
    _image(tmp / "flickr30k-images" / "1000.jpg", (50, 40))
    _write(tmp / "Annotations" / "1000.xml", xml if xml is not None else XML.format(w=50, x0=1))
    _write(tmp / "Sentences" / "1000.txt", sentences.encode() if isinstance(sentences, str) else sentences)


def flickr(**edits: Any) -> Callable:
    """A run function: a one-image Flickr30k Entities folder with the ``write_flickr`` edits, split test."""

    def run(tmp: Path) -> Any:
        write_flickr(tmp, **edits)
        return read_flickr30k(tmp, "test")

    return run


# ------------------------------------------------------------------------------------------ Waterbirds

HEADER = b"img_id,img_filename,y,split,place\n"
ROW = b"1,001.Black/a.jpg,1,2,0\n"


def waterbirds(text: bytes, *, image: bool = True) -> Callable:
    def run(tmp: Path) -> Any:
        if image:
            _image(tmp / "001.Black" / "a.jpg", (8, 8))
        _write(tmp / "metadata.csv", text)
        return read_waterbirds(tmp)

    return run


def tokens_joined(records: list) -> None:
    assert [r.captions for r in records] == [("a dog with a frisbee",)]


def waterbirds_ok(records: list) -> None:
    assert [(r.image_id, r.label, r.attribute, r.split) for r in records] == [("1", 1, 0, "test")]


def flickr_ok(records: list) -> None:
    assert records[0].captions == ("A man walks a dog .",)


KAR, INST = "dataset_coco.json", "instances_val2014.json"

CASES = [
    # --- Karpathy split file (COCO)
    Case(
        "karpathy entry is a string",
        coco(put("images.0", "COCO_val2014_42.jpg")),
        raises=RecordError,
        says=(KAR, "images[0]", "object", "got 'COCO_val2014_42.jpg'"),
    ),
    Case(
        "karpathy images not a list",
        coco(put("images", {"a": 1})),
        raises=RecordError,
        says=(KAR, "Karpathy split file", "'images'"),
    ),
    Case(
        "karpathy unknown split",
        coco(put("images.0.split", "testing")),
        raises=RecordError,
        says=(KAR, "images[0]", "'testing'", "train/restval/val/test"),
    ),
    Case(
        "karpathy split null",
        coco(put("images.0.split", None)),
        raises=RecordError,
        says=(KAR, "images[0]", "None", "'split'"),
    ),
    Case(
        "karpathy raw null without tokens",
        coco(put("images.0.sentences.0", {"raw": None})),
        raises=RecordError,
        says=(KAR, "images[0]: sentences[0]", "'raw'"),
    ),
    Case(
        "karpathy raw null with tokens",
        coco(put("images.0.sentences.0.raw", None)),
        raises=None,
        expect=tokens_joined,
    ),
    Case(
        "karpathy raw is a number",
        coco(put("images.0.sentences.0.raw", 5)),
        raises=RecordError,
        says=(KAR, "sentences[0]", "'raw'", "a string", "got 5"),
    ),
    Case(
        "karpathy sentences is a string",
        coco(put("images.0.sentences", "A dog.")),
        raises=RecordError,
        says=(KAR, "images[0]", "'sentences'", "a list"),
    ),
    Case(
        "karpathy sentence is a string",
        coco(put("images.0.sentences.0", "A dog.")),
        raises=RecordError,
        says=(KAR, "sentences[0]", "object"),
    ),
    Case(
        "karpathy tokens hold numbers",
        coco(put("images.0.sentences.0", {"tokens": ["a", 3]})),
        raises=RecordError,
        says=(KAR, "sentences[0]", "'tokens'", "list of strings"),
    ),
    Case(
        "karpathy cocoid abc",
        coco(put("images.0.cocoid", "abc")),
        raises=RecordError,
        says=(KAR, "images[0]", "'cocoid'", "an integer", "'abc'"),
    ),
    Case(
        "karpathy cocoid is a float",
        coco(put("images.0.cocoid", 4.5)),
        raises=RecordError,
        says=(KAR, "images[0]", "'cocoid'", "an integer"),
    ),
    Case(
        "karpathy no cocoid no imgid",
        coco(lambda d: [d["images"][0].pop(k) for k in ("cocoid", "imgid")] and None),
        raises=RecordError,
        says=(KAR, "images[0]", "'cocoid'"),
    ),
    Case(
        "karpathy filename a number",
        coco(put("images.0.filename", 42)),
        raises=RecordError,
        says=(KAR, "images[0]", "'filename'", "a string"),
    ),
    Case(
        "karpathy filename absolute",
        coco(put("images.0.filename", "/etc/passwd")),
        raises=RecordError,
        says=(KAR, "'/etc/passwd'", "absolute", "relative"),
    ),
    Case(
        "karpathy filepath traversal",
        coco(put("images.0.filepath", "../../secret")),
        raises=RecordError,
        says=(KAR, "'..'", "inside the dataset"),
    ),
    Case(
        "karpathy truncated json",
        coco_raw_karpathy(json.dumps(KARPATHY).encode()[:60]),
        raises=RecordError,
        says=(KAR, "not valid JSON", "download it again"),
    ),
    Case(
        "karpathy non-utf8 json",
        coco_raw_karpathy(json.dumps(KARPATHY).replace("dog", "d\u00e9g").encode("latin-1")),
        raises=RecordError,
        says=(KAR, "not valid JSON"),
    ),
    Case(
        "karpathy empty caption",
        coco(put("images.0.sentences.0.raw", "  ")),
        raises=RecordError,
        says=(KAR, "image 42", "caption 0 is empty", "remove it"),
    ),
    Case(
        "karpathy file is a list",
        coco_raw_karpathy(json.dumps(KARPATHY["images"]).encode()),
        raises=RecordError,
        says=(KAR, "not a Karpathy split file"),
    ),
    Case(
        "karpathy filename empty",
        coco(put("images.0.filename", "")),
        raises=RecordError,
        says=(KAR, "empty or non-string file name", "relative path"),
    ),
    # --- COCO instances file
    Case(
        "category without id",
        coco(instances=put("categories.0.id", DELETE)),
        raises=RecordError,
        says=(INST, "categories[0]", "'id'", "missing"),
    ),
    Case(
        "category name null",
        coco(instances=put("categories.0.name", None)),
        raises=RecordError,
        says=(INST, "categories[0]", "'name'", "null"),
    ),
    Case(
        "category id not a number",
        coco(instances=put("categories.0.id", "dog")),
        raises=RecordError,
        says=(INST, "categories[0]", "'id'", "an integer"),
    ),
    Case(
        "categories not a list",
        coco(instances=put("categories", {"18": "dog"})),
        raises=RecordError,
        says=(INST, "'categories'", "a list"),
    ),
    Case(
        "bbox null",
        coco(instances=put("annotations.0.bbox", None)),
        raises=RecordError,
        says=(INST, "annotation 1 of image 42", "'bbox'", "null"),
    ),
    Case(
        "bbox three numbers",
        coco(instances=put("annotations.0.bbox", [2, 3, 10])),
        raises=RecordError,
        says=(INST, "annotation 1", "4 numbers [x, y, w, h]"),
    ),
    Case(
        "bbox holds text",
        coco(instances=put("annotations.0.bbox", [2, "abc", 10, 8])),
        raises=RecordError,
        says=(INST, "annotation 1", "'abc'", "not a number"),
    ),
    Case(
        "bbox outside the image",
        coco(instances=put("annotations.0.bbox", [100, 100, 5, 5])),
        raises=RecordError,
        says=(INST, "annotation 1", "outside the 40x30 image", "fix or drop"),
    ),
    Case(
        "bbox NaN",
        coco(instances=put("annotations.0.bbox", [2, float("nan"), 10, 8])),
        raises=RecordError,
        says=(INST, "annotation 1", "non-finite"),
    ),
    Case(
        "bbox negative size",
        coco(instances=put("annotations.0.bbox", [2, 3, -10, 8])),
        raises=RecordError,
        says=(INST, "annotation 1", "negative size"),
    ),
    Case(
        "annotation unknown category",
        coco(instances=put("annotations.0.category_id", 99)),
        raises=RecordError,
        says=(INST, "annotation 1", "unknown category id 99"),
    ),
    Case(
        "annotation image_id text",
        coco(instances=put("annotations.0.image_id", "x42")),
        raises=RecordError,
        says=(INST, "annotations[0]", "'image_id'", "an integer"),
    ),
    Case(
        "annotation is a list",
        coco(instances=put("annotations.0", [42, 18])),
        raises=RecordError,
        says=(INST, "annotations[0]", "object"),
    ),
    Case(
        "segmentation polygon holds text",
        coco(instances=put("annotations.0.segmentation", [[2, "x", 4]])),
        raises=RecordError,
        says=(INST, "annotation 1", "segmentation[0]", "a number"),
    ),
    Case(
        "instances file is a list",
        coco(instances=lambda d: [d]),
        raises=RecordError,
        says=(INST, "not a COCO instances file"),
    ),
    Case(
        "instances image width text",
        coco(instances=put("images.0.width", "wide")),
        raises=RecordError,
        says=(INST, "images[0]", "'width'", "an integer"),
    ),
    Case(
        "image file missing",
        coco(image=False),
        raises=MissingFileError,
        says=(KAR, "image 42", COCO_NAME, "not found"),
    ),
    Case(
        "image file corrupt, size needed",
        coco(instances=put("images", []), image=b"\x89PNG broken"),
        raises=RecordError,
        says=(KAR, "image 42", COCO_NAME, "cannot decode", "replace or remove"),
    ),
    Case(
        "no captions source",
        lambda tmp: read_coco(tmp, "test", vocabulary=None),
        raises=MissingFileError,
        says=("dataset_coco.json", "captions_test", "put the Karpathy"),
    ),
    # --- COCO captions file
    Case(
        "captions annotation without caption",
        coco_captions(put("annotations.0.caption", DELETE)),
        raises=RecordError,
        says=("captions_val2014.json", "annotations[0]", "'caption'", "missing"),
    ),
    Case(
        "captions image id null",
        coco_captions(put("images.0.id", None)),
        raises=RecordError,
        says=("captions_val2014.json", "images[0]", "'id'", "null"),
    ),
    Case(
        "captions caption is a number",
        coco_captions(put("annotations.0.caption", 7)),
        raises=RecordError,
        says=("captions_val2014.json", "annotations[0]", "'caption'", "a string"),
    ),
    # --- Flickr30k Entities
    Case(
        "flickr sentences non-utf8",
        flickr(sentences=SENTENCES.replace("man", "m\u00e4n").encode("latin-1")),
        raises=RecordError,
        says=("1000.txt", "line 1", "not UTF-8", "re-save"),
    ),
    Case(
        "flickr sentences with BOM",
        flickr(sentences=b"\xef\xbb\xbf" + SENTENCES.encode()),
        raises=None,
        expect=flickr_ok,
    ),
    Case(
        "flickr xml coordinate text",
        flickr(xml=XML.format(w=50, x0="abc")),
        raises=RecordError,
        says=("1000.xml", "<xmin>", "a number", "'abc'"),
    ),
    Case(
        "flickr xml width text",
        flickr(xml=XML.format(w="fifty", x0=1)),
        raises=RecordError,
        says=("1000.xml", "<width>", "'fifty'"),
    ),
    Case(
        "flickr xml truncated",
        flickr(xml=XML.format(w=50, x0=1)[:70]),
        raises=RecordError,
        says=("1000.xml", "not valid XML", "truncated"),
    ),
    Case(
        "flickr bndbox without ymax",
        flickr(xml=XML.format(w=50, x0=1).replace("<ymax>30</ymax>", "")),
        raises=RecordError,
        says=("1000.xml", "<bndbox> without"),
    ),
    Case(
        "flickr unbalanced entity",
        flickr(sentences="[/EN#1/people A man walks .\n"),
        raises=RecordError,
        says=("1000.txt", "line 1", "unbalanced"),
    ),
    Case(
        "flickr karpathy filename missing",
        flickr(karpathy=put("images.0.filename", DELETE)),
        raises=RecordError,
        says=("dataset_flickr30k.json", "images[0]", "'filename'", "missing"),
    ),
    Case(
        "flickr karpathy entry is a number",
        flickr(karpathy=put("images.0", 1000)),
        raises=RecordError,
        says=("dataset_flickr30k.json", "images[0]", "object"),
    ),
    Case(
        "flickr karpathy file missing",
        lambda tmp: read_flickr30k(tmp, "test"),
        raises=MissingFileError,
        says=("dataset_flickr30k.json", "file not found", "check the dataset folder"),
    ),
    # --- Waterbirds (WILDS metadata.csv)
    Case("metadata with BOM", waterbirds(b"\xef\xbb\xbf" + HEADER + ROW), raises=None, expect=waterbirds_ok),
    Case(
        "metadata with CRLF",
        waterbirds((HEADER + ROW).replace(b"\n", b"\r\n")),
        raises=None,
        expect=waterbirds_ok,
    ),
    Case(
        "metadata non-utf8",
        waterbirds(HEADER + b"1,001.Black/\xe9.jpg,1,2,0\n"),
        raises=RecordError,
        says=("metadata.csv", "line 2", "not UTF-8", "re-save"),
    ),
    Case(
        "metadata missing column",
        waterbirds(b"img_id,img_filename,y,split\n1,001.Black/a.jpg,1,2\n"),
        raises=RecordError,
        says=("metadata.csv", "missing columns ['place']"),
    ),
    Case(
        "metadata y not an integer",
        waterbirds(HEADER + b"1,001.Black/a.jpg,bird,2,0\n"),
        raises=RecordError,
        says=("metadata.csv", "line 2", "img_id '1'", "must be integers", "'bird'"),
    ),
    Case(
        "metadata split 5",
        waterbirds(HEADER + b"1,001.Black/a.jpg,1,5,0\n"),
        raises=RecordError,
        says=("metadata.csv", "line 2", "0/1/2"),
    ),
    Case(
        "metadata short row",
        waterbirds(HEADER + b"1,001.Black/a.jpg,1\n"),
        raises=RecordError,
        says=("metadata.csv", "line 2", "columns", "fix the row"),
    ),
    Case(
        "metadata place 3",
        waterbirds(HEADER + b"1,001.Black/a.jpg,1,2,3\n"),
        raises=RecordError,
        says=("metadata.csv", "line 2", "attribute 3", "check the metadata"),
    ),
    Case(
        "metadata absolute filename",
        waterbirds(HEADER + b"1,/etc/passwd,1,2,0\n"),
        raises=RecordError,
        says=("metadata.csv", "line 2", "absolute"),
    ),
    Case(
        "metadata empty file",
        waterbirds(b""),
        raises=RecordError,
        says=("metadata.csv", "missing columns", "img_id"),
    ),
    Case(
        "metadata missing",
        lambda tmp: read_waterbirds(tmp),
        raises=MissingFileError,
        says=("metadata.csv", "file not found", "WILDS"),
    ),
    Case(
        "metadata image missing",
        waterbirds(HEADER + ROW, image=False),
        raises=MissingFileError,
        says=("metadata.csv", "line 2", "a.jpg", "not found"),
    ),
]


@cases(CASES)
def test_reader_bad_input(case, tmp_path):
    check(case, tmp_path)


def _cli_coco(tmp: Path) -> None:
    k = copy.deepcopy(KARPATHY)
    k["images"][0]["sentences"][0] = {"raw": None}
    _write(tmp / "dataset_coco.json", k)
    _write(tmp / "annotations" / "instances_val2014.json", INSTANCES)
    _image(tmp / "val2014" / COCO_NAME, (40, 30))


def _cli_flickr(tmp: Path) -> None:
    write_flickr(tmp, xml=XML.format(w=50, x0="1O"))  # a letter O typed for a zero


def test_cli_reader_errors_are_two_lines(tmp_path, capsys):
    """The CLI reports a reader error as the message (file, item, fix) with exit code 2, no traceback."""
    from ._cases import expect_cli_error

    for source, make, says in (
        ("coco", _cli_coco, ("dataset_coco.json", "images[0]: sentences[0]", "'raw'")),
        ("flickr30k", _cli_flickr, ("1000.xml", "<xmin>", "'1O'")),
    ):
        data = tmp_path / source
        make(data)
        argv = [
            "counterfactuals",
            "--source",
            source,
            "--data-dir",
            str(data),
            "--out",
            str(tmp_path / "out"),
        ]
        err = expect_cli_error(argv, capsys, code=2, says=says)
        assert len(err.strip().splitlines()) == 2, err
