"""The data plane activities that look before anything moves, and the one that replaces a node's pod:
``dataplane.inventory``, ``dataplane.capacity`` and ``dataplane.replace`` (model/io_dataplane.py has
the order; disable, drain, enable and verify are in activities/dataplane_node.py).

* **inventory** — the data plane DaemonSets (by name and label selector), their pods per node and
  whether each runs a target image, the node's labels; from nova the compute service per host
  (zone, up, disabled and why) and its servers (all projects); from the cell database each
  record's ``services.version``. ``refusals`` says, with the fix, what makes a node-by-node upgrade
  impossible: a RollingUpdate DaemonSet, a DaemonSet not found, a node without a service record.
* **capacity** — for every server on the batch's hosts, placement's allocation candidates for its
  own allocation (``required=!COMPUTE_STATUS_DISABLED``), excluding the batch's and the avoided
  hosts; servers are placed largest first and each takes its room from the providers' summaries,
  so two servers never both claim the last of a host. The first that fits nowhere is named.
* **replace** — see activities/dataplane_kube.py: the node's pods deleted (unless a retry finds
  them new and Ready), watched until each new pod is Ready on the target images, then nova's
  record of the host at the target ``service_version`` and up.
"""

from __future__ import annotations

import time
from typing import Any

import structlog
from temporalio import activity

from activities import dataplane_kube as kube
from activities.dataplane_nova import Api, fresh_key, service_versions
from activities.kube_client import api_client, reraise
from activities.kube_watch import heartbeat, sleep
from model import errors
from model.io_dataplane import (
    DATAPLANE_CAPACITY,
    DATAPLANE_INVENTORY,
    DATAPLANE_REPLACE,
    CapacityInput,
    CapacityResult,
    DataPlaneNode,
    InventoryInput,
    InventoryResult,
    Placement,
    ReplaceInput,
    ReplaceResult,
)

log = structlog.get_logger(__name__)
POLL_SECONDS = 2.0  # the cell database has no watch: its record is read this often


# --- inventory -------------------------------------------------------------------------------------
@activity.defn(name=DATAPLANE_INVENTORY, no_thread_cancel_exception=True)
def inventory(inp: InventoryInput) -> InventoryResult:
    """The data plane's nodes as Kubernetes and nova see them (module docstring)."""
    ns = inp.target.namespace
    with api_client(inp.target) as api:
        try:
            found, refusals = kube.find_daemonsets(api, inp.target, inp.daemonsets, inp.selector)
            per_node = kube.pods_by_node(api, inp.target, found)
            labels = kube.node_labels(api)
        except Exception as exc:
            reraise(exc, f"the data plane DaemonSets of {inp.service} in namespace {ns!r}")
    heartbeat(step="inventory", daemonsets=len(found), nodes=len(per_node))
    if not found and not refusals:
        refusals.append(
            f"{inp.service}: no DaemonSet named {inp.daemonsets or '-'} or matching selector {inp.selector!r} in "
            f"namespace {ns!r}: fix the service's data_plane.workloads / data_plane.selector"
        )
    for ds in found:
        if kube.strategy(ds) == "RollingUpdate":
            refusals.append(
                f"DaemonSet {ds['metadata']['name']!r} has updateStrategy RollingUpdate: a chart upgrade would "
                f"replace the pods of every node at once; fix: {kube.ONDELETE_FIX}"
            )
    with Api(inp.cloud) as nova:
        services = nova.compute_services(inp.binary)
        servers: dict[str, list[str]] = {}
        for server in nova.servers():
            host = server.get("OS-EXT-SRV-ATTR:host") or ""
            if host:
                servers.setdefault(host, []).append(server["id"])
    versions = service_versions(inp.database, inp.binary, inp.target, fresh_key("inventory")) if inp.database else {}
    nodes = []
    for node in sorted(per_node):
        pods = per_node[node]
        images = sorted({i for _, p in pods for i in kube.pod_images(p)})
        svc = services.get(node)
        if svc is None:
            refusals.append(
                f"node {node} runs {', '.join(sorted({d for d, _ in pods}))} but nova has no {inp.binary} service "
                f"record for host {node}: fix the compute's host name (nova.conf [DEFAULT] host = the node's name)"
            )
            svc = {}
        nodes.append(
            DataPlaneNode(
                node=node,
                zone=str(svc.get("zone") or ""),
                labels=labels.get(node, {}),
                daemonsets=sorted({d for d, _ in pods}),
                pods=sorted(p["metadata"]["name"] for _, p in pods),
                images=images,
                upgraded=bool(inp.images) and all(kube.runs_targets(kube.pod_images(p), inp.images) for _, p in pods),
                servers=sorted(servers.get(node, [])),
                service_version=versions.get(node, 0),
                service_up=svc.get("state") == "up",
                disabled=svc.get("status") == "disabled",
                disabled_reason=str(svc.get("disabled_reason") or ""),
            )
        )
    log.info("dataplane_inventory", service=inp.service, nodes=len(nodes), refusals=len(refusals))
    return InventoryResult(daemonsets=[d["metadata"]["name"] for d in found], nodes=nodes, refusals=refusals)


# --- capacity --------------------------------------------------------------------------------------
def size_key(resources: dict[str, int]) -> tuple[int, int, int, int]:
    """Largest first: memory, then vCPUs, then disk, then everything else."""
    other = sum(v for k, v in resources.items() if k not in ("MEMORY_MB", "VCPU", "DISK_GB"))
    return (resources.get("MEMORY_MB", 0), resources.get("VCPU", 0), resources.get("DISK_GB", 0), other)


def free_of(summary: dict[str, Any]) -> dict[str, int]:
    return {rc: int(r.get("capacity", 0)) - int(r.get("used", 0)) for rc, r in (summary.get("resources") or {}).items()}


def choose(
    answer: dict[str, Any],
    need: dict[str, int],
    host_of: dict[str, str],
    excluded: set[str],
    taken: dict[str, dict[str, int]],
) -> str:
    """The provider (of a host outside ``excluded``) with the most free memory after what earlier
    servers of this check took; "" when none fits. ``taken`` is updated with the choice."""
    summaries = answer.get("provider_summaries") or {}
    best, best_room = "", -1
    for request in answer.get("allocation_requests") or []:
        allocs = request.get("allocations") or {}
        if not allocs or any(host_of.get(rp, rp) in excluded for rp in allocs):
            continue
        fits = True
        for rp, alloc in allocs.items():
            free = free_of(summaries.get(rp) or {})
            for rc, amount in (alloc.get("resources") or {}).items():
                if free.get(rc, 0) - taken.get(rp, {}).get(rc, 0) < int(amount):
                    fits = False
        if not fits:
            continue
        rp0 = next(iter(allocs))
        room = free_of(summaries.get(rp0) or {}).get("MEMORY_MB", 0) - taken.get(rp0, {}).get("MEMORY_MB", 0)
        if room > best_room:
            best, best_room = rp0, room
            chosen = allocs
    if not best:
        return ""
    for rp, alloc in chosen.items():
        for rc, amount in (alloc.get("resources") or {}).items():
            taken.setdefault(rp, {})[rc] = taken.get(rp, {}).get(rc, 0) + int(amount)
    return best


def plan_moves(nova: Api, batch: list[str], avoid: list[str]) -> CapacityResult:
    excluded = set(batch) | set(avoid)
    host_of = nova.hypervisor_hosts()
    servers = [s for host in batch for s in nova.servers(host)]
    wanted = [(s, nova.allocation(s["id"])) for s in servers]
    wanted.sort(key=lambda sw: size_key(sw[1]), reverse=True)
    taken: dict[str, dict[str, int]] = {}
    placements: list[Placement] = []
    for i, (server, need) in enumerate(wanted, 1):
        heartbeat(step="capacity", server=server["id"], index=i, total=len(wanted))
        source = server.get("OS-EXT-SRV-ATTR:host") or ""
        rp = choose(nova.candidates(need), need, host_of, excluded, taken) if need else ""
        place = Placement(
            server=server["id"], name=server.get("name") or "", source=source, dest=host_of.get(rp, ""), resources=need
        )
        placements.append(place)
        if not rp:
            needs = ", ".join(f"{k} {v}" for k, v in sorted(need.items())) or "no allocation in placement"
            why = (
                f"server {place.name or place.server} ({place.server}) on {source} needs {needs}: no host outside "
                f"{', '.join(sorted(excluded))} that is enabled has that room left"
            )
            return CapacityResult(fits=False, servers=len(wanted), placements=placements, unplaceable=why)
    return CapacityResult(fits=True, servers=len(wanted), placements=placements)


@activity.defn(name=DATAPLANE_CAPACITY, no_thread_cancel_exception=True)
def capacity(inp: CapacityInput) -> CapacityResult:
    """Whether every server of the batch's hosts fits on the hosts outside it (module docstring)."""
    with Api(inp.cloud) as nova:
        result = plan_moves(nova, inp.batch, inp.avoid)
    log.info("dataplane_capacity", batch=inp.batch, fits=result.fits, servers=result.servers)
    return result


# --- replace ---------------------------------------------------------------------------------------
def _previous() -> list[str]:
    """The pods an earlier attempt of this activity deleted (heartbeat details)."""
    if activity.in_activity():
        details = activity.info().heartbeat_details
        if details and isinstance(details[0], dict):
            return list(details[0].get("deleted") or [])
    return []


def _ours(pods: dict[str, dict[str, Any]], uids: dict[str, str]) -> dict[str, dict[str, Any]]:
    """DaemonSet name -> its pod on the node (the newest when a terminating one is still there)."""
    out: dict[str, dict[str, Any]] = {}
    for pod in sorted(pods.values(), key=lambda p: p["metadata"].get("creationTimestamp") or ""):
        ds = uids.get(kube.owner_uid(pod))
        if ds:
            out[ds] = pod
    return out


def is_new(pod: dict[str, Any], generation: int, images: list[str]) -> bool:
    """Created from the DaemonSet's current template (its ``pod-template-generation`` label, as the
    DaemonSet controller judges), or already running the target images."""
    label = ((pod.get("metadata") or {}).get("labels") or {}).get("pod-template-generation")
    if label is not None and generation and label == str(generation):
        return True
    return bool(images) and kube.runs_targets(kube.pod_images(pod), images)


@activity.defn(name=DATAPLANE_REPLACE, no_thread_cancel_exception=True)
def replace(inp: ReplaceInput) -> ReplaceResult:
    """Replace the node's data plane pods and wait for the new ones and nova's record (module docstring)."""
    started = time.monotonic()
    deadline = started + inp.timeout_seconds
    ns = inp.target.namespace
    if inp.service_version and inp.database is None:
        raise errors.permanent(
            errors.PLAN_INVALID, f"{inp.node}: the service version is read from the cell database: pass its database"
        )
    deleted = _previous()
    result = ReplaceResult(node=inp.node, deleted=list(deleted))
    with api_client(inp.target) as api:
        try:
            found, missing = kube.find_daemonsets(api, inp.target, inp.daemonsets, "")
            if missing:
                raise errors.permanent(errors.WORKLOAD_NOT_FOUND, "; ".join(missing))
            for ds in found:
                if inp.images and not kube.runs_targets(kube.template_images(ds), inp.images):
                    raise errors.permanent(
                        errors.PLAN_INVALID,
                        f"DaemonSet {ds['metadata']['name']!r} would create pods running "
                        f"{', '.join(kube.template_images(ds))}, not {', '.join(inp.images)}: its template must "
                        "change first (the Helm upgrade of the release), then its pods are replaced node by node",
                    )
            uids = {ds["metadata"]["uid"]: ds["metadata"]["name"] for ds in found}
            generation = {ds["metadata"]["name"]: int(ds["metadata"].get("generation") or 0) for ds in found}
            waiting = "the node's pods"
            for event, pods in kube.watch_node_pods(api, ns, inp.node, deadline=deadline):
                if event.startswith("unreachable"):
                    waiting = f"Kubernetes API {event}"
                ours = _ours(pods, uids)
                for name, pod in sorted(ours.items()):
                    meta = pod["metadata"]
                    if is_new(pod, generation[name], inp.images) or meta.get("deletionTimestamp"):
                        continue
                    if meta["name"] not in deleted:
                        if kube.delete_pod(api, ns, meta["name"], meta.get("uid", "")):
                            log.info("dataplane_pod_deleted", node=inp.node, pod=meta["name"], daemonset=name)
                        deleted.append(meta["name"])
                        result.deleted = list(deleted)
                ready = [p for p in ours.values() if kube.is_ready(p) and p["metadata"]["name"] not in deleted]
                wrong = [p for p in ready if inp.images and not kube.runs_targets(kube.pod_images(p), inp.images)]
                if wrong:
                    raise errors.permanent(
                        errors.PLAN_INVALID,
                        f"{inp.node}: the new pod {wrong[0]['metadata']['name']} runs "
                        f"{', '.join(kube.pod_images(wrong[0]))}, not {', '.join(inp.images)}",
                    )
                if ours and len(ready) == len(ours):
                    result.pods = sorted(p["metadata"]["name"] for p in ready)
                    result.images = sorted({i for p in ready for i in kube.pod_images(p)})
                    break
                pending = sorted(set(ours) - {uids.get(kube.owner_uid(p), "") for p in ready})
                waiting = f"a new Ready pod of {', '.join(pending) or 'the data plane DaemonSets'} on {inp.node}"
                heartbeat(step="replace", node=inp.node, waiting=waiting, deleted=deleted)
            else:
                raise errors.permanent(
                    errors.ROLLOUT_FAILED,
                    f"{inp.node}: no new Ready pod within {inp.timeout_seconds}s: waited for {waiting}",
                    node=inp.node,
                )
        except Exception as exc:
            reraise(exc, f"the data plane pods on node {inp.node}", node=inp.node)
    result.already = not deleted
    if inp.cloud:  # without a cloud (a Kubernetes-only test) the pods are all there is to wait for
        result.service_version = _wait_record(inp, deadline, deleted)
    result.seconds = round(time.monotonic() - started, 2)
    log.info("dataplane_replaced", node=inp.node, deleted=result.deleted, already=result.already, s=result.seconds)
    return result


def _wait_record(inp: ReplaceInput, deadline: float, deleted: list[str]) -> int:
    """Nova's record of the host at ``service_version`` (cell database) and up (its API)."""
    with Api(inp.cloud) as nova:
        while True:
            svc = nova.compute_services(inp.binary).get(inp.node) or {}
            version = (
                service_versions(inp.database, inp.binary, inp.target, fresh_key("replace")).get(inp.node, 0)
                if inp.database
                else 0
            )
            up = svc.get("state") == "up"
            if up and version >= inp.service_version:
                return version
            state = svc.get("state", "missing")
            waiting = (
                f"nova's {inp.binary} record of {inp.node}: version {version} (want {inp.service_version}), {state}"
            )
            if time.monotonic() >= deadline:
                raise errors.permanent(
                    errors.ROLLOUT_FAILED,
                    f"{inp.node}: the new pod is Ready but {waiting} after {inp.timeout_seconds}s",
                )
            heartbeat(step="replace", node=inp.node, waiting=waiting, deleted=deleted)
            sleep(POLL_SECONDS)
