"""The upgrade workflow end to end on the OpenStack lab: the real database, migration and validation
activities against real MariaDB and Keystone; only the Kubernetes side is a bridge that acts on the
lab's processes (setting the image serves that Keystone release, scaling to 0 stops it).

This is what no existing OpenStack upgrade tool does end to end: a verified backup before the
migration, a migration that gates the rollout, validation that decides, and a restore that brings
the old release back when the new one fails.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from temporalio import activity
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError

import worker as stackhop_worker
from activities import migration
from activities.catalog import ACTIVITIES
from activities.kube import KUBE_ACTIVITIES
from lab.openstack import tempest_ws
from lab.openstack.manager import OpenStackLab
from model import errors, io
from model.loading import parse_plan
from model.plan import Migration
from tests.openstack.helpers import (
    RELEASE_MID,
    RELEASE_OLD,
    KeystoneAt,
    alembic_versions,
    issue_token,
    run,
    validate_token,
)
from workflows.upgrade import UpgradeWorkflow

pytestmark = pytest.mark.openstack

# Every activity of the worker's catalog for real, except the Kubernetes ones: LabBridge plays those.
REAL: list[Callable[..., Any]] = [a for a in ACTIVITIES if a not in KUBE_ACTIVITIES]


class LabBridge:
    """k8s activities for a 'cluster' whose keystone-api Deployment is the lab's gunicorn."""

    def __init__(self, lab: OpenStackLab, crashing: set[str] | None = None) -> None:
        self.lab = lab
        self.crashing = crashing or set()  # releases whose pods never become ready
        assert lab.keystone and lab.keystone.release
        self.desired = lab.keystone.release
        self.calls: list[str] = []

    def image(self, ref: io.WorkloadRef) -> io.WorkloadImage:
        return io.WorkloadImage(
            kind=ref.kind, name=ref.name, container=ref.container, image=f"registry.lab/keystone:{self.desired}"
        )

    def roll_to(self, release: str) -> None:
        self.desired = release
        if release in self.crashing:
            self.lab.stop_keystone()  # the new pods crash-loop; the old ones are gone
        else:
            self.lab.serve(release)

    def activities(self) -> list[Any]:
        b = self

        @activity.defn(name=io.K8S_READ_IMAGES)
        def read_images(inp: io.ReadImagesInput) -> io.ReadImagesResult:
            b.calls.append("read_images")
            return io.ReadImagesResult(images=[b.image(w) for w in inp.workloads])

        @activity.defn(name=io.K8S_SET_IMAGES)
        def set_images(inp: io.SetImagesInput) -> io.SetImagesResult:
            b.calls.append(f"set_images:{inp.images[0].image}")
            previous = [b.image(i) for i in inp.images]
            b.roll_to((inp.images[0].image or "").rsplit(":", 1)[1])
            return io.SetImagesResult(previous=previous)

        @activity.defn(name=io.K8S_WAIT_ROLLOUT)
        def wait_rollout(inp: io.WaitRolloutInput) -> io.RolloutResult:
            b.calls.append("wait_rollout")
            assert b.lab.keystone
            if b.desired in b.crashing or not b.lab.keystone.ready():
                raise errors.permanent(errors.ROLLOUT_FAILED, f"keystone {b.desired}: pods CrashLoopBackOff")
            return io.RolloutResult(
                workloads=[io.RolloutStatus(kind=w.kind, name=w.name, ready=True) for w in inp.workloads]
            )

        @activity.defn(name=io.K8S_UNDO_IMAGES)
        def undo_images(inp: io.UndoImagesInput) -> io.RolloutResult:
            b.calls.append(f"undo_images:{inp.previous[0].image}")
            b.roll_to((inp.previous[0].image or "").rsplit(":", 1)[1])
            return io.RolloutResult(
                workloads=[io.RolloutStatus(kind=w.kind, name=w.name, ready=True) for w in inp.previous]
            )

        @activity.defn(name=io.K8S_SCALE)
        def scale(inp: io.ScaleInput) -> io.ScaleResult:
            b.calls.append(f"scale:{'0' if inp.replicas is None else 'back'}")
            if inp.replicas is None:
                b.lab.stop_keystone()
            elif b.desired not in b.crashing:
                b.lab.serve(b.desired)
            return io.ScaleResult(previous={w.name: 1 for w in inp.workloads})

        return [read_images, set_images, wait_rollout, undo_images, scale]


def lab_plan(target: str = RELEASE_MID) -> Any:
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
        "policy": {"on_failure": "rollback", "max_attempts": 2, "heartbeat_timeout": "30s"},
        "services": [
            {
                "name": "keystone",
                "depends_on": [],
                "database": {"name": "keystone"},
                "migration": {"mode": "expand-contract"},
                "workloads": [
                    {
                        "kind": "Deployment",
                        "name": "keystone-api",
                        "container": "keystone-api",
                        "image": f"registry.lab/keystone:{target}",
                    }
                ],
                "checks": [
                    {"kind": "endpoint", "service_type": "identity"},
                    {"kind": "tempest", "regex": tempest_ws.SMOKE_REGEX},
                ],
            }
        ],
    }
    return parse_plan(yaml.safe_dump(doc), "lab-keystone.yaml")


async def upgrade(client: Client, bridge: LabBridge) -> io.UpgradeReport:
    plan = lab_plan()
    tq = f"lab-{uuid.uuid4().hex[:8]}"
    async with stackhop_worker.build_worker(client, [*REAL, *bridge.activities()], task_queue=tq):
        handle = await client.start_workflow(
            UpgradeWorkflow.run, io.UpgradeInput(plan=plan), id=plan.workflow_id, task_queue=tq
        )
        try:
            return await handle.result()
        except WorkflowFailureError as e:  # a rolled-back upgrade fails the workflow, report attached
            assert isinstance(e.cause, ApplicationError) and e.cause.type == errors.UPGRADE_ROLLED_BACK, e.cause
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
    assert done[:4] == ["snapshot", "verify", "check", "expand"] and "contract" in done
    assert lab.keystone and lab.keystone.release == RELEASE_MID
    assert validate_token(lab, token) == 200
    assert sync_check(RELEASE_MID).state == "up-to-date"


async def test_failed_rollout_restores_the_database_and_28_serves_again(
    client: Client, keystone_at: KeystoneAt, worker_env: None
) -> None:
    lab = keystone_at(RELEASE_OLD)
    token = issue_token(lab)
    bridge = LabBridge(lab, crashing={RELEASE_MID})
    report = await upgrade(client, bridge)

    assert report.outcome == "rolled-back", report.message
    (svc,) = report.services
    steps = [(s.step, s.status) for s in svc.steps]
    # the expand ran, and the restore undid it (the report marks it compensated)
    assert ("expand", "compensated") in steps and ("rollout", "failed") in steps and ("restore", "done") in steps
    assert "742c857f1dfb" not in alembic_versions(lab)  # the expand was undone by the restore
    assert lab.keystone and lab.keystone.release == RELEASE_OLD and lab.keystone.ready()
    assert validate_token(lab, token) == 200
    assert sync_check(RELEASE_MID).state == "expand-needed"
    # compensations in reverse order: the old image back first, then the API down, restore, API up
    undo = bridge.calls.index(f"undo_images:registry.lab/keystone:{RELEASE_OLD}")
    assert bridge.calls[undo + 1 :] == ["scale:0", "scale:back"]
