"""Inputs and outputs of the data plane's activities and of the ``DataPlaneBatch`` workflow
(model/io.py's rules: one model in, one out, fields added with defaults).

The data plane of a service is upgraded node by node (model/dataplane.py has the plan's rules):
``dataplane.inventory`` finds its nodes; before each batch ``dataplane.capacity`` asks placement
whether every server of the batch fits on the hosts outside it; then per node ``dataplane.disable``
(nova-compute service disabled, the reason names the upgrade), ``dataplane.drain`` (live or cold
migrations until no server is left, each with a completed migration record), ``dataplane.replace``
(the node's pods deleted; the new one Ready and nova's service record at the target release's
version, up), ``dataplane.enable`` and ``dataplane.verify`` (a server scheduled onto the node).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from model.dataplane import Drain
from model.io_base import Msg
from model.plan import Database, KubeTarget, Service, UpgradePlan

DATAPLANE_INVENTORY = "dataplane.inventory"
DATAPLANE_CAPACITY = "dataplane.capacity"
DATAPLANE_DISABLE = "dataplane.disable"
DATAPLANE_DRAIN = "dataplane.drain"
DATAPLANE_REPLACE = "dataplane.replace"
DATAPLANE_ENABLE = "dataplane.enable"
DATAPLANE_VERIFY = "dataplane.verify"


class InventoryInput(Msg):
    target: KubeTarget
    cloud: str  # clouds.yaml entry (the plan's cloud.openstack.cloud)
    service: str
    daemonsets: list[str] = Field(default_factory=list)  # by name (DataPlane.workloads)
    selector: str = ""  # and/or by label selector (DataPlane.selector)
    images: list[str] = Field(default_factory=list)  # the target images: a pod running them is upgraded
    binary: str = "nova-compute"  # the service record of a node (recipe: ServiceRecipe.data_plane_binary)
    # the cell database (nova's `nova`), where services.version is (nova's API does not show it);
    # None: service_version stays 0
    database: Database | None = None


def cell_database(svc: Service) -> Database | None:
    """The database whose ``services`` table holds the data plane's service records: the one named
    after the service (nova's cell database ``nova``), else the last of its databases (the recipe's
    order: nova_api, nova_cell0, nova); None without databases."""
    dbs = svc.all_databases
    return next((d for d in dbs if d.name == svc.name), dbs[-1] if dbs else None)


class DataPlaneNode(Msg):
    node: str  # the Kubernetes node, and nova's host of the same name
    zone: str = ""  # its availability zone, as nova reports the service's (os-services `zone`)
    labels: dict[str, str] = Field(default_factory=dict)  # the Kubernetes node's labels
    daemonsets: list[str] = Field(default_factory=list)  # the data plane DaemonSets with a pod on it
    pods: list[str] = Field(default_factory=list)  # their pods on it
    images: list[str] = Field(default_factory=list)  # what its pods run now
    upgraded: bool = False  # every data plane pod on it runs a target image
    servers: list[str] = Field(default_factory=list)  # ids of the servers nova places on this host
    service_version: int = 0  # services.version of its service record (the cell database)
    service_up: bool = False
    disabled: bool = False
    disabled_reason: str = ""


class InventoryResult(Msg):
    daemonsets: list[str] = Field(default_factory=list)  # every data plane DaemonSet found
    nodes: list[DataPlaneNode] = Field(default_factory=list)
    # what makes a node-by-node upgrade impossible, one line each with its fix: e.g. a DaemonSet
    # whose updateStrategy is RollingUpdate (it would roll every node at once)
    refusals: list[str] = Field(default_factory=list)


class CapacityInput(Msg):
    cloud: str
    batch: list[str]  # the hosts to empty
    avoid: list[str] = Field(default_factory=list)  # hosts that take no server either (fenced, disabled)


class Placement(Msg):
    server: str  # id
    name: str = ""
    source: str = ""  # its host now
    dest: str = ""  # the host placement's candidates give it ("" when none fits)
    resources: dict[str, int] = Field(default_factory=dict)  # its allocation, e.g. {"VCPU": 1, "MEMORY_MB": 512}


class CapacityResult(Msg):
    fits: bool
    servers: int = 0  # servers to move
    placements: list[Placement] = Field(default_factory=list)
    # when not fits: the first server that fits nowhere, named, with what it needs (the batch is refused)
    unplaceable: str = ""


class NodeInput(Msg):
    """One node's step (disable, drain, enable, verify)."""

    cloud: str
    node: str
    upgrade_id: str = ""  # the disable reason names it
    drain: Drain = "none"
    avoid: list[str] = Field(default_factory=list)  # hosts no server may move to (the batch's)
    timeout_seconds: int = 900


class ServiceState(Msg):
    node: str
    disabled: bool
    reason: str = ""
    changed: bool = False  # False: it already was (a retry, or the operator's own)


class MovedServer(Msg):
    server: str
    name: str = ""
    kind: Literal["live", "cold"] = "live"
    source: str = ""
    dest: str = ""
    migration_id: int = 0  # nova's migration record
    # the server's newest migration record before this move: the move's own record is newer (the
    # API answers 202 before the conductor writes it, so until then the newest is an older move's)
    since_id: int = 0
    status: str = ""  # its status at the end: completed (live), confirmed/finished (cold)
    seconds: float = 0.0


class DrainResult(Msg):
    node: str
    moved: list[MovedServer] = Field(default_factory=list)
    left: list[str] = Field(default_factory=list)  # servers still on the node (drain none)
    seconds: float = 0.0


class ReplaceInput(Msg):
    target: KubeTarget
    cloud: str
    node: str
    daemonsets: list[str]  # the data plane DaemonSets: their pods on the node are replaced
    images: list[str] = Field(default_factory=list)  # the new pods must run these
    binary: str = "nova-compute"
    service_version: int = 0  # the target release's (ServiceRecipe.service_versions): the record must reach it
    timeout_seconds: int = 900
    database: Database | None = None  # the cell database: required when service_version is set


class ReplaceResult(Msg):
    node: str
    deleted: list[str] = Field(default_factory=list)  # the old pods
    pods: list[str] = Field(default_factory=list)  # the new, Ready pods
    images: list[str] = Field(default_factory=list)
    service_version: int = 0
    already: bool = False  # a retry found the node's pods replaced already
    seconds: float = 0.0


class VerifyNodeResult(Msg):
    node: str
    server: str = ""  # the server scheduled onto the node (deleted again)
    seconds: float = 0.0


NodeOutcome = Literal["upgraded", "failed", "skipped"]


class NodeResult(Msg):
    """One node in the report: where it ended, and what moved."""

    node: str
    zone: str = ""
    batch: int = 0  # 1-based; batch 1 is the canary when the plan has one
    outcome: NodeOutcome = "skipped"
    release_before: str = ""
    release_after: str = ""  # the release its pods run at the end (a failed node: the one it is fenced at)
    fenced: bool = False  # failed and kept off the new release: service disabled, out of the later batches
    servers_moved: int = 0
    moved: list[MovedServer] = Field(default_factory=list)
    seconds: float = 0.0
    message: str = ""


class BatchInput(Msg):
    plan: UpgradePlan
    service: str
    upgrade_id: str
    index: int  # 1-based
    canary: bool = False
    nodes: list[DataPlaneNode]
    avoid: list[str] = Field(default_factory=list)  # nodes fenced by earlier batches
    release_from: str = ""
    release_to: str = ""


class BatchResult(Msg):
    index: int
    nodes: list[NodeResult] = Field(default_factory=list)
    refused: str = ""  # the capacity check refused the batch (nothing was touched): why
