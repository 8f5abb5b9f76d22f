"""`stackhop report ID`: an ended upgrade's report as Markdown, JSON or JUnit XML.

The report is what the Upgrade workflow returned (success) or the first detail of the
ApplicationError it failed with (rolled back / failed / aborted), read from Temporal, so it can be
produced again at any time while the history is retained, without a worker. A running upgrade has
no report yet: that is an operator mistake (exit 2), not a failed upgrade.
"""

from __future__ import annotations

import asyncio
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from temporalio.client import Client, WorkflowExecutionStatus

from cliapp import reports
from cliapp.common import BAD_INPUT, FAILED, Fail, connect, run, say, workflow_id
from cliapp.render import outcome_of
from cliapp.upgrades import upgrade_handle
from model import io


class Format(StrEnum):
    md = "md"
    json = "json"
    junit = "junit"


async def fetch(client: Client, wf_id: str, run_id: str | None) -> tuple[str, io.UpgradeReport | None, str]:
    """(outcome, report, message) of an ended Upgrade workflow, or of a canary run's upgrade."""
    handle, desc = await upgrade_handle(client, wf_id, run_id, types=("Upgrade", "Canary"))
    if desc.status == WorkflowExecutionStatus.RUNNING:
        raise Fail(
            BAD_INPUT,
            f"{wf_id} is still running: it has no report yet. Follow it with `stackhop watch {wf_id}`"
            f" (or `stackhop status {wf_id}`); its report is available once it has ended.",
        )
    if desc.workflow_type == "Canary":
        from cliapp.canary_runs import canary_outcome

        _, result, message = await canary_outcome(client, wf_id, desc.run_id)
        report = result.report if result else None
        return (report.outcome if report else "failed"), report, message
    return await outcome_of(handle)


async def report(ref: str, run_id: str | None, fmt: Format, output: Path | None) -> int:
    wf_id = workflow_id(ref)
    client = await connect()
    outcome, rep, message = await fetch(client, wf_id, run_id)
    if rep is None:
        raise Fail(FAILED, f"{wf_id} ended without a report ({outcome}): {message}")
    text = reports.render(rep, fmt.value)
    if output is None:
        typer.echo(text, nl=False)
    else:
        try:
            await asyncio.to_thread(output.write_text, text, encoding="utf-8")
        except OSError as e:
            raise Fail(BAD_INPUT, f"cannot write {output}: {e.strerror or e}") from None
        say(f"{wf_id}: {rep.outcome}; {fmt.value} report written to {output}")
    return reports.exit_code(rep)


def command(
    wf: Annotated[
        str, typer.Argument(metavar="ID", help="Upgrade workflow id, e.g. upgrade/lab (or just the cloud name).")
    ],
    fmt: Annotated[
        Format, typer.Option("--format", "-f", help="md (people), json (tools) or junit (CI test report).")
    ] = Format.md,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", metavar="FILE", help="Write the report here instead of stdout.")
    ] = None,
    run_id: Annotated[
        str | None, typer.Option("--run-id", help="A specific run (default: the latest run of ID).")
    ] = None,
) -> None:
    """The report of an ended upgrade (exit 0 succeeded, 1 rolled back / failed / aborted, 2 still running)."""
    raise typer.Exit(run(report(wf, run_id, fmt, output)))
