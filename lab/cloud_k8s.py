"""The cloud lab on the Kubernetes lab: every OpenStack service a Helm release, one process per Ready pod.

``KubeCloud.up(services)``:

1. the Kubernetes lab (kwok; the demo's ``stackhop-demo`` by default) scaled to ``COMPUTE_NODES`` (4)
   nodes, labelled as an openstack-helm cluster labels them (``openstack-control-plane``,
   ``openstack-compute-node``) and with their availability zone (``topology.kubernetes.io/zone``:
   az-1, az-2 alternating in node order; ``zones()``);
2. the cloud core in Kubernetes mode (``CloudLab.up(..., direct=False)``): MariaDB, RabbitMQ,
   Keystone, the proxy, and per service its databases, Keystone records, config and bootstrap — but
   no service process: those are the pods';
3. the cloud controller (lab/cloud_controller.py) as a detached process, its pid in ``kube.json``
   beside the cloud's state;
4. ``helm install <service> lab/charts/<service>-2025.2.0 -f examples/lab-cloud-values/<service>.yaml``
   for each service (no ``--wait``: the pods become Ready only as the controller serves them); nova
   also with ``<cloud>/nova-overrides.yaml``: helm-toolkit's per-node override naming one node
   (``override_node()``, the last), so nova-compute is two OnDelete DaemonSets —
   ``nova-compute-default-<hash>`` on every other node and ``nova-compute-<node>-<hash>`` pinned to
   that one. The override is part of the release's user values, so ``helm upgrade
   --reset-then-reuse-values`` (the engine's, and ``Helm.upgrade``'s) keeps it;
5. wait until every Deployment is available, nova-compute runs on every node and nova's service list
   shows one ``nova-compute`` per node (``host`` = the node's name), up; then a nova host aggregate per
   zone holding its nodes (``CloudLab.ensure_zones``).

nova-compute's DaemonSets are OnDelete: a chart upgrade changes their template and leaves the pods.
``replace_stale_computes()`` deletes the compute pods whose image differs from their DaemonSet's
template (what the data plane step does node by node); ``wait_ready`` does it by default, so a lab
helper that puts nova back on a chart gets its computes back too. ``replacements()``: what the
controller recorded on each nova-compute pod's replacement (the servers on its node at that moment).

``down()`` stops the controller, uninstalls the releases and takes the cloud core down; the
Kubernetes lab keeps running (``stackhop lab k8s down`` stops it).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from lab.cloud_controller import REPLACEMENTS, read_replacements
from lab.controller import LABEL
from lab.helm import CHARTS, Helm
from lab.k8s.cluster import KubeLab
from lab.k8s.versions import REPO_ROOT
from lab.openstack import procs
from lab.openstack.cloud import CloudLab
from lab.openstack.services.nova import ZONE_LABEL, ZONES

log = structlog.get_logger(__name__)

SERVICES = ("keystone", "placement", "glance", "neutron", "nova")
CHART_VERSION = {"2025.2": "2025.2.0", "2026.1": "2026.1.0"}  # release -> the lab chart's version
VALUES = REPO_ROOT / "examples" / "lab-cloud-values"
NODE_LABELS = ("openstack-control-plane=enabled", "openstack-compute-node=enabled")
NAMESPACE = "openstack"
COMPUTE_NODES = 4  # the cloud's Kubernetes nodes, each a nova-compute host
COMPUTE_SELECTOR = "application=nova,component=compute"  # every nova-compute DaemonSet (and pod)
#: what the per-node override changes for its node (rendered into that DaemonSet's own nova.conf
#: Secret; the lab's processes read the cloud's config, so it marks the node group and nothing else)
OVERRIDE_CONF: dict[str, Any] = {"nova": {"DEFAULT": {"cpu_allocation_ratio": 2.0}}}


def compute_override(node: str) -> dict[str, Any]:
    """nova's values for helm-toolkit's per-node override of nova-compute on ``node``."""
    return {"conf": {"overrides": {"nova_compute": {"hosts": [{"name": node, "conf": OVERRIDE_CONF}]}}}}


def chart(service: str, release: str = "2025.2") -> Path:
    return CHARTS / f"{service}-{CHART_VERSION[release]}"


def values(service: str) -> Path:
    return VALUES / f"{service}.yaml"


@dataclass
class KubeCloud:
    """The cloud lab (``CloudLab`` at ``base``) deployed on one Kubernetes lab."""

    kube: KubeLab
    base: Path
    namespace: str = NAMESPACE
    node_count: int = COMPUTE_NODES

    @property
    def state_file(self) -> Path:
        return self.base / "kube.json"

    @property
    def controller_log(self) -> Path:
        return self.base / "cloud-controller.log"

    def state(self) -> dict[str, Any]:
        if not self.state_file.is_file():
            return {}
        data: dict[str, Any] = json.loads(self.state_file.read_text())
        return data

    def _save(self, **changes: Any) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        self.state_file.write_text(json.dumps({**self.state(), **changes}, indent=2))

    def cloud(self) -> CloudLab:
        """The cloud lab as its state file says now (the controller changes its pods)."""
        return CloudLab.load(self.base)

    def helm(self) -> Helm:
        return Helm(self.kube.kubeconfig, self.namespace)

    def _apis(self) -> tuple[client.CoreV1Api, client.AppsV1Api]:
        api = config.new_client_from_config(config_file=str(self.kube.kubeconfig))
        return client.CoreV1Api(api), client.AppsV1Api(api)

    # --- up ----------------------------------------------------------------------------------
    def up(
        self, services: Sequence[str] = SERVICES, crashing: Iterable[str] = (), timeout: float = 600
    ) -> dict[str, float]:
        """The whole cloud at 2025.2 on the Kubernetes lab; the seconds each phase took."""
        unknown = set(services) - set(SERVICES)
        if unknown:
            raise ValueError(f"unknown services {sorted(unknown)}: the cloud lab has {', '.join(SERVICES)}")
        services = [s for s in SERVICES if s in services]  # the cloud's order: keystone first
        timings: dict[str, float] = {}
        t0 = t = time.monotonic()
        self.kube.up()
        if len(self.nodes()) < self.node_count:
            self.kube.nodes = self.node_count
            self.kube.scale_nodes(self.node_count)
        nodes = self.nodes()
        self.kube.kubectl_run("label", "nodes", "--all", "--overwrite", *NODE_LABELS)
        for i, node in enumerate(nodes):
            self.kube.kubectl_run("label", "node", node, "--overwrite", f"{ZONE_LABEL}={ZONES[i % len(ZONES)]}")
        timings["kubernetes"] = time.monotonic() - t
        t = time.monotonic()
        self.cloud().up(services, release="2025.2", hosts=tuple(nodes), direct=False)
        timings["cloud core"] = time.monotonic() - t
        t = time.monotonic()
        core, _ = self._apis()
        try:
            core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=self.namespace)))
        except ApiException as e:
            if e.status != 409:
                raise
        self.start_controller(services, crashing)
        helm = self.helm()
        for service in services:
            if not helm.history(service):
                helm.install(service, chart(service), values=self.values_files(service, nodes), wait=False)
        self._save(services=list(services), nodes=nodes, namespace=self.namespace, kube=self.kube.name)
        self.wait_ready(services, nodes, timeout=timeout)
        procs.reap()  # the cloud's own Keystone, started here, handed over to its pod and stopped by the controller
        if "nova" in services:
            self.cloud().ensure_zones(self.zones())
        timings["pods ready"] = time.monotonic() - t
        timings["total"] = time.monotonic() - t0
        self._save(started=timings)
        return timings

    def nodes(self) -> list[str]:
        core, _ = self._apis()
        listed: list[Any] = core.list_node().items
        return sorted(n.metadata.name for n in listed)

    def zones(self) -> dict[str, str]:
        """node -> its availability zone (the node label ``topology.kubernetes.io/zone``)."""
        core, _ = self._apis()
        listed: list[Any] = core.list_node().items
        return {n.metadata.name: (n.metadata.labels or {}).get(ZONE_LABEL, "") for n in listed}

    def override_node(self, nodes: Sequence[str] | None = None) -> str:
        """The node whose nova-compute runs from helm-toolkit's per-node override DaemonSet: the last."""
        return sorted(nodes if nodes is not None else self.nodes())[-1]

    def values_files(self, service: str, nodes: Sequence[str] | None = None) -> list[Path]:
        """The operator's values of a service's release; nova's also name its per-node override."""
        files = [values(service)]
        if service == "nova":
            override = self.base / "nova-overrides.yaml"
            doc = compute_override(self.override_node(nodes))
            override.write_text(
                "# helm-toolkit's per-node override of nova-compute (written by KubeCloud.up: the node is\n"
                "# known only then): one DaemonSet pinned to this node, nova-compute-default on the others\n"
                + yaml.safe_dump(doc, sort_keys=False)
            )
            files.append(override)
        return files

    def start_controller(self, services: Sequence[str], crashing: Iterable[str] = ()) -> int:
        """The cloud controller as a detached process (a running one is replaced). ``crashing``:
        releases (``2026.1``), a service's (``nova:2026.1``) or a service's on one node
        (``nova@<node>:2026.1``, ``lab.cloud_controller.node_crashing``) whose pods never start."""
        self.stop_controller()
        argv = [
            sys.executable,
            "-m",
            "lab.cloud_controller",
            "--cloud",
            str(self.base),
            "--kubeconfig",
            str(self.kube.kubeconfig),
            "--namespace",
            self.namespace,
            "--services",
            ",".join(services),
            "--crashing",
            ",".join(crashing),
        ]
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        pid = procs.start_detached(argv, self.controller_log, env=env, cwd=REPO_ROOT, program="lab.cloud_controller")
        self._save(controller_pid=procs.record(pid))
        return pid

    def stop_controller(self) -> None:
        saved = self.state().get("controller_pid")
        if saved:
            procs.stop(procs.adopt(saved, "lab.cloud_controller"))
            self._save(controller_pid=None)

    # --- readiness -----------------------------------------------------------------------------
    def rolled_out(self, services: Sequence[str], nodes: Sequence[str]) -> list[str]:
        """What is not yet rolled out (empty: every Deployment of the services available with all its
        replicas updated, and each nova-compute DaemonSet ready on every node it selects, its pods on
        its template's images)."""
        _, apps = self._apis()
        missing: list[str] = []
        deployments: list[Any] = apps.list_namespaced_deployment(self.namespace).items
        daemonsets: list[Any] = apps.list_namespaced_daemon_set(self.namespace).items
        owned = [
            w
            for w in deployments + daemonsets
            if (w.metadata.labels or {}).get("application") in services
            or (w.metadata.labels or {}).get("app") in {f"{s}-api" for s in services}
        ]
        for d in deployments:
            if d not in owned:
                continue
            want, s = d.spec.replicas or 0, d.status
            if (s.observed_generation or 0) < d.metadata.generation or not (
                (s.updated_replicas or 0) == want and (s.available_replicas or 0) == want and (s.replicas or 0) == want
            ):
                missing.append(f"Deployment {d.metadata.name}: {s.available_replicas or 0}/{want} available")
        computes = 0
        for ds in daemonsets:
            if ds not in owned:
                continue
            s = ds.status
            computes += s.number_ready or 0
            # OnDelete: a template change replaces no pod (a restart annotation never will); its pods
            # are current when they run the template's images (stale_computes, below)
            updated = (
                s.number_ready
                if (ds.spec.update_strategy and ds.spec.update_strategy.type) == "OnDelete"
                else (s.updated_number_scheduled or 0)
            )
            if (s.observed_generation or 0) < ds.metadata.generation or not (
                s.desired_number_scheduled == s.number_ready == updated
            ):
                missing.append(
                    f"DaemonSet {ds.metadata.name}: {s.number_ready or 0}/{s.desired_number_scheduled} ready"
                )
        if "nova" in services and computes != len(nodes):
            missing.append(f"nova-compute: {computes} ready pods for {len(nodes)} nodes")
        if "nova" in services and (stale := self.stale_computes()):
            missing.append(f"nova-compute pods on an image their DaemonSet no longer has: {sorted(stale)}")
        return missing

    def wait_ready(
        self, services: Sequence[str], nodes: Sequence[str], timeout: float = 600, replace_stale: bool = True
    ) -> None:
        """Until every workload of ``services`` is rolled out on ``nodes``; with ``replace_stale`` the
        nova-compute pods an OnDelete DaemonSet left behind a template change are deleted (replaced)."""

        def done() -> bool:
            if replace_stale and "nova" in services:
                self.replace_stale_computes()
            return (
                not self.rolled_out(services, nodes)
                and not self.unhanded(services)
                and ("nova" not in services or sorted(self.compute_hosts()) == sorted(nodes))
            )

        def what() -> str:
            left = self.rolled_out(services, nodes) + [
                f"{p}: still the cloud's own process" for p in self.unhanded(services)
            ]
            return "; ".join(left) or f"nova-compute on {nodes}"

        wait(done, timeout, what)

    def compute_daemonsets(self) -> list[Any]:
        """nova's nova-compute DaemonSets (the default one and each per-node override)."""
        _, apps = self._apis()
        listed: list[Any] = apps.list_namespaced_daemon_set(self.namespace, label_selector=COMPUTE_SELECTOR).items
        return sorted(listed, key=lambda d: d.metadata.name)

    def stale_computes(self) -> dict[str, str]:
        """pod -> node of every nova-compute pod whose image differs from its DaemonSet's template
        (an OnDelete DaemonSet's pods after a chart upgrade), not yet being deleted."""
        core, _ = self._apis()
        images = {d.metadata.uid: [c.image for c in d.spec.template.spec.containers] for d in self.compute_daemonsets()}
        listed: list[Any] = core.list_namespaced_pod(self.namespace, label_selector=COMPUTE_SELECTOR).items
        stale = {}
        for pod in listed:
            owner = next((o.uid for o in pod.metadata.owner_references or [] if o.kind == "DaemonSet"), None)
            current = [c.image for c in pod.spec.containers]
            if pod.metadata.deletion_timestamp is None and owner in images and current != images[owner]:
                stale[pod.metadata.name] = pod.spec.node_name or ""
        return stale

    def replace_stale_computes(self) -> list[str]:
        """Delete the stale nova-compute pods (``stale_computes``): their DaemonSets start new ones from
        the current template, as an operator does node by node with OnDelete. The pods deleted."""
        core, _ = self._apis()
        stale = self.stale_computes()
        for pod in stale:
            try:
                core.delete_namespaced_pod(pod, self.namespace)
            except ApiException as e:
                if e.status != 404:
                    raise
        if stale:
            log.info("kube cloud: stale compute pods deleted", pods=sorted(stale))
        return sorted(stale)

    def replacements(self) -> list[dict[str, Any]]:
        """What the controller recorded each time it stopped a deleted nova-compute pod's process:
        ``{at, pod, node, release, servers}`` (the servers nova placed on the node then), oldest first."""
        return read_replacements(self.base / REPLACEMENTS)

    def unhanded(self, services: Sequence[str]) -> list[str]:
        """The processes of ``services`` no pod stands for (the Keystone ``up`` starts before its chart
        is installed): the controller stops each once a Ready pod serves its workload."""
        core, _ = self._apis()
        listed: list[Any] = core.list_namespaced_pod(self.namespace).items
        pods = {p.metadata.name for p in listed}
        return sorted(n for n, p in self.cloud().pods.items() if p.service in services and n not in pods)

    def compute_hosts(self) -> list[str]:
        """The hosts of the nova-compute services that are up (nova's service list, through the API)."""
        return [s["host"] for s in self.compute_services() if s["state"] == "up" and s["status"] == "enabled"]

    def compute_services(self) -> list[dict[str, str]]:
        conn = self.cloud().connect()
        try:
            return [
                {"host": s.host, "state": s.state, "status": s.status, "disabled_reason": s.disabled_reason or ""}
                for s in conn.compute.services(binary="nova-compute")
            ]
        finally:
            conn.close()

    # --- what runs -------------------------------------------------------------------------------
    def pods(self) -> list[dict[str, Any]]:
        """Every served pod: service, workload, pod, node, release (image), Ready, and its process."""
        core, _ = self._apis()
        procs_by_pod = self.cloud().pods
        rows = []
        listed: list[Any] = core.list_namespaced_pod(self.namespace, label_selector=f"{LABEL}=controller").items
        for pod in listed:
            labels = pod.metadata.labels or {}
            proc = procs_by_pod.get(pod.metadata.name)
            ready = any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))
            rows.append(
                {
                    "service": labels.get("application", "?"),
                    "workload": f"{labels.get('application')}-{labels.get('component')}",
                    "pod": pod.metadata.name,
                    "node": pod.spec.node_name or "",
                    "image": pod.spec.containers[0].image.rsplit("/", 1)[-1],
                    "ready": ready,
                    "pid": getattr(proc, "pid", None),
                    "port": getattr(proc, "port", None),
                    "release": getattr(proc, "release", None),
                }
            )
        return sorted(rows, key=lambda r: (SERVICES.index(r["service"]) if r["service"] in SERVICES else 99, r["pod"]))

    # --- memory -----------------------------------------------------------------------------------
    def memory(self) -> dict[str, float]:
        """RSS in MiB: the Kubernetes lab's processes (etcd, apiserver, controller manager, scheduler,
        kwok), the cloud controller, and the cloud's parts as ``CloudLab.memory`` counts them
        (MariaDB, RabbitMQ, the proxy, each pod's process group); ``total`` is their sum."""
        kube = [int(f.read_text().strip()) for f in (self.kube.cluster_dir / "pids").glob("*.pid")]
        # kwokctl's own pid files (read, never signalled here): a pid that names no process is skipped
        parts = {"kubernetes": rss_mib(p for p in kube if procs.start_time(p) is not None)}
        controller = procs.adopt(self.state().get("controller_pid"), "lab.cloud_controller") or 0
        parts["controller"] = rss_mib([controller]) - rss_mib(p.pid or 0 for p in self.cloud().pods.values())
        cloud = self.cloud().memory()
        parts.update({f"cloud {k}" if k != "total" else "cloud": v for k, v in cloud.items()})
        parts["total"] = parts["kubernetes"] + parts["controller"] + cloud["total"]
        return {k: round(v, 1) for k, v in parts.items()}

    # --- down --------------------------------------------------------------------------------------
    def down(self, purge: bool = False) -> None:
        state = self.state()
        self.stop_controller()
        if self.kube.healthy():
            helm = self.helm()
            for service in state.get("services", []):
                helm.uninstall(service, wait=False)
        self.cloud().down(purge=purge)
        if purge:
            self.state_file.unlink(missing_ok=True)
        else:
            self._save(controller_pid=None)


def wait(predicate: Callable[[], bool], timeout: float, what: Callable[[], str]) -> float:
    """Poll ``predicate`` (twice a second) until true; a timeout says what was still missing."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"not ready after {timeout:.0f}s: {what()}")
        time.sleep(0.5)
    return time.monotonic() - started


def rss_mib(pids: Iterable[int]) -> float:
    """The resident memory of these processes and all their descendants, in MiB."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            status = (entry / "status").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                rss[int(entry.name)] = int(line.split()[1])
    seen: set[int] = set()
    todo = [p for p in pids if p]
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        todo.extend(children.get(pid, []))
    return sum(rss.get(p, 0) for p in seen) / 1024
