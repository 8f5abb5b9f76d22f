"""The worker's activity slots and its executor's threads are one setting: every activity a worker
accepts has a thread, so none waits in the executor's queue without heartbeating."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from temporalio.client import Client

import worker as stackhop_worker
from tests.standins import Script


def queue() -> str:
    """A task queue of its own for each worker built (the core SDK refuses two on one queue)."""
    return f"sizing-{uuid.uuid4().hex[:8]}"


def sizes(w: stackhop_worker.StackhopWorker) -> tuple[list[int], int]:
    """(each temporalio worker's max_concurrent_activities, threads of the executor they share)."""
    configs = [x.config() for x in w.workers]
    executors = {id(c.get("activity_executor")) for c in configs}
    assert len(executors) == 1, "one executor for both task queues"
    executor = configs[0].get("activity_executor")
    assert isinstance(executor, ThreadPoolExecutor)
    return [int(c.get("max_concurrent_activities") or 0) for c in configs], executor._max_workers


async def test_slots_and_threads_match(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(stackhop_worker.ACTIVITY_SLOTS_ENV, raising=False)
    slots, threads = sizes(stackhop_worker.build_worker(client, task_queue=queue()))
    assert slots == [stackhop_worker.DEFAULT_ACTIVITY_SLOTS] * 2  # main queue and the host's queue
    assert threads == sum(slots)

    monkeypatch.setenv(stackhop_worker.ACTIVITY_SLOTS_ENV, "7")
    slots, threads = sizes(stackhop_worker.build_worker(client, task_queue=queue()))
    assert slots == [7, 7] and threads == 14

    # an explicit option is the same one setting; a worker without database activities has one queue
    slots, threads = sizes(stackhop_worker.build_worker(client, [], task_queue=queue(), max_concurrent_activities=3))
    assert slots == [3] and threads == 3
    slots, threads = sizes(stackhop_worker.build_worker(client, Script().activities(), task_queue=queue()))
    assert threads == sum(slots) == 14


@pytest.mark.parametrize("value", ["0", "-2", "many"])
def test_a_bad_slot_count_is_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(stackhop_worker.ACTIVITY_SLOTS_ENV, value)
    with pytest.raises(ValueError, match="STACKHOP_ACTIVITY_SLOTS"):
        stackhop_worker.activity_slots()
