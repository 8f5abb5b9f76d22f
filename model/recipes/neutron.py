"""Neutron: `upgrade --expand` while the servers run; `--contract` with every server stopped when
`has_offline_migrations` says so. 2026.1 serves the API as WSGI beside an RPC server and periodic workers."""

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
    START_API,
    STATUS,
    STOP_API,
    UNQUIESCE,
    VALIDATE,
    VERIFY,
    Recipe,
    ServiceRecipe,
    none_recipe,
)

RECIPE = ServiceRecipe(
    service="neutron",
    modes={
        # check = has_offline_migrations (of the target release): when contract migrations need every
        # server stopped, stop-api quiesces them before the contract and start-api brings them back;
        # otherwise both are recorded as skipped and the contract runs while the servers serve
        "expand-contract": Recipe(
            "expand-contract",
            (
                GATE,
                STATUS,
                SNAPSHOT,
                VERIFY,
                CHECK,
                EXPAND,
                ROLL,
                ROLLOUT,
                VALIDATE,
                STOP_API,
                CONTRACT,
                START_API,
                POSTCHECK,
            ),
            point_of_no_return="contract",
        ),
        "offline": Recipe(
            "offline",
            (GATE, STATUS, QUIESCE, SNAPSHOT, VERIFY, OFFLINE, ROLL, ROLLOUT, UNQUIESCE, VALIDATE),
            point_of_no_return=None,
        ),
        "none": none_recipe(STATUS),
    },
    mode_reason="neutron supports rolling upgrades: the expand branch is additive and runs while the old servers "
    "serve; only a contract with offline migrations needs the servers stopped (has_offline_migrations decides)",
    databases=("neutron",),
    workloads={
        # the API is a WSGI application under the workload name neutron-server (neutron has had no
        # neutron-server program since 2025.1: 27.0.4 has none either), the RPC and periodic workers beside it
        "2025.2": ("neutron-server", "neutron-rpc-server", "neutron-periodic-workers"),
        "2026.1": ("neutron-server", "neutron-rpc-server", "neutron-periodic-workers"),
    },
    tool=("neutron-db-manage",),
    status=("neutron-status", "upgrade", "check"),
    commands={
        # exit 1: contract migrations pending that need every server stopped; 0: none
        "check": (("has_offline_migrations",),),
        "expand": (("upgrade", "--expand"),),
        "contract": (("upgrade", "--contract"),),
        "offline": (("upgrade", "heads"),),
    },
    check_states={0: "expand-needed", 1: "offline-contract-needed"},
    downtime="none, unless has_offline_migrations: then the API is stopped for the contract (stop-api → start-api)",
    proven="run",
    notes=(
        "the workload set changed at 2025.1 (the API became WSGI-only; neutron-rpc-server and "
        "neutron-periodic-workers run beside it); 2025.2 → 2026.1 keeps it. 27.0.4 → 28.0.2 has one expand "
        "revision and no contract migration (has_offline_migrations exits 0)",
    ),
)
