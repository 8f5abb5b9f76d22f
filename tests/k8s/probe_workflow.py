"""A minimal workflow that drives the k8s activities through a real Temporal worker (tests only).

It does what the upgrade workflow does with them — set images, wait (heartbeat timeout, cancellable,
WAIT_CANCELLATION_COMPLETED), undo on failure — so the pydantic payloads, the error types crossing
the activity boundary and cancellation via heartbeats are exercised end to end.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TypeVar

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from pydantic import BaseModel

    from model import io
    from model.plan import KubeTarget


Result = TypeVar("Result")


class ProbeInput(BaseModel):
    images: list[io.WorkloadImage]
    target: KubeTarget
    timeout_seconds: int = 60


class ProbeResult(BaseModel):
    outcome: str
    error_type: str = ""
    message: str = ""
    previous: list[io.WorkloadImage] = []


@workflow.defn(sandboxed=True)
class KubeProbe:
    @workflow.run
    async def run(self, inp: ProbeInput) -> ProbeResult:
        res = await self._activity(
            io.K8S_SET_IMAGES, io.SetImagesInput(target=inp.target, images=inp.images), io.SetImagesResult, inp
        )
        refs = [io.WorkloadRef(kind=i.kind, name=i.name, container=i.container) for i in inp.images]
        try:
            await self._activity(
                io.K8S_WAIT_ROLLOUT,
                io.WaitRolloutInput(target=inp.target, workloads=refs, timeout_seconds=inp.timeout_seconds),
                io.RolloutResult,
                inp,
            )
        except ActivityError as e:
            cause = e.cause
            await self._activity(
                io.K8S_UNDO_IMAGES,
                io.UndoImagesInput(target=inp.target, previous=res.previous, timeout_seconds=60),
                io.RolloutResult,
                inp,
            )
            return ProbeResult(
                outcome="rolled-back",
                error_type=getattr(cause, "type", "") or "",
                message=str(cause),
                previous=res.previous,
            )
        return ProbeResult(outcome="succeeded", previous=res.previous)

    @staticmethod
    async def _activity(name: str, arg: BaseModel, result_type: type[Result], inp: ProbeInput) -> Result:
        """Run an activity with the options the upgrade workflow gives the k8s activities."""
        result: Result = await workflow.execute_activity(
            name,
            arg,
            result_type=result_type,
            start_to_close_timeout=timedelta(seconds=inp.timeout_seconds + 60),
            heartbeat_timeout=timedelta(seconds=10),
            retry_policy=RetryPolicy(maximum_attempts=3, initial_interval=timedelta(milliseconds=200)),
            cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        )
        return result
