"""The package's layers: sub-packages in one order, imports that point down it, no import cycle, small
modules and functions, and an analysis that needs no torch.

`LAYERS` is the one statement of the order; README's drawing of it is generated from the package itself
(`python tests/test_layout.py` prints it) and checked here, so the two cannot drift.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "xablate"

LAYERS: tuple[str, ...] = ("base", "model", "spec", "data", "engine", "cell", "sweep", "main")
"""Lowest first. `base` is the modules at the package's top (torch-free: the axes, the errors, the one
atomic write, W&B's start-up, whether a curve still rises), `main` the commands; the others are sub-packages.
A module may import its own layer and those below it, never one above."""

MAIN_MODULES: frozenset[str] = frozenset({"__init__", "__main__", "log_wandb"})
"""The top-level modules of layer `main`: the package's face and its commands (`python -m xablate`,
`python -m xablate.log_wandb`); every other top-level module is `base`."""

MAX_FUNCTION_LINES = 60
MAX_MODULE_LINES = 275


def module_of(path: Path) -> str:
    """A file's dotted name inside xablate, such as `engine.loop` (`data` for `data/__init__.py`)."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" and len(parts) > 1 else parts)


def layer_of(module: str) -> str:
    """The layer of a dotted module name: its sub-package, or `base`/`main` for the top-level files."""
    head = module.split(".")[0]
    if "." in module or (PACKAGE / head).is_dir():
        return head
    return "main" if head in MAIN_MODULES else "base"


def _target(node: ast.ImportFrom, here: tuple[str, ...]) -> list[str]:
    """The xablate modules an import names (dotted, relative to the package); none for outside imports."""
    if node.level == 0:
        parts = (node.module or "").split(".")
        if parts[0] != "xablate":
            return []
        base = parts[1:]
    else:
        base = [*here[: len(here) - (node.level - 1)], *(node.module.split(".") if node.module else [])]
    names = []
    for alias in node.names:
        candidate = [*base, alias.name]
        is_module = (PACKAGE.joinpath(*candidate).with_suffix(".py")).exists() or PACKAGE.joinpath(*candidate).is_dir()
        names.append(".".join(candidate if is_module else base))
    return [n for n in names if n]


def internal_imports(path: Path) -> list[tuple[str, bool]]:
    """The xablate modules a file imports, each with whether the import sits inside a function."""
    tree = ast.parse(path.read_text())
    here = path.relative_to(PACKAGE).parts[:-1]
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.ImportFrom):
                found.extend((target, nested) for target in _target(child, here))
            visit(child, nested)

    visit(tree, False)
    return found


def import_graph() -> dict[str, set[str]]:
    """Each xablate module and the modules it imports (a package's `__init__` stands for the package)."""
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        source = module_of(path)
        graph.setdefault(source, set()).update(t for t, _ in internal_imports(path) if t != source)
    return graph


def layer_drawing() -> str:
    """README's drawing of the layers, lowest first, each with its modules, made from the package itself."""
    members: dict[str, list[str]] = {layer: [] for layer in LAYERS}
    for path in sorted(PACKAGE.rglob("*.py")):
        module = module_of(path)
        if path.name != "__init__.py" or layer_of(module) == "main":
            members[layer_of(module)].append(module.rpartition(".")[2])
    width = max(map(len, LAYERS))
    return "\n".join(f"{layer:<{width}}  {', '.join(sorted(members[layer]))}" for layer in LAYERS)


def test_every_subpackage_is_a_layer() -> None:
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert packages <= set(LAYERS), f"add {sorted(packages - set(LAYERS))} to LAYERS in tests/test_layout.py"


def test_xablate_has_no_import_cycle() -> None:
    graph = import_graph()
    try:
        list(TopologicalSorter(graph).static_order())
    except CycleError as err:
        pytest.fail(f"import cycle: {' -> '.join(err.args[1])}")
    assert {"engine.build", "spec.record", "engine.state"} <= graph["engine.loop"], "the import parser lost imports"


def test_every_import_points_down_the_layers() -> None:
    rank = {layer: index for index, layer in enumerate(LAYERS)}
    upward = [
        f"{source} ({layer_of(source)}) imports {target} ({layer_of(target)})"
        for source, targets in import_graph().items()
        for target in targets
        if rank[layer_of(target)] > rank[layer_of(source)]
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


def test_readme_draws_the_layers_as_they_are() -> None:
    drawing = layer_drawing()
    assert f"```\n{drawing}\n```" in (ROOT / "README.md").read_text(), (
        f"README's layer drawing is out of date; it should read:\n{drawing}"
    )


@pytest.mark.parametrize("folder", ["xablate", "analysis"])
def test_functions_and_modules_stay_small(folder: str) -> None:
    too_long = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        source = path.read_text()
        if len(source.splitlines()) > MAX_MODULE_LINES:
            too_long.append(f"{path.relative_to(ROOT)}: {len(source.splitlines())} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {length} lines")
    assert not too_long, "\n".join(too_long)


def test_analysis_and_the_modules_it_shares_import_without_torch() -> None:
    """The analysis runs where no torch is installed; it shares the axes, a cell's identity and record, and
    W&B's start-up with the trainer."""
    code = (
        "import importlib, pkgutil, sys\n"
        "import analysis, xablate.axes, xablate.spec.cell, xablate.spec.record, xablate.wandb_run\n"
        "import xablate.engine.tracking\n"
        "for info in pkgutil.iter_modules(analysis.__path__, 'analysis.'):\n"
        "    importlib.import_module(info.name)\n"
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


if __name__ == "__main__":
    print(layer_drawing())
