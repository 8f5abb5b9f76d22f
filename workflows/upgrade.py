"""Upgrade: a whole plan on one cloud — pre-flight, services in dependency order, the report.

The workflow id is ``upgrade/<cloud>``: Temporal refuses a second running workflow with that id,
which makes it the per-cloud lock. Services run as child workflows (one history each, visible on
their own in the UI); services of one wave run in parallel. Operators steer it with updates whose
validators reject what makes no sense now (resuming what is not paused, approving an unknown gate)
before anything is written to the history; the parent forwards them to the running services.
"""

from __future__ import annotations

import asyncio

from temporalio import workflow
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ApplicationError, ChildWorkflowError

with workflow.unsafe.imports_passed_through():
    from model import io, order, visibility
    from model.plan import UpgradePlan
    from workflows.progress import render_details
    from workflows.service import ServiceUpgradeWorkflow
    from workflows.steps import Recorder, StepFailed

OUTCOME_ERROR = {"rolled-back": "UpgradeRolledBack", "failed": "UpgradeFailed", "aborted": "UpgradeAborted"}


@workflow.defn(name="Upgrade")
class UpgradeWorkflow:
    def __init__(self) -> None:
        self.phase = "preflight"
        self.paused = False
        self.abort_reason: str | None = None
        self.approved: set[str] = set()
        self.progress: dict[str, io.ServiceProgress] = {}
        self.children: dict[str, workflow.ChildWorkflowHandle] = {}
        self.outcome: str | None = None
        self.message = ""

    # --- queries and updates ----------------------------------------------------------------------
    @workflow.query
    def status(self) -> io.UpgradeStatus:
        return io.UpgradeStatus(
            plan=self.plan.metadata.name,
            cloud=self.plan.cloud.name,
            phase=self.phase,
            paused=self.paused,
            aborting=self.abort_reason is not None,
            order=self.waves,
            services=list(self.progress.values()),
            outcome=self.outcome,
            message=self.message,
        )

    @workflow.signal(name="service_progress")
    def service_progress(self, progress: io.ServiceProgress) -> None:
        known = self.progress.get(progress.service)
        if known is not None and progress.seq > known.seq:
            self.progress[progress.service] = progress
            self._show()

    @workflow.update
    async def pause(self, req: io.PauseRequest) -> io.ControlAck:
        self.paused = True
        self.message = f"paused{' by ' + req.by if req.by else ''}{': ' + req.reason if req.reason else ''}"
        await self._forward("pause")
        self._show()
        return io.ControlAck(message="paused: running steps finish, no new step starts")

    @pause.validator
    def _check_pause(self, req: io.PauseRequest) -> None:
        self._refuse_if_done()
        if self.paused:
            raise ValueError("the upgrade is already paused")

    @workflow.update
    async def resume(self, req: io.ResumeRequest) -> io.ControlAck:
        self.paused = False
        self.message = ""
        await self._forward("resume")
        self._show()
        return io.ControlAck(message="resumed")

    @resume.validator
    def _check_resume(self, req: io.ResumeRequest) -> None:
        self._refuse_if_done()
        deciding = [p.service for p in self.progress.values() if p.waiting_for == "decision"]
        if not self.paused and not deciding:
            raise ValueError("nothing to resume: the upgrade is neither paused nor waiting for a decision")

    @workflow.update
    async def approve(self, req: io.ApproveRequest) -> io.ControlAck:
        self.approved.add(req.gate)
        await self._forward("approve", req.gate)
        return io.ControlAck(message=f"gate {req.gate} approved")

    @approve.validator
    def _check_approve(self, req: io.ApproveRequest) -> None:
        self._refuse_if_done()
        gates = {s.gate_name for s in self.plan.services if s.gate_name}
        deciding = {f"{p.service}/{p.step}" for p in self.progress.values() if p.waiting_for == "decision"}
        if req.gate not in gates | deciding:
            known = ", ".join(sorted(gates | deciding)) or "none"
            raise ValueError(f"unknown gate {req.gate!r}; gates of this upgrade: {known}")
        if req.gate in self.approved:
            raise ValueError(f"gate {req.gate!r} is already approved")

    @workflow.update
    async def abort(self, req: io.AbortRequest) -> io.ControlAck:
        self.abort_reason = req.reason
        self.paused = False
        self.message = f"aborting: {req.reason}"
        await self._forward("abort", req.reason)
        self._show()
        return io.ControlAck(message="aborting: services in progress roll back")

    @abort.validator
    def _check_abort(self, req: io.AbortRequest) -> None:
        self._refuse_if_done()
        if not req.reason.strip():
            raise ValueError("give a reason: it is recorded in the upgrade's history")
        if self.abort_reason is not None:
            raise ValueError(f"already aborting: {self.abort_reason}")

    def _refuse_if_done(self) -> None:
        if self.outcome is not None:
            raise ValueError(f"the upgrade has ended ({self.outcome})")

    async def _forward(self, signal: str, *args: str) -> None:
        running = [h for name, h in self.children.items() if self.progress[name].state not in _FINAL]
        await asyncio.gather(*(h.signal(signal, *args) if args else h.signal(signal) for h in running))

    # --- the run -----------------------------------------------------------------------------------
    @workflow.run
    async def run(self, inp: io.UpgradeInput) -> io.UpgradeReport:
        self.plan: UpgradePlan = inp.plan
        self.waves = order.waves(self.plan.services)
        self.approved.update(inp.approved_gates)
        self.progress = {s.name: io.ServiceProgress(service=s.name) for s in self.plan.services}
        started = workflow.now()
        workflow.upsert_search_attributes(
            [
                visibility.CLOUD.value_set(self.plan.cloud.name),
                visibility.RELEASE.value_set(self._release),
                visibility.PHASE.value_set("preflight"),
            ]
        )
        self._show()
        report = io.UpgradeReport(
            plan=self.plan.metadata.name,
            cloud=self.plan.cloud.name,
            release_from=self.plan.release.from_,
            release_to=self.plan.release.to,
            outcome="succeeded",
            started_at=started.isoformat(),
        )
        preflight = Recorder("(plan)", self.plan.policy)
        outcome, message = "succeeded", ""
        try:
            await self._preflight(preflight)
        except StepFailed as f:
            outcome, message = "failed", f"pre-flight: {f} (nothing was changed)"
        results: list[io.ServiceResult] = []
        if outcome == "succeeded":
            self._set_phase("upgrading")
            outcome, message, results = await self._services()
        self.outcome, self.message = outcome, message or f"{self.plan.cloud.name} upgraded to {self.plan.release.to}"
        self._set_phase("done")
        report = report.model_copy(
            update={
                "outcome": outcome,
                "message": self.message,
                "services": results,
                "preflight": preflight.records,
                "ended_at": workflow.now().isoformat(),
            }
        )
        self._show()
        if outcome != "succeeded":
            raise ApplicationError(self.message, report, type=OUTCOME_ERROR[outcome], non_retryable=True)
        return report

    async def _preflight(self, rec: Recorder) -> None:
        """Fail fast, before anything changes: every workload exists, every endpoint answers."""
        target = self.plan.cloud.kubernetes
        for svc in self.plan.services:
            if self.abort_reason:
                raise StepFailed("preflight", f"aborted: {self.abort_reason}", "aborted")
            refs = [io.WorkloadRef(kind=w.kind, name=w.name, container=w.container) for w in svc.workloads]
            r = rec.start("preflight", f"{svc.name}: workloads")
            try:
                images = await rec.call(
                    "preflight",
                    io.K8S_READ_IMAGES,
                    io.ReadImagesInput(target=target, workloads=refs),
                    io.ReadImagesResult,
                    summary=f"pre-flight: {svc.name} workloads",
                )
                missing = [f"{i.kind}/{i.name} (container {i.container})" for i in images.images if not i.found]
                if missing:
                    raise StepFailed(
                        "preflight",
                        f"{svc.name}: not found in namespace {target.namespace}: {', '.join(missing)}",
                        "WorkloadNotFound",
                    )
                for check in (c for c in svc.checks if c.kind == "endpoint"):
                    arg = io.CheckInput(
                        service=svc.name, cloud=self.plan.cloud.openstack.cloud, check=check, stage="pre", target=target
                    )
                    res = await rec.call(
                        "preflight",
                        io.CHECKS_RUN,
                        arg,
                        io.CheckResult,
                        summary=f"pre-flight: {svc.name} {check.service_type} endpoint",
                    )
                    if res.status != "pass":
                        raise StepFailed(
                            "preflight",
                            f"{svc.name}: {check.service_type} endpoint check {res.status}: {res.message}",
                            "check-fail",
                        )
            except StepFailed as f:
                rec.finish(r, "failed", str(f))
                raise
            rec.finish(r, "done")

    async def _services(self) -> tuple[str, str, list[io.ServiceResult]]:
        results: list[io.ServiceResult] = []
        for wave in self.waves:
            if self.paused:
                await workflow.wait_condition(lambda: not self.paused or self.abort_reason is not None)
            if self.abort_reason:
                return "aborted", f"aborted before {', '.join(wave)}: {self.abort_reason}", results
            workflow.upsert_search_attributes([visibility.SERVICE.value_set(wave)])
            results += await asyncio.gather(*(self._service(name) for name in wave))
            bad = [r for r in results if r.outcome != "succeeded"]
            if bad:
                worst = next((r for r in bad if r.outcome == "failed"), bad[0])
                return worst.outcome, f"{worst.service}: {worst.message}", results
        return "succeeded", "", results

    async def _service(self, name: str) -> io.ServiceResult:
        upgrade_id = workflow.info().workflow_id
        handle = await workflow.start_child_workflow(
            ServiceUpgradeWorkflow.run,
            io.ServiceUpgradeInput(
                plan=self.plan, service=name, upgrade_id=upgrade_id, approved_gates=sorted(self.approved)
            ),
            id=f"{upgrade_id}/{name}",
            static_summary=f"{name}: {self.plan.release.from_} → {self.plan.release.to}",
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(visibility.CLOUD, self.plan.cloud.name),
                    SearchAttributePair(visibility.RELEASE, self._release),
                ]
            ),
        )
        self.children[name] = handle
        if self.paused:
            await handle.signal("pause")
        try:
            return await handle
        except ChildWorkflowError as e:
            return io.ServiceResult(service=name, outcome="failed", message=f"service workflow failed: {e.cause or e}")

    @property
    def _release(self) -> str:
        return f"{self.plan.release.from_}->{self.plan.release.to}"

    def _set_phase(self, phase: str) -> None:
        self.phase = phase
        workflow.upsert_search_attributes([visibility.PHASE.value_set(phase)])

    def _show(self) -> None:
        workflow.set_current_details(render_details(self.plan, self.phase, self.progress, self.message))


_FINAL = {"succeeded", "rolled-back", "failed", "aborted"}
