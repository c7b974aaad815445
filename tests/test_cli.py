"""The ``hf-spurious`` command line: one spelling of every flag (kebab shown, snake accepted), list flags
(comma == space), shared defaults, help texts, and short user errors (``--debug`` for the traceback)."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import enum
import io
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from transformers import TrainingArguments

from hf_spurious import cli
from hf_spurious.cli._common import (
    DEFAULT_TEMPLATES,
    ListAction,
    kebab,
    resolve_templates,
    snake,
    split_list,
)
from hf_spurious.text import TEMPLATE_SETS

COMMANDS = sorted(cli.SUBCOMMANDS)
HF_FIELDS = {f.name for f in dataclasses.fields(TrainingArguments)}
# candidate dummy values, tried in order until the parser accepts one
CANDIDATES = ("x", "1", "0.5", "true", "a:b", '{"a": 1}')


@pytest.fixture(scope="module")
def parsers() -> dict[str, argparse.ArgumentParser]:
    return {name: cli.command_parser(name) for name in COMMANDS}


def _flag_actions(parser: argparse.ArgumentParser) -> Iterator[argparse.Action]:
    for action in parser._actions:
        if action.option_strings and not isinstance(action, argparse._HelpAction):
            yield action


def _parses(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace | None:
    with contextlib.redirect_stderr(io.StringIO()):
        try:
            return parser.parse_args(argv)
        except SystemExit:
            return None


def _values(action: argparse.Action) -> list[list[str]]:
    """Candidate value lists for ``action`` (choices first; two values where exactly two are needed)."""
    if action.nargs == 0:
        return [[]]
    if action.choices:
        return [[str(next(iter(action.choices)))]]
    item = getattr(action, "item", None)
    if isinstance(item, type) and issubclass(item, enum.Enum):
        return [[str(next(iter(item)).value)]]
    width = getattr(action, "count", None) or (action.nargs if isinstance(action.nargs, int) else 1)
    return [[c] * width for c in (("0.25", *CANDIDATES) if width > 1 else CANDIDATES)]


def _required_argv(parser: argparse.ArgumentParser) -> list[str]:
    argv: list[str] = []
    for action in parser._actions:  # positionals first (accelerate-config NAME, push DIR REPO, ...)
        if not action.option_strings:
            argv += _values(action)[0]
    for action in _flag_actions(parser):
        if action.required:
            argv += [action.option_strings[0], *_values(action)[0]]
    assert _parses(parser, argv) is not None, argv
    return argv


def _valid_argv(
    parser: argparse.ArgumentParser, base: list[str], flag: str, action: argparse.Action
) -> list[str] | None:
    for values in _values(action):
        if _parses(parser, [*base, flag, *values]) is not None:
            return values
    return None


@pytest.mark.parametrize("name", COMMANDS)
def test_every_flag_parses_the_same_in_both_spellings(name, parsers) -> None:
    parser = parsers[name]
    base = _required_argv(parser)
    checked = 0
    for action in _flag_actions(parser):
        longs = [o for o in action.option_strings if o.startswith("--")]
        canonical = longs[0]
        assert canonical == kebab(canonical), f"{name}: {canonical} is not the kebab form"
        assert {kebab(o) for o in longs} | {snake(o) for o in longs} <= set(action.option_strings)
        assert all(parser._option_string_actions[o] is action for o in action.option_strings)
        values = _valid_argv(parser, base, canonical, action)
        if (
            values is None
        ):  # a TrainingArguments config-object field no command line fills (transformers' limit)
            assert name == "train" and action.dest in HF_FIELDS, canonical
            continue
        via_kebab = _parses(parser, [*base, kebab(canonical), *values])
        via_snake = _parses(parser, [*base, snake(canonical), *values])
        assert via_kebab is not None and vars(via_kebab) == vars(via_snake), f"{name} {canonical} {values}"
        checked += 1
    assert checked >= 2  # every command has at least one own flag and --debug


@pytest.mark.parametrize("name", COMMANDS)
def test_help_shows_the_kebab_form_once_and_every_flag_has_help(name, parsers, capsys) -> None:
    parser = parsers[name]
    for action in _flag_actions(parser):
        assert (action.help or "").strip(), f"{name}: {action.option_strings} has no help"
    text = parser.format_help()
    listed = re.findall(r"^\s{2}(-\S+(?:,\s-\S+)*)", text, re.M)
    flags = [f for entry in listed for f in re.findall(r"--[\w-]+", entry)]
    assert flags and not [f for f in flags if "_" in f], f"{name}: snake spellings in the help"
    assert len(flags) == len(set(flags)), f"{name}: a flag is listed twice"
    assert not re.findall(r"\[(--[\w-]*_[\w-]*)", parser.format_usage())
    with pytest.raises(SystemExit) as info:
        cli.main([name, "--help"])
    assert info.value.code == 0 and f"hf-spurious {name}" in capsys.readouterr().out


def _list_actions(parsers) -> Iterator[tuple[str, argparse.Action]]:
    for name in COMMANDS:
        for action in _flag_actions(parsers[name]):
            if isinstance(action, ListAction):
                yield name, action


def test_list_flags_take_comma_and_space_lists(parsers) -> None:
    seen = set()
    for name, action in _list_actions(parsers):
        parser = parsers[name]
        base = _required_argv(parser)
        flag = action.option_strings[0]
        one = (_valid_argv(parser, base, flag, action) or ["?"])[0]
        other = "0.75" if one == "0.25" else one
        comma = _parses(parser, [*base, flag, f"{one},{other}"])
        space = _parses(parser, [*base, flag, one, other])
        assert comma is not None and space is not None and vars(comma) == vars(space), f"{name} {flag}"
        if action.count is None:  # a repeated flag extends the list
            repeated = _parses(parser, [*base, flag, one, snake(flag), other])
            assert repeated is not None and vars(repeated) == vars(comma), f"{name} {flag}"
        assert len(getattr(comma, action.dest)) == 2
        seen.add((name, flag))
    assert {("evaluate", "--class-names"), ("discover", "--class-names"), ("evaluate", "--k"),
            ("train", "--class-names"), ("install-metrics", "--metrics")} <= seen  # fmt: skip


def test_list_values_and_their_errors(parsers) -> None:
    evaluate = parsers["evaluate"]
    ns = evaluate.parse_args(
        ["--model", "m", "--k", "1,5", "10", "--class-names", "a, b", "--metrics", "odmap"]
    )
    assert ns.k == [1, 5, 10] and ns.class_names == ["a", "b"] and ns.metrics == ["odmap"]
    assert str(evaluate.parse_args(["--model", "m"]).class_names) == "landbird,waterbird"
    for bad in (["--k", "0,5"], ["--k", "one"]):
        assert _parses(evaluate, ["--model", "m", *bad]) is None
    world = parsers["world"]
    assert world.parse_args(["--out", "o", "--alpha-range", "0.2,0.4"]).alpha_range == [0.2, 0.4]
    assert _parses(world, ["--out", "o", "--alpha-range", "0.2"]) is None
    pairs = world.parse_args(["--out", "o", "--pair", "dog:frisbee,cat:ball", "--pair", "a:b"]).pair
    assert pairs == [("dog", "frisbee"), ("cat", "ball"), ("a", "b")]
    train = parsers["train"]
    base = ["--model", "m", "--dataset", "shapes", "--data_dir", "d"]
    prompts = train.parse_args([*base, "--attribute-prompts", "a bird, on land", "a bird on water"])
    assert prompts.attribute_prompts == ["a bird, on land", "a bird on water"]  # sentences: no comma split
    assert split_list(" a, b,,c ") == ["a", "b", "c"]


def test_templates_default_is_shared(parsers) -> None:
    defaults = {name: parsers[name].get_default("templates") for name in ("evaluate", "discover")}
    assert defaults == {"evaluate": DEFAULT_TEMPLATES, "discover": DEFAULT_TEMPLATES}
    assert resolve_templates("default") is None  # the evaluation's default: the 80 CLIP templates
    assert resolve_templates("simple") == TEMPLATE_SETS["simple"] == ("a photo of a {}.",)
    with pytest.raises(SystemExit, match="neither"):
        resolve_templates("no/such/file.txt")
    for flag in ("class_names", "batch_size", "split", "out"):
        assert all(
            flag in vars(parsers[n].parse_args(_required_argv(parsers[n]))) for n in ("evaluate", "discover")
        )
    assert parsers["evaluate"].get_default("class_names") == parsers["discover"].get_default("class_names")


def _discover_missing(tmp_path) -> list[str]:
    return [
        "discover",
        "--model",
        "m",
        "--data-dir",
        str(tmp_path / "missing"),
        "--attribute-column",
        "place",
    ]


def test_user_error_is_short_without_debug(tmp_path, capsys) -> None:
    assert cli.main(_discover_missing(tmp_path)) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert 1 <= len(lines) <= 2 and "Traceback" not in err
    assert "hf-spurious discover: error:" in lines[0] and "missing" in lines[0] and "metadata.csv" in lines[0]
    assert "--debug" in lines[-1]
    argv = [
        "counterfactuals",
        "--source",
        "coco",
        "--data_dir",
        str(tmp_path / "nope"),
        "--out",
        str(tmp_path / "o"),
    ]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "nope" in err and "Traceback" not in err and len(err.strip().splitlines()) <= 2


def test_debug_shows_the_traceback(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match=r"metadata\.csv"):
        cli.main([*_discover_missing(tmp_path), "--debug"])
    with pytest.raises(FileNotFoundError, match=r"metadata\.csv"):
        cli.main(["--debug", *_discover_missing(tmp_path)])


def test_dispatcher_usage_errors(capsys) -> None:
    for argv in ([], ["--debug"], ["nope"]):
        with pytest.raises(SystemExit) as info:
            cli.main(argv)
        assert info.value.code == 2
    assert "COMMAND" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        cli.main(["--help"])
    assert info.value.code == 0 and "--debug" in capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(TEMPLATE_SETS))
def test_templates_by_name_mean_the_same_in_train_evaluate_and_discover(tmp_path, name):
    from hf_spurious.cli import train
    from hf_spurious.training import SpuriousTrainingArguments

    args = SpuriousTrainingArguments(output_dir=str(tmp_path), templates=[name], report_to="none")
    assert args.templates == list(TEMPLATE_SETS[name])
    ns = cli.command_parser("train").parse_args(
        [
            "--model",
            "m",
            "--dataset",
            "waterbirds",
            "--data-dir",
            str(tmp_path),
            "--output-dir",
            str(tmp_path),
            "--templates",
            name,
        ]
    )
    assert train.training_args_from(ns).templates == list(TEMPLATE_SETS[name])
    expected = None if name == DEFAULT_TEMPLATES else TEMPLATE_SETS[name]
    assert resolve_templates(name) == expected


# ----------------------------------------------------------------- issue 15: version, help, warnings, errors

#: Python-side wording a CLI user cannot act on (train's inherited TrainingArguments texts excepted).
DEVELOPER_PROSE = re.compile(r"\b\w+=(?:True|False|None|'|\"|\s|$)|\bkwargs?\b|\bPython\b")


def test_version_matches_the_installed_metadata(capsys) -> None:
    from importlib.metadata import version

    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"hf-spurious {version('hf_spurious')}"


def _one_line(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("name", COMMANDS)
def test_help_marks_required_flags_and_lists_choices(name, parsers) -> None:
    parser = parsers[name]
    text = _one_line(parser.format_help())
    required = [a for a in _flag_actions(parser) if a.required]
    assert text.count("(required)") == len(required), name
    for action in required:
        assert parser._get_formatter()._get_help_string(action).endswith("(required)"), action.dest
    for action in _flag_actions(parser):
        if action.choices and name != "train":
            shown = "{" + ",".join(map(str, action.choices)) + "}"
            assert f"{action.option_strings[0]} {shown}" in text, f"{name} {action.option_strings[0]}"


@pytest.mark.parametrize("name", COMMANDS)
def test_help_has_no_developer_prose(name, parsers) -> None:
    for action in _flag_actions(parsers[name]):
        if name == "train" and action.dest in HF_FIELDS:
            continue  # transformers' own TrainingArguments help texts
        assert not DEVELOPER_PROSE.search(action.help or ""), (
            f"{name} {action.option_strings[0]}: {action.help}"
        )


def test_the_prose_check_can_fail() -> None:
    assert DEVELOPER_PROSE.search("read with torch.load(weights_only=True)")
    assert DEVELOPER_PROSE.search("pass karpathy_json= or captions_json=")
    assert not DEVELOPER_PROSE.search("a JSON file, e.g. --set p_duplicate=0.2 (default: None)")


def test_known_harmless_warnings_are_silenced_and_others_are_not(capsys) -> None:
    import logging
    import warnings

    from hf_spurious.cli._common import silence_known_warnings

    silence_known_warnings()
    silence_known_warnings()  # idempotent: one filter
    harmless = {
        "transformers.models.auto.image_processing_auto": "Requested torchvision backend is not available. "
        "Falling back to pil backend.",
        "transformers.utils.import_utils": "`CLIPImageProcessor` requires torchvision (not installed); falling "
        "back to `CLIPImageProcessorPil` for backward compatibility.",
    }
    for name, message in harmless.items():
        logger = logging.getLogger(name)
        assert len(logger.filters) == 1
        seen: list[str] = []
        handler = logging.Handler()
        handler.emit = lambda record, seen=seen: seen.append(record.getMessage())  # type: ignore[method-assign]
        logger.addHandler(handler)
        level = logger.level
        logger.setLevel(logging.WARNING)  # the test session runs transformers at "error" verbosity
        try:
            logger.warning(message)
            logger.warning("something else")
        finally:
            logger.removeHandler(handler)
            logger.setLevel(level)
        assert seen == ["something else"], name
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        silence_known_warnings()
        warnings.warn(
            "'pin_memory' argument is set as true but no accelerator is found, then device pinned memory "
            "won't be used.",
            UserWarning,
            stacklevel=1,
        )
        warnings.warn("another warning", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["another warning"]


class _ExitsWithAMessage:
    """A stand-in subcommand whose run() does ``raise SystemExit("error: ...")``."""

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        return None

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        raise SystemExit("error: bad --templates")


class _Interrupted(_ExitsWithAMessage):
    """A stand-in subcommand interrupted by Ctrl-C."""

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        raise KeyboardInterrupt


def test_ctrl_c_is_one_line_and_exit_code_130(capsys, monkeypatch) -> None:
    monkeypatch.setattr(cli, "command_module", lambda name: _Interrupted)
    assert cli.main(["install-metrics"]) == 130
    assert capsys.readouterr().err.strip().splitlines() == [
        "hf-spurious install-metrics: interrupted (outputs already written are kept)"
    ]
    with pytest.raises(KeyboardInterrupt):  # --debug shows the traceback
        cli.main(["--debug", "install-metrics"])


def test_user_messages_name_the_thing_and_the_fix(tmp_path, capsys, monkeypatch) -> None:
    from huggingface_hub.errors import HFValidationError

    from hf_spurious.cli._common import user_message

    typo = HFValidationError(
        "Repo id must be in the form 'repo_name' or 'namespace/repo_name': '/data/modles/clip'. "
        "Use `repo_type` argument if needed."
    )
    assert user_message(typo).startswith("'/data/modles/clip' is neither an existing local folder nor")
    missing = FileNotFoundError(2, "No such file or directory", str(tmp_path / "x.json"))
    assert user_message(missing) == f"{tmp_path / 'x.json'}: no such file or directory; check the path"
    assert user_message(ValueError("a\nb\nc\nd")) == "a\nb [...]"
    # SystemExit("message") inside a command is a user error too: exit code 2, two lines
    monkeypatch.setattr(cli, "command_module", lambda name: _ExitsWithAMessage)
    assert cli.main(["install-metrics"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        err == ["hf-spurious install-metrics: error: bad --templates", err[1]]
        and "HF_SPURIOUS_DEBUG" in err[1]
    )


def test_debug_environment_variable_shows_the_traceback(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_SPURIOUS_DEBUG", "1")
    with pytest.raises(FileNotFoundError, match=r"metadata\.csv"):
        cli.main(_discover_missing(tmp_path))
    monkeypatch.setenv("HF_SPURIOUS_DEBUG", "0")
    assert cli.main(_discover_missing(tmp_path)) == 2


def test_accelerate_config_prints_and_copies_the_shipped_file(tmp_path, capsys) -> None:
    assert cli.main(["accelerate-config", "ddp_cpu"]) == 0
    path = Path(capsys.readouterr().out.strip())
    assert path.name == "ddp_cpu.yaml" and "num_processes: 2" in path.read_text()
    assert cli.main(["accelerate-config", "fsdp", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "fsdp.yaml").read_text() == (path.parent / "fsdp.yaml").read_text()


def test_tiny_models_writes_loadable_folders(tmp_path, capsys) -> None:
    from transformers import AutoModel

    assert cli.main(["tiny-models", "--out", str(tmp_path), "--kinds", "clip"]) == 0
    assert "clip:" in capsys.readouterr().out
    model = AutoModel.from_pretrained(tmp_path / "clip")
    assert model.config.model_type == "clip" and (tmp_path / "clip" / "README.md").is_file()
    assert cli.main(["tiny-models", "--out", str(tmp_path), "--kinds", "bert"]) == 2
    assert "--kinds: unknown bert" in capsys.readouterr().err


def test_library_keyword_wording_becomes_the_commands_flag() -> None:
    from hf_spurious.cli._common import cli_wording

    flags = cli.command_parser("counterfactuals")._option_string_actions
    assert cli_wording("pass target_pairs=[(anchor, partner)]", flags) == "pass --target-pair"
    assert cli_wording("or --overwrite (overwrite=True in Python) to discard them", flags) == (
        "or --overwrite to discard them"
    )
    assert cli_wording("or pass spacy_model=... .", flags) == "or pass --spacy-model ."
    # a keyword the command has no flag for stays as it is (its owner must reword it), as do FIELD=VALUE examples
    assert cli_wording("use box_policy='clip'", flags) == "use box_policy='clip'"
    assert cli_wording("e.g. --set p_duplicate=0.2", flags) == "e.g. --set p_duplicate=0.2"
    world = cli.command_parser("world")._option_string_actions
    assert "--p-partner" in world and cli_wording("--set p_partner=abc: not a number", world) == (
        "--set p_partner=abc: not a number"
    )


@pytest.mark.parametrize("name", COMMANDS)
def test_every_flag_shows_its_default_or_that_it_is_required(name, parsers) -> None:
    parser = parsers[name]
    formatter = parser._get_formatter()
    for action in _flag_actions(parser):
        if name == "train" and action.dest in HF_FIELDS:
            continue  # transformers' TrainingArguments fields: their own help texts
        text = formatter._get_help_string(action) or ""
        assert "default" in text.lower() or text.endswith("(required)"), f"{name} {action.option_strings[0]}"


@pytest.mark.parametrize("name", ["evaluate", "train", "discover"])
def test_model_help_names_every_supported_model_type(name, parsers) -> None:
    from hf_spurious.models.registry import FAMILIES

    (model,) = [a for a in _flag_actions(parsers[name]) if a.dest == "model"]
    words = set(model.help.replace(",", " ").replace(")", " ").split())
    assert {f.model_type for f in FAMILIES} <= words, model.help
