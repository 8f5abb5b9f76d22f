"""`stackhop demo --cloud full`: the whole cloud upgraded by the engine, 2025.2 → 2026.1.

The cloud lab on the Kubernetes lab (``KubeCloud``: keystone, placement, glance, neutron and nova, each
the Helm release of its lab chart at 2025.2.0, one process per Ready pod) is brought up; the cloud is
seeded (``seed``); a worker with the cloud's environment (``CloudDemo.worker_env``: clouds.yaml, the
database defaults file, ``STACKHOP_<SVC>_MANAGE`` / ``_STATUS``, the kubeconfig with the plan's
context, helm) runs ``examples/lab-cloud.yaml``: keystone, then placement, glance and neutron in
parallel, then nova, each upgraded through its Helm release to chart 2026.1.0. The live progress view
follows it; then the report, the after-checks (``after``) and what runs now.

``--inject rollout``: nova's 2026.1 pods never become Ready (the cloud controller never starts them,
as a crash-looping image): the first four services upgrade, nova's rollout after its expand (the
syncs) times out, and nova rolls back by the phase rules with its previous images only (``helm
rollback``: the expand completed and is additive, so no restore), still serving 2025.2.

Lab code: ``cli.py`` loads it by name from a source checkout.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from rich.table import Table

from lab.cloud_controller import node_crashing
from lab.cloud_k8s import COMPUTE_NODES, SERVICES, KubeCloud
from lab.k8s.cluster import KubeLab
from lab.k8s.versions import REPO_ROOT, helm_bin
from lab.openstack import paths
from lab.openstack.smoke import Seeded, after, seed
from model import io
from model.dataplane import plan_batches
from model.loading import load_plan

PLAN = REPO_ROOT / "examples" / "lab-cloud.yaml"
WORKFLOW_ID = "upgrade/lab-cloud"
CONTEXT = "lab"  # the plan's cloud.kubernetes.context
# The injected nova failure: the cloud controller never starts nova's 2026.1 pods (lab/cloud_controller.py)
NOVA_CRASHING = "nova:2026.1"
INJECTED = {
    "rollout": "nova's 2026.1 pods never become Ready: the rollout after the expand fails, images-only rollback",
    "node": "the nova-compute of {node} (batch 2) never becomes Ready at 2026.1: the node is fenced and, past "
    "the plan's max_failed, the data plane stops (already upgraded nodes stay upgraded)",
}


def cloud_kube_lab() -> KubeLab:
    """The cloud demo's own Kubernetes lab (never the keystone demo's: both have a release ``keystone``)."""
    return KubeLab(name=os.environ.get("STACKHOP_CLOUD_CLUSTER", "stackhop-cloud"), nodes=COMPUTE_NODES)


def cloud_base() -> Path:
    return paths.lab_dir().parent / "cloud-demo"


@dataclass
class CloudDemo:
    """The cloud lab on Kubernetes as the whole-cloud plan targets it."""

    kube_cloud: KubeCloud
    context: str = CONTEXT

    @property
    def kubeconfig(self) -> Path:
        """The Kubernetes lab's kubeconfig with its context renamed to the plan's."""
        path = self.kube_cloud.base / f"kubeconfig-{self.context}.yaml"
        doc = yaml.safe_load(self.kube_cloud.kube.kubeconfig.read_text())
        old = doc["current-context"]
        for ctx in doc["contexts"]:
            if ctx["name"] == old:
                ctx["name"] = self.context
        doc["current-context"] = self.context
        path.parent.mkdir(parents=True, exist_ok=True)
        paths.write_private(path, yaml.safe_dump(doc))
        return path

    def worker_env(self) -> dict[str, str]:
        """What a worker acting on this cloud needs: the cloud's own (clouds.yaml, database defaults
        file, snapshot dir, each service's manage and status commands), the kubeconfig, helm."""
        return {
            **self.kube_cloud.cloud().worker_env(),
            "KUBECONFIG": str(self.kubeconfig),
            "STACKHOP_HELM": str(helm_bin()),
        }

    def prepare(self, inject: bool = False, reset: bool = True, crash_node: str | None = None) -> dict[str, float]:
        """The whole cloud at 2025.2 (``reset``: from a fresh cloud dir, as every demo run starts);
        with ``inject``, nova's 2026.1 pods never become Ready; with ``crash_node``, only that node's
        nova-compute at 2026.1 never does (``crashing``)."""
        if reset:
            self.kube_cloud.down(purge=True)
        timings = self.kube_cloud.up(SERVICES, crashing=crashing(inject, crash_node))
        started = time.monotonic()
        self.kube_cloud.cloud().write_tempest_workspace()  # tempest's image, flavors and tempest.conf
        timings["tempest workspace"] = time.monotonic() - started
        return timings

    def set_crashing(self, inject: bool, node: str | None = None) -> None:
        """Restart the cloud controller with or without the injected nova failure (pods keep running):
        ``inject``, every nova pod at 2026.1 never becomes Ready; ``node`` (``--inject node``), only that
        node's nova-compute at 2026.1 never does (the others upgrade)."""
        self.kube_cloud.start_controller(SERVICES, crashing(inject, node))

    # --- what an operator checks afterwards --------------------------------------------------------
    def charts(self) -> dict[str, str]:
        """The chart of each service's deployed Helm revision (``nova-2026.1.0``)."""
        helm = self.kube_cloud.helm()
        found = {}
        for service in SERVICES:
            deployed = [h for h in helm.history(service) if h["status"] == "deployed"]
            found[service] = deployed[-1]["chart"] if deployed else "none deployed"
        return found

    def served(self) -> dict[str, set[str]]:
        """The releases each service's pods run now (one entry each once a rollout is complete)."""
        pods = self.kube_cloud.cloud().pods
        found: dict[str, set[str]] = {s: set() for s in SERVICES}
        for pod in pods.values():
            if pod.service in found:
                found[pod.service].add(pod.release)
        return found

    def history(self, service: str) -> list[dict[str, Any]]:
        return self.kube_cloud.helm().history(service)


def crashing(inject: bool, node: str | None = None) -> tuple[str, ...]:
    """The cloud controller's ``crashing`` for an injected failure: one node's nova-compute at 2026.1
    (``nova@<node>:2026.1``) when ``node`` is given, else every nova pod at 2026.1 when ``inject``."""
    if node:
        return (node_crashing(node, "2026.1"),)
    return (NOVA_CRASHING,) if inject else ()


# --- what the cloud holds before and after -------------------------------------------------------------
# lab/openstack/smoke.py: seed (an image, a network, servers without ports on every compute host) and
# after (servers still ACTIVE on their hosts, the image downloads with the same checksum, the network).


def seed_cloud(demo: CloudDemo) -> Seeded:
    conn = demo.kube_cloud.cloud().connect()
    try:
        return seed(conn)
    finally:
        conn.close()


def after_cloud(demo: CloudDemo, seeded: Seeded, report: io.UpgradeReport | None = None) -> list[str]:
    """The after-checks; a server the report says the data plane's drain moved is checked on its new host."""
    conn = demo.kube_cloud.cloud().connect()
    try:
        return after(conn, seeded, moved_servers(report))
    finally:
        conn.close()


def moved_servers(report: io.UpgradeReport | None) -> dict[str, str]:
    """Server id -> the host the upgrade last moved it to (every service's data plane, in order)."""
    moved: dict[str, str] = {}
    for svc in report.services if report else []:
        for node in svc.data_plane:
            for m in node.moved:
                moved[m.server] = m.dest
    return moved


def inject_node(demo: CloudDemo) -> str:
    """The node ``--inject node`` fails: the first of the plan's second nova batch (after the canary)."""
    rules = load_plan(PLAN).service("nova").data_plane
    assert rules is not None, "examples/lab-cloud.yaml gives nova a data_plane"
    zones = demo.kube_cloud.zones()
    return plan_batches(rules, [(n, zones.get(n, ""), {}) for n in demo.kube_cloud.nodes()])[1][0]


# --- the demo ------------------------------------------------------------------------------------------
async def cloud_demo(inject: str | None, keep: bool, port: int, ui_port: int, reset: bool = True) -> int:
    """``inject``: None, ``rollout`` (nova's control plane never gets Ready) or ``node`` (one compute
    node's new pod never does)."""
    from cliapp.common import connect, out, say, settings
    from lab import demo_cli

    started = time.monotonic()
    stop, address, ui, server, codec = await demo_cli.demo_server(port, ui_port)
    demo = CloudDemo(KubeCloud(cloud_kube_lab(), cloud_base()))
    up = False
    try:
        with out().status("building or reusing the Kubernetes lab binaries and helm"):
            from lab.k8s import build

            await asyncio.to_thread(build.build_all)
        with out().status(
            "bringing the cloud up on Kubernetes: keystone, placement, glance, neutron, nova at 2025.2 (Helm releases)"
        ):
            timings = await asyncio.to_thread(demo.prepare, inject == "rollout", reset)
            up = True
        say("cloud up in " + ", ".join(f"{k} {v:.0f}s" for k, v in timings.items()))
        injected = INJECTED.get(inject or "", "")
        if inject == "node":
            node = inject_node(demo)
            await asyncio.to_thread(demo.set_crashing, False, node)
            injected = injected.format(node=node)
        seeded = await asyncio.to_thread(seed_cloud, demo)
        say(
            f"seeded: image {seeded.image_name} (md5 {seeded.image_checksum}), network {seeded.network_name}, "
            + ", ".join(f"server {v.name} on {v.host}" for v in seeded.servers)
        )
        plan = load_plan(PLAN)
        with settings.scoped(address=address, profile=None, task_queue=demo_cli.TASK_QUEUE, ui_url=ui):
            client = await connect()
            async with demo_cli._worker(client, demo.worker_env(), address) as worker_exit:
                say(
                    f"upgrading {plan.cloud.name}: {' → '.join(SERVICES)} {plan.release.from_} → {plan.release.to}"
                    + (f", with an injected failure: {injected}" if injected else "")
                )
                code = await demo_cli._upgrade(worker_exit, stop, PLAN)
            report = await demo_cli._report(client, plan.workflow_id)
            retried = await retried_activities(client, plan.workflow_id)
        say(
            "activity attempts: every activity ended on its first attempt"
            if not retried
            else "activities retried: " + "; ".join(f"{k} ({why})" for k, why in sorted(retried.items()))
        )
        problems = await asyncio.to_thread(after_cloud, demo, seeded, report)
        await asyncio.to_thread(aftermath, demo, report, problems)
        await asyncio.to_thread(data_plane_evidence, demo, report)
        say(f"cloud demo finished in {time.monotonic() - started:.0f}s (exit {code})")
        return code
    finally:

        def down() -> None:
            with out().status("stopping the cloud and its Kubernetes lab"):
                demo.kube_cloud.down()
                demo.kube_cloud.kube.down()

        await demo_cli.demo_end(
            keep,
            stop,
            server,
            down if up else None,
            "the cloud, worker state and the Temporal server are left running",
            codec,
        )


async def retried_activities(client: Any, upgrade_id: str, services: Sequence[str] = SERVICES) -> dict[str, str]:
    """Each activity of the upgrade and its services' workflows that took more than one attempt
    (``<workflow>: <activity>`` -> ``attempt N after: <the failure of the attempt before>``), read from
    their histories: with the worker's activity slots and threads matched none should, unless a
    failure was injected."""
    from temporalio.api.enums.v1 import TimeoutType

    retried: dict[str, tuple[int, str]] = {}
    workflows = [upgrade_id]
    for service in services:
        workflows.append(wf := io.service_workflow_id(upgrade_id, service))
        workflows.extend(await batch_workflows(client, wf))
    for wf in workflows:
        names: dict[int, str] = {}
        async for event in client.get_workflow_handle(wf).fetch_history_events():
            if event.HasField("activity_task_scheduled_event_attributes"):
                names[event.event_id] = event.activity_task_scheduled_event_attributes.activity_type.name
            elif event.HasField("activity_task_started_event_attributes"):
                started = event.activity_task_started_event_attributes
                key = f"{wf}: {names.get(started.scheduled_event_id, '?')}"
                if started.attempt > retried.get(key, (1, ""))[0]:
                    failure = started.last_failure
                    cause = failure.message or failure.WhichOneof("failure_info") or "?"
                    if failure.HasField("timeout_failure_info"):
                        cause = f"{cause} ({TimeoutType.Name(failure.timeout_failure_info.timeout_type)})"
                    retried[key] = (started.attempt, cause)
    return {key: f"attempt {n} after: {cause}" for key, (n, cause) in retried.items()}


async def batch_workflows(client: Any, service_workflow: str) -> list[str]:
    """The ids of a service's DataPlaneBatch workflows (``<service workflow>/batch-<n>``), in order
    (described one by one: the visibility store lags behind a workflow's start)."""
    from temporalio.service import RPCError

    found: list[str] = []
    while True:
        wf = f"{service_workflow}/batch-{len(found) + 1}"
        try:
            await client.get_workflow_handle(wf).describe()
        except RPCError:
            return found
        found.append(wf)


def data_plane_evidence(demo: CloudDemo, report: io.UpgradeReport | None) -> None:
    """What proves the drain, read outside the engine: for each nova-compute pod the cloud controller
    replaced, the servers nova placed on its node at that moment (lab/cloud_controller.py); for each
    server the upgrade moved, its migration record as nova's os-migrations lists it."""
    from cliapp.common import out

    nova = next((s for s in report.services if s.service == "nova"), None) if report else None
    if nova is None or not nova.data_plane:
        return
    table = Table(title="nova-compute pods replaced: servers on the node at that moment")
    for column in ("at", "node", "pod", "release", "servers on the node"):
        table.add_column(column)
    for r in demo.kube_cloud.replacements():
        table.add_row(
            r["at"],
            r["node"],
            r["pod"],
            r["release"],
            str(len(r["servers"])) + (f" {r['servers']}" if r["servers"] else ""),
        )
    out().print(table)
    conn = demo.kube_cloud.cloud().connect()
    try:
        records = {(m.server_id, m.id): m for m in conn.compute.migrations()}
    finally:
        conn.close()
    table = Table(title="servers moved by the drain, with nova's migration records")
    for column in ("server", "from", "to", "kind", "migration", "status (os-migrations)"):
        table.add_column(column)
    for node in nova.data_plane:
        for m in node.moved:
            record = records.get((m.server, m.migration_id))
            table.add_row(
                m.name or m.server,
                m.source,
                m.dest,
                m.kind,
                str(m.migration_id),
                record.status if record else "no record",
            )
    out().print(table)


def aftermath(demo: CloudDemo, report: io.UpgradeReport | None, problems: list[str]) -> None:
    """What an operator checks by hand after the upgrade: per service the chart deployed, the release
    its pods run, the Helm revisions, the rollback; then the after-checks."""
    from cliapp.common import out

    table = Table(title="after the upgrade")
    for column in ("service", "chart deployed", "pods run", "helm revisions", "outcome"):
        table.add_column(column)
    results = {s.service: s for s in report.services} if report else {}
    charts, served = demo.charts(), demo.served()
    for service in SERVICES:
        revisions = "; ".join(f"{h['revision']} {h['chart']} {h['status']}" for h in demo.history(service))
        svc = results.get(service)
        outcome: str = svc.outcome if svc else "-"
        if svc and svc.rollback:
            outcome += f" (rollback: {svc.rollback.kind})"
        table.add_row(service, charts[service], ", ".join(sorted(served[service])), revisions, outcome)
    out().print(table)
    out().print("after-checks: " + ("all passed" if not problems else "; ".join(problems)))
