"""The ledger's activities: record in it, read it, and ask the cloud what it says.

``ledger.record`` and ``ledger.read`` talk to the cloud's Ledger workflow (workflows/ledger.py, id
``ledger/<cloud>``) through the Temporal client the worker gives its activities
(``activity.client()``: the worker's own connection, no second one): a record is a signal-with-start
(the first record starts the ledger, on the task queue of the worker that records), a read is the
``state`` query (no ledger yet: an empty one, ``found`` False).

``ledger.check_cloud`` asks the services themselves, read-only, with the commands the worker
already runs for the recipes (model/recipes/): per service of the plan

* online data migrations: the ``<service>-status upgrade check`` of the release the service runs
  (the ledger's version, else the plan's target tag), through activities/validation.py: the
  results of the checks its recipe names (``online_checks``; placement: "Missing Root Provider
  IDs", "Incomplete Consumers") — any but Success means rows are left for them. A service without
  such checks (nova: its status check does not look at them, and its only other tool runs them)
  answers "unknown" without running anything: the ledger's word stands;
* the schema: the recipe's ``check`` phase (keystone ``db_sync --check``, glance ``db check``)
  through activities/migration.py with the plan's target release: contract-needed or
  migrate-needed means expanded and not contracted, up-to-date or expand-needed that it is not
  (a check without a contract-needed state, neutron's ``has_offline_migrations``, is reported only).

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
from model.plan import KubeTarget, Service, UpgradePlan, UpgradeStatusCheck
from model.recipes import service_recipe

log = structlog.get_logger(__name__)

LEDGER_WORKFLOW = "Ledger"
#: schema check states that mean: expanded to the target, not contracted
EXPANDED = frozenset({"migrate-needed", "contract-needed"})
NOT_EXPANDED = frozenset({"up-to-date", "expand-needed"})


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


def status_results(output: str) -> dict[str, str]:
    """Check name -> result ("Success", "Warning", "Failure") from oslo.upgradecheck's table. Pure."""
    text = " ".join(re.sub(r"[+=-]{3,}|\|", " ", output).split())
    out = {}
    for block in re.split(r"\bCheck: ", text)[1:]:
        name, sep, rest = block.partition(" Result: ")
        if sep:
            out[name.strip()] = rest.split(" ", 1)[0]
    return out


def online_state(svc: Service, version: str, cloud: str) -> tuple[OnlineState, str, list[str]]:
    """(pending | done | unknown | not-applicable, detail, commands run) for one service: the
    results of its status command's online-migration checks (its recipe's ``online_checks``)."""
    recipe = service_recipe(svc.name)
    if recipe is None or "online" not in recipe.commands:
        return "not-applicable", "", []
    if not recipe.online_checks:
        return "unknown", f"{svc.name} has no read-only check of its online data migrations", []
    check = UpgradeStatusCheck(kind="upgrade-status")
    inp = CheckInput(service=svc.name, cloud=cloud, check=check, stage="pre", version=version)
    try:
        command = validation.status_command(inp, check)
        res = validation.upgrade_status_check(inp, check)
    except Exception as e:  # the check cannot run here: it cannot tell
        return "unknown", f"its status check did not run: {getattr(e, 'message', None) or e}", []
    shown = " ".join(command)
    results = status_results(str(res.details.get("output", "")))
    seen = {name: results[name] for name in recipe.online_checks if name in results}
    if len(seen) < len(recipe.online_checks):
        code = res.details.get("exit_code")
        missing = ", ".join(n for n in recipe.online_checks if n not in seen)
        return "unknown", f"`{shown}` (exit {code}) did not report {missing}", [shown]
    failing = [f"{name}: {result}" for name, result in seen.items() if result != "Success"]
    if failing:
        return "pending", f"`{shown}`: {'; '.join(failing)}", [shown]
    return "done", f"`{shown}`: {', '.join(seen)}: Success", [shown]


def schema_state(svc: Service, target: KubeTarget) -> tuple[str, bool | None, list[str], str]:
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
        target=target,
    )
    try:
        res = migration.db_sync(inp)
    except Exception as e:
        return "unknown", None, [], f"schema check did not run: {getattr(e, 'message', None) or e}"
    shown = " ".join(res.command)
    if "contract-needed" not in recipe.check_states.values():
        # the check cannot say "expanded, not contracted" (neutron's answers whether offline
        # migrations are pending, expanded or not): reported, not weighed
        return res.state, None, [shown], ""
    if res.state in EXPANDED:
        return res.state, True, [shown], ""
    if res.state in NOT_EXPANDED:
        return res.state, False, [shown], ""
    return res.state, None, [shown], ""


def check_service(plan: UpgradePlan, svc: Service, version: str) -> ServiceCloudCheck:
    started = time.monotonic()
    online, detail, ran = online_state(svc, version, plan.cloud.openstack.cloud)
    schema, expanded, ran_schema, schema_detail = schema_state(svc, plan.cloud.kubernetes)
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
