"""The cloud lab on the Kubernetes lab: every service a Helm release, one process per Ready pod.

One cloud per session (``k8s_cloud``, lab/openstack/cloud_plugin.py, shared with
test_cloud_upgrade.py, which runs after this module): the session's Kubernetes lab (scaled to 4 kwok nodes
in two availability zones), the cloud core
in Kubernetes mode, the cloud controller as its detached process, and keystone, placement, glance,
neutron and nova installed from their 2025.2.0 charts — what ``stackhop lab openstack up --services
keystone,placement,glance,neutron,nova`` does. The tests then roll services through chart upgrades
while clients call them through the lab proxy.
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from typing import Any

from kubernetes import client, config

from lab.cloud_k8s import COMPUTE_NODES, COMPUTE_SELECTOR, SERVICES, KubeCloud, chart, values
from lab.openstack import smoke
from lab.openstack.cloud_plugin import measure
from tests.waiting import eventually_sync

# The charts' workloads at 2025.2.0 (Deployments; nova-compute a DaemonSet), as the pods name them.
WORKLOADS = {
    "keystone": {"keystone-api"},
    "placement": {"placement-api"},
    "glance": {"glance-api"},
    "neutron": {"neutron-server", "neutron-rpc-server", "neutron-periodic-workers"},
    "nova": {"nova-api-osapi", "nova-conductor", "nova-scheduler", "nova-compute"},
}


def runs(pod_workload: str, program: str) -> bool:
    """A pod of a chart's workload runs the program named so, or the one whose name it extends
    (openstack-helm's nova-api-osapi runs the nova-api program)."""
    return pod_workload.startswith(program)


def check_processes_follow_pods(cloud: KubeCloud, service: str, release: str) -> set[str]:
    """One process per Ready pod of the service, none for anything else, each running the pod's
    workload at ``release``; returns the pods' workloads."""
    pods = ready_pods(cloud, service)
    procs = served(cloud, service)
    assert set(procs) == set(pods), service
    workloads = set()
    for name, pod in pods.items():
        labels = pod.metadata.labels
        workload = f"{labels['application']}-{labels['component']}"
        assert runs(workload, procs[name][0]) and procs[name][1] == release, (name, procs[name])
        workloads.add(workload)
    return workloads


def core_api(cloud: KubeCloud) -> client.CoreV1Api:
    return client.CoreV1Api(config.new_client_from_config(config_file=str(cloud.kube.kubeconfig)))


def ready_pods(cloud: KubeCloud, service: str) -> dict[str, Any]:
    listed: list[Any] = (
        core_api(cloud).list_namespaced_pod(cloud.namespace, label_selector=f"application={service}").items
    )
    return {
        p.metadata.name: p
        for p in listed
        if p.metadata.deletion_timestamp is None
        and any(c.type == "Ready" and c.status == "True" for c in (p.status.conditions or []))
    }


def token(cloud: KubeCloud) -> str:
    """A project-scoped admin token from Keystone, through the proxy."""
    conn = cloud.cloud().connect()
    try:
        value: str = conn.auth_token
        return value
    finally:
        conn.close()


class Caller(threading.Thread):
    """Calls one URL through the proxy, a fresh connection each time, until stopped; keeps every outcome."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        super().__init__(name="caller", daemon=True)
        self.url, self.headers = url, headers
        self.outcomes: Counter[str] = Counter()
        self.failures: list[str] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                with urllib.request.urlopen(urllib.request.Request(self.url, headers=self.headers), timeout=30) as r:
                    outcome = str(r.status)
            except urllib.error.HTTPError as e:
                outcome = str(e.code)
            except (urllib.error.URLError, OSError) as e:
                outcome = f"error: {e}"
            self.outcomes[outcome] += 1
            if not outcome.startswith("2"):
                self.failures.append(f"{time.strftime('%H:%M:%S')} {outcome}")

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=60)


def served(cloud: KubeCloud, service: str) -> dict[str, tuple[str, str]]:
    """Each pod's process: {pod: (workload, release)}."""
    return {name: (p.workload, p.release) for name, p in cloud.cloud().pods_of(service).items()}


def test_the_whole_cloud_runs_one_process_per_ready_pod_and_nova_compute_per_node(k8s_cloud: KubeCloud) -> None:
    nodes = k8s_cloud.nodes()
    assert len(nodes) == COMPUTE_NODES
    assert k8s_cloud.rolled_out(SERVICES, nodes) == []
    # two zones, alternating in node order; a nova host aggregate per zone holding its nodes
    zones = k8s_cloud.zones()
    assert [zones[n] for n in nodes] == ["az-1", "az-2", "az-1", "az-2"]
    conn = k8s_cloud.cloud().connect()
    try:
        aggregates = {a.name: (a.availability_zone, sorted(a.hosts or [])) for a in conn.compute.aggregates()}
    finally:
        conn.close()
    assert aggregates == {z: (z, sorted(n for n in nodes if zones[n] == z)) for z in ("az-1", "az-2")}
    # nova-compute: the default OnDelete DaemonSet, and the per-node override's pinned to its node
    daemonsets = {d.metadata.name: d for d in k8s_cloud.compute_daemonsets()}
    pinned = k8s_cloud.override_node()
    (default,) = [n for n in daemonsets if n.startswith("nova-compute-default-")]
    (override,) = [n for n in daemonsets if n.startswith(f"nova-compute-{pinned}-")]
    assert len(daemonsets) == 2 and {d.spec.update_strategy.type for d in daemonsets.values()} == {"OnDelete"}
    assert (daemonsets[default].status.number_ready, daemonsets[override].status.number_ready) == (COMPUTE_NODES - 1, 1)
    for service in SERVICES:
        assert check_processes_follow_pods(k8s_cloud, service, "2025.2") == WORKLOADS[service]
    # nova's own service list: one nova-compute per lab node, host = the node's name, up
    computes = k8s_cloud.compute_services()
    assert sorted(s["host"] for s in computes) == nodes
    assert {s["state"] for s in computes} == {"up"}
    hosts = {p.host for p in k8s_cloud.cloud().pods_of("nova").values() if p.workload == "nova-compute"}
    assert hosts == set(nodes)
    # the lab's memory: every process of it (Kubernetes lab, cloud core, controller, pods' processes)
    memory = k8s_cloud.memory()
    measure(k8s_cloud, rss_mib=memory)
    assert memory["kubernetes"] > 100 and memory["controller"] > 20 and memory["cloud"] > 500


def test_a_rolling_update_through_the_proxy_never_fails_a_call(k8s_cloud: KubeCloud) -> None:
    """`helm upgrade placement` to chart 2026.1.0 while a client calls the placement API through the
    proxy: every call answers 2xx (no refused connection, no 5xx), and at the end only 2026.1 serves."""
    cloud = k8s_cloud.cloud()
    assert cloud.manage("placement", "2026.1", "db", "sync").returncode == 0  # the schema first
    before = served(k8s_cloud, "placement")
    assert len(before) == 2 and {r for _, r in before.values()} == {"2025.2"}
    headers = {"X-Auth-Token": token(k8s_cloud), "OpenStack-API-Version": "placement 1.0"}
    caller = Caller(f"{cloud.endpoints['placement']}/resource_providers", headers)
    caller.start()
    eventually_sync(lambda: caller.outcomes.total() >= 5, within=60, what="calls before the upgrade")
    started = time.monotonic()
    k8s_cloud.helm().upgrade("placement", chart("placement", "2026.1"), values=[values("placement")], timeout="300s")
    rolled = time.monotonic() - started
    eventually_sync(lambda: set(served(k8s_cloud, "placement")) == set(ready_pods(k8s_cloud, "placement")), within=60)
    calls_after = caller.outcomes.total() + 5
    eventually_sync(lambda: caller.outcomes.total() >= calls_after, within=60, what="calls after the upgrade")
    caller.stop()
    measure(k8s_cloud, placement_rolling_update_s=round(rolled, 1), placement_calls=dict(caller.outcomes))
    assert caller.failures == []
    after = served(k8s_cloud, "placement")
    assert len(after) == 2 and {r for _, r in after.values()} == {"2026.1"}
    assert not set(after) & set(before)


def test_neutron_chart_upgrade_rolls_its_three_workloads(k8s_cloud: KubeCloud) -> None:
    """The API (WSGI) as neutron-server, neutron-rpc-server and neutron-periodic-workers in both
    releases: after the expand, the chart upgrade rolls all three, processes follow the pods, the API
    keeps answering."""
    cloud = k8s_cloud.cloud()
    assert check_processes_follow_pods(k8s_cloud, "neutron", "2025.2") == {
        "neutron-server",
        "neutron-rpc-server",
        "neutron-periodic-workers",
    }
    expand = cloud.manage("neutron", "2026.1", "upgrade", "--expand")
    assert expand.returncode == 0, expand.stderr
    k8s_cloud.helm().upgrade("neutron", chart("neutron", "2026.1"), values=[values("neutron")], timeout="300s")
    eventually_sync(lambda: set(served(k8s_cloud, "neutron")) == set(ready_pods(k8s_cloud, "neutron")), within=60)
    assert check_processes_follow_pods(k8s_cloud, "neutron", "2026.1") == {
        "neutron-server",
        "neutron-rpc-server",
        "neutron-periodic-workers",
    }
    request = urllib.request.Request(
        f"{cloud.endpoints['neutron']}/v2.0/networks", headers={"X-Auth-Token": token(k8s_cloud)}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200


def test_a_deleted_compute_pod_is_recorded_with_the_servers_on_its_node(k8s_cloud: KubeCloud) -> None:
    """The controller, stopping a deleted nova-compute pod's process, records the servers nova places on
    the pod's node at that moment (``KubeCloud.replacements``); the DaemonSet's new pod serves the node."""
    nodes = k8s_cloud.nodes()
    node = nodes[0]
    conn = k8s_cloud.cloud().connect()
    seeded = smoke.seed(conn)  # one server per compute host
    try:
        (server,) = [s.id for s in seeded.servers if s.host == node]
        listed: list[Any] = (
            core_api(k8s_cloud).list_namespaced_pod(k8s_cloud.namespace, label_selector=COMPUTE_SELECTOR).items
        )
        (pod,) = [p.metadata.name for p in listed if p.spec.node_name == node]
        known = len(k8s_cloud.replacements())
        core_api(k8s_cloud).delete_namespaced_pod(pod, k8s_cloud.namespace)
        (record,) = eventually_sync(lambda: k8s_cloud.replacements()[known:], within=60, what="the replacement record")
        assert {k: record[k] for k in ("pod", "node", "release", "servers")} == {
            "pod": pod,
            "node": node,
            "release": "2025.2",
            "servers": [server],
        }
        k8s_cloud.wait_ready(["nova"], nodes, timeout=300)
        assert pod not in ready_pods(k8s_cloud, "nova")
    finally:
        smoke.remove(conn, seeded)
        conn.close()
