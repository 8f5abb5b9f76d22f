"""Placement: `placement-manage db sync`, then `online_data_migrations` once it all runs the new release."""

from __future__ import annotations

from model.recipes.base import ServiceRecipe, sync_then_online_modes

ODM = (("db", "online_data_migrations", "--max-count", "1000"),)

RECIPE = ServiceRecipe(
    service="placement",
    # expand-contract runs `db sync` while the old release serves: placement has no expand/contract
    # split, so that mode is the operator's call that its migrations between the releases are additive
    modes=sync_then_online_modes(),
    mode_reason="placement has one schema command (`db sync`) and no expand/contract split: stopped for it, "
    "the snapshot holds every write and a failed sync is restored without losing any",
    databases=("placement",),
    workloads={"2025.2": ("placement-api",), "2026.1": ("placement-api",)},
    tool=("placement-manage",),
    status=("placement-status", "upgrade", "check"),
    commands={
        "expand": (("db", "sync"),),
        "offline": (("db", "sync"),),
        "online": ODM,
        "migrate": ODM,  # the phase's old name for the online data migrations
    },
    repeat_phases=frozenset({"online", "migrate"}),
    # placement-status: rows without a root provider id, allocations without a consumer record
    online_checks=("Missing Root Provider IDs", "Incomplete Consumers"),
    downtime="offline: the API is stopped from the quiesce to the unquiesce (seconds: one db sync)",
    proven="run",
    notes=("online data migrations are the point of no return: rows they rewrite are not promised to the old release",),
)
