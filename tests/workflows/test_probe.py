"""The availability probe beside a service's steps (stand-ins, tests/standins.py): started before the
first changing step, stopped when the service's upgrade ends (success or rollback), its result in
the report; its counters in the heartbeat details the UI shows, carried over a worker restart."""

from __future__ import annotations

from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError

from model import errors, io
from tests.standins import Script, pending_probe
from tests.waiting import eventually
from tests.workflows.helpers import blocked, make_plan, outcome_of, running, service_handle, start, update

ACTIVITY_EVENTS = {
    EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED: "scheduled",
    EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED: "completed",
    EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED: "failed",
    EventType.EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED: "cancel-requested",
    EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED: "canceled",
}


async def activity_events(handle: WorkflowHandle[Any, Any]) -> list[tuple[str, str]]:
    """(what happened, activity type) for every activity event of a workflow's history, in order."""
    names: dict[int, str] = {}
    out: list[tuple[str, str]] = []
    async for e in handle.fetch_history_events():
        what = ACTIVITY_EVENTS.get(e.event_type)
        if what is None:
            continue
        if what == "scheduled":
            names[e.event_id] = e.activity_task_scheduled_event_attributes.activity_type.name
            out.append((what, names[e.event_id]))
            continue
        attrs: Any = {
            "completed": e.activity_task_completed_event_attributes,
            "failed": e.activity_task_failed_event_attributes,
            "cancel-requested": e.activity_task_cancel_requested_event_attributes,
            "canceled": e.activity_task_canceled_event_attributes,
        }[what]
        out.append((what, names[attrs.scheduled_event_id]))
    return out


def assert_probe_around_the_steps(events: list[tuple[str, str]], read_only: int) -> None:
    """Scheduled right after the read-only steps' activities; cancelled after every other activity
    ended; completed (its result returned), never cancelled."""
    scheduled = [name for what, name in events if what == "scheduled"]
    assert scheduled.index(io.PROBE_AVAILABILITY) == read_only, scheduled
    assert scheduled.count(io.PROBE_AVAILABILITY) == 1
    cancel = events.index(("cancel-requested", io.PROBE_AVAILABILITY))
    others_ended = [i for i, (what, name) in enumerate(events) if name != io.PROBE_AVAILABILITY and what != "scheduled"]
    assert max(others_ended) < cancel, events
    assert events[-1] == ("completed", io.PROBE_AVAILABILITY), events[-3:]
    assert ("canceled", io.PROBE_AVAILABILITY) not in events


async def test_probe_runs_from_the_first_changing_step_to_the_end(client: Client) -> None:
    script = Script()
    script.probe_result = {"errors": 2, "outages": 1, "longest_outage_s": 1.5}
    plan = make_plan()
    async with running(client, script) as tq:
        handle = await start(client, plan, tq)
        report = await handle.result()
        events = await activity_events(service_handle(client, plan, "keystone"))
    assert report.outcome == "succeeded"
    # upgrade-status check, snapshot, verify and the schema check change nothing: the probe starts
    # with the expand
    assert_probe_around_the_steps(events, read_only=4)
    assert [e[1] for e in events if e[0] == "scheduled"][5] == io.MIGRATION_DB_SYNC
    assert script.probes == ["start keystone#1 at 0", "stop keystone"]
    (svc,) = report.services
    a = svc.availability
    assert a is not None and a.service == "keystone" and a.api == "token issue"
    assert a.requests > 0 and a.errors == 2 and a.longest_outage_s == 1.5 and a.attempts == 1 and not a.note


async def test_a_rollback_still_gets_the_probe_result(client: Client) -> None:
    script = Script()
    script.fail["k8s.wait_rollout"] = errors.ROLLOUT_FAILED
    plan = make_plan()
    async with running(client, script) as tq:
        kind, report = await outcome_of(await start(client, plan, tq))
        events = await activity_events(service_handle(client, plan, "keystone"))
    assert kind == errors.UPGRADE_ROLLED_BACK
    assert script.of("k8s.undo_images"), "the compensation ran"
    assert_probe_around_the_steps(events, read_only=4)
    (svc,) = report.services
    assert svc.outcome == "rolled-back" and svc.availability is not None and svc.availability.requests > 0


async def test_nothing_changed_nothing_probed(client: Client) -> None:
    script = Script()
    script.answers["db.verify_snapshot"] = io.VerifyResult(ok=False, message="checksum mismatch")
    plan = make_plan()
    async with running(client, script) as tq:
        kind, report = await outcome_of(await start(client, plan, tq))
        events = await activity_events(service_handle(client, plan, "keystone"))
    assert kind == errors.UPGRADE_FAILED
    assert all(name != io.PROBE_AVAILABILITY for _, name in events)
    assert report.services[0].availability is None and script.probes == []


async def test_the_plan_turns_the_probe_off(client: Client) -> None:
    script = Script()
    plan = make_plan(probe=False)
    async with running(client, script) as tq:
        report = await (await start(client, plan, tq)).result()
        events = await activity_events(service_handle(client, plan, "keystone"))
    assert report.outcome == "succeeded"
    assert all(name != io.PROBE_AVAILABILITY for _, name in events)
    assert report.services[0].availability is None and script.probes == []


async def test_the_counters_survive_a_worker_restart(client: Client) -> None:
    """The first worker drains while the probe runs: its attempt fails as temporary after a last
    heartbeat, and the attempt on the next worker starts from those counters."""
    script = Script()
    plan = make_plan()
    child = service_handle(client, plan, "keystone")
    async with running(client, script) as tq:
        expand = blocked(script, "migration.db_sync:expand")
        handle = await start(client, plan, tq)

        async def counted(attempt: int, at_least: int) -> io.ProbeState | None:
            seen = await pending_probe(child)
            # the attempt's own heartbeat: until it sends one, the details shown are the previous attempt's
            # (a later attempt: a worker shutting down may still have polled the next one, and failed it)
            ok = seen and seen[0] == seen[1].counters.attempts >= attempt and seen[1].counters.requests >= at_least
            return seen[1] if seen and ok else None

        before = await eventually(
            lambda: counted(1, 5), within=20, what="the probe's heartbeats in the UI", ignore=(RPCError,)
        )
        await update(handle, "pause", io.PauseRequest(reason="worker restart"))
        expand.set()  # the service stops before its next step: the worker drains with only the probe running

        async def paused() -> bool:
            progress: io.ServiceProgress = await child.query("status", result_type=io.ServiceProgress)
            return progress.state == "paused"

        await eventually(paused, within=20, what="keystone paused after its expand")
    async with running(client, script, task_queue=tq):
        after = await eventually(
            lambda: counted(2, before.counters.requests + 5), within=30, what="the second attempt's heartbeats"
        )
        await update(handle, "resume", io.ResumeRequest())
        report = await handle.result()
    assert script.probes[0] == "start keystone#1 at 0"
    resumed = [int(p.rsplit(" ", 1)[1]) for p in script.probes[1:] if p.startswith("start keystone#")]
    assert resumed and min(resumed) >= before.counters.requests, script.probes
    a = report.services[0].availability
    assert a is not None and a.attempts >= 2 and a.requests > after.counters.requests
