"""The Fleet workflow over the real Upgrade workflow (stand-in activities): the clouds' upgrades run
as they do alone, carry the fleet's search attribute, and take the fleet's abort, pause and resume."""

from __future__ import annotations

from typing import Any

from temporalio.client import Client

from model import errors, io, visibility
from tests.fleet_standins import make_fleet, start_fleet
from tests.standins import Script
from tests.workflows.helpers import blocked, make_plan, outcome_of, running, update, wait_for
from tests.workflows.test_fleet import result_of, states, status_when


async def test_a_fleet_of_real_upgrades(client: Client) -> None:
    script = Script()
    plans = {"canary": make_plan(), "rest": make_plan()}
    fleet = make_fleet(plans, [{"name": "w", "clouds": ["rest"]}], ["canary"])
    async with running(client, script) as tq:
        kind, report = await result_of(await start_fleet(client, fleet, tq))
        desc = await client.get_workflow_handle(plans["rest"].workflow_id).describe()
    assert kind == "succeeded" and [c.outcome for c in report.clouds] == ["succeeded", "succeeded"]
    assert script.calls.count("tempest.run") == 2
    assert desc.typed_search_attributes.get(visibility.FLEET) == fleet.metadata.name
    assert report.clouds[1].message == f"{plans['rest'].cloud.name} upgraded to 2026.1"


async def test_the_fleets_abort_rolls_back_a_running_upgrade(client: Client) -> None:
    script = Script()
    blocked(script, "k8s.wait_rollout")
    plan = make_plan()
    async with running(client, script) as tq:
        handle = await start_fleet(client, make_fleet({"one": plan}, [{"name": "w", "clouds": ["one"]}]), tq)
        await status_when(handle, lambda st: states(st)["one"] == "running")
        upgrade: Any = client.get_workflow_handle(plan.workflow_id)
        await wait_for(client, upgrade, lambda st: bool(st.services) and st.services[0].step == "rollout")
        await update(handle, "abort", io.AbortRequest(reason="regression in staging", by="ops"))
        kind, report = await result_of(handle)
        upgrade_kind, upgrade_report = await outcome_of(upgrade)
    assert kind == "FleetAborted" and report.clouds[0].outcome == "aborted"
    assert upgrade_kind == errors.UPGRADE_ABORTED and "fleet: regression in staging" in upgrade_report.message
    assert script.calls[-1] == "k8s.undo_images"


async def test_the_fleets_pause_and_resume_reach_a_running_upgrade(client: Client) -> None:
    script = Script()
    release = blocked(script, "k8s.wait_rollout")
    plan = make_plan()
    async with running(client, script) as tq:
        handle = await start_fleet(client, make_fleet({"one": plan}, [{"name": "w", "clouds": ["one"]}]), tq)
        await status_when(handle, lambda st: states(st)["one"] == "running")
        upgrade: Any = client.get_workflow_handle(plan.workflow_id)
        await wait_for(client, upgrade, lambda st: bool(st.services) and st.services[0].step == "rollout")
        await update(handle, "pause", io.PauseRequest(reason="window closed"))
        release.set()
        st = await wait_for(client, upgrade, lambda st: st.services[0].state == "paused")
        assert st.paused and "paused by its fleet: window closed" in st.message
        await update(handle, "resume", io.ResumeRequest())
        kind, _ = await result_of(handle)
    assert kind == "succeeded" and "tempest.run" in script.calls
