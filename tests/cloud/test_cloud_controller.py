"""The cloud controller plays the kubelet for the cloud's pods on the Kubernetes lab.

The cloud here is a stand-in with the cloud lab's pod API (start_pod / stop_pod / pod_ready / pods)
whose programs are real processes (a small HTTP server per pod on its own loopback port): what is
under test is the controller's side — which pods it starts, with which release and host, when it
marks them Ready, that it stops deleted pods, and that a program that exits makes its pod unready with
a restart count, as a kubelet does. The real cloud behind the same controller is
tests/cloud/test_cloud_k8s.py's.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config

from lab.cloud_controller import CloudController, node_crashing, release_of, workload_of
from lab.cloud_k8s import COMPUTE_SELECTOR, NODE_LABELS, KubeCloud, chart, compute_override, values
from lab.helm import Helm
from lab.k8s.cluster import KubeLab
from lab.openstack import procs
from lab.openstack.paths import free_port
from model.plan import KubeTarget
from tests.waiting import eventually_sync


@dataclass
class Proc:
    pid: int
    port: int
    service: str
    workload: str
    release: str
    host: str


class ProcessCloud:
    """The cloud lab's pod API over real processes: one `python -m http.server` per pod."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self._procs: dict[str, Proc] = {}
        self._lock = threading.Lock()

    def start_pod(self, service: str, workload: str, release: str, pod: str, host: str) -> Proc:
        port = free_port()
        argv = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)]
        pid = procs.start_detached(argv, self.base / f"{pod}.log", cwd=self.base)
        proc = Proc(pid, port, service, workload, release, host)
        with self._lock:
            self._procs[pod] = proc
        return proc

    def stop_pod(self, pod: str) -> None:
        with self._lock:
            proc = self._procs.pop(pod, None)
        if proc:
            procs.stop(proc.pid)

    def pod_ready(self, pod: str) -> bool:
        proc = self._procs.get(pod)
        if proc is None or not procs.alive(proc.pid):
            return False
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", proc.port)) == 0

    @property
    def pods(self) -> dict[str, Proc]:
        with self._lock:
            return dict(self._procs)

    def of(self, service: str) -> dict[str, Proc]:
        return {n: p for n, p in self.pods.items() if p.service == service}

    def down(self) -> None:
        for pod in list(self.pods):
            self.stop_pod(pod)


@pytest.fixture
def stand_in(k8s_lab: KubeLab, kube_target: KubeTarget, tmp_path: Path) -> Iterator[tuple[ProcessCloud, Helm, Any]]:
    k8s_lab.kubectl_run("label", "nodes", "--all", "--overwrite", *NODE_LABELS)
    cloud = ProcessCloud(tmp_path)
    helm = Helm(k8s_lab.kubeconfig, kube_target.namespace, kube_target.context)
    api = config.new_client_from_config(config_file=kube_target.kubeconfig, context=kube_target.context)
    try:
        yield cloud, helm, client.CoreV1Api(api)
    finally:
        cloud.down()


def controller(
    kube_target: KubeTarget,
    cloud: ProcessCloud,
    crashing: frozenset[str] = frozenset(),
    on_deleted: Callable[[str, Any], None] | None = None,
) -> CloudController:
    assert kube_target.kubeconfig
    return CloudController(
        cloud,
        Path(kube_target.kubeconfig),
        kube_target.namespace,
        ["placement", "nova"],
        context=kube_target.context,
        crashing=crashing,
        on_deleted=on_deleted,
    )


def ready(core: Any, namespace: str, selector: str) -> dict[str, Any]:
    pods: list[Any] = core.list_namespaced_pod(namespace, label_selector=selector).items
    return {
        p.metadata.name: p
        for p in pods
        if p.metadata.deletion_timestamp is None
        and any(c.type == "Ready" and c.status == "True" for c in (p.status.conditions or []))
    }


def test_release_and_workload_from_the_pod() -> None:
    assert release_of("quay.io/airshipit/nova:2025.2-ubuntu_noble") == "2025.2"
    assert release_of("registry.lab/placement:2026.1") == "2026.1"
    assert release_of("registry.lab/keystone:28.1.0", {"2025.2": "28.1.0"}) == "2025.2"
    assert release_of("quay.io/airshipit/nova:2025.21-ubuntu_noble") is None
    assert release_of("quay.io/airshipit/nova:latest") is None
    pod = client.V1Pod(metadata=client.V1ObjectMeta(labels={"application": "nova", "component": "api-osapi"}))
    assert workload_of(pod) == ("nova", "nova-api-osapi")
    assert workload_of(client.V1Pod(metadata=client.V1ObjectMeta(labels={"app": "x"}))) is None


def test_a_chart_upgrade_rolls_the_processes_one_surge_pod_at_a_time(
    stand_in: tuple[ProcessCloud, Helm, Any], kube_target: KubeTarget
) -> None:
    cloud, helm, core = stand_in
    ns, selector = kube_target.namespace, "application=placement"
    with controller(kube_target, cloud) as ctl:
        helm.install("placement", chart("placement"), values=[values("placement")], timeout="60s")
        first = ready(core, ns, selector)
        assert len(first) == 2
        assert {p.release for p in cloud.of("placement").values()} == {"2025.2"}
        assert set(cloud.of("placement")) == set(first)
        assert {(p.workload, p.host) for p in cloud.pods.values()} == {
            ("placement-api", first[n].spec.node_name) for n in first
        }
        helm.upgrade("placement", chart("placement", "2026.1"), values=[values("placement")], timeout="60s")
        eventually_sync(lambda: set(cloud.pods) == set(ready(core, ns, selector)), within=30, what="pods = processes")
        assert {p.release for p in cloud.pods.values()} == {"2026.1"}
        assert not set(first) & set(cloud.pods)  # every old pod's process stopped
        assert set(first) <= set(ctl.stopped)
        assert [r for _, r in ctl.started] == ["2025.2", "2025.2", "2026.1", "2026.1"]


def test_nova_compute_per_node_from_ondelete_daemonsets_replaced_by_deletion_and_one_node_crashing(
    stand_in: tuple[ProcessCloud, Helm, Any], kube_target: KubeTarget, k8s_lab: KubeLab, tmp_path: Path
) -> None:
    """nova's chart with the lab's values and one per-node override: a nova-compute on every node, host
    = the node, from two OnDelete DaemonSets (default, and the override pinned to its node), both with
    nova's data plane labels. A chart upgrade (values reused) leaves the computes at 2025.2; a deleted
    compute pod is handed to ``on_deleted`` while its process still runs, then replaced at 2026.1 —
    except on the node ``nova@<node>:2026.1`` names, whose new pod never starts."""
    cloud, helm, core = stand_in
    ns = kube_target.namespace
    nodes = sorted(n.metadata.name for n in core.list_node().items)
    assert len(nodes) >= 3
    pinned, crashing, replaced = nodes[-1], nodes[0], nodes[1]
    override = tmp_path / "override.yaml"
    override.write_text(yaml.safe_dump(compute_override(pinned)))
    deleted: list[tuple[str, str, bool, bool]] = []  # (pod, node, its process running, the pod Terminating) when told

    def computes() -> dict[str, tuple[str, str]]:
        """node -> (pod, release) of every compute process."""
        return {p.host: (n, p.release) for n, p in cloud.of("nova").items() if p.workload == "nova-compute"}

    def told(pod: str, proc: Any) -> None:
        if proc.workload == "nova-compute":  # the chart upgrade replaces the API's pods too
            running = pod in cloud.pods and procs.alive(proc.pid)
            deleted.append((pod, proc.host, running, terminating(pod)))

    def terminating(pod: str) -> bool:
        """Still there, held by the controller (kwok alone would have deleted it at once)."""
        try:
            return core.read_namespaced_pod(pod, ns).metadata.deletion_timestamp is not None
        except client.exceptions.ApiException as e:
            if e.status == 404:
                return False
            raise

    kube_cloud = KubeCloud(k8s_lab, tmp_path, namespace=ns)
    with controller(kube_target, cloud, frozenset({node_crashing(crashing)}), on_deleted=told):
        helm.install("nova", chart("nova"), values=[values("nova"), override], timeout="60s")
        eventually_sync(lambda: sorted(computes()) == nodes, within=60, what="a compute on every node")
        assert {r for _, r in computes().values()} == {"2025.2"}
        daemonsets = kube_cloud.compute_daemonsets()
        names = [d.metadata.name for d in daemonsets]
        (default,) = [n for n in names if n.startswith("nova-compute-default-")]
        (pinned_ds,) = [n for n in names if n.startswith(f"nova-compute-{pinned}-")]
        assert len(names) == 2, names
        assert {d.spec.update_strategy.type for d in daemonsets} == {"OnDelete"}
        assert all(
            {"application": "nova", "component": "compute"}.items() <= d.metadata.labels.items() for d in daemonsets
        )
        pods = core.list_namespaced_pod(ns, label_selector=COMPUTE_SELECTOR).items
        owner = {p.spec.node_name: p.metadata.owner_references[0].name for p in pods}
        assert owner[pinned] == pinned_ds and {owner[n] for n in nodes if n != pinned} == {default}

        helm.upgrade("nova", chart("nova", "2026.1"), values=[values("nova")], wait=False)
        eventually_sync(lambda: len(kube_cloud.stale_computes()) == len(nodes), within=60, what="templates changed")
        assert len(kube_cloud.compute_daemonsets()) == 2  # the override survived --reset-then-reuse-values
        assert {r for _, r in computes().values()} == {"2025.2"}  # OnDelete: the pods stay
        before = computes()
        for node in (crashing, replaced):
            core.delete_namespaced_pod(before[node][0], ns)
        eventually_sync(lambda: computes().get(replaced, ("", ""))[1] == "2026.1", within=60, what="replaced")

        def crash_looping() -> list[str]:
            listed = core.list_namespaced_pod(ns, label_selector=COMPUTE_SELECTOR).items
            return [
                p.metadata.name
                for p in listed
                if p.spec.node_name == crashing
                and any(
                    s.state.waiting and s.state.waiting.reason == "CrashLoopBackOff"
                    for s in p.status.container_statuses or []
                )
            ]

        eventually_sync(crash_looping, within=60, what="the crashing node's new pod in CrashLoopBackOff")
        assert crashing not in computes()  # never started
        assert sorted(deleted) == sorted((before[n][0], n, True, True) for n in (crashing, replaced))
        eventually_sync(  # the held pods go once their processes stopped
            lambda: not any(terminating(before[n][0]) for n in (crashing, replaced)), within=30, what="old pods gone"
        )
        assert sorted(kube_cloud.stale_computes().values()) == [n for n in nodes if n not in (crashing, replaced)]
        assert sorted(kube_cloud.replace_stale_computes()) == sorted(
            before[n][0] for n in nodes if n not in (crashing, replaced)
        )
        eventually_sync(
            lambda: {n: r for n, (_, r) in computes().items()} == {n: "2026.1" for n in nodes if n != crashing},
            within=60,
            what="every other node at 2026.1",
        )


def test_a_program_that_exits_makes_its_pod_unready_and_is_restarted(
    stand_in: tuple[ProcessCloud, Helm, Any], kube_target: KubeTarget
) -> None:
    cloud, helm, core = stand_in
    ns, selector = kube_target.namespace, "application=placement"
    with controller(kube_target, cloud):
        helm.install("placement", chart("placement"), values=[values("placement")], timeout="60s")
        name, proc = sorted(cloud.pods.items())[0]
        os.kill(proc.pid, signal.SIGKILL)

        def restarted() -> Any:
            pod = core.read_namespaced_pod(name, ns)
            status = pod.status.container_statuses[0]
            return status if status.restart_count == 1 else None

        status = eventually_sync(restarted, within=30, what="restartCount 1")
        assert status.last_state.terminated.exit_code == -signal.SIGKILL
        eventually_sync(lambda: name in ready(core, ns, selector), within=30, what="ready again")
        assert cloud.pods[name].pid != proc.pid


def test_a_crashing_release_never_becomes_ready(
    stand_in: tuple[ProcessCloud, Helm, Any], kube_target: KubeTarget
) -> None:
    cloud, helm, core = stand_in
    ns, selector = kube_target.namespace, "application=placement"
    with controller(kube_target, cloud, crashing=frozenset({"2026.1"})):
        helm.install("placement", chart("placement"), values=[values("placement")], timeout="60s")
        before = set(cloud.pods)
        helm.upgrade("placement", chart("placement", "2026.1"), values=[values("placement")], wait=False)
        apps = client.AppsV1Api(core.api_client)

        def backing_off() -> list[str]:
            pods: list[Any] = core.list_namespaced_pod(ns, label_selector=selector).items
            return [
                p.metadata.name
                for p in pods
                if p.metadata.name not in before
                and any(
                    s.state.waiting and s.state.waiting.reason == "CrashLoopBackOff"
                    for s in p.status.container_statuses or []
                )
            ]

        (surge,) = eventually_sync(backing_off, within=30, what="the surge pod in CrashLoopBackOff")
        assert surge not in cloud.pods  # never started
        assert set(ready(core, ns, selector)) == before == set(cloud.pods)  # the old ones still serve
        status: Any = apps.read_namespaced_deployment("placement-api", ns).status
        assert status.updated_replicas == 1 and status.available_replicas == 2


def test_a_process_no_pod_stands_for_is_handed_over_to_a_ready_pod(
    stand_in: tuple[ProcessCloud, Helm, Any], kube_target: KubeTarget
) -> None:
    """The cloud's own process of a served service (as `up` serves Keystone before its chart is
    installed) keeps serving until a Ready pod serves its workload, then it is stopped; a process of
    a service the controller does not serve is left alone."""
    cloud, helm, core = stand_in
    own = cloud.start_pod("placement", "placement-api", "2025.2", "placement-api-2025.2", "lab-node-0")
    other = cloud.start_pod("glance", "glance-api", "2025.2", "glance-api-2025.2", "lab-node-0")
    ns, selector = kube_target.namespace, "application=placement"
    with controller(kube_target, cloud) as ctl:
        eventually_sync(lambda: ctl._synced.is_set(), within=30, what="the controller's first list")
        assert "placement-api-2025.2" in cloud.pods  # no pod serves placement yet: it stays
        helm.install("placement", chart("placement"), values=[values("placement")], timeout="60s")
        # the controller records a stop once stop_pod returns, after the process left cloud.pods
        eventually_sync(lambda: ctl.stopped[:1] == ["placement-api-2025.2"], within=30, what="the hand-over")
        assert "placement-api-2025.2" not in cloud.pods
        eventually_sync(lambda: len(ready(core, ns, selector)) == 2, within=60, what="both placement pods Ready")
        assert not procs.alive(own.pid)
        assert cloud.pods["glance-api-2025.2"].pid == other.pid and procs.alive(other.pid)
