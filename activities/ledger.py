"""The ledger's activities: record in it, read it, and ask the cloud what it says.

``ledger.record`` and ``ledger.read`` talk to the cloud's Ledger workflow (workflows/ledger.py, id
``ledger/<cloud>``) through the Temporal client the worker gives its activities
(``activity.client()``: the worker's own connection, no second one): a record is a signal-with-start
(the first record starts the ledger, on the task queue of the worker that records), a read is the
``state`` query (no ledger yet: an empty one, ``found`` False).

``ledger.check_cloud`` asks the services themselves, read-only, with the commands the worker
already runs for the recipes (model/recipes/): per service of the plan

* online data migrations: the ``<service>-status upgrade check`` of the release the service runs
  (the ledger's version, else the plan's target tag), through activities/validation.py. A check
  whose details name ``online_data_migrations`` and does not say Success means rows are left for
  them (placement: "Missing Root Provider IDs", "Incomplete Consumers"). A service whose status
  check has no such check (nova: its status check does not look at them, and its only other tool
  runs them) answers "unknown": the ledger's word stands;
* the schema: the recipe's ``check`` phase (keystone ``db_sync --check``, glance ``db check``)
  through activities/migration.py with the plan's target release: contract-needed or
  migrate-needed means expanded and not contracted, up-to-date or expand-needed that it is not.

A check that cannot run answers "unknown" with the reason, never fails the pre-flight by itself.
"""

from __future__ import annotations

import re
import time

import structlog
from temporalio import activity
from temporalio.client import WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from activities import migration, validation
from model.io import (
    LEDGER_CHECK_CLOUD,
    LEDGER_READ,
    LEDGER_RECORD,
    CheckInput,
    CloudCheck,
    CloudCheckInput,
    LedgerAck,
    LedgerInput,
    LedgerRead,
    LedgerReadInput,
    LedgerRecord,
    LedgerState,
    MigrateInput,
    OnlineState,
    ServiceCloudCheck,
    ledger_workflow_id,
)
from model.plan import Service, UpgradePlan, UpgradeStatusCheck
from model.recipes import service_recipe

log = structlog.get_logger(__name__)

LEDGER_WORKFLOW = "Ledger"
#: schema check states that mean: expanded to the target, not contracted
EXPANDED = frozenset({"migrate-needed", "contract-needed"})
NOT_EXPANDED = frozenset({"up-to-date", "expand-needed"})
ONLINE_TOOL = "online_data_migrations"


@activity.defn(name=LEDGER_RECORD)
async def record(rec: LedgerRecord) -> LedgerAck:
    """Signal-with-start of the cloud's ledger: the record is kept once (a retry's is ignored)."""
    client = activity.client()
    await client.start_workflow(
        LEDGER_WORKFLOW,
        LedgerInput(cloud=rec.cloud),
        id=ledger_workflow_id(rec.cloud),
        task_queue=activity.info().task_queue,
        start_signal="record",
        start_signal_args=[rec],
        static_summary=f"the upgrade ledger of {rec.cloud}",
    )
    log.info("ledger_record", cloud=rec.cloud, upgrade=rec.upgrade_id, entries=len(rec.entries), source=rec.source)
    return LedgerAck(message=f"recorded in {ledger_workflow_id(rec.cloud)}")


@activity.defn(name=LEDGER_READ)
async def read(inp: LedgerReadInput) -> LedgerRead:
    handle: WorkflowHandle[object, None] = activity.client().get_workflow_handle(ledger_workflow_id(inp.cloud))
    try:
        state = await handle.query("state", result_type=LedgerState)
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            return LedgerRead(found=False, state=LedgerState(cloud=inp.cloud))
        raise
    return LedgerRead(found=True, state=state)


def failing_online_checks(output: str) -> list[str]:
    """The oslo.upgradecheck results whose details name the online data migrations and that did not
    succeed, as "Check name: Result". Pure (the table is the tool's output)."""
    text = re.sub(r"[|+\-=]{2,}|\|", " ", output)
    blocks = re.split(r"\bCheck:\s*", text)[1:]
    out = []
    for block in blocks:
        words = " ".join(block.split())
        name, _, rest = words.partition(" Result: ")
        result = rest.split(" ", 1)[0] if rest else ""
        if ONLINE_TOOL in words and result and result != "Success":
            out.append(f"{name.strip()}: {result}")
    return out


def online_state(svc: Service, version: str, cloud: str) -> tuple[OnlineState, str, list[str]]:
    """(pending | done | unknown | not-applicable, detail, commands run) for one service."""
    recipe = service_recipe(svc.name)
    if recipe is None or "online" not in recipe.commands:
        return "not-applicable", "", []
    check = UpgradeStatusCheck(kind="upgrade-status")
    inp = CheckInput(service=svc.name, cloud=cloud, check=check, stage="pre", version=version)
    try:
        command = validation.status_command(inp, check)
        res = validation.upgrade_status_check(inp, check)
    except Exception as e:  # the check cannot run here: it cannot tell
        return "unknown", f"its status check did not run: {getattr(e, 'message', None) or e}", []
    shown = " ".join(command)
    output = str(res.details.get("output", ""))
    code = res.details.get("exit_code")
    if code not in (0, 1, 2):
        return "unknown", f"`{shown}` exited {code}", [shown]
    failing = failing_online_checks(output)
    if failing:
        return "pending", f"`{shown}`: {'; '.join(failing)}", [shown]
    if ONLINE_TOOL not in " ".join(output.split()):
        if code == 0:
            return "unknown", f"`{shown}` has no check of the online data migrations", [shown]
        return "unknown", f"`{shown}` exited {code} and names no online data migration check", [shown]
    return "done", f"`{shown}`: its online-migration checks pass", [shown]


def schema_state(svc: Service) -> tuple[str, bool | None, list[str], str]:
    """(check state, expanded-not-contracted or None, commands run, detail) for one service."""
    recipe = service_recipe(svc.name)
    if recipe is None or "check" not in recipe.commands or svc.migration.mode != "expand-contract":
        return "", None, [], ""
    w = svc.workloads[0] if svc.workloads else None
    inp = MigrateInput(
        service=svc.name,
        phase="check",
        migration=svc.migration,
        database=svc.database,
        version=w.tag if w else "",
        image=w.image if w else "",
    )
    try:
        res = migration.db_sync(inp)
    except Exception as e:
        return "unknown", None, [], f"schema check did not run: {getattr(e, 'message', None) or e}"
    shown = " ".join(res.command)
    if res.state in EXPANDED:
        return res.state, True, [shown], ""
    if res.state in NOT_EXPANDED:
        return res.state, False, [shown], ""
    return res.state, None, [shown], ""


def check_service(plan: UpgradePlan, svc: Service, version: str) -> ServiceCloudCheck:
    started = time.monotonic()
    online, detail, ran = online_state(svc, version, plan.cloud.openstack.cloud)
    schema, expanded, ran_schema, schema_detail = schema_state(svc)
    recipe = service_recipe(svc.name)
    online_command = (
        " ".join([*recipe.tool, *recipe.commands["online"][0]]) if recipe and online != "not-applicable" else ""
    )
    return ServiceCloudCheck(
        service=svc.name,
        online=online,
        online_command=online_command,
        online_detail="; ".join(d for d in (detail, schema_detail) if d),
        schema_state=schema,
        expanded_not_contracted=expanded,
        commands=[*ran, *ran_schema],
        seconds=round(time.monotonic() - started, 3),
    )


@activity.defn(name=LEDGER_CHECK_CLOUD, no_thread_cancel_exception=True)
def check_cloud(inp: CloudCheckInput) -> CloudCheck:
    """Each service's online-migration and schema checks, read-only (see the module's docstring)."""
    known = inp.ledger.services if inp.ledger else {}
    out = []
    for svc in inp.plan.services:
        entry = known.get(svc.name)
        version = (entry.version if entry and entry.version else "") or (svc.workloads[0].tag if svc.workloads else "")
        checked = check_service(inp.plan, svc, version)
        log.info(
            "ledger_check_cloud",
            service=svc.name,
            online=checked.online,
            schema=checked.schema_state,
            seconds=checked.seconds,
        )
        out.append(checked)
    return CloudCheck(services=out)
