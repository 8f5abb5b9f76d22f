"""DataPlaneBatch: one batch of a service's data plane nodes (nova-compute), a child of its service.

One workflow per batch (``<service workflow id>/batch-<n>``), so each batch is visible on its own in
the Temporal UI with the nodes it upgrades in its summary. What it does (model/io_dataplane.py has the
activities):

1. ``dataplane.capacity``: can every server on the batch's hosts move to a host outside the batch
   (and off the nodes fenced by earlier batches)? If not, the batch is *refused*: nothing is touched,
   :class:`~model.io_dataplane.BatchResult` ``refused`` names the server that fits nowhere, and the
   service stops there.
2. Every node of the batch in parallel: disable its service record → drain it (the plan's drain mode,
   to hosts outside the batch) → replace its data plane pods (the target release; the record must
   reach the target's service version) → enable → verify (a server scheduled onto it).

A node whose step fails is **fenced**: its service stays disabled (a verify that failed after the
enable disables it again), it is reported failed and fenced with the release its pods are left at,
and the parent keeps it out of the later batches. The nodes of the batch that succeeded stay
upgraded: the data plane is forward-only (model/recipes/base.py, DATAPLANE), nothing is undone.

The result goes to the parent as this workflow's result, one :class:`NodeResult` per node: no signal
per node, so the service's history stays small. A Temporal Cancel of a batch does not stop it half-way
(a node drained and not replaced would stay disabled): the nodes it started finish. Deterministic code
only.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.exceptions import ActivityError
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel

    from model import errors
    from model.dataplane import DataPlane
    from model.io import PLAN_ADMIT, AdmitInput, Admitted
    from model.io_dataplane import (
        DATAPLANE_CAPACITY,
        DATAPLANE_DISABLE,
        DATAPLANE_DRAIN,
        DATAPLANE_ENABLE,
        DATAPLANE_REPLACE,
        DATAPLANE_VERIFY,
        BatchInput,
        BatchResult,
        CapacityInput,
        CapacityResult,
        DataPlaneNode,
        DrainResult,
        NodeInput,
        NodeResult,
        ReplaceInput,
        ReplaceResult,
        ServiceState,
        VerifyNodeResult,
        cell_database,
    )
    from model.plan import Service, UpgradePlan
    from model.recipes import service_recipe
    from workflows.interruptions import through_cancellation
    from workflows.steps import ADMIT_PATCH, StepFailed, retry_policy

R = TypeVar("R", bound=BaseModel)

# The short calls (capacity, disable, enable) answer within this; they are not heartbeated.
SHORT_TIMEOUT = 300
# How long past its own timeout (NodeInput / ReplaceInput timeout_seconds) a long call may take.
GRACE = 60


@dataclass(frozen=True)
class Batch:
    """What both sides say about one batch: the parent names the child, the child shows it."""

    service: str
    index: int
    total: int
    nodes: list[DataPlaneNode]

    @property
    def zones(self) -> str:
        zones = list(dict.fromkeys(n.zone for n in self.nodes if n.zone))
        return f" ({', '.join(zones)})" if zones else ""

    @property
    def summary(self) -> str:
        """``nova batch 2/3: node-a, node-b (az-1)``."""
        return f"{self.service} batch {self.index}/{self.total}: {', '.join(n.node for n in self.nodes)}{self.zones}"


def data_plane_images(svc: Service) -> list[str]:
    """The images the data plane runs at the target release: those of its workloads in the plan
    (``Service.data_plane_workloads``)."""
    return list(dict.fromkeys(w.image for w in svc.data_plane_workloads))


def data_plane_binary(svc: Service) -> str:
    recipe = service_recipe(svc.name)
    return (recipe.data_plane_binary if recipe else "") or "nova-compute"


def service_version(svc: Service, release: str) -> int:
    """The target release's service version (ServiceRecipe.service_versions; 0: not checked)."""
    recipe = service_recipe(svc.name)
    return recipe.service_versions.get(release, 0) if recipe else 0


@workflow.defn(name="DataPlaneBatch")
class DataPlaneBatchWorkflow:
    @workflow.init
    def __init__(self, inp: BatchInput) -> None:
        self.inp = inp
        self.plan: UpgradePlan = inp.plan
        self.svc = inp.plan.service(inp.service)
        assert self.svc.data_plane is not None, "a batch of a service without a data plane"
        self.rules: DataPlane = self.svc.data_plane
        self.hosts = [n.node for n in inp.nodes]
        self.state: dict[str, str] = {n.node: "waiting" for n in inp.nodes}
        self.cancelled = False

    @workflow.query
    def status(self) -> dict[str, str]:
        """Node -> the step it is at (or how it ended)."""
        return dict(self.state)

    @workflow.run
    async def run(self, inp: BatchInput) -> BatchResult:
        return await through_cancellation(self._run(), self._cancelled)

    async def _cancelled(self) -> None:
        # Forward-only: the nodes started finish (a node half-way would stay disabled and drained).
        self.cancelled = True

    async def _run(self) -> BatchResult:
        inp = self.inp
        # started on its own (not by its service workflow): the worker admits the plan first
        if workflow.info().parent is None and workflow.patched(ADMIT_PATCH):
            try:
                await self._call(PLAN_ADMIT, AdmitInput(plan=self.plan), Admitted, "the worker re-validates the plan")
            except StepFailed as f:
                why = f"batch {inp.index} refused: {f}; nothing was touched"
                return BatchResult(index=inp.index, nodes=[self._untouched(n, why) for n in inp.nodes], refused=why)
        self._show("capacity")
        try:
            fit = await self._call(
                DATAPLANE_CAPACITY,
                CapacityInput(cloud=self._cloud, batch=self.hosts, avoid=inp.avoid),
                CapacityResult,
                f"capacity: the servers of {', '.join(self.hosts)} on the other hosts"
                + (f" (avoid {', '.join(inp.avoid)})" if inp.avoid else ""),
                seconds=SHORT_TIMEOUT,
            )
        except StepFailed as f:
            fit = CapacityResult(fits=False, unplaceable=f"the capacity check failed: {f}")
        if not fit.fits:
            why = f"batch {inp.index} refused: {fit.unplaceable or 'the servers do not fit'}; nothing was touched"
            for n in inp.nodes:
                self.state[n.node] = "refused"
            self._show("refused")
            return BatchResult(index=inp.index, nodes=[self._untouched(n, why) for n in inp.nodes], refused=why)
        results = await asyncio.gather(*(self._node(n) for n in inp.nodes))
        self._show("done")
        return BatchResult(index=inp.index, nodes=list(results))

    # --- one node -----------------------------------------------------------------------------------
    async def _node(self, node: DataPlaneNode) -> NodeResult:
        inp, rules = self.inp, self.rules
        started = workflow.now()
        step = "disable"
        moved: list[Any] = []
        n = node.node
        enabled = False
        try:
            self._at(n, step)
            await self._call(DATAPLANE_DISABLE, self._node_input(n), ServiceState, f"disable {self._binary} on {n}")
            step = "drain"
            self._at(n, step)
            servers = f"{len(node.servers)} server{'s' if len(node.servers) != 1 else ''}"
            drained = await self._call(
                DATAPLANE_DRAIN,
                self._node_input(n),
                DrainResult,
                f"drain {n} ({rules.drain}, {servers})",
                seconds=rules.node_timeout,
                heartbeat=True,
            )
            moved = list(drained.moved)
            step = "replace"
            self._at(n, step)
            version = service_version(self.svc, inp.release_to)
            await self._call(
                DATAPLANE_REPLACE,
                ReplaceInput(
                    target=self.plan.cloud.kubernetes,
                    cloud=self._cloud,
                    node=n,
                    daemonsets=node.daemonsets,
                    images=data_plane_images(self.svc),
                    binary=self._binary,
                    service_version=version,
                    timeout_seconds=rules.node_timeout,
                    database=cell_database(self.svc),
                ),
                ReplaceResult,
                f"replace {', '.join(node.daemonsets) or self._binary} on {n} ({inp.release_to}"
                + (f", service version {version})" if version else ")"),
                seconds=rules.node_timeout,
                heartbeat=True,
            )
            step = "enable"
            self._at(n, step)
            await self._call(DATAPLANE_ENABLE, self._node_input(n), ServiceState, f"enable {self._binary} on {n}")
            enabled = True
            step = "verify"
            self._at(n, step)
            await self._call(
                DATAPLANE_VERIFY,
                self._node_input(n),
                VerifyNodeResult,
                f"verify: a server scheduled onto {n}",
                seconds=rules.node_timeout,
                heartbeat=True,
            )
        except StepFailed as f:
            return await self._fence(node, step, f, enabled, moved, started)
        self._at(n, "upgraded")
        return NodeResult(
            node=n,
            zone=node.zone,
            batch=inp.index,
            outcome="upgraded",
            release_before=inp.release_from,
            release_after=inp.release_to,
            servers_moved=len(moved),
            moved=moved,
            seconds=self._since(started),
        )

    async def _fence(
        self, node: DataPlaneNode, step: str, failure: StepFailed, enabled: bool, moved: list[Any], started: datetime
    ) -> NodeResult:
        """The node keeps off the new release's batch set: its service stays disabled (disabled again
        when the step that failed came after the enable); the parent leaves it out of later batches."""
        inp, n = self.inp, node.node
        note = ""
        if enabled:
            try:
                await self._call(
                    DATAPLANE_DISABLE, self._node_input(n), ServiceState, f"fence {n}: disable {self._binary} again"
                )
            except StepFailed as again:
                note = f"; it could not be disabled again ({again}): disable it by hand"
        # Before the replace the pods still run the old release; from the replace on, the node's
        # DaemonSet pods are (being) recreated from the new template.
        at = inp.release_from if step in ("disable", "drain") else inp.release_to
        self._at(n, f"fenced ({step} failed)")
        return NodeResult(
            node=n,
            zone=node.zone,
            batch=inp.index,
            outcome="failed",
            release_before=inp.release_from,
            release_after=at,
            fenced=True,
            servers_moved=len(moved),
            moved=moved,
            seconds=self._since(started),
            message=f"{step}: {failure} — fenced: {self._binary} disabled, left out of the later batches{note}",
        )

    def _untouched(self, node: DataPlaneNode, why: str) -> NodeResult:
        return NodeResult(
            node=node.node,
            zone=node.zone,
            batch=self.inp.index,
            outcome="skipped",
            release_before=self.inp.release_from,
            release_after=self.inp.release_from,
            message=why,
        )

    # --- helpers ------------------------------------------------------------------------------------
    @property
    def _cloud(self) -> str:
        return self.plan.cloud.openstack.cloud

    @property
    def _binary(self) -> str:
        return data_plane_binary(self.svc)

    def _node_input(self, node: str) -> NodeInput:
        avoid = list(dict.fromkeys([*self.hosts, *self.inp.avoid]))
        return NodeInput(
            cloud=self._cloud,
            node=node,
            upgrade_id=self.inp.upgrade_id,
            drain=self.rules.drain,
            avoid=avoid,
            timeout_seconds=self.rules.node_timeout,
        )

    async def _call(
        self,
        name: str,
        arg: BaseModel,
        result_type: type[R],
        summary: str,
        seconds: int = SHORT_TIMEOUT,
        heartbeat: bool = False,
    ) -> R:
        """One activity with an explicit timeout and bounded retries; the long ones (drain, replace,
        verify) heartbeat, so a worker that dies mid-node is noticed within the heartbeat timeout."""
        policy = self.plan.policy
        try:
            result: R = await workflow.execute_activity(
                name,
                arg,
                result_type=result_type,
                start_to_close_timeout=timedelta(seconds=seconds + GRACE),
                heartbeat_timeout=timedelta(seconds=policy.heartbeat_timeout) if heartbeat else None,
                retry_policy=retry_policy(policy),
                cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
                summary=summary,
            )
            return result
        except (ActivityError, asyncio.CancelledError) as e:
            kind, message = errors.step_failure(e)
            raise StepFailed(name, f"{name}: {message}", kind) from None

    def _since(self, started: datetime) -> float:
        return round((workflow.now() - started).total_seconds(), 3)

    def _at(self, node: str, step: str) -> None:
        self.state[node] = step
        self._show()

    def _show(self, phase: str = "") -> None:
        """The UI's current details: the batch, and where each node is (no event is written)."""
        batch = Batch(self.inp.service, self.inp.index, 0, self.inp.nodes)
        head = f"**{self.inp.service} batch {self.inp.index}**{' (canary)' if self.inp.canary else ''}{batch.zones}"
        rows = "\n".join(f"| {node} | {state} |" for node, state in self.state.items())
        workflow.set_current_details(f"{head} {phase}\n\n| node | step |\n|---|---|\n{rows}")
