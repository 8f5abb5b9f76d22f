"""The way back of a service upgrade, chosen by phase (model/recipe.py) and run to the end.

A mixin of ServiceUpgradeWorkflow, after the forward steps (workflows/service_steps.py). What runs
depends only on which steps completed and which failed part-way, never on a list of closures that
happened to be appended:

* images: the previous images back and rolled out; the schema stays as the completed expand/migrate
  left it (the old release serves on it by design), so no write is lost;
* restore: quiesce (the scale-back is known before the scale-down) → inspect the database (an open
  session stops here, naming it, before anything is dropped) → an approval when writers' changes
  would be discarded and the policy says so → restore → previous images → scale back → wait;
* none: nothing the old release cannot serve on was changed (a quiesce still held is scaled back).

Each compensation retries until it works or the operator steps in: giving up half-way would leave
the service worse than either release. Deterministic code only.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel

    from model import errors, io
    from model.plan import Database
    from model.recipes import Rollback, databases, decide, recipe_for
    from workflows.adapters import Call
    from workflows.service_steps import R, ServiceSteps
    from workflows.steps import StepFailed


class RollbackSteps(ServiceSteps):
    """The compensations, and the one entry point ``_rollback`` the step loop calls on failure."""

    pending: tuple[str, ...] = ()  # the compensations chosen and not completed yet, in order

    def _left_undone(self) -> list[str]:
        """The compensations that have not completed, in the order they would have run."""
        return list(self.pending)

    async def _rollback(self, failure: StepFailed) -> tuple[io.Outcome, str]:
        """Undo what the failed upgrade changed, as model/recipe.py decides; (outcome, message)."""
        records = [r for r in self.rec.records if r.step == failure.step]
        partial = failure.step if records and records[-1].status == "failed" else None
        completed = {r.step for r in self.rec.records if r.status == "done"}
        choice = decide(recipe_for(self.svc, self.per_service), completed, partial)
        aborted = failure.kind == errors.ABORTED
        head = f"{failure.step}: {failure}"
        if choice.kind == "forward-fix":
            return "failed", f"{head} ({self._past_what}: nothing rolled back, fix forward)"
        if choice.kind == "none" and self.quiesced is None:
            report = self._images_report(choice)
            self.result = self.result.model_copy(update={"rollback": report})
            unchanged = report.schema_state.startswith("unchanged")
            return ("aborted" if aborted else "failed"), f"{head} (" + (
                "nothing was changed)" if unchanged else f"nothing to undo: schema {report.schema_state})"
            )
        if choice.kind == "restore" and (self.result.snapshot is None or not databases(self.svc)):
            return "failed", f"{head} ({choice.reason}, but there is no snapshot: restore by hand)"
        self._report(state="rolling-back", step="rollback", message=str(failure))
        self.rolling_back = True
        undo = self.adapter.revert(self.before) if choice.images else None
        images = ("undo-roll",) if undo else ()
        if choice.kind == "restore":
            quiesce = () if self.quiesced is not None else ("quiesce",)
            self.pending = (*quiesce, "inspect", "restore", *images, "unquiesce", "rollout-back")
            report = await self._restore(choice)
        else:
            self.pending = (*images, *(("unquiesce",) if self.quiesced is not None else ()))
            if undo:
                await self._undo_roll()
            await self._scale_back()
            report = self._images_report(choice)
        self.result = self.result.model_copy(update={"rollback": report})
        if choice.kind == "none":
            return ("aborted" if aborted else "failed"), f"{head} (nothing was changed; scaled back)"
        outcome: io.Outcome = "aborted" if aborted else "rolled-back"
        how = "previous images; the schema stays" if report.kind == "images" else "snapshot restored"
        return outcome, f"{head} (rolled back: {how}; lost: {report.lost})"

    # --- the restore path ---------------------------------------------------------------------------
    async def _restore(self, choice: Rollback) -> io.RollbackReport:
        """Every database of the service back from its snapshot, together (nova's three): all are
        inspected before any is dropped, one approval covers them, then each is restored."""
        taken, target = self._snapshots_taken, self._target
        # Quiesced from before the snapshot (offline mode): nobody wrote since, nothing can be lost.
        held = self.quiesced is not None
        if not held:
            self.quiesced = f"{workflow.info().run_id}/restore"  # the scale-back is known first
            call = self.adapter.quiesce(self.quiesced)
            await self._compensate_call("quiesce", replace(call, summary=f"{call.summary} before the restore"))
        inspections = []
        for snap, db in taken:

            def judge(r: io.DbInspection, name: str = db.name) -> tuple[str, str] | None:
                if not r.sessions:
                    return None
                return errors.DB_IN_USE, f"{name} is still in use, nothing was dropped: {'; '.join(r.sessions)}"

            inspections.append(
                await self._compensate(
                    "inspect",
                    io.DB_INSPECT,
                    io.InspectInput(snapshot=snap, database=db, target=target),
                    io.DbInspection,
                    f"who uses {db.name}, and what the restore undoes",
                    judge=judge,
                    **self._pinned(snap),
                )
            )
        inspection = merged_inspection(inspections, [db for _, db in taken])
        if inspection.writers_changed and not held and self.plan.policy.restore == "approve":
            await self._approve_restore(inspection)
        results = []
        for snap, db in taken:
            results.append(
                await self._compensate(
                    "restore",
                    io.DB_RESTORE,
                    io.RestoreInput(snapshot=snap, database=db, target=target),
                    io.RestoreResult,
                    f"restore {db.name} from snapshot {snap.sha256[:12]}",
                    **self._pinned(snap),
                )
            )
        restored = merged_restore(results, [db for _, db in taken])
        self.result = self.result.model_copy(update={"restore": restored})
        self.rec.compensated("expand", "migrate", "offline")
        if choice.images and self.adapter.revert(self.before):
            await self._undo_roll()
        await self._scale_back()
        wait = self.adapter.wait(target_images=False)
        await self._compensate_call("rollout-back", replace(wait, summary=f"wait for {self.svc.name} to serve again"))
        return restore_report(choice, merged_snapshot(taken), inspection, restored, held)

    async def _approve_restore(self, inspection: io.DbInspection) -> None:
        """Writers changed data since the snapshot: the restore discards it only once a person says so."""
        tables = inspection.writers_changed
        msg = (
            f"the restore would discard writers' changes to {len(tables)} table(s) ({', '.join(tables)}) made since"
            " the snapshot"
        )
        self._report(state="waiting", waiting_for=io.DECISION, message=msg)
        while await self._decision(StepFailed("restore", msg, errors.RESTORE_APPROVAL)) != io.APPROVE:
            pass  # only an approval (or abandon, which raises) ends this wait
        self._report(state="rolling-back", waiting_for=None, message="")

    # --- compensations ------------------------------------------------------------------------------
    async def _undo_roll(self) -> None:
        undo = self.adapter.revert(self.before)
        assert undo is not None, "undo-roll is chosen only when the adapter read what to go back to"
        await self._compensate_call("undo-roll", undo)
        self.rec.compensated("roll", "rollout")

    async def _scale_back(self) -> None:
        """Scale back what the quiesce in effect recorded (ScaleInput.restore), if one is."""
        if self.quiesced is None:
            return
        await self._compensate_call("unquiesce", self.adapter.unquiesce(self.quiesced))
        self.quiesced = None

    async def _compensate_call(self, step: str, call: Call) -> BaseModel:
        """An adapter's call as a compensation (a Helm revision it makes goes into the report)."""
        out = await self._compensate(
            step, call.activity, call.arg, call.result_type, call.summary, step_timeout=call.step_timeout
        )
        self._record(out)
        return out

    async def _compensate(
        self, step: str, name: str, arg: BaseModel, result_type: type[R], summary: str, **kw: Any
    ) -> R:
        """A compensation retries until it works or the operator steps in (resume retries it)."""
        while True:
            try:
                out = await self._step(step, name, arg, result_type, summary, **kw)
                if step in self.pending:
                    i = self.pending.index(step)
                    self.pending = self.pending[:i] + self.pending[i + 1 :]
                return out
            except StepFailed as f:
                self._report(
                    state="waiting",
                    waiting_for=io.DECISION,
                    message=f"rollback step {step} failed: {f}; resume retries it",
                )
                await self._decision(f)
                self._report(state="rolling-back", waiting_for=None)

    def _images_report(self, choice: Rollback) -> io.RollbackReport:
        done = {r.step for r in self.rec.records if r.status == "done"}
        w = self.svc.workloads[0]
        if self.expanded_before or {"expand", "migrate"} & done:
            ponr = recipe_for(self.svc, self.per_service).point_of_no_return or "contract"
            schema = (
                f"expanded to {self.plan.release.to} ({w.tag}); the {ponr} did not run;"
                " the next upgrade's expand finds it done"
            )
        else:
            schema = "unchanged: no schema step ran"
        kind: io.RollbackKind = "images" if choice.kind == "images" else "none"
        return io.RollbackReport(kind=kind, reason=choice.reason, schema_state=schema, lost="nothing")


def _prefixed(tables: dict[str, str], db: Database, several: bool) -> dict[str, str]:
    return {f"{db.name}.{t}": v for t, v in tables.items()} if several else dict(tables)


def merged_inspection(inspections: list[io.DbInspection], dbs: list[Database]) -> io.DbInspection:
    """One inspection of several databases: tables named ``database.table``, the latest time."""
    if len(inspections) == 1:
        return inspections[0]
    return io.DbInspection(
        at=max(i.at for i in inspections),
        sessions=[s for i in inspections for s in i.sessions],
        table_checksums={
            k: v
            for i, db in zip(inspections, dbs, strict=True)
            for k, v in _prefixed(i.table_checksums, db, True).items()
        },
        changes=[
            c.model_copy(update={"table": f"{db.name}.{c.table}"})
            for i, db in zip(inspections, dbs, strict=True)
            for c in i.changes
        ],
    )


def merged_restore(results: list[io.RestoreResult], dbs: list[Database]) -> io.RestoreResult:
    if len(results) == 1:
        return results[0]
    return io.RestoreResult(
        ok=all(r.ok for r in results),
        table_checksums={
            k: v for r, db in zip(results, dbs, strict=True) for k, v in _prefixed(r.table_checksums, db, True).items()
        },
        seconds=round(sum(r.seconds for r in results), 3),
        already_restored=all(r.already_restored for r in results),
    )


def merged_snapshot(taken: list[tuple[io.Snapshot, Database]]) -> io.Snapshot:
    """The snapshots of several databases as one, for the report: the first one's time (the data-
    loss window starts there) and every table's checksum as ``database.table``."""
    first = taken[0][0]
    if len(taken) == 1:
        return first
    checksums = {k: v for snap, db in taken for k, v in _prefixed(snap.table_checksums, db, True).items()}
    return first.model_copy(update={"table_checksums": checksums})


def restore_report(
    choice: Rollback, snap: io.Snapshot, inspection: io.DbInspection, restored: io.RestoreResult, held: bool
) -> io.RollbackReport:
    """What a restore cost: the window in which writes were lost, and per table what it undid."""
    writers = inspection.writers_changed
    if held:
        same = bool(restored.table_checksums) and restored.table_checksums == snap.table_checksums
        lost = "nothing: the service was quiesced before the snapshot, so only the migration changed the database"
        lost += "; the restored checksums equal the snapshot's" if same else ""
    elif writers:
        lost = f"{len(writers)} table(s) had writers' changes: {', '.join(writers)}"
    else:
        lost = "nothing: no table had writers' changes since the snapshot"
    return io.RollbackReport(
        kind="restore",
        reason=choice.reason,
        schema_state=f"restored from the snapshot of {snap.created_at or snap.sha256[:12]}",
        loss_from=snap.created_at,
        loss_to=inspection.at,
        table_changes=list(inspection.changes),
        lost=lost,
    )
