"""Upgrade: a whole plan on one cloud — pre-flight, services in dependency order, the report.

The workflow id is ``upgrade/<cloud>``: Temporal refuses a second running workflow with that id,
which makes it the per-cloud lock. Services run as child workflows (``upgrade/<cloud>/<service>``,
one history each, visible on their own in the UI); services of one wave run in parallel.

Who knows what: each service workflow keeps its own progress (its ``status`` query) and takes the
decisions that belong to it (approve its gate or an inconclusive check, resume a failed step) as
its own validated updates. This workflow knows the waves, which children started and how each
ended — that is its ``status`` and its current details — and keeps the upgrade-wide commands
(pause, resume a paused upgrade, abort) as validated updates that it forwards to the running
children. Nothing travels from child to parent but the child's result, so a service's progress
adds no event to the upgrade's history (readers query the children: cliapp.progress).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from temporalio import workflow
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ApplicationError, ChildWorkflowError, FailureError

with workflow.unsafe.imports_passed_through():
    from model import errors, io, order, visibility
    from model.plan import UpgradePlan
    from workflows.adapters import HelmAdapter, adapter_for
    from workflows.interruptions import through_cancellation
    from workflows.ledger import LEDGER_PATCH, entries_from, reconcile
    from workflows.progress import render_details
    from workflows.service import ServiceUpgradeWorkflow, plan_steps
    from workflows.steps import ADMIT_PATCH, Recorder, StepFailed


@workflow.defn(name="Upgrade")
class UpgradeWorkflow:
    @workflow.init
    def __init__(self, inp: io.UpgradeInput) -> None:
        self.plan: UpgradePlan = inp.plan
        self.plan_file = inp.plan_file
        self.waves = order.waves(self.plan.services)
        self.approved: set[str] = set(inp.approved_gates)  # pre-approved at start, passed to the children
        self.phase = "preflight"
        self.paused = False
        self.abort_reason: str | None = None
        self.services = {
            s.name: io.ServiceProgress(service=s.name, steps_total=len(plan_steps(s))) for s in self.plan.services
        }
        self.children: dict[str, workflow.ChildWorkflowHandle[ServiceUpgradeWorkflow, io.ServiceResult]] = {}
        self.outcome: io.Outcome | None = None
        self.message = ""
        self.ledger_notes: list[str] = []  # what the pre-flight found in the ledger and the cloud

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
            services=list(self.services.values()),
            gates={s.name: s.gate_name for s in self.plan.services if s.gate_name},
            outcome=self.outcome,
            message=self.message,
        )

    @workflow.update
    async def pause(self, req: io.PauseRequest) -> io.ControlAck:
        self.paused = True
        self.message = f"paused{' by ' + req.by if req.by else ''}{': ' + req.reason if req.reason else ''}"
        self._show()
        await self._forward(ServiceUpgradeWorkflow.pause)
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
        self._show()
        await self._forward(ServiceUpgradeWorkflow.unpause)
        return io.ControlAck(message="resumed")

    @resume.validator
    def _check_resume(self, req: io.ResumeRequest) -> None:
        self._refuse_if_done()
        if not self.paused:
            raise ValueError("nothing to resume: the upgrade is not paused")

    @workflow.update
    async def abort(self, req: io.AbortRequest) -> io.ControlAck:
        await self._abort(req.reason)
        return io.ControlAck(
            message="aborting: services in progress roll back (a rollback already running goes on to its end)"
        )

    @abort.validator
    def _check_abort(self, req: io.AbortRequest) -> None:
        self._refuse_if_done()
        if not req.reason.strip():
            raise ValueError("give a reason: it is recorded in the upgrade's history")
        if self.abort_reason is not None:
            raise ValueError(f"already aborting: {self.abort_reason}")

    async def _abort(self, reason: str) -> None:
        """Stop: no new service starts, the running ones roll back (the abort update, or a Cancel)."""
        if self.abort_reason is not None:
            return
        self.abort_reason = reason
        self.paused = False
        self.message = f"aborting: {reason}"
        self._show()
        await self._forward(ServiceUpgradeWorkflow.abort, reason)

    async def _cancelled(self) -> None:
        await self._abort("cancelled (Temporal Cancel of the upgrade)")

    # --- a parent's commands (the Fleet's, workflows/fleet.py) -------------------------------------
    # Signals: a workflow cannot send an update to another. The fleet validated the operator's
    # command already; here each is idempotent and ignored when it no longer applies (the upgrade
    # has ended, is already paused or aborting), as the service workflows take the forwarded ones.
    @workflow.signal
    async def parent_pause(self, reason: str) -> None:
        if self.outcome is not None or self.paused or self.abort_reason is not None:
            return
        self.paused = True
        self.message = f"paused by its fleet{': ' + reason if reason else ''}"
        self._show()
        await self._forward(ServiceUpgradeWorkflow.pause)

    @workflow.signal
    async def parent_resume(self) -> None:
        if self.outcome is not None or not self.paused:
            return
        self.paused = False
        self.message = ""
        self._show()
        await self._forward(ServiceUpgradeWorkflow.unpause)

    @workflow.signal
    async def parent_abort(self, reason: str) -> None:
        if self.outcome is None:
            await self._abort(f"fleet: {reason}")

    def _refuse_if_done(self) -> None:
        if self.outcome is not None:
            raise ValueError(f"the upgrade has ended ({self.outcome})")

    async def _forward(self, signal: Callable[..., None], *args: str) -> None:
        """Tell the running services about an upgrade-wide command.

        Signals, not updates: a workflow cannot send an update to another workflow, and the
        operator's update was validated here already; each of these signals is idempotent in the
        child. A child that ends while the signal travels cannot take it, and needs it no more:
        that failure is ignored, any other is raised.
        """
        running = [h for name, h in self.children.items() if self.services[name].state == "running"]
        sent = await asyncio.gather(*(h.signal(signal, args=list(args)) for h in running), return_exceptions=True)
        for result in sent:
            if isinstance(result, BaseException) and not isinstance(result, FailureError):
                raise result

    # --- the run -----------------------------------------------------------------------------------
    @workflow.run
    async def run(self, inp: io.UpgradeInput) -> io.UpgradeReport:
        # A Temporal Cancel is an abort: the run goes on, shielded, and ends with its report.
        return await through_cancellation(self._run(), self._cancelled)

    async def _run(self) -> io.UpgradeReport:
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
        outcome: io.Outcome = "succeeded"
        message = ""
        try:
            await self._preflight(preflight)
        except StepFailed as f:
            outcome, message = "failed", f"pre-flight: {f} (nothing was changed)"
        results: list[io.ServiceResult] = []
        if outcome == "succeeded":
            self._set_phase("upgrading")
            outcome, message, results = await self._services()
        if results and workflow.patched(LEDGER_PATCH):
            await self._record(preflight, outcome, results)
        self.outcome, self.message = outcome, message or f"{self.plan.cloud.name} upgraded to {self.plan.release.to}"
        self._set_phase("done")
        report = report.model_copy(
            update={
                "outcome": outcome,
                "message": self.message,
                "services": results,
                "preflight": preflight.records,
                "ended_at": workflow.now().isoformat(),
                "ledger": self.ledger_notes,
            }
        )
        self._show()
        await workflow.wait_condition(workflow.all_handlers_finished)
        if outcome != "succeeded":
            raise ApplicationError(self.message, report, type=errors.OUTCOME_ERROR[outcome], non_retryable=True)
        return report

    async def _preflight(self, rec: Recorder) -> None:
        """Fail fast, before anything changes: the worker admits the plan, every workload exists,
        every endpoint answers."""
        if workflow.patched(ADMIT_PATCH):
            await self._admit(rec)
        target = self.plan.cloud.kubernetes
        for svc in self.plan.services:
            if self.abort_reason:
                raise StepFailed("preflight", f"aborted: {self.abort_reason}", errors.ABORTED)
            adapter = adapter_for(svc, target, self.plan.policy)
            r = rec.start("preflight", f"{svc.name}: workloads")
            try:
                observe = adapter.observe()
                images = await rec.call(
                    "preflight",
                    observe.activity,
                    observe.arg,
                    io.ReadImagesResult,
                    summary=f"pre-flight: {svc.name} workloads",
                )
                missing = [f"{i.kind}/{i.name} (container {i.container})" for i in images.images if not i.found]
                if missing:
                    raise StepFailed(
                        "preflight",
                        f"{svc.name}: not found in namespace {target.namespace}: {', '.join(missing)}",
                        errors.WORKLOAD_NOT_FOUND,
                    )
                owners = [f"{i.kind}/{i.name}: {i.owner or 'nothing'}" for i in images.images]
                refused = [why for i in images.images if (why := adapter.refusal(i))]
                if refused:
                    raise StepFailed("preflight", f"{svc.name}: {'; '.join(refused)}", errors.WORKLOAD_OWNED)
                if isinstance(adapter, HelmAdapter):
                    await self._release_ready(rec, adapter)
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
                            errors.CHECK_FAIL,
                        )
            except StepFailed as f:
                rec.finish(r, "failed", str(f))
                raise
            rec.finish(r, "done", f"{svc.name}: workloads owned by: {'; '.join(owners)}")
        if not self.abort_reason and workflow.patched(LEDGER_PATCH):
            await self._ledger_preflight(rec)

    async def _admit(self, rec: Recorder) -> None:
        """The worker re-validates the plan against its own configuration (activities/admission.py):
        the caller of start_workflow is not trusted to have run the CLI's validation."""
        try:
            await rec.call(
                "preflight",
                io.PLAN_ADMIT,
                io.AdmitInput(plan=self.plan, plan_file=self.plan_file),
                io.Admitted,
                summary="pre-flight: the worker re-validates the plan",
            )
        except StepFailed as f:  # a refusal is the pre-flight's only record (an admission adds none)
            rec.finish(rec.start("preflight", "plan: admitted by the worker"), "failed", str(f))
            raise

    async def _ledger_preflight(self, rec: Recorder) -> None:
        """What the last upgrades left pending, from the ledger *and* the cloud (the cloud wins when
        they disagree, and the report says so). Refused while online data migrations are unfinished."""
        cloud = self.plan.cloud.name
        r = rec.start("preflight", "ledger: what earlier upgrades left pending")
        try:
            read = await rec.call(
                "preflight",
                io.LEDGER_READ,
                io.LedgerReadInput(cloud=cloud),
                io.LedgerRead,
                summary=f"pre-flight: the ledger of {cloud}",
            )
            ledger = read.state if read.found else None
            checked = await rec.call(
                "preflight",
                io.LEDGER_CHECK_CLOUD,
                io.CloudCheckInput(plan=self.plan, ledger=ledger),
                io.CloudCheck,
                summary=f"pre-flight: online migrations and schema of {', '.join(s.name for s in self.plan.services)}",
            )
        except StepFailed as f:
            rec.finish(r, "failed", str(f))
            raise
        seen = reconcile(self.plan, ledger, checked)
        self.ledger_notes = [*seen.disagreements, *seen.notes]
        if seen.disagreements:
            # the ledger learns what the cloud said (a failure to record does not stop the upgrade)
            entries = [e for e in seen.entries.values() if e.source == "cloud"]
            correction = io.LedgerRecord(
                cloud=cloud,
                upgrade_id=workflow.info().workflow_id,
                run_id=workflow.info().run_id,
                outcome="preflight",
                entries=entries,
                recorded_at=workflow.now().isoformat(),
                source="cloud",
            )
            try:
                await rec.call(
                    "preflight",
                    io.LEDGER_RECORD,
                    correction,
                    io.LedgerAck,
                    summary=f"ledger of {cloud}: the cloud's word",
                )
            except StepFailed as f:
                self.ledger_notes.append(f"the ledger was not corrected: {f}")
        detail = "; ".join(self.ledger_notes) or "no service in the plan"
        if seen.refusals:
            why = "; ".join(seen.refusals)
            rec.finish(r, "failed", f"{why} [{detail}]")
            raise StepFailed("preflight", f"refused: {why}", errors.UNFINISHED_MIGRATIONS)
        rec.finish(r, "done", f"ledger{' (none yet)' if ledger is None else ''}: {detail}")

    async def _record(self, preflight: Recorder, outcome: io.Outcome, results: list[io.ServiceResult]) -> None:
        """The ledger keeps what this upgrade left each service it touched (a failure to record is
        reported, it does not change the upgrade's outcome: the next pre-flight checks the cloud)."""
        info = workflow.info()
        record = io.LedgerRecord(
            cloud=self.plan.cloud.name,
            upgrade_id=info.workflow_id,
            run_id=info.run_id,
            release_from=self.plan.release.from_,
            release_to=self.plan.release.to,
            outcome=outcome,
            entries=entries_from(self.plan, results, info.workflow_id, info.run_id, workflow.now().isoformat()),
            recorded_at=workflow.now().isoformat(),
        )
        rec = Recorder("(ledger)", self.plan.policy)
        try:
            await rec.call(
                "ledger", io.LEDGER_RECORD, record, io.LedgerAck, summary=f"ledger of {self.plan.cloud.name}: record"
            )
            self.ledger_notes.append(f"recorded: {' / '.join(_debts(record)) or 'nothing left pending'}")
        except StepFailed as f:
            self.ledger_notes.append(f"not recorded in the ledger: {f}")

    async def _release_ready(self, rec: Recorder, adapter: HelmAdapter) -> None:
        """The release exists and its last revision is deployed (a pending one a killed worker left
        is recovered by helm.upgrade itself; a failed one is the operator's to look at first)."""
        call = adapter.status()
        status = await rec.call(
            "preflight", call.activity, call.arg, io.HelmStatus, summary=f"pre-flight: {call.summary}"
        )
        helm, where = adapter.helm, status.namespace or self.plan.cloud.kubernetes.namespace
        if not status.found:
            raise StepFailed(
                "preflight",
                f"{adapter.svc.name}: Helm release {helm.release} not found in namespace {where}"
                " (fix: services[].helm.release names the release `helm list -n NAMESPACE` shows)",
                errors.WORKLOAD_NOT_FOUND,
            )
        if status.status == "failed":
            raise StepFailed(
                "preflight",
                f"{adapter.svc.name}: Helm release {helm.release} revision {status.revision} is failed"
                f" (fix: look at `helm history {helm.release} -n {where}`, then roll back or upgrade it by hand)",
                errors.HELM_FAILED,
            )

    async def _services(self) -> tuple[io.Outcome, str, list[io.ServiceResult]]:
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
            id=io.service_workflow_id(upgrade_id, name),
            # Terminating the upgrade cancels its services, which is an abort: they compensate.
            parent_close_policy=workflow.ParentClosePolicy.REQUEST_CANCEL,
            static_summary=f"{name}: {self.plan.release.from_} → {self.plan.release.to}",
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(visibility.CLOUD, self.plan.cloud.name),
                    SearchAttributePair(visibility.RELEASE, self._release),
                    SearchAttributePair(visibility.SERVICE, [name]),
                ]
            ),
        )
        self.children[name] = handle
        self._known(name, state="running")
        # A command that came while the child was being started was not forwarded to it.
        if self.abort_reason is not None:
            await handle.signal(ServiceUpgradeWorkflow.abort, self.abort_reason)
        elif self.paused:
            await handle.signal(ServiceUpgradeWorkflow.pause)
        try:
            result = await handle
        except ChildWorkflowError as e:
            result = io.ServiceResult(
                service=name, outcome="failed", message=f"service workflow failed: {e.cause or e}"
            )
        done = {r.step for r in result.steps if r.status in ("done", "skipped")}
        steps_done = sum(1 for step in plan_steps(self.plan.service(name)) if step in done)
        self._known(name, state=result.outcome, steps_done=steps_done, message=result.message)
        return result

    @property
    def _release(self) -> str:
        return f"{self.plan.release.from_}->{self.plan.release.to}"

    def _set_phase(self, phase: str) -> None:
        self.phase = phase
        workflow.upsert_search_attributes([visibility.PHASE.value_set(phase)])
        self._show()

    def _known(self, name: str, **changes: object) -> None:
        """What this workflow learnt of a service: its child started, or how it ended."""
        known = self.services[name]
        self.services[name] = known.model_copy(update={**changes, "seq": known.seq + 1})
        self._show()

    def _show(self) -> None:
        workflow.set_current_details(render_details(self.plan, self.phase, self.waves, self.services, self.message))


def _debts(record: io.LedgerRecord) -> list[str]:
    return [
        f"{e.service}: {what}"
        for e in record.entries
        for what in (["online data migrations unfinished"] if e.online_pending else [])
        + (["expanded, not contracted"] if e.expanded_not_contracted else [])
    ]
