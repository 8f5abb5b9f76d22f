"""Starting and stopping the availability probe (activities/probe.py) from a workflow.

The probe runs beside a service's steps: started before its first changing step, stopped when the
service's upgrade ends (workflows/service.py). Stopping is a cancel of the activity followed by an
await of its handle (WAIT_CANCELLATION_COMPLETED): the probe answers a cancellation by *returning* its
counters, and the handle, whose task was cancelled, still returns that value — temporalio waits on the
result through the cancel request (worker/_workflow_instance.py ``_await_temporal_operation``);
tests/workflows/test_probe.py shows it against the dev server. A probe that failed on its own leaves
the counters of its last heartbeat (a heartbeat timeout carries them) with a note. Deterministic code
only.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, CancelledError, TimeoutError
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from model import errors, io

# A cancellation reaches the probe with a heartbeat's answer: the worker sends heartbeats every
# worker.HEARTBEAT_THROTTLE (3 s), so it stops within that. The timeout is five times that, so a worker
# stalled for a few seconds on a busy machine does not cost an attempt; a dead worker is noticed within it.
PROBE_HEARTBEAT = timedelta(seconds=15)
PROBE_ATTEMPTS = 10  # a worker restart costs one; each attempt resumes the counters of the last heartbeat


def start_probe(inp: io.ProbeInput) -> workflow.ActivityHandle[io.Availability]:
    return workflow.start_activity(
        io.PROBE_AVAILABILITY,
        inp,
        result_type=io.Availability,
        # the probe returns on its own after max_seconds: this bound is never what ends it
        start_to_close_timeout=timedelta(seconds=inp.max_seconds + 60),
        heartbeat_timeout=PROBE_HEARTBEAT,
        retry_policy=RetryPolicy(
            initial_interval=timedelta(seconds=1),
            maximum_interval=timedelta(seconds=5),
            maximum_attempts=PROBE_ATTEMPTS,
            non_retryable_error_types=sorted(errors.PERMANENT),
        ),
        cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        summary=f"probe: {io.PROBE_APIS.get(inp.service_type, inp.service_type)} every {inp.interval_seconds:g}s",
    )


async def stop_probe(handle: workflow.ActivityHandle[io.Availability], inp: io.ProbeInput) -> io.Availability:
    """Cancel the probe and return what it returns when cancelled (or what is left of a failed one)."""
    api = io.PROBE_APIS.get(inp.service_type, inp.service_type)
    if not handle.done():
        handle.cancel()
    try:
        return await handle
    except ActivityError as e:
        return _probe_failed(inp.service, api, e)
    except asyncio.CancelledError:  # it completed in the very activation that stopped it
        return io.Availability(
            service=inp.service, api=api, note="the probe ended as it was stopped: its counters were lost"
        )


def _probe_failed(service: str, api: str, e: ActivityError) -> io.Availability:
    """The counters of a probe that failed (its attempts spent, or its input refused): those of its
    last heartbeat when a timeout ended it, else none, and why."""
    cause = e.cause
    if isinstance(cause, CancelledError):
        return io.Availability(service=service, api=api, note="the probe was stopped before it ran")
    why = f"the probe failed: {cause or e}"
    details: Any = cause.last_heartbeat_details if isinstance(cause, TimeoutError) else ()
    for detail in reversed(list(details)):
        try:
            counters = io.ProbeState.model_validate(detail).counters
        except ValueError:
            continue
        return counters.model_copy(update={"note": f"{why}; counters of its last heartbeat"})
    return io.Availability(service=service, api=api, note=why)
