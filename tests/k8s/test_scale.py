"""k8s.scale on the real lab: quiesce and back, all-or-nothing requests, the restore from the
quiesce's own record, and "at 0" meaning no pod left (terminating ones included)."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client
from temporalio.exceptions import ApplicationError

from activities.kube import scale
from activities.kube_client import MERGE, api_client, call
from activities.kube_scale import REPLICAS_ANNOTATION
from model import errors
from model.io import ScaleInput, ScaleResult, WorkloadRef
from model.plan import KubeTarget
from tests.k8s.helpers import Background, Recorder, create, list_pods, read, ready, ref, workload
from tests.waiting import eventually_sync

pytestmark = pytest.mark.k8s

HOLD = "lab.stackhop.io/hold"  # a finalizer nobody removes but the test: the pod stays terminating


def test_scale_quiesce_and_restore(kube_target: KubeTarget) -> None:
    create(kube_target, workload("Deployment", "keystone-api", "registry.lab/keystone:1", replicas=3))
    create(kube_target, workload("StatefulSet", "keystone-cache", "registry.lab/memcached:1", replicas=2))
    refs = [ref("Deployment", "keystone-api"), ref("StatefulSet", "keystone-cache")]
    rec = Recorder()
    down = rec.run(scale, ScaleInput(target=kube_target, workloads=refs, change_id="u1", timeout_seconds=60))
    assert down.previous == {"keystone-api": 3, "keystone-cache": 2}
    assert read(kube_target, "Deployment", "keystone-api")["status"].get("replicas", 0) == 0
    assert list_pods(kube_target, "app=keystone-api") == [] and list_pods(kube_target, "app=keystone-cache") == []
    # a retried quiesce still reports the replicas from before the first attempt
    again = rec.run(scale, ScaleInput(target=kube_target, workloads=refs, change_id="u1", timeout_seconds=60))
    assert again.previous == down.previous
    up = rec.run(
        scale,
        ScaleInput(target=kube_target, workloads=refs, replicas=down.previous, change_id="u1", timeout_seconds=60),
    )
    assert up.previous == {"keystone-api": 0, "keystone-cache": 0}
    dep = read(kube_target, "Deployment", "keystone-api")
    assert dep["status"]["availableReplicas"] == 3
    assert REPLICAS_ANNOTATION not in (dep["metadata"].get("annotations") or {})
    assert read(kube_target, "StatefulSet", "keystone-cache")["status"]["readyReplicas"] == 2


def _untouched(target: KubeTarget, name: str, before: dict[str, Any]) -> None:
    now = read(target, "Deployment", name)
    assert now["spec"]["replicas"] == before["spec"]["replicas"]
    assert now["metadata"]["generation"] == before["metadata"]["generation"]
    assert REPLICAS_ANNOTATION not in (now["metadata"].get("annotations") or {})


@pytest.mark.parametrize(
    ("bad", "kind", "words"),
    [
        (ref("DaemonSet", "nova-compute"), errors.PLAN_INVALID, "a DaemonSet is never scaled"),
        (ref("Deployment", "no-such-api"), errors.WORKLOAD_NOT_FOUND, "'no-such-api' in namespace"),
        (ref("Deployment", "keystone-api", "no-such-container"), errors.PLAN_INVALID, "no container"),
    ],
    ids=["daemonset", "missing-workload", "missing-container"],
)
def test_a_bad_request_patches_nothing(kube_target: KubeTarget, bad: WorkloadRef, kind: str, words: str) -> None:
    """The good workload comes first in the request: it is still not patched."""
    create(kube_target, workload("Deployment", "keystone-api", "registry.lab/keystone:1", replicas=2))
    create(kube_target, workload("DaemonSet", "nova-compute", "registry.lab/nova:1"))
    before = read(kube_target, "Deployment", "keystone-api")
    for replicas in (None, {"keystone-api": 5}):
        with pytest.raises(ApplicationError) as ei:
            Recorder().run(
                scale,
                ScaleInput(
                    target=kube_target,
                    workloads=[ref("Deployment", "keystone-api"), bad],
                    replicas=replicas,
                    change_id="u1",
                ),
            )
        assert ei.value.type == kind and ei.value.non_retryable
        assert words in str(ei.value) and "nothing was scaled" in str(ei.value)
        _untouched(kube_target, "keystone-api", before)


def test_restore_scales_back_what_the_same_change_quiesced(kube_target: KubeTarget) -> None:
    """An unquiesce registered before its quiesce ran is harmless; after it, it restores exactly."""
    create(kube_target, workload("Deployment", "keystone-api", "registry.lab/keystone:1", replicas=3))
    create(kube_target, workload("Deployment", "keystone-admin", "registry.lab/keystone:1", replicas=2))
    refs = [ref("Deployment", "keystone-api"), ref("Deployment", "keystone-admin")]
    ready(kube_target, "Deployment", "keystone-api")

    def restore(change: str) -> ScaleResult:
        inp = ScaleInput(target=kube_target, workloads=refs, restore=True, change_id=change, timeout_seconds=60)
        result: ScaleResult = Recorder().run(scale, inp)
        return result

    # before any quiesce: nothing to restore, nothing changes
    before = read(kube_target, "Deployment", "keystone-api")
    assert restore("u1").previous == {"keystone-api": 3, "keystone-admin": 2}
    _untouched(kube_target, "keystone-api", before)

    # keystone-api quiesced under u1; keystone-admin under another change (u0)
    Recorder().run(scale, ScaleInput(target=kube_target, workloads=refs[:1], change_id="u1", timeout_seconds=60))
    Recorder().run(scale, ScaleInput(target=kube_target, workloads=refs[1:], change_id="u0", timeout_seconds=60))
    assert restore("u1").previous == {"keystone-api": 0, "keystone-admin": 0}
    api = read(kube_target, "Deployment", "keystone-api")
    assert api["spec"]["replicas"] == 3 and api["status"]["availableReplicas"] == 3
    assert REPLICAS_ANNOTATION not in (api["metadata"].get("annotations") or {})
    admin = read(kube_target, "Deployment", "keystone-admin")
    assert admin["spec"]["replicas"] == 0  # not quiesced by u1: left as it is, its record kept
    assert REPLICAS_ANNOTATION in admin["metadata"]["annotations"]
    # a retried restore finds nothing more to do
    assert restore("u1").previous == {"keystone-api": 3, "keystone-admin": 0}
    assert read(kube_target, "Deployment", "keystone-api")["spec"]["replicas"] == 3


def _set_finalizers(target: KubeTarget, pod: str, finalizers: list[str] | None) -> None:
    with api_client(target) as api:
        patch = {"metadata": {"finalizers": finalizers}}
        call(client.CoreV1Api(api).patch_namespaced_pod, pod, target.namespace, patch, _content_type=MERGE)


def test_scale_to_zero_waits_for_terminating_pods(kube_target: KubeTarget) -> None:
    """The workload's status says 0 replicas while a pod still terminates: the quiesce waits for it,
    heartbeating how many are left, and returns only once it is gone."""
    create(kube_target, workload("Deployment", "glance-api", "registry.lab/glance:1", replicas=1))
    ready(kube_target, "Deployment", "glance-api")
    (pod,) = [p["metadata"]["name"] for p in list_pods(kube_target, "app=glance-api")]
    _set_finalizers(kube_target, pod, [HOLD])
    rec = Recorder()
    quiesce = Background(
        rec, scale, ScaleInput(target=kube_target, workloads=[ref("Deployment", "glance-api")], timeout_seconds=60)
    )
    try:
        eventually_sync(
            lambda: any(isinstance(b, dict) and b.get("terminating") == 1 for b in list(rec.beats)),
            within=30,
            what="a heartbeat counting the terminating pod",
        )
        assert quiesce.thread.is_alive()
        assert read(kube_target, "Deployment", "glance-api")["status"].get("replicas", 0) == 0
    finally:
        _set_finalizers(kube_target, pod, None)
    quiesce.join(30)
    assert quiesce.error is None and quiesce.result.previous == {"glance-api": 1}
    assert list_pods(kube_target, "app=glance-api") == []
