"""Stand-ins of the data plane activities (model/io_dataplane.py), under the real names, on top of
tests/standins.py's ``Script``: a small cloud of compute nodes in availability zones, each with its
servers, that the stand-ins answer from and change (a drain moves the servers away, a replace marks
the node upgraded).

Calls are recorded in ``calls`` as ``<activity>:<node>`` (the capacity check as
``dataplane.capacity:<host>,<host>``), so ``Script.fail`` / ``fail_times`` / ``block`` take such a key
(``dataplane.replace:node-2``). ``inputs`` keeps each call's input by that key, and ``waits`` the
workloads of every rollout wait (k8s.wait_rollout, and the waits of k8s.undo_images).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel
from temporalio import activity

from model import io
from model.io_dataplane import (
    DATAPLANE_CAPACITY,
    DATAPLANE_DISABLE,
    DATAPLANE_DRAIN,
    DATAPLANE_ENABLE,
    DATAPLANE_INVENTORY,
    DATAPLANE_REPLACE,
    DATAPLANE_VERIFY,
    CapacityInput,
    CapacityResult,
    DataPlaneNode,
    DrainResult,
    InventoryInput,
    InventoryResult,
    MovedServer,
    NodeInput,
    Placement,
    ReplaceInput,
    ReplaceResult,
    ServiceState,
    VerifyNodeResult,
)
from tests.standins import Script
from worker import activity_name

# Four computes in two zones, two servers each (the lab's shape, dplab)
NODES = {"node-1": "az-1", "node-2": "az-1", "node-3": "az-2", "node-4": "az-2"}


class DataPlaneScript(Script):
    def __init__(self, nodes: dict[str, str] | None = None, servers: int = 2) -> None:
        super().__init__()
        self.nodes: dict[str, DataPlaneNode] = {
            name: DataPlaneNode(
                node=name,
                zone=zone,
                daemonsets=["nova-compute"],
                pods=[f"nova-compute-{name}"],
                images=["registry/nova:32.2.1"],
                servers=[f"{name}-vm{i}" for i in range(1, servers + 1)],
                service_version=70,
                service_up=True,
            )
            for name, zone in (nodes or NODES).items()
        }
        self.refusals: list[str] = []  # what the inventory refuses
        self.unplaceable: dict[str, str] = {}  # capacity key -> the server that fits nowhere
        self.inputs: dict[str, list[BaseModel]] = {}
        self.waits: list[list[str]] = []

    def _keep(self, key: str, inp: BaseModel) -> None:
        with self.lock:
            self.inputs.setdefault(key, []).append(inp)

    def upgraded(self, *names: str) -> None:
        for name in names:
            self.nodes[name] = self.nodes[name].model_copy(
                update={"upgraded": True, "images": ["registry/nova:33.0.2"], "service_version": 72}
            )

    def activities(self) -> list[Callable[..., Any]]:
        s = self
        mine: list[Callable[..., Any]] = []

        def standin(name: str) -> Callable[[Callable[[Any], Any]], Callable[[Any], Any]]:
            def register(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
                @functools.wraps(fn)
                def run(inp: Any) -> Any:
                    return fn(inp)

                defined = activity.defn(name=name)(run)
                mine.append(defined)
                return defined

            return register

        @standin(io.K8S_WAIT_ROLLOUT)
        def wait_rollout(inp: io.WaitRolloutInput) -> io.RolloutResult:
            with s.lock:
                s.waits.append([w.name for w in inp.workloads])
            s._enter(io.K8S_WAIT_ROLLOUT)
            return io.RolloutResult(
                workloads=[io.RolloutStatus(kind=w.kind, name=w.name, ready=True) for w in inp.workloads]
            )

        @standin(io.K8S_UNDO_IMAGES)
        def undo_images(inp: io.UndoImagesInput) -> io.RolloutResult:
            waited = [p for p in inp.previous if p.name not in inp.no_wait]
            with s.lock:
                s.waits.append([w.name for w in waited])
            s._enter(io.K8S_UNDO_IMAGES)
            return io.RolloutResult(workloads=[io.RolloutStatus(kind=w.kind, name=w.name, ready=True) for w in waited])

        @standin(DATAPLANE_INVENTORY)
        def inventory(inp: InventoryInput) -> InventoryResult:
            s._keep(DATAPLANE_INVENTORY, inp)
            s._enter(DATAPLANE_INVENTORY)
            return InventoryResult(daemonsets=["nova-compute"], nodes=list(s.nodes.values()), refusals=list(s.refusals))

        @standin(DATAPLANE_CAPACITY)
        def capacity(inp: CapacityInput) -> CapacityResult:
            key = f"{DATAPLANE_CAPACITY}:{','.join(inp.batch)}"
            s._keep(key, inp)
            s._enter(key)
            if key in s.unplaceable:
                return CapacityResult(fits=False, unplaceable=s.unplaceable[key])
            others = [n for n in s.nodes if n not in inp.batch and n not in inp.avoid]
            placements = [
                Placement(server=vm, source=host, dest=others[0] if others else "")
                for host in inp.batch
                for vm in s.nodes[host].servers
            ]
            return CapacityResult(fits=bool(others), servers=len(placements), placements=placements)

        def node_call(name: str, inp: NodeInput) -> None:
            key = f"{name}:{inp.node}"
            s._keep(key, inp)
            s._enter(key)

        @standin(DATAPLANE_DISABLE)
        def disable(inp: NodeInput) -> ServiceState:
            node_call(DATAPLANE_DISABLE, inp)
            return ServiceState(node=inp.node, disabled=True, reason=f"stackhop upgrade {inp.upgrade_id}", changed=True)

        @standin(DATAPLANE_DRAIN)
        def drain(inp: NodeInput) -> DrainResult:
            node_call(DATAPLANE_DRAIN, inp)
            with s.lock:
                node = s.nodes[inp.node]
                dests = [n for n in s.nodes if n not in inp.avoid and n != inp.node]
                moved = [
                    MovedServer(server=vm, kind="live", source=inp.node, dest=dests[0], status="completed")
                    for vm in node.servers
                ]
                for m in moved:
                    d = s.nodes[m.dest]
                    s.nodes[m.dest] = d.model_copy(update={"servers": [*d.servers, m.server]})
                s.nodes[inp.node] = node.model_copy(update={"servers": []})
            return DrainResult(node=inp.node, moved=moved)

        @standin(DATAPLANE_REPLACE)
        def replace(inp: ReplaceInput) -> ReplaceResult:
            key = f"{DATAPLANE_REPLACE}:{inp.node}"
            s._keep(key, inp)
            s._enter(key)
            s.upgraded(inp.node)
            return ReplaceResult(
                node=inp.node,
                deleted=[f"nova-compute-{inp.node}"],
                pods=[f"nova-compute-{inp.node}-new"],
                images=inp.images,
                service_version=inp.service_version,
            )

        @standin(DATAPLANE_ENABLE)
        def enable(inp: NodeInput) -> ServiceState:
            node_call(DATAPLANE_ENABLE, inp)
            return ServiceState(node=inp.node, disabled=False, changed=True)

        @standin(DATAPLANE_VERIFY)
        def verify(inp: NodeInput) -> VerifyNodeResult:
            node_call(DATAPLANE_VERIFY, inp)
            return VerifyNodeResult(node=inp.node, server="verify-vm")

        names = {activity_name(fn) for fn in mine}
        return [fn for fn in super().activities() if activity_name(fn) not in names] + mine
