"""Fleet: the canary clouds first, then each wave, every cloud as its own Upgrade workflow.

Public names: :class:`FleetWorkflow` (workflow type ``"Fleet"``, id ``fleet/<name>``: one run per
fleet at a time), its input ``model.io_fleet.FleetInput``, its result ``model.io_fleet.FleetReport``
(a fleet that did not succeed ends FAILED with an ApplicationError whose type is
``model.errors.FLEET_OUTCOME_ERROR[outcome]`` and whose first detail is the report), its ``status``
query (``model.io_fleet.FleetStatus``) and its validated updates ``pause``, ``resume``, ``abort``
and ``approve`` (model.io requests, ``approve`` names a wave's decision ``fleet/wave#N``).

Each cloud is a child ``Upgrade`` workflow under its usual id ``upgrade/<cloud>`` — the per-cloud
lock — on the cloud's own ``task_queue`` (its region's workers hold its credentials) or the fleet's.
A cloud whose upgrade is already running (the start is refused: WorkflowAlreadyStartedError) is
reported **busy** and never started twice. Busy does *not* count toward a wave's ``max_failed``:
nothing of this fleet failed there, someone else's upgrade holds the cloud; it leaves the fleet
``partial``. What counts (model.io_fleet.FAILURES): failed, rolled-back, aborted (by the cloud's
own operator) and refused. A canary cloud that does not succeed — busy included: nothing was
validated — fails the fleet.

Parent-close policy ABANDON: a cloud's upgrade is its own unit with its own compensations and its
own operator commands; terminating or timing out the fleet must not cancel every cloud half-way.
The fleet's ``abort`` (and a Temporal Cancel of the fleet, which is an abort) is forwarded
explicitly to the running clouds (``UpgradeWorkflow.parent_abort``), which roll back as their own
abort does; ``pause``/``resume`` are forwarded the same way.

Image promotion: once every canary cloud succeeded, the first canary plan's image set (each
service's workload images and Helm ``image_values``; model.fleet.image_set) is the fleet's. A later
cloud whose plan's set differs is **refused** (not started; the report names the differing image).
Digests (``@sha256:``) compare as digests, whatever the registry; tags compare as written. A fleet
without a canary promotes nothing and refuses nothing.

Waves: at most ``max_parallel`` clouds at once (the wave's, else the fleet's). When a wave's
failures pass its threshold no new cloud starts, the running ones finish, the later waves are
skipped and the fleet ends failed. A wave with ``approval`` waits for ``approve fleet/wave#N``.
Nothing travels from a cloud to the fleet but its result: a cloud's progress adds no event to the
fleet's history (readers query the clouds' own workflows).
"""

from __future__ import annotations

import asyncio

from temporalio import workflow
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ApplicationError, ChildWorkflowError, WorkflowAlreadyStartedError

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from model import errors, io, visibility
    from model import io_fleet as fio
    from model.fleet import image_differences, image_set
    from model.fleet_loading import fleet_problems
    from workflows.fleet_controls import Child, FleetControls
    from workflows.fleet_details import render_fleet, report_of
    from workflows.interruptions import through_cancellation
    from workflows.upgrade import UpgradeWorkflow


@workflow.defn(name="Fleet")
class FleetWorkflow(FleetControls):
    @workflow.init
    def __init__(self, inp: fio.FleetInput) -> None:
        self.fleet = inp.fleet
        self.requested_by = inp.requested_by
        self.name = self.fleet.metadata.name
        self.phase = "starting"
        self.paused = False
        self.abort_reason: str | None = None
        self.stopped = ""  # why no new cloud starts (a threshold passed, the canary failed)
        self.waiting = ""  # the decision waiting (fleet/wave#N)
        self.approved: dict[str, str] = {}  # decision id -> who approved it
        self.image_set: dict[str, list[str]] = {}
        self.outcome: fio.FleetOutcome | None = None
        self.message = ""
        self.running = 0
        self.children: dict[str, Child] = {}
        self.waves: list[fio.WaveStatus] = []
        if self.fleet.canary:
            self.waves.append(fio.WaveStatus(name=fio.CANARY, number=0, clouds=list(self.fleet.canary)))
        for i, w in enumerate(self.fleet.waves):
            members = self.fleet.wave_clouds(i)
            self.waves.append(
                fio.WaveStatus(
                    name=w.name,
                    number=i + 1,
                    clouds=members,
                    approval=w.approval,
                    allowed_failures=w.allowed_failures(len(members)),
                )
            )
        self.clouds: dict[str, fio.CloudStatus] = {}
        for ws in self.waves:
            for name in ws.clouds:
                # an unknown name (an input that model.fleet_loading would refuse) is refused by the run
                c = next((c for c in self.fleet.clouds if c.name == name), None)
                plan = c.upgrade_plan if c else None
                self.clouds.setdefault(
                    name,
                    fio.CloudStatus(
                        cloud=name,
                        wave=ws.name,
                        workflow_id=plan.workflow_id if plan else "",
                        task_queue=(c.task_queue if c else None) or "",
                        release_from=plan.release.from_ if plan else "",
                        release_to=plan.release.to if plan else "",
                    ),
                )

    # --- the run -----------------------------------------------------------------------------------
    @workflow.run
    async def run(self, inp: fio.FleetInput) -> fio.FleetReport:
        return await through_cancellation(self._run(), self._cancelled)

    async def _run(self) -> fio.FleetReport:
        started = workflow.now()
        release = next((f"{c.release_from}->{c.release_to}" for c in self.clouds.values()), "")
        workflow.upsert_search_attributes(
            [
                visibility.FLEET.value_set(self.name),
                visibility.RELEASE.value_set(release),
                visibility.PHASE.value_set("starting"),
            ]
        )
        problems = [p.render("fleet") for p in fleet_problems(self.fleet)]
        problems += [f"cloud {c.name}: its plan was not loaded" for c in self.fleet.clouds if c.upgrade_plan is None]
        if problems:
            self.stopped = "refused: " + "; ".join(problems)
        for ws in self.waves:
            await self._wave(ws)
        self.outcome, self.message = self._outcome()
        self._set_phase("done")
        report = report_of(
            fio.FleetReport(
                name=self.name,
                outcome=self.outcome,
                message=self.message,
                image_set=self.image_set,
                started_at=started.isoformat(),
                ended_at=workflow.now().isoformat(),
            ),
            self.clouds,
        )
        await workflow.wait_condition(workflow.all_handlers_finished)
        if self.outcome != "succeeded":
            raise ApplicationError(
                self.message, report, type=errors.FLEET_OUTCOME_ERROR[self.outcome], non_retryable=True
            )
        return report

    async def _wave(self, ws: fio.WaveStatus) -> None:
        if self.stopped or self.abort_reason:
            self._skip(ws, self.stopped or f"aborted: {self.abort_reason}")
            return
        self._set_phase(f"wave {ws.name}" if ws.number else fio.CANARY)
        if ws.approval:
            self.waiting = fio.wave_decision_id(ws.number)
            ws.state = "waiting"
            self._show()
            await workflow.wait_condition(lambda: self.waiting in self.approved or self.abort_reason is not None)
            self.waiting = ""
            if self.abort_reason:
                self._skip(ws, f"aborted: {self.abort_reason}")
                return
        ws.state = "running"
        self._show()
        limit = self._limit(ws)
        reference = self.image_set or (image_set(self.fleet.plan_of(ws.clouds[0])) if ws.number == 0 else {})
        tasks = []
        for name in ws.clouds:
            if self._halted:
                break
            diffs = image_differences(reference, self.fleet.plan_of(name)) if reference else []
            if diffs:  # refused at once: it needs no slot
                self._known(ws, name, "refused", f"its images are not the canary's: {'; '.join(diffs)}")
                continue
            await workflow.wait_condition(lambda: (self.running < limit and not self.paused) or self._halted)
            if self._halted:
                break
            self.running += 1
            tasks.append(asyncio.create_task(self._cloud(ws, name)))
        await asyncio.gather(*tasks)
        why = self.stopped or (f"aborted: {self.abort_reason}" if self.abort_reason else "")
        for name in ws.clouds:
            if self.clouds[name].state == "pending":
                self._known(ws, name, "skipped", f"not started: {why}")
        skipped = any(self.clouds[n].state == "skipped" for n in ws.clouds)
        ws.state = "stopped" if skipped or ws.failures > ws.allowed_failures else "done"
        if ws.number == 0 and all(self.clouds[n].state == "succeeded" for n in ws.clouds):
            self.image_set = reference  # promoted: the waves' clouds must run exactly these images
        self._show()

    @property
    def _halted(self) -> bool:
        """No new cloud starts: aborted, or a failure too many (this wave's, or the canary's)."""
        return bool(self.stopped) or self.abort_reason is not None

    @property
    def _requester(self) -> str:
        return f"fleet {self.name}" + (f" ({self.requested_by})" if self.requested_by else "")

    def _limit(self, ws: fio.WaveStatus) -> int:
        wave = self.fleet.waves[ws.number - 1] if ws.number else None
        return (wave.max_parallel if wave and wave.max_parallel else None) or self.fleet.max_parallel

    async def _cloud(self, ws: fio.WaveStatus, name: str) -> None:
        cloud = self.fleet.cloud(name)
        plan = self.fleet.plan_of(name)
        release = f"{plan.release.from_}->{plan.release.to}"
        try:
            try:
                handle = await workflow.start_child_workflow(
                    UpgradeWorkflow.run,
                    io.UpgradeInput(plan=plan, plan_file=cloud.plan, requested_by=self._requester),
                    id=plan.workflow_id,
                    task_queue=cloud.task_queue or workflow.info().task_queue,
                    # A cloud's upgrade is its own unit: the fleet's end never cancels it (abort is forwarded).
                    parent_close_policy=workflow.ParentClosePolicy.ABANDON,
                    static_summary=f"fleet {self.name}, {ws.name}: {plan.release.from_} → {plan.release.to}",
                    search_attributes=TypedSearchAttributes(
                        [
                            SearchAttributePair(visibility.CLOUD, plan.cloud.name),
                            SearchAttributePair(visibility.RELEASE, release),
                            SearchAttributePair(visibility.FLEET, self.name),
                        ]
                    ),
                )
            except WorkflowAlreadyStartedError:
                self._known(ws, name, "busy", f"{plan.workflow_id} is already running: not started twice")
                return
            self.children[name] = handle
            self._known(ws, name, "running", f"see workflow {plan.workflow_id}")
            # A command that came while the child was being started was not forwarded to it.
            if self.abort_reason is not None:
                await handle.signal(UpgradeWorkflow.parent_abort, self.abort_reason)
            elif self.paused:
                await handle.signal(UpgradeWorkflow.parent_pause, "")
            try:
                report = await handle
                self._known(ws, name, "succeeded", report.message)
            except ChildWorkflowError as e:
                outcome, message = _failure(e)
                self._known(ws, name, outcome, message)
        finally:
            self.running -= 1

    def _outcome(self) -> tuple[fio.FleetOutcome, str]:
        states = [c.state for c in self.clouds.values()]
        if self.abort_reason is not None:
            return "aborted", f"aborted: {self.abort_reason}"
        if self.stopped:
            return "failed", self.stopped
        if all(s == "succeeded" for s in states):
            return "succeeded", f"{len(states)} clouds upgraded"
        counts = {s: states.count(s) for s in dict.fromkeys(states)}
        return "partial", "not every cloud was upgraded: " + ", ".join(f"{n} {s}" for s, n in counts.items())

    def _skip(self, ws: fio.WaveStatus, why: str) -> None:
        ws.state = "skipped"
        for name in ws.clouds:
            if self.clouds[name].state == "pending":
                self._known(ws, name, "skipped", f"not started: {why}")

    def _known(self, ws: fio.WaveStatus, name: str, state: fio.CloudState, message: str) -> None:
        self.clouds[name] = self.clouds[name].model_copy(update={"state": state, "message": message})
        if state in fio.FAILURES:
            ws.failures += 1
        if self.stopped:
            pass
        elif ws.number == 0 and state not in ("running", "succeeded", "skipped"):
            self.stopped = f"the canary {name} did not succeed ({state}): {message}"
        elif ws.failures > ws.allowed_failures:
            self.stopped = f"wave {ws.name} stopped: {ws.failures} of its clouds failed, {ws.allowed_failures} may"
        self._show()

    def _set_phase(self, phase: str) -> None:
        self.phase = phase
        workflow.upsert_search_attributes([visibility.PHASE.value_set(phase)])
        self._show()

    def _show(self) -> None:
        workflow.set_current_details(
            render_fleet(self.name, self.phase, self.waves, self.clouds, self.waiting, self.message)
        )


def _failure(e: ChildWorkflowError) -> tuple[fio.CloudState, str]:
    """How a cloud's Upgrade that did not succeed ended: its report's outcome, else failed."""
    cause = e.cause
    if isinstance(cause, ApplicationError) and cause.details:
        try:
            report = io.UpgradeReport.model_validate(cause.details[0])
            return report.outcome, report.message
        except ValidationError:
            pass
    return "failed", f"its upgrade workflow failed: {cause or e}"
