"""The operator's side of the Fleet workflow: its status query and validated updates.

A mixin of :class:`workflows.fleet.FleetWorkflow` (its state is set there). Each update's validator
refuses what makes no sense now — a second pause, a resume of what is not paused, an abort without
a reason, an approval of a decision that is not waiting (``fleet/wave#2`` before that wave waits,
or once it was answered) — so the operator gets the reason at once and nothing is written to the
history. Fleet-wide commands are forwarded to the running clouds' Upgrade workflows as signals
(``parent_pause``, ``parent_resume``, ``parent_abort``): a workflow cannot send another an update,
and the command was validated here. Deterministic code only.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from temporalio import workflow
from temporalio.exceptions import FailureError

with workflow.unsafe.imports_passed_through():
    from model import io
    from model import io_fleet as fio
    from model.fleet import FleetPlan
    from workflows.upgrade import UpgradeWorkflow

Child = workflow.ChildWorkflowHandle[UpgradeWorkflow, io.UpgradeReport]


class FleetControls:
    """The status query and the updates (state set by FleetWorkflow.__init__)."""

    fleet: FleetPlan
    name: str
    phase: str
    paused: bool
    abort_reason: str | None
    waiting: str
    approved: dict[str, str]
    image_set: dict[str, list[str]]
    outcome: fio.FleetOutcome | None
    message: str
    waves: list[fio.WaveStatus]
    clouds: dict[str, fio.CloudStatus]
    children: dict[str, Child]

    def _show(self) -> None:
        raise NotImplementedError  # FleetWorkflow._show

    @workflow.query
    def status(self) -> fio.FleetStatus:
        return fio.FleetStatus(
            name=self.name,
            phase=self.phase,
            paused=self.paused,
            aborting=self.abort_reason is not None,
            decision=self.waiting,
            waves=self.waves,
            clouds=list(self.clouds.values()),
            image_set=self.image_set,
            outcome=self.outcome,
            message=self.message,
        )

    @workflow.update
    async def pause(self, req: io.PauseRequest) -> io.ControlAck:
        self.paused = True
        self.message = f"paused{' by ' + req.by if req.by else ''}{': ' + req.reason if req.reason else ''}"
        self._show()
        await self._forward(lambda h: h.signal(UpgradeWorkflow.parent_pause, req.reason))
        return io.ControlAck(message="paused: no new cloud starts, the running clouds' upgrades are paused")

    @pause.validator
    def _check_pause(self, req: io.PauseRequest) -> None:
        self._refuse_if_done()
        if self.paused:
            raise ValueError("the fleet is already paused")

    @workflow.update
    async def resume(self, req: io.ResumeRequest) -> io.ControlAck:
        self.paused = False
        self.message = ""
        self._show()
        await self._forward(lambda h: h.signal(UpgradeWorkflow.parent_resume))
        return io.ControlAck(message="resumed")

    @resume.validator
    def _check_resume(self, req: io.ResumeRequest) -> None:
        self._refuse_if_done()
        if not self.paused:
            raise ValueError("nothing to resume: the fleet is not paused")

    @workflow.update
    async def approve(self, req: io.ApproveRequest) -> io.ControlAck:
        self.approved[req.gate] = req.by
        return io.ControlAck(message=f"{req.gate} approved: wave {self._wave_named(req.gate)} starts")

    @approve.validator
    def _check_approve(self, req: io.ApproveRequest) -> None:
        self._refuse_if_done()
        if req.gate in self.approved:
            raise ValueError(f"{req.gate} was answered already (approve): an answer applies to one decision only")
        if req.gate != self.waiting:
            now = f"the fleet waits for {self.waiting}" if self.waiting else "the fleet is not waiting for a decision"
            raise ValueError(f"{req.gate!r} is not the decision waiting: {now}")

    @workflow.update
    async def abort(self, req: io.AbortRequest) -> io.ControlAck:
        await self._abort(req.reason)
        return io.ControlAck(message="aborting: no new cloud starts, the running clouds' upgrades abort (roll back)")

    @abort.validator
    def _check_abort(self, req: io.AbortRequest) -> None:
        self._refuse_if_done()
        if not req.reason.strip():
            raise ValueError("give a reason: it is recorded in the fleet's history")
        if self.abort_reason is not None:
            raise ValueError(f"already aborting: {self.abort_reason}")

    async def _abort(self, reason: str) -> None:
        if self.abort_reason is not None:
            return
        self.abort_reason = reason
        self.paused = False
        self.message = f"aborting: {reason}"
        self._show()
        await self._forward(lambda h: h.signal(UpgradeWorkflow.parent_abort, reason))

    async def _cancelled(self) -> None:
        await self._abort("cancelled (Temporal Cancel of the fleet)")

    def _refuse_if_done(self) -> None:
        if self.outcome is not None:
            raise ValueError(f"the fleet has ended ({self.outcome})")

    async def _forward(self, send: Callable[[Child], Awaitable[None]]) -> None:
        """A fleet-wide command to the running clouds (signals; a cloud that ends meanwhile needs it
        no more, so that failure is ignored)."""
        running = [h for name, h in self.children.items() if self.clouds[name].state == "running"]
        sent = await asyncio.gather(*(send(h) for h in running), return_exceptions=True)
        for result in sent:
            if isinstance(result, BaseException) and not isinstance(result, FailureError):
                raise result

    def _wave_named(self, decision: str) -> str:
        return next((w.name for w in self.waves if w.number and fio.wave_decision_id(w.number) == decision), "?")
