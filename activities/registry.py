"""Every activity the workflows call, real where it exists and an honest failure where not.

The worker registers ``all_activities()``. An activity name from ``model.io.ALL_ACTIVITIES`` with
no real implementation yet is registered as a stub that fails permanently, naming itself, so an
upgrade stops with a clear message instead of a retry loop or, worse, a fake success.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from temporalio import activity

from model import io
from model.errors import not_implemented

# Modules holding real activities; each is optional until its issue lands.
MODULES = (
    "activities.kube",
    "activities.database",
    "activities.migration",
    "activities.validation",
    "activities.tempest",
)


def _stub(name: str) -> Callable[..., Any]:
    @activity.defn(name=name)
    def stub(_: dict[str, Any]) -> None:
        raise not_implemented(name)

    return stub


def real_activities() -> dict[str, Callable[..., Any]]:
    found: dict[str, Callable[..., Any]] = {}
    for mod_name in MODULES:
        try:
            mod = importlib.import_module(mod_name)
        except ModuleNotFoundError as e:
            if e.name != mod_name:
                raise
            continue
        for obj in vars(mod).values():
            defn = activity._Definition.from_callable(obj) if callable(obj) else None
            if defn and defn.name in io.ALL_ACTIVITIES:
                found[defn.name] = obj
    return found


def all_activities() -> list[Callable[..., Any]]:
    real = real_activities()
    return [real.get(name) or _stub(name) for name in io.ALL_ACTIVITIES]


def missing() -> list[str]:
    real = real_activities()
    return [name for name in io.ALL_ACTIVITIES if name not in real]
