"""The availability probe's self-test: the real ``probe.availability`` activity against the cloud lab.

Placement's API is stopped (every pod out of the routes, then stopped: what a quiesce does) and
served again; the probe's longest outage must equal the window between the lab's routing changes
within one interval (1 s) and one call's latency. Then a worker restart: the counters carry over to
the next attempt through the heartbeat details. The probe runs under a small harness workflow that
starts and stops it exactly as a service's upgrade does (workflows/probe.py).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

from temporalio import workflow
from temporalio.client import Client, WorkflowHandle
from temporalio.service import RPCError
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from activities.probe import probe_availability
from lab.openstack.cloud import ADMIN_CLOUD, CloudLab
from model import io
from tests.standins import pending_probe
from tests.waiting import eventually
from worker import HEARTBEAT_THROTTLE
from workflows.probe import start_probe, stop_probe

OLD = "2025.2"
CALL = 0.5  # seconds: at most the time one probe call takes from its stamp to placement (see below)


@workflow.defn(name="ProbeHarness")
class ProbeHarness:
    """Starts the probe, and stops it (cancel, then its returned counters) when signalled."""

    def __init__(self) -> None:
        self.stopping = False

    @workflow.signal
    def stop(self) -> None:
        self.stopping = True

    @workflow.run
    async def run(self, inp: io.ProbeInput) -> io.Availability:
        handle = start_probe(inp)
        await workflow.wait_condition(lambda: self.stopping)
        return await stop_probe(handle, inp)


@asynccontextmanager
async def probe_worker(client: Client, tq: str) -> AsyncIterator[None]:
    with ThreadPoolExecutor(max_workers=4) as executor:
        async with Worker(
            client,
            task_queue=tq,
            workflows=[ProbeHarness],
            activities=[probe_availability],
            activity_executor=executor,
            max_concurrent_activities=4,
            workflow_runner=UnsandboxedWorkflowRunner(),
            max_heartbeat_throttle_interval=HEARTBEAT_THROTTLE,  # as the stackhop worker sends them
        ):
            yield


def seen(handle: WorkflowHandle[Any, Any], ok: Callable[[int, io.ProbeState], bool]) -> Callable[[], Any]:
    async def check() -> io.ProbeState | None:
        hb = await pending_probe(handle)
        return hb[1] if hb and ok(*hb) else None

    return check


async def start(client: Client, tq: str, service: str, service_type: str) -> WorkflowHandle[Any, io.Availability]:
    handle: WorkflowHandle[Any, io.Availability] = await client.start_workflow(
        ProbeHarness.run,
        io.ProbeInput(service=service, service_type=service_type, cloud=ADMIN_CLOUD),
        id=f"probe-{service}-{uuid.uuid4().hex[:8]}",
        task_queue=tq,
    )
    return handle


async def test_a_stopped_api_shows_as_an_outage_of_its_length(client: Client, cloud: CloudLab) -> None:
    tq = f"probe-{uuid.uuid4().hex[:8]}"
    async with probe_worker(client, tq):
        handle = await start(client, tq, "placement", "placement")
        await eventually(
            seen(handle, lambda _, s: s.counters.requests >= 3),
            within=30,
            what="placement answering the probe",
            ignore=(RPCError,),
        )
        await asyncio.to_thread(cloud.stop_service, "placement")  # each pod out of the routes, then stopped
        down = cloud.routed_at["placement"]
        await eventually(seen(handle, lambda _, s: s.counters.errors >= 5), within=30, what="5 failed requests")
        await asyncio.to_thread(cloud.serve, "placement", OLD)  # returns once a pod is routed again
        up = cloud.routed_at["placement"]
        await eventually(
            seen(handle, lambda _, s: s.counters.outages == 1 and not s.outage_since),
            within=30,
            what="the probe seeing placement back",
        )
        await handle.signal(ProbeHarness.stop)
        a = await handle.result()
    window = up - down
    print(f"placement stopped for {window:.2f}s; probe: {a}")
    assert a.service == "placement" and a.api == "resource providers" and a.attempts == 1
    assert a.errors >= 5 and a.outages == 1 and a.last_error
    # N ± 1 s: one interval either side (the window: the lab's own moments of routing, not the test's
    # around its calls); and CALL: a call stamped before a route changed that reached placement after
    # it (its token and version discovery first) counts on the other side of the change
    slack = 1.0 + CALL
    assert window - slack <= a.longest_outage_s <= window + slack, (a.longest_outage_s, window)
    assert a.requests > a.errors


async def test_the_counters_survive_a_worker_restart(client: Client, cloud: CloudLab) -> None:
    """The worker drains while the probe runs (its attempt fails as temporary after a last
    heartbeat); the next worker's attempt carries the same counters on."""
    tq = f"probe-{uuid.uuid4().hex[:8]}"
    async with probe_worker(client, tq):
        handle = await start(client, tq, "keystone", "identity")
        before = await eventually(
            seen(handle, lambda attempt, s: attempt == 1 and s.counters.requests >= 5),
            within=30,
            what="five tokens issued",
            ignore=(RPCError,),
        )
    async with probe_worker(client, tq):
        resumed = await eventually(
            # the second attempt's own heartbeat (the first ones seen may still be the first attempt's)
            # (or a later one: a worker shutting down may still have polled the next attempt, and failed it)
            seen(handle, lambda attempt, s: attempt == s.counters.attempts >= 2),
            within=30,
            what="the second attempt's first heartbeat",
        )
        later = await eventually(
            seen(handle, lambda _, s: s.counters.requests >= resumed.counters.requests + 3),
            within=30,
            what="the second attempt counting on",
        )
        await handle.signal(ProbeHarness.stop)
        a = await handle.result()
    print(f"before the restart: {before.counters}; resumed: {resumed.counters}; result: {a}")
    assert resumed.started_at == before.started_at, "the same probe's state, not a fresh one"
    assert resumed.counters.requests >= before.counters.requests
    assert a.attempts >= 2 and a.requests >= later.counters.requests
    assert a.api == "token issue"
