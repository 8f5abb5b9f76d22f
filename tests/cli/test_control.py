"""pause / resume / approve / abort: exit 0 when accepted, 2 with the validator's reason when not."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
from temporalio import workflow
from temporalio.client import Client, WorkflowUpdateFailedError, WorkflowUpdateStage
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker

from cliapp.common import rpc_failure, update_failure
from model import errors, io
from tests.cli.conftest import Cli, WritePlan
from tests.standins import Script
from tests.workflows.helpers import running, service


async def test_operator_commands_and_their_refusals(client: Client, cli: Cli, write_plan: WritePlan) -> None:
    plan, wf_id = write_plan([service("keystone", gate={"approval": True})])
    script = Script()
    script.block["db.snapshot"] = release = threading.Event()
    async with running(client, script) as tq:
        assert (await cli("start", str(plan), tq=tq)).exit_code == 0
        doc = await cli.until(wf_id, lambda d: d["status"] and d["status"]["services"][0]["waiting_for"] == "keystone")
        assert doc["status"]["services"][0]["state"] == "waiting"
        res = await cli("status", wf_id)
        assert (
            res.exit_code == 0
            and f"keystone waits for keystone/gate#1: stackhop approve {wf_id} keystone/gate#1" in res.stdout
        )

        res = await cli("approve", wf_id, "nova")
        assert (
            res.exit_code == 2
            and "approve refused: unknown decision 'nova' (a decision is SERVICE/STEP#N); waiting now: keystone/gate#1;"
            " gates of this upgrade: keystone"
            in res.stderr
        )

        res = await cli("pause", wf_id, "--reason", "change freeze")
        assert res.exit_code == 0 and "paused" in res.stdout
        doc = await cli.status(wf_id)
        assert (
            doc["status"]["paused"]
            and "change freeze" in doc["status"]["message"]
            and "by tester" in doc["status"]["message"]
        )
        res = await cli("pause", wf_id)
        assert res.exit_code == 2 and "pause refused: the upgrade is already paused" in res.stderr
        assert (await cli("resume", wf_id)).exit_code == 0
        res = await cli("resume", wf_id)
        assert res.exit_code == 2 and "nothing to resume" in res.stderr

        res = await cli("approve", wf_id, "keystone")  # a gate may be named as `start --approve` names it
        assert res.exit_code == 0 and "gate keystone approved (keystone/gate#1)" in res.stdout
        res = await cli("approve", wf_id, "keystone/gate#1")
        assert res.exit_code == 2 and "keystone/gate#1 was answered already (approve)" in res.stderr
        await cli.until(wf_id, lambda d: d["status"]["services"][0]["step"] == "snapshot")

        res = await cli("abort", wf_id)
        assert res.exit_code == 2 and "--reason" in res.stderr  # required option
        res = await cli("abort", wf_id, "--reason", " ")
        assert res.exit_code == 2 and "give a reason" in res.stderr
        res = await cli("abort", wf_id, "--reason", "tempest is red in staging")
        assert res.exit_code == 0 and "aborting" in res.stdout
        res = await cli("abort", wf_id, "--reason", "again")
        assert res.exit_code in (0, 2)
        if res.exit_code == 2:
            assert "already aborting" in res.stderr or "has ended" in res.stderr

        res = await cli("watch", wf_id)
        assert res.exit_code == 1, res.output
        assert "aborted" in res.stdout and "tempest is red in staging" in res.stdout
        release.set()
    assert script.of("k8s.set_images") == []  # nothing was rolled

    res = await cli("pause", wf_id)
    assert res.exit_code == 2 and f"the upgrade {wf_id} has ended (failed)" in res.stderr
    res = await cli("status", wf_id)
    assert res.exit_code == 1 and "aborted" in res.stdout


async def test_unknown_and_non_upgrade_workflows_are_bad_input(client: Client, cli: Cli, write_plan: WritePlan) -> None:
    for cmd in (
        ["pause", "upgrade/nowhere"],
        ["resume", "nowhere"],
        ["approve", "nowhere", "g"],
        ["abort", "nowhere", "--reason", "x"],
        ["abandon", "nowhere", "--reason", "x"],
    ):
        res = await cli(*cmd)
        assert res.exit_code == 2, cmd
        assert "no upgrade 'upgrade/nowhere'" in res.stderr and "stackhop list --all" in res.stderr
    plan, wf_id = write_plan()
    async with running(client, Script()) as tq:
        assert (await cli("start", str(plan), "--wait", tq=tq)).exit_code == 0
    res = await cli("status", f"{wf_id}/keystone")  # the service's child workflow
    assert res.exit_code == 2 and "is a ServiceUpgrade workflow, not an upgrade" in res.stderr
    # an upgrade that ends between the command's describe and its update: the server's refusal says so
    with pytest.raises(RPCError) as ended:
        await client.get_workflow_handle(wf_id).execute_update("pause", io.PauseRequest(reason="late"))
    for wf, see in ((wf_id, f"stackhop status {wf_id}"), ("fleet/f", "stackhop fleet status f")):
        failure = rpc_failure(ended.value, wf)
        assert (
            failure.code == 2 and failure.message.startswith(f"{wf} has ended (") and f"see `{see}`" in failure.message
        )


@workflow.defn(name="EndsWhileAnUpdateWaits", sandboxed=False)
class EndsWhileAnUpdateWaits:
    """A workflow that closes while an accepted update still runs (as an upgrade whose rollback ends
    while an operator's second abort is in flight)."""

    def __init__(self) -> None:
        self.done = False

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: self.done)

    @workflow.signal
    def end(self) -> None:
        self.done = True

    @workflow.update(unfinished_policy=workflow.HandlerUnfinishedPolicy.ABANDON)
    async def abort(self) -> None:
        await workflow.wait_condition(lambda: False)


async def test_an_update_in_flight_when_the_workflow_closes_is_reported_as_ended(client: Client) -> None:
    wf_id, tq = f"upgrade/closing-{uuid.uuid4().hex[:8]}", f"closing-{uuid.uuid4().hex[:8]}"
    async with Worker(client, task_queue=tq, workflows=[EndsWhileAnUpdateWaits]):
        handle = await client.start_workflow(EndsWhileAnUpdateWaits.run, id=wf_id, task_queue=tq)
        update = await handle.start_update(EndsWhileAnUpdateWaits.abort, wait_for_stage=WorkflowUpdateStage.ACCEPTED)
        await handle.signal(EndsWhileAnUpdateWaits.end)
        with pytest.raises(WorkflowUpdateFailedError) as closed:
            never: object = await update.result()  # (typed: mypy takes the async handler's result for a coroutine)
            assert never is None
        await handle.result()
    failure = update_failure("abort", closed.value, wf_id)
    assert failure.code == 2 and failure.message.startswith(f"{wf_id} has ended ("), failure.message
    assert f"see `stackhop status {wf_id}`" in failure.message
    # an update the server took but no worker accepted before the workflow closed (CI saw it once)
    aborted = RPCError("workflow update was aborted by closing workflow", RPCStatusCode.NOT_FOUND, b"")
    assert rpc_failure(aborted, wf_id).message.startswith(f"{wf_id} has ended (workflow update was aborted")


def service_doc(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in doc["status"]["services"] if s["service"] == name)


async def test_decisions_go_to_the_service_that_waits_for_them(client: Client, cli: Cli, write_plan: WritePlan) -> None:
    """approve/resume name the upgrade; the CLI finds the service workflow that takes them."""
    plan, wf_id = write_plan([service("keystone"), service("glance", gate={"approval": True})], on_failure="pause")
    script = Script()
    script.fail["migration.db_sync:expand"] = errors.MIGRATION_FAILED
    script.fail_times["migration.db_sync:expand"] = 1
    script.answers["checks.run:endpoint:post"] = [
        io.CheckResult(status="inconclusive", message="catalog timeout"),
        io.CheckResult(status="pass"),
    ]
    async with running(client, script) as tq:
        assert (await cli("start", str(plan), tq=tq)).exit_code == 0
        doc = await cli.until(wf_id, lambda d: service_doc(d, "keystone")["waiting_for"] == io.DECISION)
        assert service_doc(doc, "keystone")["step"] == "expand" and service_doc(doc, "glance")["state"] == "pending"

        res = await cli("approve", wf_id, "glance")
        assert res.exit_code == 2 and "glance has not started yet" in res.stderr
        assert service_doc(doc, "keystone")["decision"] == "keystone/expand#1"
        res = await cli("approve", wf_id, "keystone/expand")
        assert res.exit_code == 2 and "unknown decision 'keystone/expand'" in res.stderr
        res = await cli("approve", wf_id, "keystone/expand#1")  # a failed step is resumed, not approved
        assert res.exit_code == 2 and (
            "keystone/expand#1 is a failed expand (MigrationFailed), not an inconclusive check: it cannot be approved;"
            " resume retries it, abort rolls back" in res.stderr
        )
        res = await cli("resume", wf_id)
        assert res.exit_code == 0 and f"{wf_id}/keystone: expand is retried" in res.stdout

        doc = await cli.until(
            wf_id,
            lambda d: (
                service_doc(d, "keystone")["step"] == "validate" and bool(service_doc(d, "keystone")["waiting_for"])
            ),
        )
        assert "approve keystone/validate#1 accepts it" in service_doc(doc, "keystone")["message"]
        res = await cli("approve", wf_id, "keystone/validate#1")
        assert res.exit_code == 0 and "inconclusive check is accepted" in res.stdout

        await cli.until(wf_id, lambda d: service_doc(d, "glance")["waiting_for"] == "glance")
        res = await cli("status", wf_id)
        assert f"stackhop approve {wf_id} glance" in res.stdout
        res = await cli("approve", wf_id, "glance")
        assert res.exit_code == 0 and f"{wf_id}/glance: gate glance approved" in res.stdout
        res = await cli("watch", wf_id)
        assert res.exit_code == 0, res.output
    assert script.calls.count("migration.db_sync:expand") == 3  # keystone twice, glance once


async def test_abandon_ends_a_stuck_rollback(client: Client, cli: Cli, write_plan: WritePlan) -> None:
    """abandon is accepted only while a rollback step waits for a decision; the report lists what is undone."""
    plan, wf_id = write_plan()
    script = Script()
    script.fail["migration.db_sync:expand"] = errors.MIGRATION_FAILED
    script.fail["db.restore"] = errors.RESTORE_FAILED
    script.block["migration.db_sync:expand"] = release = threading.Event()
    async with running(client, script) as tq:
        assert (await cli("start", str(plan), tq=tq)).exit_code == 0
        await cli.until(wf_id, lambda d: d["status"]["services"][0]["step"] == "expand")
        res = await cli("abandon", wf_id, "--reason", "give up")
        assert res.exit_code == 2 and "abandon refused: no rollback waits for a decision" in res.stderr
        release.set()
        doc = await cli.until(wf_id, lambda d: d["status"]["services"][0]["decision"] == "keystone/restore#1")
        assert doc["status"]["services"][0]["answers"] == ["resume", "abandon"]
        res = await cli("status", wf_id)
        assert f"stackhop abandon {wf_id} --reason" in res.stdout

        res = await cli("abort", wf_id, "--reason", "stop")
        assert res.exit_code == 0 and "keystone: its rollback is in progress" in res.stdout
        assert "the abort waits for it — it waits for keystone/restore#1" in res.stdout
        res = await cli("abandon", wf_id)
        assert res.exit_code == 2 and "--reason" in res.stderr
        res = await cli("abandon", wf_id, "--reason", "the DBA restores by hand")
        assert res.exit_code == 0, res.output
        assert f"{wf_id}/keystone: the rollback is abandoned at keystone/restore#1; left undone: restore" in res.stdout
        res = await cli("watch", wf_id)
        assert res.exit_code == 1 and "rollback abandoned; left undone: restore" in res.stdout
    assert "k8s.scale:up" not in script.calls
