"""Runners end to end on tiny models and tiny worlds in the real formats, against naive references."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hf_spurious.cli import main
from hf_spurious.evaluation.classification import evaluate_classification
from hf_spurious.evaluation.discovery import (
    attribute_column_detections,
    detect_attributes,
    discover_spurious_attributes,
)
from hf_spurious.evaluation.retrieval import Gallery, RecallSet, RetrievalQueries, evaluate_retrieval

torch.set_num_threads(1)
SIMPLE = ("a photo of a {}.",)


# ----------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def clip_dir(tiny_model_dir):
    return tiny_model_dir("clip")


@pytest.fixture(scope="module")
def clip(clip_dir):
    from hf_spurious.models import load_adapter

    return load_adapter(str(clip_dir))


@pytest.fixture(scope="module")
def counterfactual_dir(shapes_world, tmp_path_factory):
    """Oracle counterfactuals of the world's test split, saved with ``save_to_disk`` in the builder's columns."""
    import datasets

    from hf_spurious.sources import read_coco
    from hf_spurious.world import load_world

    world = load_world(shapes_world)
    rows = {"image": [], "source_image_id": [], "caption": [], "removed_classes": [], "present_classes": []}
    for rec in read_coco(shapes_world, "test", vocabulary="shapes"):
        classes = sorted(rec.classes)
        if len(classes) < 2:
            continue
        removed = classes[:1]
        rows["image"].append(world.render_without("test", rec.image_id, removed))
        rows["source_image_id"].append(rec.image_id)
        rows["caption"].append(rec.captions[0])
        rows["removed_classes"].append(removed)
        rows["present_classes"].append(classes[1:])
    feats = datasets.Features(
        {
            "image": datasets.Image(),
            "source_image_id": datasets.Value("string"),
            "caption": datasets.Value("string"),
            "removed_classes": datasets.List(datasets.Value("string")),
            "present_classes": datasets.List(datasets.Value("string")),
        }
    )
    ds = datasets.Dataset.from_dict(rows, features=feats)
    out = tmp_path_factory.mktemp("cf") / "test_split"
    datasets.DatasetDict({"test": ds}).save_to_disk(str(out))
    return out


@pytest.fixture(scope="module")
def exported_dir(counterfactual_dir, tmp_path_factory):
    """The same split exported like ``hf-spurious counterfactuals`` does (parquet + dataset card)."""
    import datasets

    from hf_spurious.data.export import export_parquet

    ds = datasets.load_from_disk(str(counterfactual_dir))["test"]
    out = tmp_path_factory.mktemp("export") / "shapes_decorrelated"
    export_parquet(ds, out, config_name="test", split="test", settings={"source": "shapes"}, stats={})
    return out


# ----------------------------------------------------------------------------------------- naive references


def naive_rank(q: np.ndarray, g: np.ndarray, k: int) -> list[list[int]]:
    sims = q.astype(np.float64) @ g.astype(np.float64).T
    return [sorted(range(len(g)), key=lambda j: (-sims[r, j], j))[:k] for r in range(len(q))]


def naive_odmap(ranked, gallery_sets, removed, present, k):
    total = 0.0
    for r, rem, pre in zip(ranked, removed, present):
        hits, ap = 0, 0.0
        for i, j in enumerate(r[:k], start=1):
            rel = not (gallery_sets[j] & rem) and bool(gallery_sets[j] & pre)
            hits += rel
            ap += rel * hits / i
        total += ap / k
    return 100 * total / len(ranked)


# ----------------------------------------------------------------------------------------- retrieval


def test_evaluate_retrieval_matches_naive(clip, shapes_world, counterfactual_dir) -> None:
    import datasets

    from hf_spurious.cli.evaluate import load_recall_set
    from hf_spurious.data import build_gallery

    ds = datasets.load_from_disk(str(counterfactual_dir))["test"]
    images = [np.asarray(im) for im in ds["image"]]
    queries = RetrievalQueries(
        images, ds["removed_classes"], ds["present_classes"], source_image_ids=ds["source_image_id"]
    )
    captions, _, matrix, names = build_gallery(shapes_world, source="shapes")
    gallery = Gallery(captions, matrix, names)
    recall_set = load_recall_set(shapes_world, "shapes", "test")
    res = evaluate_retrieval(clip, queries, gallery, k=(1, 5, 10), recall_pairs=recall_set, chunk_size=37)

    q = clip.embed_images(images)
    g = clip.embed_texts(captions)
    ranked = naive_rank(q, g, 10)
    sets = [frozenset(n for n, on in zip(names, row) if on) for row in matrix]
    removed = [frozenset(x) for x in ds["removed_classes"]]
    present = [frozenset(x) for x in ds["present_classes"]]
    for k in (1, 5, 10):
        assert res["odmap"][f"odmap@{k}"] == pytest.approx(
            naive_odmap(ranked, sets, removed, present, k), abs=1e-9
        )
        rate = 100 * np.mean([any(sets[j] & rem for j in r[:k]) for r, rem in zip(ranked, removed)])
        assert res["removed_mention_rate"][f"removed_mention_rate@{k}"] == pytest.approx(rate)
    # Recall@K, both directions, naive
    img_e = clip.embed_images(
        [np.asarray(__import__("PIL.Image").Image.open(p).convert("RGB")) for p in recall_set.images]
    )
    cap_e = clip.embed_texts(recall_set.captions)
    owner = np.asarray(recall_set.caption_to_image)
    i2t = naive_rank(img_e, cap_e, 10)
    t2i = naive_rank(cap_e, img_e, 10)
    for k in (1, 5, 10):
        want_i2t = 100 * np.mean([any(owner[j] == i for j in r[:k]) for i, r in enumerate(i2t)])
        want_t2i = 100 * np.mean([owner[c] in r[:k] for c, r in enumerate(t2i)])
        assert res["recall"][f"i2t_r@{k}"] == pytest.approx(want_i2t)
        assert res["recall"][f"t2i_r@{k}"] == pytest.approx(want_t2i)
    # per-query report rows
    row = res["per_query"][0]
    assert [t["gallery_index"] for t in row["top"]] == ranked[0][:5]
    assert row["top"][0]["caption"] == captions[ranked[0][0]]
    assert res["num_queries"] == len(images) and res["gallery_size"] == len(captions)


def test_recall_set_and_original_queries_from_records(shapes_world) -> None:
    from hf_spurious.sources import read_coco

    records = read_coco(shapes_world, "test", vocabulary="shapes")
    rs = RecallSet.from_records(records)
    captions, owner = [], []
    for i, r in enumerate(records):  # the conversion the CLI and the demo each wrote by hand
        captions += list(r.captions)
        owner += [i] * len(r.captions)
    assert rs.captions == captions and rs.caption_to_image == owner
    assert rs.images == [str(r.image_path) for r in records]
    assert rs.image_ids == [str(r.image_id) for r in records]
    q = RetrievalQueries.from_records(records, name="original")
    assert q.images == rs.images
    assert q.removed_classes == [frozenset()] * len(records)
    assert q.present_classes == [frozenset(r.classes) for r in records]
    assert q.ids == [f"original/{r.image_id}" for r in records]
    assert q.source_image_ids == [str(r.image_id) for r in records]
    assert RetrievalQueries.from_records(records).ids == [str(r.image_id) for r in records]


def test_queries_from_dataset_cli_and_demo_forms(counterfactual_dir) -> None:
    import datasets

    from hf_spurious.evaluation.retrieval import LazyImages

    decoded = datasets.load_from_disk(str(counterfactual_dir))["test"]
    encoded = decoded.cast_column("image", datasets.Image(decode=False))
    n = len(decoded)
    removed = [frozenset(x) for x in decoded["removed_classes"]]
    present = [frozenset(x) for x in decoded["present_classes"]]
    src = [str(x) for x in decoded["source_image_id"]]
    # the CLI's form: row-number ids, images read lazily as {"bytes", "path"} cells
    cli = RetrievalQueries.from_dataset(encoded)
    assert isinstance(cli.images, LazyImages) and len(cli.images) == n
    assert cli.images[0] == encoded[0]["image"] and cli.images[0:2] == [
        encoded[0]["image"],
        encoded[1]["image"],
    ]
    assert cli.ids == [str(i) for i in range(n)] and cli.source_image_ids == src
    assert cli.removed_classes == removed and cli.present_classes == present
    head = RetrievalQueries.from_dataset(encoded, max_queries=2)
    assert head.ids == ["0", "1"] and head.removed_classes == removed[:2] and len(head.images) == 2
    # the demo's form: named ids, decoded images held in memory
    demo = RetrievalQueries.from_dataset(decoded, name="partner/oracle", materialize=True)
    assert isinstance(demo.images, list) and len(demo.images) == n
    np.testing.assert_array_equal(np.asarray(demo.images[0]), np.asarray(decoded[0]["image"]))
    assert demo.ids == [f"partner/oracle/{s}" for s in src] and demo.source_image_ids == src
    assert demo.removed_classes == removed and demo.present_classes == present
    # plain row dicts convert the same way
    rows = RetrievalQueries.from_dataset([encoded[i] for i in range(n)], name="x", max_queries=3)
    assert rows.ids == [f"x/{s}" for s in src[:3]] and rows.images == [encoded[i]["image"] for i in range(3)]
    with pytest.raises(ValueError, match="lack the columns"):
        RetrievalQueries.from_dataset(encoded.remove_columns("present_classes"))
    with pytest.raises(ValueError, match="source_image_id"):
        RetrievalQueries.from_dataset(encoded.remove_columns("source_image_id"), name="x")
    assert RetrievalQueries.from_dataset(encoded.remove_columns("source_image_id")).source_image_ids is None


def test_retrieval_bad_inputs(clip) -> None:
    with pytest.raises(ValueError, match="2 removed_classes for 1 query images"):
        RetrievalQueries([np.zeros((4, 4, 3), np.uint8)], [{"a"}, {"b"}], [{"c"}])
    with pytest.raises(ValueError, match="class matrix has shape"):
        Gallery(["a cat", "a dog"], np.zeros((3, 2), bool), ["cat", "dog"])
    with pytest.raises(ValueError, match="boolean"):
        Gallery(["a cat"], np.zeros((1, 2)), ["cat", "dog"])
    with pytest.raises(ValueError, match="caption_to_image"):
        RecallSet(images=[1], captions=["a", "b"], caption_to_image=[0])
    q = RetrievalQueries([np.zeros((32, 32, 3), np.uint8)], [{"dog"}], [{"cat"}])
    g = Gallery(["a cat", "a dog"], np.array([[True, False], [False, True]]), ["cat", "dog"])
    with pytest.raises(ValueError, match="positive"):
        evaluate_retrieval(clip, q, g, k=(0, 1))
    with pytest.raises(ValueError, match="exceeds the gallery"):
        evaluate_retrieval(clip, q, g, k=(5,))
    bad = RetrievalQueries([np.zeros((32, 32, 3), np.uint8)], [{"unicorn"}], [{"cat"}])
    with pytest.raises(ValueError, match="unicorn"):
        evaluate_retrieval(clip, bad, g, k=(1,))


def test_evaluate_cli_retrieval_writes_outputs(
    clip_dir, shapes_world, exported_dir, tmp_path, capsys
) -> None:
    out = tmp_path / "run"
    argv = ["evaluate", "--model", str(clip_dir), "--dataset", str(exported_dir), "--gallery", str(shapes_world),
            "--source", "shapes", "--metrics", "odmap,recall", "--k", "1,5", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    res = json.loads((out / "results.json").read_text())
    table = capsys.readouterr().out.splitlines()  # the headline table, printed in the terminal
    head = next(i for i, line in enumerate(table) if line.startswith("metric"))
    assert table[head].split() == ["metric", "@1", "@5"] and set(table[head + 1]) == {"-", " "}
    odmap_row = next(line for line in table if line.startswith("ODmAP (%)"))
    assert odmap_row.split()[-2:] == [f"{res['odmap']['odmap@1']:.2f}", f"{res['odmap']['odmap@5']:.2f}"]
    assert any(line.startswith("Recall image->text (%)") for line in table)
    assert res["settings"]["matcher"] == "lexical"
    assert set(res["odmap"]) == {"odmap@1", "odmap@5"}
    assert set(res["recall"]) >= {"i2t_r@1", "t2i_r@5", "rsum"}
    assert all(0 <= v <= 100 for v in res["odmap"].values())
    md = (out / "results.md").read_text()
    assert "odmap@1" in md and "i2t_r@5" in md
    for png in ("odmap.png", "removed_mention_rate.png", "recall.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    lines = (out / "per_query.jsonl").read_text().splitlines()
    assert len(lines) == res["num_queries"]
    cached = sorted(p.name for p in (out / "cache").glob("*.npy"))
    assert len(cached) >= 3  # queries, gallery, recall images (+ recall captions)
    mtimes = {p: p.stat().st_mtime_ns for p in (out / "cache").glob("*.npy")}
    assert main(argv) == 0  # second run: cache hits, same numbers, nothing rewritten
    assert json.loads((out / "results.json").read_text())["odmap"] == res["odmap"]
    assert {p: p.stat().st_mtime_ns for p in (out / "cache").glob("*.npy")} == mtimes


def _cli_error(argv: list[str], capsys, says: str) -> None:
    """A user error: exit code 2 (returned or raised by argparse) and a message naming the problem."""
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    assert code == 2
    assert says in capsys.readouterr().err


def test_evaluate_cli_errors(clip_dir, tmp_path, capsys) -> None:
    model = ["evaluate", "--model", str(clip_dir), "--out", str(tmp_path)]
    _cli_error([*model, "--metrics", "odmap,group"], capsys, "not available")
    _cli_error([*model, "--metrics", "odmap", "--gallery", str(tmp_path)], capsys, "--dataset")
    _cli_error([*model, "--k", "0,5"], capsys, "--k")
    _cli_error([*model, "--rerank-top-n", "-3"], capsys, "--rerank-top-n")
    _cli_error([*model, "--rerank-score", "itc"], capsys, "--rerank-score")


def test_help_works(capsys) -> None:
    for cmd in ("evaluate", "discover"):
        with pytest.raises(SystemExit) as exc:
            main([cmd, "--help"])
        assert exc.value.code == 0
        assert "--model" in capsys.readouterr().out


# ----------------------------------------------------------------------------------------- classification


def test_evaluate_classification_matches_naive(clip, waterbirds_world, tmp_path) -> None:
    from hf_spurious.sources import read_waterbirds

    recs = read_waterbirds(waterbirds_world, "test")
    names = ["landbird", "waterbird"]
    res = evaluate_classification(
        clip, recs, names, SIMPLE, train_counts=[30, 10, 10, 30], overlay_dir=str(tmp_path), max_overlays=2
    )
    # naive: prototypes and argmax by hand
    from PIL import Image

    text = clip.embed_texts([SIMPLE[0].format(n) for n in names])
    img = clip.embed_images([Image.open(r.image_path).convert("RGB") for r in recs])
    preds = (img @ text.T).argmax(axis=1)
    assert res["predictions"] == preds.tolist()
    labels = np.array([r.label for r in recs])
    groups = np.array([r.group for r in recs])
    accs = {g: 100 * np.mean(preds[groups == g] == labels[groups == g]) for g in range(4)}
    got = list(res["group"]["group_accuracy"].values())
    assert got == pytest.approx([accs[g] for g in range(4)])
    assert res["group"]["worst_group_accuracy"] == pytest.approx(min(accs.values()))
    adj = sum(accs[g] * w for g, w in enumerate([30, 10, 10, 30])) / 80
    assert res["group"]["adjusted_average_accuracy"] == pytest.approx(adj)
    a = res["aiou"]
    assert len(a["per_image_aiou"]) == len(recs) and all(0 <= v <= 1 for v in a["per_image_aiou"])
    assert len(list(tmp_path.glob("*.png"))) == 2
    with pytest.raises(ValueError, match="unknown classification metrics"):
        evaluate_classification(clip, recs, names, SIMPLE, metrics=("accuracy",))
    with pytest.raises(ValueError, match="no class name"):
        evaluate_classification(clip, recs, ["only"], SIMPLE)


def test_evaluate_cli_classification(clip_dir, waterbirds_world, tmp_path, capsys) -> None:
    out = tmp_path / "cls"
    argv = ["evaluate", "--task", "classification", "--model", str(clip_dir), "--data-dir", str(waterbirds_world),
            "--templates", "simple", "--max-overlays", "3", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    res = json.loads((out / "results.json").read_text())
    # both GradCAM layers reported; the main one (block_input, the default) is the headline AIoU
    assert res["aiou"]["layer"] == "block_input" == res["settings"]["gradcam_layer"]
    assert set(res["aiou"]["by_layer"]) == {"block_input", "ln_output"}
    assert res["aiou"]["by_layer"]["block_input"]["aiou"] == res["aiou"]["aiou"]
    assert 0 <= res["aiou"]["by_layer"]["ln_output"]["aiou"] <= 1
    printed = capsys.readouterr().out
    rows = {
        line.rsplit(None, 1)[0]: line.split()[-1]
        for line in printed.splitlines()
        if line.startswith("AIoU (")
    }
    assert rows == {
        "AIoU (block_input)": f"{res['aiou']['aiou']:.4f}",
        "AIoU (ln_output)": f"{res['aiou']['by_layer']['ln_output']['aiou']:.4f}",
    }
    assert "worst-group accuracy (%)" in printed
    from hf_spurious.metrics import WATERBIRDS_GROUP_NAMES

    assert set(res["group"]["group_accuracy"]) == set(WATERBIRDS_GROUP_NAMES)
    assert 0 <= res["aiou"]["aiou"] <= 1
    assert (out / "group_accuracy.png").exists() and (out / "group_aiou.png").exists()
    assert len(list((out / "gradcam").glob("*.png"))) == 3
    assert "worst-group AIoU" in (out / "results.md").read_text()


# ----------------------------------------------------------------------------------------- discovery


def test_attribute_column_detections_and_ranking() -> None:
    det, names = attribute_column_detections([0, 1, 1, 0, 1], "place", {0: "land", 1: "water"})
    assert names == ["place=land", "place=water"]
    np.testing.assert_array_equal(det, [[1, 0], [0, 1], [0, 1], [1, 0], [0, 1]])
    # hand-worked: class 0, 12 images; water in 6 of them with 1 correct, land 6 with 6 correct
    labels = np.zeros(12, int)
    water = np.array([1] * 6 + [0] * 6)
    preds = np.where(water == 1, 1, 0)
    preds[0] = 0  # one water image right
    det, names = attribute_column_detections(water.tolist(), "place", {0: "land", 1: "water"})
    rows = discover_spurious_attributes(
        labels, preds, det, names, ["landbird", "waterbird"], min_detections=5
    )
    by_attr = {r["attribute"]: r for r in rows}
    assert by_attr["place=land"]["delta"] == pytest.approx(100 - 100 / 6)
    assert by_attr["place=water"]["delta"] == pytest.approx(100 / 6 - 100)
    assert rows[0]["attribute"] == "place=land"


def test_detect_attributes_matches_all_at_once_postprocessing(tiny_model_dir) -> None:
    from hf_spurious.evaluation.discovery import load_detector

    model, processor = load_detector(tiny_model_dir("owlvit"))
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (40, 48, 3), dtype=np.uint8) for _ in range(3)]
    words = ["dog", "water", "tree", "car", "sky"]
    for thr in (0.0, 0.3, 0.5, 0.9):
        got = detect_attributes(
            model, processor, images, words, threshold=thr, batch_size=2, words_per_pass=2
        )
        # reference: one pass with every query, transformers' own post-processing
        inputs = processor(
            text=[[f"a photo of a {w}" for w in words]] * 3, images=images, return_tensors="pt"
        )
        with torch.no_grad():
            outputs = model(**inputs)
        post = processor.image_processor.post_process_object_detection(
            outputs, threshold=thr, target_sizes=[(40, 48)] * 3
        )
        want = np.zeros_like(got)
        for i, p in enumerate(post):
            want[i, p["labels"].unique().numpy()] = True
        np.testing.assert_array_equal(got, want, err_msg=f"threshold {thr}")
    with pytest.raises(ValueError, match="no attribute words"):
        detect_attributes(model, processor, images, [])


def test_discover_cli(clip_dir, tiny_model_dir, waterbirds_world, tmp_path, capsys) -> None:
    out = tmp_path / "disc"
    assert main(["discover", "--model", str(clip_dir), "--data-dir", str(waterbirds_world), "--attribute-column", "place",
                 "--min-detections", "2", "--out", str(out)]) == 0  # fmt: skip
    res = json.loads((out / "discovery.json").read_text())
    assert res["detections_per_attribute"].keys() == {"place=land", "place=water"}
    assert res["ranking"] and all(  # two classes: each is confused with the other
        {r["class"], r["confused_with"]} == {"landbird", "waterbird"} for r in res["ranking"]
    )
    assert "| class | attribute |" in (out / "discovery.md").read_text()
    out2 = tmp_path / "disc2"
    assert main(["discover", "--model", str(clip_dir), "--data-dir", str(waterbirds_world), "--detector", str(tiny_model_dir("owlvit")),
                 "--words", "water,tree,grass", "--min-detections", "1", "--max-images", "12", "--out", str(out2)]) == 0  # fmt: skip
    res2 = json.loads((out2 / "discovery.json").read_text())
    assert set(res2["detections_per_attribute"]) == {"water", "tree", "grass"} and res2["num_images"] == 12
    _cli_error(["discover", "--model", str(clip_dir), "--data-dir", str(waterbirds_world), "--out", str(out)],
               capsys, "--detector")  # fmt: skip


def test_blip_itm_rerank_in_runner(tiny_model_dir) -> None:
    from hf_spurious.models import load_adapter

    blip = load_adapter(str(tiny_model_dir("blip")))
    rng = np.random.default_rng(7)
    images = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(3)]
    captions = [
        f"a {a} {b} near the {c}"
        for a in ("dog", "car")
        for b in ("on grass", "in a street")
        for c in ("tree", "house", "lake")
    ]
    matrix = np.array([[c.split()[1] == "dog", c.split()[1] == "car"] for c in captions])
    gallery = Gallery(captions, matrix, ["dog", "car"])
    queries = RetrievalQueries(images, [{"dog"}] * 3, [{"car"}] * 3)
    res = evaluate_retrieval(blip, queries, gallery, k=(1, 5), rerank_top_n=5, top_captions=5)
    # independent: dual-encoder top-5, then the ITM head's match probability, stable descending
    q, g = blip.embed_images(images), blip.embed_texts(captions)
    changed = 0
    for i, cand in enumerate(naive_rank(q, g, 5)):
        with torch.no_grad():
            enc = blip.tokenize([captions[j] for j in cand])
            pv = blip.preprocess_images([images[i]] * 5)
            itm = blip.itm_scores(pv, enc["input_ids"], enc["attention_mask"]).numpy()
        want = [cand[j] for j in sorted(range(5), key=lambda j: -itm[j])]
        changed += want != cand
        assert [t["gallery_index"] for t in res["per_query"][i]["top"]] == want
        sims = q[i] @ g[want].T
        np.testing.assert_allclose([t["score"] for t in res["per_query"][i]["top"]], sims, rtol=1e-5)
    assert changed > 0, "the ITM head should re-order at least one query here (else the test proves nothing)"
    assert res["settings"]["rerank_top_n"] == 5


# ----------------------------------------------------------------------------- one matching everywhere


@pytest.mark.parametrize("config", ["coco", "flickr30k"])
def test_odmap_module_and_runner_agree(config, monkeypatch, tmp_path) -> None:
    """The same retrievals get the same ODmAP from the evaluate module and from the runner's default
    matching (issue 12 item 4): both match captions lexically with the config's word list."""
    import evaluate

    from hf_spurious.cli.install_metrics import default_source_dir
    from hf_spurious.evaluation.retrieval import _score
    from hf_spurious.text import caption_class_matrix
    from hf_spurious.vocab import load_vocabulary

    monkeypatch.setenv("HF_EVALUATE_OFFLINE", "1")
    vocab = load_vocabulary(config)
    people, animal = ("person", "dog") if config == "coco" else ("people", "animals")
    captions = [
        "A boy trains his dog in the yard.", "A man and his dog on a bench.", "A woman ties her shoe.",
        "Two dogs playing in a park.", "A man sitting on the seat of the toilet.", "A girl with a kite.",
        "A crowd of people at a market.", "An empty street at night.",
    ]  # fmt: skip
    matrix, names = caption_class_matrix(captions, vocab, method="lexical", progress=False)
    gallery = Gallery(captions, matrix, list(names))
    rng = np.random.default_rng(0)
    ranked = np.stack([rng.permutation(len(captions))[:5] for _ in range(6)])
    queries = RetrievalQueries([None] * 6, [{animal}] * 6, [{people}] * 6)
    runner, _ = _score(ranked, queries, gallery, (1, 3, 5), "any", "k")
    module = evaluate.load(str(default_source_dir() / "odmap"), config_name=config)
    got = module.compute(
        predictions=[[captions[j] for j in row] for row in ranked],
        references=[{"removed_classes": [animal], "present_classes": [people]}] * 6,
        k=[1, 3, 5],
    )
    for k in (1, 3, 5):
        assert got[f"odmap@{k}"] == pytest.approx(runner[f"odmap@{k}"])
    assert 0 < got["odmap@5"] < 100  # neither trivial: some captions relevant, some not


def test_discover_uses_the_80_templates_like_evaluation(
    clip_dir, waterbirds_world, tmp_path, monkeypatch
) -> None:
    """Issue 12 item 5: δ must come from the classifier that is evaluated (the 80 templates by default)."""
    import hf_spurious.evaluation.classification as cls
    from hf_spurious.text import TEMPLATES

    seen: list[int] = []
    real = cls.class_text_embeddings

    def spy(adapter, names, templates=None, **kw):
        seen.append(len(TEMPLATES if templates is None else templates))
        return real(adapter, names, templates, **kw)

    monkeypatch.setattr(cls, "class_text_embeddings", spy)
    disc = tmp_path / "disc"
    assert main(["discover", "--model", str(clip_dir), "--data-dir", str(waterbirds_world), "--attribute-column",
                 "place", "--min-detections", "1", "--out", str(disc)]) == 0  # fmt: skip
    ev = tmp_path / "ev"
    assert main(["evaluate", "--task", "classification", "--metrics", "group", "--model", str(clip_dir),
                 "--data-dir", str(waterbirds_world), "--split", "train", "--out", str(ev)]) == 0  # fmt: skip
    assert seen == [80, 80] and len(TEMPLATES) == 80
    got = json.loads((disc / "discovery.json").read_text())["accuracy"]
    assert got == pytest.approx(json.loads((ev / "results.json").read_text())["accuracy"])


def test_terminal_summary_table_hand_case() -> None:
    from hf_spurious.cli.evaluate_report import format_table, summary_rows

    assert format_table(["metric", "@1"], [["ODmAP (%)", "5.00"], ["rsum", "120.50"]]).splitlines() == [
        "metric         @1",
        "---------  ------",
        "ODmAP (%)    5.00",
        "rsum       120.50",
    ]
    res = {"odmap": {"odmap@1": 50.0, "odmap@10": 12.345}, "recall": {"i2t_r@1": 10.0, "rsum": 10.0}}
    header, rows = summary_rows(res, "retrieval")
    assert header == ["metric", "@1", "@10"]
    assert rows == [
        ["ODmAP (%)", "50.00", "12.35"],
        ["Recall image->text (%)", "10.00", ""],
        ["rsum", "10.00", ""],
    ]
    header, rows = summary_rows(
        {"accuracy": 75.0, "aiou": {"aiou": 0.5, "layer": "ln_output"}}, "classification"
    )
    assert rows == [["accuracy (%)", "75.00"], ["AIoU (ln_output)", "0.5000"]]
