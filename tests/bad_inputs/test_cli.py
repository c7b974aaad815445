"""Bad input at the command line (issue 13, rule 8): one or two lines naming the thing and the fix, exit code 2,
no traceback. The commands here are the CLI's own (dispatcher, install-metrics, convert-openclip, push,
build-dataset, tiny-models, accelerate-config); other areas test their commands' values in their own files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ._cases import expect_cli_error


def _export(root: Path) -> Path:
    (root / "test").mkdir(parents=True)
    (root / "test" / "test-00000-of-00001.parquet").write_bytes(b"PAR1")
    (root / "README.md").write_text("---\n---\n")
    (root / "provenance.json").write_text(json.dumps({"test": {}}))
    return root


CLI_CASES = [
    ("unknown command", lambda t: ["evalute"], ("invalid choice", "evalute")),
    ("required flag missing", lambda t: ["tiny-models"], ("--out",)),
    ("unknown flag", lambda t: ["install-metrics", "--sorce", "x"], ("unrecognized arguments", "--sorce")),
    ("install-metrics source folder missing", lambda t: ["install-metrics", "--source", str(t / "nope")],
     ("nope", "--source")),
    ("install-metrics unknown module", lambda t: ["install-metrics", "--metrics", "odmapp",
                                                  "--modules-cache", str(t / "m")], ("odmapp", "known modules")),
    ("install-metrics namespace with a slash", lambda t: ["install-metrics", "--namespace", "a/b",
                                                          "--modules-cache", str(t / "m")], ("--namespace",)),
    ("convert-openclip checkpoint missing", lambda t: ["convert-openclip", "--checkpoint", str(t / "RN50.pt"),
                                                       "--out", str(t / "o")], ("RN50.pt", "no such file")),
    ("push folder is not an export", lambda t: ["push", str(t), "me/ds"], ("not an exported dataset folder",)),
    ("push repo id without a namespace", lambda t: ["push", str(_export(t / "e")), "ds"], ("'user/name'",)),
    ("push unknown config", lambda t: ["push", str(_export(t / "e")), "me/ds", "--config", "train"],
     ("--config train", "holds only test")),
    ("build-dataset without a source folder", lambda t: ["build-dataset", "coco"], ("--data-dir is required",)),
    ("build-dataset source folder missing", lambda t: ["build-dataset", "flickr30k", "--data-dir", str(t / "f30k")],
     ("f30k", "no such folder")),
    ("build-dataset unknown config", lambda t: ["build-dataset", "shapes", "--configs", "val"], ("val", "test_partner")),
    ("build-dataset options not JSON", lambda t: ["build-dataset", "coco", "--data-dir", str(t),
                                                  "--inpainter-options", "{steps: 3}"], ("--inpainter-options", "JSON")),
    ("build-dataset options not an object", lambda t: ["build-dataset", "coco", "--data-dir", str(t),
                                                       "--inpainter-options", "[3]"], ("JSON object",)),
    ("build-dataset unknown dataset", lambda t: ["build-dataset", "imagenet"], ("invalid choice", "imagenet")),
    ("tiny-models unknown kind", lambda t: ["tiny-models", "--out", str(t), "--kinds", "bert"], ("bert", "choose from")),
    ("accelerate-config unknown name", lambda t: ["accelerate-config", "deepspeed"], ("invalid choice", "deepspeed")),
]  # fmt: skip


@pytest.mark.parametrize(("kind", "argv", "says"), CLI_CASES, ids=[c[0].replace(" ", "-") for c in CLI_CASES])
def test_cli_user_errors(kind, argv, says, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    err = expect_cli_error(argv(tmp_path), capsys, code=2, says=says)
    assert len([line for line in err.splitlines() if line.strip()]) <= 3, (
        err
    )  # usage + error, or error + hint
