"""The Fleet workflow with stand-in Upgrade children (tests/fleet_standins.py): order, parallelism,
thresholds, busy clouds, image promotion, approval, abort and pause."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker

from model import io
from model import io_fleet as fio
from tests.fleet_standins import TRACKERS, StandInUpgrade, Tracker, cloud_plan, fleet_worker, make_fleet, start_fleet
from tests.waiting import eventually
from tests.workflows.helpers import rejected, update


def tracker() -> tuple[str, Tracker]:
    key = uuid.uuid4().hex
    TRACKERS[key] = t = Tracker()
    return key, t


async def result_of(handle: WorkflowHandle[Any, Any]) -> tuple[str, fio.FleetReport]:
    try:
        return "succeeded", fio.FleetReport.model_validate(await handle.result())
    except WorkflowFailureError as e:
        assert isinstance(e.cause, ApplicationError)
        return e.cause.type or "", fio.FleetReport.model_validate(e.cause.details[0])


async def status_when(handle: WorkflowHandle[Any, Any], pred: Any, what: str = "fleet status") -> fio.FleetStatus:
    async def seen() -> fio.FleetStatus | None:
        st = await handle.query("status", result_type=fio.FleetStatus)
        return st if pred(st) else None

    return await eventually(seen, within=20, what=what)


def states(st: fio.FleetStatus) -> dict[str, str]:
    return {c.cloud: c.state for c in st.clouds}


async def finish(client: Client, st: fio.FleetStatus, cloud: str) -> None:
    wf = next(c.workflow_id for c in st.clouds if c.cloud == cloud)
    await client.get_workflow_handle(wf).signal("finish")


async def test_canary_then_waves_in_order(client: Client) -> None:
    key, t = tracker()
    plans = {n: cloud_plan(n, key) for n in ("a", "b", "c", "d")}
    fleet = make_fleet(
        plans, [{"name": "one", "clouds": ["b", "c"]}, {"name": "two", "clouds": ["d"]}], ["a"], max_parallel=2
    )
    async with fleet_worker(client) as tq:
        kind, report = await result_of(await start_fleet(client, fleet, tq))
    assert kind == "succeeded" and report.outcome == "succeeded"
    assert t.started[0] == "a" and set(t.started[1:3]) == {"b", "c"} and t.started[3] == "d"
    assert [(c.cloud, c.wave, c.outcome, c.release_before, c.release_after) for c in report.clouds] == [
        ("a", "canary", "succeeded", "2025.2", "2026.1"),
        ("b", "one", "succeeded", "2025.2", "2026.1"),
        ("c", "one", "succeeded", "2025.2", "2026.1"),
        ("d", "two", "succeeded", "2025.2", "2026.1"),
    ]
    assert report.image_set == {"keystone": ["registry/keystone:29.1.0"]}
    assert report.clouds[0].workflow_id == plans["a"].workflow_id


async def test_max_parallel_is_respected(client: Client) -> None:
    key, t = tracker()
    plans = {n: cloud_plan(n, key, hold="yes") for n in ("a", "b", "c", "d")}
    fleet = make_fleet(plans, [{"name": "all", "clouds": list(plans), "max_parallel": 2}], max_parallel=1)
    async with fleet_worker(client) as tq:
        handle = await start_fleet(client, fleet, tq)
        for done in ("a", "b", "c", "d"):
            st = await status_when(handle, lambda st, d=done: states(st)[d] == "running", f"{done} running")
            assert list(states(st).values()).count("running") <= 2
            await finish(client, st, done)
        kind, _ = await result_of(handle)
    assert kind == "succeeded" and t.peak == 2 and set(t.started[:2]) == {"a", "b"} and set(t.started[2:]) == {"c", "d"}


async def test_a_failure_past_the_threshold_stops_the_wave_and_the_later_ones(client: Client) -> None:
    plans = {
        "a": cloud_plan("a"),
        "b": cloud_plan("b", outcome="rolled-back"),
        "c": cloud_plan("c", outcome="failed"),
        "d": cloud_plan("d"),
        "e": cloud_plan("e"),
    }
    waves: list[dict[str, Any]] = [
        {"name": "one", "clouds": ["b", "c", "d"], "max_failed": 1},
        {"name": "two", "clouds": ["e"]},
    ]
    async with fleet_worker(client) as tq:
        kind, report = await result_of(await start_fleet(client, make_fleet(plans, waves, ["a"]), tq))
    assert kind == "FleetFailed" and "wave one stopped: 2 of its clouds failed, 1 may" in report.message
    outcomes = {c.cloud: (c.outcome, c.release_after) for c in report.clouds}
    assert outcomes == {
        "a": ("succeeded", "2026.1"),
        "b": ("rolled-back", "2025.2"),
        "c": ("failed", ""),
        "d": ("skipped", "2025.2"),
        "e": ("skipped", "2025.2"),
    }


async def test_a_failure_within_the_threshold_goes_on_and_ends_partial(client: Client) -> None:
    plans = {"a": cloud_plan("a", outcome="failed"), "b": cloud_plan("b"), "c": cloud_plan("c")}
    waves = [{"name": "one", "clouds": ["a", "b"], "max_failed": "50%"}, {"name": "two", "clouds": ["c"]}]
    async with fleet_worker(client) as tq:
        kind, report = await result_of(await start_fleet(client, make_fleet(plans, waves), tq))
    assert kind == "FleetPartial" and [c.outcome for c in report.clouds] == ["failed", "succeeded", "succeeded"]


async def test_a_busy_cloud_is_reported_not_started_twice(client: Client) -> None:
    plans = {"a": cloud_plan("a"), "b": cloud_plan("b", hold="yes")}
    async with fleet_worker(client) as tq:
        other = await client.start_workflow(
            StandInUpgrade.run, io.UpgradeInput(plan=plans["b"]), id=plans["b"].workflow_id, task_queue=tq
        )
        kind, report = await result_of(
            await start_fleet(client, make_fleet(plans, [{"name": "w", "clouds": ["a", "b"], "max_failed": 1}]), tq)
        )
        assert kind == "FleetPartial"
        busy = report.clouds[1]
        assert busy.outcome == "busy" and f"{plans['b'].workflow_id} is already running" in busy.message
        desc = await other.describe()
        assert desc.run_id == other.result_run_id and desc.status == WorkflowExecutionStatus.RUNNING
        await other.signal("finish")
        await other.result()


async def test_a_busy_canary_fails_the_fleet(client: Client) -> None:
    plans = {"a": cloud_plan("a", hold="yes"), "b": cloud_plan("b")}
    async with fleet_worker(client) as tq:
        other = await client.start_workflow(
            StandInUpgrade.run, io.UpgradeInput(plan=plans["a"]), id=plans["a"].workflow_id, task_queue=tq
        )
        kind, report = await result_of(
            await start_fleet(client, make_fleet(plans, [{"name": "w", "clouds": ["b"]}], ["a"]), tq)
        )
        await other.signal("finish")
    assert kind == "FleetFailed" and "the canary a did not succeed (busy)" in report.message
    assert [c.outcome for c in report.clouds] == ["busy", "skipped"]


async def test_a_plan_whose_images_differ_from_the_canary_is_refused(client: Client) -> None:
    digest = "sha256:" + "b" * 64
    plans = {
        "a": cloud_plan("a", image=f"eu.registry/keystone@{digest}"),
        "b": cloud_plan("b", image=f"us.mirror/keystone@{digest}"),  # the same digest elsewhere: the same image
        "c": cloud_plan("c", image="registry/keystone:29.1.1"),
    }
    waves = [{"name": "w", "clouds": ["b", "c"], "max_failed": 1}]
    async with fleet_worker(client) as tq:
        kind, report = await result_of(await start_fleet(client, make_fleet(plans, waves, ["a"]), tq))
    assert kind == "FleetPartial" and report.image_set == {"keystone": [digest]}
    assert [c.outcome for c in report.clouds] == ["succeeded", "succeeded", "refused"]
    assert f"keystone: registry/keystone:29.1.1 (the canary's: {digest})" in report.clouds[2].message


async def test_a_wave_waits_for_its_approval(client: Client) -> None:
    plans = {"a": cloud_plan("a", hold="yes"), "b": cloud_plan("b"), "c": cloud_plan("c")}
    waves: list[dict[str, Any]] = [{"name": "one", "clouds": ["b"]}, {"name": "two", "clouds": ["c"], "approval": True}]
    async with fleet_worker(client) as tq:
        handle = await start_fleet(client, make_fleet(plans, waves, ["a"]), tq)
        st = await status_when(handle, lambda st: states(st)["a"] == "running")
        refusal = await rejected(handle, "approve", io.ApproveRequest(gate="fleet/wave#2"))
        assert "'fleet/wave#2' is not the decision waiting: the fleet is not waiting for a decision" in refusal
        await finish(client, st, "a")
        st = await status_when(handle, lambda st: st.decision == "fleet/wave#2")
        assert states(st) == {"a": "succeeded", "b": "succeeded", "c": "pending"} and st.waves[2].state == "waiting"
        assert re.search(
            "is not the decision waiting: the fleet waits for fleet/wave#2",
            await rejected(handle, "approve", io.ApproveRequest(gate="fleet/wave#1")),
        )
        ack = await update(handle, "approve", io.ApproveRequest(gate="fleet/wave#2", by="ops"))
        assert ack.message == "fleet/wave#2 approved: wave two starts"
        kind, report = await result_of(handle)
    assert kind == "succeeded" and [c.outcome for c in report.clouds] == ["succeeded"] * 3


async def test_abort_is_forwarded_to_the_running_clouds(client: Client) -> None:
    plans = {n: cloud_plan(n, hold="yes") for n in ("a", "b", "c")}
    async with fleet_worker(client) as tq:
        handle = await start_fleet(
            client, make_fleet(plans, [{"name": "w", "clouds": ["a", "b", "c"], "max_failed": 2}], max_parallel=2), tq
        )
        await status_when(handle, lambda st: list(states(st).values()).count("running") == 2)
        assert "give a reason" in await rejected(handle, "abort", io.AbortRequest(reason=" "))
        await update(handle, "abort", io.AbortRequest(reason="bad release notes", by="ops"))
        kind, report = await result_of(handle)
        seen = await client.get_workflow_handle(plans["a"].workflow_id).query("seen", result_type=list[str])
    assert kind == "FleetAborted" and "bad release notes" in report.message
    assert [c.outcome for c in report.clouds] == ["aborted", "aborted", "skipped"]
    assert seen == ["abort bad release notes"]


async def test_pause_holds_new_clouds_and_resume_goes_on(client: Client) -> None:
    plans = {"a": cloud_plan("a", hold="yes"), "b": cloud_plan("b")}
    async with fleet_worker(client) as tq:
        handle = await start_fleet(client, make_fleet(plans, [{"name": "w", "clouds": ["a", "b"]}]), tq)
        st = await status_when(handle, lambda st: states(st)["a"] == "running")
        await update(handle, "pause", io.PauseRequest(reason="change freeze", by="ops"))
        assert "already paused" in await rejected(handle, "pause", io.PauseRequest())
        await finish(client, st, "a")
        st = await status_when(handle, lambda st: states(st)["a"] == "succeeded")
        assert st.paused and states(st)["b"] == "pending" and "change freeze" in st.message
        seen = await client.get_workflow_handle(plans["a"].workflow_id).query("seen", result_type=list[str])
        assert seen == ["pause change freeze"]
        await update(handle, "resume", io.ResumeRequest())
        assert "not paused" in await rejected(handle, "resume", io.ResumeRequest())
        kind, _ = await result_of(handle)
    assert kind == "succeeded"


async def test_a_cloud_runs_on_its_own_task_queue(client: Client) -> None:
    plans = {"a": cloud_plan("a"), "b": cloud_plan("b")}
    region = f"region-{uuid.uuid4().hex[:6]}"
    async with fleet_worker(client) as tq, Worker(client, task_queue=region, workflows=[StandInUpgrade]):
        fleet = make_fleet(plans, [{"name": "w", "clouds": ["a", "b"]}], task_queues={"b": region})
        kind, report = await result_of(await start_fleet(client, fleet, tq))
    assert kind == "succeeded"
    assert report.clouds[0].message.endswith(f"on {tq}") and report.clouds[1].message.endswith(f"on {region}")


@pytest.mark.parametrize(
    ("waves", "canary", "why"),
    [
        ([{"name": "w", "clouds": ["a", "b"]}], ["b"], "b is already upgraded in the canary"),
        ([{"name": "w", "clouds": ["a", "b", "zz"]}], [], "unknown cloud 'zz'"),
    ],
)
async def test_an_invalid_fleet_input_starts_nothing(
    client: Client, waves: list[dict[str, Any]], canary: list[str], why: str
) -> None:
    """The workflow's input is checked again (anyone who can start a workflow writes it)."""
    plans = {"a": cloud_plan("a"), "b": cloud_plan("b")}
    async with fleet_worker(client) as tq:
        kind, report = await result_of(await start_fleet(client, make_fleet(plans, waves, canary), tq))
    assert kind == "FleetFailed" and why in report.message
    assert {c.outcome for c in report.clouds} == {"skipped"}


async def test_a_temporal_cancel_of_the_fleet_is_an_abort(client: Client) -> None:
    plans = {"a": cloud_plan("a", hold="yes"), "b": cloud_plan("b")}
    async with fleet_worker(client) as tq:
        handle = await start_fleet(client, make_fleet(plans, [{"name": "w", "clouds": ["a", "b"]}]), tq)
        await status_when(handle, lambda st: states(st)["a"] == "running")
        await handle.cancel()
        kind, report = await result_of(handle)
    assert kind == "FleetAborted" and "cancelled (Temporal Cancel of the fleet)" in report.message
    assert [c.outcome for c in report.clouds] == ["aborted", "skipped"]


async def test_terminating_the_fleet_leaves_its_clouds_upgrading(client: Client) -> None:
    """ParentClosePolicy ABANDON: a cloud's upgrade is its own unit, it goes on to its own end."""
    plans = {"a": cloud_plan("a", hold="yes")}
    async with fleet_worker(client) as tq:
        handle = await start_fleet(client, make_fleet(plans, [{"name": "w", "clouds": ["a"]}]), tq)
        await status_when(handle, lambda st: states(st)["a"] == "running")
        await handle.terminate("operator's mistake")
        cloud = client.get_workflow_handle(plans["a"].workflow_id)
        assert (await cloud.describe()).status == WorkflowExecutionStatus.RUNNING
        await cloud.signal("finish")
        report = io.UpgradeReport.model_validate(await cloud.result())
    assert report.outcome == "succeeded"
