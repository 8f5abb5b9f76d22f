"""Canary runs: upgrade, judge, and always return to the baseline."""

from __future__ import annotations

import uuid

from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from model import errors, io
from model.plan import UpgradePlan
from tests.standins import Script
from tests.workflows.helpers import make_plan, running
from tests.workflows.test_helm_adapter import PATCHES, RELEASE, helm_plan, owned_by

RESET = ["k8s.scale:down", "db.restore", "k8s.set_images", "k8s.scale:up", "k8s.wait_rollout"]


async def run_canary(client: Client, script: Script, plan: UpgradePlan) -> tuple[bool, io.CanaryResult]:
    async with running(client, script) as tq:
        handle = await client.start_workflow(
            "Canary",
            io.CanaryInput(name="c1", plan=plan),
            id=f"canary/{uuid.uuid4().hex[:6]}",
            task_queue=tq,
            result_type=io.CanaryResult,
        )
        try:
            return True, await handle.result()
        except WorkflowFailureError as e:
            assert isinstance(e.cause, ApplicationError) and e.cause.type == errors.CANARY_FAILED
            return False, io.CanaryResult.model_validate(e.cause.details[0])


async def test_passing_canary_is_reset_to_baseline(client: Client) -> None:
    script = Script()
    ok, result = await run_canary(client, script, make_plan())
    assert ok and result.passed and result.report and result.report.outcome == "succeeded"
    assert script.calls[-5:] == RESET
    assert [r.detail for r in result.reset] == ["back to registry/keystone-api:old"]


async def test_failing_canary_fails_the_run_and_is_back_on_baseline(client: Client) -> None:
    script = Script()
    script.fail["tempest.run"] = errors.CHECK_FAILED
    ok, result = await run_canary(client, script, make_plan())
    assert not ok and not result.passed and result.report and result.report.outcome == "rolled-back"
    # a failed validation after a complete expand: previous images only, the schema stays expanded;
    # the canary's reset then restores its snapshot, so the next run expands again
    undo = script.calls.index("k8s.undo_images")
    assert "db.restore" not in script.calls[:undo]
    assert script.calls[undo + 1 :] == RESET
    assert [r.detail for r in result.reset] == ["back to registry/keystone-api:old"]


async def test_a_helm_canary_is_reset_through_its_release(client: Client) -> None:
    for fail in (None, "tempest.run"):
        script = Script()
        script.answers[io.K8S_READ_IMAGES] = owned_by(RELEASE)
        if fail:
            script.fail[fail] = errors.CHECK_FAILED
        ok, result = await run_canary(client, script, helm_plan())
        assert ok is (fail is None) and not PATCHES & set(script.calls)
        reset = script.calls[script.calls.index("helm.upgrade:quiesce") :]
        # after a rollback the release is back on its baseline revision already: no second rollback
        back = ["helm.rollback"] if fail is None else []
        assert reset == ["helm.upgrade:quiesce", "db.restore", *back, "helm.upgrade:unquiesce", "k8s.wait_rollout"]
        assert [r.status for r in result.reset] == ["done"]
