"""Cinder: `cinder-manage db sync`, then `online_data_migrations`. Never run against a real cinder here."""

from __future__ import annotations

from model.recipes.base import (
    EXPAND,
    GATE,
    OFFLINE,
    ONLINE,
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

ODM = (("db", "online_data_migrations", "--max_count", "1000"),)

RECIPE = ServiceRecipe(
    service="cinder",
    modes={
        "offline": Recipe(
            "offline",
            (GATE, STATUS, QUIESCE, SNAPSHOT, VERIFY, OFFLINE, ROLL, ROLLOUT, UNQUIESCE, VALIDATE, ONLINE, POSTCHECK),
            point_of_no_return="online",
        ),
        "expand-contract": Recipe(
            "expand-contract",
            (GATE, STATUS, SNAPSHOT, VERIFY, EXPAND, ROLL, ROLLOUT, VALIDATE, ONLINE, POSTCHECK),
            point_of_no_return="online",
        ),
        "none": none_recipe(STATUS),
    },
    mode_reason="not run against a real cinder: offline is the mode whose restore loses nothing",
    databases=("cinder",),
    workloads={
        "2025.2": ("cinder-api", "cinder-scheduler", "cinder-volume", "cinder-backup"),
        "2026.1": ("cinder-api", "cinder-scheduler", "cinder-volume", "cinder-backup"),
    },
    tool=("cinder-manage",),
    status=("cinder-status", "upgrade", "check"),
    commands={
        "expand": (("db", "sync"),),
        "offline": (("db", "sync"),),
        "online": ODM,
        "migrate": ODM,
    },
    repeat_phases=frozenset({"online", "migrate"}),
    downtime="offline: the volume API is stopped from the quiesce to the unquiesce",
    proven="not run",
    notes=("follows the upstream docs only: a plan must say `migration.unproven_recipe: accept` to use it",),
)
