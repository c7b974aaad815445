"""The wheel is enough: build it, install it into a fresh venv outside the clone, and run what the README
promises a pip user (install-metrics, evaluate.load("odmap"), the shipped accelerate configs, demo --quick).

Nothing is downloaded: the wheel is built with this environment's setuptools (``--no-build-isolation``) and
installed with ``--no-deps``; the fresh venv sees this environment's dependencies through a ``.pth`` file
(a path line only: the editable install of the clone is not activated there, so ``hf_spurious`` comes from
the wheel). About a minute and a half on a loaded 2-core machine, most of it the quick demo.

The sdist is checked the same way pip uses one from PyPI: built from a copy of the clone with junk planted in
it, then turned into a wheel that must hold the same files, byte for byte, as the wheel built from the tree
(about 20 s).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from fnmatch import fnmatch
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: What a pip user needs besides the Python modules (globs inside the wheel).
PACKAGE_DATA = (
    "hf_spurious/metrics/evaluate_modules/odmap/odmap.py",
    "hf_spurious/metrics/evaluate_modules/odmap/README.md",
    "hf_spurious/metrics/evaluate_modules/aiou/aiou.py",
    "hf_spurious/metrics/evaluate_modules/group_accuracy/group_accuracy.py",
    "hf_spurious/metrics/evaluate_modules/retrieval_recall/retrieval_recall.py",
    "hf_spurious/resources/accelerate/ddp.yaml",
    "hf_spurious/resources/accelerate/ddp_cpu.yaml",
    "hf_spurious/resources/dataset_scripts/coco_decorrelated/README.md",
    "hf_spurious/resources/dataset_scripts/shapes_decorrelated/README.md",
    "hf_spurious/vocab/data/coco.yaml",
    "hf_spurious/models/configs/clip-vit-base-patch32.json",
)
#: Files of the clone's package folder that stay in the clone (wrappers around the installed CLI).
CLONE_ONLY = ("hf_spurious/resources/dataset_scripts/*/build.sh",)
#: Junk planted in the copy the sdist is built from; no path in the sdist may go through these folders.
JUNK = (
    ".venv/lib/python3.11/site-packages/junk.py",
    "demo_output/report.html",
    ".git/HEAD",
    "build/lib/hf_spurious/stale.py",
    "dist/hf_spurious-0.0.1.tar.gz",
    ".pytest_cache/v/cache/nodeids",
    ".ruff_cache/content",
    "src/hf_spurious/__pycache__/cache.cpython-311.pyc",
    "src/hf_spurious/metrics/evaluate_modules/odmap/__pycache__/odmap.cpython-311.pyc",
    "examples/accelerate/__pycache__/ddp.cpython-311.pyc",
)
JUNK_DIRS = frozenset({".venv", "demo_output", ".git", "build", "dist", "__pycache__", ".pytest_cache"})
JUNK_DIRS |= {".ruff_cache", ".hypothesis", ".mypy_cache", ".ipynb_checkpoints"}
#: What the sdist may hold at its top level (PKG-INFO and setup.cfg are written by setuptools).
SDIST_TOP = frozenset({"MANIFEST.in", "PKG-INFO", "README.md", "pyproject.toml", "setup.cfg", "src", "tests"})


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: int = 300) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout


def build_wheel(dest: Path, source: Path = REPO) -> Path:
    """Build the wheel from a copy of the sources (the clone gets no build/ folder)."""
    src = dest / "src_copy"
    for name in ("pyproject.toml", "README.md"):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in ("src", "examples", "dataset_scripts"):
        shutil.copytree(source / name, src / name, symlinks=True, ignore=ignore)
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", str(src)]
    _run([*pip, "-w", str(dest / "dist")], dest, dict(os.environ))
    (wheel,) = (dest / "dist").glob("hf_spurious-*.whl")
    return wheel


def fresh_venv(root: Path, wheel: Path) -> Path:
    """A new venv holding only the wheel; this environment's site-packages give the dependencies."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True, timeout=120)
    python = root / "bin" / "python"
    install = [sys.executable, "-m", "pip", "--python", str(python), "install", "-q"]
    _run([*install, "--no-deps", "--no-index", str(wheel)], root, dict(os.environ))
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(purelib) / "zz_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return root


def copy_clone(dest: Path) -> Path:
    """The clone as a developer leaves it (its stale egg-info included), without its big folders but with
    junk planted where a developer's junk lies."""
    ignore = shutil.ignore_patterns(".venv", ".git", "demo_output", "build", "dist", "__pycache__")
    shutil.copytree(REPO, dest, symlinks=True, ignore=ignore)
    for name in JUNK:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        (dest / name).write_text("junk\n")
    return dest


def build_sdist(source: Path, dest: Path) -> Path:
    """What ``python -m build --sdist`` runs, without isolation: setuptools' PEP 517 hook."""
    code = f"from setuptools import build_meta; print(build_meta.build_sdist({str(dest)!r}))"
    name = _run([sys.executable, "-c", code], source, dict(os.environ)).strip().splitlines()[-1]
    return dest / name


def wheel_from_sdist(sdist: Path, dest: Path) -> Path:
    """Build the wheel from the .tar.gz, as pip does with an sdist from PyPI."""
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", str(sdist)]
    _run([*pip, "-w", str(dest)], dest.parent, dict(os.environ))
    (wheel,) = dest.glob("hf_spurious-*.whl")
    return wheel


def package_files(source: Path) -> set[str]:
    """Every file of the package folder, symlinks followed, without caches and clone-only files."""
    names = set()
    for folder, dirs, files in os.walk(source / "src" / "hf_spurious", followlinks=True):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for file in files:
            name = (Path(folder) / file).relative_to(source / "src").as_posix()
            if not file.endswith((".pyc", ".pyo")) and not any(fnmatch(name, p) for p in CLONE_ONLY):
                names.add(name)
    return names


def wheel_package(wheel: Path) -> dict[str, bytes]:
    """The wheel's files under hf_spurious/ with their bytes."""
    with zipfile.ZipFile(wheel) as archive:
        return {n: archive.read(n) for n in archive.namelist() if n.startswith("hf_spurious/")}


@pytest.mark.slow
def test_sdist_builds_the_same_wheel_and_holds_no_junk(tmp_path):
    clone = copy_clone(tmp_path / "clone")
    expected = package_files(clone)
    assert set(PACKAGE_DATA) <= expected and len(expected) > 150, sorted(expected)

    sdist = build_sdist(clone, tmp_path / "sdist")
    with tarfile.open(sdist) as archive:
        members = archive.getmembers()
    parts = [Path(m.name).parts for m in members]
    assert {p[0] for p in parts} == {sdist.name.removesuffix(".tar.gz")}
    assert {p[1] for p in parts if len(p) > 1} <= SDIST_TOP, sorted({p[1] for p in parts if len(p) > 1})
    junk = [m.name for m, p in zip(members, parts) if JUNK_DIRS & set(p) or ".." in p]
    assert not junk and not any(m.name.endswith((".pyc", ".pyo")) for m in members), junk
    assert not [m.name for m in members if not (m.isfile() or m.isdir())]  # symlinks stored as files
    in_sdist = {"/".join(p[2:]) for m, p in zip(members, parts) if m.isfile() and p[1] == "src"}
    in_sdist = {n for n in in_sdist if n.startswith("hf_spurious/")}
    assert in_sdist == expected, f"lost: {sorted(expected - in_sdist)}, extra: {sorted(in_sdist - expected)}"

    from_sdist = wheel_package(wheel_from_sdist(sdist, tmp_path / "sdist_wheel"))
    from_tree = wheel_package(build_wheel(tmp_path / "tree", clone))
    assert set(from_tree) == expected, f"lost: {sorted(expected - set(from_tree))}"
    assert set(from_sdist) == set(from_tree), sorted(set(from_sdist) ^ set(from_tree))
    assert [n for n in from_tree if from_tree[n] != from_sdist[n]] == []


@pytest.mark.slow
def test_wheel_installs_and_runs_outside_the_clone(tmp_path):
    wheel = build_wheel(tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [n for n in PACKAGE_DATA if n not in names]
    assert not missing, f"not in the wheel: {missing}"

    venv = fresh_venv(tmp_path / "venv", wheel)
    bindir = venv / "bin"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(
        PATH=f"{bindir}{os.pathsep}{env.get('PATH', '')}",
        HF_MODULES_CACHE=str(tmp_path / "modules"),
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        HF_EVALUATE_OFFLINE="1",
    )
    where = _run(
        [str(bindir / "python"), "-c", "import hf_spurious; print(hf_spurious.__file__)"], elsewhere, env
    )
    assert Path(where.strip()).is_relative_to(venv), where  # the wheel's copy, not the clone's

    assert _run([str(bindir / "hf-spurious"), "--version"], elsewhere, env).startswith("hf-spurious 0.1.0")
    out = _run([str(bindir / "hf-spurious"), "install-metrics"], elsewhere, env)
    assert 'evaluate.load("odmap")' in out
    script = (
        "import evaluate, json\n"
        "m = evaluate.load('odmap', config_name='coco')\n"
        "r = m.compute(predictions=[['A man walking on the beach.', 'A dog on a beach.', 'A man and his dog.']],\n"
        "    references=[{'removed_classes': ['dog'], 'present_classes': ['person']}], k=[1, 3])\n"
        "print(json.dumps(r))\n"
    )
    result = json.loads(_run([str(bindir / "python"), "-c", script], elsewhere, env).strip().splitlines()[-1])
    assert (
        round(result["odmap@3"], 2) == 33.33 and result["removed_mention_rate@1"] == 0.0
    )  # the card's example

    config = Path(_run([str(bindir / "hf-spurious"), "accelerate-config", "ddp_cpu"], elsewhere, env).strip())
    assert config.is_file() and config.is_relative_to(venv) and "distributed_type" in config.read_text()

    # the quick demo (about a minute): the whole pipeline from the installed package
    _run(
        [str(bindir / "hf-spurious"), "demo", "--quick", "--quiet", "--out", "q"], elsewhere, env, timeout=600
    )
    assert (elsewhere / "q" / "report.html").is_file() and (elsewhere / "q" / "results.json").is_file()
