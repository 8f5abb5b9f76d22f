"""An OnDelete DaemonSet on the Kubernetes lab: the rollout wait refuses it at once (its pods are
replaced only when deleted), and ``dataplane.replace`` replaces one node's pod and nothing else —
once (a retry finds it new and Ready), and never from a template that does not run the target."""

from __future__ import annotations

import time

import pytest
from temporalio.exceptions import ApplicationError

from activities.dataplane import replace
from activities.kube import set_images, wait_rollout
from model import errors
from model.io import SetImagesInput, WaitRolloutInput, WorkloadImage
from model.io_dataplane import ReplaceInput
from model.plan import KubeTarget
from tests.k8s.helpers import Recorder, create, list_pods, read, ref, workload
from tests.waiting import eventually_sync

V1, V2 = "registry.lab/nova:1", "registry.lab/nova:2"


def ondelete(name: str, image: str) -> dict[str, object]:
    ds = workload("DaemonSet", name, image)
    ds["spec"]["updateStrategy"] = {"type": "OnDelete"}
    return ds


def ready_pods(target: KubeTarget) -> dict[str, tuple[str, str]]:
    """node -> (pod, image of its app container) of the Ready, not terminating pods."""
    out = {}
    for pod in list_pods(target, "app=nova-compute"):
        conds = {c["type"]: c["status"] for c in pod.get("status", {}).get("conditions") or []}
        if conds.get("Ready") == "True" and not pod["metadata"].get("deletionTimestamp"):
            out[pod["spec"]["nodeName"]] = (pod["metadata"]["name"], pod["spec"]["containers"][0]["image"])
    return out


def every_node_ready(target: KubeTarget) -> dict[str, tuple[str, str]] | None:
    """The Ready pods once the DaemonSet has one on every node it wants (at least 2), else None:
    a node whose pod turns Ready later would look like a pod this test's replace created."""
    status = read(target, "DaemonSet", "nova-compute").get("status") or {}
    want = status.get("desiredNumberScheduled") or 0
    pods = ready_pods(target)
    return pods if want >= 2 and status.get("numberReady") == want and len(pods) == want else None


def test_ondelete_daemonset_rollout_refused_and_replaced_node_by_node(kube_target: KubeTarget) -> None:
    create(kube_target, ondelete("nova-compute", V1))
    before = eventually_sync(lambda: every_node_ready(kube_target), within=60, what="a Ready pod on every node")
    assert before
    t0 = time.monotonic()
    with pytest.raises(ApplicationError) as ei:
        Recorder().run(
            wait_rollout,
            WaitRolloutInput(target=kube_target, workloads=[ref("DaemonSet", "nova-compute")], timeout_seconds=120),
        )
    assert ei.value.type == errors.PLAN_INVALID and ei.value.non_retryable
    assert "replaced only when deleted" in ei.value.message and "`data_plane` block" in ei.value.message
    assert time.monotonic() - t0 < 60  # not the 120 s timeout

    node = sorted(before)[0]
    inp = ReplaceInput(target=kube_target, cloud="", node=node, daemonsets=["nova-compute"], images=[V2])
    with pytest.raises(ApplicationError) as ei:  # the template still runs V1: nothing is deleted
        Recorder().run(replace, inp)
    assert ei.value.type == errors.PLAN_INVALID and "template must change first" in ei.value.message
    assert ready_pods(kube_target) == before

    image = WorkloadImage(kind="DaemonSet", name="nova-compute", container="app", image=V2)
    Recorder().run(set_images, SetImagesInput(target=kube_target, images=[image]))
    rec = Recorder()
    done = rec.run(replace, inp)
    assert done.deleted == [before[node][0]] and not done.already
    assert done.pods and done.pods[0] != before[node][0] and V2 in done.images
    assert any(isinstance(b, dict) and b.get("waiting") for b in rec.beats)
    after = ready_pods(kube_target)
    assert after[node] == (done.pods[0], V2)
    assert {n: p for n, p in after.items() if n != node} == {n: p for n, p in before.items() if n != node}

    again = Recorder().run(replace, inp)  # a retry: the node's pod is new and Ready already
    assert again.already and again.deleted == [] and again.pods == done.pods
