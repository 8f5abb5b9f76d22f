"""Reading canaries: which schedule, how each run went, the `canary list` / `canary history` views.

A canary run's verdict is the Canary workflow's result (passed) or the CanaryResult carried as the
first detail of its "CanaryFailed" error (failed): both hold the upgrade's report, so a failed
canary is shown as completely as a passing one.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from rich.table import Table
from rich.text import Text
from temporalio.client import (
    Client,
    ScheduleActionExecutionStartWorkflow,
    ScheduleDescription,
    ScheduleHandle,
    WorkflowExecutionStatus,
    WorkflowFailureError,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from cliapp import reports
from cliapp.common import BAD_INPUT, OK, Fail, connect, out, say, ui_url
from cliapp.render import run_status_name
from model import errors, io

PREFIX = "canary/"


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
            raise Fail(
                BAD_INPUT,
                f"no canary {name!r} (schedule {sid}) in namespace {client.namespace}; see `stackhop canary list`",
            ) from None
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
    if desc.workflow_type == "Fleet":  # a canary that schedules a fleet plan: the fleet's outcome
        from cliapp.fleets import outcome_of
        from model.io_fleet import FleetReport

        fleet = client.get_workflow_handle(wf_id, run_id=run_id or None, result_type=FleetReport)
        outcome, _, message = await outcome_of(fleet)
        return ("passed" if outcome == "succeeded" else "failed"), None, f"fleet {outcome}: {message}"
    try:
        result: io.CanaryResult = await handle.result(follow_runs=False)
        return ("passed" if result.passed else "failed"), result, result.message
    except WorkflowFailureError as e:
        cause = e.cause
        if isinstance(cause, ApplicationError) and cause.type == errors.CANARY_FAILED and cause.details:
            result = io.CanaryResult.model_validate(cause.details[0])
            return "failed", result, result.message
        return run_status_name(desc.status), None, f"ended without a result: {cause}"


def _when(t: datetime | None) -> str:
    return f"{t:%Y-%m-%d %H:%M:%S}Z" if t else "-"


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
            Text(sid.removeprefix(PREFIX)),
            Text(str(memo.get("cron", "?"))),
            Text("yes", style="yellow") if state.paused else Text("no"),
            _when(nxt),
            Text(last, style="red" if last.startswith("failed") else "green" if last.startswith("passed") else ""),
            Text(str(memo.get("cloud", "-"))),
            Text(state.note or ""),
        )
        rows += 1
    if not rows:
        say("no canaries (create one with `stackhop canary create NAME --plan PLAN --cron '0 3 * * *'`)")
        return OK
    out().print(table)
    return OK


async def history(name: str) -> int:
    client = await connect()
    _, desc = await existing(client, name)
    state = desc.schedule.state
    con = out()
    con.print(
        Text.assemble(
            (f"canary {name}", "bold"),
            f": {desc.info.num_actions} run(s), ",
            ("paused" if state.paused else "active", "yellow" if state.paused else "green"),
            f" ({state.note})" if state.note else "",
        )
    )
    # A canary's schedule only ever starts workflows: other action kinds are not ours to show.
    actions = [
        (a.started_at, a.action)
        for a in desc.info.recent_actions
        if isinstance(a.action, ScheduleActionExecutionStartWorkflow)
    ]
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
        table.add_row(
            _when(started), Text(action.workflow_id), Text(verdict, style=style), Text(upgrade), Text(message)
        )
    con.print(table)
    con.print(f"UI: {ui_url(client.namespace)}", soft_wrap=True, markup=False)
    return OK


def show_result(name: str, verdict: str, result: io.CanaryResult | None, message: str) -> None:
    con = out()
    con.print(
        Text.assemble(
            (f"canary {name}: ", "bold"),
            (verdict, "green bold" if verdict == "passed" else "red bold"),
            f" — {message}" if message else "",
        ),
        soft_wrap=True,
    )
    if result is None:
        return
    if result.report:
        for line in reports.summary_lines(result.report):
            say(line)
    for r in result.reset:
        if r.step == "reset":
            say(f"reset {r.service}: {r.status} {r.detail}".rstrip())
    if result.report and not any(r.step == "reset" for r in result.reset):
        say(
            "reset: nothing to do (the rollback already returned the canary to its baseline)"
            if result.report.outcome == "rolled-back"
            else "reset: none"
        )
    if result.report:
        say(f"full report: stackhop report upgrade/{result.report.cloud}")
