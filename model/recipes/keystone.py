"""Keystone: expand → (migrate) → contract, alembic since 2023.1; `--migrate` a no-op since Yoga."""

from __future__ import annotations

from model.recipes.base import (
    CHECK,
    CONTRACT,
    EXPAND,
    GATE,
    OFFLINE,
    POSTCHECK,
    QUIESCE,
    ROLL,
    ROLLOUT,
    SNAPSHOT,
    STATUS,
    UNQUIESCE,
    VALIDATE,
    VERIFY,
    Recipe,
    ServiceRecipe,
    none_recipe,
)

RECIPE = ServiceRecipe(
    service="keystone",
    modes={
        # no migrate step: `db_sync --migrate` does nothing since Yoga (data moves within the expand)
        "expand-contract": Recipe(
            "expand-contract",
            (GATE, STATUS, SNAPSHOT, VERIFY, CHECK, EXPAND, ROLL, ROLLOUT, VALIDATE, CONTRACT, POSTCHECK),
            point_of_no_return="contract",
        ),
        "offline": Recipe(
            "offline",
            (GATE, STATUS, QUIESCE, SNAPSHOT, VERIFY, OFFLINE, ROLL, ROLLOUT, UNQUIESCE, VALIDATE),
            point_of_no_return=None,
        ),
        "none": none_recipe(STATUS),
    },
    mode_reason="keystone supports rolling upgrades (expand/contract, the old release serves on the expanded "
    "schema): no downtime, and a failure before the contract goes back with the previous images only",
    databases=("keystone",),
    workloads={"2025.2": ("keystone-api",), "2026.1": ("keystone-api",)},
    tool=("keystone-manage",),
    status=("keystone-status", "upgrade", "check"),
    commands={
        "check": (("db_sync", "--check"),),
        "expand": (("db_sync", "--expand"),),
        "migrate": (("db_sync", "--migrate"),),  # a no-op since Yoga: kept for callers of the phase only
        "contract": (("db_sync", "--contract"),),
        "offline": (("db_sync",),),
    },
    check_states={0: "up-to-date", 2: "expand-needed", 3: "migrate-needed", 4: "contract-needed"},
    downtime="none (expand-contract); offline: the API is stopped from the quiesce to the unquiesce",
    proven="run",
    notes=("`keystone-manage db_sync --migrate` has been a no-op since Yoga: the recipe has no migrate step",),
)
