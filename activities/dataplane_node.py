"""The per-node steps of the data plane that talk to nova only: ``dataplane.disable``, ``.drain``,
``.enable`` and ``.verify`` (model/io_dataplane.py has their order).

* **disable / enable** — the node's compute service, with the reason ``stackhop <upgrade_id>``.
  Idempotent: a service already disabled (a retry, or an operator's own) is reported and left as it
  is; enable re-enables only a service that carries our reason, never an operator's disable.
* **drain** — ``live`` (``os-migrateLive``, ``host`` null and ``block_migration: auto``: the
  scheduler picks) or ``cold`` (``migrate``, then ``confirmResize``) of each server on the node,
  watched until no server is left and each move's migration record (``/os-migrations`` of the
  server) is ``completed`` (live) or ``confirmed`` (cold). The batch's other hosts must not take a
  server: when one of ``avoid`` is still enabled, the destination is chosen from placement's
  candidates outside them and named (the scheduler still validates it). A retry resumes from the
  heartbeat details and never starts a second migration for a server already moving; ``none``
  moves nothing and lists what stays.
* **verify** — a server scheduled onto the node (compute 2.74 ``host``: the scheduler validates
  it), ``networks: none``, the smallest flavor, an active image; ACTIVE on that host, then deleted
  and gone.
"""

from __future__ import annotations

import time
from typing import Any

import structlog
from temporalio import activity

from activities.dataplane import choose
from activities.dataplane_nova import COLD_DONE, LIVE_DONE, MIGRATION_FAILED, UNREACHABLE, Api
from activities.kube_watch import heartbeat, sleep
from model import errors
from model.io_dataplane import (
    DATAPLANE_DISABLE,
    DATAPLANE_DRAIN,
    DATAPLANE_ENABLE,
    DATAPLANE_VERIFY,
    DrainResult,
    MovedServer,
    NodeInput,
    ServiceState,
    VerifyNodeResult,
)

log = structlog.get_logger(__name__)
POLL_SECONDS = 2.0
BINARY = "nova-compute"
MIGRATING_TASKS = frozenset({"migrating", "resize_prep", "resize_migrating", "resize_migrated", "resize_finish"})


def reason_of(upgrade_id: str) -> str:
    return f"stackhop {upgrade_id}".strip()


def service_of(nova: Api, node: str) -> dict[str, Any]:
    svc = nova.compute_services(BINARY).get(node)
    if svc is None:
        raise errors.permanent(
            errors.PLAN_INVALID, f"nova has no {BINARY} service on host {node}: is it the node's name in nova.conf?"
        )
    return svc


def _details() -> dict[str, Any]:
    if activity.in_activity():
        details = activity.info().heartbeat_details
        if details and isinstance(details[0], dict):
            return dict(details[0])
    return {}


# --- disable / enable -------------------------------------------------------------------------------
@activity.defn(name=DATAPLANE_DISABLE, no_thread_cancel_exception=True)
def disable(inp: NodeInput) -> ServiceState:
    """Disable the node's compute service with our reason; an already disabled one is left as is."""
    with Api(inp.cloud) as nova:
        svc = service_of(nova, inp.node)
        if svc.get("status") == "disabled":
            return ServiceState(node=inp.node, disabled=True, reason=str(svc.get("disabled_reason") or ""))
        after = nova.set_service(svc["id"], disabled=True, reason=reason_of(inp.upgrade_id))
    log.info("dataplane_disabled", node=inp.node, reason=after.get("disabled_reason"))
    return ServiceState(node=inp.node, disabled=True, reason=str(after.get("disabled_reason") or ""), changed=True)


@activity.defn(name=DATAPLANE_ENABLE, no_thread_cancel_exception=True)
def enable(inp: NodeInput) -> ServiceState:
    """Enable the node's compute service if our reason disabled it (an operator's disable stays)."""
    with Api(inp.cloud) as nova:
        svc = service_of(nova, inp.node)
        reason = str(svc.get("disabled_reason") or "")
        if svc.get("status") != "disabled":
            return ServiceState(node=inp.node, disabled=False)
        if reason != reason_of(inp.upgrade_id):
            log.info("dataplane_enable_left", node=inp.node, reason=reason)
            return ServiceState(node=inp.node, disabled=True, reason=reason)
        nova.set_service(svc["id"], disabled=False)
    log.info("dataplane_enabled", node=inp.node)
    return ServiceState(node=inp.node, disabled=False, reason=reason, changed=True)


# --- drain -----------------------------------------------------------------------------------------
def _destination(nova: Api, server_id: str, excluded: set[str]) -> str:
    """A host outside ``excluded`` placement says fits the server's allocation ("" when none)."""
    need = nova.allocation(server_id)
    rp = choose(nova.candidates(need), need, nova.hypervisor_hosts(), excluded, {}) if need else ""
    return nova.hypervisor_hosts().get(rp, "") if rp else ""


def _start(nova: Api, server: dict[str, Any], inp: NodeInput, explicit: bool) -> MovedServer:
    sid = server["id"]
    status = server.get("status")
    kind = "live" if inp.drain == "live" else "cold"
    allowed = ("ACTIVE", "PAUSED") if kind == "live" else ("ACTIVE", "SHUTOFF")
    if status not in allowed:
        raise errors.permanent(
            errors.DRAIN_FAILED,
            f"server {server.get('name')} ({sid}) on {inp.node} is {status}: a {kind} migration needs it "
            f"{' or '.join(allowed)}; fix the server (or move it) and resume",
            server=sid,
        )
    dest = _destination(nova, sid, {inp.node, *inp.avoid}) if explicit else ""
    if explicit and not dest:
        raise errors.permanent(
            errors.DRAIN_FAILED,
            f"server {server.get('name')} ({sid}): no host outside {', '.join(sorted({inp.node, *inp.avoid}))} fits it",
            server=sid,
        )
    before = nova.migrations(sid)
    since_id = int(before[0]["id"]) if before else 0
    if kind == "live":
        nova.action(sid, {"os-migrateLive": {"host": dest or None, "block_migration": "auto"}})
    else:
        nova.action(sid, {"migrate": {"host": dest} if dest else None})
    log.info("dataplane_migration_started", server=sid, kind=kind, source=inp.node, dest=dest or "(scheduler)")
    return MovedServer(
        server=sid, name=server.get("name") or "", kind=kind, source=inp.node, dest=dest, since_id=since_id
    )


def move_record(records: list[dict[str, Any]], move: MovedServer) -> dict[str, Any] | None:
    """The migration record of ``move`` among the server's records (newest first), None while nova
    has not written it: of the move's kind, from the drained node, newer than ``since_id`` (an older
    move of the same server, e.g. the one that brought it to this node, is never taken for it)."""
    kind = "live-migration" if move.kind == "live" else "migration"
    mine = [
        m
        for m in records
        if m.get("migration_type", kind) == kind
        and int(m.get("id") or 0) > move.since_id
        and m.get("source_compute", move.source) == move.source
    ]
    if move.migration_id:
        return next((m for m in mine if int(m["id"]) == move.migration_id), None)
    return mine[0] if mine else None


def _follow(nova: Api, move: MovedServer, since: float) -> bool:
    """Update ``move`` from its migration record; True once it is done (confirmed for cold: a
    finished cold migration is confirmed here)."""
    rec = move_record(nova.migrations(move.server), move)
    if rec is None:
        return False
    move.migration_id, move.status = int(rec["id"]), str(rec.get("status") or "")
    move.dest = str(rec.get("dest_compute") or move.dest)
    if move.status in MIGRATION_FAILED:
        raise errors.permanent(
            errors.DRAIN_FAILED,
            f"{move.kind} migration {move.migration_id} of server {move.name or move.server} from {move.source} "
            f"ended {move.status}",
            server=move.server,
            migration=move.migration_id,
        )
    if move.kind == "cold" and move.status == "finished":
        server = nova.server(move.server) or {}
        if server.get("status") == "VERIFY_RESIZE":
            nova.action(move.server, {"confirmResize": None})
        return False
    done = move.status == (LIVE_DONE if move.kind == "live" else COLD_DONE)
    if done and not move.seconds:
        move.seconds = round(time.time() - since, 2)
    return done


@activity.defn(name=DATAPLANE_DRAIN, no_thread_cancel_exception=True)
def drain(inp: NodeInput) -> DrainResult:
    """Move every server off the node and watch until none is left (module docstring)."""
    details = _details()
    started_at = float(details.get("started_at") or time.time())
    deadline = time.monotonic() + max(0.0, started_at + inp.timeout_seconds - time.time())
    moves = {m["server"]: MovedServer(**m) for m in details.get("moves") or []}
    with Api(inp.cloud) as nova:
        if inp.drain == "none":
            left = [s["id"] for s in nova.servers(inp.node)]
            return DrainResult(node=inp.node, left=sorted(left), seconds=round(time.time() - started_at, 2))
        services = nova.compute_services(BINARY)
        explicit = any(services.get(h, {}).get("status") == "enabled" for h in inp.avoid if h != inp.node)
        for rec in nova.unconfirmed(inp.node):  # an earlier attempt's cold migration, left to confirm
            sid = str(rec.get("instance_uuid") or "")
            moves.setdefault(sid, MovedServer(server=sid, kind="cold", source=inp.node, migration_id=int(rec["id"])))
        while True:
            on_node = nova.servers(inp.node)
            for server in on_node:
                sid = server["id"]
                task = server.get("OS-EXT-STS:task_state") or ""
                moving = task in MIGRATING_TASKS or server.get("status") in ("MIGRATING", "RESIZE")
                if task and not moving and sid not in moves:
                    continue  # another task in progress (rebooting, ...): started once it is over
                if sid in moves or moving:
                    if sid not in moves:  # moving by someone else's hand (or an attempt that did not record it)
                        moves[sid] = MovedServer(
                            server=sid, name=server.get("name") or "", kind=inp.drain, source=inp.node
                        )
                    continue
                moves[sid] = _start(nova, server, inp, explicit)
                heartbeat(step="drain", started_at=started_at, moves=[m.model_dump() for m in moves.values()])
            done = [m for m in moves.values() if _follow(nova, m, started_at)]
            waiting = [m.name or m.server for m in moves.values() if m not in done]
            left = [s.get("name") or s["id"] for s in on_node]
            if not on_node and not waiting:
                break
            if time.monotonic() >= deadline:
                raise errors.permanent(
                    errors.DRAIN_FAILED,
                    f"{inp.node} not drained within {inp.timeout_seconds}s: still on it {', '.join(left) or '-'}; "
                    f"migrations not done {', '.join(waiting) or '-'}",
                    node=inp.node,
                )
            heartbeat(
                step="drain",
                started_at=started_at,
                moves=[m.model_dump() for m in moves.values()],
                waiting=f"{len(left)} servers on {inp.node}, {len(waiting)} migrations not done",
            )
            sleep(POLL_SECONDS)
    moved = sorted(moves.values(), key=lambda m: m.server)
    landed = [m for m in moved if m.dest in {inp.node, *inp.avoid}]
    if landed:
        raise errors.permanent(
            errors.DRAIN_FAILED,
            f"server {landed[0].name or landed[0].server} moved to {landed[0].dest}, a host of the batch",
            server=landed[0].server,
        )
    log.info("dataplane_drained", node=inp.node, moved=len(moved), s=round(time.time() - started_at, 1))
    return DrainResult(node=inp.node, moved=moved, seconds=round(time.time() - started_at, 2))


# --- verify ----------------------------------------------------------------------------------------
def _smallest_flavor(nova: Api) -> dict[str, Any]:
    flavors = nova.call("compute", "GET", "/flavors/detail").get("flavors") or []
    usable = [f for f in flavors if int(f.get("disk") or 0) > 0] or flavors
    if not usable:
        raise errors.permanent(errors.PLAN_INVALID, "verify needs a flavor: the cloud has none")
    return dict(min(usable, key=lambda f: (int(f.get("ram") or 0), int(f.get("vcpus") or 0), int(f.get("disk") or 0))))


def _image(nova: Api) -> str:
    from openstack import exceptions as sdk_exc

    try:
        images = list(nova.conn.image.images(status="active"))
    except (sdk_exc.SDKException, *UNREACHABLE) as exc:  # glance answering badly or not at all: try again
        raise errors.temporary(f"listing the active images of {nova.cloud}: {exc}") from None
    if not images:
        raise errors.permanent(errors.PLAN_INVALID, "verify needs an active image: the cloud has none")
    return str(min(images, key=lambda i: int(i.size or 0)).id)


def _gone(nova: Api, sid: str, deadline: float, node: str) -> None:
    nova.call("compute", "DELETE", f"/servers/{sid}", ok=(204,), missing_ok=True)
    while nova.server(sid) is not None:
        if time.monotonic() >= deadline:
            raise errors.permanent(errors.CHECK_FAILED, f"verify server {sid} on {node} not gone after deleting it")
        heartbeat(step="verify", node=node, server=sid, waiting="deleted")
        sleep(POLL_SECONDS)


@activity.defn(name=DATAPLANE_VERIFY, no_thread_cancel_exception=True)
def verify(inp: NodeInput) -> VerifyNodeResult:
    """Schedule a server onto the node, see it ACTIVE there, delete it (module docstring)."""
    started = time.monotonic()
    deadline = started + inp.timeout_seconds
    name = f"stackhop-verify-{inp.node}"
    with Api(inp.cloud) as nova:
        for leftover in nova.servers(inp.node):  # an earlier attempt's
            if leftover.get("name") == name:
                _gone(nova, leftover["id"], deadline, inp.node)
        body = {
            "server": {
                "name": name,
                "flavorRef": _smallest_flavor(nova)["id"],
                "imageRef": _image(nova),
                "networks": "none",
                "host": inp.node,
            }
        }
        sid = str(nova.call("compute", "POST", "/servers", body=body, ok=(202,))["server"]["id"])
        heartbeat(step="verify", node=inp.node, server=sid, waiting="ACTIVE")
        try:
            while True:
                server = nova.server(sid) or {}
                status, host = server.get("status"), server.get("OS-EXT-SRV-ATTR:host")
                if status == "ACTIVE":
                    if host != inp.node:
                        raise errors.permanent(
                            errors.CHECK_FAILED, f"verify server {sid} became ACTIVE on {host}, not {inp.node}"
                        )
                    break
                if status == "ERROR" or time.monotonic() >= deadline:
                    fault = (server.get("fault") or {}).get("message", "")
                    raise errors.permanent(
                        errors.CHECK_FAILED, f"no server can be scheduled onto {inp.node}: {status} {fault}".strip()
                    )
                heartbeat(step="verify", node=inp.node, server=sid, waiting=f"ACTIVE (now {status})")
                sleep(POLL_SECONDS)
        finally:
            _gone(nova, sid, time.monotonic() + max(60.0, deadline - time.monotonic()), inp.node)
    return VerifyNodeResult(node=inp.node, server=sid, seconds=round(time.monotonic() - started, 2))
