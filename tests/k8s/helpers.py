"""Manifests and small utilities for the k8s activity tests (real lab, no mocks).

Shared by several test modules, so they live here and not in a test module."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from temporalio.testing import ActivityEnvironment

from activities.kube import set_images, wait_rollout
from activities.kube_client import api_client, call
from model.io import SetImagesInput, SetImagesResult, WaitRolloutInput, WorkloadImage, WorkloadRef
from model.plan import KubeTarget, WorkloadKind
from tests.waiting import eventually_sync

Manifest = dict[str, Any]

LABELS = {"app": "demo"}


def pod_spec(image: str, sidecar: str | None = "registry.lab/sidecar:1.0", **extra: Any) -> Manifest:
    containers = [{"name": "app", "image": image}]
    if sidecar:
        containers.append({"name": "sidecar", "image": sidecar})
    return {"containers": containers, "terminationGracePeriodSeconds": 0, **extra}


def workload(
    kind: str,
    name: str,
    image: str,
    *,
    replicas: int = 2,
    deadline: int = 600,
    annotations: dict[str, str] | None = None,
    sidecar: str | None = "registry.lab/sidecar:1.0",
) -> Manifest:
    labels = {"app": name}
    template = {"metadata": {"labels": labels, "annotations": annotations or {}}, "spec": pod_spec(image, sidecar)}
    spec: dict[str, Any] = {"selector": {"matchLabels": labels}, "template": template}
    if kind == "Deployment":
        spec.update(replicas=replicas, progressDeadlineSeconds=deadline)
    elif kind == "StatefulSet":
        spec.update(replicas=replicas, serviceName=name, podManagementPolicy="Parallel")
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name}, "spec": spec}


def create(target: KubeTarget, obj: Manifest) -> Manifest:
    suffix = {"Deployment": "deployment", "StatefulSet": "stateful_set", "DaemonSet": "daemon_set"}
    with api_client(target) as api:
        if obj["kind"] == "Job":
            return call(client.BatchV1Api(api).create_namespaced_job, target.namespace, obj)
        fn = getattr(client.AppsV1Api(api), f"create_namespaced_{suffix[obj['kind']]}")
        return call(fn, target.namespace, obj)


def read(target: KubeTarget, kind: str, name: str) -> Manifest:
    suffix = {"Deployment": "deployment", "StatefulSet": "stateful_set", "DaemonSet": "daemon_set", "Job": "job"}
    with api_client(target) as api:
        mod = client.BatchV1Api(api) if kind == "Job" else client.AppsV1Api(api)
        return call(getattr(mod, f"read_namespaced_{suffix[kind]}"), name, target.namespace)


def list_jobs(target: KubeTarget) -> list[Manifest]:
    with api_client(target) as api:
        items: list[Manifest] = call(client.BatchV1Api(api).list_namespaced_job, target.namespace)["items"]
        return items


def list_pods(target: KubeTarget, selector: str = "") -> list[Manifest]:
    with api_client(target) as api:
        items: list[Manifest] = call(
            client.CoreV1Api(api).list_namespaced_pod, target.namespace, label_selector=selector
        )["items"]
        return items


def images_of(obj: Manifest) -> dict[str, str]:
    return {c["name"]: c["image"] for c in obj["spec"]["template"]["spec"]["containers"]}


class Recorder:
    """An ActivityEnvironment that keeps every heartbeat."""

    def __init__(self) -> None:
        self.env = ActivityEnvironment()
        self.beats: list[Any] = []
        self.env.on_heartbeat = lambda *details: self.beats.append(details[0] if details else None)

    def steps(self) -> list[str]:
        """The ``step`` of every dict heartbeat so far (what the activity said it was doing)."""
        return [b["step"] for b in list(self.beats) if isinstance(b, dict) and "step" in b]

    def wait_for_step(self, step: str, within: float = 30) -> None:
        """Wait until the activity has heartbeated from ``step`` (it is inside that wait)."""
        eventually_sync(lambda: step in self.steps(), within=within, what=f"a {step!r} heartbeat")

    def run(self, fn: Callable[[Any], Any], arg: Any) -> Any:
        return self.env.run(fn, arg)


class Background:
    """Run an activity in a thread (as the worker's thread pool does) and collect the outcome."""

    def __init__(self, rec: Recorder, fn: Callable[[Any], Any], arg: Any) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(rec, fn, arg), daemon=True)
        self.thread.start()

    def _run(self, rec: Recorder, fn: Callable[[Any], Any], arg: Any) -> None:
        try:
            self.result = rec.run(fn, arg)
        except BaseException as exc:
            self.error = exc

    def join(self, timeout: float) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), f"activity still running after {timeout}s"


def ref(kind: WorkloadKind, name: str, container: str = "app") -> WorkloadRef:
    return WorkloadRef(kind=kind, name=name, container=container)


def set_image(
    target: KubeTarget, kind: WorkloadKind, name: str, image: str, rec: Recorder | None = None
) -> SetImagesResult:
    """Set the ``app`` container's image through the set_images activity (``rec`` keeps its record)."""
    images = [WorkloadImage(kind=kind, name=name, container="app", image=image)]
    result: SetImagesResult = (rec or Recorder()).run(set_images, SetImagesInput(target=target, images=images))
    return result


def ready(target: KubeTarget, kind: WorkloadKind, name: str, timeout: int = 60) -> None:
    """Wait (as the activity does, like ``kubectl rollout status``) until the workload is rolled out."""
    Recorder().run(wait_rollout, WaitRolloutInput(target=target, workloads=[ref(kind, name)], timeout_seconds=timeout))


def job(image: str, *, delay: str | None = None) -> Manifest:
    """A db-sync Job; ``delay`` (lab annotation) keeps its pod running that long before it exits."""
    ann = {"lab.stackhop.io/delay": delay} if delay else {}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"annotations": ann},
                "spec": {
                    "restartPolicy": "Never",
                    "terminationGracePeriodSeconds": 0,
                    "containers": [{"name": "db-sync", "image": image, "command": ["keystone-manage", "db_sync"]}],
                },
            },
        },
    }


def token_kubeconfig(admin_kubeconfig: Path, token: str, path: Path) -> Path:
    """A kubeconfig at ``path`` for the admin's cluster with a ServiceAccount's token (context and
    user ``worker``): what the worker's own identity may do, nothing the admin's certificate adds."""
    cluster = yaml.safe_load(admin_kubeconfig.read_text())["clusters"][0]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "worker",
        "clusters": [cluster],
        "users": [{"name": "worker", "user": {"token": token}}],
        "contexts": [{"name": "worker", "context": {"cluster": cluster["name"], "user": "worker"}}],
    }
    path.write_text(yaml.safe_dump(config))
    return path
