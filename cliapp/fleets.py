"""`stackhop fleet ...`: start, follow and steer a fleet (workflows/fleet.py, id ``fleet/<name>``).

`start` validates the fleet file and every plan it names (each problem as FILE:LINE: field: what
(fix: ...), exit 2) before anything starts. `status` and `watch` read the fleet's ``status`` query
while it runs and its report once it has ended; `report` prints the report. `approve`, `pause`,
`resume` and `abort` are the fleet's validated updates: a refusal comes back at once with its
reason (exit 2), nothing written to the history. A cloud's own upgrade is steered as ever, with
`stackhop status|approve|... upgrade/<cloud>`. Exit codes as for upgrades: 1 when the fleet did not
succeed.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
)
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from cliapp.common import BAD_INPUT, FAILED, OK, Fail, connect, out, run, say, settings, ui_url, update_failure, user
from cliapp.render import STATE_STYLE, run_status_name
from model import io
from model import io_fleet as fio
from model.fleet import FleetPlan, fleet_workflow_id, load_fleet
from model.loading import PlanError

app = typer.Typer(help="Fleets: a canary, then waves of clouds, each cloud its own upgrade.", no_args_is_help=True)
Name = Annotated[str, typer.Argument(metavar="NAME", help="Fleet name (its workflow is fleet/NAME).")]
UPDATE_TIMEOUT = timedelta(seconds=30)
STYLES = {**STATE_STYLE, "busy": "yellow", "refused": "red", "skipped": "dim", "partial": "yellow"}


def fleet_id(ref: str) -> str:
    ref = ref.strip()
    if not ref:
        raise Fail(BAD_INPUT, "give a fleet name (its workflow is fleet/NAME)")
    return ref if ref.startswith("fleet/") else fleet_workflow_id(ref)


def load_fleet_or_fail(path: Path) -> FleetPlan:
    try:
        return load_fleet(path)
    except PlanError as e:
        raise Fail(BAD_INPUT, f"{path}: invalid fleet, {len(e.problems)} problem(s):\n{e}") from None


def summary(fleet: FleetPlan) -> str:
    waves = " → ".join(
        [f"canary {', '.join(fleet.canary)}"] * bool(fleet.canary)
        + [f"{w.name} ({', '.join(fleet.wave_clouds(i))})" for i, w in enumerate(fleet.waves)]
    )
    plan = fleet.plan_of(fleet.clouds[0].name)
    return f"fleet {fleet.metadata.name}: {len(fleet.clouds)} clouds, {plan.release.from_} → {plan.release.to}, {waves}"


async def fleet_handle(client: Client, wf_id: str) -> tuple[WorkflowHandle[Any, Any], WorkflowExecutionStatus]:
    handle = client.get_workflow_handle(wf_id, result_type=fio.FleetReport)
    try:
        desc = await handle.describe()
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            raise Fail(BAD_INPUT, f"no fleet {wf_id!r} in namespace {client.namespace}") from None
        raise
    if desc.workflow_type != "Fleet":
        raise Fail(BAD_INPUT, f"{wf_id} is a {desc.workflow_type} workflow, not a fleet")
    return handle, desc.status or WorkflowExecutionStatus.RUNNING


async def outcome_of(handle: WorkflowHandle[Any, Any]) -> tuple[str, fio.FleetReport | None, str]:
    """(outcome, report, message) of an ended fleet."""
    try:
        report = fio.FleetReport.model_validate(await handle.result(follow_runs=False))
        return report.outcome, report, report.message
    except WorkflowFailureError as e:
        cause = e.cause
        if isinstance(cause, ApplicationError) and cause.details:
            report = fio.FleetReport.model_validate(cause.details[0])
            return report.outcome, report, report.message
        return "failed", None, f"the fleet ended without a report: {cause}"


def report_table(report: fio.FleetReport) -> Table:
    table = Table(title=f"fleet {report.name}: {report.outcome} — {report.message}", title_justify="left")
    for col in ("wave", "cloud", "outcome", "before", "after", "workflow", "message"):
        table.add_column(col, overflow="fold")
    for c in report.clouds:
        outcome = Text(c.outcome, style=STYLES.get(c.outcome, ""))
        table.add_row(c.wave, c.cloud, outcome, c.release_before, c.release_after, c.workflow_id, c.message)
    return table


def status_table(st: fio.FleetStatus, progress: dict[str, str] | None = None) -> Table:
    """The fleet's clouds; ``progress``: what a running cloud's own upgrade says (cloud_progress)."""
    table = Table(title=f"fleet {st.name}: {st.phase}{' (paused)' if st.paused else ''}", title_justify="left")
    for col in ("wave", "cloud", "state", "release", "workflow", "message"):
        table.add_column(col, overflow="fold")
    for c in st.clouds:
        release = f"{c.release_from} → {c.release_to}"
        state = Text(c.state, style=STYLES.get(c.state, ""))
        table.add_row(c.wave, c.cloud, state, release, c.workflow_id, (progress or {}).get(c.cloud) or c.message)
    return table


async def cloud_statuses(client: Client, st: fio.FleetStatus) -> dict[str, io.UpgradeStatus]:
    """Each running cloud's own Upgrade status (the fleet does not carry its clouds' progress); a
    cloud whose workers do not answer is left out."""

    async def one(c: fio.CloudStatus) -> tuple[str, io.UpgradeStatus | None]:
        try:
            return c.cloud, await client.get_workflow_handle(c.workflow_id).query(
                "status", result_type=io.UpgradeStatus
            )
        except (RPCError, WorkflowQueryFailedError):
            return c.cloud, None

    found = await asyncio.gather(*(one(c) for c in st.clouds if c.state == "running"))
    return {cloud: up for cloud, up in found if up is not None}


def progress_text(up: io.UpgradeStatus, message: bool = True) -> str:
    """A cloud's phase and its services' states (those under way or done), then its message."""
    services = ", ".join(f"{p.service} {p.state}" for p in up.services if p.state != "pending")
    text = f"{up.phase}{': ' + services if services else ''}"
    return f"{text} — {up.message}" if message and up.message else text


async def cloud_progress(client: Client, st: fio.FleetStatus) -> dict[str, str]:
    """Each running cloud's phase and services, from its own Upgrade's status query; a cloud whose
    workers do not answer shows its fleet message."""
    return {cloud: progress_text(up) for cloud, up in (await cloud_statuses(client, st)).items()}


# --- commands --------------------------------------------------------------------------------------
async def start(path: Path, wait: bool) -> int:
    from workflows.fleet import FleetWorkflow

    fleet = load_fleet_or_fail(path)
    client = await connect()
    fleet_file = str(await asyncio.to_thread(path.resolve))
    try:
        await client.start_workflow(
            FleetWorkflow.run,
            fio.FleetInput(fleet=fleet, fleet_file=fleet_file, requested_by=user()),
            id=fleet.workflow_id,
            task_queue=settings.task_queue,
            static_summary=summary(fleet),
        )
    except WorkflowAlreadyStartedError:
        raise Fail(
            BAD_INPUT, f"fleet {fleet.metadata.name} is already running ({fleet.workflow_id}): one run per fleet"
        ) from None
    say(f"started {summary(fleet)}")
    say(
        f"workflow {fleet.workflow_id} on task queue {settings.task_queue}; "
        f"UI: {ui_url(client.namespace, fleet.workflow_id)}"
    )
    return await watch(fleet.workflow_id) if wait else OK


async def status(wf_id: str, as_json: bool) -> int:
    client = await connect()
    handle, run_status = await fleet_handle(client, wf_id)
    if run_status == WorkflowExecutionStatus.RUNNING:
        st = await handle.query("status", result_type=fio.FleetStatus)
        if as_json:
            out().print_json(json.dumps({"workflow_id": wf_id, "status": st.model_dump(mode="json"), "report": None}))
            return OK
        out().print(status_table(st, await cloud_progress(client, st)))
        if st.decision:
            say(f"waits for {st.decision}: stackhop fleet approve {st.name} {st.decision}")
        if st.message:
            say(st.message)
        return OK
    outcome, report, message = await outcome_of(handle)
    if as_json:
        doc = {
            "workflow_id": wf_id,
            "status": None,
            "outcome": outcome,
            "report": report and report.model_dump(mode="json"),
        }
        out().print_json(json.dumps(doc))
    elif report:
        out().print(report_table(report))
    else:
        say(f"{wf_id}: {run_status_name(run_status)}: {message}")
    return OK if outcome == "succeeded" else FAILED


async def report(wf_id: str) -> int:
    client = await connect()
    handle, run_status = await fleet_handle(client, wf_id)
    if run_status == WorkflowExecutionStatus.RUNNING:
        raise Fail(BAD_INPUT, f"{wf_id} is still running: `stackhop fleet status {wf_id.removeprefix('fleet/')}`")
    outcome, rep, message = await outcome_of(handle)
    out().print(report_table(rep)) if rep else say(message)
    return OK if outcome == "succeeded" else FAILED


async def watch(wf_id: str, interval: float = 1.0) -> int:
    """One line per change of the fleet's phase, of a cloud's state, or of a running cloud's own phase
    and services' states (its Upgrade's status query), then the report."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    client = await connect()
    handle, run_status = await fleet_handle(client, wf_id)
    seen: dict[str, str] = {}
    said: dict[str, str] = {}  # cloud -> the progress of its own upgrade printed last
    phase = ""
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), console=out())
    with progress:
        task = progress.add_task(wf_id, total=None)
        while run_status == WorkflowExecutionStatus.RUNNING:
            st = await handle.query("status", result_type=fio.FleetStatus)
            done = sum(1 for c in st.clouds if c.state not in ("pending", "running"))
            progress.update(task, completed=done, total=len(st.clouds))
            if st.phase != phase:
                phase = st.phase
                progress.console.print(f"phase: {phase} {st.message}".rstrip(), markup=False, soft_wrap=True)
            for c in st.clouds:
                if seen.get(c.cloud) != c.state:
                    seen[c.cloud] = c.state
                    line = Text.assemble(f"{c.wave} {c.cloud}: ", (c.state, STYLES.get(c.state, "")), f" {c.message}")
                    progress.console.print(line, soft_wrap=True)
            for cloud, up in (await cloud_statuses(client, st)).items():
                text = progress_text(up, message=False)  # a line per change of phase or service state
                if said.get(cloud) != text:
                    said[cloud] = text
                    progress.console.print(f"  {cloud}: {text}", markup=False, soft_wrap=True)
            if st.decision and seen.get("") != st.decision:
                seen[""] = st.decision
                progress.console.print(
                    f"waits for {st.decision}: stackhop fleet approve {st.name} {st.decision}", markup=False
                )
            await asyncio.sleep(interval)
            run_status = (await handle.describe()).status or WorkflowExecutionStatus.RUNNING
    outcome, rep, message = await outcome_of(handle)
    out().print(report_table(rep)) if rep else say(message)
    return OK if outcome == "succeeded" else FAILED


async def control(wf_id: str, update: str, request: Any) -> int:
    client = await connect()
    handle, run_status = await fleet_handle(client, wf_id)
    if run_status != WorkflowExecutionStatus.RUNNING:
        raise Fail(BAD_INPUT, f"{update} refused: the fleet {wf_id} has ended ({run_status_name(run_status)})")
    try:
        ack = await handle.execute_update(update, request, result_type=io.ControlAck, rpc_timeout=UPDATE_TIMEOUT)
    except WorkflowUpdateFailedError as e:
        raise update_failure(update, e, wf_id) from None
    say(f"{wf_id}: {ack.message or update + ' accepted'}")
    return OK


@app.command("start")
def start_cmd(
    fleet: Annotated[Path, typer.Argument(metavar="FLEET", help="Fleet file (YAML, kind: FleetPlan).")],
    wait: Annotated[bool, typer.Option("--wait", help="Follow the fleet like `watch` until it ends.")] = False,
) -> None:
    """Validate FLEET and every plan it names, and start it (one run per fleet at a time)."""
    raise typer.Exit(run(start(fleet, wait)))


@app.command("list")
def list_cmd(
    all_: Annotated[bool, typer.Option("--all", help="Include finished fleets.")] = False,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output: a JSON list.")] = False,
) -> None:
    """Fleets (running ones unless --all); `stackhop list --fleet NAME` lists the upgrades of one."""
    from cliapp.upgrades import list_workflows

    raise typer.Exit(run(list_workflows("Fleet", {}, all_, limit, as_json, "fleets")))


@app.command("status")
def status_cmd(name: Name, as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False) -> None:
    """Every cloud's wave, state and release; the report once the fleet has ended (exit 1: not succeeded)."""
    raise typer.Exit(run(status(fleet_id(name), as_json), fleet_id(name)))


@app.command("watch")
def watch_cmd(name: Name) -> None:
    """Follow the fleet until it ends, then print its report (exit 1: not succeeded)."""
    raise typer.Exit(run(watch(fleet_id(name)), fleet_id(name)))


@app.command("report")
def report_cmd(name: Name) -> None:
    """The report of an ended fleet: every cloud's wave, outcome, release before and after."""
    raise typer.Exit(run(report(fleet_id(name)), fleet_id(name)))


@app.command("approve")
def approve_cmd(name: Name, decision: Annotated[str, typer.Argument(metavar="DECISION", help="fleet/wave#N")]) -> None:
    """Start a wave that waits for its approval (the decision status shows, e.g. fleet/wave#2)."""
    raise typer.Exit(
        run(control(fleet_id(name), "approve", io.ApproveRequest(gate=decision, by=user())), fleet_id(name))
    )


@app.command("pause")
def pause_cmd(name: Name, reason: Annotated[str, typer.Option(help="Recorded in the history.")] = "") -> None:
    """No new cloud starts; the running clouds' upgrades pause."""
    raise typer.Exit(run(control(fleet_id(name), "pause", io.PauseRequest(reason=reason, by=user())), fleet_id(name)))


@app.command("resume")
def resume_cmd(name: Name) -> None:
    """Resume a paused fleet (and the upgrades it paused)."""
    raise typer.Exit(run(control(fleet_id(name), "resume", io.ResumeRequest(by=user())), fleet_id(name)))


@app.command("abort")
def abort_cmd(name: Name, reason: Annotated[str, typer.Option(help="Why (required; recorded).")]) -> None:
    """No new cloud starts; the running clouds' upgrades abort (roll back)."""
    raise typer.Exit(run(control(fleet_id(name), "abort", io.AbortRequest(reason=reason, by=user())), fleet_id(name)))
