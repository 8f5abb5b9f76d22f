"""The whole-cloud plan (examples/lab-cloud.yaml) run by the engine on the cloud lab on Kubernetes.

A real worker (every activity of the catalog, in this process, with the environment the cloud gives:
``CloudDemo.worker_env``) on the session's Temporal dev server drives the session's ``k8s_cloud``:
each service's Helm release is upgraded by the Helm adapter, the rollout waits cover every workload
but nova-compute's OnDelete DaemonSets (nova's data plane: replaced node batch by node batch), the
recipe steps run the cloud's manage and status commands.

Order (this module runs after test_cloud_k8s.py, which leaves placement and neutron on their
2026.1.0 charts, nova untouched): nova alone with the injected rollout failure (nova at 2025.2 before
and after); nova alone with one compute node failing (the data plane stops at max_failed); then the
whole cloud, after putting every release back on its 2025.2.0 chart and its computes on 2025.2 (the
schemas stay as those tests' syncs left them: additive, so 2025.2 serves on them and the engine
finds them already synced).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

import worker as stackhop_worker
from lab.cloud_controller import now
from lab.cloud_demo import (
    PLAN,
    CloudDemo,
    after_cloud,
    batch_workflows,
    inject_node,
    moved_servers,
    retried_activities,
    seed_cloud,
)
from lab.cloud_k8s import SERVICES, KubeCloud, chart, values
from lab.helm import CHARTS
from lab.openstack.cloud_plugin import measure
from model import io
from model.io_dataplane import NodeResult
from model.loading import load_plan
from tests.waiting import eventually, eventually_sync
from workflows.upgrade import UpgradeWorkflow

UPGRADE_TIMEOUT = 1500  # seconds: the whole cloud on 2 cores shared with the main test group


@pytest.fixture(scope="module")
def demo(k8s_cloud: KubeCloud) -> CloudDemo:
    k8s_cloud.cloud().write_tempest_workspace()  # the plan's tempest checks run against this cloud
    return CloudDemo(k8s_cloud)


# The tempest checks this module's upgrade runs: glance's and nova's (image smoke, and the compute
# tests the demo names). keystone's and neutron's smoke (1-2 min each on 2 cores) run against the same
# services in tests/cloud/test_smoke.py; `stackhop demo --cloud full` runs all four.
TEMPEST_IN_TESTS = {"glance", "nova"}


def plan_copy(tmp_path: Path, services: list[str] | None = None, cloud: str | None = None, **data_plane: Any) -> Path:
    """examples/lab-cloud.yaml, optionally with only ``services`` (their depends_on emptied), its own
    cloud name and nova's ``data_plane`` rules changed; the chart repository as an absolute path, so
    the copy lives anywhere."""
    doc = yaml.safe_load(PLAN.read_text())
    for s in doc["services"]:
        if s["name"] == "nova":
            s["data_plane"].update(data_plane)
    if services is not None:
        doc["services"] = [s for s in doc["services"] if s["name"] in services]
        for s in doc["services"]:
            s["depends_on"] = [d for d in s["depends_on"] if d in services]
    if cloud:
        doc["cloud"]["name"] = cloud
    for s in doc["services"]:
        if s["name"] not in TEMPEST_IN_TESTS:
            s["checks"] = [c for c in s["checks"] if c["kind"] != "tempest"]
    for s in doc["services"]:
        s["helm"]["repo"] = str(CHARTS)
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


async def run_plan(
    client: Client, demo: CloudDemo, path: Path, monkeypatch: pytest.MonkeyPatch, approve: Sequence[str] = ()
) -> io.UpgradeReport:
    """The plan through the Upgrade workflow with a real worker (every activity, this process, the
    cloud's environment) on its own task queue; the report, however the upgrade ended. ``approve``:
    the decisions answered, in order, each once the upgrade waits for it (as `stackhop approve`)."""
    from cliapp.render import outcome_of

    for key, value in demo.worker_env().items():
        monkeypatch.setenv(key, value)
    plan = load_plan(path)
    tq = f"cloud-{uuid.uuid4().hex[:8]}"
    async with stackhop_worker.build_worker(client, task_queue=tq):
        handle = await client.start_workflow(
            UpgradeWorkflow.run,
            io.UpgradeInput(plan=plan, plan_file=str(path), requested_by="test"),
            id=plan.workflow_id,
            task_queue=tq,
        )
        approver = asyncio.create_task(approve_each(client, handle, approve))
        _, report, message = await asyncio.wait_for(outcome_of(handle), UPGRADE_TIMEOUT)
        if report is not None and report.outcome == "succeeded":
            await approver  # every decision it was given was asked for and answered
        else:  # an upgrade that failed before a decision never asks it: the report says why
            approver.cancel()
            await asyncio.gather(approver, return_exceptions=True)
    assert report is not None, message
    return report


async def approve_each(client: Client, handle: WorkflowHandle[Any, Any], decisions: Sequence[str]) -> None:
    """Approve each decision once the upgrade's status shows it waiting, through the CLI's routing."""
    from cliapp.control import route
    from cliapp.progress import read_status

    for decision in decisions:

        async def asked(decision: str = decision) -> bool:
            try:
                st = await read_status(client, handle)
            except RPCError as e:  # a query the busy worker did not answer within its 5 s: look again
                if e.status not in (RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED):
                    raise  # the SDK's own deadline ("Timeout expired") comes as either
                return False
            return any(p.decision == decision for p in st.services)

        await eventually(asked, within=UPGRADE_TIMEOUT, what=f"the upgrade waits for {decision}", poll=1.0)
        (target,) = await route(client, handle, "approve", io.ApproveRequest(gate=decision))
        await target.execute_update("approve", io.ApproveRequest(gate=decision, by="test"))


def steps(result: io.ServiceResult) -> list[str]:
    return [f"{s.step}:{s.status}" for s in result.steps]


def done(result: io.ServiceResult) -> set[str]:
    return {s.step for s in result.steps if s.status == "done"}


def serves(demo: CloudDemo, service: str, release: str) -> bool:
    """Every pod of the service runs ``release``, and as many processes run as Ready pods."""
    return demo.served()[service] == {release} and not demo.kube_cloud.rolled_out([service], demo.kube_cloud.nodes())


def back_to_2025_2(demo: CloudDemo) -> list[str]:
    """Every release not on its 2025.2.0 chart back on it: rolled back to its install (the operator's
    values; a release the engine upgraded carries the plan's image values), else upgraded to it with
    the operator's values; returns the services that were not. nova-compute's DaemonSets are OnDelete:
    ``wait_ready`` deletes the compute pods whose image is not their DaemonSet's
    (``KubeCloud.replace_stale_computes``)."""
    helm, moved = demo.kube_cloud.helm(), []
    for service, deployed in demo.charts().items():
        if deployed != f"{service}-2025.2.0":
            first = helm.history(service)[0]
            if service == "nova":
                forget_nova_2026_1(demo)
            if first["chart"] == f"{service}-2025.2.0":
                # a release the engine upgraded carries its image values: back to the install's revision
                helm.run("rollback", service, str(first["revision"]))
            else:
                helm.upgrade(service, chart(service, "2025.2"), values=[values(service)], wait=False)
            moved.append(service)
    demo.kube_cloud.wait_ready(SERVICES, demo.kube_cloud.nodes(), timeout=600, replace_stale=True)
    return moved


def forget_nova_2026_1(demo: CloudDemo) -> None:
    """The lab's reset of nova's service records to 2025.2's version: once a 2026.1 service reported,
    nova refuses to start an older one ("This service is older (v70) than the minimum (v72) version of
    the rest of the deployment"), which is nova's own guard against a downgrade; a lab that goes back
    to 2025.2 for the next test says its services never ran 2026.1."""
    from lab.openstack.services.nova import SERVICE_VERSIONS

    mariadb = demo.kube_cloud.cloud().mariadb
    assert mariadb is not None
    old = SERVICE_VERSIONS["2025.2"]
    mariadb.sql(f"UPDATE services SET version = {old} WHERE version > {old}", "nova")


async def test_a_nova_rollout_that_never_gets_ready_rolls_back_its_images_only(
    client: Client, demo: CloudDemo, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """nova alone; the cloud controller never starts nova's 2026.1 pods. The status check, the
    snapshots of its three databases, their verification and the expand (api_db sync, db sync with
    33.0.2) complete; the chart upgrade's new pods never become Ready, the rollout fails (nova-api-osapi's
    ProgressDeadlineExceeded), and since the expand completed and is additive the rollback is a
    ``helm rollback`` to the 2025.2.0 revision, no restore. nova serves 2025.2 again, every compute
    up on its node."""
    assert demo.charts()["nova"] == "nova-2025.2.0" and serves(demo, "nova", "2025.2")
    nodes = demo.kube_cloud.nodes()
    started = time.monotonic()
    await asyncio.to_thread(demo.set_crashing, True)
    try:
        report = await run_plan(client, demo, plan_copy(tmp_path, ["nova"], cloud="lab-cloud-nova"), monkeypatch)
    finally:
        await asyncio.to_thread(demo.set_crashing, False)
    assert len(report.services) == 1, (report.outcome, report.message)
    (nova,) = report.services
    assert report.outcome == "rolled-back", (report.message, steps(nova))
    assert nova.outcome == "rolled-back", nova.message
    assert nova.rollback is not None and nova.rollback.kind == "images", nova.rollback
    assert nova.restore is None
    assert {"status", "snapshot", "verify", "expand", "undo-roll"} <= done(nova), steps(nova)
    assert {"roll:compensated", "rollout:failed"} <= set(steps(nova)), steps(nova)
    assert not {"unpin", "online"} & {s.step for s in nova.steps}, steps(nova)
    assert [c.purpose for c in nova.helm] == ["roll", "rollback"], nova.helm
    history = demo.history("nova")
    assert history[-1]["status"] == "deployed" and history[-1]["chart"] == "nova-2025.2.0", history
    eventually_sync(lambda: serves(demo, "nova", "2025.2"), within=300, what="nova back at 2025.2")
    eventually_sync(
        lambda: sorted(demo.kube_cloud.compute_hosts()) == nodes, within=300, what="every compute up on its node"
    )
    assert after_cloud(demo, seed_cloud(demo)) == []  # every API answers
    measure(demo.kube_cloud, nova_injected_rollback_s=round(time.monotonic() - started, 1))


async def test_a_compute_node_that_never_gets_ready_is_fenced_and_the_data_plane_stops_at_max_failed(
    client: Client, demo: CloudDemo, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """nova alone, ``max_failed: 0``; the nova-compute of the second batch's node never gets Ready at
    2026.1 (``--inject node``). The control plane rolls, the canary node is drained and upgraded; the
    failed node's replace times out and it is fenced (its compute service stays disabled, the reason
    names the upgrade); one failure is past the threshold, so the last batch never starts (its nodes'
    pods are never replaced) and nova ends failed with no rollback: replaced nodes stay on 2026.1 under
    the RPC pin, the way back is forward."""
    await asyncio.to_thread(back_to_2025_2, demo)
    node = inject_node(demo)
    since = now()
    await asyncio.to_thread(demo.set_crashing, False, node)
    try:
        # node_timeout bounds each node's drain as well as the failed node's replace: 2 minutes, since
        # a live migration of the canary's server took over 1 minute on a loaded CI machine
        plan = plan_copy(tmp_path, ["nova"], cloud="lab-cloud-nova-dp", node_timeout="2m")
        report = await run_plan(client, demo, plan, monkeypatch)
        disabled = {s["host"]: s for s in demo.kube_cloud.compute_services() if s.get("status") == "disabled"}
    finally:
        await asyncio.to_thread(demo.set_crashing, False)
        await asyncio.to_thread(enable_computes, demo)
    (nova,) = report.services
    assert nova.outcome == "failed" and nova.rollback is None, (nova.message, steps(nova))
    assert "fix forward" in nova.message, nova.message
    assert [c.purpose for c in nova.helm] == ["roll"], nova.helm
    assert not {"unpin", "validate", "online"} & {s.step for s in nova.steps}, steps(nova)
    by_batch: dict[int, list[NodeResult]] = {}
    for n in nova.data_plane:
        by_batch.setdefault(n.batch, []).append(n)
    assert sorted(by_batch) == [1, 2, 3] and len(by_batch[1]) == 1, nova.data_plane
    assert all(n.outcome == "upgraded" and n.release_after == "2026.1" for n in by_batch[1]), by_batch[1]
    (failed,) = by_batch[2]
    assert failed.node == node and failed.outcome == "failed" and failed.fenced, failed
    assert all(n.outcome == "skipped" for n in by_batch[3]), by_batch[3]
    assert list(disabled) == [node] and "stackhop" in disabled[node].get("disabled_reason", ""), disabled
    assert len(await batch_workflows(client, io.service_workflow_id(load_plan(plan).workflow_id, "nova"))) == 2
    replaced = [r for r in demo.kube_cloud.replacements() if r["at"] >= since]
    assert sorted(r["node"] for r in replaced) == sorted([by_batch[1][0].node, node]), replaced
    assert all(r["servers"] == [] for r in replaced), replaced


def enable_computes(demo: CloudDemo) -> None:
    """Every disabled nova-compute service enabled again (the operator's forward fix of a fenced node)."""
    conn = demo.kube_cloud.cloud().connect()
    try:
        for svc in conn.compute.services(binary="nova-compute"):
            if svc.status == "disabled":
                conn.compute.enable_service(svc)
    finally:
        conn.close()


async def test_the_whole_cloud_reaches_2026_1_through_its_helm_releases(
    client: Client, demo: CloudDemo, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """keystone, then placement, glance and neutron in parallel, then nova, each through its Helm
    release to chart 2026.1.0; every service succeeds and every pod runs 2026.1."""
    await asyncio.to_thread(back_to_2025_2, demo)
    seeded = await asyncio.to_thread(seed_cloud, demo)
    started, since = time.monotonic(), now()
    # the computes: a canary node, then zone by zone, each batch after the canary approved by the operator
    plan_path = plan_copy(tmp_path, approve=True)
    report = await run_plan(client, demo, plan_path, monkeypatch, approve=["nova/batch#2", "nova/batch#3"])
    took = time.monotonic() - started
    results = {s.service: s for s in report.services}
    assert report.outcome == "succeeded" and set(results) == set(SERVICES), report.message
    for service, result in results.items():
        assert result.outcome == "succeeded", (service, result.message, steps(result))
        assert "roll" in [c.purpose for c in result.helm], (service, result.helm)
    assert [c.purpose for c in results["nova"].helm] == ["roll", "restart"], results["nova"].helm
    assert {"status", "expand", "roll", "rollout", "unpin", "validate", "online"} <= done(results["nova"])
    assert demo.charts() == {s: f"{s}-2026.1.0" for s in SERVICES}
    nodes = demo.kube_cloud.nodes()
    eventually_sync(lambda: all(serves(demo, s, "2026.1") for s in SERVICES), within=120, what="2026.1 everywhere")
    assert sorted(demo.kube_cloud.compute_hosts()) == nodes
    assert await asyncio.to_thread(after_cloud, demo, seeded, report) == []
    await data_plane_drained(client, demo, report, results["nova"], since, load_plan(plan_path).workflow_id)
    # worker sizing: the probes run beside the steps, and no activity needed a second attempt
    assert await retried_activities(client, load_plan(plan_path).workflow_id) == {}
    waves = starts(report)
    measure(demo.kube_cloud, whole_cloud_upgrade_s=round(took, 1), whole_cloud_service_s=waves)
    # the middle wave ran in parallel: each of placement, glance and neutron started before the others ended
    middle = [waves[s] for s in ("placement", "glance", "neutron")]
    assert max(start for start, _ in middle) < min(end for _, end in middle), waves


async def data_plane_drained(
    client: Client, demo: CloudDemo, report: io.UpgradeReport, nova: io.ServiceResult, since: str, upgrade_id: str
) -> None:
    """Every compute node upgraded, canary first, one DataPlaneBatch workflow per batch; no server on a
    node when its pod was replaced (the cloud controller's record, taken as it stopped the old pod);
    every server of the seed moved with a completed live-migration record in nova."""
    nodes = {n.node: n for n in nova.data_plane}
    assert sorted(nodes) == demo.kube_cloud.nodes(), nova.data_plane
    assert all(n.outcome == "upgraded" and n.release_after == "2026.1" for n in nodes.values()), nova.data_plane
    batches = sorted({n.batch for n in nodes.values()})
    assert batches == [1, 2, 3] and [n.batch for n in nodes.values()].count(1) == 1, nova.data_plane
    assert len(await batch_workflows(client, io.service_workflow_id(upgrade_id, "nova"))) == 3
    replaced = [r for r in demo.kube_cloud.replacements() if r["at"] >= since]
    assert sorted({r["node"] for r in replaced}) == sorted(nodes), replaced
    assert all(r["servers"] == [] for r in replaced), replaced
    moved = [m for n in nodes.values() for m in n.moved]
    assert moved and all(m.kind == "live" and m.status == "completed" for m in moved), moved
    assert set(moved_servers(report)) >= {s.id for s in seeded_servers(demo)}, moved
    conn = demo.kube_cloud.cloud().connect()
    try:
        records = {m.id: m for m in conn.compute.migrations()}
    finally:
        conn.close()
    assert all(records[m.migration_id].status == "completed" for m in moved), moved


def seeded_servers(demo: CloudDemo) -> list[Any]:
    conn = demo.kube_cloud.cloud().connect()
    try:
        return [s for s in conn.compute.servers(all_projects=True) if s.name.startswith("stackhop-seed-")]
    finally:
        conn.close()


def starts(report: io.UpgradeReport) -> dict[str, Any]:
    """(first step's start, last step's end) of each service, in seconds from the upgrade's start."""
    from datetime import datetime

    t0 = datetime.fromisoformat(report.started_at)
    out: dict[str, Any] = {}
    for s in report.services:
        times = [
            (datetime.fromisoformat(x.started_at), datetime.fromisoformat(x.ended_at))
            for x in s.steps
            if x.started_at and x.ended_at
        ]
        out[s.service] = (
            round((min(a for a, _ in times) - t0).total_seconds(), 1),
            round((max(b for _, b in times) - t0).total_seconds(), 1),
        )
    return out
