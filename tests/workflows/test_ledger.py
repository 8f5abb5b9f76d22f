"""The upgrade ledger (workflows/ledger.py) with stand-in activities for the cloud's check and the
real ``ledger.record`` / ``ledger.read`` (they only talk to Temporal): an upgrade that leaves online
data migrations unfinished is recorded, the next upgrade's pre-flight reads it and refuses with the
reason and nothing changed; when the cloud says otherwise the cloud wins and the report says so; a
rollback after a complete expand is recorded as expanded, not contracted; the ledger continues as
new and keeps its state."""

from __future__ import annotations

import uuid
from typing import Any

from temporalio.client import Client, WorkflowHandle

from cliapp import reports
from model import errors, io
from tests.standins import Script
from tests.waiting import eventually
from tests.workflows.helpers import (
    make_plan,
    outcome_of,
    running,
    service,
    start,
    update,
    wait_for,
    waiting_for_decision,
)

NOVA_ODM = "nova-manage db online_data_migrations --max-count 1000"
PLACEMENT_ODM = "placement-manage db online_data_migrations --max-count 1000"
CHANGES = {"k8s.set_images", "db.snapshot", "migration.db_sync:expand", "migration.db_sync:online"}


def ledger_of(client: Client, cloud: str) -> WorkflowHandle[Any, Any]:
    return client.get_workflow_handle(io.ledger_workflow_id(cloud))


async def ledger_state(client: Client, cloud: str) -> io.LedgerState:
    state: io.LedgerState = await ledger_of(client, cloud).query("state", result_type=io.LedgerState)
    return state


async def leave_online_pending(client: Client, script: Script, plan: Any, tq: str) -> io.UpgradeReport:
    """An upgrade whose online data migrations fail past the point of no return, then aborted."""
    script.fail["migration.db_sync:online"] = errors.MIGRATION_FAILED
    handle = await start(client, plan, tq)
    await wait_for(client, handle, waiting_for_decision)
    await update(handle, "abort", io.AbortRequest(reason="the DBA finishes them by hand"))
    kind, report = await outcome_of(handle)
    assert kind == errors.UPGRADE_FAILED, report.message
    del script.fail["migration.db_sync:online"]
    return report


async def test_unfinished_online_migrations_are_recorded_and_refuse_the_next_upgrade(client: Client) -> None:
    script = Script()
    plan = make_plan([service("nova")])
    cloud = plan.cloud.name
    # nova's status check does not look at its online data migrations: the cloud cannot tell
    script.cloud["nova"] = io.ServiceCloudCheck(service="nova", online="unknown", online_command=NOVA_ODM)
    async with running(client, script) as tq:
        first = await leave_online_pending(client, script, plan, tq)
        state = await ledger_state(client, cloud)
        (entry,) = state.services.values()
        assert (entry.service, entry.release, entry.version) == ("nova", "2026.1", "29.1.0")
        assert entry.online_pending and entry.online_command == NOVA_ODM and not entry.expanded_not_contracted
        assert entry.upgrade_id == plan.workflow_id and entry.outcome == "failed" and entry.run_id
        assert [e.outcome for e in state.history] == ["failed"] and state.records == 1
        assert any("online data migrations unfinished" in line for line in first.ledger)

        before = len(script.calls)
        kind, report = await outcome_of(await start(client, plan, tq))
        after = await ledger_state(client, cloud)
    assert kind == errors.UPGRADE_FAILED
    assert report.message.startswith("pre-flight: refused: nova: the online data migrations left by ")
    assert f"run `{NOVA_ODM}` until it exits 0" in report.message and "(nothing was changed)" in report.message
    assert not CHANGES & set(script.calls[before:]) and report.services == []
    (failed,) = [r for r in report.preflight if r.status == "failed"]
    assert "online data migrations: unknown" in failed.detail
    # the refused upgrade touched no service: the ledger still holds the first one's record only
    assert after.records == 1
    assert script.ledger_calls.count(io.LEDGER_CHECK_CLOUD) == 2


async def test_the_cloud_wins_when_it_says_the_migrations_are_done(client: Client) -> None:
    script = Script()
    plan = make_plan([service("placement")])
    cloud = plan.cloud.name
    async with running(client, script) as tq:
        await leave_online_pending(client, script, plan, tq)
        assert (await ledger_state(client, cloud)).services["placement"].online_pending
        # someone ran them by hand: the status check's online-migration checks pass now
        script.cloud["placement"] = io.ServiceCloudCheck(
            service="placement", online="done", online_detail="`placement-status upgrade check`: they pass"
        )
        report = await (await start(client, plan, tq)).result()
        assert report.outcome == "succeeded"
        (said,) = [line for line in report.ledger if "the cloud wins" in line]
        assert said.startswith("placement: the ledger says online data migrations unfinished, the cloud says done")
        assert f"- {said}" in reports.render_markdown(report).split("## Ledger")[1]
        assert f"ledger: {said}" in reports.summary_lines(report)
        (preflight,) = [r for r in report.preflight if r.step == "preflight" and "ledger" in r.detail]
        assert preflight.status == "done" and "the cloud wins" in preflight.detail
        state = await ledger_state(client, cloud)
    # the correction, then this upgrade's own record (it finished the online migrations)
    assert [e.outcome for e in state.history] == ["failed", "preflight", "succeeded"]
    assert state.history[1].summary.startswith("cloud check: placement at")
    assert not state.services["placement"].online_pending and state.services["placement"].source == "upgrade"


async def test_the_cloud_wins_when_it_says_migrations_are_pending_the_ledger_does_not_know(client: Client) -> None:
    script = Script()
    plan = make_plan([service("placement")])
    script.cloud["placement"] = io.ServiceCloudCheck(
        service="placement",
        online="pending",
        online_command=PLACEMENT_ODM,
        online_detail="`placement-status upgrade check`: Missing Root Provider IDs: Failure",
    )
    async with running(client, script) as tq:
        kind, report = await outcome_of(await start(client, plan, tq))
        state = await ledger_state(client, plan.cloud.name)
    assert kind == errors.UPGRADE_FAILED
    assert report.message.startswith(
        f"pre-flight: refused: placement: the online data migrations are unfinished; run `{PLACEMENT_ODM}`"
    )
    assert report.ledger[0] == (
        "placement: the ledger says online data migrations complete, the cloud says pending "
        "(`placement-status upgrade check`: Missing Root Provider IDs: Failure): the cloud wins"
    )
    assert not CHANGES & set(script.calls)
    entry = state.services["placement"]
    assert entry.online_pending and entry.source == "cloud" and entry.online_command == PLACEMENT_ODM


async def test_a_rollback_after_a_complete_expand_is_recorded_expanded_not_contracted(client: Client) -> None:
    script = Script()
    script.answers["tempest.run"] = io.TempestResult(status="fail", failed=1, failing_tests=["t.test_x"])
    plan = make_plan()  # keystone, expand-contract
    async with running(client, script) as tq:
        kind, report = await outcome_of(await start(client, plan, tq))
        state = await ledger_state(client, plan.cloud.name)
    assert kind == errors.UPGRADE_ROLLED_BACK
    entry = state.services["keystone"]
    assert (entry.release, entry.outcome, entry.online_pending) == ("2025.2", "rolled-back", False)
    assert entry.expanded_not_contracted and entry.contract_command == "keystone-manage db_sync --contract"
    assert report.ledger[-1] == "recorded: keystone: expanded, not contracted"


def record(cloud: str, n: int, service: str = "nova") -> io.LedgerRecord:
    return io.LedgerRecord(
        cloud=cloud,
        upgrade_id=f"upgrade/{cloud}",
        run_id=f"run-{n}",
        release_from="2025.2",
        release_to="2026.1",
        outcome="succeeded",
        entries=[io.LedgerEntry(service=service, release="2026.1", online_pending=n % 2 == 1, run_id=f"run-{n}")],
        recorded_at=f"2026-01-0{n}T00:00:00+00:00",
    )


async def test_the_ledger_continues_as_new_and_keeps_its_state(client: Client) -> None:
    script = Script()
    cloud = f"t{uuid.uuid4().hex[:10]}"
    wid = io.ledger_workflow_id(cloud)
    async with running(client, script) as tq:
        first = await client.start_workflow(
            "Ledger",
            io.LedgerInput(cloud=cloud, records_per_run=2),
            id=wid,
            task_queue=tq,
            start_signal="record",
            start_signal_args=[record(cloud, 1)],
        )
        handle = ledger_of(client, cloud)
        await handle.signal("record", record(cloud, 1))  # a retry's record: kept once
        await handle.signal("record", record(cloud, 2, "placement"))

        async def next_run() -> io.LedgerState | None:
            desc = await client.get_workflow_handle(wid).describe()
            if desc.run_id == first.result_run_id:
                return None
            return await ledger_state(client, cloud)

        state = await eventually(next_run, within=20, what="the ledger's second run")
        assert (state.runs, state.records) == (2, 2)
        assert set(state.services) == {"nova", "placement"} and state.services["nova"].online_pending
        await handle.signal("record", record(cloud, 3))
        await handle.signal("record", record("another-cloud", 4))  # another cloud's record: ignored
        await handle.signal("record", record(cloud, 5))
        after = await eventually(
            lambda: _records_at_least(client, cloud, 4), within=20, what="the later records in the second run"
        )
        await client.get_workflow_handle(wid).terminate("test over")
    assert [e.run_id for e in after.history] == ["run-1", "run-2", "run-3", "run-5"]
    assert after.services["nova"].run_id == "run-5" and after.runs == 2


async def _records_at_least(client: Client, cloud: str, n: int) -> io.LedgerState | None:
    state = await ledger_state(client, cloud)
    return state if state.records >= n else None
