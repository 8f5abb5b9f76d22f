"""`stackhop watch`: one progress bar per service, fed by polling the upgrade's and its services'
`status` queries (cliapp.progress).

Only reads: stopping a watch (Ctrl-C) never affects the upgrade. Every change of phase or of a
service's state is also printed as a line, so a watch piped to a file is a readable log.
"""

from __future__ import annotations

import asyncio
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
from rich.text import Text
from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowQueryFailedError,
)
from temporalio.service import RPCError, RPCStatusCode

from cliapp.common import FAILED, OK
from cliapp.progress import read_status
from cliapp.render import STATE_STYLE, answers, outcome_of, report_view
from model import io


def no_worker(e: Exception) -> bool:
    """A query nobody answered (no worker on the task queue), as opposed to a real error."""
    return isinstance(e, WorkflowQueryFailedError) or (
        isinstance(e, RPCError) and e.status in (RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED)
    )


def detail(p: io.ServiceProgress) -> str:
    if p.decision or p.waiting_for:
        return f"waiting for {p.decision or p.waiting_for} {p.message}".strip()
    return f"{p.step} {p.message}".strip()


class Watcher:
    def __init__(
        self,
        client: Client,
        wf_id: str,
        handle: WorkflowHandle[Any, Any],
        desc: WorkflowExecutionDescription,
        console: Console,
    ):
        self.client, self.wf_id, self.handle, self.desc, self.console = client, wf_id, handle, desc, console
        self.progress = Progress(
            TextColumn("[bold]{task.fields[service]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[state]}"),
            TextColumn("{task.fields[detail]}", markup=False),
            console=console,
        )
        self.tasks: dict[str, TaskID] = {}
        self.seen: dict[str, tuple[str, str | None]] = {}
        self.phase: str | None = None
        self.warned = False

    async def run(self, interval: float) -> int:
        with self.progress:
            while self.desc.status == WorkflowExecutionStatus.RUNNING:
                try:
                    self.show(await read_status(self.client, self.handle))
                except (WorkflowQueryFailedError, RPCError) as e:
                    if not no_worker(e):
                        raise
                    self.warn(e)
                await asyncio.sleep(interval)
                self.desc = await self.handle.describe()
            outcome, report, message = await outcome_of(self.handle)
            totals = {t.id: t.total for t in self.progress.tasks}
            for svc in report.services if report else []:
                if svc.service in self.tasks:
                    task = self.tasks[svc.service]
                    # The last look may have been before the last step finished: a success is a full bar.
                    full = totals[task] if svc.outcome == "succeeded" else None
                    self.progress.update(task, completed=full, state=self.styled(svc.outcome), detail="")
        self.console.print(report_view(report, outcome, message))
        return OK if outcome == "succeeded" else FAILED

    def say(self, *parts: str | tuple[str, str] | Text) -> None:
        self.progress.console.print(Text.assemble(*parts), soft_wrap=True, highlight=False)

    @staticmethod
    def styled(state: str) -> str:
        """Markup for the state column (states are fixed words: nothing to escape)."""
        style = STATE_STYLE.get(state)
        return f"[{style}]{state}[/]" if style else state

    def warn(self, e: Exception) -> None:
        if not self.warned:
            self.warned = True
            self.say(
                (
                    f"no answer to the status query ({str(e)[:120]}); is a worker running on task queue "
                    f"{self.desc.task_queue}? still watching",
                    "yellow",
                )
            )

    def show(self, st: io.UpgradeStatus) -> None:
        if st.phase != self.phase:
            self.phase = st.phase
            self.say("phase: ", (st.phase, "bold"), f" {st.message}" if st.message else "")
        rank = {name: i for i, name in enumerate(n for wave in st.order for n in wave)}
        for p in sorted(st.services, key=lambda p: rank.get(p.service, len(rank))):
            if p.service not in self.tasks:
                self.tasks[p.service] = self.progress.add_task("", total=None, service=p.service, state="", detail="")
            self.progress.update(
                self.tasks[p.service],
                completed=p.steps_done,
                total=p.steps_total or None,
                state=self.styled(p.state),
                detail=detail(p)[:80],
            )
            if self.seen.get(p.service, ("pending", None)) != (p.state, p.decision or p.waiting_for):
                self.seen[p.service] = (p.state, p.decision or p.waiting_for)
                hint = f" → {p.decision}: {answers(self.wf_id, p)}" if p.decision else ""
                self.say(f"{p.service}: ", (p.state, STATE_STYLE.get(p.state, "")), f" {detail(p)}", (hint, "yellow"))
