"""What every ``hf-spurious`` subcommand shares: one spelling of its flags, list flags, the shared flags.

One spelling: each long flag is shown as ``--kebab-case`` and accepted as ``--snake_case`` too
(:func:`accept_both_spellings`). List flags take a comma list, a space list or both (:class:`ListAction`).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from hf_spurious.text import TEMPLATE_SETS

#: Errors a command reports as a short message (``--debug`` shows the traceback): a missing or unreadable
#: file or folder (OSError) and a bad value or record (ValueError: RecordError, ImageReadError, ...).
USER_ERRORS: tuple[type[Exception], ...] = (OSError, ValueError)
#: ``--templates`` keywords: "default" = the 80 CLIP ImageNet templates (hf_spurious.text.TEMPLATES, what
#: the evaluation uses when given None), "simple" = one plain prompt.
DEFAULT_TEMPLATES = "default"
WATERBIRDS_CLASS_NAMES = ("landbird", "waterbird")
WATERBIRDS_ATTRIBUTE_NAMES = ("land", "water")


# --------------------------------------------------------------------------------------------- spelling


def kebab(option: str) -> str:
    """``--data_dir`` -> ``--data-dir`` (short options unchanged)."""
    return "--" + option[2:].replace("_", "-") if option.startswith("--") else option


def snake(option: str) -> str:
    """``--data-dir`` -> ``--data_dir`` (short options unchanged)."""
    return "--" + option[2:].replace("-", "_") if option.startswith("--") else option


def accept_both_spellings(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Register the other spelling of every long flag and put the kebab form first (usage and help show it)."""
    registry = parser._option_string_actions  # argparse has no public way to alias a flag
    for action in parser._actions:
        longs = [o for o in action.option_strings if o.startswith("--")]
        if not longs:
            continue
        spellings = list(dict.fromkeys(s for o in longs for s in (kebab(o), snake(o))))
        spellings = [kebab(longs[0]), *(s for s in spellings if s != kebab(longs[0]))]
        ours = [s for s in spellings if registry.setdefault(s, action) is action]
        shorts = [o for o in action.option_strings if not o.startswith("--")]
        action.option_strings = shorts + ours
    return parser


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Defaults in the help, and each flag under its canonical spelling only (``-h, --data-dir DATA_DIR``)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.required and action.option_strings:
            return f"{action.help} (required)"
        if action.required or "default" in (action.help or ""):  # no "(default: ...)" twice
            return action.help
        return super()._get_help_string(action)

    def _format_action_invocation(self, action: argparse.Action) -> str:
        if len(action.option_strings) <= 1:
            return super()._format_action_invocation(action)
        shorts = [o for o in action.option_strings if not o.startswith("--")]
        longs = [o for o in action.option_strings if o.startswith("--")]
        shown = argparse.Action(
            shorts + longs[:1],
            action.dest,
            nargs=action.nargs,
            metavar=action.metavar,
            choices=action.choices,
        )
        return super()._format_action_invocation(shown)


class ArgumentParser(argparse.ArgumentParser):
    """A parser whose usage errors are two lines (the error, where the flags are listed), exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n(`{self.prog} --help` lists the flags)\n")


def make_parser(
    prog: str | None, description: str, add_arguments: Callable[[argparse.ArgumentParser], None]
) -> argparse.ArgumentParser:
    """A subcommand's parser: its flags (``add_arguments``), both spellings, defaults shown in the help."""
    parser = ArgumentParser(prog=prog, description=description, formatter_class=HelpFormatter)
    add_arguments(parser)
    if "--debug" not in parser._option_string_actions:  # train keeps TrainingArguments' own --debug
        parser.add_argument(
            "--debug",
            dest="show_traceback",
            action="store_true",
            help="show the full traceback of an error (also: hf-spurious --debug COMMAND ...)",
        )
    return accept_both_spellings(parser)


#: Set this environment variable to 1 to see the traceback of a user error (same as ``--debug``).
DEBUG_ENV = "HF_SPURIOUS_DEBUG"
_REPO_ID_ERROR = re.compile(r"Repo id must (?:be in the form|use alphanumeric).*?: '(?P<value>[^']*)'", re.S)
#: Known harmless messages the CLI hides: (logger, message pattern) for library log records ...
QUIET_LOG_RECORDS: tuple[tuple[str, str], ...] = (
    # no torchvision: transformers uses the PIL image processor, which gives the same pixel values
    (
        "transformers.models.auto.image_processing_auto",
        r"Requested \S+ backend is not available\. Falling back",
    ),
    ("transformers.utils.import_utils", r"requires torchvision \(not installed\); falling back to"),
)
#: ... and (category, message pattern) for Python warnings.
QUIET_WARNINGS: tuple[tuple[type[Warning], str], ...] = (
    # DataLoader(pin_memory=True) on a CPU-only machine: pinning is skipped, nothing else changes
    (UserWarning, r"'pin_memory' argument is set as true but no accelerator is found"),
)


class _DropMessages(logging.Filter):
    def __init__(self, pattern: str) -> None:
        super().__init__()
        self.pattern = re.compile(pattern)

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.pattern.search(record.getMessage())


def silence_known_warnings() -> None:
    """Hide the library warnings listed in :data:`QUIET_LOG_RECORDS` / :data:`QUIET_WARNINGS` (and only them)."""
    for name, pattern in QUIET_LOG_RECORDS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMessages) and f.pattern.pattern == pattern for f in logger.filters):
            logger.addFilter(_DropMessages(pattern))
    for category, pattern in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern, category=category)


def debug_requested(flag: bool = False) -> bool:
    """``--debug`` given, or :data:`DEBUG_ENV` set to anything but empty / 0 / false / no."""
    return flag or os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


#: ``name=`` with an optional Python literal, as library messages write a keyword argument.
_KEYWORD = re.compile(
    r"`?\b([a-z][a-z0-9_]*)=(?:\.\.\.|None|True|False|'[^']*'|\"[^\"]*\"|\[[^\]]*\]|[\w.]+)?`?"
)
_IN_PYTHON = re.compile(r"\s*\([^()]*\bin Python\)")


def cli_wording(text: str, flags: Iterable[str]) -> str:
    """Library wording made CLI wording: ``(x=True in Python)`` asides dropped, and a keyword argument
    ``name=...`` that the command has as a flag written as that flag (``target_layer=`` -> ``--target-layer``)."""
    known = set(flags)

    def flag(match: re.Match[str]) -> str:
        if re.search(r"--[\w-]+\s+$", match.string[: match.start()]):  # a FIELD=VALUE argument: --set a=1
            return match[0]
        for name in (match[1], match[1].removesuffix("s")):  # target_pairs= -> --target-pair
            if kebab("--" + name) in known:
                return kebab("--" + name)
        return match[0]

    return _KEYWORD.sub(flag, _IN_PYTHON.sub("", text))


def user_message(err: BaseException, flags: Iterable[str] = ()) -> str:
    """The one or two lines a person reads for ``err``: library wording turned into what to check
    (``flags``: the command's options, to name them instead of Python keyword arguments)."""
    text = str(err).strip()
    match = _REPO_ID_ERROR.search(text)
    if match:
        value = match["value"]
        return (
            f"{value!r} is neither an existing local folder nor a valid Hub id: check the path "
            "(a Hub id looks like 'name' or 'org/name')"
        )
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        fix = "check the path" if isinstance(err, FileNotFoundError) else "check its permissions and the disk"
        return f"{err.filename}: {err.strerror.lower()}; {fix}"
    lines = [cli_wording(line, flags) for line in text.splitlines() if line.strip()] or [type(err).__name__]
    return "\n".join(lines[:2]) + (" [...]" if len(lines) > 2 else "")


def report_user_error(command: str, err: BaseException, flags: Iterable[str] = ()) -> int:
    """Print a user error as two short lines (what went wrong, how to see more) and return exit code 2."""
    print(f"hf-spurious {command}: error: {user_message(err, flags)}", file=sys.stderr)
    print(f"(pass --debug or set {DEBUG_ENV}=1 for the full traceback)", file=sys.stderr)
    return 2


# --------------------------------------------------------------------------------------------- lists


class CommaList(list):
    """A list that prints as ``a,b,c`` (how list defaults read in ``--help``)."""

    def __str__(self) -> str:
        return ",".join(str(v) for v in self)


def split_list(text: str) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``."""
    return [t.strip() for t in text.split(",") if t.strip()]


class ListAction(argparse.Action):
    """A list flag: ``--k 1,5 10`` == ``--k 1 5 10`` == ``--k 1 --k 5,10`` -> ``[1, 5, 10]``.

    ``item`` converts each element (its ValueError / ArgumentTypeError becomes a usage error); a repeated
    flag extends the list; ``count`` demands exactly that many elements.
    """

    def __init__(
        self,
        option_strings: Sequence[str],
        dest: str,
        item: Callable[[str], Any] = str,
        count: int | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("nargs", "+")
        if isinstance(kwargs.get("default"), (list, tuple)):
            kwargs["default"] = CommaList(kwargs["default"])
        super().__init__(option_strings, dest, **kwargs)
        self.item, self.count = item, count

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        try:
            items = [self.item(piece) for value in values for piece in split_list(value)]
        except (ValueError, TypeError, argparse.ArgumentTypeError) as err:
            raise argparse.ArgumentError(self, str(err)) from None
        current = getattr(namespace, self.dest, None)
        merged = CommaList(items if current is None or current is self.default else [*current, *items])
        if self.count is not None and len(merged) != self.count:
            raise argparse.ArgumentError(self, f"expected {self.count} values, got {len(merged)}: {merged}")
        setattr(namespace, self.dest, merged)


def positive_int(text: str) -> int:
    """An integer >= 1 (``--k`` cut-offs)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"values must be positive, got {text!r}")
    return value


# --------------------------------------------------------------------------------------------- shared flags


def add_model(container: Any, help: str) -> None:
    """``--model`` (required): a Hub id or a checkpoint folder."""
    container.add_argument("--model", required=True, help=help)


def add_data_dir(container: Any, help: str, *, required: bool = False) -> None:
    """``--data-dir``: the source data folder."""
    container.add_argument("--data-dir", required=required, default=None, help=help)


def add_out(container: Any, default: str | None, help: str = "output folder", **kwargs: Any) -> None:
    """``--out``: the output folder (required when ``default`` is None)."""
    container.add_argument("--out", required=default is None, default=default, help=help, **kwargs)


def add_seed(container: Any, help: str = "random seed") -> None:
    container.add_argument("--seed", type=int, default=0, help=help)


def add_batch_size(container: Any, default: int, help: str) -> None:
    container.add_argument("--batch-size", type=int, default=default, help=help)


def add_device(container: Any, help: str = "torch device (default: cuda when present)") -> None:
    container.add_argument("--device", default=None, help=help)


def add_class_names(container: Any) -> None:
    """``--class-names``: the class names of the prompts, in label order (a list flag)."""
    container.add_argument(
        "--class-names",
        action=ListAction,
        default=list(WATERBIRDS_CLASS_NAMES),
        metavar="NAME",
        help="class names for the prompts, in label order (comma or space list)",
    )


def add_attribute_names(container: Any) -> None:
    """``--attribute-names``: the names of the attribute values 0 and 1 (metadata.csv ``place``)."""
    container.add_argument(
        "--attribute-names",
        action=ListAction,
        count=2,
        default=list(WATERBIRDS_ATTRIBUTE_NAMES),
        metavar="NAME",
        help="names of the attribute values 0 and 1 (the metadata.csv column 'place'), used in group and "
        "attribute names",
    )


def add_templates(container: Any) -> None:
    """``--templates``: the prompt templates (same default in every command)."""
    container.add_argument(
        "--templates",
        default=DEFAULT_TEMPLATES,
        help="'default' (the 80 CLIP ImageNet templates), 'simple' ('a photo of a {}.') "
        "or a file with one template per line",
    )


def resolve_templates(spec: str) -> Sequence[str] | None:
    """``--templates`` as the template list the evaluation takes (``None`` = its default, the 80 templates)."""
    if spec == DEFAULT_TEMPLATES:
        return None
    if spec in TEMPLATE_SETS:
        return TEMPLATE_SETS[spec]
    path = Path(spec)
    if not path.exists():
        raise SystemExit(f"error: --templates {spec!r} is neither 'default', 'simple' nor a file")
    return [t for t in path.read_text(encoding="utf-8").splitlines() if t.strip()]


def words_from(items: Iterable[str]) -> list[str]:
    """The unique, non-empty words of a list flag whose single element may instead be a file (one a line)."""
    items = list(items)
    if len(items) == 1 and Path(items[0]).is_file():
        items = Path(items[0]).read_text(encoding="utf-8").splitlines()
    return list(dict.fromkeys(w.strip() for w in items if w.strip()))
