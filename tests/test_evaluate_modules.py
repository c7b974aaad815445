"""The evaluate modules shipped in hf_spurious/metrics/evaluate_modules/: offline loading from the clone
and, after `hf-spurious install-metrics`, by bare name (`evaluate.load("odmap")`) and by namespace. evaluate
runs in ONE subprocess (it takes ~5 s to import) with a temporary HF_HOME / HF_MODULES_CACHE; the tests
below check what it reports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml

from hf_spurious.cli import install_metrics as install
from hf_spurious.hub import METRIC_MODULES, METRIC_NAMESPACE
from hf_spurious.metrics import aiou_batch, group_accuracies

REPO = Path(__file__).resolve().parents[1]
MODULES = REPO / "src" / "hf_spurious" / "metrics" / "evaluate_modules"

SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import evaluate

    data = json.load(open(sys.argv[1]))
    out = {}

    class Words:  # a user-supplied vocabulary object
        classes = ("person", "dog")
        def classes_in(self, text):
            t = text.lower()
            return frozenset(c for c, w in (("person", "man"), ("dog", "dog")) if w in t)

    # --- A. from the clone, cwd = repository root
    os.chdir(data["repo"])
    odmap = evaluate.load(data["modules_dir"] + "/odmap", config_name="shapes")
    q = data["odmap"]
    for rule in ("any", "all"):
        out[f"odmap_{rule}"] = odmap.compute(predictions=q["predictions"], references=q["references"],
                                             k=[1, 5, 10], present_rule=rule, return_per_query=True)
    out["odmap_min_k_r"] = odmap.compute(predictions=q["predictions"], references=q["references"], k=[1, 5],
                                         normalizer="min_k_r", gallery=q["gallery"])
    half = len(q["predictions"]) // 2
    odmap.add_batch(predictions=q["predictions"][:half], references=q["references"][:half])
    odmap.add_batch(predictions=q["predictions"][half:], references=q["references"][half:])
    out["odmap_batched"] = odmap.compute(k=[1, 5, 10])
    doc = data["doc_example"]
    out["odmap_coco_file"] = evaluate.load(data["modules_dir"] + "/odmap/odmap.py", config_name="coco").compute(**doc, k=[1, 3])
    out["odmap_object_vocab"] = odmap.compute(**doc, k=[1, 3], vocabulary=Words())
    try:
        odmap.compute(predictions=[["a man"]], references=[{"removed_classes": [], "present_classes": ["person"]}],
                      k=[5])
    except ValueError as err:
        out["odmap_short_error"] = str(err)
    g = data["groups"]
    out["group_accuracy"] = evaluate.load(data["modules_dir"] + "/group_accuracy", config_name="waterbirds").compute(**g)
    a = data["aiou"]
    out["aiou"] = evaluate.load(data["modules_dir"] + "/aiou").compute(**a, return_per_image=True)
    r = data["recall"]
    out["retrieval_recall"] = evaluate.load(data["modules_dir"] + "/retrieval_recall").compute(**r, k=[1, 2])
    out["bad_inputs"] = {}
    for name, module, config, kwargs in data["bad_inputs"]:
        metric = evaluate.load(data["modules_dir"] + "/" + module, config_name=config)
        try:
            metric.compute(**kwargs)
            out["bad_inputs"][name] = "no error"
        except Exception as err:
            out["bad_inputs"][name] = f"{type(err).__name__}: {err}"

    # --- B. by bare name and namespace, from an unrelated directory
    os.chdir(data["elsewhere"])
    try:
        evaluate.load("odmap")
        out["bare_before_install"] = "loaded"
    except FileNotFoundError:
        out["bare_before_install"] = "FileNotFoundError"
    from hf_spurious.cli import main
    out["install_rc"] = [main(["install-metrics"]),
                         main(["install-metrics", "--namespace", "myorg", "--metrics", "odmap"])]
    out["bare"] = evaluate.load("odmap", config_name="coco").compute(**doc, k=[1, 3])
    out["namespaced"] = evaluate.load(data["namespace"] + "/odmap", config_name="coco").compute(**doc, k=[1, 3])
    out["myorg"] = evaluate.load("myorg/odmap", config_name="coco").compute(**doc, k=[1, 3])
    out["bare_group_accuracy"] = evaluate.load("group_accuracy", config_name="waterbirds").compute(**g)
    out["bare_names"] = [evaluate.load(n).name for n in data["modules"]]
    json.dump(out, open(sys.argv[2], "w"))
    """
)

DOC_EXAMPLE = {
    "predictions": [["A man walking on the beach.", "A dog on a beach.", "A man and his dog."]],
    "references": [{"removed_classes": ["dog"], "present_classes": ["person"]}],
}


_MAP = [[[[1.0, 0.0]], [[0.0, 1.0]]]]  # one image, two classes, 1 x 2 maps
_REGION = [[[1.0, 0.0]]]
#: Bad inputs of the modules (issue 13 rule 7): name -> (module, config, compute kwargs, expected message
#: substrings). evaluate would cast them (0.9 -> class 0) or fail with a bare error without the checks.
BAD = {
    "group_accuracy float predictions": (
        "group_accuracy",
        "waterbirds",
        {"predictions": [0.9, 0.2], "references": [0, 1], "groups": [0, 3]},
        ("`predictions[0]`", "0.9", "whole-number"),
    ),
    "group_accuracy float groups": (
        "group_accuracy",
        None,
        {"predictions": [0, 1], "references": [0, 1], "groups": [0, 1.5]},
        ("`groups[1]`", "1.5"),
    ),
    "group_accuracy string references": (
        "group_accuracy",
        None,
        {"predictions": [0, 1], "references": ["cat", "dog"], "groups": [0, 1]},
        ("`references[0]`", "'cat'"),
    ),
    "aiou float references": (
        "aiou",
        None,
        {"predictions": _MAP, "references": [0.7], "regions": [_REGION]},
        ("`references[0]`", "0.7"),
    ),
    "aiou string map": (
        "aiou",
        None,
        {"predictions": [[[["a", "b"]]]], "references": [0], "regions": [_REGION]},
        ("`predictions[0][0][0][0]`", "number"),
    ),
    "retrieval_recall float ids": (
        "retrieval_recall",
        None,
        {"predictions": [[4.5, 2, 0]], "references": [[0]]},
        ("`predictions[0][0]`", "4.5"),
    ),
    "retrieval_recall references not lists": (
        "retrieval_recall",
        None,
        {"predictions": [[4, 2, 0]], "references": [0]},
        ("`references[0]`", "must be a list"),
    ),
}


def _odmap_data(rng: np.random.Generator):
    from hf_spurious.vocab import load_vocabulary

    vocab = load_vocabulary("shapes")
    classes = list(vocab.classes)
    pool = []
    for _ in range(25):
        picked = rng.choice(len(classes), size=int(rng.integers(0, 3)), replace=False)
        words = [vocab.words(classes[i])[0] for i in picked]
        pool.append("a photo of " + (" and ".join(f"a {w}" for w in words) if words else "a meadow"))
    predictions, references = [], []
    for _ in range(12):
        predictions.append([pool[i] for i in rng.choice(len(pool), size=10, replace=False)])
        classes_here = rng.choice(len(classes), size=int(rng.integers(1, 4)), replace=False)
        cut = int(rng.integers(0, len(classes_here) + 1))
        references.append(
            {
                "removed_classes": [classes[i] for i in classes_here[:cut]],
                "present_classes": [classes[i] for i in classes_here[cut:]],
            }
        )
    gallery = pool + pool[:7]  # duplicated captions count twice in R_q
    return vocab, {"predictions": predictions, "references": references, "gallery": gallery}


def _naive_odmap(vocab, predictions, references, k, rule, gallery=None):
    def rel(text, ref):
        m = vocab.classes_in(text)
        if set(ref["removed_classes"]) & m:
            return False
        present = set(ref["present_classes"])
        return bool(present & m) if rule == "any" else bool(present) and present <= m

    aps = []
    for ranking, ref in zip(predictions, references):
        hits, total = 0, 0.0
        for i, text in enumerate(ranking[:k]):
            if rel(text, ref):
                hits += 1
                total += hits / (i + 1)
        denom = k if gallery is None else min(k, sum(rel(t, ref) for t in gallery))
        aps.append(total / denom if denom else 0.0)
    return aps


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("evaluate_modules")
    rng = np.random.default_rng(0)
    vocab, odmap = _odmap_data(rng)
    maps = rng.random((3, 2, 4, 4))
    regions = (rng.random((3, 4, 4)) > 0.5).astype(float)
    regions[:, 0, 0] = 1.0
    data = {
        "repo": str(REPO),
        "modules_dir": "src/hf_spurious/metrics/evaluate_modules",
        "elsewhere": str(tmp),
        "namespace": METRIC_NAMESPACE,
        "modules": list(METRIC_MODULES),
        "odmap": odmap,
        "doc_example": DOC_EXAMPLE,
        "groups": {
            "predictions": [0, 0, 1, 1, 0, 1],
            "references": [0, 1, 1, 1, 0, 0],
            "groups": [0, 1, 3, 3, 0, 2],
        },
        "aiou": {
            "predictions": maps.tolist(),
            "references": [0, 1, 1],
            "regions": regions.tolist(),
            "groups": [0, 0, 1],
        },
        "recall": {"predictions": [[4, 2, 0], [1, 3, 5]], "references": [[0, 1], [3]]},
        "bad_inputs": [[name, module, config, kwargs] for name, (module, config, kwargs, _) in BAD.items()],
    }
    (tmp / "in.json").write_text(json.dumps(data))
    (tmp / "run.py").write_text(SCRIPT)
    env = {
        **os.environ,
        "HF_HOME": str(tmp / "hf_home"),
        "HF_MODULES_CACHE": str(tmp / "modules"),
        "HF_EVALUATE_OFFLINE": "1",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
    }
    proc = subprocess.run(
        [sys.executable, str(tmp / "run.py"), str(tmp / "in.json"), str(tmp / "out.json")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=str(tmp),
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return {"out": json.loads((tmp / "out.json").read_text()), "data": data, "vocab": vocab, "tmp": tmp}


def test_odmap_module_from_clone_matches_naive(run):
    out, data, vocab = run["out"], run["data"]["odmap"], run["vocab"]
    for rule in ("any", "all"):
        res = out[f"odmap_{rule}"]
        for k in (1, 5, 10):
            aps = _naive_odmap(vocab, data["predictions"], data["references"], k, rule)
            assert res[f"odmap@{k}"] == pytest.approx(100 * np.mean(aps))
            assert res[f"ap@{k}"] == pytest.approx(aps)
            mention = np.mean(
                [
                    any(set(ref["removed_classes"]) & vocab.classes_in(t) for t in ranking[:k])
                    for ranking, ref in zip(data["predictions"], data["references"])
                ]
            )
            assert res[f"removed_mention_rate@{k}"] == pytest.approx(100 * mention)
    assert 0 < out["odmap_any"]["odmap@5"] < 100  # the random data exercise both outcomes
    for k in (1, 5):
        aps = _naive_odmap(vocab, data["predictions"], data["references"], k, "any", gallery=data["gallery"])
        assert out["odmap_min_k_r"][f"odmap@{k}"] == pytest.approx(100 * np.mean(aps))
    batched = {key: v for key, v in out["odmap_any"].items() if not key.startswith("ap@")}
    assert out["odmap_batched"] == pytest.approx(batched)


def test_odmap_module_docstring_example_and_vocabulary_object(run):
    out = run["out"]
    expected = {
        "odmap@1": 100.0,
        "odmap@3": 100 / 3,
        "removed_mention_rate@1": 0.0,
        "removed_mention_rate@3": 100.0,
    }
    for key in ("odmap_coco_file", "odmap_object_vocab", "bare", "namespaced", "myorg"):
        assert out[key] == pytest.approx(expected), key
    assert "k=5" in out["odmap_short_error"]


def test_other_modules_from_clone(run):
    out, data = run["out"], run["data"]
    g = data["groups"]
    expected = group_accuracies(
        g["predictions"],
        g["references"],
        g["groups"],
        (3498, 184, 56, 1057),
        ("landbird/land", "landbird/water", "waterbird/land", "waterbird/water"),
    )
    assert out["group_accuracy"] == expected
    assert out["bare_group_accuracy"] == out["group_accuracy"]
    a = data["aiou"]
    values = aiou_batch(
        np.array(a["predictions"], dtype=np.float32),
        np.array(a["regions"], dtype=np.float32),
        a["references"],
    )
    assert out["aiou"]["aiou_per_image"] == pytest.approx(values.tolist(), abs=1e-6)
    assert out["aiou"]["aiou"] == pytest.approx(values.mean(), abs=1e-6)
    assert out["aiou"]["group_aiou"]["0"] == pytest.approx(values[:2].mean(), abs=1e-6)
    assert out["retrieval_recall"] == {"recall@1": 0.0, "recall@2": 50.0}


def test_bare_name_needs_install_and_then_works(run):
    out = run["out"]
    assert out["bare_before_install"] == "FileNotFoundError"
    assert out["install_rc"] == [0, 0]
    assert out["bare_names"] == list(METRIC_MODULES)


def test_install_layout_and_newest_copy_wins(tmp_path):
    src = tmp_path / "src"
    (src / "odmap").mkdir(parents=True)
    script = src / "odmap" / "odmap.py"
    script.write_text("VERSION = 1\n")
    cache = tmp_path / "cache"
    first = install.install_metrics(src, cache, names=["odmap"], namespaces=[None, "org"])
    assert [p.relative_to(cache).parts[:3] for p in first] == [
        ("evaluate_modules", "metrics", "evaluate-metric--odmap"),
        ("evaluate_modules", "metrics", "org--odmap"),
    ]
    for path in first:
        assert len(path.parent.name) == 64 and path.read_text() == "VERSION = 1\n"
        for level in (
            path.parent,
            path.parent.parent,
            path.parent.parent.parent,
            path.parent.parent.parent.parent,
        ):
            assert (level / "__init__.py").is_file()
    script.write_text("VERSION = 2\n")
    second = install.install_module(script, cache)
    os.utime(first[0], (1, 1))  # older
    folder = second.parent.parent
    hashes = [h for h in os.listdir(folder) if len(h) == 64]
    newest = max(hashes, key=lambda h: (folder / h / "odmap.py").stat().st_mtime)
    assert (folder / newest / "odmap.py").read_text() == "VERSION = 2\n"
    with pytest.raises(ValueError, match="namespace"):
        install.install_module(script, cache, namespace="a/b")
    with pytest.raises(FileNotFoundError, match="known modules"):
        install.install_metrics(src, cache, names=["nope"])


def test_default_cache_and_source(monkeypatch, tmp_path):
    monkeypatch.delenv("HF_MODULES_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    assert install.default_modules_cache() == tmp_path / "home" / "modules"
    monkeypatch.setenv("HF_MODULES_CACHE", str(tmp_path / "mods"))
    assert install.default_modules_cache() == tmp_path / "mods"
    assert install.default_source_dir() == MODULES


@pytest.mark.parametrize("name", METRIC_MODULES)
def test_module_folder_is_complete(name):
    folder = MODULES / name
    for file in (f"{name}.py", "README.md", "app.py", "requirements.txt"):
        assert (folder / file).is_file(), file
    card = (folder / "README.md").read_text()
    assert card.startswith("---\n")
    header = yaml.safe_load(card.split("---\n")[1])
    assert header["app_file"] == "app.py" and header["sdk"] == "gradio"
    assert {"evaluate", "metric"} <= set(header["tags"]) and header["description"]
    assert "launch_gradio_widget" in (folder / "app.py").read_text()
    source = (folder / f"{name}.py").read_text()
    # evaluate's import scanner needs one import per line
    assert not [line for line in source.splitlines() if line.startswith("import ") and "," in line]
    for marker in (
        "_DESCRIPTION",
        "_KWARGS_DESCRIPTION",
        "_CITATION",
        "add_start_docstrings",
        "hf_spurious.metrics",
    ):
        assert marker in source


def test_metric_info_features_are_the_datasets_types():
    import datasets

    from hf_spurious.metrics.evaluate_support import feature, metric_info

    assert feature("int64") == datasets.Value("int64")
    assert feature([[["float32"]]]) == datasets.List(datasets.List(datasets.List(datasets.Value("float32"))))
    assert feature({"removed_classes": ["string"]}) == {
        "removed_classes": datasets.List(datasets.Value("string"))
    }
    info = metric_info("d", "c", "i", {"predictions": ["string"], "references": {"removed": ["string"]}})
    assert (info.description, info.citation, info.inputs_description) == ("d", "c", "i")
    assert info.features == datasets.Features(
        {
            "predictions": datasets.List(datasets.Value("string")),
            "references": {"removed": datasets.List(datasets.Value("string"))},
        }
    )
    with pytest.raises(ValueError, match="one item"):
        feature(["int64", "string"])
    with pytest.raises(TypeError, match="feature spec"):
        feature(3)


@pytest.mark.parametrize("name", list(BAD))
def test_module_bad_inputs_name_the_field(run, name):
    got = run["out"]["bad_inputs"][name]
    assert got.startswith("ValueError: "), got
    missing = [part for part in BAD[name][3] if part not in got]
    assert not missing, f"{name}: {got!r} lacks {missing}"
