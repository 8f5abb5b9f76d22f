"""Availability probe `probe.availability`: what the users of one API saw while its service upgraded.

Once a second (``ProbeInput.interval_seconds``) the probe calls the service's API through
openstacksdk with the plan's clouds.yaml entry (activities/validation.py ``connect``): identity —
a fresh token each time (the cached one is invalidated first), image — image list, network —
network list, compute — server list, placement — resource providers (one page each). It counts
requests and errors and measures outages: a run of consecutive failed requests, lasting from the
start of its first failed request to the start of the next successful one (so an API stopped for N
seconds shows an outage of N ± one interval). An API error is what it counts, never a reason to fail:
every exception of a call is an error of the API. A failed call drops the connection and the next
one starts afresh (a proxy built while its endpoint was down may keep a bad version discovery).

Counters survive a worker restart: they travel in every heartbeat's details (``ProbeState``), and an
attempt that follows a heartbeat timeout resumes from ``activity.info().heartbeat_details``. The
Temporal UI shows them under the pending activity. The worker passes the newest heartbeat to the server every
``worker.HEARTBEAT_THROTTLE`` (3 s), so a restart loses at most that many seconds of counts; an outage
open at the last heartbeat stays open until the first success after the resume (nothing said the API came back).

How it is stopped without losing the result: the workflow cancels it
(``ActivityCancellationType.WAIT_CANCELLATION_COMPLETED``) and awaits its handle. Cancellation
reaches the activity with a heartbeat's answer (within ``worker.HEARTBEAT_THROTTLE``); the probe then
*returns* its counters instead of raising. temporalio 1.35 completes an activity that returns after
a cancel request as completed (worker/_activity.py: only a raised CancelledError becomes
"cancelled"), and the workflow's handle, whose task was cancelled, keeps waiting on the result
future through the cancel request (worker/_workflow_instance.py ``_await_temporal_operation``) and
returns the value. tests/workflows/test_probe.py checks it end to end against the dev server. The
probe also returns on its own after ``max_seconds`` (its start-to-close bound is a minute more), so
a bound reached is a result with a note, not a failure. Only the workflow's cancel (its cancellation
details say ``cancel_requested``) makes it return: a worker that shuts down (draining, or cancelling
its activities when its grace period ends) makes the attempt fail as temporary after a last
heartbeat, and the retry, on a live worker, resumes the counters. (Returning then would hand the
workflow a result while the service still upgrades, and end the probe for good.)
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.validation import connect
from model import errors
from model.io import PROBE_APIS, PROBE_AVAILABILITY, Availability, ProbeInput, ProbeState

log = structlog.get_logger(__name__)

REQUEST_TIMEOUT = 2.0  # seconds, each HTTP request (connect and read): a slower answer is an error users saw
ERROR_TEXT = 300  # characters of the last error kept


def _call_for(service_type: str) -> Callable[[Any], None]:
    """One request of the service's API (any exception is a failed request)."""

    def token(conn: Any) -> None:
        conn.session.auth.invalidate()  # a fresh token each time: POST /v3/auth/tokens
        if not conn.session.get_token():
            raise RuntimeError("no token issued")

    def first(listing: Callable[[Any], Any]) -> Callable[[Any], None]:
        def call(conn: Any) -> None:
            next(iter(listing(conn)), None)  # one page: one GET

        return call

    calls: dict[str, Callable[[Any], None]] = {
        "identity": token,
        "image": first(lambda c: c.image.images(limit=1)),
        "network": first(lambda c: c.network.networks(limit=1)),
        "compute": first(lambda c: c.compute.servers(details=False, limit=1)),
        "placement": first(lambda c: c.placement.resource_providers()),
    }
    if service_type not in calls:
        raise errors.permanent(
            errors.PLAN_INVALID, f"no availability probe for service type {service_type!r} (known: {sorted(calls)})"
        )
    return calls[service_type]


def resumed_state(inp: ProbeInput, details: Sequence[Any], attempt: int) -> ProbeState:
    """The state of the previous attempt's last heartbeat, else a fresh one."""
    now = time.time()
    for detail in reversed(list(details)):
        try:
            state = ProbeState.model_validate(detail)
        except ValueError:
            continue
        return state.model_copy(update={"counters": state.counters.model_copy(update={"attempts": attempt})})
    counters = Availability(service=inp.service, api=PROBE_APIS.get(inp.service_type, inp.service_type))
    return ProbeState(counters=counters.model_copy(update={"attempts": attempt}), started_at=now)


class Probe:
    """The counting, apart from Temporal (tests drive it with a fake clock and fake calls)."""

    def __init__(self, state: ProbeState) -> None:
        self.state = state

    def record(self, at: float, error: BaseException | None) -> None:
        """One request that started at ``at`` (epoch seconds): ``error`` None when it succeeded."""
        s = self.state
        c = s.counters
        update: dict[str, Any] = {"requests": c.requests + 1}
        if error is None:
            if s.outage_since:
                update["longest_outage_s"] = round(max(c.longest_outage_s, at - s.outage_since), 3)
                s.outage_since = 0.0
        else:
            update["errors"] = c.errors + 1
            update["last_error"] = f"{type(error).__name__}: {error}"[:ERROR_TEXT]
            kind = type(error).__name__
            s.kinds[kind] = s.kinds.get(kind, 0) + 1
            if not s.outage_since:
                s.outage_since = at
                update["outages"] = c.outages + 1
        s.last_at = at
        s.counters = c.model_copy(update=update)

    def result(self, now: float, note: str = "") -> Availability:
        """The counters at the end; an outage still open counts up to ``now``."""
        s = self.state
        c = s.counters
        longest = max(c.longest_outage_s, now - s.outage_since) if s.outage_since else c.longest_outage_s
        return c.model_copy(
            update={
                "longest_outage_s": round(longest, 3),
                "seconds": round(now - s.started_at, 3) if s.started_at else c.seconds,
                "note": note or c.note,
            }
        )


def _close(conn: Any) -> None:
    try:
        conn.close()
    except Exception as exc:  # a broken connection closes as it can
        log.debug("probe_close_failed", error=str(exc))


RETURN = "return"


def stopping() -> str:
    """ "" while the probe goes on; RETURN when the workflow cancelled it (it returns its counters);
    else why this attempt ends without a result: the worker shuts down (draining, or cancelling its
    activities at the end of its grace period), or cancelled it for another reason. Returning the
    counters then would end the probe for good, while the service still upgrades."""
    details = activity.cancellation_details()
    if activity.is_cancelled() and details is not None and details.cancel_requested:
        return RETURN
    if activity.is_worker_shutdown():
        return "the worker shuts down"
    if activity.is_cancelled():
        return f"cancelled by the worker ({details or 'heartbeat failed'})"
    return ""


class Heartbeats:
    """Heartbeats the probe's state every interval from a thread of its own, so that a slow call
    (a token issue, version discovery and the request after a reconnect, each up to
    REQUEST_TIMEOUT) never delays a heartbeat: every heartbeat the worker sends (every
    ``worker.HEARTBEAT_THROTTLE``) carries counters at most one interval old, and its answer may bring
    the cancellation that stops the probe."""

    def __init__(self, probe: Probe, interval: float) -> None:
        self.probe = probe
        self.interval = interval
        self.lock = threading.Lock()
        self.stop = threading.Event()
        context = contextvars.copy_context()  # the activity's context: activity.heartbeat works there
        self.thread = threading.Thread(target=context.run, args=(self._beat,), name="probe-heartbeat", daemon=True)

    def send(self) -> None:
        with self.lock:
            details = self.probe.state.model_dump(mode="json")
        activity.heartbeat(details)

    def _beat(self) -> None:
        while not self.stop.wait(self.interval):
            self.send()

    def __enter__(self) -> Heartbeats:
        self.send()
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


@activity.defn(name=PROBE_AVAILABILITY, no_thread_cancel_exception=True)
def probe_availability(inp: ProbeInput) -> Availability:
    """Call the API every interval until cancelled (or ``max_seconds``); return the counters."""
    info = activity.info()
    call = _call_for(inp.service_type)
    probe = Probe(resumed_state(inp, info.heartbeat_details, info.attempt))
    deadline = time.monotonic() + inp.max_seconds
    conn: Any = None
    note = ""
    log.info("probe_started", service=inp.service, api=probe.state.counters.api, attempt=info.attempt)
    next_at = time.monotonic()
    with Heartbeats(probe, inp.interval_seconds) as beats:
        try:
            while True:
                stop = stopping()
                if stop == RETURN:
                    break
                if stop:  # the next attempt, on a live worker, resumes from the last heartbeat
                    beats.send()
                    raise errors.temporary(f"{inp.service} probe: {stop}; the next attempt resumes its counters")
                if time.monotonic() >= deadline:
                    note = f"stopped at its bound ({inp.max_seconds}s) before the upgrade ended"
                    break
                at = time.time()
                error: BaseException | None = None
                try:
                    if conn is None:
                        conn = connect(inp.cloud, REQUEST_TIMEOUT)
                    call(conn)
                except ApplicationError:
                    raise  # the plan's cloud entry is not usable (validation.connect): not an API error
                except Exception as exc:
                    error = exc
                    if conn is not None:
                        _close(conn)
                        conn = None
                with beats.lock:
                    probe.record(at, error)
                beats.send()
                next_at += inp.interval_seconds
                now = time.monotonic()
                if next_at < now:  # a slow call: the next one goes at the next whole interval from now
                    next_at = now + inp.interval_seconds - (now - next_at) % inp.interval_seconds
                activity.wait_for_cancelled_sync(next_at - now)
        finally:
            if conn is not None:
                _close(conn)
    result = probe.result(time.time(), note)
    log.info(
        "probe_stopped",
        service=inp.service,
        cancelled=activity.is_cancelled(),
        requests=result.requests,
        errors=result.errors,
        longest_outage_s=result.longest_outage_s,
    )
    return result
