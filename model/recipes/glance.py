"""Glance: `glance-manage db sync` with the API stopped; expand/migrate/contract only on request."""

from __future__ import annotations

from model.recipes.base import (
    CHECK,
    CONTRACT,
    EXPAND,
    GATE,
    MIGRATE,
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
    service="glance",
    modes={
        "offline": Recipe(
            "offline",
            (GATE, STATUS, QUIESCE, SNAPSHOT, VERIFY, OFFLINE, ROLL, ROLLOUT, UNQUIESCE, VALIDATE),
            point_of_no_return=None,
        ),
        "expand-contract": Recipe(
            "expand-contract",
            (GATE, STATUS, SNAPSHOT, VERIFY, CHECK, EXPAND, MIGRATE, ROLL, ROLLOUT, VALIDATE, CONTRACT, POSTCHECK),
            point_of_no_return="contract",
        ),
        "none": none_recipe(STATUS),
    },
    mode_reason="glance's docs still call rolling (zero-downtime) database upgrades experimental: the recipe "
    "stops glance-api for `glance-manage db sync` (seconds), so no release ever serves on a schema the docs do "
    "not promise it; `mode: expand-contract` runs `db expand | migrate | contract` for those who accept that",
    databases=("glance",),
    workloads={"2025.2": ("glance-api",), "2026.1": ("glance-api",)},
    tool=("glance-manage",),
    status=("glance-status", "upgrade", "check"),
    commands={
        "check": (("db", "check"),),
        "expand": (("db", "expand"),),
        "migrate": (("db", "migrate"),),
        "contract": (("db", "contract"),),
        "offline": (("db", "sync"),),
    },
    check_states={0: "up-to-date", 3: "expand-needed", 4: "migrate-needed", 5: "contract-needed"},
    downtime="offline: the image API is stopped from the quiesce to the unquiesce; expand-contract: none",
    proven="run",
)
