from __future__ import annotations

from temporalio.client import Client

from model import io
from tests.standins import Script
from tests.workflows.helpers import SERVICE_STEPS, make_plan, running, service_handle, start


async def test_single_service_runs_every_step_in_order(client: Client) -> None:
    script = Script()
    plan = make_plan()
    async with running(client, script) as tq:
        handle = await start(client, plan, tq)
        report = await handle.result()
        status = await handle.query("status", result_type=io.UpgradeStatus)
        child = await service_handle(client, plan, "keystone").query("status", result_type=io.ServiceProgress)
    assert report.outcome == "succeeded"
    assert script.calls == ["k8s.read_images", "checks.run:endpoint:pre", *SERVICE_STEPS]
    (svc,) = report.services
    assert svc.snapshot and svc.snapshot.sha256 == "ab" * 32
    assert svc.tempest and svc.tempest.passed == 14
    assert [s.step for s in svc.steps if s.status == "done"][:3] == ["status", "snapshot", "verify"]
    # the upgrade knows how its child ended; the child knows its own progress
    assert status.outcome == "succeeded" and status.services[0].state == "succeeded"
    assert status.services[0].steps_done == status.services[0].steps_total == 10  # status in, migrate out
    assert child.state == "succeeded" and child.steps_done == child.steps_total == 10
