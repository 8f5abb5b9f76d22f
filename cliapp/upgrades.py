"""Starting and following upgrades: `start`, `status`, `watch`, `list`.

The workflow id ``upgrade/<cloud>`` is the per-cloud lock, so `start` asks Temporal to FAIL on a
running workflow with that id (and to allow a new run once the previous one has ended). `status`
and `watch` read the upgrade's `status` query and each running service's own (cliapp.progress);
they only read, so stopping a watch never affects the upgrade.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text
from temporalio.client import (
    Client,
    WorkflowExecution,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowQueryFailedError,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from cliapp.common import BAD_INPUT, FAILED, OK, UNREACHABLE, Fail, connect, out, quoted, say, settings, ui_url, user
from cliapp.plans import load_or_fail
from cliapp.progress import read_status
from cliapp.render import outcome_of, report_view, run_status_name, status_view
from cliapp.watching import no_worker
from model import io, order, visibility
from model.plan import UpgradePlan


def static_summary(plan: UpgradePlan) -> str:
    names = [n for wave in order.waves(plan.services) for n in wave]
    who = ", ".join(names) if len(names) <= 3 else f"{', '.join(names[:3])} +{len(names) - 3}"
    return f"{who}: {plan.release.from_} → {plan.release.to} on {plan.cloud.name}"


def static_details(plan: UpgradePlan, plan_file: str, approved: list[str]) -> str:
    p, k = plan.policy, plan.cloud.kubernetes
    lines = [
        f"**Plan** `{plan.metadata.name}` from `{plan_file}`, requested by {user() or 'unknown'}",
        f"**Cloud** {plan.cloud.name}: context `{k.context}`, namespace `{k.namespace}`, "
        f"clouds.yaml `{plan.cloud.openstack.cloud}`",
        f"**Release** {plan.release.from_} → {plan.release.to}",
        "",
        "**Services, in order** (one line per wave; a wave runs in parallel)",
    ]
    for i, wave in enumerate(order.waves(plan.services), 1):
        descr = []
        for name in wave:
            s = plan.service(name)
            gate = f", gate `{s.gate_name}`" if s.gate_name else ""
            descr.append(f"{name} ({s.migration.mode}, {len(s.workloads)} workload(s), {len(s.checks)} check(s){gate})")
        lines.append(f"{i}. " + "; ".join(descr))
    lines += [
        "",
        f"**Policy** on failure: {p.on_failure}; rollout timeout {p.rollout_timeout}s, step timeout "
        f"{p.step_timeout}s, gate timeout {p.gate_timeout}s, max attempts {p.max_attempts}",
    ]
    if approved:
        lines.append(f"**Pre-approved gates** {', '.join(approved)}")
    return "\n".join(lines)


async def upgrade_handle(
    client: Client, wf_id: str, run_id: str | None = None, types: tuple[str, ...] = ("Upgrade",)
) -> tuple[WorkflowHandle[Any, Any], WorkflowExecutionDescription]:
    """The handle and description of an upgrade (or of another of ``types``); BAD_INPUT otherwise."""
    handle = client.get_workflow_handle(wf_id, run_id=run_id, result_type=io.UpgradeReport)
    which = f"{wf_id!r}" + (f" run {run_id}" if run_id else "")
    try:
        desc = await handle.describe()
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            raise Fail(
                BAD_INPUT, f"no upgrade {which} in namespace {client.namespace}; see `stackhop list --all`"
            ) from None
        raise
    if desc.workflow_type not in types:
        raise Fail(
            BAD_INPUT, f"{wf_id} is a {desc.workflow_type} workflow, not an upgrade (ids look like upgrade/<cloud>)"
        )
    return handle, desc


async def start(plan_path: Path, approve: list[str], wait: bool) -> int:
    from workflows.upgrade import UpgradeWorkflow

    plan = load_or_fail(plan_path)
    gates = {s.gate_name for s in plan.services if s.gate_name}
    unknown = [g for g in approve if g not in gates]
    if unknown:
        raise Fail(
            BAD_INPUT,
            f"--approve {', '.join(unknown)}: no such gate in the plan (gates: {', '.join(sorted(gates)) or 'none'})",
        )
    plan_file = str(await asyncio.to_thread(plan_path.resolve))
    client = await connect()
    wf_id = plan.workflow_id
    try:
        handle = await client.start_workflow(
            UpgradeWorkflow.run,
            io.UpgradeInput(plan=plan, plan_file=plan_file, requested_by=user(), approved_gates=list(approve)),
            id=wf_id,
            task_queue=settings.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(visibility.CLOUD, plan.cloud.name),
                    SearchAttributePair(visibility.RELEASE, f"{plan.release.from_}->{plan.release.to}"),
                ]
            ),
            static_summary=static_summary(plan),
            static_details=static_details(plan, plan_file, list(approve)),
        )
    except WorkflowAlreadyStartedError:
        raise Fail(
            BAD_INPUT,
            f"an upgrade is already running on cloud {plan.cloud.name} (workflow {wf_id}): stackhop status {wf_id}",
        ) from None
    say(f"started {wf_id} (run {handle.result_run_id}) on task queue {settings.task_queue}")
    say(f"UI: {ui_url(client.namespace, wf_id)}")
    if not wait:
        say(f"follow it with: stackhop watch {wf_id}")
        return OK
    return await watch(client, wf_id)


async def status(wf_id: str, as_json: bool) -> int:
    client = await connect()
    handle, desc = await upgrade_handle(client, wf_id)
    st: io.UpgradeStatus | None = None
    report, outcome, message = None, None, ""
    if desc.status == WorkflowExecutionStatus.RUNNING:
        try:
            st = await read_status(client, handle)
        except (WorkflowQueryFailedError, RPCError) as e:
            if not no_worker(e):
                raise
            raise Fail(
                UNREACHABLE,
                f"{wf_id} is running but no worker answered its status query ({e}); "
                f"is `stackhop worker` running on task queue {desc.task_queue}?",
            ) from None
    else:
        outcome, report, message = await outcome_of(handle)
    code = OK if outcome in (None, "succeeded") else FAILED
    if as_json:
        doc = {
            "workflow_id": wf_id,
            "run_id": desc.run_id,
            "run_status": run_status_name(desc.status),
            "status": st.model_dump(mode="json") if st else None,
            "outcome": outcome,
            "message": message,
            "report": report.model_dump(mode="json") if report else None,
        }
        print(json.dumps(doc, indent=2))
        return code
    con = out()
    summary = await desc.static_summary()
    if summary:
        con.print(summary, style="dim", markup=False, soft_wrap=True)
    if st is not None:
        con.print(status_view(wf_id, st))
    else:
        con.print(Text.assemble((wf_id, "bold"), f" ended: {run_status_name(desc.status)}"))
        con.print(report_view(report, outcome or "failed", message))
    con.print(f"UI: {ui_url(client.namespace, wf_id)}", soft_wrap=True, markup=False)
    return code


async def watch(client: Client | None, wf_id: str, interval: float = 0.5) -> int:
    from cliapp.watching import Watcher

    client = client or await connect()
    handle, desc = await upgrade_handle(client, wf_id)
    return await Watcher(client, wf_id, handle, desc, out()).run(interval)


def list_row(wf: WorkflowExecution) -> dict[str, Any]:
    """One upgrade or fleet as `list --json` prints it (times in UTC, ISO 8601)."""
    sa = wf.typed_search_attributes
    return {
        "workflow_id": wf.id,
        "run_id": wf.run_id,
        "status": run_status_name(wf.status),
        "cloud": sa.get(visibility.CLOUD),
        "fleet": sa.get(visibility.FLEET),
        "release": sa.get(visibility.RELEASE),
        "phase": sa.get(visibility.PHASE),
        "started": wf.start_time.isoformat(),
        "closed": wf.close_time.isoformat() if wf.close_time else None,
    }


async def list_upgrades(
    cloud: str | None, show_all: bool, limit: int, as_json: bool = False, fleet: str | None = None
) -> int:
    """`stackhop list`: upgrades from Temporal's visibility store, by the typed search attributes."""
    what = f"upgrades{' on ' + cloud if cloud else ''}{' of fleet ' + fleet if fleet else ''}"
    return await list_workflows(
        "Upgrade", {visibility.CLOUD.name: cloud, visibility.FLEET.name: fleet}, show_all, limit, as_json, what
    )


async def list_workflows(
    kind: str, where: dict[str, str | None], show_all: bool, limit: int, as_json: bool, what: str
) -> int:
    """Workflows of type ``kind`` (running ones unless ``show_all``) whose search attributes equal
    ``where``'s values (None: any), as a table or JSON (`list_row`); ``what`` names them when none is found."""
    query = f"WorkflowType = {quoted(kind)}"
    if not show_all:
        query += " AND ExecutionStatus = 'Running'"
    for attribute, value in where.items():
        if value:
            query += f" AND {attribute} = {quoted(value)}"
    client = await connect()
    rows = [wf async for wf in client.list_workflows(query, limit=limit)]
    if as_json:
        print(json.dumps([list_row(wf) for wf in rows], indent=2))
        return OK
    if not rows:
        say(f"no {'' if show_all else 'running '}{what}{'' if show_all else ' (--all shows finished ones)'}")
        return OK
    table = Table()
    listed = [list_row(wf) for wf in rows]
    # the fleet column only when a fleet is involved: most clouds are upgraded on their own
    labels = (
        ("cloud", "fleet", "release", "phase") if any(r["fleet"] for r in listed) else ("cloud", "release", "phase")
    )
    for col in ("workflow id", "status", *labels, "started", "closed"):
        table.add_column(col, overflow="fold")
    for wf, row in zip(rows, listed, strict=True):
        table.add_row(
            Text(wf.id),
            row["status"],
            *(Text(row[key] or "-") for key in labels),
            f"{wf.start_time:%Y-%m-%d %H:%M:%S}",
            f"{wf.close_time:%Y-%m-%d %H:%M:%S}" if wf.close_time else "-",
        )
    out().print(table)
    return OK
