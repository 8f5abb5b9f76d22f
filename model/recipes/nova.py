"""Nova: no expand phase and no contract. `api_db sync`, `db sync` (cell0 and the cell) while the old
release serves; roll with computes pinned to the old RPC version; a restart to unpin once every
workload runs the new release; online data migrations, the point of no return."""

from __future__ import annotations

from model.recipes.base import UNPIN, ServiceRecipe, sync_then_online_modes

ODM = (("db", "online_data_migrations", "--max-count", "1000"),)

RECIPE = ServiceRecipe(
    service="nova",
    # "expand-contract" names the plan's mode: the schema changes while the old release serves. Nova's
    # schema migrations are additive (its "expand" is the two syncs); it has no contract.
    modes=sync_then_online_modes(UNPIN),
    mode_reason="nova supports rolling upgrades: its schema migrations are additive, the old services keep "
    "working on the synced schema and the computes stay pinned to the old RPC version until the unpin restart; "
    "the way back ends when the online data migrations start (not at a contract: nova has none)",
    databases=("nova_api", "nova_cell0", "nova"),
    workloads={
        "2025.2": ("nova-api", "nova-conductor", "nova-scheduler", "nova-compute"),
        "2026.1": ("nova-api", "nova-conductor", "nova-scheduler", "nova-compute"),
    },
    tool=("nova-manage",),
    status=("nova-status", "upgrade", "check"),
    commands={
        # api_db first (nova_api), then db sync: cell0 and the cell of the tool's [database]/connection
        "expand": (("api_db", "sync"), ("db", "sync")),
        "offline": (("api_db", "sync"), ("db", "sync")),
        "online": ODM,
        "migrate": ODM,  # the phase's old name for the online data migrations
    },
    repeat_phases=frozenset({"online", "migrate"}),
    downtime="none (rolling); offline: the API and conductor are stopped from the quiesce to the unquiesce",
    proven="run",
    data_plane_binary="nova-compute",
    # nova/objects/service.py SERVICE_VERSION of 32.2.1 and 33.0.2 (compute RPC 6.4 and 6.5)
    service_versions={"2025.2": 70, "2026.1": 72},
    data_plane_selector="application=nova,component=compute",
    notes=(
        "the deployment's nova.conf must set [upgrade_levels] compute=auto: it is the pin the unpin restart lifts",
        "nova_api, nova_cell0 and nova are snapshotted, verified and restored together: a restore of one alone "
        "would leave the others on the new schema",
        "`db sync` covers cell0 and the cell in the tool's config; a deployment with more cells runs it per cell",
    ),
)
