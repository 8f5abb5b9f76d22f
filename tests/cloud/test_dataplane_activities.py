"""The data plane activities against real nova and placement (the direct cloud lab, fake virt driver,
at least two computes): the capacity check refusing a batch whose server fits nowhere else, disable
and enable leaving an operator's disable alone, a live and a cold drain with their migration records,
and a server scheduled onto a node. Each activity's time goes to ``<cloud>/dataplane-times.json``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client
from temporalio.exceptions import ApplicationError

from activities import dataplane, dataplane_node
from activities.dataplane_nova import Api
from activities.kube_client import SMP, api_client, call
from lab.cloud_k8s import KubeCloud
from lab.k8s.pytest_plugin import kube_context
from lab.openstack import smoke
from lab.openstack.cloud import ADMIN_CLOUD, CloudLab
from lab.openstack.cloud_plugin import measure
from lab.openstack.services import nova as nova_lab
from model import errors
from model.io_dataplane import CapacityInput, InventoryInput, NodeInput, ReplaceInput
from model.plan import Database, KubeTarget
from tests.waiting import eventually_sync

UPGRADE = "upgrade/lab-cloud/dp-test"
TIMES: dict[str, list[float]] = {}


def timed(name: str, fn: Callable[[Any], Any], arg: Any) -> Any:
    t0 = time.monotonic()
    try:
        return fn(arg)
    finally:
        TIMES.setdefault(name, []).append(round(time.monotonic() - t0, 2))


@pytest.fixture(scope="module")
def lab(cloud: CloudLab) -> Iterator[tuple[CloudLab, list[str], smoke.Seeded]]:
    """The session cloud with two computes at least (a second one added when it has one) and a
    seeded server on each."""
    if len(cloud.hosts) < 2:
        cloud.hosts.append("lab-node-1")
        cloud.service("nova").write_host_config(cloud.context("nova"), "lab-node-1")  # type: ignore[attr-defined]
        cloud.save()
        cloud.serve("nova", cloud.served("nova") or cloud.release)
    conn = cloud.connect()
    project = conn.current_project_id  # the big servers of the capacity test: no quota in their way
    with Api(ADMIN_CLOUD) as nova:
        nova.call("compute", "PUT", f"/os-quota-sets/{project}", body={"quota_set": {"ram": -1, "cores": -1}})
    seeded = smoke.seed(conn)
    try:
        yield cloud, sorted(cloud.hosts), seeded
    finally:
        (cloud.base / "dataplane-times.json").write_text(json.dumps(TIMES, indent=1))
        with Api(ADMIN_CLOUD) as nova:
            for svc in nova.compute_services("nova-compute").values():
                if svc.get("status") == "disabled":
                    nova.set_service(svc["id"], disabled=False)
        smoke.remove(conn, seeded)
        conn.close()


def boot(nova: Api, name: str, host: str, flavor: str, image: str) -> str:
    body = {"server": {"name": name, "flavorRef": flavor, "imageRef": image, "networks": "none", "host": host}}
    sid = str(nova.call("compute", "POST", "/servers", body=body, ok=(202,))["server"]["id"])
    eventually_sync(lambda: (nova.server(sid) or {}).get("status") == "ACTIVE", within=120, what=f"{name} ACTIVE")
    return sid


def delete(nova: Api, sid: str) -> None:
    nova.call("compute", "DELETE", f"/servers/{sid}", ok=(204,), missing_ok=True)
    eventually_sync(lambda: nova.server(sid) is None, within=120, what=f"server {sid} gone")


def free_memory(nova: Api, host: str) -> int:
    rp = next(rp for rp, h in nova.hypervisor_hosts().items() if h == host)
    inv = nova.call("placement", "GET", f"/resource_providers/{rp}/inventories")["inventories"]["MEMORY_MB"]
    used = nova.call("placement", "GET", f"/resource_providers/{rp}/usages")["usages"].get("MEMORY_MB", 0)
    return int((inv["total"] - inv["reserved"]) * inv["allocation_ratio"]) - int(used)


def test_capacity_refuses_a_batch_whose_server_fits_nowhere_else(lab: Any) -> None:
    _, hosts, seeded = lab
    batch, others = hosts[0], hosts[1:]
    with Api(ADMIN_CLOUD) as nova:
        on_batch = len(nova.servers(batch))
    fits = timed("capacity", dataplane.capacity, CapacityInput(cloud=ADMIN_CLOUD, batch=[batch]))
    assert fits.fits and fits.servers == on_batch >= 1 and all(p.dest in others for p in fits.placements)
    assert fits.placements[0].resources.get("MEMORY_MB", 0) > 0
    with Api(ADMIN_CLOUD) as nova:
        # a server of 60% of a host's room on the batch's host, and one on every other host: the
        # batch's cannot move (each other host has 40% left)
        size = int(min(free_memory(nova, h) for h in hosts) * 0.6)
        flavor = nova.call(
            "compute",
            "POST",
            "/flavors",
            body={"flavor": {"name": f"dp-big-{size}", "ram": size, "vcpus": 1, "disk": 1}},
        )["flavor"]["id"]
        big = []
        try:
            for host in hosts:
                big.append(boot(nova, f"dp-big-{host}", host, flavor, seeded.image_id))
            refused = timed("capacity", dataplane.capacity, CapacityInput(cloud=ADMIN_CLOUD, batch=[batch]))
            assert not refused.fits and refused.servers == on_batch + 1
            assert f"dp-big-{batch} ({big[0]}) on {batch} needs" in refused.unplaceable
            assert f"MEMORY_MB {size}" in refused.unplaceable
            # the small seeded server still found room: placed after the big one, it is not the one named
            assert refused.placements[0].server == big[0] and refused.placements[0].dest == ""
        finally:
            for sid in big:
                delete(nova, sid)
            nova.call("compute", "DELETE", f"/flavors/{flavor}", ok=(202, 204))


def test_disable_and_enable_are_idempotent_and_leave_an_operators_disable(lab: Any) -> None:
    _, hosts, _ = lab
    inp = NodeInput(cloud=ADMIN_CLOUD, node=hosts[0], upgrade_id=UPGRADE)
    first = timed("disable", dataplane_node.disable, inp)
    assert first.disabled and first.changed and first.reason == f"stackhop {UPGRADE}"
    again = timed("disable", dataplane_node.disable, inp)  # a retry
    assert again.disabled and not again.changed and again.reason == first.reason
    on = timed("enable", dataplane_node.enable, inp)
    assert not on.disabled and on.changed
    assert not timed("enable", dataplane_node.enable, inp).changed
    with Api(ADMIN_CLOUD) as nova:  # the operator's own disable: reported, never overwritten or lifted
        svc = nova.compute_services("nova-compute")[hosts[0]]
        nova.set_service(svc["id"], disabled=True, reason="operator: disk check")
    theirs = dataplane_node.disable(inp)
    assert theirs.disabled and not theirs.changed and theirs.reason == "operator: disk check"
    kept = dataplane_node.enable(inp)
    assert kept.disabled and not kept.changed and kept.reason == "operator: disk check"
    with Api(ADMIN_CLOUD) as nova:
        assert nova.compute_services("nova-compute")[hosts[0]]["status"] == "disabled"
        nova.set_service(svc["id"], disabled=False)


@pytest.mark.parametrize("mode", ["live", "cold"])
def test_drain_moves_every_server_with_a_migration_record(lab: Any, mode: str) -> None:
    _, hosts, _ = lab
    node = hosts[0] if mode == "live" else hosts[1]
    with Api(ADMIN_CLOUD) as nova:
        servers = sorted(s["id"] for s in nova.servers(node))
    assert servers
    inp = NodeInput(cloud=ADMIN_CLOUD, node=node, upgrade_id=UPGRADE, drain=mode, avoid=[node], timeout_seconds=300)
    stays = timed("drain none", dataplane_node.drain, inp.model_copy(update={"drain": "none"}))
    assert stays.left == servers and not stays.moved
    with Api(ADMIN_CLOUD) as nova:
        last = max((int(m["id"]) for m in nova.call("compute", "GET", "/os-migrations")["migrations"]), default=0)
    dataplane_node.disable(inp)
    if mode == "live":  # one server already moving (an earlier attempt's migration): not started twice
        with Api(ADMIN_CLOUD) as nova:
            nova.action(servers[0], {"os-migrateLive": {"host": None, "block_migration": "auto"}})
    try:
        result = timed(f"drain {mode}", dataplane_node.drain, inp)
    finally:
        dataplane_node.enable(inp)
    assert sorted(m.server for m in result.moved) == servers and not result.left
    done = "completed" if mode == "live" else "confirmed"
    assert {(m.kind, m.status) for m in result.moved} == {(mode, done)}
    assert all(m.migration_id and m.dest and m.dest != node for m in result.moved)
    with Api(ADMIN_CLOUD) as nova:
        assert nova.servers(node) == []
        for m in result.moved:
            kind = "live-migration" if mode == "live" else "migration"
            (record,) = [r for r in nova.migrations(m.server) if r["migration_type"] == kind and int(r["id"]) > last]
            assert int(record["id"]) == m.migration_id
            assert record["status"] == done and record["source_compute"] == node
            assert (nova.server(m.server) or {}).get("OS-EXT-SRV-ATTR:host") == m.dest


def test_verify_schedules_a_server_onto_the_node(lab: Any) -> None:
    _, hosts, _ = lab
    inp = NodeInput(cloud=ADMIN_CLOUD, node=hosts[-1], upgrade_id=UPGRADE, timeout_seconds=180)
    result = timed("verify", dataplane_node.verify, inp)
    assert result.server
    with Api(ADMIN_CLOUD) as nova:
        assert nova.server(result.server) is None  # deleted and gone
    dataplane_node.disable(inp)  # the scheduler validates host=: a disabled node takes no server
    try:
        with pytest.raises(ApplicationError) as ei:
            dataplane_node.verify(inp)
    finally:
        dataplane_node.enable(inp)
    assert ei.value.type == errors.CHECK_FAILED and f"no server can be scheduled onto {hosts[-1]}" in ei.value.message
    with Api(ADMIN_CLOUD) as nova:
        assert not [s for s in nova.servers(hosts[-1]) if s["name"].startswith("stackhop-verify")]


# --- on Kubernetes: the DaemonSets, their pods per node, and one node's pod replaced ----------------
SELECTOR = "application=nova,component=compute"


def patch_daemonset(target: KubeTarget, name: str, body: dict[str, Any]) -> None:
    with api_client(target) as api:
        call(client.AppsV1Api(api).patch_namespaced_daemon_set, name, target.namespace, body, _content_type=SMP)


def test_inventory_and_replace_one_node_on_kubernetes(k8s_cloud: KubeCloud, monkeypatch: pytest.MonkeyPatch) -> None:
    """Release-agnostic (the session's cloud may be at either release): the new image is the one the
    nodes run now under another tag of the same release, so nova's record stays at that release's
    version; the DaemonSet is put back as it was."""
    lab = k8s_cloud.cloud()
    assert lab.mariadb
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(lab.clouds_yaml))  # the direct cloud's is back afterwards
    target = KubeTarget(context=kube_context(k8s_cloud.kube), namespace=k8s_cloud.namespace)
    target = target.model_copy(update={"kubeconfig": str(k8s_cloud.kube.kubeconfig)})
    db = Database(name="nova", defaults_file=str(lab.mariadb.defaults_file))
    inp = InventoryInput(target=target, cloud=ADMIN_CLOUD, service="nova", selector=SELECTOR, database=db)
    inv = timed("inventory", dataplane.inventory, inp)
    assert inv.daemonsets and len(inv.nodes) == len(k8s_cloud.nodes())
    node = inv.nodes[0]
    old = node.images[0]
    release = next(r for r in nova_lab.SERVICE_VERSIONS if old.rpartition(":")[2].startswith(r))
    new = f"{old.rpartition(':')[0]}:{release}-dp-test"
    with Api(ADMIN_CLOUD) as nova:
        services = nova.compute_services("nova-compute")
    for n in inv.nodes:
        assert n.service_version == nova_lab.SERVICE_VERSIONS[release] and n.service_up and n.pods
        assert n.zone == services[n.node]["zone"] and n.labels.get("kubernetes.io/hostname") == n.node
    (ds,) = node.daemonsets
    with api_client(target) as api:
        before = call(client.AppsV1Api(api).read_namespaced_daemon_set, ds, target.namespace)
    was = before["spec"]["updateStrategy"]
    container = before["spec"]["template"]["spec"]["containers"][0]["name"]
    if was["type"] == "RollingUpdate":
        assert any(f"DaemonSet {ds!r} has updateStrategy RollingUpdate" in r and "OnDelete" in r for r in inv.refusals)
    patch_daemonset(
        target,
        ds,
        {
            "spec": {
                "updateStrategy": {"type": "OnDelete", "rollingUpdate": None},
                "template": {"spec": {"containers": [{"name": container, "image": new}]}},
            }
        },
    )
    version = nova_lab.SERVICE_VERSIONS[release]
    rep = ReplaceInput(
        target=target,
        cloud=ADMIN_CLOUD,
        node=node.node,
        daemonsets=[ds],
        images=[new],
        service_version=version,
        database=db,
        timeout_seconds=300,
    )
    try:
        upgraded = timed("inventory", dataplane.inventory, inp.model_copy(update={"images": [new]}))
        assert not upgraded.refusals and not any(n.upgraded for n in upgraded.nodes)
        done = timed("replace", dataplane.replace, rep)
        assert done.deleted == node.pods and not done.already and done.images == [new]
        assert done.service_version == version and done.pods and done.pods != node.pods
        again = timed("replace", dataplane.replace, rep)
        assert again.already and again.deleted == [] and again.pods == done.pods
        after = dataplane.inventory(inp.model_copy(update={"images": [new]}))
        assert [n.node for n in after.nodes if n.upgraded] == [node.node]
    finally:  # back as it was: the old image on that node, then the strategy
        patch_daemonset(
            target, ds, {"spec": {"template": {"spec": {"containers": [{"name": container, "image": old}]}}}}
        )
        dataplane.replace(rep.model_copy(update={"images": [old]}))
        patch_daemonset(target, ds, {"spec": {"updateStrategy": was}})
        measure(k8s_cloud, dataplane_s={k: TIMES[k] for k in ("inventory", "replace") if k in TIMES})
