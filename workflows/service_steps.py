"""The steps of a service upgrade and their compensations, for ServiceUpgradeWorkflow.

A mixin so that each file reads as one thing: workflows/service.py holds the workflow's interface
(its input, the operator's signals, updates and query) and the step loop with its failure policy;
this module holds what each step does (which activity, with which input and timeout), what undoes
it, and how the operator is asked when a step or a compensation fails. Deterministic code only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel

    from model import errors, io
    from model.plan import Check, Database, KubeTarget, Service, TempestCheck, UpgradePlan
    from workflows.adapters import Applied, Call, WorkloadAdapter, adapter_for
    from workflows.decisions import Decisions, _Accepted
    from workflows.steps import Recorder, StepFailed

R = TypeVar("R", bound=BaseModel)
ALREADY_EXPANDED = ("up-to-date", "migrate-needed", "contract-needed")  # check states with nothing to expand


class ServiceSteps(Decisions):
    """State the steps share (set by ServiceUpgradeWorkflow.__init__) and the steps themselves."""

    plan: UpgradePlan
    svc: Service
    upgrade_id: str
    approved: set[str]
    abort_reason: str | None
    resumes: int
    deciding: StepFailed | None  # the failure the operator is asked about
    rec: Recorder
    result: io.ServiceResult
    progress: io.ServiceProgress
    before: Applied  # what the adapter read before the roll (the undo needs it) and the revisions made
    # The change id of the quiesce in effect, set *before* the scale-down so that a quiesce that
    # failed half-way is still scaled back (ScaleInput.restore reads what it recorded).
    quiesced: str | None = None
    expanded_before: str = ""  # the check's state when the schema was already expanded: expand skipped

    # --- steps --------------------------------------------------------------------------------------
    @property
    def _target(self) -> KubeTarget:
        return self.plan.cloud.kubernetes

    @property
    def adapter(self) -> WorkloadAdapter:
        """How this service's workloads are changed: patched, or through their Helm release."""
        return adapter_for(self.svc, self._target, self.plan.policy)

    def _record(self, out: BaseModel) -> None:
        """Keep what an adapter call made: a release revision goes into the report."""
        if isinstance(out, io.HelmChange):
            self.before.changes.append(out)
            self.result = self.result.model_copy(update={"helm": [*self.result.helm, out]})

    async def _run(self, step: str, call: Call, **kw: Any) -> BaseModel:
        """An adapter's call as a recorded forward step."""
        out = await self._step(
            step, call.activity, call.arg, call.result_type, call.summary, step_timeout=call.step_timeout, **kw
        )
        self._record(out)
        return out

    @property
    def _db(self) -> Database:
        """The service's database (only steps that exist for a service with one ask for it)."""
        assert self.svc.database is not None, "a database step of a service without a database"
        return self.svc.database

    @property
    def _snapshot_taken(self) -> io.Snapshot:
        assert self.result.snapshot is not None, "a step that needs the snapshot ran before it was taken"
        return self.result.snapshot

    def _pinned(self, snap: io.Snapshot) -> dict[str, Any]:
        """Where an activity that reads the snapshot file runs: the host that holds it (if any)."""
        if not snap.task_queue:
            return {}
        return {"task_queue": snap.task_queue, "schedule_to_start": self.plan.policy.snapshot_host_timeout}

    async def _gate(self) -> None:
        gate = self.svc.gate_name or ""
        rec = self.rec.start("gate", f"waiting for `stackhop approve {self.upgrade_id} {gate}`")
        self._report(state="waiting", waiting_for=gate)
        try:
            await workflow.wait_condition(
                lambda: gate in self.approved or self.abort_reason is not None,
                timeout=timedelta(seconds=self.plan.policy.gate_timeout),
            )
        except TimeoutError:
            self.rec.finish(rec, "failed", "gate timed out")
            raise StepFailed(
                "gate",
                f"gate {gate!r} was not approved within {self.plan.policy.gate_timeout}s; nothing was changed",
                errors.GATE_TIMEOUT,
            ) from None
        self._report(waiting_for=None)
        if self.abort_reason:
            self.rec.finish(rec, "failed", "aborted")
            raise StepFailed("gate", self.abort_reason, errors.ABORTED)
        self.rec.finish(rec, "done", f"approved: {gate}")

    async def _step(
        self,
        step: str,
        name: str,
        arg: BaseModel,
        result_type: type[R],
        summary: str,
        judge: Callable[[R], tuple[str, str] | None] | None = None,
        **kw: Any,
    ) -> R:
        """Run one recorded step. ``judge(result)`` returns (kind, message) when an answer that
        arrived fine still means failure (a check that says "fail", a snapshot that did not verify)."""
        rec = self.rec.start(step, summary)
        try:
            out = await self.rec.call(step, name, arg, result_type, summary=summary, **kw)
            verdict = judge(out) if judge else None
            if verdict:
                raise StepFailed(step, verdict[1], verdict[0])
        except StepFailed as f:
            self.rec.finish(rec, "failed", f.detail)
            raise
        self.rec.finish(rec, "done")
        return out

    async def _snapshot(self) -> None:
        db = self._db
        snap = await self._step(
            "snapshot",
            io.DB_SNAPSHOT,
            io.SnapshotInput(upgrade_id=self.upgrade_id, service=self.svc.name, database=db, target=self._target),
            io.Snapshot,
            f"snapshot database {db.name}",
            step_timeout=self.plan.policy.step_timeout,
        )
        self.result = self.result.model_copy(update={"snapshot": snap})

    async def _verify(self) -> None:
        snap, db = self._snapshot_taken, self._db
        await self._step(
            "verify",
            io.DB_VERIFY,
            io.VerifyInput(snapshot=snap, database=db, target=self._target),
            io.VerifyResult,
            f"verify snapshot of {db.name} ({snap.sha256[:12]})",
            judge=lambda r: (
                None if r.ok else (errors.SNAPSHOT_FAILED, f"snapshot of {db.name} did not verify: {r.message}")
            ),
            **self._pinned(snap),
        )

    async def _sync(self, phase: io.MigrationPhase) -> io.MigrateResult:
        w = self.svc.workloads[0]
        arg = io.MigrateInput(
            service=self.svc.name,
            phase=phase,
            migration=self.svc.migration,
            database=self.svc.database,
            version=w.tag,
            image=w.image,
            target=self._target,
        )
        return await self._step(
            phase,
            io.MIGRATION_DB_SYNC,
            arg,
            io.MigrateResult,
            f"{self.svc.name} db sync --{phase} ({w.tag})",
        )

    async def _check_schema(self) -> None:
        check = await self._sync("check")
        if check.state in ALREADY_EXPANDED:
            # Expanded already (e.g. by an upgrade rolled back with images only): the expand is done;
            # migrate and contract still run, once.
            self.expanded_before = check.state

    async def _expand(self) -> None:
        if self.expanded_before:
            self.rec.skip("expand", f"already expanded (check: {self.expanded_before})")
            return
        await self._sync("expand")

    async def _migrate(self) -> None:
        await self._sync("migrate")

    async def _quiesce(self) -> None:
        self.quiesced = f"{workflow.info().run_id}/quiesce"  # registered before the scale-down
        call = self.adapter.quiesce(self.quiesced)
        await self._run(
            "quiesce", replace(call, summary=f"{call.summary} before the snapshot and the offline migration")
        )

    async def _offline(self) -> None:
        await self._sync("offline")

    async def _unquiesce(self, step: str = "unquiesce") -> None:
        if self.quiesced is None:
            return
        await self._run(step, self.adapter.unquiesce(self.quiesced))
        self.quiesced = None

    async def _roll(self) -> None:
        # What the undo needs is read before anything changes: the images (and the release's
        # deployed revision, under Helm).
        for call in self.adapter.prepare():
            out = await self.rec.call("roll", call.activity, call.arg, call.result_type, summary=call.summary)
            if isinstance(out, io.ReadImagesResult):
                self.before.images = out.images
                self.result = self.result.model_copy(update={"previous_images": out.images})
            elif isinstance(out, io.HelmStatus):
                self.before.release = out
        await self._run("roll", self.adapter.apply())

    async def _rollout(self) -> None:
        await self._run("rollout", self.adapter.wait())

    async def _validate(self) -> None:
        for check in self.svc.checks:
            while True:
                res = await self._check("validate", check)
                if res.status != "inconclusive":
                    break
                failure = StepFailed("validate", f"{check.kind} check inconclusive: {res.message}", errors.INCONCLUSIVE)
                try:
                    if not await self._decide_retry(failure):
                        raise StepFailed("validate", self.abort_reason or "inconclusive", errors.ABORTED)
                except _Accepted:
                    break

    async def _check(self, step: str, check: Check) -> io.CheckResult:
        """One check; records its result; raises StepFailed when it says "fail"."""
        arg = io.CheckInput(
            service=self.svc.name,
            cloud=self.plan.cloud.openstack.cloud,
            check=check,
            target=self._target,
            version=self.svc.workloads[0].tag,
        )
        tempest = isinstance(check, TempestCheck)

        def judge(r: io.CheckResult) -> tuple[str, str] | None:
            self.result = self.result.model_copy(update={"checks": [*self.result.checks, r]})
            if tempest:
                self.result = self.result.model_copy(update={"tempest": r})
            if r.status == "fail":
                return errors.CHECK_FAIL, f"{check.kind} check failed: {r.message}"
            return None

        summary = (
            f"tempest {check.regex}" if isinstance(check, TempestCheck) else f"{check.kind} check of {self.svc.name}"
        )
        result_type: type[io.CheckResult] = io.TempestResult if tempest else io.CheckResult
        return await self._step(
            step,
            io.TEMPEST_RUN if tempest else io.CHECKS_RUN,
            arg,
            result_type,
            summary,
            judge=judge,
        )

    async def _contract(self) -> None:
        # The point of no return (model/recipe.py): from here the old release cannot run.
        self.progress = self.progress.model_copy(update={"past_point_of_no_return": True})
        await self._sync("contract")

    async def _postcheck(self) -> None:
        for check in self.svc.checks:
            if check.kind == "endpoint" and (await self._check("postcheck", check)).status != "pass":
                raise StepFailed("postcheck", "endpoint check inconclusive after the contract", errors.CHECK_FAIL)

    # --- progress -----------------------------------------------------------------------------------
    def _report(self, **changes: Any) -> None:
        """The new state, for the ``status`` query and the UI's current details. No event is written
        (details travel with the next workflow task completion); nor is a search attribute upserted
        per step, which would cost an event each: the step is in the details and the query."""
        self.progress = self.progress.model_copy(update={**changes, "seq": self.progress.seq + 1})
        workflow.set_current_details(
            f"**{self.progress.service}** — {self.progress.state} {self.progress.step}"
            f" ({self.progress.steps_done}/{self.progress.steps_total})\n\n{self.progress.message}"
        )
