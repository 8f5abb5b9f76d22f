"""ServiceUpgrade: one OpenStack service, from verified snapshot to validated new release.

Steps: the service's recipe (model/recipes/<service>.py; the generic one of its migration mode for
a service without one), e.g. gate → status → snapshot → verify → (check → expand → migrate | quiesce
→ offline) → roll → rollout → (unquiesce) → (dataplane) → (unpin) → validate → (contract | online) →
postcheck. The dataplane step (workflows/dataplane_step.py) runs only for a service whose plan has a
``data_plane`` block: its nodes batch by batch, each batch a DataPlaneBatch child workflow; once it
started, a failure is fixed forward (nothing is rolled back).
Validation runs *before* the point of no return (a contract; nova's online data migrations) so that a
failing tempest run still has a safe way back: after it the old release cannot run on the schema and
restoring the snapshot would lose data written since.

Versioning: the per-service recipes added steps (the target release's status check, online data
migrations, the unpin restart, neutron's stop-api/start-api) and dropped keystone's no-op migrate.
A run whose history was written before them keeps the generic recipe: the ``service-recipes`` patch
(workflows/__init__.py's policy) decides once, before the first step, and only where the two differ.

On failure before the contract, depending on the plan's ``policy.on_failure``:
* rollback: by phase (model/recipe.py, workflows/rollback.py): previous images only while the old
  release can serve on the schema (before any schema change, after a complete expand/migrate); a
  restore of the verified snapshot after a part-way expand/migrate or an offline migration;
* pause: wait for the operator — resume retries the step, abort rolls back;
* fail: stop where it is.
After the contract, any failure pauses for a forward fix whatever the policy.

Availability: from the first step that changes something (not gate, status, snapshot, verify or
check) to the end of the upgrade — success, rollback or failure — the ``probe.availability`` activity
calls the service's API every second (activities/probe.py; the plan's ``policy.probe``); its counters
go into ``ServiceResult.availability``. It is stopped by cancelling it and awaiting its handle
(WAIT_CANCELLATION_COMPLETED): the probe returns its counters when cancelled. A run whose history
started before the probe existed runs without it (the ``availability-probe`` patch).

Interruptions: a compensation is never cancelled — an abort during a rollback waits for it, and a
Temporal Cancel is an abort (workflows/interruptions.py). A rollback step that fails waits for the
operator: resume retries it, ``abandon`` ends the service with the compensations left undone in its
report. Every wait for a person is a decision named ``<service>/<step>#<n>``
(workflows/decisions.py); an answer applies to that one decision.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from model import errors, io
    from model.order import service_type
    from model.plan import Service
    from model.recipes import recipe_for, service_steps
    from workflows.adapters import Applied
    from workflows.dataplane_step import DataPlaneStep
    from workflows.decisions import BATCH, GATE, Abandoned, Decision
    from workflows.interruptions import through_cancellation
    from workflows.probe import start_probe, stop_probe
    from workflows.rollback import RollbackSteps
    from workflows.steps import ADMIT_PATCH, Recorder, StepFailed


RECIPES_PATCH = "service-recipes"
PROBE_PATCH = "availability-probe"
# The steps that change nothing the API serves from: the probe starts before the first other one.
READ_ONLY_STEPS = frozenset({"gate", "status", "snapshot", "verify", "check"})


def plan_steps(svc: Service, per_service: bool = True) -> list[str]:
    """The steps of one service, in order (the parent counts them for services not started yet):
    its recipe (model/recipes/) minus what does not apply to it; ``per_service`` False: the generic
    recipe of its migration mode (a run started before the per-service recipes)."""
    return service_steps(svc, per_service)


@workflow.defn(name="ServiceUpgrade")
class ServiceUpgradeWorkflow(RollbackSteps, DataPlaneStep):
    """One service's upgrade. Its progress is read with the ``status`` query (the CLI reads it
    directly, by id): nothing is signalled to the parent, so a progress change writes no event.
    What each step does, and what undoes it, is in workflows/service_steps.py."""

    @workflow.init
    def __init__(self, inp: io.ServiceUpgradeInput) -> None:
        self.plan = inp.plan
        self.svc = inp.plan.service(inp.service)
        self.upgrade_id = inp.upgrade_id
        self.paused = False
        self.abort_reason = None
        self.abandon_reason: str | None = None
        self.approved = set(inp.approved_gates)  # gate names: pre-approved at start, or approved live
        self.resumes = 0
        self.deciding = None
        self.asking = None
        self.asked = {}
        self.answered = {}
        self.rolling_back = False
        self.done = False
        self.rec = Recorder(self.svc.name, self.plan.policy)
        self.result = io.ServiceResult(service=self.svc.name, outcome="succeeded")
        self.progress = io.ServiceProgress(
            service=self.svc.name, state="running", steps_total=len(plan_steps(self.svc))
        )
        self.before = Applied()
        self.probe: workflow.ActivityHandle[io.Availability] | None = None
        self.probe_decided = False

    # --- upgrade-wide control, forwarded by the parent ----------------------------------------------
    # Signals: the parent validated the operator's update already, and a workflow cannot send an
    # update to another workflow. Each is idempotent, so a repeated forward changes nothing.
    @workflow.signal
    def pause(self) -> None:
        self.paused = True

    @workflow.signal
    def unpause(self) -> None:
        self.paused = False

    @workflow.signal
    def abort(self, reason: str) -> None:
        self._abort(reason or "aborted by the operator")

    def _abort(self, reason: str) -> None:
        """Stop going forward and roll back. A forward step is cancelled; a compensation never is:
        an abort during a rollback waits for it (and a rollback step waiting for a decision still
        waits: resume retries it, abandon ends the rollback)."""
        if self.abort_reason is not None:
            return
        self.abort_reason = reason
        if self.rolling_back:
            waits = f"abort ({reason}) waits for the rollback in progress: compensations are never cancelled"
            self._report(message=f"{waits}; {self.progress.message}" if self.asking else waits)
        elif not self._past_ponr:
            self.rec.cancel_current()

    async def _cancelled(self) -> None:
        self._abort("cancelled (Temporal Cancel of the service, or its upgrade closed)")

    # --- this service's own decisions: validated updates from the operator ------------------------
    # Each answers the one decision waiting (workflows/decisions.py), named by its id for approve.
    @workflow.update
    def resume(self, req: io.ResumeRequest) -> io.ControlAck:
        asked = self._asked()
        self.answered[asked.id] = io.RESUME
        self.resumes += 1
        return io.ControlAck(message=f"{asked.step} is retried ({asked.id})")

    @resume.validator
    def _check_resume(self, req: io.ResumeRequest) -> None:
        self._refuse_if_done()
        self._refuse(self._refusal(io.RESUME))

    @workflow.update
    def approve(self, req: io.ApproveRequest) -> io.ControlAck:
        asked = self._asked()
        self.answered[asked.id] = io.APPROVE
        if asked.kind == GATE:
            self.approved.add(self.svc.gate_name or "")
            return io.ControlAck(message=f"gate {self.svc.gate_name} approved ({asked.id})")
        if asked.kind == errors.INCONCLUSIVE:
            return io.ControlAck(message=f"{asked.id}: the inconclusive check is accepted")
        if asked.kind == BATCH:
            return io.ControlAck(message=f"{asked.id} approved: {self.progress.batch or 'the batch'} starts")
        return io.ControlAck(message=f"{asked.id} approved")

    @approve.validator
    def _check_approve(self, req: io.ApproveRequest) -> None:
        self._refuse_if_done()
        self._refuse(self._refusal(io.APPROVE, req.gate))

    @workflow.update
    def abandon(self, req: io.AbandonRequest) -> io.ControlAck:
        asked = self._asked()
        self.abandon_reason = req.reason + (f" (by {req.by})" if req.by else "")
        self.answered[asked.id] = io.ABANDON
        undone = ", ".join(self._left_undone())
        return io.ControlAck(message=f"the rollback is abandoned at {asked.id}; left undone: {undone}")

    @abandon.validator
    def _check_abandon(self, req: io.AbandonRequest) -> None:
        self._refuse_if_done()
        if not req.reason.strip():
            raise ValueError("give a reason: it is recorded in the service's history and report")
        if self.rolling_back and self.asking is None:
            raise ValueError(
                f"the rollback of {self.svc.name} is running, not waiting for a decision: abandon is accepted"
                " only while a rollback step waits for one"
            )
        self._refuse(self._refusal(io.ABANDON))

    def _asked(self) -> Decision:
        assert self.asking is not None, "the validator lets an answer through only while a decision waits"
        return self.asking

    @staticmethod
    def _refuse(reason: str | None) -> None:
        if reason is not None:
            raise ValueError(reason)

    def _refuse_if_done(self) -> None:
        if self.done:
            raise ValueError(f"{self.svc.name} has ended ({self.result.outcome})")

    @workflow.query
    def status(self) -> io.ServiceProgress:
        return self.progress

    # --- the run ----------------------------------------------------------------------------------
    @workflow.run
    async def run(self, inp: io.ServiceUpgradeInput) -> io.ServiceResult:
        outcome, message = await through_cancellation(self._probed(), self._cancelled)
        self.result = self.result.model_copy(
            update={"outcome": outcome, "message": message, "steps": list(self.rec.records)}
        )
        self.done = True
        final: dict[str, io.ServiceState] = {
            "succeeded": "succeeded",
            "rolled-back": "rolled-back",
            "aborted": "aborted",
        }
        self._report(state=final.get(outcome, "failed"), step="", message=message)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.result

    async def _probed(self) -> tuple[io.Outcome, str]:
        """The upgrade, then the probe stopped and its counters kept: both inside the shielded work,
        so a cancellation that comes while the probe stops cannot lose its result."""
        ended = await self._upgrade()
        await self._stop_probe()
        return ended

    async def _upgrade(self) -> tuple[io.Outcome, str]:
        steps: dict[str, Callable[[], Awaitable[None]]] = {
            "gate": self._gate,
            "snapshot": self._snapshot,
            "verify": self._verify,
            "check": self._check_schema,
            "expand": self._expand,
            "migrate": self._migrate,
            "status": self._status,
            "quiesce": self._quiesce,
            "offline": self._offline,
            "roll": self._roll,
            "rollout": self._rollout,
            "dataplane": self._dataplane,
            "unquiesce": self._unquiesce,
            "validate": self._validate,
            "unpin": self._unpin,
            "contract": self._contract,
            "online": self._online,
            "stop-api": self._stop_api,
            "start-api": self._start_api,
            "postcheck": self._postcheck,
        }
        if workflow.info().parent is None and workflow.patched(ADMIT_PATCH):
            try:
                await self.rec.call(
                    "preflight",
                    io.PLAN_ADMIT,
                    io.AdmitInput(plan=self.plan),
                    io.Admitted,
                    summary="pre-flight: the worker re-validates the plan",
                )
            except StepFailed as f:
                return "failed", f"pre-flight: {f} (nothing was changed)"
        # Decided once, before the first step: a history without the marker replays the generic recipe.
        if plan_steps(self.svc) != plan_steps(self.svc, per_service=False):
            self.per_service = workflow.patched(RECIPES_PATCH)
        else:
            self.per_service = True
        names = plan_steps(self.svc, self.per_service)
        if len(names) != self.progress.steps_total:
            self.progress = self.progress.model_copy(update={"steps_total": len(names)})
        ponr = recipe_for(self.svc, self.per_service).point_of_no_return
        for name in names:
            await self._wait_unpaused()
            if self.abort_reason:
                return await self._give_up(StepFailed(name, self.abort_reason, errors.ABORTED))
            if name not in READ_ONLY_STEPS and not self.probe_decided:
                self._start_probe()
            if name == ponr and not self._past_ponr:  # from here the old release cannot come back
                self.progress = self.progress.model_copy(update={"past_point_of_no_return": True})
            while True:
                self._report(state="running", step=name)
                try:
                    await (self._at_gate(steps[name]) if name == "gate" else steps[name]())
                    break
                except StepFailed as failure:
                    if self.abort_reason:
                        failure = StepFailed(failure.step, self.abort_reason, errors.ABORTED)
                    stop_here = self.plan.policy.on_failure == "fail" and not self._past_ponr
                    if failure.kind == errors.GATE_TIMEOUT or (stop_here and failure.kind != errors.ABORTED):
                        return "failed", f"{failure.step}: {failure}"
                    if failure.kind == errors.ABORTED or not await self._decide_retry(failure):
                        return await self._give_up(failure)
            self.progress = self.progress.model_copy(update={"steps_done": self.progress.steps_done + 1})
        return "succeeded", f"{self.svc.name} upgraded to {self.plan.release.to}"

    # --- the availability probe (activities/probe.py) ------------------------------------------------
    def _probe_input(self) -> io.ProbeInput | None:
        st = service_type(self.svc)
        if not self.plan.policy.probe or st not in io.PROBE_APIS:
            return None
        return io.ProbeInput(service=self.svc.name, service_type=st, cloud=self.plan.cloud.openstack.cloud)

    def _start_probe(self) -> None:
        """Before the first changing step, once (a run from before the probe existed: never)."""
        self.probe_decided = True
        inp = self._probe_input()
        if inp is not None and workflow.patched(PROBE_PATCH):
            self.probe = start_probe(inp)

    async def _stop_probe(self) -> None:
        """The probe's counters into the result (workflows/probe.py: it returns them when cancelled)."""
        handle, self.probe = self.probe, None
        inp = self._probe_input()
        if handle is not None and inp is not None:
            self.result = self.result.model_copy(update={"availability": await stop_probe(handle, inp)})

    async def _at_gate(self, gate: Callable[[], Awaitable[None]]) -> None:
        """The gate is a decision like the others (its id: <service>/gate#1)."""
        self._open("gate", GATE, message=f"gate {self.svc.gate_name}")
        try:
            await gate()
        except StepFailed:  # timed out or aborted (no `finally`: it would also run at an eviction)
            self._close(message="")
            raise
        self._close(message="")

    async def _give_up(self, failure: StepFailed) -> tuple[io.Outcome, str]:
        if self._past_ponr:
            return "failed", f"{failure.step}: {failure} ({self._past_what}: nothing rolled back, fix forward)"
        try:
            outcome, message = await self._rollback(failure)
        except Abandoned as stop:
            undone = self._left_undone()
            self.result = self.result.model_copy(update={"left_undone": undone})
            return "failed", (
                f"{failure.step}: {failure}; rollback abandoned at {stop.decision}: {self.abandon_reason};"
                f" left undone: {', '.join(undone)} — neither release's state: fix by hand"
            )
        if outcome == "rolled-back" and self.abort_reason:  # aborted while a failure's rollback ran: it ran to its end
            return "aborted", f"{message}; aborted during the rollback: {self.abort_reason}"
        return outcome, message

    async def _wait_unpaused(self) -> None:
        if self.paused:
            self._report(state="paused", message="paused by the operator")
            await workflow.wait_condition(lambda: not self.paused or self.abort_reason is not None)
