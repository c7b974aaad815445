"""The README's walk-through ("Your own images: a counterfactual set and its ODmAP"), run exactly as written:
the commands are read from the README's code block and run in order (in-process, in a temporary folder), on
the built-in world its first command writes."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from hf_spurious import cli

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "## Your own images: a counterfactual set and its ODmAP"


def walkthrough_commands(text: str) -> list[list[str]]:
    """The ``hf-spurious`` commands of the section's first bash block (continuation lines joined)."""
    section = text.split(SECTION, 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "the walk-through section has no bash block"
    joined = block.group(1).replace("\\\n", " ")
    commands = [shlex.split(line, comments=True) for line in joined.splitlines()]
    return [c for c in commands if c]


def test_the_walkthrough_block_is_what_the_test_runs():
    commands = walkthrough_commands(README.read_text(encoding="utf-8"))
    assert [c[1] for c in commands] == ["world", "counterfactuals", "tiny-models", "evaluate"]
    assert all(c[0] == "hf-spurious" for c in commands)
    with pytest.raises(AssertionError, match="no bash block"):
        walkthrough_commands(f"{SECTION}\nno code here\n")


@pytest.mark.slow
def test_readme_walkthrough_runs_as_written(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for command in walkthrough_commands(README.read_text(encoding="utf-8")):
        assert cli.main(command[1:]) == 0, command
    out = capsys.readouterr().out
    assert "ODmAP (%)" in out  # the headline table in the terminal
    results = json.loads(Path("results/results.json").read_text())
    text = json.dumps(results)
    assert "odmap@1" in text.lower() and Path("my_decorrelated/README.md").is_file()
