"""The wheel is enough: build it, install it into a fresh venv outside the clone, and run what the README
promises a pip user (install-metrics, evaluate.load("odmap"), the shipped accelerate configs, demo --quick).

Nothing is downloaded: the wheel is built with this environment's setuptools (``--no-build-isolation``) and
installed with ``--no-deps``; the fresh venv sees this environment's dependencies through a ``.pth`` file
(a path line only: the editable install of the clone is not activated there, so ``hf_spurious`` comes from
the wheel). About a minute and a half on a loaded 2-core machine, most of it the quick demo.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
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


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: int = 300) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout


def build_wheel(dest: Path) -> Path:
    """Build the wheel from a copy of the sources (the clone gets no build/ folder)."""
    src = dest / "src_copy"
    for name in ("pyproject.toml", "README.md"):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in ("src", "examples", "dataset_scripts"):
        shutil.copytree(REPO / name, src / name, symlinks=True, ignore=ignore)
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
