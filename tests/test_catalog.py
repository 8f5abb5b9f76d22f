"""The worker's activity list and the workflows agree: every activity name a workflow schedules is
registered by ``activities.catalog.ACTIVITIES``, every registered name is scheduled by some
workflow, and ``model/io.py`` names no activity that nobody schedules.

The registered name is read from each function's ``@activity.defn(name=...)`` decorator as written
(its source), so the test needs no private attribute of the Temporal SDK.
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from activities.catalog import ACTIVITIES
from model import io, io_dataplane

ROOT = Path(__file__).resolve().parent.parent
# The activity-name constants: "area.verb" strings (update, query and workflow names have no dot).
NAMES = {k: v for k, v in vars(io).items() if k.isupper() and isinstance(v, str) and "." in v}
# ... and the data plane's (model/io_dataplane.py), which the workflows import by name
DATAPLANE_NAMES = {k: v for k, v in vars(io_dataplane).items() if k.isupper() and isinstance(v, str) and "." in v}


def registered_name(fn: Callable[..., Any]) -> str:
    """The ``name=`` of the function's ``@activity.defn``, resolved in its module."""
    tree = ast.parse(inspect.getsource(fn).lstrip())
    (func,) = tree.body
    assert isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef)  # async: the ledger's, which use the client
    for deco in func.decorator_list:
        if isinstance(deco, ast.Call) and ast.unparse(deco.func) == "activity.defn":
            (keyword,) = (k for k in deco.keywords if k.arg == "name")
            assert isinstance(keyword.value, ast.Name), f"{fn.__name__}: name a model.io constant, not a literal"
            value = getattr(inspect.getmodule(fn), keyword.value.id)
            assert isinstance(value, str)
            return value
    raise AssertionError(f"{fn.__module__}.{fn.__name__} has no @activity.defn(name=...)")


def scheduled_names() -> set[str]:
    """The io.<NAME> activity constants the workflows' sources refer to."""
    found: set[str] = set()
    for path in (ROOT / "workflows").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)):
                continue
            if node.value.id == "io" and node.attr in NAMES:
                found.add(NAMES[node.attr])
        found |= {DATAPLANE_NAMES[n.id] for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id in DATAPLANE_NAMES}
    return found


def test_every_scheduled_activity_is_registered_and_vice_versa() -> None:
    registered = [registered_name(fn) for fn in ACTIVITIES]
    assert len(registered) == len(set(registered)), registered
    assert set(registered) == scheduled_names()


def test_model_io_names_only_activities_that_workflows_schedule() -> None:
    assert set(NAMES.values()) | set(DATAPLANE_NAMES.values()) == scheduled_names()
