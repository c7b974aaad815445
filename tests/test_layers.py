"""The package's shape, checked from its source: three layers, imports only downward, no cycles, no private
names across modules, and a core that loads none of the heavy Hugging Face libraries.

The import graph is read with ``ast`` (every ``import`` / ``from ... import`` of an ``hf_spurious`` module,
at any depth, function-level imports included). ``python tests/test_layers.py`` prints it.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "hf_spurious"

#: Layer of each top-level part of the package (0 = core, 1 = integration, 2 = apps).
CORE = (
    "_lazy",
    "records",
    "images",
    "cache",
    "hub",
    "vocab",
    "text",
    "metrics",
    "losses",
    "synthesis.planner",
)
INTEGRATION = ("sources", "world", "synthesis", "data", "models", "evaluation", "training")
APPS = ("demo", "cli")
#: Within a layer, a package may import only packages listed before it.
ORDER = (*CORE, *INTEGRATION, *APPS)
#: Heavy libraries the core must not load on import.
HEAVY = ("datasets", "evaluate", "diffusers", "transformers", "peft", "accelerate", "spacy", "matplotlib")


def module_name(path: Path, src: Path = SRC) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def part_of(module: str) -> str:
    """The ORDER entry a module belongs to (``hf_spurious.synthesis.planner`` -> ``synthesis.planner``)."""
    rest = module.removeprefix(PACKAGE).lstrip(".")
    if not rest:
        return ""
    for name in sorted(ORDER, key=len, reverse=True):
        if rest == name or rest.startswith(name + "."):
            return name
    raise AssertionError(f"{module} is in no layer: add its package to CORE, INTEGRATION or APPS")


def layer_of(module: str) -> int:
    part = part_of(module)
    return 0 if part in CORE else 1 if part in INTEGRATION else 2


def _resolve(module: str, is_package: bool, level: int, target: str | None) -> str:
    if level == 0:
        return target or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, target] if target else base)


def imports_of(path: Path, src: Path = SRC) -> list[tuple[str, str, int]]:
    """``(imported module, imported name or "", line)`` for every hf_spurious import in one file."""
    module = module_name(path, src)
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[str, str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, "", node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, is_package, node.level, node.module)
            found += [(base, alias.name, node.lineno) for alias in node.names]
    return [(m, n, line) for m, n, line in found if m == PACKAGE or m.startswith(PACKAGE + ".")]


def modules(src: Path = SRC) -> dict[str, Path]:
    return {module_name(p, src): p for p in sorted((src / PACKAGE).rglob("*.py"))}


def import_graph(src: Path = SRC) -> dict[str, set[str]]:
    """module -> the hf_spurious modules it imports (``from pkg import submodule`` counts as the submodule)."""
    known = modules(src)
    graph: dict[str, set[str]] = {}
    for name, path in known.items():
        edges = set()
        for target, imported, _ in imports_of(path, src):
            sub = f"{target}.{imported}"
            edges.add(sub if sub in known else target)
        edges.discard(name)
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, Iterable[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a node list (first node repeated at the end), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The graph between ORDER parts (the package root's lazy re-exports left out)."""
    out: dict[str, set[str]] = {}
    for src_mod, targets in graph.items():
        a = part_of(src_mod)
        if not a:
            continue
        out.setdefault(a, set()).update(b for t in targets if (b := part_of(t)) and b != a)
    return out


def wrong_way_imports(src: Path = SRC) -> list[str]:
    """Imports that go up a layer, or to a part later in ORDER (the root package's re-exports excepted)."""
    problems = []
    for name, path in modules(src).items():
        if not part_of(name):
            continue
        for target, _, line in imports_of(path, src):
            b = part_of(target)
            if not b or b == part_of(name):
                continue
            if layer_of(target) > layer_of(name):
                problems.append(
                    f"{path.relative_to(src)}:{line} {name} (layer {layer_of(name)}) imports {target}"
                )
            elif ORDER.index(b) > ORDER.index(part_of(name)):
                problems.append(
                    f"{path.relative_to(src)}:{line} {name} imports {target}, which comes later in ORDER"
                )
    return problems


def private_imports(src: Path = SRC) -> list[str]:
    """``from other_module import _private`` across modules, and a private module (``pkg/_common.py``) imported
    from outside its own package (dunder names and the package-wide ``_lazy`` excepted)."""
    problems = []
    for name, path in modules(src).items():
        own_package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for target, imported, line in imports_of(path, src):
            parent, _, last = target.rpartition(".")
            private_name = imported.startswith("_") and not imported.startswith("__")
            private_module = last.startswith("_") and last != "_lazy" and parent != own_package
            if (private_name or private_module) and target != name:
                problems.append(f"{path.relative_to(src)}:{line} imports {imported or target} from {target}")
    return problems


# ------------------------------------------------------------------------------------------------ tests


def test_every_module_has_a_layer():
    for name in modules():
        part_of(name)


def test_no_module_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_package_cycle():
    cycle = find_cycle(package_graph(import_graph()))
    assert cycle is None, "package cycle: " + " -> ".join(cycle)


def test_imports_only_go_down():
    assert wrong_way_imports() == []


def test_no_private_name_crosses_a_module():
    assert private_imports() == []


def test_core_loads_no_heavy_library():
    core = [f"{PACKAGE}.{part}" for part in CORE]
    code = (
        "import importlib, sys\n"
        f"for m in {core!r}: importlib.import_module(m)\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"importing the core loaded: {out.stdout.strip()}"


# ----------------------------------------------------------------- the checks themselves can fail


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = tmp_path / PACKAGE / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def test_checks_catch_a_cycle_an_upward_import_and_a_private_name(tmp_path):
    src = _tree(
        tmp_path,
        {
            "__init__.py": "",
            "records.py": "from hf_spurious.training import trainer\n",  # core -> integration: upward
            "training/__init__.py": "",
            "training/trainer.py": "from hf_spurious.evaluation.topk import _merge\n",  # private + cycle
            "evaluation/__init__.py": "",
            "evaluation/topk.py": "import hf_spurious.training.trainer\ndef _merge(): ...\n",
            "demo/__init__.py": "",
        },
    )
    graph = import_graph(src)
    assert find_cycle(graph) is not None
    assert find_cycle(package_graph(graph)) is not None
    wrong = wrong_way_imports(src)
    assert any("records.py" in w for w in wrong)
    assert any("topk.py" in w and "later in ORDER" in w for w in wrong)
    assert any("_merge" in p for p in private_imports(src))
    (src / PACKAGE / "demo" / "run.py").write_text("from hf_spurious.cli._common import flag\n")
    assert any("demo/run.py" in p for p in private_imports(src))


def test_checks_pass_a_clean_tree(tmp_path):
    src = _tree(
        tmp_path,
        {
            "__init__.py": "",
            "records.py": "",
            "evaluation/__init__.py": "from .topk import merge\n",
            "evaluation/topk.py": "from hf_spurious.records import x\ndef merge(): ...\n",
            "training/__init__.py": "",
            "training/trainer.py": "from hf_spurious.evaluation import merge\n",
            "cli/__init__.py": "",
            "cli/_common.py": "def flag(): ...\n",
            "cli/train.py": "from hf_spurious.cli._common import flag\n",  # a sibling may use it
        },
    )
    assert find_cycle(import_graph(src)) is None
    assert wrong_way_imports(src) == [] and private_imports(src) == []


@pytest.mark.parametrize("rel", ["world/__init__.py", "cli/__init__.py"])
def test_relative_imports_resolve(tmp_path, rel):
    src = _tree(tmp_path, {rel: "from . import x\nfrom .y import z\n"})
    pkg = module_name(src / PACKAGE / rel, src)
    assert [m for m, _, _ in imports_of(src / PACKAGE / rel, src)] == [pkg, f"{pkg}.y"]


if __name__ == "__main__":  # print the package graph, one line per part, bottom layer first
    for part, targets in sorted(package_graph(import_graph()).items(), key=lambda kv: ORDER.index(kv[0])):
        print(
            f"{['core', 'integration', 'apps'][layer_of(PACKAGE + '.' + part)]:12} {part:18} -> {', '.join(sorted(targets))}"
        )
