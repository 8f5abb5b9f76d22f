"""The ``dataplane`` step of a service upgrade (a mixin of ServiceUpgradeWorkflow): its data plane
nodes, batch by batch, each batch a ``DataPlaneBatch`` child workflow (workflows/dataplane.py).

1. ``dataplane.inventory`` finds the nodes (the plan's DaemonSets by name and/or selector; neither
   given — which the plan's validation refuses today — the recipe's ``data_plane_selector``). Its
   refusals (e.g. a RollingUpdate DaemonSet) stop the step, nothing touched. Nodes already upgraded
   are reported and skipped.
2. ``plan_batches`` (model/dataplane.py) orders the rest: the canary first, then the batches.
3. Before each batch: the upgrade's pause holds it; with ``approve``, each batch after the first waits
   for the decision ``<service>/batch#<n>`` (n: the batch's number, ``stackhop approve nova/batch#2``).
4. One child per batch, in order; its result lists its nodes. The failed nodes are fenced (their
   service disabled) and left out of the later batches (``avoid``). Once ``too_many_failed`` (more
   than ``max_failed``, or any failed canary node) the step starts no further batch and fails: the
   DATAPLANE step is forward-only, so the service ends failed with nothing rolled back
   (model/recipes/base.py ``decide``). Below the threshold the service goes on, the fenced nodes
   listed in its report.

``ServiceResult.data_plane`` lists every node (upgraded, failed and fenced, skipped: already upgraded,
refused, or not started) and is kept up to date as batches end. Deterministic code only.
"""

from __future__ import annotations

from temporalio import workflow
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ChildWorkflowError

with workflow.unsafe.imports_passed_through():
    from model import errors, io, visibility
    from model.dataplane import DataPlane, plan_batches, too_many_failed
    from model.io_dataplane import (
        DATAPLANE_INVENTORY,
        BatchInput,
        BatchResult,
        InventoryInput,
        InventoryResult,
        NodeResult,
        cell_database,
    )
    from model.recipes import service_recipe
    from workflows.dataplane import Batch, DataPlaneBatchWorkflow, data_plane_binary, data_plane_images
    from workflows.decisions import BATCH
    from workflows.service_steps import ServiceSteps
    from workflows.steps import StepFailed

STEP = "dataplane"
INVENTORY_TIMEOUT = 600


class DataPlaneStep(ServiceSteps):
    """The ``dataplane`` step; state from ServiceUpgradeWorkflow.__init__ (paused, answered, ...)."""

    paused: bool

    @property
    def _rules(self) -> DataPlane:
        dp = self.svc.data_plane
        assert dp is not None, "service_steps has a dataplane step only for a service with a data_plane"
        return dp

    def _inventory_input(self) -> InventoryInput:
        dp = self._rules
        recipe = service_recipe(self.svc.name)
        selector = dp.selector or ("" if dp.workloads else (recipe.data_plane_selector if recipe else ""))
        return InventoryInput(
            target=self._target,
            cloud=self.plan.cloud.openstack.cloud,
            service=self.svc.name,
            daemonsets=list(dp.workloads),
            selector=selector,
            images=data_plane_images(self.svc),
            binary=data_plane_binary(self.svc),
            database=cell_database(self.svc),
        )

    async def _dataplane(self) -> None:
        rec = self.rec.start(STEP, f"{self.svc.name} data plane, node batch by node batch")
        try:
            detail = await self._batches()
        except StepFailed as f:
            self.rec.finish(rec, "failed", f.detail)
            raise
        finally:
            self._report(batch="")
        self.rec.finish(rec, "done", detail)

    async def _batches(self) -> str:
        dp, release = self._rules, self.plan.release
        inp = self._inventory_input()
        where = ", ".join([*inp.daemonsets, *([f"selector {inp.selector}"] if inp.selector else [])])
        inv = await self.rec.call(
            STEP,
            DATAPLANE_INVENTORY,
            inp,
            InventoryResult,
            summary=f"inventory of the {self.svc.name} data plane ({where or 'nothing named'})",
            step_timeout=INVENTORY_TIMEOUT,
        )
        if inv.refusals:
            raise StepFailed(
                STEP, f"the data plane cannot be upgraded node by node: {'; '.join(inv.refusals)}", errors.PLAN_INVALID
            )
        by_name = {n.node: n for n in inv.nodes}
        total = len(inv.nodes)
        nodes: dict[str, NodeResult] = {
            n.node: NodeResult(
                node=n.node,
                zone=n.zone,
                outcome="skipped",
                release_before=release.to,
                release_after=release.to,
                message="already upgraded",
            )
            for n in inv.nodes
            if n.upgraded
        }
        rest = [n for n in inv.nodes if not n.upgraded]
        batches = plan_batches(dp, [(n.node, n.zone, n.labels) for n in rest])
        for i, names in enumerate(batches, 1):
            for name in names:
                nodes[name] = NodeResult(
                    node=name,
                    zone=by_name[name].zone,
                    batch=i,
                    outcome="skipped",
                    release_before=release.from_,
                    release_after=release.from_,
                    message="not started",
                )
        self._nodes_report(nodes)
        fenced: list[str] = []
        canary_failed = 0
        for i, names in enumerate(batches, 1):
            batch = Batch(self.svc.name, i, len(batches), [by_name[n] for n in names])
            await self._before_batch(batch, dp)
            if self.abort_reason:
                raise StepFailed(STEP, f"{self.abort_reason} (before batch {i}: {batch.summary})", errors.ABORTED)
            canary_run = i == 1 and dp.canary > 0
            result = await self._batch(batch, fenced, canary=canary_run)
            for r in result.nodes:
                nodes[r.node] = r
            self._nodes_report(nodes)
            if result.refused:
                raise StepFailed(STEP, result.refused, errors.DATA_PLANE_REFUSED)
            fenced += [r.node for r in result.nodes if r.fenced]
            if canary_run:
                canary_failed = sum(1 for r in result.nodes if r.fenced)
            if too_many_failed(dp, len(fenced), total, canary_failed=canary_failed):
                why = "the canary failed" if canary_failed else f"max_failed {dp.max_failed}"
                raise StepFailed(
                    STEP,
                    f"{len(fenced)} of {total} nodes failed ({why}): no further batch is started;"
                    f" fenced: {', '.join(fenced)}; the upgraded nodes stay upgraded — fix forward",
                    errors.DATA_PLANE_FAILED,
                )
        upgraded = sum(1 for r in nodes.values() if r.outcome == "upgraded")
        already = total - upgraded - len(fenced)
        out = f"{upgraded} of {total} nodes upgraded in {len(batches)} batches"
        out += f", {already} already upgraded" if already else ""
        return out + (f"; fenced: {', '.join(fenced)}" if fenced else "")

    def _nodes_report(self, nodes: dict[str, NodeResult]) -> None:
        self.result = self.result.model_copy(update={"data_plane": list(nodes.values())})

    async def _before_batch(self, batch: Batch, dp: DataPlane) -> None:
        """The operator's say before a batch: the upgrade's pause holds it, and with ``approve`` every
        batch after the first waits for ``<service>/batch#<n>``."""
        self._report(batch=batch.summary)
        if dp.approve and batch.index > 1 and not self.abort_reason:
            asked = self._open("batch", BATCH, message=f"{batch.summary} waits for approval", n=batch.index)
            self._report(state="waiting", waiting_for=io.DECISION)
            await workflow.wait_condition(lambda: asked.id in self.answered or self.abort_reason is not None)
            self._close(message="")
            self._report(state="running", waiting_for=None)
        if self.paused and not self.abort_reason:
            self._report(state="paused", message=f"paused by the operator before {batch.summary}")
            await workflow.wait_condition(lambda: not self.paused or self.abort_reason is not None)
            self._report(state="running", message="")

    async def _batch(self, batch: Batch, fenced: list[str], canary: bool) -> BatchResult:
        """One batch as a child workflow; its result is the batch's report (no signal per node)."""
        release = self.plan.release
        self._report(state="running", batch=batch.summary, message=batch.summary)
        wf_id = f"{workflow.info().workflow_id}/batch-{batch.index}"
        try:
            return await workflow.execute_child_workflow(
                DataPlaneBatchWorkflow.run,
                BatchInput(
                    plan=self.plan,
                    service=self.svc.name,
                    upgrade_id=self.upgrade_id,
                    index=batch.index,
                    canary=canary,
                    nodes=batch.nodes,
                    avoid=list(fenced),
                    release_from=release.from_,
                    release_to=release.to,
                ),
                id=wf_id,
                static_summary=batch.summary,
                parent_close_policy=workflow.ParentClosePolicy.REQUEST_CANCEL,
                search_attributes=TypedSearchAttributes(
                    [
                        SearchAttributePair(visibility.CLOUD, self.plan.cloud.name),
                        SearchAttributePair(visibility.RELEASE, f"{release.from_}->{release.to}"),
                        SearchAttributePair(visibility.SERVICE, [self.svc.name]),
                    ]
                ),
            )
        except ChildWorkflowError as e:
            raise StepFailed(
                STEP,
                f"batch {batch.index} workflow {wf_id} failed: {e.cause or e}; its nodes' state is unknown:"
                f" look at {', '.join(n.node for n in batch.nodes)}, fix forward",
                errors.DATA_PLANE_FAILED,
            ) from None
