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
import os
import signal
import time
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

import worker as stackhop_worker
from tests.faults.points import PLAN_ENV, Event, KillPoint, When, append_event, due, label, read_events, read_plan


class KillAtPoints(Interceptor):
    def __init__(self, events: Path, points: list[KillPoint]) -> None:
        self.events = events
        self.points = points

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _Inbound(next, self)


class _Inbound(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, root: KillAtPoints) -> None:
        super().__init__(next)
        self.root = root

    def _moment(self, step: str, when: When) -> None:
        """Log the moment; die at once when it is a kill point (the log line first, on disk)."""
        events = read_events(self.root.events)
        kill = any(due(p, step, when, events) for p in self.root.points)
        append_event(
            self.root.events, Event(step, when, os.getpid(), activity.info().attempt, killed=kill, at=time.time())
        )
        if kill:
            os.kill(os.getpid(), signal.SIGKILL)

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        step = label(activity.info().activity_type, input.args, read_events(self.root.events))
        self._moment(step, "start")
        result = await super().execute_activity(input)
        self._moment(step, "complete")  # the function returned; its result has not left this process
        return result


async def run() -> None:
    events, points = read_plan(Path(os.environ[PLAN_ENV]))
    client = await stackhop_worker.connect()
    worker = stackhop_worker.build_worker(client, interceptors=[KillAtPoints(events, points)], max_cached_workflows=0)
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
