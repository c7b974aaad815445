"""The package's public surface: lazy re-exports resolve, and the CLI lists every subcommand."""

from __future__ import annotations

import importlib

import pytest

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
