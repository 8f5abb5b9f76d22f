"""The layers hold: workflows do no I/O, the model imports nothing of ours, activities import neither
the CLI nor the lab, and no product module imports the lab (import-linter, plus the two top-level
modules that import-linter cannot take as roots)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PRODUCT_PACKAGES = {"model", "workflows", "activities", "cliapp"}
TOP_LEVEL_MODULES = {"cli", "worker"}
FIRST_PARTY = PRODUCT_PACKAGES | TOP_LEVEL_MODULES | {"lab", "tests", "bench"}


def imported_top_names(path: Path) -> set[str]:
    """Top-level names of every import statement in a file, function-level imports included."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_import_contracts_hold() -> None:
    lint = Path(sys.executable).parent / "lint-imports"
    out = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Contracts: 5 kept, 0 broken" in out.stdout


@pytest.mark.parametrize("module", sorted(TOP_LEVEL_MODULES))
def test_top_level_modules_import_only_the_product(module: str) -> None:
    """cli.py and worker.py import product packages only (which import-linter keeps free of the
    lab), so no chain of imports leads from them to the lab either."""
    ours = imported_top_names(ROOT / f"{module}.py") & FIRST_PARTY
    assert ours <= PRODUCT_PACKAGES | TOP_LEVEL_MODULES, ours - PRODUCT_PACKAGES - TOP_LEVEL_MODULES


def test_workflows_package_holds_only_its_docs() -> None:
    """Importing a workflow module must not pull others in: the package's __init__ is a docstring."""
    tree = ast.parse((ROOT / "workflows" / "__init__.py").read_text())
    assert len(tree.body) == 1 and isinstance(tree.body[0], ast.Expr), "only the versioning policy docstring"
