"""Record the workflow histories that the replay test (tests/workflows/test_replay.py) replays.

    .venv/bin/python -m tests.histories.record [SCENARIO ...]

With scenario names, only those are recorded (their files replaced, every other history kept: a new
path adds its histories beside the committed ones); without, every scenario is.

One scenario per path a running upgrade can be on: it drives an upgrade with the stand-in
activities (and the operator's commands, where the path needs them) to its end, then writes the
history of every workflow it ran — ``<scenario>--upgrade.json``, ``<scenario>--<service>.json``,
``<scenario>--canary.json`` — beside this file. Payloads are recorded plain (no codec keys): the
replay test reads them with the encrypting converter, which passes plain payloads through.

When to run it is the versioning policy in workflows/__init__.py: before the first tagged release,
in the same commit as a change that breaks replay (and that commit says so); after it, never for
such a change — version it with ``workflow.patched()`` instead. A new path adds its scenario here.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import uuid
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowFailureError, WorkflowHandle

from model import errors, io
from model.plan import UpgradePlan
from tests.conftest import start_dev_server
from tests.dataplane_standins import DataPlaneScript
from tests.standins import Script
from tests.workflows import test_helm_adapter as helm_adapter
from tests.workflows import test_recipes as recipes
from tests.workflows.helpers import (
    blocked,
    make_plan,
    running,
    service,
    service_handle,
    start,
    update,
    wait_for,
    waiting_for_decision,
)

HERE = Path(__file__).parent
Drive = Callable[[Client, UpgradePlan, WorkflowHandle[Any, Any], Script], Awaitable[None]]


async def to_the_end(client: Client, plan: UpgradePlan, handle: WorkflowHandle[Any, Any], script: Script) -> None:
    with suppress(WorkflowFailureError):
        await handle.result()


@dataclass
class Scenario:
    name: str
    services: list[dict[str, Any]] = field(default_factory=lambda: [service("keystone")])
    policy: dict[str, Any] = field(default_factory=dict)
    fail: dict[str, str] = field(default_factory=dict)  # Script.fail
    fail_times: dict[str, int] = field(default_factory=dict)
    answers: dict[str, Any] = field(default_factory=dict)  # Script.answers
    drive: Drive = to_the_end
    canary: bool = False
    cloud: dict[str, io.ServiceCloudCheck] = field(default_factory=dict)  # Script.cloud (ledger.check_cloud)
    ledger: bool = False  # record the cloud's Ledger workflow too (<scenario>--ledger.json)
    # data plane batches of the first service (DataPlaneScript): <scenario>--batch-<n>.json each
    batches: int = 0

    def script(self) -> Script:
        script = DataPlaneScript() if self.batches else Script()
        script.fail.update(self.fail)
        script.fail_times.update(self.fail_times)
        script.answers.update({k: list(v) if isinstance(v, list) else v for k, v in self.answers.items()})
        script.cloud.update(self.cloud)
        return script


def waiting_for_id(decision: str) -> Callable[[io.UpgradeStatus], bool]:
    return lambda st: st.services[0].decision == decision


async def approve_batches(client: Client, plan: UpgradePlan, handle: WorkflowHandle[Any, Any], script: Script) -> None:
    """Each data plane batch after the canary approved (nova/batch#2, nova/batch#3)."""
    for n in (2, 3):
        decision = f"nova/batch#{n}"
        await wait_for(client, handle, waiting_for_id(decision))
        await update(service_handle(client, plan, "nova"), "approve", io.ApproveRequest(gate=decision))
    await to_the_end(client, plan, handle, script)


async def approve_gate(client: Client, plan: UpgradePlan, handle: WorkflowHandle[Any, Any], script: Script) -> None:
    await wait_for(client, handle, lambda st: st.services[0].waiting_for == "identity-go")
    await update(service_handle(client, plan, "keystone"), "approve", io.ApproveRequest(gate="identity-go"))
    await to_the_end(client, plan, handle, script)


async def pause_then_resume(
    client: Client, plan: UpgradePlan, handle: WorkflowHandle[Any, Any], script: Script
) -> None:
    release = blocked(script, "k8s.wait_rollout")
    await wait_for(client, handle, lambda st: st.services[0].step == "rollout")
    await update(handle, "pause", io.PauseRequest(reason="change freeze"))
    release.set()
    await wait_for(client, handle, lambda st: st.services[0].state == "paused")
    await update(handle, "resume", io.ResumeRequest())
    await to_the_end(client, plan, handle, script)


async def abort_in_rollout(client: Client, plan: UpgradePlan, handle: WorkflowHandle[Any, Any], script: Script) -> None:
    blocked(script, "k8s.wait_rollout")
    await wait_for(client, handle, lambda st: st.services[0].step == "rollout")
    await update(handle, "abort", io.AbortRequest(reason="tempest is red in staging"))
    await to_the_end(client, plan, handle, script)


async def accept_inconclusive(
    client: Client, plan: UpgradePlan, handle: WorkflowHandle[Any, Any], script: Script
) -> None:
    await wait_for(client, handle, waiting_for_decision)
    await update(service_handle(client, plan, "keystone"), "approve", io.ApproveRequest(gate="keystone/validate#1"))
    await to_the_end(client, plan, handle, script)


async def resume_failed_step(
    client: Client, plan: UpgradePlan, handle: WorkflowHandle[Any, Any], script: Script
) -> None:
    await wait_for(client, handle, waiting_for_decision)
    await update(service_handle(client, plan, "keystone"), "resume", io.ResumeRequest())
    await to_the_end(client, plan, handle, script)


OFFLINE = service("placement", migration={"mode": "offline"}, checks=[])
GATED = service("keystone", gate={"approval": True, "name": "identity-go"})
HELM = service("keystone", helm=helm_adapter.HELM)
IN_RELEASE = {io.K8S_READ_IMAGES: helm_adapter.owned_by(helm_adapter.RELEASE)}

SCENARIOS = [
    Scenario("success", services=[service("keystone"), OFFLINE]),
    Scenario("rollout-rollback", fail={"k8s.wait_rollout": errors.ROLLOUT_FAILED}),
    Scenario("migration-rollback", fail={"migration.db_sync:expand": errors.MIGRATION_FAILED}),
    Scenario("tempest-rollback", answers={"tempest.run": io.TempestResult(status="fail", failed=2)}),
    Scenario("offline-rollback", services=[OFFLINE], fail={"migration.db_sync:offline": errors.MIGRATION_FAILED}),
    Scenario("gate-approve", services=[GATED], drive=approve_gate),
    Scenario("gate-timeout", services=[GATED], policy={"gate_timeout": "1s"}),
    Scenario("pause-resume", drive=pause_then_resume),
    Scenario("abort", drive=abort_in_rollout),
    Scenario(
        "inconclusive-approve",
        answers={"tempest.run": io.TempestResult(status="inconclusive", message="no tests ran")},
        drive=accept_inconclusive,
    ),
    Scenario(
        "failed-step-resume",
        policy={"on_failure": "pause"},
        fail={"migration.db_sync:expand": errors.MIGRATION_FAILED},
        fail_times={"migration.db_sync:expand": 1},
        drive=resume_failed_step,
    ),
    Scenario("canary", canary=True),
    # under a Helm release: roll, undo and quiesce go through the release (workflows/adapters.py)
    Scenario("helm-rollout-rollback", [HELM], answers=IN_RELEASE, fail={"k8s.wait_rollout": errors.ROLLOUT_FAILED}),
    Scenario("helm-restore", [HELM], answers=IN_RELEASE, fail={"migration.db_sync:expand": errors.MIGRATION_FAILED}),
    # nova's recipe (model/recipes/nova.py): the target release's status check, three databases, the
    # unpin restart after the rollout, online data migrations called again until done
    Scenario("nova-success", [recipes.nova()], answers={"migration.db_sync:online": [recipes.MORE, recipes.DONE]}),
    # nova's data plane (workflows/dataplane*.py): three batches, each a DataPlaneBatch child, the
    # later two approved; node-2's drain fails: it is fenced, the service goes on (max_failed 1)
    Scenario(
        "nova-dataplane",
        [
            recipes.nova(
                data_plane={
                    "workloads": ["nova-compute"],
                    "order": "name",
                    "batch_size": 2,
                    "max_per_zone": 1,
                    "drain": "live",
                    "approve": True,
                    "max_failed": 1,
                }
            )
        ],
        fail={"dataplane.drain:node-2": errors.ROLLOUT_FAILED},
        drive=approve_batches,
        batches=3,
    ),
    # the availability probe beside the steps (workflow.patched("availability-probe")): stopped at the
    # end of a success and of a rollback
    Scenario("probe-success"),
    Scenario("probe-rollback", fail={"k8s.wait_rollout": errors.ROLLOUT_FAILED}),
    # the ledger (workflows/ledger.py, patch "ledger"): the pre-flight reads it and checks the cloud,
    # which disagrees (keystone's schema expanded, not contracted): the ledger is corrected, the
    # upgrade runs, its end is recorded
    Scenario(
        "ledger-cloud-wins",
        ledger=True,
        cloud={
            "keystone": io.ServiceCloudCheck(
                service="keystone",
                online="not-applicable",
                schema_state="contract-needed",
                expanded_not_contracted=True,
            )
        },
    ),
]


async def record(client: Client, sc: Scenario) -> list[Path]:
    plan = make_plan(sc.services, **sc.policy)
    script = sc.script()
    ids = {"upgrade": plan.workflow_id} | {
        s.name: io.service_workflow_id(plan.workflow_id, s.name) for s in plan.services
    }
    if sc.ledger:
        ids["ledger"] = io.ledger_workflow_id(plan.cloud.name)
    for n in range(1, sc.batches + 1):
        ids[f"batch-{n}"] = f"{io.service_workflow_id(plan.workflow_id, plan.services[0].name)}/batch-{n}"
    async with running(client, script) as tq:
        if sc.canary:
            ids["canary"] = f"canary/{uuid.uuid4().hex[:6]}"
            canary = await client.start_workflow(
                "Canary", io.CanaryInput(name="c1", plan=plan), id=ids["canary"], task_queue=tq
            )
            await to_the_end(client, plan, canary, script)
        else:
            await sc.drive(client, plan, await start(client, plan, tq), script)
    written = []
    for suffix, wf_id in ids.items():
        history = await client.get_workflow_handle(wf_id).fetch_history()
        out = HERE / f"{sc.name}--{suffix}.json"
        out.write_text(history.to_json())
        written.append(out)
    return written


async def main(names: list[str]) -> None:
    logging.getLogger("temporalio.activity").setLevel(logging.CRITICAL)  # the injected failures are expected
    unknown = set(names) - {sc.name for sc in SCENARIOS}
    if unknown:
        raise SystemExit(f"no scenario {', '.join(sorted(unknown))}; known: {', '.join(sc.name for sc in SCENARIOS)}")
    chosen = [sc for sc in SCENARIOS if sc.name in names] if names else SCENARIOS
    env = await start_dev_server(encrypted=False)  # committed histories are plain: anyone replays them
    try:
        for sc in chosen:
            for old in HERE.glob(f"{sc.name}--*.json"):
                old.unlink()
        if not names:
            for old in HERE.glob("*.json"):
                old.unlink()
        for sc in chosen:
            for path in await record(env.client, sc):
                print("wrote", path.name)
    finally:
        await env.shutdown()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
