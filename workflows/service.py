"""ServiceUpgrade: one OpenStack service, from verified snapshot to validated new release.

Steps: gate → snapshot → verify → (check → expand → migrate | quiesce → offline) → roll → rollout
→ (unquiesce) → validate → contract → postcheck. Validation runs *before* the contract so that a
failing tempest run still has a safe way back: the contract is the point of no return, after which
the old release cannot run on the schema and restoring the snapshot would lose data written since.

On failure before the contract, depending on the plan's ``policy.on_failure``:
* rollback: by phase (model/recipe.py, workflows/rollback.py): previous images only while the old
  release can serve on the schema (before any schema change, after a complete expand/migrate); a
  restore of the verified snapshot after a part-way expand/migrate or an offline migration;
* pause: wait for the operator — resume retries the step, abort rolls back;
* fail: stop where it is.
After the contract, any failure pauses for a forward fix whatever the policy.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from model import errors, io
    from model.plan import Service
    from model.recipe import service_steps
    from workflows.rollback import RollbackSteps
    from workflows.steps import Recorder, StepFailed


def plan_steps(svc: Service) -> list[str]:
    """The steps of one service, in order (the parent counts them for services not started yet):
    its migration mode's recipe (model/recipe.py) minus what does not apply to it."""
    return service_steps(svc)


@workflow.defn(name="ServiceUpgrade")
class ServiceUpgradeWorkflow(RollbackSteps):
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
        self.approved = set(inp.approved_gates)
        self.resumes = 0
        self.deciding = None
        self.done = False
        self.rec = Recorder(self.svc.name, self.plan.policy)
        self.result = io.ServiceResult(service=self.svc.name, outcome="succeeded")
        self.progress = io.ServiceProgress(
            service=self.svc.name, state="running", steps_total=len(plan_steps(self.svc))
        )
        self.previous = []

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
        if self.abort_reason is None:
            self.abort_reason = reason or "aborted by the operator"
            if not self.progress.past_point_of_no_return:
                self.rec.cancel_current()

    # --- this service's own decisions: validated updates from the operator ------------------------
    @workflow.update
    def resume(self, req: io.ResumeRequest) -> io.ControlAck:
        self.resumes += 1
        step = self.deciding.step if self.deciding else self.progress.step
        return io.ControlAck(message=f"{step} is retried")

    @resume.validator
    def _check_resume(self, req: io.ResumeRequest) -> None:
        self._refuse_if_done()
        if self.deciding is None:
            raise ValueError(f"nothing to resume: {self.svc.name} is not waiting for a decision")

    @workflow.update
    def approve(self, req: io.ApproveRequest) -> io.ControlAck:
        self.approved.add(req.gate)
        if req.gate == self.svc.gate_name:
            return io.ControlAck(message=f"gate {req.gate} approved")
        if self.deciding is not None and self.deciding.kind == errors.RESTORE_APPROVAL:
            return io.ControlAck(message=f"{req.gate}: the restore is approved")
        return io.ControlAck(message=f"{req.gate}: the inconclusive check is accepted")

    @approve.validator
    def _check_approve(self, req: io.ApproveRequest) -> None:
        self._refuse_if_done()
        if req.gate in self.approved:
            raise ValueError(f"gate {req.gate!r} is already approved")
        approvable = self._approvable()
        if req.gate not in approvable:
            known = ", ".join(sorted(approvable)) or "none"
            raise ValueError(f"unknown gate {req.gate!r}; what {self.svc.name} can approve now: {known}")

    def _approvable(self) -> set[str]:
        """Its gate until it is passed, and the check it waits on when that check was inconclusive."""
        names = set()
        if self.svc.gate_name and not self.rec.passed("gate"):
            names.add(self.svc.gate_name)
        if self.deciding is not None and self.deciding.kind in (errors.INCONCLUSIVE, errors.RESTORE_APPROVAL):
            names.add(f"{self.svc.name}/{self.deciding.step}")
        return names

    def _refuse_if_done(self) -> None:
        if self.done:
            raise ValueError(f"{self.svc.name} has ended ({self.result.outcome})")

    @workflow.query
    def status(self) -> io.ServiceProgress:
        return self.progress

    # --- the run ----------------------------------------------------------------------------------
    @workflow.run
    async def run(self, inp: io.ServiceUpgradeInput) -> io.ServiceResult:
        outcome, message = await self._upgrade()
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

    async def _upgrade(self) -> tuple[io.Outcome, str]:
        steps: dict[str, Callable[[], Awaitable[None]]] = {
            "gate": self._gate,
            "snapshot": self._snapshot,
            "verify": self._verify,
            "check": self._check_schema,
            "expand": self._expand,
            "migrate": self._migrate,
            "quiesce": self._quiesce,
            "offline": self._offline,
            "roll": self._roll,
            "rollout": self._rollout,
            "unquiesce": self._unquiesce,
            "validate": self._validate,
            "contract": self._contract,
            "postcheck": self._postcheck,
        }
        for name in plan_steps(self.svc):
            await self._wait_unpaused()
            if self.abort_reason:
                return await self._give_up(StepFailed(name, self.abort_reason, errors.ABORTED))
            while True:
                self._report(state="running", step=name)
                try:
                    await steps[name]()
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

    async def _give_up(self, failure: StepFailed) -> tuple[io.Outcome, str]:
        if self._past_ponr:
            return "failed", f"{failure.step}: {failure} (past the contract: nothing rolled back, fix forward)"
        return await self._rollback(failure)

    async def _wait_unpaused(self) -> None:
        if self.paused:
            self._report(state="paused", message="paused by the operator")
            await workflow.wait_condition(lambda: not self.paused or self.abort_reason is not None)
