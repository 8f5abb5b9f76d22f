"""Waits under stress: cancelled mid-wait, and the apiserver restarted mid-wait."""

from __future__ import annotations

import dataclasses
import time
from datetime import timedelta
from typing import Any

import pytest
from kubernetes import client
from temporalio.exceptions import ApplicationError, CancelledError

from activities.kube import RunJobInput, run_job, wait_rollout
from activities.kube_client import api_client
from activities.kube_watch import follow, heartbeat
from lab.k8s.cluster import KubeLab
from model.io import WaitRolloutInput, WorkloadRef
from model.plan import KubeTarget
from tests.k8s.helpers import Background, Recorder, create, job, read, ready, set_image, workload

pytestmark = pytest.mark.k8s


def test_cancel_mid_wait_stops_cleanly(kube_target: KubeTarget) -> None:
    create(kube_target, workload("Deployment", "octavia-api", "registry.lab/octavia:1"))
    ready(kube_target, "Deployment", "octavia-api")
    set_image(kube_target, "Deployment", "octavia-api", "registry.lab/octavia:never-ready")
    rec = Recorder()
    bg = Background(
        rec,
        wait_rollout,
        WaitRolloutInput(
            target=kube_target,
            workloads=[WorkloadRef(kind="Deployment", name="octavia-api", container="app")],
            timeout_seconds=300,
        ),
    )
    rec.wait_for_step("wait_rollout")  # inside the wait, which cannot end: the image never turns ready
    assert bg.thread.is_alive()
    t0 = time.monotonic()
    rec.env.cancel()
    bg.join(10)
    assert isinstance(bg.error, CancelledError), bg.error
    assert time.monotonic() - t0 < 6
    assert rec.beats  # it was heartbeating while it waited


def test_cancel_job_wait(kube_target: KubeTarget) -> None:
    rec = Recorder()
    bg = Background(
        rec,
        run_job,
        RunJobInput(
            target=kube_target,
            step="slow",
            run_id="run-1",
            timeout_seconds=300,
            manifest=job("registry.lab/x:slow-job", delay="120s"),
        ),
    )
    rec.wait_for_step("run_job")  # the Job exists and the activity waits on it (its pod runs 120 s)
    rec.env.cancel()
    bg.join(10)
    assert isinstance(bg.error, CancelledError), bg.error


def test_apiserver_restart_mid_wait(k8s_lab: KubeLab, kube_target: KubeTarget) -> None:
    # each new pod turns Ready 6 s after it appears (slow-ready stage): the rollout spans the restart
    create(
        kube_target,
        workload(
            "Deployment", "placement-api", "registry.lab/placement:1", annotations={"lab.stackhop.io/delay": "6s"}
        ),
    )
    ready(kube_target, "Deployment", "placement-api")
    set_image(kube_target, "Deployment", "placement-api", "registry.lab/placement:2-slow-ready")
    rec = Recorder()
    bg = Background(
        rec,
        wait_rollout,
        WaitRolloutInput(
            target=kube_target,
            workloads=[WorkloadRef(kind="Deployment", name="placement-api", container="app")],
            timeout_seconds=120,
        ),
    )
    rec.wait_for_step("wait_rollout")  # the wait has begun (new pods turn ready only after 6 s)
    k8s_lab.restart_apiserver(downtime=3)
    bg.join(90)
    assert bg.error is None, bg.error
    assert bg.result.workloads[0].ready
    assert any("unreachable" in str(b.get("message", "")) for b in rec.beats if isinstance(b, dict))
    dep = read(kube_target, "Deployment", "placement-api")
    assert dep["status"]["updatedReplicas"] == dep["status"]["availableReplicas"] == 2


def test_retried_wait_keeps_the_original_deadline(kube_target: KubeTarget) -> None:
    """A retry (or a worker restart) resumes the wait with the deadline of the first attempt,
    read back from its heartbeat details: retries never stretch the plan's rollout timeout."""
    create(kube_target, workload("Deployment", "magnum-api", "registry.lab/magnum:1"))
    ready(kube_target, "Deployment", "magnum-api")
    set_image(kube_target, "Deployment", "magnum-api", "registry.lab/magnum:never-ready")
    rec = Recorder()
    rec.env.info = dataclasses.replace(rec.env.info, attempt=2, heartbeat_details=[{"started_at": time.time() - 55}])
    t0 = time.monotonic()
    with pytest.raises(ApplicationError) as ei:
        rec.run(
            wait_rollout,
            WaitRolloutInput(
                target=kube_target,
                timeout_seconds=60,
                workloads=[WorkloadRef(kind="Deployment", name="magnum-api", container="app")],
            ),
        )
    assert "within 60s" in str(ei.value)
    assert time.monotonic() - t0 < 15  # ~5 s left of the first attempt's 60 s, not a fresh 60 s
    assert all(
        b.get("started_at") == rec.env.info.heartbeat_details[0]["started_at"]
        for b in rec.beats
        if isinstance(b, dict) and "message" in b
    )


def test_a_quiet_wait_is_one_watch_request_that_heartbeats_while_its_read_blocks(kube_target: KubeTarget) -> None:
    """A watch lasts until the apiserver ends it (kube_watch.WATCH_WINDOW) or the deadline: it is not cut
    every few seconds to heartbeat. The pulse thread re-sends the last heartbeat meanwhile."""
    create(kube_target, workload("Deployment", "zaqar-api", "registry.lab/zaqar:1"))
    ready(kube_target, "Deployment", "zaqar-api")
    rec = Recorder()
    rec.env.info = dataclasses.replace(rec.env.info, heartbeat_timeout=timedelta(seconds=1.5))  # a pulse each 0.5 s
    watches: list[float] = []

    def observe(_: object) -> list[str]:
        with api_client(kube_target) as api:
            apps = client.AppsV1Api(api)

            def list_fn(*args: Any, **kwargs: Any) -> Any:
                if kwargs.get("watch"):
                    watches.append(time.monotonic())
                return apps.list_namespaced_deployment(*args, **kwargs)

            seen = []
            for ev in follow(list_fn, kube_target.namespace, "zaqar-api", deadline=time.monotonic() + 4):
                seen.append(ev.kind)
                heartbeat(seen=len(seen))
            return seen

    seen = rec.run(observe, None)
    assert seen == ["object", "tick"]  # the list, then the one watch ended by the server after the deadline
    assert len(watches) == 1
    assert rec.beats.count({"seen": 1}) >= 4  # re-sent by the pulse while the read blocked for ~4 s
