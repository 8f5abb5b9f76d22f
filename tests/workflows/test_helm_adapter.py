"""A service under a Helm release: every change goes through the release (workflows/adapters.py),
and pre-flight refuses a plan whose way of changing a workload its owner would undo."""

from __future__ import annotations

from typing import Any

from temporalio.client import Client

from model import errors, io
from model.ownership import Owner
from tests.standins import Script
from tests.workflows.helpers import make_plan, outcome_of, running, service, start

IMAGE = "registry/keystone:29.1.0"
HELM = {
    "release": "keystone",
    "chart": "openstack-helm/keystone",
    "version": "2026.1.0",
    "image_values": {"images.tags.keystone_api": IMAGE, "images.tags.keystone_db_sync": IMAGE},
    "replica_values": {"keystone-api": "pod.replicas.api"},
}
PATCHES = {io.K8S_SET_IMAGES, io.K8S_UNDO_IMAGES, "k8s.scale:down", "k8s.scale:up"}


def helm_plan(**extra: Any) -> Any:
    return make_plan([service("keystone", helm=HELM, **extra)])


def owned_by(owner: Owner) -> io.ReadImagesResult:
    return io.ReadImagesResult(
        images=[
            io.WorkloadImage(
                kind="Deployment",
                name="keystone-api",
                container="keystone-api",
                image="registry/keystone:28.1.0",
                owner=owner,
            )
        ]
    )


RELEASE = Owner(kind="helm", name="keystone", namespace="openstack", via="annotation")


async def test_a_helm_upgrade_rolls_through_the_release_and_reports_its_revision(client: Client) -> None:
    script = Script()
    script.answers[io.K8S_READ_IMAGES] = owned_by(RELEASE)
    async with running(client, script) as tq:
        kind, report = await outcome_of(await start(client, helm_plan(), tq))
    assert kind == "succeeded", report.message
    assert not PATCHES & set(script.calls)
    roll = script.calls.index("helm.upgrade:roll")
    assert script.calls[roll - 2 : roll + 2] == [
        io.K8S_READ_IMAGES,
        io.HELM_STATUS,
        "helm.upgrade:roll",
        io.K8S_WAIT_ROLLOUT,
    ]
    (svc,) = report.services
    assert [(c.purpose, c.revision_before, c.revision) for c in svc.helm] == [("roll", 1, 2)]
    # pre-flight reports who owns each workload
    assert "Deployment/keystone-api: Helm release keystone in namespace openstack" in report.preflight[0].detail


async def test_a_failed_rollout_is_undone_by_helm_rollback_to_the_recorded_revision(client: Client) -> None:
    script = Script()
    script.answers[io.K8S_READ_IMAGES] = owned_by(RELEASE)
    script.fail[io.K8S_WAIT_ROLLOUT] = errors.ROLLOUT_FAILED
    script.fail_times[io.K8S_WAIT_ROLLOUT] = 1
    async with running(client, script) as tq:
        kind, report = await outcome_of(await start(client, helm_plan(), tq))
    assert kind == errors.UPGRADE_ROLLED_BACK
    assert not PATCHES & set(script.calls) and io.DB_RESTORE not in script.calls
    (svc,) = report.services
    assert svc.rollback and svc.rollback.kind == "images"
    assert [c.purpose for c in svc.helm] == ["roll", "rollback"]


async def test_a_restore_under_helm_quiesces_and_scales_back_through_the_release(client: Client) -> None:
    script = Script()
    script.answers[io.K8S_READ_IMAGES] = owned_by(RELEASE)
    script.fail["migration.db_sync:expand"] = errors.MIGRATION_FAILED
    async with running(client, script) as tq:
        kind, report = await outcome_of(await start(client, helm_plan(), tq))
    assert kind == errors.UPGRADE_ROLLED_BACK
    assert not PATCHES & set(script.calls)
    tail = script.calls[script.calls.index("helm.upgrade:quiesce") :]
    assert tail == ["helm.upgrade:quiesce", io.DB_INSPECT, io.DB_RESTORE, "helm.upgrade:unquiesce", io.K8S_WAIT_ROLLOUT]
    assert [c.purpose for c in report.services[0].helm] == ["quiesce", "unquiesce"]


async def test_preflight_refuses_to_patch_a_deployment_a_helm_release_owns(client: Client) -> None:
    script = Script()
    script.answers[io.K8S_READ_IMAGES] = owned_by(RELEASE)
    async with running(client, script) as tq:
        kind, report = await outcome_of(await start(client, make_plan(), tq))
    assert kind == errors.UPGRADE_FAILED
    assert script.calls == [io.K8S_READ_IMAGES]  # nothing else, nothing changed
    (pre,) = [r for r in report.preflight if r.status == "failed"]
    assert "Helm release keystone" in pre.detail and "helm:" in pre.detail


async def test_preflight_refuses_gitops_and_operator_owned_workloads_under_either_adapter(client: Client) -> None:
    owners = [
        Owner(kind="argocd", name="openstack", via="annotation argocd.argoproj.io/tracking-id"),
        Owner(kind="flux", name="HelmRelease keystone", namespace="openstack", via="label"),
        Owner(kind="operator", name="OpenStackDeployment/osh (lcm.mirantis.com/v1alpha1)", via="ownerReferences"),
    ]
    for owner in owners:
        for plan in (make_plan(), helm_plan()):
            script = Script()
            script.answers[io.K8S_READ_IMAGES] = owned_by(owner)
            async with running(client, script) as tq:
                kind, report = await outcome_of(await start(client, plan, tq))
            assert kind == errors.UPGRADE_FAILED, (owner, plan.services[0].helm)
            assert script.calls == [io.K8S_READ_IMAGES]
            assert str(owner) in report.message, report.message


async def test_preflight_names_a_missing_release(client: Client) -> None:
    script = Script()
    script.answers[io.K8S_READ_IMAGES] = owned_by(RELEASE)
    script.answers[io.HELM_STATUS] = io.HelmStatus(release="keystone", namespace="openstack", found=False)
    async with running(client, script) as tq:
        kind, report = await outcome_of(await start(client, helm_plan(), tq))
    assert kind == errors.UPGRADE_FAILED
    assert script.calls == [io.K8S_READ_IMAGES, io.HELM_STATUS]
    assert "Helm release keystone not found in namespace openstack" in report.message
