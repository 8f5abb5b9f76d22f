"""`stackhop canary ...`: scheduled canary upgrades, as Temporal Schedules.

A canary is a schedule ``canary/NAME`` whose action starts the Canary workflow (upgrade the canary
cloud, judge it, return it to its baseline) with the plan as it was when the canary was created.
Overlap SKIP: a run that is still going makes the next tick a no-op rather than queueing upgrades
of the same cloud. Pause-on-failure: a failed canary pauses its schedule, so a red canary stays red
until an operator has looked and unpauses it. The plan file and cron are kept in the schedule's
memo for `canary list` (the server stores cron as calendar specs, not as the string given).
"""

from __future__ import annotations

import asyncio
import re
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text
from temporalio.client import (
    Client, Schedule, ScheduleActionStartWorkflow, ScheduleAlreadyRunningError, ScheduleDescription,
    ScheduleHandle, ScheduleOverlapPolicy, SchedulePolicy, ScheduleSpec, ScheduleState,
    WorkflowExecutionStatus, WorkflowFailureError,
)  # fmt: skip
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from cliapp import reports
from cliapp.common import BAD_INPUT, FAILED, OK, Fail, connect, out, run, say, settings, ui_url, user
from cliapp.plans import load_or_fail
from cliapp.render import run_status_name
from model import io

app = typer.Typer(help="Scheduled canary upgrades: upgrade a canary cloud on a cron, judge it, put it back.",
                  no_args_is_help=True)  # fmt: skip

PREFIX = "canary/"
FIND_RUN_TIMEOUT = 30.0
Name = Annotated[str, typer.Argument(metavar="NAME", help="Canary name (its schedule is canary/NAME).")]
Note = Annotated[str, typer.Option(help="Why (kept as the schedule's note).")]


def schedule_id(name: str) -> str:
    name = name.removeprefix(PREFIX)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}", name):
        raise Fail(BAD_INPUT, f"canary name {name!r}: use letters, digits, '.', '_' and '-' (at most 63)")
    return PREFIX + name


async def existing(client: Client, name: str) -> tuple[ScheduleHandle, ScheduleDescription]:
    sid = schedule_id(name)
    handle = client.get_schedule_handle(sid)
    try:
        return handle, await handle.describe()
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            raise Fail(BAD_INPUT, f"no canary {name!r} (schedule {sid}) in namespace {client.namespace}; "
                                  "see `stackhop canary list`") from None  # fmt: skip
        raise


async def canary_outcome(client: Client, wf_id: str, run_id: str) -> tuple[str, io.CanaryResult | None, str]:
    """("running" | "passed" | "failed" | run status, result or None, message) of one canary run."""
    handle = client.get_workflow_handle(wf_id, run_id=run_id or None, result_type=io.CanaryResult)
    try:
        desc = await handle.describe()
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            return "gone", None, "no longer in the history (retention)"
        raise
    if desc.status == WorkflowExecutionStatus.RUNNING:
        return "running", None, ""
    try:
        result: io.CanaryResult = await handle.result(follow_runs=False)
        return ("passed" if result.passed else "failed"), result, result.message
    except WorkflowFailureError as e:
        cause = e.cause
        if isinstance(cause, ApplicationError) and cause.type == "CanaryFailed" and cause.details:
            result = io.CanaryResult.model_validate(cause.details[0])
            return "failed", result, result.message
        return run_status_name(desc.status), None, f"ended without a result: {cause}"


def _when(t: datetime | None) -> str:
    return f"{t:%Y-%m-%d %H:%M:%S}Z" if t else "-"


# --- create / delete / pause / unpause --------------------------------------------------------------
async def create(name: str, plan_path: Path, cron: str, note: str) -> int:
    from workflows.canary import CanaryWorkflow

    sid = schedule_id(name)
    name = sid.removeprefix(PREFIX)
    plan = load_or_fail(plan_path)
    if not cron.strip():
        raise Fail(BAD_INPUT, "--cron is empty: give a cron expression such as '0 3 * * *' (03:00 UTC daily)")
    plan_file = str(plan_path.resolve())
    release = f"{plan.release.from_} → {plan.release.to}"
    client = await connect()
    schedule = Schedule(
        action=ScheduleActionStartWorkflow(
            CanaryWorkflow.run, io.CanaryInput(name=name, plan=plan), id=sid, task_queue=settings.task_queue,
            memo={"plan_file": plan_file}, static_summary=f"canary {name}: {release} on {plan.cloud.name}",
        ),
        spec=ScheduleSpec(cron_expressions=[cron]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, pause_on_failure=True),
        state=ScheduleState(note=note or f"created by {user() or 'unknown'} from {plan_file}"),
    )  # fmt: skip
    memo = {"plan_file": plan_file, "cron": cron, "cloud": plan.cloud.name, "release": release, "created_by": user()}
    try:
        await client.create_schedule(sid, schedule, memo=memo)
    except ScheduleAlreadyRunningError:
        raise Fail(BAD_INPUT, f"canary {name!r} already exists (schedule {sid}): `stackhop canary delete {name}` "
                              "first, or choose another name") from None  # fmt: skip
    except RPCError as e:
        if e.status == RPCStatusCode.INVALID_ARGUMENT:
            raise Fail(BAD_INPUT, f"Temporal refused the schedule (--cron {cron!r}?): {e.message}") from None
        raise
    say(f"created canary {name}: schedule {sid}, cron {cron!r}, plan {plan_file} ({plan.cloud.name}: {release})")
    say(f"runs start workflow Canary as {sid}-<time> on task queue {settings.task_queue}; "
        f"a failed run pauses the schedule. Run it now: stackhop canary trigger {name} --wait")  # fmt: skip
    return OK


async def delete(name: str) -> int:
    client = await connect()
    handle, _ = await existing(client, name)
    await handle.delete()
    say(f"deleted canary {handle.id.removeprefix(PREFIX)} (schedule {handle.id}); its past runs stay in the history")
    return OK


async def pause(name: str, note: str) -> int:
    client = await connect()
    handle, desc = await existing(client, name)
    if desc.schedule.state.paused:
        raise Fail(BAD_INPUT, f"canary {name} is already paused ({desc.schedule.state.note or 'no note'})")
    await handle.pause(note=note or f"paused by {user() or 'unknown'}")
    say(f"paused canary {name}: no scheduled run starts until `stackhop canary unpause {name}`")
    return OK


async def unpause(name: str, note: str) -> int:
    client = await connect()
    handle, desc = await existing(client, name)
    if not desc.schedule.state.paused:
        raise Fail(BAD_INPUT, f"canary {name} is not paused")
    await handle.unpause(note=note or f"unpaused by {user() or 'unknown'}")
    say(f"unpaused canary {name} (it was: {desc.schedule.state.note or 'paused'})")
    return OK


# --- list / history -----------------------------------------------------------------------------
async def _last(client: Client, desc: ScheduleDescription) -> str:
    if desc.info.running_actions:
        return "running"
    if not desc.info.recent_actions:
        return "never ran"
    last = desc.info.recent_actions[-1]
    action: Any = last.action
    verdict, result, _ = await canary_outcome(client, action.workflow_id, action.first_execution_run_id)
    if result and result.report:
        verdict += f" ({result.report.outcome})"
    return f"{verdict} at {_when(last.started_at)}"


async def list_canaries() -> int:
    client = await connect()
    ids = sorted([s.id async for s in await client.list_schedules() if s.id.startswith(PREFIX)])
    table = Table()
    for col in ("name", "cron", "paused", "next run", "last result", "cloud", "note"):
        table.add_column(col, overflow="fold")
    rows = 0
    for sid in ids:
        try:
            desc = await client.get_schedule_handle(sid).describe()
        except RPCError as e:
            if e.status == RPCStatusCode.NOT_FOUND:
                continue  # deleted since the (eventually consistent) listing
            raise
        memo = await desc.memo()
        state = desc.schedule.state
        nxt = desc.info.next_action_times[0] if desc.info.next_action_times and not state.paused else None
        last = await _last(client, desc)
        table.add_row(
            Text(sid.removeprefix(PREFIX)), Text(str(memo.get("cron", "?"))),
            Text("yes", style="yellow") if state.paused else Text("no"), _when(nxt),
            Text(last, style="red" if last.startswith("failed") else "green" if last.startswith("passed") else ""),
            Text(str(memo.get("cloud", "-"))), Text(state.note or ""),
        )  # fmt: skip
        rows += 1
    if not rows:
        say("no canaries (create one with `stackhop canary create NAME --plan PLAN --cron '0 3 * * *'`)")
        return OK
    out().print(table)
    return OK


async def history(name: str) -> int:
    client = await connect()
    handle, desc = await existing(client, name)
    state = desc.schedule.state
    con = out()
    con.print(Text.assemble((f"canary {name}", "bold"), f": {desc.info.num_actions} run(s), ",
                            ("paused" if state.paused else "active", "yellow" if state.paused else "green"),
                            f" ({state.note})" if state.note else ""))  # fmt: skip
    actions = [(a.started_at, a.action) for a in desc.info.recent_actions]
    if not actions and not desc.info.running_actions:
        say(f"no runs yet: stackhop canary trigger {name} --wait")
        return OK
    table = Table()
    for col in ("started", "workflow id", "result", "upgrade", "message"):
        table.add_column(col, overflow="fold")
    for started, action in reversed(actions):
        verdict, result, message = await canary_outcome(client, action.workflow_id, action.first_execution_run_id)
        style = {"passed": "green", "failed": "red", "running": "cyan"}.get(verdict, "")
        upgrade = result.report.outcome if result and result.report else "-"
        table.add_row(_when(started), Text(action.workflow_id), Text(verdict, style=style), Text(upgrade), Text(message))
    con.print(table)
    con.print(f"UI: {ui_url(client.namespace)}", soft_wrap=True, markup=False)
    return OK


# --- trigger -----------------------------------------------------------------------------------
async def trigger(name: str, wait: bool) -> int:
    client = await connect()
    handle, desc = await existing(client, name)
    if desc.info.running_actions:
        running = desc.info.running_actions[0]
        raise Fail(BAD_INPUT, f"canary {name} is already running ({getattr(running, 'workflow_id', '?')}): a trigger now "
                              f"would be skipped (overlap policy SKIP); see `stackhop canary history {name}`")  # fmt: skip
    before = {getattr(a.action, "first_execution_run_id", "") for a in desc.info.recent_actions}
    await handle.trigger()
    if desc.schedule.state.paused:
        say(f"note: canary {name} is paused; this manual run goes ahead, scheduled ones stay paused")
    wf_id, run_id = await _new_run(handle, before)
    say(f"triggered canary {name}: workflow {wf_id} (run {run_id})")
    say(f"UI: {ui_url(client.namespace, wf_id)}")
    if not wait:
        say(f"see how it went: stackhop canary history {name}")
        return OK
    result_handle = client.get_workflow_handle(wf_id, run_id=run_id)
    try:
        await result_handle.result(follow_runs=False)
    except WorkflowFailureError:
        pass  # judged below
    verdict, result, message = await canary_outcome(client, wf_id, run_id)
    show_result(name, verdict, result, message)
    return OK if verdict == "passed" else FAILED


async def _new_run(handle: ScheduleHandle, before: set[str]) -> tuple[str, str]:
    """The run the trigger started: the first action the schedule records that was not there before."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + FIND_RUN_TIMEOUT
    while True:
        info = (await handle.describe()).info
        for action in [*info.running_actions, *(a.action for a in info.recent_actions)]:
            run_id = getattr(action, "first_execution_run_id", "")
            if run_id and run_id not in before:
                return action.workflow_id, run_id  # type: ignore[attr-defined]
        if loop.time() > deadline:
            raise Fail(FAILED, f"the trigger of {handle.id} started no run within {FIND_RUN_TIMEOUT:.0f}s "
                               "(skipped because another run is in progress?)")  # fmt: skip
        await asyncio.sleep(0.3)


def show_result(name: str, verdict: str, result: io.CanaryResult | None, message: str) -> None:
    con = out()
    con.print(Text.assemble((f"canary {name}: ", "bold"), (verdict, "green bold" if verdict == "passed" else "red bold"),
                            f" — {message}" if message else ""), soft_wrap=True)  # fmt: skip
    if result is None:
        return
    if result.report:
        for line in reports.summary_lines(result.report):
            say(line)
    for r in result.reset:
        if r.step == "reset":
            say(f"reset {r.service}: {r.status} {r.detail}".rstrip())
    if result.report and not any(r.step == "reset" for r in result.reset):
        say("reset: nothing to do (the rollback already returned the canary to its baseline)"
            if result.report.outcome == "rolled-back" else "reset: none")  # fmt: skip
    if result.report:
        say(f"full report: stackhop report upgrade/{result.report.cloud}")


# --- commands -----------------------------------------------------------------------------------
@app.command("create")
def create_cmd(
    name: Name,
    plan: Annotated[Path, typer.Option("--plan", metavar="PLAN", help="Plan file of the canary cloud (validated now, kept in the schedule).")],
    cron: Annotated[str, typer.Option("--cron", help="When to run, a cron expression (UTC), e.g. '0 3 * * *'.")],
    note: Note = "",
) -> None:
    """Schedule canary upgrades of PLAN's cloud (a failed run pauses the schedule)."""
    raise typer.Exit(run(create(name, plan, cron, note)))


@app.command("list")
def list_cmd() -> None:
    """Canaries: cron, paused, next run, last result."""
    raise typer.Exit(run(list_canaries()))


@app.command("pause")
def pause_cmd(name: Name, note: Note = "") -> None:
    """Stop scheduled runs until unpaused."""
    raise typer.Exit(run(pause(name, note)))


@app.command("unpause")
def unpause_cmd(name: Name, note: Note = "") -> None:
    """Resume scheduled runs, once a failed canary has been looked at."""
    raise typer.Exit(run(unpause(name, note)))


@app.command("trigger")
def trigger_cmd(
    name: Name,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the run; exit 0 passed, 1 failed.")] = False,
) -> None:
    """Run the canary now."""
    raise typer.Exit(run(trigger(name, wait)))


@app.command("delete")
def delete_cmd(name: Name) -> None:
    """Delete the schedule (runs in progress go on; past runs stay in the history)."""
    raise typer.Exit(run(delete(name)))


@app.command("history")
def history_cmd(name: Name) -> None:
    """The canary's recent runs with their pass/fail."""
    raise typer.Exit(run(history(name)))
