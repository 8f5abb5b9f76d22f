"""Operators steer upgrades with validated updates; one upgrade per cloud.

Upgrade-wide commands (pause, resume a paused upgrade, abort) go to the Upgrade workflow; a
service's own decisions (approve its gate or an inconclusive check, resume a failed step) go to
that service's workflow, validated against its own state."""

from __future__ import annotations

import re

import pytest
from temporalio.client import Client
from temporalio.exceptions import WorkflowAlreadyStartedError

from model import errors, io
from tests.standins import Script
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


async def test_pause_holds_the_next_step_and_resume_continues(client: Client) -> None:
    script = Script()
    release = blocked(script, "k8s.wait_rollout")
    async with running(client, script) as tq:
        handle = await start(client, plan := make_plan(), tq)
        await wait_for(client, handle, lambda st: st.services[0].step == "rollout")
        await update(handle, "pause", io.PauseRequest(reason="maintenance window over"))
        assert re.search("already paused", await rejected(handle, "pause", io.PauseRequest()))
        release.set()
        st = await wait_for(client, handle, lambda st: st.services[0].state == "paused")
        assert st.paused and script.calls[-1] == "k8s.wait_rollout"
        keystone = service_handle(client, plan, "keystone")
        assert re.search("not waiting for a decision", await rejected(keystone, "resume", io.ResumeRequest()))
        await update(handle, "resume", io.ResumeRequest())
        kind, _ = await outcome_of(handle)
    assert kind == "succeeded" and "tempest.run" in script.calls


async def test_abort_cancels_the_running_wait_and_rolls_back(client: Client) -> None:
    script = Script()
    blocked(script, "k8s.wait_rollout")
    async with running(client, script) as tq:
        handle = await start(client, make_plan(), tq)
        await wait_for(client, handle, lambda st: st.services[0].step == "rollout")
        assert re.search("give a reason", await rejected(handle, "abort", io.AbortRequest(reason=" ")))
        await update(handle, "abort", io.AbortRequest(reason="tempest is red in staging", by="ops"))
        kind, report = await outcome_of(handle)
    assert kind == errors.UPGRADE_ABORTED and "tempest is red in staging" in report.message
    # aborted after a complete expand: previous images only (model/recipe.py)
    assert script.calls[-1] == "k8s.undo_images" and "db.restore" not in script.calls


async def test_resume_is_refused_when_nothing_is_paused(client: Client) -> None:
    script = Script()
    release = blocked(script, "k8s.wait_rollout")
    async with running(client, script) as tq:
        handle = await start(client, make_plan(), tq)
        await wait_for(client, handle, lambda st: st.services[0].step == "rollout")
        assert re.search("nothing to resume", await rejected(handle, "resume", io.ResumeRequest()))
        release.set()
        assert (await outcome_of(handle))[0] == "succeeded"


async def test_gate_waits_for_approval(client: Client) -> None:
    script = Script()
    plan = make_plan([service("keystone", gate={"approval": True, "name": "identity-go"})])
    async with running(client, script) as tq:
        handle = await start(client, plan, tq)
        st = await wait_for(client, handle, lambda st: st.services[0].waiting_for == "identity-go")
        assert st.services[0].state == "waiting" and "db.snapshot" not in script.calls
        assert st.services[0].decision == "keystone/gate#1" and st.services[0].answers == ["approve", "abort"]
        keystone = service_handle(client, plan, "keystone")
        assert re.search(
            "'nova' is not the decision waiting: keystone waits for keystone/gate#1",
            await rejected(keystone, "approve", io.ApproveRequest(gate="nova")),
        )
        assert re.search("nothing to resume", await rejected(keystone, "resume", io.ResumeRequest()))
        ack = await update(keystone, "approve", io.ApproveRequest(gate="keystone/gate#1", by="ops"))
        assert ack.message == "gate identity-go approved (keystone/gate#1)"
        assert re.search(
            "ended|keystone/gate#1 was answered already",
            await rejected(keystone, "approve", io.ApproveRequest(gate="identity-go")),
        )
        kind, report = await outcome_of(handle)
    assert kind == "succeeded"
    assert report.services[0].steps[0].step == "gate" and "identity-go" in report.services[0].steps[0].detail


async def test_pre_approved_gate_does_not_wait(client: Client) -> None:
    script = Script()
    plan = make_plan([service("keystone", gate={"approval": True})])
    async with running(client, script) as tq:
        kind, _ = await outcome_of(await start(client, plan, tq, approved_gates=["keystone"]))
    assert kind == "succeeded"


async def test_gate_timeout_fails_without_touching_anything(client: Client) -> None:
    script = Script()
    plan = make_plan([service("keystone", gate={"approval": True})], gate_timeout="2s")
    async with running(client, script) as tq:
        kind, report = await outcome_of(await start(client, plan, tq))
    assert kind == errors.UPGRADE_FAILED and "not approved within 2s" in report.message
    assert script.calls == ["k8s.read_images", "checks.run:endpoint:pre"]


async def test_second_upgrade_on_the_same_cloud_is_refused(client: Client) -> None:
    script = Script()
    release = blocked(script, "k8s.wait_rollout")
    plan = make_plan()
    async with running(client, script) as tq:
        handle = await start(client, plan, tq)
        with pytest.raises(WorkflowAlreadyStartedError):
            await start(client, plan, tq)
        release.set()
        assert (await outcome_of(handle))[0] == "succeeded"


async def test_inconclusive_check_waits_and_approval_accepts_it(client: Client) -> None:
    script = Script()
    script.answers["tempest.run"] = io.TempestResult(status="inconclusive", message="no tests ran")
    async with running(client, script) as tq:
        handle = await start(client, plan := make_plan(), tq)
        st = await wait_for(client, handle, waiting_for_decision)
        assert "inconclusive" in st.services[0].message and "migration.db_sync:contract" not in script.calls
        keystone = service_handle(client, plan, "keystone")
        assert st.services[0].decision == "keystone/validate#1"
        assert "approve keystone/validate#1 accepts it" in st.services[0].message
        for other in ("keystone/roll", "keystone/validate", "keystone/validate#2"):
            assert re.search(
                f"'{other}' is not the decision waiting: keystone waits for keystone/validate#1",
                await rejected(keystone, "approve", io.ApproveRequest(gate=other)),
            )
        await update(keystone, "approve", io.ApproveRequest(gate="keystone/validate#1"))
        kind, _ = await outcome_of(handle)
    assert kind == "succeeded" and script.calls.count("tempest.run") == 1


async def test_a_stale_approval_does_not_accept_a_later_inconclusive_check(client: Client) -> None:
    """An approval is consumed by the one decision it names: the next inconclusive check asks anew."""
    script = Script()
    script.answers["checks.run:endpoint:post"] = [
        io.CheckResult(status="inconclusive", message="catalog timeout"),
        io.CheckResult(status="pass"),
    ]
    script.answers["tempest.run"] = io.TempestResult(status="inconclusive", message="no tests ran")
    async with running(client, script) as tq:
        handle = await start(client, plan := make_plan(), tq)
        keystone = service_handle(client, plan, "keystone")
        await wait_for(client, handle, lambda st: st.services[0].decision == "keystone/validate#1")
        await update(keystone, "approve", io.ApproveRequest(gate="keystone/validate#1"))
        st = await wait_for(client, handle, lambda st: st.services[0].decision == "keystone/validate#2")
        assert "tempest check inconclusive" in st.services[0].message and "tempest.run" in script.calls
        assert re.search(
            "keystone/validate#1 was answered already \\(approve\\): an answer applies to one decision only;"
            " keystone waits for keystone/validate#2",
            await rejected(keystone, "approve", io.ApproveRequest(gate="keystone/validate#1")),
        )
        st = await wait_for(client, handle, waiting_for_decision)  # still waiting: nothing accepted it
        assert st.services[0].decision == "keystone/validate#2" and "migration.db_sync:contract" not in script.calls
        await update(keystone, "approve", io.ApproveRequest(gate="keystone/validate#2"))
        kind, _ = await outcome_of(handle)
    assert kind == "succeeded" and script.calls.count("tempest.run") == 1


async def test_approving_a_failed_check_is_refused(client: Client) -> None:
    script = Script()
    script.answers["tempest.run"] = io.TempestResult(status="fail", failed=2, message="2 tests failed")
    async with running(client, script) as tq:
        handle = await start(client, plan := make_plan(on_failure="pause"), tq)
        st = await wait_for(client, handle, waiting_for_decision)
        assert st.services[0].decision == "keystone/validate#1" and st.services[0].answers == ["resume", "abort"]
        keystone = service_handle(client, plan, "keystone")
        assert re.search(
            "keystone/validate#1 is a failed validate \\(check-fail\\), not an inconclusive check: it cannot be"
            " approved; resume retries it, abort rolls back",
            await rejected(keystone, "approve", io.ApproveRequest(gate="keystone/validate#1")),
        )
        assert re.search("not a rollback step", await rejected(keystone, "abandon", io.AbandonRequest(reason="x")))
        await update(handle, "abort", io.AbortRequest(reason="tempest is red"))
        kind, report = await outcome_of(handle)
    assert kind == errors.UPGRADE_ABORTED and "migration.db_sync:contract" not in script.calls
    assert "k8s.undo_images" in script.calls and report.services[0].outcome == "aborted"


async def test_inconclusive_check_resumed_runs_it_again(client: Client) -> None:
    script = Script()
    script.answers["checks.run:endpoint:post"] = [
        io.CheckResult(status="inconclusive", message="catalog timeout"),
        io.CheckResult(status="pass"),
    ]
    async with running(client, script) as tq:
        handle = await start(client, plan := make_plan(), tq)
        await wait_for(client, handle, waiting_for_decision)
        assert re.search("nothing to resume", await rejected(handle, "resume", io.ResumeRequest()))
        await update(service_handle(client, plan, "keystone"), "resume", io.ResumeRequest())
        kind, _ = await outcome_of(handle)
    assert kind == "succeeded" and script.calls.count("checks.run:endpoint:post") == 3  # 2 + postcheck


async def test_services_follow_the_dependency_waves(client: Client) -> None:
    script = Script()
    plan = make_plan([service("nova"), service("glance"), service("keystone"), service("placement", checks=[])])
    async with running(client, script) as tq:
        handle = await start(client, plan, tq)
        kind, report = await outcome_of(handle)
        st = await handle.query("status", result_type=io.UpgradeStatus)
    assert kind == "succeeded"
    assert st.order == [["keystone"], ["placement"], ["glance"], ["nova"]]
    assert [s.service for s in report.services] == ["keystone", "placement", "glance", "nova"]
    ends = {s.service: s.steps[-1].ended_at for s in report.services}
    starts = {s.service: s.steps[0].started_at for s in report.services}
    assert ends["keystone"] <= starts["placement"] <= ends["placement"] <= starts["glance"] <= starts["nova"]


async def test_independent_services_run_in_parallel(client: Client) -> None:
    script = Script()
    both = blocked(script, "k8s.wait_rollout")
    cinder = service("cinder", depends_on=[], migration={"mode": "expand-contract", "unproven_recipe": "accept"})
    plan = make_plan([service("glance", depends_on=[]), cinder])
    async with running(client, script) as tq:
        handle = await start(client, plan, tq)
        await wait_for(client, handle, lambda st: all(s.step == "rollout" for s in st.services))
        both.set()
        assert (await outcome_of(handle))[0] == "succeeded"


async def test_preflight_refuses_missing_workloads(client: Client) -> None:
    script = Script()
    script.answers["k8s.read_images"] = io.ReadImagesResult(
        images=[
            io.WorkloadImage(kind="Deployment", name="keystone-api", container="keystone-api", found=False),
        ]
    )
    async with running(client, script) as tq:
        kind, report = await outcome_of(await start(client, make_plan(), tq))
    assert kind == errors.UPGRADE_FAILED and "Deployment/keystone-api" in report.message
    assert "nothing was changed" in report.message and script.calls == ["k8s.read_images"]
