"""Interruptions: a compensation is never cancelled, a Temporal Cancel is an abort, terminating the
upgrade cancels its services (which compensate), and a stuck rollback can be abandoned with a report."""

from __future__ import annotations

import re

from temporalio.client import Client

from model import errors, io
from tests.standins import Script
from tests.waiting import eventually
from tests.workflows.helpers import (
    blocked,
    make_plan,
    outcome_of,
    rejected,
    running,
    service,
    service_handle,
    start,
    update,
    wait_for,
    waiting_for_decision,
)


def status_of(report: io.ServiceResult, step: str) -> list[str]:
    return [r.status for r in report.steps if r.step == step]


async def test_abort_during_a_restore_waits_for_it(client: Client) -> None:
    script = Script()
    script.fail["migration.db_sync:expand"] = errors.MIGRATION_FAILED
    release = blocked(script, "db.restore")
    async with running(client, script) as tq:
        handle = await start(client, plan := make_plan(), tq)
        await eventually(script.key_started("db.restore").is_set, what="the restore started")
        ack = await update(handle, "abort", io.AbortRequest(reason="change window over"))
        assert "a rollback already running goes on to its end" in ack.message
        st = await wait_for(client, handle, lambda st: "waits for the rollback" in st.services[0].message)
        assert st.services[0].state == "rolling-back"
        release.set()
        kind, report = await outcome_of(handle)
        result = await service_handle(client, plan, "keystone").result()
    assert kind == errors.UPGRADE_ABORTED and "aborted during the rollback: change window over" in report.message
    assert status_of(result, "restore") == ["done"] and result.restore is not None
    assert script.calls.count("db.restore") == 1 and script.calls[-2:] == ["k8s.scale:up", "k8s.wait_rollout"]


async def test_cancel_during_a_gate_is_an_abort(client: Client) -> None:
    script = Script()
    plan = make_plan([service("keystone", gate={"approval": True})])
    async with running(client, script) as tq:
        handle = await start(client, plan, tq)
        await wait_for(client, handle, lambda st: st.services[0].decision == "keystone/gate#1")
        await handle.cancel()
        kind, report = await outcome_of(handle)
    assert kind == errors.UPGRADE_ABORTED and "cancelled" in report.message and "nothing was changed" in report.message
    assert report.services[0].outcome == "aborted"
    assert script.calls == ["k8s.read_images", "checks.run:endpoint:pre"]


async def test_cancel_during_a_pause_rolls_back(client: Client) -> None:
    script = Script()
    release = blocked(script, "k8s.wait_rollout")
    async with running(client, script) as tq:
        handle = await start(client, make_plan(), tq)
        await wait_for(client, handle, lambda st: st.services[0].step == "rollout")
        await update(handle, "pause", io.PauseRequest(reason="look first"))
        release.set()
        await wait_for(client, handle, lambda st: st.services[0].state == "paused")
        await handle.cancel()
        kind, report = await outcome_of(handle)
    assert kind == errors.UPGRADE_ABORTED and report.services[0].outcome == "aborted"
    assert "k8s.undo_images" in script.calls and "tempest.run" not in script.calls
    assert "compensated" in status_of(report.services[0], "roll")


async def test_cancel_of_a_service_during_a_decision_rolls_it_back(client: Client) -> None:
    script = Script()
    script.fail["k8s.wait_rollout"] = errors.ROLLOUT_FAILED
    async with running(client, script) as tq:
        handle = await start(client, plan := make_plan(on_failure="pause"), tq)
        st = await wait_for(client, handle, waiting_for_decision)
        assert st.services[0].decision == "keystone/rollout#1"
        keystone = service_handle(client, plan, "keystone")
        await keystone.cancel()
        result = await keystone.result()
        kind, report = await outcome_of(handle)
    assert result.outcome == "aborted" and "cancelled" in result.message and "rolled back" in result.message
    assert kind == errors.UPGRADE_ABORTED and report.services[0].outcome == "aborted"
    assert script.calls.count("k8s.wait_rollout") == 1 and "k8s.undo_images" in script.calls


async def test_terminating_the_upgrade_cancels_its_services_which_compensate(client: Client) -> None:
    script = Script()
    blocked(script, "k8s.wait_rollout")
    undo = blocked(script, "k8s.undo_images")  # after a complete expand the rollback is images only
    async with running(client, script) as tq:
        handle = await start(client, plan := make_plan(), tq)
        await wait_for(client, handle, lambda st: st.services[0].step == "rollout")
        await handle.terminate("operator terminated the upgrade")
        await eventually(script.key_started("k8s.undo_images").is_set, what="the child's undo started")
        undo.set()  # the compensation was not cancelled: it runs to its end
        result = await service_handle(client, plan, "keystone").result()
    assert result.outcome == "aborted" and "cancelled" in result.message
    assert status_of(result, "rollout") == ["failed"] and status_of(result, "undo-roll") == ["done"]
    assert "compensated" in status_of(result, "roll") and script.calls[-1] == "k8s.undo_images"


async def test_abandon_ends_a_stuck_rollback_with_what_is_left_undone(client: Client) -> None:
    script = Script()
    script.fail["migration.db_sync:expand"] = errors.MIGRATION_FAILED
    script.fail["db.restore"] = errors.RESTORE_FAILED
    async with running(client, script) as tq:
        handle = await start(client, plan := make_plan(), tq)
        keystone = service_handle(client, plan, "keystone")
        st = await wait_for(client, handle, waiting_for_decision)
        assert st.services[0].decision == "keystone/restore#1" and st.services[0].answers == ["resume", "abandon"]
        assert "keystone/restore#1: resume retries it, abandon" in st.services[0].message
        assert re.search("give a reason", await rejected(keystone, "abandon", io.AbandonRequest(reason=" ")))
        assert re.search(
            r"keystone/restore#1 is a failed restore \(RestoreFailed\), not an inconclusive check: it cannot be",
            await rejected(keystone, "approve", io.ApproveRequest(gate="keystone/restore#1")),
        )
        await update(handle, "abort", io.AbortRequest(reason="stop it"))  # the rollback still waits
        st = await wait_for(client, handle, lambda st: "waits for the rollback" in st.services[0].message)
        assert st.services[0].decision == "keystone/restore#1"
        ack = await update(keystone, "abandon", io.AbandonRequest(reason="DBA restores by hand", by="ops"))
        left = "restore, unquiesce, rollout-back"
        assert ack.message == f"the rollback is abandoned at keystone/restore#1; left undone: {left}"
        kind, report = await outcome_of(handle)
    result = report.services[0]
    assert (
        kind == errors.UPGRADE_FAILED
        and result.outcome == "failed"
        and result.left_undone == ["restore", "unquiesce", "rollout-back"]
    )
    assert "rollback abandoned at keystone/restore#1: DBA restores by hand (by ops)" in result.message
    assert "k8s.scale:up" not in script.calls  # the rest of that compensation did not run


async def test_abandon_is_refused_unless_a_rollback_step_waits(client: Client) -> None:
    script = Script()
    script.fail["migration.db_sync:expand"] = errors.MIGRATION_FAILED
    release = blocked(script, "db.restore")
    async with running(client, script) as tq:
        handle = await start(client, plan := make_plan(), tq)
        keystone = service_handle(client, plan, "keystone")
        await eventually(script.key_started("db.restore").is_set, what="the restore started")
        assert re.search(
            "the rollback of keystone is running, not waiting for a decision",
            await rejected(keystone, "abandon", io.AbandonRequest(reason="give up")),
        )
        release.set()
        kind, _ = await outcome_of(handle)
    assert kind == errors.UPGRADE_ROLLED_BACK
