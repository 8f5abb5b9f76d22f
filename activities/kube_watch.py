"""Watch one object through apiserver restarts, with heartbeats and cancellation (sync activities).

Why not ``kubernetes.watch.Watch``: we need (1) heartbeats and a prompt cancellation even when
nothing changes, (2) to survive the apiserver going away (connection refused, truncated stream) by
backing off and resuming from the last resourceVersion, and (3) to re-list on 410 Gone. The pulse
thread below gives (1); the loop does the rest. The k8s activities run as sync ``def`` activities
with ``no_thread_cancel_exception`` so cancellation is only ever observed here, between events,
never in the middle of a write.

Why a pulse thread: a watch request blocks in a read until the next event. With the request cut
every few seconds so the loop could heartbeat, a 30-s rollout cost 11 watch requests and a 10-minute
one 200: polling by another name. Instead each request lasts up to WATCH_WINDOW and a ``Pulse``
thread re-sends the activity's last heartbeat while the read blocks; on cancellation it shuts the
open response's socket, so the read returns at once and the loop raises CancelledError.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines
from temporalio import activity
from temporalio.exceptions import CancelledError

from activities.kube_client import call, is_transient, status_reason

# Seconds per watch request (the API's timeoutSeconds). It also bounds how long a silently dropped
# connection (no FIN, no RST) goes unnoticed: the read times out 10 s after the window.
WATCH_WINDOW = 60
PULSE_SECONDS = 3.0  # heartbeat while a read blocks: this often, or a third of the heartbeat timeout
MAX_BACKOFF = 2.0
# A restarting kube-apiserver answers before its authorizer's caches are synced: for a while it
# refuses (401/403) what it allowed before. Within this many seconds of an outage — or of the start
# of the watch, which may begin just after an outage it did not see — those answers are retried like
# the outage itself; later they are what they say (a wrong RBAC setup).
AUTH_GRACE = 30.0


@dataclass
class Event:
    """What ``follow`` and ``follow_all`` yield: a change (the object's current state; ``items``: every
    object the selector finds, by name), an idle tick, or an outage notice."""

    kind: str  # "object" | "tick" | "unreachable"
    obj: dict[str, Any] | None = None
    error: str = ""
    items: dict[str, dict[str, Any]] = field(default_factory=dict)


def in_activity() -> bool:
    return activity.in_activity()


def check_cancelled() -> None:
    """Raise CancelledError if the activity was cancelled (no-op outside activities)."""
    if in_activity() and activity.is_cancelled():
        raise CancelledError("activity cancelled")


def pulse_interval() -> float:
    """Seconds between the pulse's heartbeats: PULSE_SECONDS, less under a short heartbeat timeout."""
    timeout = activity.info().heartbeat_timeout if in_activity() else None
    if timeout:
        return max(0.2, min(PULSE_SECONDS, timeout.total_seconds() / 3))
    return PULSE_SECONDS


_local = threading.local()  # the activity thread's running Pulse, for heartbeat()


def heartbeat(**progress: Any) -> None:
    if in_activity():
        activity.heartbeat(progress)
        pulse: Pulse | None = getattr(_local, "pulse", None)
        if pulse is not None:
            pulse.details = progress


class Pulse:
    """While a watch read blocks: re-send the activity's last heartbeat (``heartbeat()`` records it)
    every ``pulse_interval()``, and on cancellation shut the open response's socket so the read
    returns at once. Runs in its own thread with the activity's context (contextvars)."""

    CHECK = 0.5  # seconds between looks at the cancellation flag and the stop event

    def __init__(self) -> None:
        self.details: dict[str, Any] | None = None  # nothing is sent before the activity's own first heartbeat
        self.response: Any = None  # the open watch response (urllib3 HTTPResponse)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._outer: Pulse | None = None

    def __enter__(self) -> Pulse:
        if in_activity():
            self._outer = getattr(_local, "pulse", None)
            if self._outer is not None:
                self.details = self._outer.details
            _local.pulse = self
            ctx = contextvars.copy_context()
            self._thread = threading.Thread(target=ctx.run, args=(self._run,), name="watch-pulse", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread is not None:
            _local.pulse = self._outer
            self._thread.join()

    def _run(self) -> None:
        interval = pulse_interval()
        last = time.monotonic()
        while not self._stop.wait(min(self.CHECK, interval)):
            if activity.is_cancelled():
                response = self.response
                if response is not None:
                    with contextlib.suppress(Exception):  # closed by the loop meanwhile: nothing to wake
                        response.shutdown()  # wakes the blocked read (urllib3 >= 2.3)
                return
            if self.details is not None and time.monotonic() - last >= interval:
                activity.heartbeat(self.details)
                last = time.monotonic()


def sleep(seconds: float) -> None:
    """Sleep that wakes up early on cancellation."""
    if in_activity():
        activity.wait_for_cancelled_sync(seconds)
        check_cancelled()
    else:
        time.sleep(seconds)


def follow(list_fn: Callable[..., Any], namespace: str, name: str, *, deadline: float) -> Iterator[Event]:
    """Yield the named object (None when absent) now and after every change until ``deadline``
    (time.monotonic()), with a "tick" at least every WATCH_WINDOW seconds (``follow_all`` by name)."""
    for event in follow_all(list_fn, namespace, f"metadata.name={name}", deadline=deadline):
        if event.kind == "object":
            event.obj = next(iter(event.items.values()), None)
        yield event


def follow_all(list_fn: Callable[..., Any], namespace: str, selector: str, *, deadline: float) -> Iterator[Event]:
    """Yield every object the field ``selector`` finds (``Event.items``, by name; ``obj``: the one
    that changed, None when deleted) now and after every change until ``deadline``
    (time.monotonic()), with a "tick" at least every WATCH_WINDOW seconds.

    Transient failures (apiserver down or restarting, 5xx, 429; 401/403 within AUTH_GRACE of an
    outage or of the start) never end the iteration: they yield "unreachable" and retry with backoff; permanent ones
    (403...) raise ApiException.
    """
    with Pulse() as pulse:
        yield from _follow_all(list_fn, namespace, selector, deadline, pulse)


def _follow_all(
    list_fn: Callable[..., Any], namespace: str, selector: str, deadline: float, pulse: Pulse
) -> Iterator[Event]:
    items: dict[str, dict[str, Any]] = {}
    rv: str | None = None
    backoff = 0.2
    outage: float | None = None  # time.monotonic() of the last unreachable answer
    began = time.monotonic()
    while time.monotonic() < deadline:
        check_cancelled()
        try:
            if rv is None:
                lst = call(list_fn, namespace, field_selector=selector)
                rv = lst["metadata"]["resourceVersion"]
                items = {o["metadata"]["name"]: o for o in lst.get("items") or []}
                yield Event("object", next(iter(items.values()), None), items=dict(items))
            window = int(max(1, min(WATCH_WINDOW, deadline - time.monotonic() + 1)))
            resp = list_fn(
                namespace,
                field_selector=selector,
                resource_version=rv,
                watch=True,
                allow_watch_bookmarks=True,
                timeout_seconds=window,
                _preload_content=False,
                _request_timeout=(5, window + 10),
            )
            pulse.response = resp
            try:
                check_cancelled()  # a cancel that came while the request was being sent
                if not 200 <= resp.status <= 299:
                    raise ApiException(http_resp=resp)
                for line in iter_resp_lines(resp):
                    if not line or not line.strip():
                        continue
                    ev = json.loads(line)
                    obj = ev.get("object") or {}
                    if ev.get("type") == "ERROR":
                        if obj.get("code") == 410:  # resourceVersion too old: re-list
                            rv = None
                            break
                        raise ApiException(status=obj.get("code"), reason=obj.get("message"))
                    rv = (obj.get("metadata") or {}).get("resourceVersion", rv)
                    if ev.get("type") != "BOOKMARK":
                        name = obj["metadata"]["name"]
                        if ev.get("type") == "DELETED":
                            items.pop(name, None)
                            yield Event("object", None, items=dict(items))
                        else:
                            items[name] = obj
                            yield Event("object", obj, items=dict(items))
                    check_cancelled()
                    if time.monotonic() >= deadline:
                        return
            finally:
                pulse.response = None
                resp.close()
                resp.release_conn()
            check_cancelled()  # the pulse ends a cancelled watch's read: the stream just looks finished
            backoff = 0.2
            yield Event("tick", items=dict(items))
        except ApiException as exc:
            check_cancelled()
            if exc.status == 410:
                rv = None
                continue
            since = outage if outage is not None else began
            starting = exc.status in (401, 403) and time.monotonic() - since < AUTH_GRACE
            if not (is_transient(exc) or starting):
                raise
            outage = outage if starting else time.monotonic()
            yield Event("unreachable", error=f"API error {exc.status}: {status_reason(exc)}", items=dict(items))
            sleep(min(backoff, max(0.0, deadline - time.monotonic())))
            backoff = min(backoff * 2, MAX_BACKOFF)
        except CancelledError:
            raise
        except Exception as exc:
            check_cancelled()
            if not is_transient(exc):
                raise
            outage = time.monotonic()
            yield Event("unreachable", error=f"{type(exc).__name__}: {exc}", items=dict(items))
            sleep(min(backoff, max(0.0, deadline - time.monotonic())))
            backoff = min(backoff * 2, MAX_BACKOFF)
