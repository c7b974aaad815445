"""``hf-spurious install-metrics``: make ``evaluate.load("odmap")`` work offline, from any directory.

evaluate 0.4.6 resolves a bare name such as ``"odmap"`` by trying ``./odmap/odmap.py``, then the Hub
Space ``evaluate-metric/odmap``, and when that fails it falls back to its dynamic-modules cache:
``$HF_MODULES_CACHE/evaluate_modules/metrics/evaluate-metric--odmap/<64-hex hash>/odmap.py`` (newest
hash folder wins; every level holds an ``__init__.py``). ``org/odmap`` falls back to ``.../org--odmap/``.
This command copies the package's ``hf_spurious/metrics/evaluate_modules/<name>/<name>.py`` modules there
(they ship in the wheel as package data).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path

from hf_spurious.cli._common import ListAction
from hf_spurious.hub import METRIC_MODULES, METRIC_NAMESPACE

CANONICAL_PREFIX = "evaluate-metric"


def default_modules_cache() -> Path:
    """``$HF_MODULES_CACHE``, else ``$HF_HOME/modules``, else ``$XDG_CACHE_HOME/huggingface/modules`` (as evaluate)."""
    if os.environ.get("HF_MODULES_CACHE"):
        return Path(os.environ["HF_MODULES_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "~/.cache")
    home = os.environ.get("HF_HOME", os.path.join(xdg, "huggingface"))
    return Path(home).expanduser() / "modules"


def default_source_dir() -> Path:
    """The evaluate module folders shipped inside the package (``hf_spurious/metrics/evaluate_modules``)."""
    return Path(__file__).resolve().parents[1] / "metrics" / "evaluate_modules"


def _touch_init(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "__init__.py").touch(exist_ok=True)


def install_module(script: Path, modules_cache: Path, namespace: str | None = None) -> Path:
    """Copy one evaluate module script into the cache folder ``evaluate.load`` falls back to; return its path."""
    name = script.stem
    if not name.isidentifier():
        raise ValueError(f"{script} is not an importable module name.")
    if namespace is not None and (not namespace or "/" in namespace or namespace in (".", "..")):
        raise ValueError(f"--namespace must be a single Hub user or org name; got {namespace!r}.")
    folder = f"{CANONICAL_PREFIX}--{name}" if namespace is None else f"{namespace}--{name}"
    digest = hashlib.sha256(script.read_bytes()).hexdigest()
    root = modules_cache / "evaluate_modules"
    for directory in (root, root / "metrics", root / "metrics" / folder, root / "metrics" / folder / digest):
        _touch_init(directory)
    target = root / "metrics" / folder / digest / f"{name}.py"
    shutil.copyfile(script, target)  # a fresh mtime: the newest hash folder is the one evaluate picks
    os.utime(target)
    return target


def install_metrics(
    source_dir: Path | None = None,
    modules_cache: Path | None = None,
    names: Sequence[str] = METRIC_MODULES,
    namespaces: Iterable[str | None] = (None, METRIC_NAMESPACE),
) -> list[Path]:
    """Install the named modules for each namespace (``None`` = the bare name ``evaluate.load("odmap")``)."""
    source = Path(source_dir) if source_dir is not None else default_source_dir()
    if not source.is_dir():
        raise FileNotFoundError(
            f"No evaluate module folder at {source}: pass --source DIR, a folder holding <name>/<name>.py."
        )
    cache = modules_cache or default_modules_cache()
    installed = []
    for name in names:
        script = Path(source) / name / f"{name}.py"
        if not script.is_file():
            raise FileNotFoundError(
                f"No evaluate module at {script}; known modules: {', '.join(METRIC_MODULES)}."
            )
        for namespace in namespaces:
            installed.append(install_module(script, cache, namespace))
    return installed


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--source",
        type=Path,
        default=None,
        help="folder holding <name>/<name>.py (default: the copies shipped in the package)",
    )
    parser.add_argument(
        "--modules-cache",
        type=Path,
        default=None,
        help="evaluate's dynamic-modules cache (default: $HF_MODULES_CACHE or $HF_HOME/modules)",
    )
    parser.add_argument(
        "--metrics",
        action=ListAction,
        default=list(METRIC_MODULES),
        metavar="NAME",
        help="module names to install",
    )
    parser.add_argument(
        "--namespace",
        action=ListAction,
        default=None,
        help=f"also install as '<namespace>/<name>' (a list; repeatable; default: the bare name and '{METRIC_NAMESPACE}')",
    )


def run(args: argparse.Namespace) -> int:
    names = list(args.metrics)
    namespaces: list[str | None] = [None, *args.namespace] if args.namespace else [None, METRIC_NAMESPACE]
    paths = install_metrics(args.source, args.modules_cache, names, namespaces)
    for path in paths:
        print(path)
    loads = ", ".join(f'evaluate.load("{n}")' for n in names)
    print(f"Installed {len(paths)} module copies; {loads} now work offline.")
    return 0
