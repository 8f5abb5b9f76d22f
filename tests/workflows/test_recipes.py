"""The per-service recipes (model/recipes/) in the workflow, with stand-in activities: a nova-like
plan runs its steps in order (the target release's status check before the roll, all three databases
snapshotted and verified, the unpin restart after the rollout, online data migrations called again
until done) and is rolled back by phase (a failure once the online data migrations started is fixed
forward); neutron stops its servers for a contract only when offline migrations are pending."""

from __future__ import annotations

from typing import Any

import pytest
from temporalio.client import Client

from model import errors, io
from model.recipes import RECIPES_BY_SERVICE, decide, service_steps
from tests.standins import Script
from tests.workflows.helpers import (
    NOVA_DATABASES,
    make_plan,
    outcome_of,
    running,
    service,
    service_handle,
    start,
    update,
    wait_for,
    waiting_for_decision,
)
from tests.workflows.test_canary import run_canary
from workflows.service_steps import ONLINE_CALLS

IMAGE = "registry/nova:33.0.2"
WORKLOADS = [
    {"kind": "Deployment", "name": "nova-api", "container": "nova-api", "image": IMAGE},
    {"kind": "Deployment", "name": "nova-conductor", "container": "nova-conductor", "image": IMAGE},
    {"kind": "DaemonSet", "name": "nova-compute", "container": "nova-compute", "image": IMAGE, "quiesce": False},
]
MORE = io.MigrateResult(phase="online", state="more-to-do", exit_code=1, rounds=50)
DONE = io.MigrateResult(phase="online", state="done", rounds=3)


def nova(**extra: Any) -> dict[str, Any]:
    return service("nova", workloads=WORKLOADS, **extra)


# What the nova plan calls after the pre-flight, in order (online data migrations: once, "done").
NOVA_STEPS = [
    "checks.run:upgrade-status:pre",  # the target release's status check, before anything changes
    *["db.snapshot"] * 3,
    *["db.verify_snapshot"] * 3,
    "migration.db_sync:expand",  # api_db sync, db sync
    "k8s.read_images",
    "k8s.set_images",
    "k8s.wait_rollout",
    "k8s.restart",  # the unpin: every workload runs the new release now
    "k8s.wait_rollout",
    "checks.run:endpoint:post",
    "tempest.run",
    "migration.db_sync:online",  # the point of no return
    "checks.run:endpoint:post",
]


async def test_nova_runs_its_recipe_in_order(client: Client) -> None:
    script = Script()
    plan = make_plan([nova()])
    async with running(client, script) as tq:
        handle = await start(client, plan, tq)
        report = await handle.result()
        child = await service_handle(client, plan, "nova").query("status", result_type=io.ServiceProgress)
    assert report.outcome == "succeeded"
    assert script.calls == ["k8s.read_images", "checks.run:endpoint:pre", *NOVA_STEPS]
    assert script.databases == NOVA_DATABASES  # snapshotted together, in the plan's order
    (svc,) = report.services
    assert [s.database for s in svc.snapshots] == NOVA_DATABASES and svc.snapshot == svc.snapshots[0]
    done = [r.step for r in svc.steps if r.status == "done"]
    assert done.index("unpin") > done.index("rollout") and done.index("online") > done.index("validate")
    assert child.steps_done == child.steps_total == len(service_steps(plan.services[0])) == 10
    assert child.past_point_of_no_return


async def test_online_data_migrations_are_called_again_until_done(client: Client) -> None:
    script = Script()
    script.answers["migration.db_sync:online"] = [MORE, MORE, DONE]
    async with running(client, script) as tq:
        report = await (await start(client, make_plan([nova()]), tq)).result()
    assert script.calls.count("migration.db_sync:online") == 3
    assert script.calls[-2:] == ["migration.db_sync:online", "checks.run:endpoint:post"]
    (online,) = [r for r in report.services[0].steps if r.step == "online"]
    assert online.status == "done" and online.detail == "done after 3 call(s), 103 round(s)"


async def test_online_data_migrations_that_never_finish_wait_for_a_forward_fix(client: Client) -> None:
    script = Script()
    script.answers["migration.db_sync:online"] = [MORE]
    async with running(client, script) as tq:
        handle = await start(client, make_plan([nova()]), tq)
        st = await wait_for(client, handle, waiting_for_decision)
        assert st.services[0].past_point_of_no_return and "fix forward" in st.services[0].message
        assert f"still had work after {ONLINE_CALLS} calls" in st.services[0].message
        await update(handle, "abort", io.AbortRequest(reason="DBA looks at it"))
        kind, report = await outcome_of(handle)
    assert script.calls.count("migration.db_sync:online") == ONLINE_CALLS
    assert kind == errors.UPGRADE_FAILED and "past the point of no return (online)" in report.message
    assert not {"db.restore", "k8s.undo_images", "k8s.scale:down"} & set(script.calls)


async def test_a_failure_once_the_online_data_migrations_started_is_fixed_forward(client: Client) -> None:
    script = Script()
    script.fail["migration.db_sync:online"] = errors.MIGRATION_FAILED
    script.fail_times["migration.db_sync:online"] = 1
    async with running(client, script) as tq:
        handle = await start(client, plan := make_plan([nova()]), tq)
        st = await wait_for(client, handle, waiting_for_decision)
        assert st.services[0].decision == "nova/online#1" and st.services[0].answers == ["resume", "abort"]
        await update(service_handle(client, plan, "nova"), "resume", io.ResumeRequest())
        kind, _ = await outcome_of(handle)
    assert kind == "succeeded" and script.calls.count("migration.db_sync:online") == 2
    assert not {"db.restore", "k8s.undo_images"} & set(script.calls)


@pytest.mark.parametrize(
    ("key", "step"),
    [("k8s.restart", "unpin"), ("tempest.run", "validate")],
)
async def test_before_the_online_data_migrations_previous_images_are_the_way_back(
    client: Client, key: str, step: str
) -> None:
    script = Script()
    if key == "tempest.run":
        script.answers[key] = io.TempestResult(status="fail", failed=1)
    else:
        script.fail[key] = errors.ROLLOUT_FAILED
    async with running(client, script) as tq:
        kind, report = await outcome_of(await start(client, make_plan([nova()]), tq))
    assert kind == errors.UPGRADE_ROLLED_BACK, report.message
    assert script.calls[-1] == "k8s.undo_images" and "db.restore" not in script.calls
    assert "migration.db_sync:online" not in script.calls
    (svc,) = report.services
    assert [r.step for r in svc.steps if r.status == "failed"] == [step]
    assert svc.rollback and svc.rollback.kind == "images"


async def test_a_part_way_schema_sync_restores_all_three_databases(client: Client) -> None:
    script = Script()
    script.fail["migration.db_sync:expand"] = errors.MIGRATION_FAILED
    async with running(client, script) as tq:
        kind, report = await outcome_of(await start(client, make_plan([nova()]), tq))
    assert kind == errors.UPGRADE_ROLLED_BACK
    tail = ["k8s.scale:down", *["db.inspect"] * 3, *["db.restore"] * 3, "k8s.scale:up", "k8s.wait_rollout"]
    assert script.calls[-len(tail) :] == tail  # every database inspected before any is dropped
    assert script.restored == NOVA_DATABASES
    rb = report.services[0].rollback
    assert rb and rb.kind == "restore"
    assert [c.table for c in rb.table_changes] == [f"{db}.migrate_version" for db in NOVA_DATABASES]


async def test_under_helm_the_unpin_restart_is_a_values_change(client: Client) -> None:
    helm = {
        "release": "nova",
        "chart": "openstack-helm/nova",
        "version": "2026.1.0",
        "image_values": {"images.tags.nova": IMAGE},
        "replica_values": {"nova-api": "pod.replicas.api", "nova-conductor": "pod.replicas.conductor"},
        "restart_value": "pod.annotations.restart",
    }
    script = Script()
    async with running(client, script) as tq:
        kind, report = await outcome_of(await start(client, make_plan([nova(helm=helm)]), tq))
    assert kind == "succeeded", report.message
    assert "k8s.restart" not in script.calls
    restart = script.calls.index("helm.upgrade:restart")
    assert script.calls[restart - 2 : restart + 1] == ["helm.upgrade:roll", "k8s.wait_rollout", "helm.upgrade:restart"]
    (values,) = [v for v in script.helm_values if "pod.annotations.restart" in v]
    assert str(values["pod.annotations.restart"]).endswith("/unpin")
    assert [c.purpose for c in report.services[0].helm] == ["roll", "restart"]


NEUTRON_CONTRACT = ["migration.db_sync:contract", "checks.run:endpoint:post"]


@pytest.mark.parametrize("offline", [True, False], ids=["offline-migrations", "none-pending"])
async def test_neutron_stops_its_servers_for_the_contract_only_when_offline_migrations_are_pending(
    client: Client, offline: bool
) -> None:
    script = Script()
    state = "offline-contract-needed" if offline else "expand-needed"
    script.answers["migration.db_sync:check"] = io.MigrateResult(phase="check", state=state, exit_code=int(offline))
    async with running(client, script) as tq:
        report = await (await start(client, make_plan([service("neutron")]), tq)).result()
    contract = script.calls.index("migration.db_sync:contract")
    if offline:  # every server stopped (the scale waits until its pods are gone), brought back after
        assert script.calls[contract - 1 : contract + 2] == [
            "k8s.scale:down",
            "migration.db_sync:contract",
            "k8s.scale:up",
        ]
    else:
        assert script.calls[contract - 1 : contract + 2] == ["tempest.run", *NEUTRON_CONTRACT]
        assert not {"k8s.scale:down", "k8s.scale:up"} & set(script.calls)
    statuses = {r.step: r.status for r in report.services[0].steps if r.step in ("stop-api", "start-api")}
    assert statuses == ({"stop-api": "done", "start-api": "done"} if offline else dict.fromkeys(statuses, "skipped"))
    assert len(statuses) == 2


# --- the rules, pure ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(RECIPES_BY_SERVICE))
def test_every_step_of_every_service_recipe_is_decided(name: str) -> None:
    """Failing at step i after steps 0..i-1 completed: fix forward from the point of no return on,
    a restore exactly when a step only the snapshot undoes has started, else images or nothing."""
    for mode, recipe in RECIPES_BY_SERVICE[name].modes.items():
        names = recipe.names
        for i, step in enumerate(names):
            choice = decide(recipe, set(names[:i]), step)
            started = recipe.steps[: i + 1]
            if recipe.point_of_no_return in [s.name for s in started] or any(s.forward_only for s in started):
                assert choice.kind == "forward-fix", (name, mode, step)
            elif any(s.undo == "restore" and (not s.old_serves_after or s.name == step) for s in started):
                assert choice.kind == "restore", (name, mode, step)
            else:
                assert choice.kind in ("none", "images"), (name, mode, step)


NOVA = RECIPES_BY_SERVICE["nova"].recipe("expand-contract")
BEFORE = ("status", "snapshot", "verify")


@pytest.mark.parametrize(
    ("completed", "failed", "kind"),
    [
        (("status",), "snapshot", "none"),
        (BEFORE, "expand", "restore"),  # the schema in an unknown state
        ((*BEFORE, "expand"), "roll", "images"),  # the old release serves on the synced schema
        ((*BEFORE, "expand", "roll", "rollout"), "unpin", "images"),
        ((*BEFORE, "expand", "roll", "rollout", "unpin"), "validate", "images"),
        # a data plane (the plan's data_plane): replaced nodes keep the new release, fixed forward
        ((*BEFORE, "expand", "roll", "rollout"), "dataplane", "forward-fix"),
        ((*BEFORE, "expand", "roll", "rollout", "dataplane", "unpin"), "validate", "forward-fix"),
        ((*BEFORE, "expand", "roll", "rollout", "unpin", "validate"), "online", "forward-fix"),
        ((*BEFORE, "expand", "roll", "rollout", "unpin", "validate", "online"), "postcheck", "forward-fix"),
    ],
)
def test_nova_is_rolled_back_by_phase(completed: tuple[str, ...], failed: str, kind: str) -> None:
    assert decide(NOVA, set(completed), failed).kind == kind


def test_each_recipe_says_what_the_issue_asks() -> None:
    r = RECIPES_BY_SERVICE
    assert r["nova"].databases == ("nova_api", "nova_cell0", "nova")
    assert r["nova"].point_of_no_return() == "online"
    assert all(r[s].point_of_no_return("expand-contract") == "contract" for s in ("keystone", "glance", "neutron"))
    # neutron's API has been WSGI-only since 2025.1: both releases run the same three workloads
    assert r["neutron"].workloads["2025.2"] == ("neutron-server", "neutron-rpc-server", "neutron-periodic-workers")
    assert r["neutron"].workloads["2026.1"] == r["neutron"].workloads["2025.2"]
    assert r["glance"].mode == "offline" and "experimental" in r["glance"].mode_reason
    assert "migrate" not in r["keystone"].recipe("expand-contract").names
    assert {s for s, x in r.items() if x.proven == "run"} == {"keystone", "placement", "glance", "neutron", "nova"}
    assert r["cinder"].proven == "not run"
    for x in r.values():  # the target release's status check comes before anything changes
        for recipe in x.modes.values():
            names = recipe.names
            assert names.index("status") < min(names.index(s) for s in ("snapshot", "roll") if s in names)
            for step in recipe.steps:  # every step that runs a migration phase has its commands
                assert not step.phase or step.phase in x.commands, (x.service, step.name)


async def test_a_nova_canary_resets_all_three_databases(client: Client) -> None:
    script = Script()
    ok, result = await run_canary(client, script, make_plan([nova()]))
    assert ok and result.passed
    assert script.restored == NOVA_DATABASES  # each from its own snapshot
    assert script.calls[-7:] == [
        "k8s.scale:down",
        *["db.restore"] * 3,
        "k8s.set_images",
        "k8s.scale:up",
        "k8s.wait_rollout",
    ]
