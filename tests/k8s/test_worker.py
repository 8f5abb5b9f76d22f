"""The k8s activities inside a real Temporal worker (dev server) against the real lab."""

from __future__ import annotations

import asyncio
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from temporalio.client import Client, WorkflowHandle
from temporalio.worker import Worker

from activities.kube import KUBE_ACTIVITIES
from model import errors, io
from model.io import WorkloadImage
from model.plan import KubeTarget
from tests.k8s.helpers import create, images_of, read, ready, workload
from tests.k8s.probe_workflow import KubeProbe, ProbeInput
from tests.waiting import eventually

pytestmark = pytest.mark.k8s


async def heartbeating(handle: WorkflowHandle[Any, Any], activity_type: str) -> bool:
    """The server has a heartbeat from the workflow's pending ``activity_type`` activity."""
    desc = await handle.describe()
    return any(
        p.activity_type.name == activity_type and p.HasField("last_heartbeat_time")
        for p in desc.raw_description.pending_activities
    )


def worker(client: Client, tq: str) -> Worker:
    return Worker(
        client,
        task_queue=tq,
        workflows=[KubeProbe],
        activities=KUBE_ACTIVITIES,
        activity_executor=ThreadPoolExecutor(max_workers=4),
    )


def img(name: str, image: str) -> WorkloadImage:
    return WorkloadImage(kind="Deployment", name=name, container="app", image=image)


async def test_failed_rollout_is_not_retried_and_undo_restores(client: Client, kube_target: KubeTarget) -> None:
    create(kube_target, workload("Deployment", "barbican-api", "registry.lab/barbican:1", deadline=5))
    await asyncio.to_thread(ready, kube_target, "Deployment", "barbican-api")
    tq = f"k8s-{uuid.uuid4().hex[:8]}"
    async with worker(client, tq):
        handle = await client.start_workflow(
            KubeProbe.run,
            ProbeInput(target=kube_target, images=[img("barbican-api", "registry.lab/barbican:2-never-ready")]),
            id=f"probe-{uuid.uuid4().hex[:8]}",
            task_queue=tq,
        )
        res = await handle.result()
        history = [e async for e in handle.fetch_history_events()]
    assert res.outcome == "rolled-back" and res.error_type == errors.ROLLOUT_FAILED
    assert "barbican-api" in res.message
    started = [e for e in history if e.HasField("activity_task_started_event_attributes")]
    assert len(started) == 3 and all(e.activity_task_started_event_attributes.attempt == 1 for e in started)
    assert images_of(read(kube_target, "Deployment", "barbican-api"))["app"] == "registry.lab/barbican:1"


async def test_cancelled_workflow_stops_the_wait(client: Client, kube_target: KubeTarget) -> None:
    """Cancelling the workflow reaches the sync wait through its heartbeats; it stops (the
    history records the activity as cancelled) before the compensation touches the workload."""
    create(kube_target, workload("Deployment", "aodh-api", "registry.lab/aodh:1"))
    await asyncio.to_thread(ready, kube_target, "Deployment", "aodh-api")
    tq = f"k8s-{uuid.uuid4().hex[:8]}"
    async with worker(client, tq):
        handle = await client.start_workflow(
            KubeProbe.run,
            ProbeInput(
                target=kube_target, timeout_seconds=600, images=[img("aodh-api", "registry.lab/aodh:never-ready")]
            ),
            id=f"probe-{uuid.uuid4().hex[:8]}",
            task_queue=tq,
        )
        await eventually(lambda: heartbeating(handle, io.K8S_WAIT_ROLLOUT), what="wait_rollout heartbeating")
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await handle.cancel()
        res = await handle.result()
        elapsed = loop.time() - t0
        hist = [e async for e in handle.fetch_history_events()]
    assert res.outcome == "rolled-back" and "cancel" in res.message.lower()
    assert elapsed < 20, f"cancellation and undo took {elapsed:.1f}s"
    kinds = [e.WhichOneof("attributes") for e in hist]
    canceled = kinds.index("activity_task_canceled_event_attributes")
    undo_scheduled = max(i for i, k in enumerate(kinds) if k == "activity_task_scheduled_event_attributes")
    assert canceled < undo_scheduled  # the wait had stopped before the undo began
    assert images_of(read(kube_target, "Deployment", "aodh-api"))["app"] == "registry.lab/aodh:1"
