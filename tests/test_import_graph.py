"""The import graph the architecture promises: no hidden arrows, no cycle between demo pieces."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "ladseg"


def imports(path: Path, top_level_only: bool = False) -> set[str]:
    """Modules ``path`` imports (``from a.b import c`` gives ``a.b`` and ``a.b.c``)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else ast.walk(tree)
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return found


def local_imports(path: Path) -> list[str]:
    """``module:line`` of every import inside a function."""
    out = []
    for fn in ast.walk(ast.parse(path.read_text())):
        if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            out += [
                f"{path.name}:{n.lineno}" for n in ast.walk(fn) if isinstance(n, ast.Import | ast.ImportFrom)
            ]
    return out


def test_builders_has_no_local_imports() -> None:
    assert local_imports(SRC / "engine" / "builders.py") == []


@pytest.mark.parametrize("package", ["models", "data"])
def test_leaves_are_imported_by_name(package: str) -> None:
    for path in (SRC / package).rglob("*.py"):
        assert not imports(path) & {"pkgutil", "importlib"}, path


@pytest.mark.parametrize(
    ("leaf_dir", "base"),
    [("backbones", "ladseg.models.backbones.base"), ("heads", "ladseg.models.heads.base")],
)
def test_each_registry_sits_beside_its_base_class(leaf_dir: str, base: str) -> None:
    leaves = [p for p in (SRC / "models" / leaf_dir).glob("*.py") if p.stem not in ("__init__", "base")]
    assert leaves
    for path in leaves:
        assert base in imports(path), f"{path.name} registers through {base}"
    package = SRC / "models" / leaf_dir / "__init__.py"
    assert {f"ladseg.models.{leaf_dir}.{p.stem}" for p in leaves} <= imports(package)


def test_demo_pieces_import_without_a_cycle() -> None:
    """recipe <- plots <- report <- pipeline <- kd_benchmark: what writes a report never re-runs a pipeline."""
    demo = {p.stem: imports(p) for p in (SRC / "demo").glob("*.py") if p.stem != "__init__"}
    order = ["recipe", "plots", "report", "pipeline", "kd_benchmark"]
    assert sorted(demo) == sorted(order)
    for i, name in enumerate(order):
        later = {f"ladseg.demo.{m}" for m in order[i + 1 :]}
        assert not demo[name] & later, f"demo/{name}.py imports a later piece: {demo[name] & later}"


LAYERS = ["models", "data", "losses", "methods", "engine"]  # each may import only those before it


@pytest.mark.parametrize("layer", LAYERS)
def test_no_import_runs_back_up_the_layers(layer: str) -> None:
    later = LAYERS[LAYERS.index(layer) + 1 :] + ["demo", "cli"]
    if layer in ("models", "data"):
        later = [x for x in later if x not in ("models", "data")]
    for path in (SRC / layer).rglob("*.py"):
        upward = {
            m for m in imports(path) for x in later if m == f"ladseg.{x}" or m.startswith(f"ladseg.{x}.")
        }
        assert not upward, f"{path.relative_to(SRC)} imports up: {sorted(upward)}"


@pytest.mark.parametrize("leaf", ["errors", "registry", "process_group", "notes", "labels"])
def test_shared_leaf_modules_import_no_other_part(leaf: str) -> None:
    """Every layer may use these, so they import nothing of ladseg but the error types."""
    own = {m for m in imports(SRC / f"{leaf}.py") if m.startswith("ladseg")}
    assert own <= {"ladseg.errors", "ladseg.errors.ConfigError", "ladseg.errors.LadsegError"}, own
