"""The code's shape: dependencies point one way (fileio -> run_config -> store -> data, models -> recipes ->
experiments/matrix summary -> train -> reproduce/analysis -> foreign -> claims -> report -> cli),
no import cycle between modules (imports inside functions included), the verdicts and the report
never import the matrix driver or training, and no function grows past the project's limit."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "repro"
# Lower layers never import higher ones; units of one layer never import each other.
LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"errors"}),
    frozenset({"fileio", "tables", "devices", "environment"}),  # devices, environment: run anywhere
    frozenset({"baselines", "run_config"}),  # run_config: config.json's record (issue 25 item 5)
    frozenset({"store"}),  # store: the run directory's files, Run, Matrix, RunLock
    frozenset({"data", "models", "calibration"}),
    frozenset({"recipes", "evaluate"}),  # the recipes (Sec. 4.2); test error of any net
    frozenset({"experiments", "matrix_summary"}),  # what a matrix is and its statistics (issue 25)
    frozenset({"train"}),
    frozenset({"analysis", "reproduce"}),
    frozenset({"foreign"}),  # other people's checkpoints and logs (issue 25)
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


# --- module-level cycles, imports inside function bodies included ---------------------------------

# The verdicts, the report and a matrix's statistics read definitions, statistics and the run
# store, never the matrix driver or training (issue 25).
NOT_FROM_DRIVERS = ("repro.claims", "repro.calibration", "repro.report", "repro.matrix_summary")
DRIVERS = ("repro.reproduce", "repro.train")


def module_name(path: Path) -> str:
    """``repro/train/x.py`` -> ``repro.train.x``; ``repro/train/__init__.py`` -> ``repro.train``."""
    parts = ("repro", *path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, known: set[str]) -> set[str]:
    """The ``known`` modules a source imports anywhere in it (function bodies too): ``from a import
    b`` is module ``a.b`` where that is one, else ``a``."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            subs = [f"{node.module}.{a.name}" for a in node.names]
            names = [sub if sub in known else node.module for sub in subs]
        else:
            continue
        out |= {name for name in names if name in known}
    return out


def module_graph() -> dict[str, set[str]]:
    paths = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
    known = set(paths)
    return {m: imported_modules(p.read_text(), known) - {m} for m, p in paths.items()}


def cycles(graph: dict[str, set[str]]) -> set[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: set[frozenset[str]] = set()

    def visit(root: str) -> None:
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = set()
                    while not comp or node not in comp:
                        comp.add(stack.pop())
                    if len(comp) > 1:
                        found.add(frozenset(comp))
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                work.append((child, iter(sorted(graph.get(child, ())))))
            elif child in stack:
                low[node] = min(low[node], index[child])

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def driver_imports(graph: dict[str, set[str]]) -> list[str]:
    """``importer -> repro.reproduce...`` (or ``repro.train...``) for every such import by claims,
    calibration, report or matrix_summary."""
    return [
        f"{m} -> {target}"
        for m, targets in sorted(graph.items())
        if any(m == top or m.startswith(top + ".") for top in NOT_FROM_DRIVERS)
        for target in sorted(targets)
        if any(target == top or target.startswith(top + ".") for top in DRIVERS)
    ]


def test_no_import_cycle_between_modules() -> None:
    assert [sorted(c) for c in cycles(module_graph())] == []


def test_a_cycle_hidden_in_a_function_body_is_caught() -> None:
    known = {"repro.a", "repro.b", "repro.c"}
    lazy = "def f():\n    from repro.b import thing\n"
    assert imported_modules(lazy, known) == {"repro.b"}
    graph = {
        "repro.a": imported_modules(lazy, known),
        "repro.b": imported_modules("import repro.c\n", known),
        "repro.c": imported_modules("from repro import a\n", known),
    }
    assert cycles(graph) == {frozenset(known)}
    graph["repro.c"] = set()
    assert cycles(graph) == set()


def test_verdicts_and_report_do_not_import_the_matrix_driver_or_training() -> None:
    assert driver_imports(module_graph()) == []


def test_an_import_of_the_matrix_driver_by_the_report_is_caught() -> None:
    known = {"repro.report.report", "repro.reproduce.runner", "repro.experiments", "repro.train.x"}
    lazy = "def f():\n    from repro.reproduce.runner import x\n    import repro.experiments\n"
    graph = {"repro.report.report": imported_modules(lazy, known)}
    assert driver_imports(graph) == ["repro.report.report -> repro.reproduce.runner"]
    graph = {"repro.claims": imported_modules("def f():\n    import repro.train.x\n", known)}
    assert driver_imports(graph) == ["repro.claims -> repro.train.x"]
