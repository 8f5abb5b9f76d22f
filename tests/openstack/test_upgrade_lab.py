"""The upgrade workflow end to end on the OpenStack lab: the real database, migration and validation
activities against real MariaDB and Keystone; only the Kubernetes side is a bridge that acts on the
lab's processes (setting the image serves that Keystone release, scaling to 0 stops it).

This is what no existing OpenStack upgrade tool does end to end: a verified backup before the
migration, a migration that gates the rollout, validation that decides, and a restore that brings
the old release back when the new one fails.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import requests
import yaml
from temporalio import activity
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError

import worker as stackhop_worker
from activities import migration
from activities.catalog import ACTIVITIES
from activities.kube import KUBE_ACTIVITIES
from cliapp.progress import read_status
from lab.demo import DRIFT_SQL
from lab.openstack import tempest_ws
from lab.openstack.manager import OpenStackLab
from model import errors, io
from model.loading import parse_plan
from model.plan import Migration, UpgradePlan
from tests.openstack.helpers import (
    RELEASE_MID,
    RELEASE_OLD,
    KeystoneAt,
    alembic_versions,
    connect,
    identity,
    issue_token,
    run,
    table_checksums,
    validate_token,
)
from workflows.upgrade import UpgradeWorkflow

pytestmark = pytest.mark.openstack

# Every activity of the worker's catalog for real, except the Kubernetes ones: LabBridge plays those.
REAL: list[Callable[..., Any]] = [a for a in ACTIVITIES if a not in KUBE_ACTIVITIES]
NEW_IN_29 = "742c857f1dfb"  # the expand revision 29.1.0 adds (an index of revocation_event)
LAB_UPGRADE_TIMEOUT = 300  # seconds: an upgrade that still runs then waits for something the test never gives


Hook = Callable[[], None]


class LabBridge:
    """k8s activities for a 'cluster' whose keystone-api Deployment is the lab's gunicorn.

    ``on_roll`` runs when the images are set (the roll step: expand and migrate completed) and
    ``on_quiesce`` when the service is scaled to 0, each before its effect: the tests make writes
    there, triggered by the workflow's own progress rather than by timing."""

    def __init__(
        self,
        lab: OpenStackLab,
        crashing: set[str] | None = None,
        on_roll: Hook | None = None,
        on_quiesce: Hook | None = None,
    ) -> None:
        self.lab = lab
        self.crashing = crashing or set()  # releases whose pods never become ready
        assert lab.keystone and lab.keystone.release
        self.desired = lab.keystone.release
        self.up = True  # scaled to 0 or not
        self.on_roll, self.on_quiesce = on_roll, on_quiesce
        self.calls: list[str] = []

    def image(self, ref: io.WorkloadRef) -> io.WorkloadImage:
        return io.WorkloadImage(
            kind=ref.kind, name=ref.name, container=ref.container, image=f"registry.lab/keystone:{self.desired}"
        )

    def converge(self) -> None:
        """What the Deployment controller would do: serve the desired release if scaled up."""
        if self.up and self.desired not in self.crashing:
            self.lab.serve(self.desired)
        else:
            self.lab.stop_keystone()  # scaled to 0, or the new pods crash-loop and the old ones are gone

    def roll_to(self, release: str) -> None:
        self.desired = release
        self.converge()

    def acting(self, fn: Hook) -> None:
        """Run ``fn`` (starting a Keystone takes ~30 s on a busy machine) while heartbeating, as the
        real activities do: every activity runs under the plan's heartbeat timeout."""
        failure: list[BaseException] = []

        def run() -> None:
            try:
                fn()
            except BaseException as e:  # re-raised in the activity's thread below
                failure.append(e)

        t = threading.Thread(target=run, daemon=True)
        t.start()
        while t.is_alive():
            activity.heartbeat()
            t.join(timeout=1.0)
        if failure:
            raise failure[0]

    def activities(self) -> list[Any]:
        b = self

        @activity.defn(name=io.K8S_READ_IMAGES)
        def read_images(inp: io.ReadImagesInput) -> io.ReadImagesResult:
            b.calls.append("read_images")
            return io.ReadImagesResult(images=[b.image(w) for w in inp.workloads])

        @activity.defn(name=io.K8S_SET_IMAGES)
        def set_images(inp: io.SetImagesInput) -> io.SetImagesResult:
            b.calls.append(f"set_images:{inp.images[0].image}")
            if b.on_roll:
                b.acting(b.on_roll)
            previous = [b.image(i) for i in inp.images]
            b.acting(lambda: b.roll_to((inp.images[0].image or "").rsplit(":", 1)[1]))
            return io.SetImagesResult(previous=previous)

        @activity.defn(name=io.K8S_WAIT_ROLLOUT)
        def wait_rollout(inp: io.WaitRolloutInput) -> io.RolloutResult:
            b.calls.append("wait_rollout")
            assert b.lab.keystone
            if b.desired in b.crashing or (b.up and not b.lab.keystone.ready()):
                raise errors.permanent(errors.ROLLOUT_FAILED, f"keystone {b.desired}: pods CrashLoopBackOff")
            return io.RolloutResult(
                workloads=[io.RolloutStatus(kind=w.kind, name=w.name, ready=True) for w in inp.workloads]
            )

        @activity.defn(name=io.K8S_UNDO_IMAGES)
        def undo_images(inp: io.UndoImagesInput) -> io.RolloutResult:
            b.calls.append(f"undo_images:{inp.previous[0].image}")
            b.acting(lambda: b.roll_to((inp.previous[0].image or "").rsplit(":", 1)[1]))
            return io.RolloutResult(
                workloads=[io.RolloutStatus(kind=w.kind, name=w.name, ready=True) for w in inp.previous]
            )

        @activity.defn(name=io.K8S_SCALE)
        def scale(inp: io.ScaleInput) -> io.ScaleResult:
            back = inp.restore or inp.replicas is not None
            b.calls.append(f"scale:{'back' if back else '0'}")
            if not back and b.on_quiesce:
                b.acting(b.on_quiesce)
            b.up = back
            b.acting(b.converge)
            return io.ScaleResult(previous={w.name: 1 for w in inp.workloads})

        return [read_images, set_images, wait_rollout, undo_images, scale]


def lab_plan(target: str = RELEASE_MID, mode: str = "expand-contract", tempest: bool = True, **policy: Any) -> Any:
    checks: list[dict[str, Any]] = [{"kind": "endpoint", "service_type": "identity"}]
    if tempest:
        checks.append({"kind": "tempest", "regex": tempest_ws.SMOKE_REGEX})
    doc = {
        "apiVersion": "stackhop/v1alpha1",
        "kind": "UpgradePlan",
        "metadata": {"name": "lab-keystone"},
        "cloud": {
            "name": f"lab{uuid.uuid4().hex[:8]}",
            "kubernetes": {"context": "lab"},
            "openstack": {"cloud": "lab-admin"},
        },
        "release": {"from": "2025.2", "to": "2026.1"},
        "policy": {"on_failure": "rollback", "max_attempts": 2, "heartbeat_timeout": "30s", **policy},
        "services": [
            {
                "name": "keystone",
                "depends_on": [],
                "database": {"name": "keystone"},
                "migration": {"mode": mode},
                "workloads": [
                    {
                        "kind": "Deployment",
                        "name": "keystone-api",
                        "container": "keystone-api",
                        "image": f"registry.lab/keystone:{target}",
                    }
                ],
                "checks": checks,
            }
        ],
    }
    return parse_plan(yaml.safe_dump(doc), "lab-keystone.yaml")


Decide = Callable[[Client, UpgradePlan, io.ServiceProgress], Awaitable[bool]]


async def upgrade(
    client: Client, bridge: LabBridge, plan: UpgradePlan | None = None, decide: Decide | None = None
) -> io.UpgradeReport:
    """Run the upgrade to its end; ``decide`` answers each decision the upgrade waits for (True:
    answered). An upgrade still running after ``LAB_UPGRADE_TIMEOUT`` fails the test with its status."""
    plan = plan or lab_plan()
    tq = f"lab-{uuid.uuid4().hex[:8]}"
    async with stackhop_worker.build_worker(client, [*REAL, *bridge.activities()], task_queue=tq):
        handle = await client.start_workflow(
            UpgradeWorkflow.run, io.UpgradeInput(plan=plan), id=plan.workflow_id, task_queue=tq
        )
        result = asyncio.ensure_future(handle.result())
        answered: set[tuple[str, int]] = set()  # (service, progress seq) of each decision answered
        unanswered = ""
        try:
            async with asyncio.timeout(LAB_UPGRADE_TIMEOUT):
                while not unanswered and not (await asyncio.wait([result], timeout=1.0))[0]:
                    for s in (await read_status(client, handle)).services:
                        if s.waiting_for != io.DECISION or (s.service, s.seq) in answered:
                            continue
                        if decide is None or not await decide(client, plan, s):
                            unanswered = s.message
                        answered.add((s.service, s.seq))
        except TimeoutError:
            unanswered = f"still running after {LAB_UPGRADE_TIMEOUT}s"
        if unanswered:
            result.cancel()
            await handle.terminate("the test ends it")
            pytest.fail(f"the upgrade waits for what the test does not give: {unanswered}")
        try:
            return await result
        except WorkflowFailureError as e:  # a rolled-back upgrade fails the workflow, report attached
            assert isinstance(e.cause, ApplicationError) and e.cause.type in errors.OUTCOME_OF_ERROR, e.cause
            (report,) = e.cause.details
            return io.UpgradeReport.model_validate(report)


def sync_check(version: str) -> io.MigrateResult:
    return run(
        migration.db_sync,
        io.MigrateInput(
            service="keystone", phase="check", version=version, migration=Migration(mode="expand-contract")
        ),
    )


@pytest.fixture
def worker_env(openstack_lab: OpenStackLab, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in openstack_lab.worker_env().items():
        monkeypatch.setenv(key, value)


async def test_keystone_28_to_29_through_the_workflow(
    client: Client, keystone_at: KeystoneAt, worker_env: None
) -> None:
    lab = keystone_at(RELEASE_OLD)
    token = issue_token(lab)
    bridge = LabBridge(lab)
    report = await upgrade(client, bridge)

    assert report.outcome == "succeeded", report.message
    (svc,) = report.services
    assert svc.snapshot and len(svc.snapshot.sha256) == 64 and svc.snapshot.table_checksums
    assert svc.tempest and svc.tempest.status == "pass" and svc.tempest.passed >= 14
    done = [s.step for s in svc.steps if s.status == "done"]
    assert done[:5] == ["status", "snapshot", "verify", "check", "expand"] and "contract" in done
    assert lab.keystone and lab.keystone.release == RELEASE_MID
    assert validate_token(lab, token) == 200
    assert sync_check(RELEASE_MID).state == "up-to-date"


def revoke_token(lab: OpenStackLab, token: str) -> None:
    """DELETE /v3/auth/tokens as the admin: a write to the revocation_event table."""
    assert lab.keystone
    headers = {"X-Auth-Token": issue_token(lab), "X-Subject-Token": token}
    response = requests.delete(f"{lab.keystone.url}/auth/tokens", headers=headers, timeout=30)
    assert response.status_code == 204, response.text


def create_user(lab: OpenStackLab, name: str) -> None:
    conn = connect(lab)
    try:
        identity(conn).create_user(name=name, domain_id="default", password=f"{uuid.uuid4().hex}-P1")
    finally:
        conn.close()


def user_exists(lab: OpenStackLab, name: str) -> bool:
    conn = connect(lab)
    try:
        return identity(conn).find_user(name, domain_id="default") is not None
    finally:
        conn.close()


async def test_failed_rollout_rolls_back_images_only_keeps_writes_and_the_next_upgrade_finishes(
    client: Client, keystone_at: KeystoneAt, worker_env: None
) -> None:
    """After a complete expand the old release serves on the expanded schema: a failed rollout puts
    the previous images back and nothing else, so writes made since the expand stay."""
    lab = keystone_at(RELEASE_OLD)
    token, revoked = issue_token(lab), issue_token(lab)
    user = f"after-expand-{uuid.uuid4().hex[:8]}"

    def writes_after_the_expand() -> None:  # 28.1.0 serves on the expanded schema
        assert NEW_IN_29 in alembic_versions(lab) and lab.keystone and lab.keystone.release == RELEASE_OLD
        create_user(lab, user)
        revoke_token(lab, revoked)

    bridge = LabBridge(lab, crashing={RELEASE_MID}, on_roll=writes_after_the_expand)
    report = await upgrade(client, bridge, lab_plan(tempest=False))

    assert report.outcome == "rolled-back", report.message
    (svc,) = report.services
    steps = [(s.step, s.status) for s in svc.steps]
    assert ("expand", "done") in steps and ("rollout", "failed") in steps and ("undo-roll", "done") in steps
    assert svc.restore is None and not {"quiesce", "inspect", "restore"} & {s for s, _ in steps}
    assert svc.rollback and svc.rollback.kind == "images" and "the contract did not run" in svc.rollback.schema_state
    assert not any(c.startswith("scale") for c in bridge.calls)
    assert NEW_IN_29 in alembic_versions(lab)  # the expanded schema stays
    assert lab.keystone and lab.keystone.release == RELEASE_OLD and lab.keystone.ready()
    assert validate_token(lab, token) == 200
    assert validate_token(lab, revoked) == 401  # the revocation written after the expand holds
    assert user_exists(lab, user)
    assert sync_check(RELEASE_MID).state == "up-to-date"  # 29.1.0 adds no contract revision

    # The next upgrade on that database: the expand is found done, the contract runs once (keystone's
    # recipe has no migrate: a no-op since Yoga).
    again = await upgrade(client, LabBridge(lab), lab_plan(tempest=False))
    assert again.outcome == "succeeded", again.message
    steps = [(s.step, s.status) for s in again.services[0].steps]
    assert ("expand", "skipped") in steps
    assert steps.count(("contract", "done")) == 1 and not any(s == "migrate" for s, _ in steps)
    assert lab.keystone.release == RELEASE_MID and validate_token(lab, token) == 200
    assert validate_token(lab, revoked) == 401 and user_exists(lab, user)


async def approve_restore(client: Client, plan: UpgradePlan, progress: io.ServiceProgress) -> bool:
    """The operator's answer to a restore that would discard writers' changes."""
    if not progress.decision.startswith(f"{progress.service}/restore#"):
        return False
    handle = client.get_workflow_handle(io.service_workflow_id(plan.workflow_id, progress.service))
    req = io.ApproveRequest(gate=progress.decision, by="test")
    await handle.execute_update("approve", req, result_type=io.ControlAck)
    return True


async def test_part_way_expand_restores_and_reports_the_window_and_the_tables(
    client: Client, keystone_at: KeystoneAt, worker_env: None
) -> None:
    """The demo's drift: the expand fails half-way, so the schema is in an unknown state and only
    the snapshot is a way back. A user created after the snapshot (just before the quiesce) is a
    writers' change: the restore waits for approval, then reports it lost."""
    lab = keystone_at(RELEASE_OLD)
    assert lab.mariadb
    lab.mariadb.sql(DRIFT_SQL, database="keystone")
    token = issue_token(lab)
    user = f"lost-{uuid.uuid4().hex[:8]}"
    bridge = LabBridge(lab, on_quiesce=lambda: create_user(lab, user))
    report = await upgrade(client, bridge, lab_plan(tempest=False), decide=approve_restore)

    assert report.outcome == "rolled-back", report.message
    (svc,) = report.services
    steps = [(s.step, s.status) for s in svc.steps]
    assert ("expand", "failed") in steps and ("restore", "done") in steps and ("roll", "done") not in steps
    rb = svc.rollback
    assert rb and rb.kind == "restore" and svc.snapshot
    assert rb.loss_from == svc.snapshot.created_at and rb.loss_from < rb.loss_to
    changed = {c.table: c.change for c in rb.table_changes}
    assert changed.get("user") == "writers" and "user" in rb.lost and rb.lost.split()[1] == "table(s)"
    assert not user_exists(lab, user)  # lost, as the report says
    assert table_checksums(lab) == svc.snapshot.table_checksums
    assert lab.keystone and lab.keystone.release == RELEASE_OLD and validate_token(lab, token) == 200
    assert bridge.calls[-3:] == ["scale:0", "scale:back", "wait_rollout"]


async def test_offline_rollback_restores_first_and_loses_nothing(
    client: Client, keystone_at: KeystoneAt, worker_env: None
) -> None:
    """Offline mode quiesces before the snapshot: the restore undoes the migration and nothing else."""
    lab = keystone_at(RELEASE_OLD)
    token = issue_token(lab)
    bridge = LabBridge(lab, crashing={RELEASE_MID})
    report = await upgrade(client, bridge, lab_plan(mode="offline", tempest=False))

    assert report.outcome == "rolled-back", report.message
    (svc,) = report.services
    assert [s.step for s in svc.steps][:5] == ["status", "quiesce", "snapshot", "verify", "offline"]
    rb = svc.rollback
    assert rb and rb.kind == "restore" and svc.snapshot and svc.restore
    assert rb.lost == (
        "nothing: the service was quiesced before the snapshot, so only the migration changed the database;"
        " the restored checksums equal the snapshot's"
    )
    assert table_checksums(lab) == svc.snapshot.table_checksums
    # restore → previous images → scale back → wait
    assert bridge.calls[0] == "read_images" and bridge.calls[1] == "scale:0"
    assert bridge.calls[-3:] == [f"undo_images:registry.lab/keystone:{RELEASE_OLD}", "scale:back", "wait_rollout"]
    assert lab.keystone and lab.keystone.release == RELEASE_OLD and validate_token(lab, token) == 200
    assert sync_check(RELEASE_MID).state == "expand-needed"
