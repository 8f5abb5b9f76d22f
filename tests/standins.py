"""Stand-in activities registered under the real activity names (the Temporal testing idiom).

A ``Script`` says what each stand-in answers and records every call in order, so a test can assert
the exact sequence of steps and compensations. Failures are injected per (activity, phase) key.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.client import WorkflowHandle
from temporalio.exceptions import CancelledError

from activities import admission, ledger
from model import errors, io
from model.codec import data_converter

# Worker options for stand-in workers: heartbeats reach the server at once. The stackhop worker passes
# them on every 3 s (worker.HEARTBEAT_THROTTLE), and a cancel reaches an activity only with a
# heartbeat's answer: the probe stopping at the end of every service would cost each test up to 3 s.
QUICK_HEARTBEATS: dict[str, Any] = {"max_heartbeat_throttle_interval": timedelta(milliseconds=100)}


class Script:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.fail: dict[str, str] = {}  # key -> error type (model.errors) to raise once or always
        self.fail_times: dict[str, int] = {}  # key -> how many times to fail (default: always)
        self.answers: dict[str, Any] = {}  # key -> result model to return instead of the default
        self.block: dict[str, threading.Event] = {}  # key -> wait until set (heartbeating)
        self.started: dict[str, threading.Event] = {}
        self.replicas = {"keystone-api": 3}
        self.revision = 1  # of the stand-in Helm release: each upgrade and rollback adds one
        self.journal: Path | None = None  # if set: "start NAME" / "done NAME" lines, for another process
        self.lock = threading.Lock()
        self.databases: list[str] = []  # the database of each snapshot, in order
        self.restored: list[str] = []  # the database of each restore, in order
        self.helm_values: list[dict[str, Any]] = []  # the set_values of each helm.upgrade, in order
        # The availability probe (beside the steps, so not in ``calls``): "start <service>#<attempt> at
        # <requests resumed>" and
        # "stop <service>" in order; what it returns is its heartbeats as requests, plus ``probe_result``.
        self.probes: list[str] = []
        self.probe_result: dict[str, Any] = {}
        # ledger.check_cloud: service -> what the cloud answers (default: online migrations done or
        # not applicable, schema not told); ledger.record and ledger.read are the real activities
        # (they only talk to Temporal). Their calls go to ``ledger_calls``, not ``calls``.
        self.cloud: dict[str, io.ServiceCloudCheck] = {}
        self.ledger_calls: list[str] = []

    def key_started(self, key: str) -> threading.Event:
        return self.started.setdefault(key, threading.Event())

    def _enter(self, key: str) -> None:
        with self.lock:
            self.calls.append(key)
        self.key_started(key).set()
        ev = self.block.get(key)
        while ev is not None and not ev.wait(timeout=0.05):  # heartbeat while the test holds it
            activity.heartbeat(key)
            if activity.is_cancelled():
                raise CancelledError("cancelled")
        if key in self.fail:
            n = self.fail_times.get(key)
            if n is None or n > 0:
                if n is not None:
                    self.fail_times[key] = n - 1
                if self.fail[key] == errors.UNAVAILABLE:
                    raise errors.temporary(f"{key}: injected temporary failure")
                raise errors.permanent(self.fail[key], f"{key}: injected failure")

    def of(self, prefix: str) -> list[str]:
        return [c for c in self.calls if c.startswith(prefix)]

    def _journal(self, line: str) -> None:
        if self.journal is not None:
            with self.lock, self.journal.open("a") as f:
                f.write(line + "\n")

    def activities(self) -> list[Callable[..., Any]]:
        s = self

        def standin(name: str) -> Callable[[Callable[[Any], Any]], Callable[[Any], Any]]:
            """``activity.defn(name=name)``, journaling the start and the end of each call."""

            def register(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
                @functools.wraps(fn)  # keeps the annotations Temporal converts the argument with
                def run(inp: Any) -> Any:
                    s._journal(f"start {name}")
                    out = fn(inp)
                    s._journal(f"done {name}")
                    return out

                return activity.defn(name=name)(run)

            return register

        @standin(io.K8S_READ_IMAGES)
        def read_images(inp: io.ReadImagesInput) -> io.ReadImagesResult:
            s._enter(io.K8S_READ_IMAGES)
            return s.answers.get(io.K8S_READ_IMAGES) or io.ReadImagesResult(
                images=[io.WorkloadImage(**w.model_dump(), image=f"registry/{w.name}:old") for w in inp.workloads]
            )

        @standin(io.K8S_SET_IMAGES)
        def set_images(inp: io.SetImagesInput) -> io.SetImagesResult:
            s._enter(io.K8S_SET_IMAGES)
            return io.SetImagesResult(previous=[i.model_copy(update={"image": "registry/old"}) for i in inp.images])

        @standin(io.K8S_WAIT_ROLLOUT)
        def wait_rollout(inp: io.WaitRolloutInput) -> io.RolloutResult:
            s._enter(io.K8S_WAIT_ROLLOUT)
            return io.RolloutResult(
                workloads=[io.RolloutStatus(kind=w.kind, name=w.name, ready=True) for w in inp.workloads]
            )

        @standin(io.K8S_UNDO_IMAGES)
        def undo_images(inp: io.UndoImagesInput) -> io.RolloutResult:
            s._enter(io.K8S_UNDO_IMAGES)
            return io.RolloutResult(
                workloads=[io.RolloutStatus(kind=w.kind, name=w.name, ready=True) for w in inp.previous]
            )

        @standin(io.K8S_SCALE)
        def scale(inp: io.ScaleInput) -> io.ScaleResult:
            key = f"{io.K8S_SCALE}:{'up' if inp.restore or inp.replicas is not None else 'down'}"
            s._enter(key)
            return io.ScaleResult(previous={w.name: s.replicas.get(w.name, 1) for w in inp.workloads})

        @standin(io.HELM_STATUS)
        def helm_status(inp: io.HelmStatusInput) -> io.HelmStatus:
            s._enter(io.HELM_STATUS)
            return s.answers.get(io.HELM_STATUS) or io.HelmStatus(
                release=inp.helm.release,
                namespace=inp.helm.namespace or inp.target.namespace,
                chart="keystone-2025.2.0",
                revision=s.revision,
                status="deployed",
                deployed_revision=s.revision,
            )

        def _revision(inp: io.HelmUpgradeInput | io.HelmRollbackInput, purpose: str) -> io.HelmChange:
            with s.lock:
                s.revision += 1
                return io.HelmChange(
                    release=inp.helm.release, purpose=purpose, revision_before=s.revision - 1, revision=s.revision
                )

        @standin(io.HELM_UPGRADE)
        def helm_upgrade(inp: io.HelmUpgradeInput) -> io.HelmChange:
            s._enter(f"{io.HELM_UPGRADE}:{inp.purpose}")
            s.helm_values.append(inp.set_values)
            return _revision(inp, inp.purpose)

        @standin(io.HELM_ROLLBACK)
        def helm_rollback(inp: io.HelmRollbackInput) -> io.HelmChange:
            s._enter(io.HELM_ROLLBACK)
            return _revision(inp, "rollback")

        @standin(io.DB_SNAPSHOT)
        def snapshot(inp: io.SnapshotInput) -> io.Snapshot:
            s._enter(io.DB_SNAPSHOT)
            s.databases.append(inp.database.name)
            return io.Snapshot(
                service=inp.service,
                database=inp.database.name,
                location=f"/snap/{inp.database.name}.sql",
                sha256="ab" * 32,
                size_bytes=1234,
                created_at="2026-01-01T00:00:00+00:00",
            )

        @standin(io.DB_VERIFY)
        def verify(inp: io.VerifyInput) -> io.VerifyResult:
            s._enter(io.DB_VERIFY)
            return s.answers.get(io.DB_VERIFY) or io.VerifyResult(ok=True, tables=3)

        @standin(io.DB_INSPECT)
        def inspect(inp: io.InspectInput) -> io.DbInspection:
            s._enter(io.DB_INSPECT)
            answers = s.answers.get(io.DB_INSPECT)
            if isinstance(answers, list):  # one answer per call, the last one for good
                answer: io.DbInspection = answers.pop(0) if len(answers) > 1 else answers[0]
                return answer
            return answers or io.DbInspection(
                at="2026-01-01T00:05:00+00:00", changes=[io.TableChange(table="migrate_version", change="migration")]
            )

        @standin(io.DB_RESTORE)
        def restore(inp: io.RestoreInput) -> io.RestoreResult:
            s._enter(io.DB_RESTORE)
            s.restored.append(inp.database.name)
            return io.RestoreResult(ok=True)

        @standin(io.MIGRATION_DB_SYNC)
        def db_sync(inp: io.MigrateInput) -> io.MigrateResult:
            key = f"{io.MIGRATION_DB_SYNC}:{inp.phase}"
            s._enter(key)
            answers = s.answers.get(key)
            if isinstance(answers, list):  # one answer per call, the last one for good
                answer: io.MigrateResult = answers.pop(0) if len(answers) > 1 else answers[0]
                return answer
            return answers or io.MigrateResult(
                phase=inp.phase, state="expand-needed" if inp.phase == "check" else "done"
            )

        @standin(io.K8S_RESTART)
        def restart(inp: io.RestartInput) -> io.RestartResult:
            s._enter(io.K8S_RESTART)
            return io.RestartResult(restarted=[f"{w.kind}/{w.name}" for w in inp.workloads])

        @standin(io.CHECKS_RUN)
        def checks(inp: io.CheckInput) -> io.CheckResult:
            key = f"{io.CHECKS_RUN}:{inp.check.kind}:{inp.stage}"
            s._enter(key)
            answers = s.answers.get(key)
            if isinstance(answers, list):  # one answer per call, the last one for good
                answer: io.CheckResult = answers.pop(0) if len(answers) > 1 else answers[0]
                return answer
            return answers or io.CheckResult(status="pass")

        @standin(io.TEMPEST_RUN)
        def tempest(inp: io.CheckInput) -> io.TempestResult:
            s._enter(io.TEMPEST_RUN)
            return s.answers.get(io.TEMPEST_RUN) or io.TempestResult(status="pass", passed=14)

        @activity.defn(name=io.PROBE_AVAILABILITY, no_thread_cancel_exception=True)
        def probe(inp: io.ProbeInput) -> io.Availability:
            """As the real probe: heartbeats its state (one "request" a beat, resumed on a retry) until
            cancelled, then returns it; a worker shutting down fails the attempt as temporary."""
            info = activity.info()
            resumed = [io.ProbeState.model_validate(d) for d in info.heartbeat_details]
            api = io.PROBE_APIS[inp.service_type]
            state = resumed[-1] if resumed else io.ProbeState(counters=io.Availability(service=inp.service, api=api))
            state = state.model_copy(update={"counters": state.counters.model_copy(update={"attempts": info.attempt})})
            with s.lock:
                s.probes.append(f"start {inp.service}#{info.attempt} at {state.counters.requests}")
            s.key_started(f"{io.PROBE_AVAILABILITY}:{inp.service}").set()
            while True:
                details = activity.cancellation_details()
                if activity.is_cancelled() and details is not None and details.cancel_requested:
                    break  # the workflow stops it: it returns its counters
                if activity.is_worker_shutdown() or activity.is_cancelled():
                    raise errors.temporary(f"{inp.service} probe: the worker shuts down")
                c = state.counters
                state = state.model_copy(update={"counters": c.model_copy(update={"requests": c.requests + 1})})
                activity.heartbeat(state.model_dump(mode="json"))
                activity.wait_for_cancelled_sync(0.05)
            with s.lock:
                s.probes.append(f"stop {inp.service}")
            return state.counters.model_copy(update={"attempts": info.attempt, **s.probe_result})

        @standin(io.LEDGER_CHECK_CLOUD)
        def check_cloud(inp: io.CloudCheckInput) -> io.CloudCheck:
            with s.lock:
                s.ledger_calls.append(io.LEDGER_CHECK_CLOUD)
            return io.CloudCheck(
                services=[
                    s.cloud.get(svc.name)
                    or io.ServiceCloudCheck(
                        service=svc.name, online="done" if svc.name in ("nova", "placement") else "not-applicable"
                    )
                    for svc in inp.plan.services
                ]
            )

        async def ledger_record(rec: io.LedgerRecord) -> io.LedgerAck:
            with s.lock:
                s.ledger_calls.append(io.LEDGER_RECORD)
            return await ledger.record(rec)

        async def ledger_read(inp: io.LedgerReadInput) -> io.LedgerRead:
            with s.lock:
                s.ledger_calls.append(io.LEDGER_READ)
            return await ledger.read(inp)

        return [
            admission.admit,  # the real one: it only reads the plan and the worker's configuration
            probe,
            activity.defn(name=io.LEDGER_RECORD)(ledger_record),
            activity.defn(name=io.LEDGER_READ)(ledger_read),
            check_cloud,
            read_images,
            set_images,
            wait_rollout,
            restart,
            undo_images,
            scale,
            helm_status,
            helm_upgrade,
            helm_rollback,
            snapshot,
            verify,
            inspect,
            restore,
            db_sync,
            checks,
            tempest,
        ]


async def pending_probe(handle: WorkflowHandle[Any, Any]) -> tuple[int, io.ProbeState] | None:
    """The probe as the UI shows it under the pending activity: its attempt and heartbeat details."""
    desc = await handle.describe()
    for pa in desc.raw_description.pending_activities:
        if pa.activity_type.name == io.PROBE_AVAILABILITY and pa.heartbeat_details.payloads:
            (details,) = await data_converter().decode(pa.heartbeat_details.payloads)  # encrypted in history
            return pa.attempt, io.ProbeState.model_validate(details)
    return None
