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
from typing import Any, Literal, TypeVar

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel

    from model import errors, io
    from model.plan import Check, Database, KubeTarget, Service, TempestCheck, UpgradePlan, UpgradeStatusCheck
    from model.recipes import databases, recipe_for
    from workflows.adapters import Applied, Call, WorkloadAdapter, adapter_for
    from workflows.decisions import Decisions, _Accepted
    from workflows.steps import Recorder, StepFailed

R = TypeVar("R", bound=BaseModel)
Stage = Literal["pre", "post"]
ALREADY_EXPANDED = ("up-to-date", "migrate-needed", "contract-needed")  # check states with nothing to expand
# check states after which a contract needs every API server stopped (neutron's has_offline_migrations;
# "unknown": the service could not be asked, so the safe answer)
OFFLINE_CONTRACT = ("offline-contract-needed", "unknown")
# How many times the online data migrations are called while they answer "more to do" (each call runs
# up to migration.max_rounds rounds of 1000 rows) before the step fails and waits for a forward fix.
ONLINE_CALLS = 20


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
    # The service's own recipe (model/recipes/), or the generic one of its mode for a run whose
    # history started before the per-service recipes (workflows/service.py decides, once).
    per_service: bool = True
    contract_offline: bool = False  # the check said the contract needs every API server stopped

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
    def _dbs(self) -> list[Database]:
        """The service's databases (only steps that exist for a service with one ask for them)."""
        dbs = databases(self.svc)
        assert dbs, "a database step of a service without a database"
        return dbs

    @property
    def _snapshots_taken(self) -> list[tuple[io.Snapshot, Database]]:
        """Each database with its snapshot, in the plan's order (all of them taken by the snapshot step)."""
        assert self.result.snapshot is not None, "a step that needs the snapshot ran before it was taken"
        snaps = self.result.snapshots or [self.result.snapshot]
        return list(zip(snaps, self._dbs, strict=True))

    @property
    def _past_what(self) -> str:
        ponr = recipe_for(self.svc, self.per_service).point_of_no_return or "contract"
        if not self._past_ponr and any(r.step == "dataplane" for r in self.rec.records):
            return "the data plane upgrade started: it is not undone"
        return "past the contract" if ponr == "contract" else f"past the point of no return ({ponr})"

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
        """Every database of the service, one after the other (nova: nova_api, nova_cell0, nova): the
        step is done when all of them are, and a restore puts all of them back."""
        snaps = []
        for db in self._dbs:
            snap = await self._step(
                "snapshot",
                io.DB_SNAPSHOT,
                io.SnapshotInput(upgrade_id=self.upgrade_id, service=self.svc.name, database=db, target=self._target),
                io.Snapshot,
                f"snapshot database {db.name}",
                step_timeout=self.plan.policy.step_timeout,
            )
            snaps.append(snap)
        several = {"snapshots": snaps} if len(snaps) > 1 else {}
        self.result = self.result.model_copy(update={"snapshot": snaps[0], **several})

    async def _verify(self) -> None:
        for snap, db in self._snapshots_taken:

            def judge(r: io.VerifyResult, name: str = db.name) -> tuple[str, str] | None:
                return None if r.ok else (errors.SNAPSHOT_FAILED, f"snapshot of {name} did not verify: {r.message}")

            await self._step(
                "verify",
                io.DB_VERIFY,
                io.VerifyInput(snapshot=snap, database=db, target=self._target),
                io.VerifyResult,
                f"verify snapshot of {db.name} ({snap.sha256[:12]})",
                judge=judge,
                **self._pinned(snap),
            )

    def _migrate_input(self, phase: io.MigrationPhase) -> io.MigrateInput:
        w = self.svc.workloads[0]
        return io.MigrateInput(
            service=self.svc.name,
            phase=phase,
            migration=self.svc.migration,
            database=self.svc.database,
            version=w.tag,
            image=w.image,
            target=self._target,
        )

    async def _sync(self, phase: io.MigrationPhase) -> io.MigrateResult:
        return await self._step(
            phase,
            io.MIGRATION_DB_SYNC,
            self._migrate_input(phase),
            io.MigrateResult,
            f"{self.svc.name} db sync --{phase} ({self.svc.workloads[0].tag})",
        )

    async def _check_schema(self) -> None:
        check = await self._sync("check")
        if check.state in ALREADY_EXPANDED:
            # Expanded already (e.g. by an upgrade rolled back with images only): the expand is done;
            # migrate and contract still run, once.
            self.expanded_before = check.state
        self.contract_offline = check.state in OFFLINE_CONTRACT

    async def _status(self) -> None:
        """`<service>-status upgrade check` of the target release, before anything changes (the
        plan's own upgrade-status check's command if it lists one): a failure stops here, nothing
        was changed; an inconclusive answer asks the operator, as validation does."""
        check = next((c for c in self.svc.checks if isinstance(c, UpgradeStatusCheck)), None)
        await self._judged("status", check or UpgradeStatusCheck(kind="upgrade-status"), stage="pre")

    async def _online(self) -> None:
        """Online data migrations, once every workload runs the new release: called again while the
        tool answers "more to do" (its rounds ran out with rows left), at most ONLINE_CALLS times."""
        tag = self.svc.workloads[0].tag
        rec = self.rec.start("online", f"{self.svc.name} online data migrations ({tag})")
        rounds = 0
        try:
            for call in range(1, ONLINE_CALLS + 1):
                out = await self.rec.call(
                    "online",
                    io.MIGRATION_DB_SYNC,
                    self._migrate_input("online"),
                    io.MigrateResult,
                    summary=f"{self.svc.name} online data migrations ({tag}), call {call}",
                )
                rounds += out.rounds
                if out.state != "more-to-do":
                    break
            else:
                raise StepFailed(
                    "online",
                    f"{self.svc.name} online data migrations still had work after {ONLINE_CALLS} calls ({rounds}"
                    " rounds): look at the tool's output, fix, then resume",
                    errors.MIGRATION_FAILED,
                )
        except StepFailed as f:
            self.rec.finish(rec, "failed", f.detail)
            raise
        self.rec.finish(rec, "done", f"done after {call} call(s), {rounds} round(s)")

    async def _unpin(self) -> None:
        """The restart that lifts the RPC pin: every workload runs the new release now, and a
        service computes its pin ([upgrade_levels] compute=auto) when it starts."""
        for call in self.adapter.restart(f"{workflow.info().run_id}/unpin"):
            await self._run("unpin", replace(call, summary=f"{call.summary}: lift the RPC pin"))

    async def _stop_api(self) -> None:
        """Every API server stopped before a contract with offline migrations (neutron)."""
        if not self.contract_offline:
            self.rec.skip("stop-api", "no offline migrations pending: the contract runs while the servers serve")
            return
        self.quiesced = f"{workflow.info().run_id}/stop-api"  # registered before the scale-down
        call = self.adapter.quiesce(self.quiesced)
        await self._run("stop-api", replace(call, summary=f"{call.summary}: offline migrations pending"))

    async def _start_api(self) -> None:
        if self.quiesced is None:
            self.rec.skip("start-api", "the servers were not stopped")
            return
        await self._unquiesce("start-api")

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
            await self._judged("validate", check)

    async def _judged(self, step: str, check: Check, stage: Stage = "post") -> None:
        """One check until it judges: an inconclusive answer asks the operator (resume re-runs it,
        approve accepts it, abort rolls back)."""
        while True:
            res = await self._check(step, check, stage)
            if res.status != "inconclusive":
                break
            failure = StepFailed(step, f"{check.kind} check inconclusive: {res.message}", errors.INCONCLUSIVE)
            try:
                if not await self._decide_retry(failure):
                    raise StepFailed(step, self.abort_reason or "inconclusive", errors.ABORTED)
            except _Accepted:
                break

    async def _check(self, step: str, check: Check, stage: Stage = "post") -> io.CheckResult:
        """One check; records its result; raises StepFailed when it says "fail"."""
        arg = io.CheckInput(
            service=self.svc.name,
            cloud=self.plan.cloud.openstack.cloud,
            check=check,
            target=self._target,
            version=self.svc.workloads[0].tag,
            stage=stage,
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
        if stage == "pre":
            summary += f" with the target release ({self.svc.workloads[0].tag})"
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
        # The point of no return (model/recipes/): from here the old release cannot run (the step
        # loop set the flag already where the recipe says so; a generic recipe's contract is one).
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
        batch = f"\n\ndata plane: {self.progress.batch}" if self.progress.batch else ""
        workflow.set_current_details(
            f"**{self.progress.service}** — {self.progress.state} {self.progress.step}"
            f" ({self.progress.steps_done}/{self.progress.steps_total})\n\n{self.progress.message}{batch}"
        )
