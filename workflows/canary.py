"""Canary: upgrade a canary cloud, judge it, and put it back on its baseline release.

Started by a Temporal Schedule (`stackhop canary create`). The upgrade itself is the ordinary
Upgrade workflow (as a child, so the per-cloud lock still holds). Afterwards the canary is
*always* returned to its baseline, so the next scheduled run is a real upgrade again: an upgrade
rolled back by a restore already is; a successful one, or one rolled back by images only (which
keeps the expanded schema), is reset from the verified snapshot it took, which is safe here only
because a canary's data is disposable. A failed canary ends the workflow failed, which makes
the schedule pause (pause-on-failure) until an operator looks.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.exceptions import ApplicationError, ChildWorkflowError

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from model import errors, io
    from model.plan import UpgradePlan
    from workflows.adapters import Call, adapter_for
    from workflows.steps import Recorder, StepFailed
    from workflows.upgrade import UpgradeWorkflow


@workflow.defn(name="Canary")
class CanaryWorkflow:
    def __init__(self) -> None:
        self.state = "upgrading"

    @workflow.query
    def status(self) -> str:
        return self.state

    @workflow.run
    async def run(self, inp: io.CanaryInput) -> io.CanaryResult:
        plan = inp.plan
        gates = [s.gate_name for s in plan.services if s.gate_name]
        workflow.set_current_details(f"canary **{inp.name}**: upgrading {plan.cloud.name}")
        report = await self._upgrade(plan, inp.name, gates)
        passed = report is not None and report.outcome == "succeeded"
        self.state = "resetting"
        workflow.set_current_details(f"canary **{inp.name}**: {'passed' if passed else 'failed'}; back to baseline")
        rec = Recorder("(canary)", plan.policy)
        reset_ok = True
        if report is not None:  # _reset skips each service a restore already put back
            try:
                await self._reset(plan, report, rec)
            except StepFailed as f:
                reset_ok = False
                rec.records.append(io.StepRecord(service="(canary)", step="reset", status="failed", detail=str(f)))
        self.state = "done"
        result = io.CanaryResult(
            name=inp.name,
            passed=passed and reset_ok,
            report=report,
            reset=rec.records,
            message=(report.message if report else "the upgrade did not produce a report")
            + ("" if reset_ok else "; the canary could NOT be reset to its baseline"),
        )
        if not result.passed:
            raise ApplicationError(
                f"canary {inp.name} failed: {result.message}", result, type=errors.CANARY_FAILED, non_retryable=True
            )
        return result

    async def _upgrade(self, plan: UpgradePlan, name: str, gates: list[str]) -> io.UpgradeReport | None:
        try:
            return await workflow.execute_child_workflow(
                UpgradeWorkflow.run,
                io.UpgradeInput(plan=plan, requested_by=f"canary {name}", approved_gates=gates),
                id=plan.workflow_id,
                static_summary=f"canary {name}: {plan.release.from_} → {plan.release.to}",
            )
        except ChildWorkflowError as e:
            cause = e.cause
            if isinstance(cause, ApplicationError) and cause.details:
                try:
                    return io.UpgradeReport.model_validate(cause.details[0])
                except ValidationError:
                    return None
            return None

    @staticmethod
    async def _call(rec: Recorder, call: Call) -> None:
        await rec.call(
            "reset",
            call.activity,
            call.arg,
            call.result_type,
            summary=f"canary reset: {call.summary}",
            step_timeout=call.step_timeout,
        )

    async def _reset(self, plan: UpgradePlan, report: io.UpgradeReport, rec: Recorder) -> None:
        """Snapshot back, previous images back, in reverse service order."""
        target = plan.cloud.kubernetes
        for svc_result in reversed(report.services):
            # A rollback by images only leaves the expanded schema in place (it loses no writes): the
            # canary's baseline also needs the snapshot back, or the next run would not expand.
            # A service its rollback restored is back already; one that never rolled its images was
            # never changed.
            if svc_result.restore is not None or not svc_result.previous_images:
                continue
            svc = plan.service(svc_result.service)
            adapter = adapter_for(svc, target, plan.policy)
            held = f"{workflow.info().run_id}/reset/{svc.name}"  # the scale-back reads what this recorded
            await self._call(rec, adapter.quiesce(held))
            # every database of the service (nova's three), each from its own snapshot
            snaps = svc_result.snapshots or ([svc_result.snapshot] if svc_result.snapshot else [])
            for snap, db in zip(snaps, svc.all_databases, strict=False):
                await rec.call(
                    "reset",
                    io.DB_RESTORE,
                    io.RestoreInput(snapshot=snap, database=db, target=target),
                    io.RestoreResult,
                    summary=f"canary reset: restore {db.name}",
                    task_queue=snap.task_queue or None,  # where the file is
                    schedule_to_start=plan.policy.snapshot_host_timeout,
                )
            back = adapter.back_to(svc_result)
            if back is not None:
                await self._call(rec, back)
            await self._call(rec, adapter.unquiesce(held))
            await self._call(rec, adapter.wait(target_images=False))
            rec.records.append(
                io.StepRecord(
                    service=svc.name,
                    step="reset",
                    status="done",
                    detail=f"back to {svc_result.previous_images[0].image}",
                )
            )
