"""Rich views of an upgrade: its live status (cliapp.progress) and its final report.

An upgrade that does not succeed ends the workflow FAILED with an ApplicationError whose type names
the outcome and whose first detail is the full report; ``outcome_of`` turns both endings into
(outcome, report) so every command shows a failed upgrade as completely as a successful one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError

from cliapp.reports import AVAILABILITY_COLUMNS, DATA_PLANE_COLUMNS, availability_rows, data_plane_rows, rollback_lines
from model import errors, io

STATE_STYLE = {
    "pending": "dim",
    "running": "cyan",
    "waiting": "yellow",
    "paused": "yellow",
    "rolling-back": "magenta",
    "succeeded": "green",
    "rolled-back": "magenta",
    "failed": "red",
    "aborted": "red",
}
STEP_STYLE = {"done": "green", "failed": "red", "skipped": "dim", "compensated": "magenta", "running": "cyan"}


def styled(state: str) -> Text:
    return Text(state, style=STATE_STYLE.get(state, ""))


async def outcome_of(handle: WorkflowHandle[Any, Any]) -> tuple[str, io.UpgradeReport | None, str]:
    """(outcome, report or None, message) of an ended Upgrade workflow."""
    try:
        report = await handle.result(follow_runs=False)
        return report.outcome, report, report.message
    except WorkflowFailureError as e:
        cause = e.cause
        if isinstance(cause, ApplicationError) and cause.type in errors.OUTCOME_OF_ERROR:
            report = io.UpgradeReport.model_validate(cause.details[0]) if cause.details else None
            return errors.OUTCOME_OF_ERROR[cause.type], report, cause.message
        # Terminated, cancelled, timed out or a workflow bug: no report.
        return "failed", None, f"workflow ended without a report: {cause}"


def status_view(wf_id: str, st: io.UpgradeStatus) -> Group:
    head = Text.assemble((wf_id, "bold"), f" plan {st.plan} on {st.cloud}: phase ", (st.phase, "bold"))
    if st.paused:
        head.append(" (paused)", style="yellow")
    if st.aborting:
        head.append(" (aborting)", style="red")
    parts: list[Any] = [head]
    if st.order:
        parts.append(Text("order: " + " → ".join(", ".join(w) for w in st.order), style="dim"))
    table = Table(show_edge=False)
    for col in ("service", "state", "step", "progress", "waiting for", "message"):
        table.add_column(col)
    rank = {name: i for i, name in enumerate(n for wave in st.order for n in wave)}
    for p in sorted(st.services, key=lambda p: rank.get(p.service, len(rank))):
        table.add_row(
            p.service,
            styled(p.state),
            Text(p.step or "-"),
            f"{p.steps_done}/{p.steps_total}" if p.steps_total else "-",
            Text(p.decision or p.waiting_for or "-"),
            Text(p.message),
        )
    parts.append(table)
    if st.message:
        parts.append(Text(st.message))
    for p in st.services:
        if p.batch and p.state not in ("succeeded", "failed", "rolled-back", "aborted"):
            parts.append(Text(f"→ {p.service} data plane: {p.batch}", style="cyan"))
        if p.decision:
            parts.append(Text(f"→ {p.service} waits for {p.decision}: {answers(wf_id, p)}", style="yellow"))
    return Group(*parts)


def answers(wf_id: str, p: io.ServiceProgress) -> str:
    """The commands that answer the decision ``p`` waits for."""
    command = {
        io.APPROVE: f"stackhop approve {wf_id} {p.decision}",
        io.RESUME: f"stackhop resume {wf_id}",
        io.ABORT: f"stackhop abort {wf_id} --reason …",
        io.ABANDON: f"stackhop abandon {wf_id} --reason …",
    }
    return " · ".join(command[a] for a in p.answers)


def _duration(a: str, b: str) -> str:
    try:
        secs = (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds()
    except ValueError:
        return ""
    return f"{secs:.1f}s"


def report_view(report: io.UpgradeReport | None, outcome: str, message: str) -> Group:
    style = "green bold" if outcome == "succeeded" else "red bold"
    if report is None:
        return Group(Text.assemble((outcome, style), f": {message}"))
    took = _duration(report.started_at, report.ended_at) if report.ended_at else ""
    parts: list[Any] = [
        Text.assemble((outcome, style), f": {report.message or message}"),
        Text(
            f"plan {report.plan} on {report.cloud}: {report.release_from} → {report.release_to}"
            + (f" in {took}" if took else "")
        ),
    ]
    failed_pre = [r for r in report.preflight if r.status == "failed"]
    for r in failed_pre:
        parts.append(Text(f"pre-flight failed: {r.detail}", style="red"))
    for svc in report.services:
        parts.append(Text.assemble("\n", (svc.service, "bold"), ": ", styled(svc.outcome), f" {svc.message}"))
        steps = Table(show_edge=False, pad_edge=False)
        for col in ("step", "status", "seconds", "detail"):
            steps.add_column(col)
        for r in svc.steps:
            steps.add_row(
                r.step, Text(r.status, style=STEP_STYLE.get(r.status, "")), f"{r.seconds:.1f}", Text(r.detail)
            )
        parts.append(steps)
        if rows := data_plane_rows(svc):
            parts.append(data_plane_table(svc.service, rows))
        if svc.snapshot:
            s = svc.snapshot
            parts.append(Text(f"snapshot: {s.location} sha256 {s.sha256} ({s.size_bytes} bytes)"))
        if svc.rollback:
            parts += [Text(line, style="magenta") for line in rollback_lines(svc.rollback)]
        if svc.tempest:
            t = svc.tempest
            line = f"tempest: {t.status}, passed {t.passed}, failed {t.failed}, skipped {t.skipped}"
            if t.failing_tests:
                line += "; failing: " + ", ".join(t.failing_tests[:10])
            parts.append(Text(line))
        for c in svc.checks:
            if c is not svc.tempest and c.status != "pass":
                parts.append(Text(f"check {c.status}: {c.message}", style="red"))
        if svc.left_undone:
            parts.append(Text(f"rollback abandoned; left undone: {', '.join(svc.left_undone)}", style="red"))
    if rows := availability_rows(report):
        parts.append(availability_table(rows))
    return Group(*parts)


def data_plane_table(service: str, rows: list[tuple[str, ...]]) -> Table:
    """Every data plane node of a service: the release its pods run, servers moved, outcome."""
    table = Table(title=f"{service} data plane", title_justify="left", show_edge=False)
    for col in DATA_PLANE_COLUMNS:
        table.add_column(col, justify="right" if col in ("batch", "servers moved", "seconds") else "left")
    for node, batch, zone, release, moved, secs, outcome, message in rows:
        style = "green" if outcome == "upgraded" else "red" if outcome.startswith("failed") else "dim"
        table.add_row(node, batch, zone, release, moved, secs, Text(outcome, style=style), Text(message))
    return table


def availability_table(rows: list[tuple[str, ...]]) -> Table:
    """What the users of each API saw while its service upgraded (the probe's counters)."""
    table = Table(title="API availability during the upgrade", title_justify="left")
    for col in AVAILABILITY_COLUMNS:
        table.add_column(col, justify="right" if col in ("requests", "errors", "longest outage", "outages") else "left")
    for service, api, requests, errs, longest, outages, note in rows:
        table.add_row(
            service,
            api,
            requests,
            Text(errs, style="red" if errs != "0" else ""),
            Text(longest, style="red" if longest != "0.0s" else "green"),
            outages,
            Text(note, style="dim"),
        )
    return table


def run_status_name(status: WorkflowExecutionStatus | None) -> str:
    return status.name.lower().replace("_", "-") if status else "unknown"
