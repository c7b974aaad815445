"""Bad inputs to the evaluation area: gallery caption files, prompt templates, re-ranking, vocabularies,
the odmap evaluate module and the evaluate / discover flags (issue 13 rules 5, 7, 8)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hf_spurious.cli.evaluate_retrieval import read_caption_file
from hf_spurious.evaluation.rerank import rerank_with_itm
from hf_spurious.text import matcher_agreement
from hf_spurious.text.templates import check_template
from hf_spurious.vocab import VocabularyError, vocabulary_from_dict

from ._cases import Case, cases, check, expect_cli_error


def _write(tmp: Path, name: str, text: str | bytes) -> Path:
    path = tmp / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


class _Itm:
    """A stand-in with an ITM head (only the checks before scoring run)."""

    def itm_scores(self, *a, **k):  # pragma: no cover - never reached by these cases
        raise AssertionError


JSONL_SHAPE = '{"caption":'

CASES = [
    Case(
        "gallery jsonl wrong key",
        lambda tmp: read_caption_file(_write(tmp, "g.jsonl", '{"caption": "a dog"}\n{"text": "a cat"}\n')),
        raises=SystemExit,
        says=("g.jsonl", "line 2", '"caption" key', "text", JSONL_SHAPE),
    ),
    Case(
        "gallery jsonl truncated line",
        lambda tmp: read_caption_file(_write(tmp, "g.jsonl", '{"caption": "a dog"}\n{"caption": "a ca')),
        raises=SystemExit,
        says=("g.jsonl", "line 2", "not valid JSON", "truncated", JSONL_SHAPE),
    ),
    Case(
        "gallery jsonl line is not an object",
        lambda tmp: read_caption_file(_write(tmp, "g.jsonl", '["a dog"]\n')),
        raises=SystemExit,
        says=("g.jsonl", "line 1", "list", JSONL_SHAPE),
    ),
    Case(
        "gallery jsonl caption not a string",
        lambda tmp: read_caption_file(_write(tmp, "g.jsonl", '{"caption": 3}\n')),
        raises=SystemExit,
        says=("g.jsonl", "line 1", "non-empty string"),
    ),
    Case(
        "gallery txt not utf-8",
        lambda tmp: read_caption_file(_write(tmp, "g.txt", b"a dog\n\xff\xfe a cat\n")),
        raises=SystemExit,
        says=("g.txt", "not UTF-8", "save it as UTF-8"),
    ),
    Case(
        "gallery json invalid",
        lambda tmp: read_caption_file(_write(tmp, "g.json", '["a dog", ')),
        raises=SystemExit,
        says=("g.json", "not valid JSON"),
    ),
    Case(
        "gallery txt with utf-8 bom reads",
        lambda tmp: read_caption_file(_write(tmp, "g.txt", "\ufeffa dog\na cat\n")),
        raises=None,
        expect=lambda got: got == ["a dog", "a cat"] or (_ for _ in ()).throw(AssertionError(got)),
    ),
    Case(
        "template with two slots",
        lambda tmp: check_template("a photo of a {} and a {}.", "template 0"),
        says=("template 0", "2 slots", "exactly one '{}'"),
    ),
    Case(
        "template with no slot",
        lambda tmp: check_template("a photo of a dog.", "template 1"),
        says=("template 1", "0 slots", "exactly one '{}'"),
    ),
    Case(
        "template with a named field",
        lambda tmp: check_template("a photo of a {name}.", "template 2"),
        says=("template 2", "{name}", "exactly one '{}'"),
    ),
    Case(
        "template with a stray brace",
        lambda tmp: check_template("a {} photo {", "template 3"),
        says=("template 3", "not a valid template", "'{{'"),
    ),
    Case(
        "rerank score unknown",
        lambda tmp: rerank_with_itm(_Itm(), [None], ["a"], np.zeros((1, 1), np.int64), 1, score="itc"),
        says=("score must be one of", "itm+itc"),
    ),
    Case(
        "rerank itm+itc without similarities",
        lambda tmp: rerank_with_itm(_Itm(), [None], ["a"], np.zeros((1, 1), np.int64), 1, score="itm+itc"),
        says=("itc_scores", "same shape"),
    ),
    Case(
        "vocabulary verbs rule without words",
        lambda tmp: vocabulary_from_dict(
            {"classes": {"train": ["train"]}, "rules": {"verbs": {"before": ["a"]}}}
        ),
        raises=VocabularyError,
        says=("rules.verbs", "'words' list"),
    ),
    Case(
        "matcher agreement length mismatch",
        lambda tmp: matcher_agreement([{"dog"}], [{"dog"}, set()]),
        says=("1 predicted class sets for 2 labelled captions",),
    ),
]


def _odmap(**kwargs):
    import evaluate

    from hf_spurious.cli.install_metrics import default_source_dir

    module = evaluate.load(str(default_source_dir() / "odmap"), config_name="coco")
    return module.compute(k=[1], **kwargs)


CASES += [
    Case(
        "odmap reference lacks present_classes",
        lambda tmp: _odmap(predictions=[["a dog"]], references=[{"removed_classes": ["dog"]}]),
        says=("references[0]", "present_classes"),
    ),
    Case(
        "odmap prediction not a string",
        lambda tmp: _odmap(
            predictions=[[3]], references=[{"removed_classes": ["dog"], "present_classes": []}]
        ),
        says=("predictions[0][0]", "string"),
    ),
    Case(
        "odmap unknown class name",
        lambda tmp: _odmap(
            predictions=[["a dog"]], references=[{"removed_classes": ["dgo"], "present_classes": ["person"]}]
        ),
        says=("dgo", "unknown class"),
    ),
    Case(
        "odmap fewer captions than k",
        lambda tmp: _odmap(
            predictions=[[]], references=[{"removed_classes": ["dog"], "present_classes": ["person"]}]
        ),
        says=("predictions[0]", "k=1"),
    ),
]


@cases(CASES)
def test_evaluation_inputs(case, tmp_path):
    check(case, tmp_path)


def test_evaluate_flag_values_are_checked(tmp_path, capsys):
    base = ["evaluate", "--model", "m", "--out", str(tmp_path)]
    expect_cli_error([*base, "--rerank-top-n", "-1"], capsys, says=("--rerank-top-n", ">= 0"))
    expect_cli_error([*base, "--rerank-score", "itc"], capsys, says=("--rerank-score", "itm+itc"))
    expect_cli_error([*base, "--matcher", "regex"], capsys, says=("--matcher", "lexical"))
    expect_cli_error([*base, "--chunk-size", "0"], capsys, says=("--chunk-size",))
    expect_cli_error([*base, "--max-overlays", "-2"], capsys, says=("--max-overlays",))


def test_discover_flag_values_are_checked(tmp_path, capsys):
    base = ["discover", "--model", "m", "--data-dir", str(tmp_path), "--out", str(tmp_path / "o")]
    expect_cli_error([*base, "--min-detections", "0"], capsys, says=("--min-detections",))
    expect_cli_error([*base, "--top-per-class", "-1"], capsys, says=("--top-per-class",))
    expect_cli_error([*base, "--max-images", "x"], capsys, says=("--max-images",))
