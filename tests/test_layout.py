"""The package's layering: imports point one way, nothing hides a cycle, and the analysis needs no torch.

The layers, lowest first, are README's Development section; a module may import its own layer and those
below it, never one above.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "xablate"

LAYERS: tuple[tuple[str, frozenset[str]], ...] = (
    ("base", frozenset({"errors", "axes", "summary", "convergence", "files", "lock"})),
    ("model", frozenset({"layers", "spatial", "models", "costs"})),
    ("config", frozenset({"config", "identity"})),
    (
        "engine",
        frozenset(
            {
                "data",
                "runtime",
                "distributed",
                "schedule",
                "metrics",
                "checkpoint",
                "progress",
                "tracking",
                "runlog",
                "signals",
                "provenance",
                "engine",
                "train",
            }
        ),
    ),
    ("cell", frozenset({"lifecycle", "reuse"})),
    ("sweep", frozenset({"preflight", "sweep"})),
    ("main", frozenset({"__main__", "__init__"})),
)


def module_name(path: Path) -> str:
    """`data` for every file of the data sub-package (it is one unit of the layering), else the file's stem."""
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] if len(relative.parts) > 1 else path.stem


def layer_of(module: str) -> int:
    for index, (_, members) in enumerate(LAYERS):
        if module in members:
            return index
    raise AssertionError(f"xablate/{module} is in no layer of tests/test_layout.py (and README's Development)")


def internal_imports(path: Path) -> list[tuple[str, bool]]:
    """The xablate modules a file imports, each with whether the import sits inside a function."""
    tree = ast.parse(path.read_text())
    here = path.relative_to(PACKAGE).parts[:-1]
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.ImportFrom):
                target = _target(child, here)
                if target is not None:
                    names = [alias.name for alias in child.names]
                    for name in names if target == "" else [target]:
                        found.append((name, nested))
            visit(child, nested)

    visit(tree, False)
    return [(name, nested) for name, nested in found if (PACKAGE / name).exists() or (PACKAGE / f"{name}.py").exists()]


def _target(node: ast.ImportFrom, here: tuple[str, ...]) -> str | None:
    """The top-level xablate module an import names ("" for `from . import x`), None for outside imports."""
    if node.level == 0:
        parts = (node.module or "").split(".")
        return parts[1] if parts[0] == "xablate" and len(parts) > 1 else ("" if parts == ["xablate"] else None)
    base = list(here[: len(here) - (node.level - 1)])
    parts = [*base, *(node.module.split(".") if node.module else [])]
    return parts[0] if parts else ""


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        source = module_name(path)
        graph.setdefault(source, set()).update(t for t, _ in internal_imports(path) if t != source)
    return graph


def test_xablate_has_no_import_cycle() -> None:
    try:
        order = list(TopologicalSorter(import_graph()).static_order())
    except CycleError as err:
        pytest.fail(f"import cycle: {' -> '.join(err.args[1])}")
    assert "axes" in order and "__main__" in order


def test_every_import_points_down_the_layers() -> None:
    upward = [
        f"{source} ({LAYERS[layer_of(source)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
        for source, targets in import_graph().items()
        for target in targets
        if layer_of(target) > layer_of(source)
    ]
    assert not upward, "\n".join(upward)


def test_no_function_imports_an_xablate_module() -> None:
    """A function-local import is how a cycle hides; xablate imports its own modules at the top."""
    local = [
        f"{path.relative_to(PACKAGE)} imports {target} inside a function"
        for path in sorted(PACKAGE.rglob("*.py"))
        for target, nested in internal_imports(path)
        if nested
    ]
    assert not local, "\n".join(local)


def test_analysis_and_the_modules_it_shares_import_without_torch() -> None:
    """The analysis runs where no torch is installed; it shares the axes and the tracker's W&B settings."""
    code = (
        "import importlib, pkgutil, sys\n"
        "import analysis, xablate.axes, xablate.identity, xablate.tracking\n"
        "for info in pkgutil.iter_modules(analysis.__path__, 'analysis.'):\n"
        "    importlib.import_module(info.name)\n"
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
