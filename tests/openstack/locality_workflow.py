"""A tiny workflow for the snapshot-locality test: snapshot on the main task queue, then verify or
restore pinned to the snapshot's host queue the way the service workflow does (Recorder.call with
task_queue= and schedule_to_start=). Tests only; the ServiceUpgrade workflow wires the same pinning.
"""

from __future__ import annotations

from typing import Literal

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel

    from model import io
    from model.plan import Database, Policy
    from workflows.steps import Recorder, StepFailed


class LocalityInput(BaseModel):
    action: Literal["snapshot", "restore"]
    main_queue: str  # where the snapshot goes (any worker)
    database: Database
    snapshot: io.Snapshot | None = None  # for "restore"
    schedule_to_start: int = 10


class LocalityResult(BaseModel):
    snapshot: io.Snapshot | None = None
    verify: io.VerifyResult | None = None
    restore: io.RestoreResult | None = None
    failure: str = ""  # StepFailed's full message
    kind: str = ""


@workflow.defn
class LocalityProbe:
    @workflow.run
    async def run(self, inp: LocalityInput) -> LocalityResult:
        rec = Recorder("keystone", Policy(max_attempts=2, heartbeat_timeout=30, step_timeout=300))
        try:
            if inp.action == "snapshot":
                snap = await rec.call(
                    "snapshot",
                    io.DB_SNAPSHOT,
                    io.SnapshotInput(upgrade_id=workflow.info().workflow_id, service="keystone", database=inp.database),
                    io.Snapshot,
                    summary="snapshot on any worker",
                    task_queue=inp.main_queue,
                )
                verified = await rec.call(
                    "verify",
                    io.DB_VERIFY,
                    io.VerifyInput(snapshot=snap, database=inp.database),
                    io.VerifyResult,
                    summary="verify where the file is",
                    task_queue=snap.task_queue or inp.main_queue,
                    schedule_to_start=inp.schedule_to_start,
                )
                return LocalityResult(snapshot=snap, verify=verified)
            assert inp.snapshot is not None
            restored = await rec.call(
                "restore",
                io.DB_RESTORE,
                io.RestoreInput(snapshot=inp.snapshot, database=inp.database),
                io.RestoreResult,
                summary="restore where the file is",
                task_queue=inp.snapshot.task_queue or inp.main_queue,
                schedule_to_start=inp.schedule_to_start,
            )
            return LocalityResult(restore=restored)
        except StepFailed as e:
            return LocalityResult(failure=e.detail, kind=e.kind)
