"""Rollouts on the real lab: read/set images, wait like kubectl, fail on a stuck rollout, undo."""

from __future__ import annotations

import time

import pytest
from kubernetes import client
from temporalio.exceptions import ApplicationError

from activities.kube import read_images, set_images, undo_images, wait_rollout
from activities.kube_client import api_client, call
from activities.kube_rollout import PREVIOUS_ANNOTATION
from model import errors
from model.io import (
    ReadImagesInput,
    SetImagesInput,
    UndoImagesInput,
    WaitRolloutInput,
    WorkloadImage,
)
from model.plan import KubeTarget, WorkloadKind
from tests.k8s.helpers import (
    Background,
    Recorder,
    create,
    images_of,
    list_pods,
    read,
    ready,
    ref,
    set_image,
    workload,
)
from tests.waiting import eventually_sync

pytestmark = pytest.mark.k8s

KINDS = ["Deployment", "StatefulSet", "DaemonSet"]
HOLD = "test.stackhop.io/container-running"


@pytest.mark.parametrize("kind", KINDS)
def test_rollout_success(kube_target: KubeTarget, kind: WorkloadKind) -> None:
    create(kube_target, workload(kind, "api", "registry.lab/keystone:28.1.0"))
    ready(kube_target, kind, "api")
    rec = Recorder()
    cur = rec.run(read_images, ReadImagesInput(target=kube_target, workloads=[ref(kind, "api")]))
    assert cur.images[0].image == "registry.lab/keystone:28.1.0" and cur.images[0].found

    target_img = WorkloadImage(kind=kind, name="api", container="app", image="registry.lab/keystone:29.1.0")
    res = rec.run(set_images, SetImagesInput(target=kube_target, images=[target_img]))
    assert [p.image for p in res.previous] == ["registry.lab/keystone:28.1.0"]
    obj = read(kube_target, kind, "api")
    assert images_of(obj) == {"app": "registry.lab/keystone:29.1.0", "sidecar": "registry.lab/sidecar:1.0"}

    out = rec.run(wait_rollout, WaitRolloutInput(target=kube_target, workloads=[ref(kind, "api")], timeout_seconds=90))
    assert out.workloads[0].ready and out.workloads[0].name == "api"
    assert "rolled out" in out.workloads[0].message or "complete" in out.workloads[0].message
    # every pod of the workload now runs the new image (the rollout really happened)
    pods = list_pods(kube_target, "app=api")
    assert pods and all(
        {c["name"]: c["image"] for c in p["spec"]["containers"]}["app"] == "registry.lab/keystone:29.1.0"
        for p in pods
        if not p["metadata"].get("deletionTimestamp")
    )
    # heartbeats carry progress details naming the workload
    beats = [b for b in rec.beats if isinstance(b, dict) and b.get("step") == "wait_rollout"]
    assert beats and any(b.get("workload") == f"{kind}/api" and b.get("message") for b in beats)


def test_a_deployment_rollout_waits_until_its_old_pods_have_terminated(kube_target: KubeTarget) -> None:
    """The old pod is held Terminating (a finalizer, as a kubelet holds a pod until its container
    exited): the rollout is not done while it is there, though kubectl would call it done."""
    create(kube_target, workload("Deployment", "held", "registry.lab/keystone:28.1.0", replicas=1))
    ready(kube_target, "Deployment", "held")
    (old,) = [p["metadata"]["name"] for p in list_pods(kube_target, "app=held")]
    patch_pod(kube_target, old, {"metadata": {"finalizers": [HOLD]}})
    set_image(kube_target, "Deployment", "held", "registry.lab/keystone:29.1.0")
    rec = Recorder()
    inp = WaitRolloutInput(target=kube_target, workloads=[ref("Deployment", "held")], timeout_seconds=90)
    waiting = Background(rec, wait_rollout, inp)
    eventually_sync(
        lambda: any("still terminating" in str(b.get("message")) for b in rec.beats if isinstance(b, dict)),
        within=60,
        what="a heartbeat saying the old pod is still terminating",
    )
    assert waiting.thread.is_alive() and waiting.error is None  # still waiting: no result yet
    patch_pod(kube_target, old, {"metadata": {"$deleteFromPrimitiveList/finalizers": [HOLD]}})  # the container exited
    waiting.join(60)
    assert waiting.error is None and waiting.result.workloads[0].ready
    assert old not in {p["metadata"]["name"] for p in list_pods(kube_target, "app=held")}


def patch_pod(target: KubeTarget, name: str, body: dict[str, object]) -> None:
    with api_client(target) as api:
        call(client.CoreV1Api(api).patch_namespaced_pod, name, target.namespace, body)


def test_never_ready_fails_on_progress_deadline(kube_target: KubeTarget) -> None:
    create(kube_target, workload("Deployment", "glance-api", "registry.lab/glance:1", deadline=5))
    ready(kube_target, "Deployment", "glance-api")
    rec = Recorder()
    set_image(kube_target, "Deployment", "glance-api", "registry.lab/glance:2-never-ready", rec)
    t0 = time.monotonic()
    with pytest.raises(ApplicationError) as ei:
        rec.run(
            wait_rollout,
            WaitRolloutInput(target=kube_target, workloads=[ref("Deployment", "glance-api")], timeout_seconds=120),
        )
    elapsed = time.monotonic() - t0
    err = ei.value
    assert err.type == errors.ROLLOUT_FAILED and err.non_retryable
    assert "glance-api" in str(err) and "progress deadline" in str(err)
    assert kube_target.namespace in str(err)
    assert elapsed < 60, f"took {elapsed:.0f}s"


@pytest.mark.parametrize("kind", ["StatefulSet", "DaemonSet"])
def test_never_ready_fails_on_plan_timeout(kube_target: KubeTarget, kind: WorkloadKind) -> None:
    create(kube_target, workload(kind, "nova-compute", "registry.lab/nova:1"))
    ready(kube_target, kind, "nova-compute")
    rec = Recorder()
    rec.run(
        set_images,
        SetImagesInput(
            target=kube_target,
            images=[
                WorkloadImage(kind=kind, name="nova-compute", container="app", image="registry.lab/nova:2-never-ready")
            ],
        ),
    )
    t0 = time.monotonic()
    with pytest.raises(ApplicationError) as ei:
        rec.run(
            wait_rollout, WaitRolloutInput(target=kube_target, workloads=[ref(kind, "nova-compute")], timeout_seconds=6)
        )
    assert ei.value.type == errors.ROLLOUT_FAILED and ei.value.non_retryable
    assert "nova-compute" in str(ei.value) and "within 6s" in str(ei.value)
    assert 5 <= time.monotonic() - t0 < 20


def test_undo_restores_exact_previous_images(kube_target: KubeTarget) -> None:
    create(
        kube_target,
        workload(
            "Deployment",
            "neutron-server",
            "registry.lab/neutron:27.0.0",
            deadline=5,
            sidecar="registry.lab/ovs-agent:27.0.0",
        ),
    )
    ready(kube_target, "Deployment", "neutron-server")
    before = images_of(read(kube_target, "Deployment", "neutron-server"))
    rec = Recorder()
    res = rec.run(
        set_images,
        SetImagesInput(
            target=kube_target,
            images=[
                WorkloadImage(
                    kind="Deployment",
                    name="neutron-server",
                    container="app",
                    image="registry.lab/neutron:28.0.0-never-ready",
                ),
                WorkloadImage(
                    kind="Deployment", name="neutron-server", container="sidecar", image="registry.lab/ovs-agent:28.0.0"
                ),
            ],
        ),
    )
    assert {p.container: p.image for p in res.previous} == before
    with pytest.raises(ApplicationError):
        rec.run(
            wait_rollout,
            WaitRolloutInput(target=kube_target, workloads=[ref("Deployment", "neutron-server")], timeout_seconds=60),
        )

    out = rec.run(undo_images, UndoImagesInput(target=kube_target, previous=res.previous, timeout_seconds=60))
    assert out.workloads[0].ready
    obj = read(kube_target, "Deployment", "neutron-server")
    assert images_of(obj) == before
    assert PREVIOUS_ANNOTATION not in (obj["metadata"].get("annotations") or {})


def test_set_images_retry_keeps_original_previous(kube_target: KubeTarget) -> None:
    """A retried set_images (first attempt already patched) still reports the original image."""
    create(kube_target, workload("Deployment", "cinder-api", "registry.lab/cinder:1"))
    inp = SetImagesInput(
        target=kube_target,
        change_id="upgrade-42",
        images=[WorkloadImage(kind="Deployment", name="cinder-api", container="app", image="registry.lab/cinder:2")],
    )
    first = Recorder().run(set_images, inp)
    second = Recorder().run(set_images, inp)
    assert [p.image for p in first.previous] == [p.image for p in second.previous] == ["registry.lab/cinder:1"]
    # a different change finds the workload already at target: nothing to undo
    other = Recorder().run(set_images, inp.model_copy(update={"change_id": "upgrade-43"}))
    assert [p.image for p in other.previous] == ["registry.lab/cinder:2"]


def test_missing_workload_and_container(kube_target: KubeTarget) -> None:
    rec = Recorder()
    out = rec.run(read_images, ReadImagesInput(target=kube_target, workloads=[ref("Deployment", "nope")]))
    assert out.images[0].found is False and out.images[0].image is None
    with pytest.raises(ApplicationError) as ei:
        rec.run(
            set_images,
            SetImagesInput(
                target=kube_target, images=[WorkloadImage(kind="Deployment", name="nope", container="app", image="x:1")]
            ),
        )
    assert ei.value.type == errors.WORKLOAD_NOT_FOUND and ei.value.non_retryable and "nope" in str(ei.value)
    create(kube_target, workload("Deployment", "heat-api", "registry.lab/heat:1"))
    with pytest.raises(ApplicationError) as ei:
        rec.run(
            set_images,
            SetImagesInput(
                target=kube_target,
                images=[WorkloadImage(kind="Deployment", name="heat-api", container="heat-engine", image="x:1")],
            ),
        )
    assert ei.value.type == errors.WORKLOAD_NOT_FOUND and "heat-engine" in str(ei.value)
    with pytest.raises(ApplicationError) as ei:
        rec.run(
            wait_rollout,
            WaitRolloutInput(target=kube_target, workloads=[ref("StatefulSet", "gone")], timeout_seconds=5),
        )
    assert ei.value.type == errors.WORKLOAD_NOT_FOUND


def test_bad_context_is_permanent(kube_target: KubeTarget) -> None:
    bad = kube_target.model_copy(update={"context": "no-such-context"})
    with pytest.raises(ApplicationError) as ei:
        Recorder().run(read_images, ReadImagesInput(target=bad, workloads=[ref("Deployment", "x")]))
    assert ei.value.type == errors.PLAN_INVALID and ei.value.non_retryable
    assert "no-such-context" in str(ei.value)
