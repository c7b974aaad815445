"""The package's public surface: lazy re-exports resolve, and the CLI lists every subcommand."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest
import tomllib

import hf_spurious
from hf_spurious import cli

TOP_LEVEL = sorted((name, module) for module, names in hf_spurious._EXPORTS.items() for name in names)


@pytest.mark.parametrize(("name", "module"), TOP_LEVEL)
def test_top_level_exports_resolve_to_their_modules(name, module):
    obj = getattr(hf_spurious, name)
    assert obj is getattr(importlib.import_module(module, "hf_spurious"), name)
    assert name in dir(hf_spurious)


@pytest.mark.parametrize(
    "package",
    [
        "hf_spurious.data",
        "hf_spurious.synthesis",
        "hf_spurious.models",
        "hf_spurious.training",
        "hf_spurious.sources",
        "hf_spurious.world",
        "hf_spurious.evaluation",
        "hf_spurious.demo",
    ],
)
def test_subpackage_exports_resolve(package):
    module = importlib.import_module(package)
    for name in module.__all__:
        assert getattr(module, name) is not None, f"{package}.{name}"
    with pytest.raises(AttributeError, match="no attribute"):
        module.does_not_exist  # noqa: B018


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        hf_spurious.nope  # noqa: B018


@pytest.mark.parametrize("command", sorted(cli.SUBCOMMANDS))
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--help"])
    assert exit_info.value.code == 0
    assert f"hf-spurious {command}" in capsys.readouterr().out


def test_unknown_subcommand_exits_with_usage(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["nope"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


# ----------------------------------------------------------------- what a pip install carries (issue 15, item 1)

REPO = Path(__file__).resolve().parents[1]
PACKAGE_DIR = REPO / "src" / "hf_spurious"


def _package_data_globs() -> list[str]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"][
        "hf_spurious"
    ]


def test_every_package_data_glob_matches_files():
    for pattern in _package_data_globs():
        assert list(PACKAGE_DIR.glob(pattern)), f"package-data {pattern!r} matches nothing"


def test_evaluate_modules_accelerate_configs_and_card_templates_are_package_data():
    globs = _package_data_globs()
    shipped = {p for pattern in globs for p in PACKAGE_DIR.glob(pattern)}
    needed = [
        *(PACKAGE_DIR / "metrics" / "evaluate_modules").glob("*/*.*"),
        *(REPO / "examples" / "accelerate").glob("*.yaml"),
        *(REPO / "dataset_scripts").glob("*/README.md"),
    ]
    assert len(needed) >= 4 * 4 + 4 + 3
    resolved = {p.resolve() for p in shipped}
    missing = [str(p.relative_to(REPO)) for p in needed if p.resolve() not in resolved]
    assert not missing, f"not shipped in the wheel: {missing}"


def test_install_metrics_uses_the_packaged_modules():
    from hf_spurious.cli.install_metrics import default_source_dir

    assert default_source_dir() == PACKAGE_DIR / "metrics" / "evaluate_modules"
    assert (default_source_dir() / "odmap" / "odmap.py").is_file()


def test_metric_cards_have_no_placeholder():
    placeholder = re.compile(r"<[^<>]*(URL|url|repository)[^<>]*>|git\+<|example\.com")
    for path in (PACKAGE_DIR / "metrics" / "evaluate_modules").glob("*/*"):
        if path.suffix in (".md", ".txt", ".py"):
            found = placeholder.search(path.read_text(encoding="utf-8"))
            assert found is None, f"{path.name} in {path.parent.name}: placeholder {found.group(0)!r}"
    assert placeholder.search("pip install git+<hf_spurious repository URL>")  # the check can fail
