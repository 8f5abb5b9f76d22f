"""The layers hold: workflows do no I/O, the model imports neither side (import-linter)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_import_contracts_hold() -> None:
    lint = Path(sys.executable).parent / "lint-imports"
    out = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Contracts: 3 kept, 0 broken" in out.stdout


def test_workflows_package_holds_only_its_docs() -> None:
    """Importing a workflow module must not pull others in: the package's __init__ is a docstring."""
    tree = ast.parse((ROOT / "workflows" / "__init__.py").read_text())
    assert len(tree.body) == 1 and isinstance(tree.body[0], ast.Expr), "only the versioning policy docstring"
