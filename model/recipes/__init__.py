"""Per-service upgrade recipes, one module per service, and how a plan's service finds its own.

``RECIPES_BY_SERVICE[name]`` is the :class:`ServiceRecipe` of a service the plan names (keystone,
placement, glance, neutron, nova, cinder); any other service runs the generic recipe of its
migration mode (``GENERIC``, what every service ran before). :func:`recipe_for` is what the workflow
runs, :func:`service_steps` the steps that apply to one plan's service, :func:`databases` the
databases snapshotted, verified and restored together. The rules (Step, Recipe, decide) are in
model/recipes/base.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from model.recipes import cinder, glance, keystone, neutron, nova, placement
from model.recipes.base import (
    CHECK,
    CONTRACT,
    DATAPLANE,
    EXPAND,
    GATE,
    GENERIC,
    MIGRATE,
    MIGRATION_BOOKKEEPING,
    OFFLINE,
    ONLINE,
    POSTCHECK,
    QUIESCE,
    ROLL,
    ROLLOUT,
    SNAPSHOT,
    START_API,
    STATUS,
    STOP_API,
    UNPIN,
    UNQUIESCE,
    VALIDATE,
    VERIFY,
    Commands,
    DbUse,
    Mode,
    Proven,
    Recipe,
    Rollback,
    RollbackKind,
    ServiceRecipe,
    Step,
    Undo,
    decide,
)

if TYPE_CHECKING:
    from model.plan import Database, Service

RECIPES_BY_SERVICE: dict[str, ServiceRecipe] = {
    r.service: r for r in (keystone.RECIPE, placement.RECIPE, glance.RECIPE, neutron.RECIPE, nova.RECIPE, cinder.RECIPE)
}
RECIPES = GENERIC  # by mode: the generic recipes (the name model/recipe.py always exported)

# The steps that only a per-service recipe has: the workflow runs them only where its history says
# it may (workflows/service.py: the "service-recipes" patch), and a history written before has none.
RECIPE_ONLY_STEPS = frozenset({STATUS.name, ONLINE.name, UNPIN.name, STOP_API.name, START_API.name})


def service_recipe(name: str) -> ServiceRecipe | None:
    return RECIPES_BY_SERVICE.get(name)


def databases(svc: Service) -> list[Database]:
    """The databases of a service, snapshotted, verified and restored together (nova has three)."""
    return svc.all_databases


def recipe_for(svc: Service, per_service: bool = True) -> Recipe:
    """The recipe a service runs: its own for the plan's mode (``per_service``), else the generic one."""
    own = service_recipe(svc.name) if per_service else None
    if own is not None and svc.migration.mode in own.modes:
        return own.recipe(svc.migration.mode)
    return GENERIC[svc.migration.mode]


def service_steps(svc: Service, per_service: bool = True) -> list[str]:
    """The steps a service runs, in order: its recipe minus what does not apply to it."""
    has_db = bool(databases(svc))
    out = []
    for s in recipe_for(svc, per_service).steps:
        # the snapshot needs the plan's database; a migration reaches its own through its config
        if (s is GATE and not svc.gate_name) or (s in (SNAPSHOT, VERIFY) and not has_db):
            continue
        if s in (VALIDATE, POSTCHECK) and not svc.checks:
            continue
        if s is DATAPLANE and svc.data_plane is None:
            continue
        out.append(s.name)
    return out


__all__ = [
    "CHECK",
    "CONTRACT",
    "DATAPLANE",
    "EXPAND",
    "GATE",
    "GENERIC",
    "MIGRATE",
    "MIGRATION_BOOKKEEPING",
    "OFFLINE",
    "ONLINE",
    "POSTCHECK",
    "QUIESCE",
    "RECIPES",
    "RECIPES_BY_SERVICE",
    "RECIPE_ONLY_STEPS",
    "ROLL",
    "ROLLOUT",
    "SNAPSHOT",
    "START_API",
    "STATUS",
    "STOP_API",
    "UNPIN",
    "UNQUIESCE",
    "VALIDATE",
    "VERIFY",
    "Commands",
    "DbUse",
    "Mode",
    "Proven",
    "Recipe",
    "Rollback",
    "RollbackKind",
    "ServiceRecipe",
    "Step",
    "Undo",
    "databases",
    "decide",
    "recipe_for",
    "service_recipe",
    "service_steps",
]
