"""The code's shape: dependencies point one way (data, models -> train -> reproduce/analysis ->
claims -> report -> cli), and no function grows past the project's limit."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "repro"
# Lower layers never import higher ones; units of one layer never import each other.
LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"errors"}),
    frozenset({"fileio", "tables"}),
    frozenset({"baselines"}),
    frozenset({"data", "models", "calibration"}),
    frozenset({"train"}),
    frozenset({"analysis", "reproduce"}),
    frozenset({"claims"}),
    frozenset({"report"}),
    frozenset({"cli"}),
    frozenset({"__main__", "__init__"}),
)
MAX_FUNCTION_LINES = 60


def unit_of(path: Path) -> str:
    """``repro/train/x.py`` -> ``train``; ``repro/fileio.py`` -> ``fileio``."""
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def imported_units(path: Path) -> set[str]:
    """The top-level units of ``repro`` a module imports, lazily imported ones included."""
    units = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "repro" and len(parts) > 1:
                units.add(parts[1])
    return units


def layer(unit: str) -> int:
    for i, units in enumerate(LAYERS):
        if unit in units:
            return i
    raise AssertionError(f"repro/{unit} is in no layer of tests/test_architecture.py: add it")


def upward_imports(modules: dict[str, set[str]]) -> list[str]:
    """``importer -> imported`` for every import that points up or sideways between units."""
    bad = []
    for importer, imported in modules.items():
        mine = unit_of(Path(importer))
        for unit in sorted(imported - {mine}):
            if layer(unit) >= layer(mine):
                bad.append(f"{importer} -> repro.{unit}")
    return bad


def package_imports() -> dict[str, set[str]]:
    return {str(p): imported_units(p) for p in sorted(PACKAGE.rglob("*.py"))}


def test_dependencies_point_one_way() -> None:
    assert upward_imports(package_imports()) == []


def test_a_cycle_between_two_subpackages_is_caught() -> None:
    fake = {
        str(PACKAGE / "train" / "x.py"): {"reproduce"},
        str(PACKAGE / "reproduce" / "y.py"): {"train"},
    }
    assert upward_imports(fake) == [f"{PACKAGE / 'train' / 'x.py'} -> repro.reproduce"]
    sideways = {str(PACKAGE / "data" / "x.py"): {"models"}}
    assert upward_imports(sideways) == [f"{PACKAGE / 'data' / 'x.py'} -> repro.models"]


def test_no_function_is_longer_than_the_limit() -> None:
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({lines})")
    assert long == []
