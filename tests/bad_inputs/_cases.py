"""The bad-input battery's table helpers: one ``Case`` per kind of bad input, one exact outcome per case.

HOW TO ADD YOUR AREA: create ``tests/bad_inputs/test_<area>.py``, import from here with
``from ._cases import Case, cases, check, expect_error, expect_skip, expect_cli_error`` and write a table::

    CASES = [
        Case("karpathy entry is a string", lambda tmp: read_coco(make_bad(tmp)),
             raises=RecordError, says=("dataset_coco.json", "images[0]", "object")),
        ...
    ]

    @cases(CASES)
    def test_reader_rejects(case, tmp_path):
        check(case, tmp_path)

Every case asserts one exact outcome:

* an error: ``raises`` (the type, or a tuple of types) + ``says`` (substrings that must ALL appear in the
  message, case-insensitively; name the file/field/item and the fix). A bare builtin error (``KeyError``,
  ``IndexError``, ``TypeError``, ``AttributeError``, ``UnicodeDecodeError``, ``ZeroDivisionError``) is
  always a failure, whatever ``raises`` says: those are what the rules forbid.
* a counted skip: call ``expect_skip(counts, reason, n)`` on whatever skip counter your area returns.
* a CLI exit: ``expect_cli_error(argv, capsys, code=2, says=(...))`` runs ``hf-spurious`` in-process and
  checks the exit code, the stderr substrings and that no traceback was printed.
* works after all (e.g. a UTF-8 BOM in a CSV): ``Case(..., raises=None, expect=lambda result: ...)``.

Keep each case well under a second (tiny files in ``tmp_path``); the kind count is the number of collected
cases: ``pytest --collect-only -q tests/bad_inputs``.
"""

from __future__ import annotations

import os
import re
import sys
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

#: Errors that never count as "named": the bare builtins a user cannot act on.
BARE_ERRORS: tuple[type[BaseException], ...] = (
    KeyError,
    IndexError,
    TypeError,
    AttributeError,
    UnicodeDecodeError,
    ZeroDivisionError,
)


@dataclass(frozen=True)
class Case:
    """One kind of bad input: ``run(tmp_path)`` does the thing; the rest says what must happen."""

    kind: str
    run: Callable[[Path], Any]
    raises: type[BaseException] | tuple[type[BaseException], ...] | None = ValueError
    says: tuple[str, ...] = ()
    expect: Callable[[Any], Any] | None = None  # when raises is None: called on run's result (assert inside)
    marks: tuple[Any, ...] = field(default=())

    def param(self) -> Any:
        return pytest.param(self, id=re.sub(r"\s+", "-", self.kind.strip()), marks=list(self.marks))


def cases(table: Iterable[Case]) -> Any:
    """``@cases(TABLE)``: parametrize a test over the table (argument ``case``), ids = the kinds."""
    table = list(table)
    kinds = [c.kind for c in table]
    dupes = sorted({k for k in kinds if kinds.count(k) > 1})
    assert not dupes, f"duplicate kinds in the table: {dupes}"
    return pytest.mark.parametrize("case", [c.param() for c in table])


def assert_named(err: BaseException, says: Iterable[str]) -> None:
    """``err`` is not a bare builtin and its message holds every substring of ``says`` (case-insensitively)."""
    assert type(err) not in BARE_ERRORS, (
        f"bare {type(err).__name__} reached the user: {err!r}\n{''.join(traceback.format_exception(err))}"
    )
    message = str(err)
    missing = [s for s in says if s.lower() not in message.lower()]
    assert not missing, f"{type(err).__name__} message lacks {missing}: {message!r}"


def expect_error(
    fn: Callable[[], Any],
    raises: type[BaseException] | tuple[type[BaseException], ...] = ValueError,
    says: Iterable[str] = (),
) -> BaseException:
    """Run ``fn``; it must raise ``raises`` (not a bare builtin) whose message contains every ``says``."""
    try:
        result = fn()
    except BaseException as err:  # the point is to look at whatever came out
        if isinstance(err, (KeyboardInterrupt, pytest.fail.Exception)):
            raise
        assert_named(err, says)
        assert isinstance(err, raises), (
            f"expected {raises}, got {type(err).__name__}: {err}\n{''.join(traceback.format_exception(err))}"
        )
        return err
    raise AssertionError(f"expected {raises} naming {list(says)}, but it returned {result!r:.200}")


def check(case: Case, tmp_path: Path) -> Any:
    """Run one table case and assert its outcome (an error as described, or ``expect(result)``)."""
    if case.raises is None:
        result = case.run(tmp_path)
        if case.expect is not None:
            case.expect(result)
        return result
    return expect_error(lambda: case.run(tmp_path), case.raises, case.says)


def expect_skip(counts: Mapping[str, int], reason: str, n: int = 1) -> None:
    """A skip counter (reason -> count) holds exactly ``n`` skips whose reason contains ``reason``."""
    got = sum(v for k, v in counts.items() if reason.lower() in str(k).lower())
    assert got == n, f"expected {n} skip(s) for {reason!r}, got {got}: {dict(counts)}"


def expect_cli_error(argv: list[str], capsys: Any, *, code: int = 2, says: Iterable[str] = ()) -> str:
    """``hf-spurious argv`` exits with ``code``, stderr names every ``says`` and shows no traceback."""
    from hf_spurious.cli import main

    debug = os.environ.pop("HF_SPURIOUS_DEBUG", None)  # a developer's shell setting would show tracebacks
    try:
        got = main(list(argv))
    except SystemExit as stop:  # argparse errors and commands that exit
        got = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        if not isinstance(stop.code, int) and stop.code is not None:
            print(stop.code, file=sys.stderr)  # what the interpreter would print for SystemExit("...")
    finally:
        if debug is not None:
            os.environ["HF_SPURIOUS_DEBUG"] = debug
    captured = capsys.readouterr()
    err = captured.err
    assert got == code, f"exit code {got}, expected {code}; stderr: {err!r}; stdout: {captured.out[-500:]!r}"
    assert "Traceback (most recent call last)" not in err, f"traceback on stderr:\n{err}"
    missing = [s for s in says if s.lower() not in err.lower()]
    assert not missing, f"stderr lacks {missing}: {err!r}"
    return err
