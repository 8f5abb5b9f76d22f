"""A failure at each step leads to the right compensations, in the right order."""

from __future__ import annotations

import pytest
from temporalio.client import Client

from model import errors, io
from tests.standins import Script
from tests.workflows.helpers import (
    SERVICE_STEPS,
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

UNDO_ROLL = ["k8s.undo_images"]
# a part-way schema change: quiesce, inspect, restore, scale back, wait (no roll ran yet: no images)
RESTORE = ["k8s.scale:down", "db.inspect", "db.restore", "k8s.scale:up", "k8s.wait_rollout"]


def fail_at(script: Script, key: str) -> None:
    if key == "db.verify_snapshot":
        script.answers[key] = io.VerifyResult(ok=False, message="checksum mismatch")
    elif key == "tempest.run":
        script.answers[key] = io.TempestResult(status="fail", failed=1, failing_tests=["t.test_x"])
    elif key.startswith("checks.run"):
        script.answers[key] = io.CheckResult(status="fail", message="503")
    else:
        script.fail[key] = errors.MIGRATION_FAILED if "db_sync" in key else errors.ROLLOUT_FAILED


# (failing call, error type of the workflow, calls expected after the failing one). After a complete
# expand/migrate the old release serves on the expanded schema: previous images only, no restore.
CASES = [
    ("checks.run:upgrade-status:pre", "status", errors.UPGRADE_FAILED, []),
    ("db.snapshot", "snapshot", errors.UPGRADE_FAILED, []),
    ("db.verify_snapshot", "verify", errors.UPGRADE_FAILED, []),
    ("migration.db_sync:check", "check", errors.UPGRADE_FAILED, []),
    ("migration.db_sync:expand", "expand", errors.UPGRADE_ROLLED_BACK, RESTORE),
    ("k8s.set_images", "roll", errors.UPGRADE_ROLLED_BACK, UNDO_ROLL),
    ("k8s.wait_rollout", "rollout", errors.UPGRADE_ROLLED_BACK, UNDO_ROLL),
    ("checks.run:endpoint:post", "validate", errors.UPGRADE_ROLLED_BACK, UNDO_ROLL),
    ("tempest.run", "validate", errors.UPGRADE_ROLLED_BACK, UNDO_ROLL),
]


@pytest.mark.parametrize(("key", "step", "error", "after"), CASES, ids=[c[0] for c in CASES])
async def test_failure_compensates_in_reverse(
    client: Client, key: str, step: str, error: str, after: list[str]
) -> None:
    script = Script()
    fail_at(script, key)
    async with running(client, script) as tq:
        kind, report = await outcome_of(await start(client, plan := make_plan(), tq))
    assert kind == error, report.message
    upto = SERVICE_STEPS.index(key) + 1
    assert script.calls == ["k8s.read_images", "checks.run:endpoint:pre", *SERVICE_STEPS[:upto], *after]
    assert report.message.startswith(f"keystone: {step}: ") and plan.cloud.name == report.cloud
    (svc,) = report.services
    assert [r.step for r in svc.steps if r.status == "failed"] == [step]
    undone = {"k8s.undo_images": {"roll", "rollout"}, "db.restore": {"expand", "migrate"}}
    should = set().union(*(undone.get(a, set()) for a in after))
    assert {r.step for r in svc.steps if r.status == "compensated"} == {
        r.step for r in svc.steps if r.status in ("done", "compensated") and r.step in should
    }
    assert not ({r.step for r in svc.steps if r.status == "done"} & should), "every undone step is marked"
    assert [r.step for r in svc.steps if r.status == "done"][-len(after) or len(svc.steps) :] == [
        {
            "k8s.undo_images": "undo-roll",
            "k8s.scale:down": "quiesce",
            "db.inspect": "inspect",
            "db.restore": "restore",
            "k8s.scale:up": "unquiesce",
            "k8s.wait_rollout": "rollout-back",
        }[a]
        for a in after
    ]


async def test_temporary_error_is_retried_not_compensated(client: Client) -> None:
    script = Script()
    script.fail["k8s.wait_rollout"] = errors.UNAVAILABLE
    script.fail_times["k8s.wait_rollout"] = 1
    async with running(client, script) as tq:
        kind, _ = await outcome_of(await start(client, make_plan(), tq))
    assert kind == "succeeded"
    assert script.calls.count("k8s.wait_rollout") == 2 and "db.restore" not in script.calls


async def test_permanent_error_is_not_retried(client: Client) -> None:
    script = Script()
    script.fail["k8s.wait_rollout"] = errors.ROLLOUT_FAILED
    async with running(client, script) as tq:
        kind, report = await outcome_of(await start(client, make_plan(max_attempts=5), tq))
    assert kind == errors.UPGRADE_ROLLED_BACK and script.calls.count("k8s.wait_rollout") == 1
    assert "injected failure" in report.message


async def test_policy_fail_stops_without_compensation(client: Client) -> None:
    script = Script()
    script.fail["k8s.wait_rollout"] = errors.ROLLOUT_FAILED
    async with running(client, script) as tq:
        kind, _ = await outcome_of(await start(client, make_plan(on_failure="fail"), tq))
    assert kind == errors.UPGRADE_FAILED
    assert script.calls[-1] == "k8s.wait_rollout" and "k8s.undo_images" not in script.calls


async def test_policy_pause_waits_then_resume_retries_the_step(client: Client) -> None:
    script = Script()
    script.fail["migration.db_sync:expand"] = errors.MIGRATION_FAILED
    script.fail_times["migration.db_sync:expand"] = 1
    async with running(client, script) as tq:
        handle = await start(client, plan := make_plan(on_failure="pause"), tq)
        st = await wait_for(client, handle, waiting_for_decision)
        assert "resume retries" in st.services[0].message
        await update(service_handle(client, plan, "keystone"), "resume", io.ResumeRequest(by="test"))
        kind, _ = await outcome_of(handle)
    assert kind == "succeeded" and script.calls.count("migration.db_sync:expand") == 2
    assert "db.restore" not in script.calls


async def test_contract_failure_never_restores_the_database(client: Client) -> None:
    """Past the point of no return: pause for a forward fix whatever the policy, never restore."""
    script = Script()
    script.fail["migration.db_sync:contract"] = errors.MIGRATION_FAILED
    async with running(client, script) as tq:
        handle = await start(client, make_plan(on_failure="rollback"), tq)
        st = await wait_for(client, handle, waiting_for_decision)
        assert st.services[0].past_point_of_no_return and "fix forward" in st.services[0].message
        await update(handle, "abort", io.AbortRequest(reason="will fix forward"))
        kind, report = await outcome_of(handle)
    assert kind == errors.UPGRADE_FAILED and "nothing rolled back" in report.message
    assert not {"db.restore", "k8s.undo_images", "k8s.scale:down"} & set(script.calls)


async def test_contract_failure_fixed_forward_then_resumed(client: Client) -> None:
    script = Script()
    script.fail["migration.db_sync:contract"] = errors.MIGRATION_FAILED
    script.fail_times["migration.db_sync:contract"] = 1
    async with running(client, script) as tq:
        handle = await start(client, plan := make_plan(), tq)
        await wait_for(client, handle, waiting_for_decision)
        await update(service_handle(client, plan, "keystone"), "resume", io.ResumeRequest())
        kind, _ = await outcome_of(handle)
    assert kind == "succeeded" and script.calls.count("migration.db_sync:contract") == 2
    assert "db.restore" not in script.calls


async def test_offline_migration_failure_restores_before_bringing_the_api_back(client: Client) -> None:
    script = Script()
    script.fail["migration.db_sync:offline"] = errors.MIGRATION_FAILED
    plan = make_plan([service("placement", migration={"mode": "offline"}, checks=[])])
    async with running(client, script) as tq:
        kind, _ = await outcome_of(await start(client, plan, tq))
    assert kind == errors.UPGRADE_ROLLED_BACK
    # quiesced first (the snapshot holds every write); the quiesce still holds: no second scale-down
    assert script.calls == [
        "k8s.read_images",
        "checks.run:upgrade-status:pre",
        "k8s.scale:down",
        "db.snapshot",
        "db.verify_snapshot",
        "migration.db_sync:offline",
        "db.inspect",
        "db.restore",
        "k8s.scale:up",
        "k8s.wait_rollout",
    ]


async def test_nothing_to_expand_skips_the_expand_and_needs_no_restore(client: Client) -> None:
    script = Script()
    script.answers["migration.db_sync:check"] = io.MigrateResult(phase="check", state="up-to-date")
    script.fail["tempest.run"] = errors.CHECK_FAILED
    async with running(client, script) as tq:
        kind, report = await outcome_of(await start(client, make_plan(), tq))
    assert kind == errors.UPGRADE_ROLLED_BACK
    assert "migration.db_sync:expand" not in script.calls and "db.restore" not in script.calls
    assert script.calls[-1] == "k8s.undo_images"
    assert [r.status for r in report.services[0].steps if r.step == "expand"] == ["skipped"]
    assert report.services[0].rollback and report.services[0].rollback.kind == "images"
