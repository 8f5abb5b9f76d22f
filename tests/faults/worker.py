"""``python -m tests.faults.worker``: the real stackhop worker plus a test-side interceptor that
SIGKILLs this process at the kill points of ``$STACKHOP_FAULT_PLAN`` (see points.py).

Nothing in the product changes: the worker is ``worker.build_worker`` with every activity of the
catalog; the interceptor only observes, logs, and kills. Sticky workflow caching is off
(``max_cached_workflows=0``) so that after a kill the next workflow task goes straight to the
shared task queue instead of waiting out the dead worker's sticky queue; every workflow task then
replays the history, which is the harsher test of determinism.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from kubernetes import client, config
from temporalio import activity
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

import worker as stackhop_worker
from model import io
from tests.faults.points import (
    PLAN_ENV,
    Event,
    KillPoint,
    When,
    append_event,
    due,
    label,
    read_events,
    read_plan,
    release_file,
)
from tests.waiting import NotYet, eventually

# Heartbeats reach the server at most this far apart (temporalio's default is 0.8 x the heartbeat
# timeout): with a short heartbeat timeout, a throttled heartbeat would arrive too late.
HEARTBEAT_THROTTLE = timedelta(seconds=1)


HOLD_LIMIT = 60.0  # seconds a held moment waits for the harness at most


class KillAtPoints(Interceptor):
    def __init__(self, events: Path, points: list[KillPoint], holds: list[KillPoint]) -> None:
        self.events = events
        self.points = points
        self.holds = holds

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _Inbound(next, self)


class _Inbound(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, root: KillAtPoints) -> None:
        super().__init__(next)
        self.root = root

    async def _moment(self, step: str, when: When) -> None:
        """Log the moment; die at once when it is a kill point (the log line first, on disk); when
        it is a hold, wait until the harness releases it."""
        events = read_events(self.root.events)
        kill = any(due(p, step, when, events) for p in self.root.points)
        holds = [h for h in self.root.holds if due(h, step, when, events)]
        append_event(
            self.root.events, Event(step, when, os.getpid(), activity.info().attempt, killed=kill, at=time.time())
        )
        if kill:
            os.kill(os.getpid(), signal.SIGKILL)
        for hold in holds:
            released = release_file(self.root.events, hold)

            def let_go(released: Path = released) -> bool:
                activity.heartbeat()  # the held step stays alive while the harness works
                return released.exists()

            # past the limit the step goes on unheld: the harness's own assertions then fail
            with contextlib.suppress(NotYet):
                await eventually(let_go, within=HOLD_LIMIT, what="the harness to release the hold")

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        step = label(activity.info().activity_type, input.args, read_events(self.root.events))
        await self._moment(step, "start")
        during = [p for p in self.root.points if (p.step, p.when) == (step, "during")]
        arg = input.args[0] if input.args else None
        helm = arg if isinstance(arg, io.HelmUpgradeInput | io.HelmRollbackInput) else None
        watch = asyncio.create_task(self._during(step, helm)) if during and helm else None
        try:
            result = await super().execute_activity(input)
        finally:
            if watch is not None:
                watch.cancel()
        await self._moment(step, "complete")  # the function returned; its result has not left this process
        return result

    async def _during(self, step: str, inp: io.HelmUpgradeInput | io.HelmRollbackInput) -> None:
        """The ``during`` moment: this worker's helm command runs and the release's latest revision
        is pending (helm is half-way through its operation); the worker dies there, helm with it."""
        release, namespace = inp.helm.release, inp.helm.namespace or inp.target.namespace
        api = config.new_client_from_config(config_file=os.environ["KUBECONFIG"])
        core = client.CoreV1Api(api)

        def pending() -> bool:
            if not _helm_child():
                return False
            found = core.list_namespaced_secret(namespace, label_selector=f"owner=helm,name={release}").items
            labels = [(s.metadata.labels if s.metadata else None) or {} for s in found]
            return any(lab.get("status", "").startswith("pending-") for lab in labels)

        try:
            with contextlib.suppress(NotYet):
                await eventually(lambda: asyncio.to_thread(pending), within=HOLD_LIMIT, what="helm half-way")
                await self._moment(step, "during")
        finally:
            api.close()


def _helm_child() -> bool:
    """Is a helm process a child of this worker now?"""
    me = str(os.getpid())
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)
            if fields[0].endswith("(helm") and fields[1].split()[1] == me:
                return True
    return False


def warm_up() -> None:
    """What an activity would otherwise do on its first run in a fresh process (import openstacksdk,
    load the kubeconfig, open a TLS connection), done before polling: a replacement worker's first
    activity must not spend the short heartbeat timeout on it."""
    import openstack  # noqa: F401 - imported for its side effect: the endpoint check imports it lazily
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=os.environ["KUBECONFIG"])
    try:
        client.VersionApi(api).get_code()
    finally:
        api.close()


async def run() -> None:
    events, points, holds = read_plan(Path(os.environ[PLAN_ENV]))
    await asyncio.to_thread(warm_up)
    with contextlib.suppress(PermissionError):  # started niced by the harness; only root may undo it
        os.setpriority(os.PRIO_PROCESS, 0, 0)
    client = await stackhop_worker.connect()
    worker = stackhop_worker.build_worker(
        client,
        interceptors=[KillAtPoints(events, points, holds)],
        max_cached_workflows=0,
        max_heartbeat_throttle_interval=HEARTBEAT_THROTTLE,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with worker:
        await stop.wait()


if __name__ == "__main__":
    from model.logs import configure

    configure()
    asyncio.run(run())
