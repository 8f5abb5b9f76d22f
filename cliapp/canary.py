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
import contextlib
from pathlib import Path
from typing import Annotated

import typer
from temporalio.client import (
    Schedule,
    ScheduleActionExecutionStartWorkflow,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleHandle,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleState,
    WorkflowFailureError,
)
from temporalio.service import RPCError, RPCStatusCode

from cliapp.canary_runs import PREFIX, canary_outcome, existing, history, list_canaries, schedule_id, show_result
from cliapp.common import BAD_INPUT, FAILED, OK, Fail, connect, run, say, settings, ui_url, user
from cliapp.plans import load_or_fail
from model import io
from model.fleet import is_fleet_file

app = typer.Typer(
    help="Scheduled canary upgrades: upgrade a canary cloud on a cron, judge it, put it back.", no_args_is_help=True
)

FIND_RUN_TIMEOUT = 30.0
Name = Annotated[str, typer.Argument(metavar="NAME", help="Canary name (its schedule is canary/NAME).")]
Note = Annotated[str, typer.Option(help="Why (kept as the schedule's note).")]


# --- create / delete / pause / unpause --------------------------------------------------------------
async def create(name: str, plan_path: Path, cron: str, note: str) -> int:
    from workflows.canary import CanaryWorkflow

    sid = schedule_id(name)
    name = sid.removeprefix(PREFIX)
    if await asyncio.to_thread(is_fleet_file, plan_path):
        return await create_fleet(name, plan_path, cron, note)
    plan = load_or_fail(plan_path)
    if not cron.strip():
        raise Fail(BAD_INPUT, "--cron is empty: give a cron expression such as '0 3 * * *' (03:00 UTC daily)")
    plan_file = str(await asyncio.to_thread(plan_path.resolve))
    release = f"{plan.release.from_} → {plan.release.to}"
    client = await connect()
    schedule = Schedule(
        action=ScheduleActionStartWorkflow(
            CanaryWorkflow.run,
            io.CanaryInput(name=name, plan=plan),
            id=sid,
            task_queue=settings.task_queue,
            memo={"plan_file": plan_file},
            static_summary=f"canary {name}: {release} on {plan.cloud.name}",
        ),
        spec=ScheduleSpec(cron_expressions=[cron]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, pause_on_failure=True),
        state=ScheduleState(note=note or f"created by {user() or 'unknown'} from {plan_file}"),
    )
    memo = {"plan_file": plan_file, "cron": cron, "cloud": plan.cloud.name, "release": release, "created_by": user()}
    try:
        await client.create_schedule(sid, schedule, memo=memo)
    except ScheduleAlreadyRunningError:
        raise Fail(
            BAD_INPUT,
            f"canary {name!r} already exists (schedule {sid}): `stackhop canary delete {name}` "
            "first, or choose another name",
        ) from None
    except RPCError as e:
        if e.status == RPCStatusCode.INVALID_ARGUMENT:
            raise Fail(BAD_INPUT, f"Temporal refused the schedule (--cron {cron!r}?): {e.message}") from None
        raise
    say(f"created canary {name}: schedule {sid}, cron {cron!r}, plan {plan_file} ({plan.cloud.name}: {release})")
    say(
        f"runs start workflow Canary as {sid}-<time> on task queue {settings.task_queue}; "
        f"a failed run pauses the schedule. Run it now: stackhop canary trigger {name} --wait"
    )
    return OK


async def create_fleet(name: str, path: Path, cron: str, note: str) -> int:
    """A canary schedule whose action starts the whole fleet (its own canary clouds, then its waves):
    runs are ``fleet/<fleet>-<time>`` (the schedule appends the time), one at a time (overlap SKIP);
    a fleet that does not succeed pauses the schedule. Nothing is reset afterwards: a fleet is a
    real rollout, not a rehearsal."""
    from cliapp.fleets import load_fleet_or_fail, summary
    from model import io_fleet as fio
    from workflows.fleet import FleetWorkflow

    sid = schedule_id(name)
    fleet = load_fleet_or_fail(path)
    if not cron.strip():
        raise Fail(BAD_INPUT, "--cron is empty: give a cron expression such as '0 3 * * *' (03:00 UTC daily)")
    fleet_file = str(await asyncio.to_thread(path.resolve))
    client = await connect()
    schedule = Schedule(
        action=ScheduleActionStartWorkflow(
            FleetWorkflow.run,
            fio.FleetInput(fleet=fleet, fleet_file=fleet_file, requested_by=f"canary {name}"),
            id=fleet.workflow_id,
            task_queue=settings.task_queue,
            memo={"plan_file": fleet_file},
            static_summary=f"canary {name}: {summary(fleet)}",
        ),
        spec=ScheduleSpec(cron_expressions=[cron]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP, pause_on_failure=True),
        state=ScheduleState(note=note or f"created by {user() or 'unknown'} from {fleet_file}"),
    )
    memo = {"plan_file": fleet_file, "cron": cron, "cloud": f"fleet {fleet.metadata.name}", "created_by": user()}
    try:
        await client.create_schedule(sid, schedule, memo=memo)
    except ScheduleAlreadyRunningError:
        raise Fail(BAD_INPUT, f"canary {name!r} already exists (schedule {sid})") from None
    except RPCError as e:
        if e.status == RPCStatusCode.INVALID_ARGUMENT:
            raise Fail(BAD_INPUT, f"Temporal refused the schedule (--cron {cron!r}?): {e.message}") from None
        raise
    say(f"created canary {name}: schedule {sid}, cron {cron!r}, {summary(fleet)}")
    say(f"runs start workflow Fleet as {fleet.workflow_id}-<time>; a fleet that does not succeed pauses the schedule")
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


# --- trigger -----------------------------------------------------------------------------------
async def trigger(name: str, wait: bool) -> int:
    client = await connect()
    handle, desc = await existing(client, name)
    if desc.info.running_actions:
        running = desc.info.running_actions[0]
        raise Fail(
            BAD_INPUT,
            f"canary {name} is already running ({getattr(running, 'workflow_id', '?')}): a trigger now "
            f"would be skipped (overlap policy SKIP); see `stackhop canary history {name}`",
        )
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
    with contextlib.suppress(WorkflowFailureError):  # a failed run is judged below
        await result_handle.result(follow_runs=False)
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
            if not isinstance(action, ScheduleActionExecutionStartWorkflow):
                continue  # a canary's schedule only starts workflows
            if action.first_execution_run_id not in before:
                return action.workflow_id, action.first_execution_run_id
        if loop.time() > deadline:
            raise Fail(
                FAILED,
                f"the trigger of {handle.id} started no run within {FIND_RUN_TIMEOUT:.0f}s "
                "(skipped because another run is in progress?)",
            )
        await asyncio.sleep(0.3)


# --- commands -----------------------------------------------------------------------------------
@app.command("create")
def create_cmd(
    name: Name,
    plan: Annotated[
        Path,
        typer.Option(
            "--plan", metavar="PLAN", help="Plan file of the canary cloud (validated now, kept in the schedule)."
        ),
    ],
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
