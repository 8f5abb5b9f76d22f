"""Cinder: `cinder-manage db sync`, then `online_data_migrations`. Never run against a real cinder here."""

from __future__ import annotations

from model.recipes.base import ServiceRecipe, sync_then_online_modes

ODM = (("db", "online_data_migrations", "--max_count", "1000"),)

RECIPE = ServiceRecipe(
    service="cinder",
    modes=sync_then_online_modes(),
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
