"""ServiceUpgrade: one OpenStack service, from verified snapshot to validated new release.

Steps: gate → snapshot → verify → (check → expand → migrate | quiesce → offline) → roll → rollout
→ (unquiesce) → validate → contract → postcheck. Validation runs *before* the contract so that a
failing tempest run still has a safe way back: the contract is the point of no return, after which
the old release cannot run on the schema and restoring the snapshot would lose data written since.

On failure before the contract, depending on the plan's ``policy.on_failure``:
* rollback: compensations run in reverse (previous images back and rolled out; API quiesced, DB
  restored from the verified snapshot, API restored);
* pause: wait for the operator — resume retries the step, abort rolls back;
* fail: stop where it is.
After the contract, any failure pauses for a forward fix whatever the policy.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from model import io, visibility
    from model.plan import Service, UpgradePlan
    from workflows.steps import Recorder, StepFailed

Compensation = tuple[str, Callable[[], Awaitable[None]]]


@workflow.defn(name="ServiceUpgrade")
class ServiceUpgradeWorkflow:
    def __init__(self) -> None:
        self.paused = False
        self.abort_reason: str | None = None
        self.approved: set[str] = set()
        self.resumes = 0
        self.progress = io.ServiceProgress(service="")
        self.rec: Recorder | None = None
        self._signals: list[asyncio.Task[None]] = []
        self.skip_contract = False  # the schema was already up to date: nothing to expand or contract
        self.replicas: dict[str, int] | None = None  # replicas to restore after an offline migration
        self.previous: list[io.WorkloadImage] = []  # images before the roll, for undo

    # --- control, forwarded by the parent ------------------------------------------------------
    @workflow.signal
    def pause(self) -> None:
        self.paused = True
        self._report(state="paused")

    @workflow.signal
    def resume(self) -> None:
        self.paused = False
        self.resumes += 1

    @workflow.signal
    def approve(self, gate: str) -> None:
        self.approved.add(gate)

    @workflow.signal
    def abort(self, reason: str) -> None:
        if self.abort_reason is None:
            self.abort_reason = reason or "aborted by the operator"
            if not self.progress.past_point_of_no_return and self.rec:
                self.rec.cancel_current()

    @workflow.query
    def status(self) -> io.ServiceProgress:
        return self.progress

    # --- the run ----------------------------------------------------------------------------------
    @workflow.run
    async def run(self, inp: io.ServiceUpgradeInput) -> io.ServiceResult:
        self.plan: UpgradePlan = inp.plan
        self.svc: Service = inp.plan.service(inp.service)
        self.upgrade_id = inp.upgrade_id
        self.approved.update(inp.approved_gates)
        self.rec = Recorder(self.svc.name, self.plan.policy)
        self.result = io.ServiceResult(service=self.svc.name, outcome="succeeded")
        self.compensations: list[Compensation] = []
        self.progress = io.ServiceProgress(service=self.svc.name, state="running", steps_total=len(self._plan_steps()))
        workflow.upsert_search_attributes([visibility.SERVICE.value_set([self.svc.name])])
        outcome, message = await self._upgrade()
        self.result = self.result.model_copy(
            update={"outcome": outcome, "message": message, "steps": list(self.rec.records)}
        )
        final = {"succeeded": "succeeded", "rolled-back": "rolled-back", "aborted": "aborted"}
        self._report(state=final.get(outcome, "failed"), step="", message=message)
        await asyncio.gather(*self._signals)  # the parent sees the final state before our result
        return self.result

    def _plan_steps(self) -> list[str]:
        s, mode = self.svc, self.svc.migration.mode
        steps = ["gate"] if s.gate_name else []
        steps += ["snapshot", "verify"] if s.database else []
        steps += {"expand-contract": ["expand", "migrate"], "offline": ["quiesce", "offline"]}.get(mode, [])
        steps += ["roll", "rollout"] + (["unquiesce"] if mode == "offline" else [])
        steps += ["validate"] if s.checks else []
        steps += ["contract", "postcheck"] if mode == "expand-contract" else []
        return steps

    async def _upgrade(self) -> tuple[str, str]:
        steps: dict[str, Callable[[], Awaitable[None]]] = {
            "gate": self._gate,
            "snapshot": self._snapshot,
            "verify": self._verify,
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
        for name in self._plan_steps():
            await self._wait_unpaused()
            if self.abort_reason:
                return await self._give_up(StepFailed(name, self.abort_reason, "aborted"))
            while True:
                self._report(state="running", step=name)
                try:
                    await steps[name]()
                    break
                except StepFailed as failure:
                    if self.abort_reason:
                        failure = StepFailed(failure.step, self.abort_reason, "aborted")
                    stop_here = self.plan.policy.on_failure == "fail" and not self._past_ponr
                    if failure.kind == "gate-timeout" or (stop_here and failure.kind != "aborted"):
                        return "failed", f"{failure.step}: {failure}"
                    if failure.kind == "aborted" or not await self._decide_retry(failure):
                        return await self._give_up(failure)
            self.progress = self.progress.model_copy(update={"steps_done": self.progress.steps_done + 1})
        return "succeeded", f"{self.svc.name} upgraded to {self.plan.release.to}"

    @property
    def _past_ponr(self) -> bool:
        return self.progress.past_point_of_no_return

    async def _decide_retry(self, failure: StepFailed) -> bool:
        """True: retry the failed step. Asks the operator where policy or safety say so."""
        must_ask = self._past_ponr or self.plan.policy.on_failure == "pause" or failure.kind == "inconclusive"
        if not must_ask:
            return False
        why = "past the contract: fix forward, then resume" if self._past_ponr else "resume retries, abort rolls back"
        self._report(state="waiting", waiting_for="decision", message=f"{failure.step} failed: {failure} ({why})")
        seen = self.resumes
        accepted = f"{self.svc.name}/{failure.step}"
        await workflow.wait_condition(
            lambda: self.resumes > seen or self.abort_reason is not None or accepted in self.approved
        )
        self._report(state="running", waiting_for=None, message="")
        if accepted in self.approved and failure.kind == "inconclusive":
            self.approved.discard(accepted)
            raise _Accepted()
        return self.abort_reason is None

    async def _give_up(self, failure: StepFailed) -> tuple[str, str]:
        if self._past_ponr:
            return "failed", f"{failure.step}: {failure} (past the contract: nothing rolled back, fix forward)"
        if not self.compensations:
            outcome = "aborted" if failure.kind == "aborted" else "failed"
            return outcome, f"{failure.step}: {failure} (nothing was changed)"
        self._report(state="rolling-back", step="rollback", message=str(failure))
        for _label, undo in reversed(self.compensations):
            await undo()
        self.compensations.clear()
        outcome = "aborted" if failure.kind == "aborted" else "rolled-back"
        return outcome, f"{failure.step}: {failure} (rolled back)"

    async def _wait_unpaused(self) -> None:
        if self.paused:
            self._report(state="paused", message="paused by the operator")
            await workflow.wait_condition(lambda: not self.paused or self.abort_reason is not None)

    # --- steps --------------------------------------------------------------------------------------
    @property
    def _target(self):
        return self.plan.cloud.kubernetes

    def _refs(self) -> list[io.WorkloadRef]:
        return [io.WorkloadRef(kind=w.kind, name=w.name, container=w.container) for w in self.svc.workloads]

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
                "gate-timeout",
            ) from None
        self._report(waiting_for=None)
        if self.abort_reason:
            self.rec.finish(rec, "failed", "aborted")
            raise StepFailed("gate", self.abort_reason, "aborted")
        self.rec.finish(rec, "done", f"approved: {gate}")

    async def _step(self, step, name, arg, result_type, summary, judge=None, **kw):
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
        db = self.svc.database
        snap = await self._step(
            "snapshot",
            io.DB_SNAPSHOT,
            io.SnapshotInput(upgrade_id=self.upgrade_id, service=self.svc.name, database=db, target=self._target),
            io.Snapshot,
            f"snapshot database {db.name}",
            timeout=self.plan.policy.step_timeout,
            heartbeat=True,
        )
        self.result = self.result.model_copy(update={"snapshot": snap})

    async def _verify(self) -> None:
        snap, db = self.result.snapshot, self.svc.database
        await self._step(
            "verify",
            io.DB_VERIFY,
            io.VerifyInput(snapshot=snap, database=db, target=self._target),
            io.VerifyResult,
            f"verify snapshot of {db.name} ({snap.sha256[:12]})",
            heartbeat=True,
            judge=lambda r: None if r.ok else ("SnapshotFailed", f"snapshot of {db.name} did not verify: {r.message}"),
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
            heartbeat=True,
        )

    async def _expand(self) -> None:
        check = await self._sync("check")
        if check.state == "up-to-date":
            # Nothing will change the schema: a rollback needs no restore (and must not lose writes).
            self.skip_contract = True
            self.rec.skip("expand", "schema already up to date: nothing to migrate")
            return
        self.compensations.append(("restore", self._restore_db))
        await self._sync("expand")

    async def _migrate(self) -> None:
        if self.skip_contract:
            self.rec.skip("migrate", "nothing to migrate")
            return
        await self._sync("migrate")

    async def _quiesce(self) -> None:
        res = await self._step(
            "quiesce",
            io.K8S_SCALE,
            io.ScaleInput(target=self._target, workloads=self._refs()),
            io.ScaleResult,
            f"scale {self.svc.name} API to 0 for the offline migration",
            heartbeat=True,
        )
        self.replicas = res.previous
        self.compensations.append(("unquiesce", self._unquiesce))

    async def _offline(self) -> None:
        self.compensations.append(("restore", self._restore_db))
        await self._sync("offline")

    async def _unquiesce(self) -> None:
        replicas = self.replicas
        if replicas is None:
            return
        await self._step(
            "unquiesce",
            io.K8S_SCALE,
            io.ScaleInput(target=self._target, workloads=self._refs(), replicas=replicas),
            io.ScaleResult,
            f"restore {self.svc.name} replicas",
            heartbeat=True,
        )
        self.replicas = None

    async def _roll(self) -> None:
        current = await self.rec.call(
            "roll",
            io.K8S_READ_IMAGES,
            io.ReadImagesInput(target=self._target, workloads=self._refs()),
            io.ReadImagesResult,
            summary=f"read current images of {self.svc.name}",
        )
        self.previous = current.images
        self.result = self.result.model_copy(update={"previous_images": current.images})
        self.compensations.append(("undo-roll", self._undo_roll))
        targets = [
            io.WorkloadImage(kind=w.kind, name=w.name, container=w.container, image=w.image) for w in self.svc.workloads
        ]
        await self._step(
            "roll",
            io.K8S_SET_IMAGES,
            io.SetImagesInput(target=self._target, images=targets),
            io.SetImagesResult,
            f"set {self.svc.name} images to {self.svc.workloads[0].tag}",
        )

    async def _rollout(self) -> None:
        t = self.plan.policy.rollout_timeout
        await self._step(
            "rollout",
            io.K8S_WAIT_ROLLOUT,
            io.WaitRolloutInput(target=self._target, workloads=self._refs(), timeout_seconds=t),
            io.RolloutResult,
            f"wait for {self.svc.name} rollout",
            timeout=t,
            heartbeat=True,
        )

    async def _validate(self) -> None:
        for check in self.svc.checks:
            while True:
                res = await self._check("validate", check)
                if res.status != "inconclusive":
                    break
                failure = StepFailed("validate", f"{check.kind} check inconclusive: {res.message}", "inconclusive")
                try:
                    if not await self._decide_retry(failure):
                        raise StepFailed("validate", self.abort_reason or "inconclusive", "aborted")
                except _Accepted:
                    break

    async def _check(self, step: str, check) -> io.CheckResult:
        """One check; records its result; raises StepFailed when it says "fail"."""
        arg = io.CheckInput(
            service=self.svc.name,
            cloud=self.plan.cloud.openstack.cloud,
            check=check,
            target=self._target,
            version=self.svc.workloads[0].tag,
        )
        tempest = check.kind == "tempest"

        def judge(r: io.CheckResult) -> tuple[str, str] | None:
            self.result = self.result.model_copy(update={"checks": [*self.result.checks, r]})
            if tempest:
                self.result = self.result.model_copy(update={"tempest": r})
            if r.status == "fail":
                return "check-fail", f"{check.kind} check failed: {r.message}"
            return None

        summary = f"tempest {check.regex}" if tempest else f"{check.kind} check of {self.svc.name}"
        return await self._step(
            step,
            io.TEMPEST_RUN if tempest else io.CHECKS_RUN,
            arg,
            io.TempestResult if tempest else io.CheckResult,
            summary,
            judge=judge,
            heartbeat=True,
        )

    async def _contract(self) -> None:
        if self.skip_contract:
            self.rec.skip("contract", "nothing to contract")
            return
        # The point of no return: from here a DB restore would break the new release's data.
        self.progress = self.progress.model_copy(update={"past_point_of_no_return": True})
        self.compensations.clear()
        await self._sync("contract")

    async def _postcheck(self) -> None:
        for check in self.svc.checks:
            if check.kind == "endpoint" and (await self._check("postcheck", check)).status != "pass":
                raise StepFailed("postcheck", "endpoint check inconclusive after the contract", "check-fail")

    # --- compensations ------------------------------------------------------------------------------
    async def _undo_roll(self) -> None:
        t = self.plan.policy.rollout_timeout
        await self._compensate(
            "undo-roll",
            io.K8S_UNDO_IMAGES,
            io.UndoImagesInput(target=self._target, previous=self.previous, timeout_seconds=t),
            io.RolloutResult,
            f"restore previous images of {self.svc.name}",
            timeout=t,
        )
        self.rec.compensated("roll", "rollout")

    async def _restore_db(self) -> None:
        snap, db = self.result.snapshot, self.svc.database
        quiesce = io.ScaleInput(target=self._target, workloads=self._refs())
        res = await self._compensate(
            "quiesce", io.K8S_SCALE, quiesce, io.ScaleResult, f"scale {self.svc.name} API to 0 before the restore"
        )
        restored = await self._compensate(
            "restore",
            io.DB_RESTORE,
            io.RestoreInput(snapshot=snap, database=db, target=self._target),
            io.RestoreResult,
            f"restore {db.name} from snapshot {snap.sha256[:12]}",
        )
        self.result = self.result.model_copy(update={"restore": restored})
        self.rec.compensated("expand", "migrate", "offline")
        replicas = self.replicas or res.previous
        await self._compensate(
            "unquiesce",
            io.K8S_SCALE,
            io.ScaleInput(target=self._target, workloads=self._refs(), replicas=replicas),
            io.ScaleResult,
            f"restore {self.svc.name} replicas",
        )
        self.replicas = None

    async def _compensate(self, step, name, arg, result_type, summary, **kw):
        """A compensation retries until it works or the operator steps in: giving up half-way
        would leave the service worse than either release."""
        while True:
            try:
                return await self._step(step, name, arg, result_type, summary, heartbeat=True, **kw)
            except StepFailed as f:
                self._report(
                    state="waiting",
                    waiting_for="decision",
                    message=f"rollback step {step} failed: {f}; resume retries it",
                )
                seen = self.resumes
                await workflow.wait_condition(lambda: self.resumes > seen)
                self._report(state="rolling-back", waiting_for=None)

    # --- progress -----------------------------------------------------------------------------------
    def _report(self, **changes: object) -> None:
        self.progress = self.progress.model_copy(update={**changes, "seq": self.progress.seq + 1})
        if changes.get("step"):
            workflow.upsert_search_attributes([visibility.PHASE.value_set(str(changes["step"]))])
        workflow.set_current_details(
            f"**{self.progress.service}** — {self.progress.state} {self.progress.step}"
            f" ({self.progress.steps_done}/{self.progress.steps_total})\n\n{self.progress.message}"
        )
        parent = workflow.info().parent
        if parent is not None:
            handle = workflow.get_external_workflow_handle(parent.workflow_id, run_id=parent.run_id)
            self._signals.append(asyncio.create_task(handle.signal("service_progress", self.progress)))


class _Accepted(Exception):
    """The operator approved an inconclusive check: carry on."""
