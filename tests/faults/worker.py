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
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
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
        # threads of its own for the helm watchers: the loop's default executor can be busy with the
        # worker's own waits for as long as a step runs, and a watcher queued there never looks
        self.watchers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="fault-watch")
        # made once, at the worker's start: made per watch it took longer than helm's whole step
        self.core = client.CoreV1Api(config.new_client_from_config(config_file=os.environ["KUBECONFIG"]))

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _Inbound(next, self)


class _Inbound(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, root: KillAtPoints) -> None:
        super().__init__(next)
        self.root = root

    async def _moment(self, step: str, when: When, resume: int | None = None) -> None:
        """Log the moment; die at once when it is a kill point (the log line first, on disk); when
        it is a hold, wait until the harness releases it. ``resume``: a frozen helm, let go (SIGCONT)
        just before the kill, so the SIGTERM it gets when this process dies finds it running."""
        events = read_events(self.root.events)
        kill = any(due(p, step, when, events) for p in self.root.points)
        holds = [h for h in self.root.holds if due(h, step, when, events)]
        append_event(
            self.root.events, Event(step, when, os.getpid(), activity.info().attempt, killed=kill, at=time.time())
        )
        if resume is not None:
            os.kill(resume, signal.SIGCONT)
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
        is pending (helm is half-way through its operation); the worker dies there, helm with it.

        helm keeps a revision pending only while it applies the manifests (a fraction of a second),
        so looking from outside misses it on a busy machine: helm is stepped instead, frozen
        (SIGSTOP) whenever the release's records are read and let go for a few milliseconds in
        between, until a look finds a pending record with helm frozen inside it."""
        release, namespace = inp.helm.release, inp.helm.namespace or inp.target.namespace
        verb = "upgrade" if isinstance(inp, io.HelmUpgradeInput) else "rollback"
        stop = threading.Event()
        try:
            helm = await asyncio.get_running_loop().run_in_executor(
                self.root.watchers, _freeze_helm_while_pending, self.root.core, release, namespace, verb, stop
            )
        except Exception as e:  # the worker's log says why a moment was never reached
            print(f"fault worker: watching helm {verb} of {release} failed: {e!r}", file=sys.stderr, flush=True)
            raise
        finally:
            stop.set()  # a cancelled task leaves its thread: it ends at its next look
        if helm is not None:
            await self._moment(step, "during", resume=helm)


STEP = 0.005  # seconds helm runs between two looks at its release


def _freeze_helm_while_pending(
    core: client.CoreV1Api, release: str, namespace: str, verb: str, stop: threading.Event
) -> int | None:
    """The pid of this worker's ``helm <verb>``, frozen while the release's newest record is pending;
    None when ``stop`` is set or HOLD_LIMIT passes first."""
    selector = f"owner=helm,name={release}"

    def pending() -> bool:
        found = core.list_namespaced_secret(namespace, label_selector=selector).items
        labels = [(s.metadata.labels if s.metadata else None) or {} for s in found]
        return any(str(lab.get("status", "")).startswith("pending-") for lab in labels)

    deadline = time.monotonic() + HOLD_LIMIT
    pid: int | None = None
    while not stop.is_set() and time.monotonic() < deadline:
        pid = pid if pid is not None and Path(f"/proc/{pid}").exists() else _helm_child(verb)
        if pid is None:  # not started yet (or done): look again
            stop.wait(4 * STEP)
            continue
        try:
            os.kill(pid, signal.SIGSTOP)
        except ProcessLookupError:
            pid = None
            continue
        found = False
        try:
            found = pending()
        finally:  # helm never stays frozen outside the moment (an error of the look included)
            if not found:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
        if found:
            return pid
        stop.wait(STEP)  # one step of helm's work
    return None


def _helm_child(verb: str) -> int | None:
    """The pid of a ``helm <verb>`` that is a child of this worker now."""
    me = str(os.getpid())
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)
            if fields[0].endswith("(helm") and fields[1].split()[1] == me:
                argv = (stat.parent / "cmdline").read_bytes().split(b"\0")
                if len(argv) > 1 and argv[1] == verb.encode():
                    return int(stat.parent.name)
    return None


def warm_up() -> None:
    """What an activity would otherwise do on its first run in a fresh process (import openstacksdk,
    load the kubeconfig, open a TLS connection), done before polling: a replacement worker's first
    activity must not spend the short heartbeat timeout on it."""
    import openstack  # noqa: F401 - imported for its side effect: the endpoint check imports it lazily
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=os.environ["KUBECONFIG"])
    try:  # a replacement worker may start while the harness has the apiserver down: warm, not needed
        client.VersionApi(api).get_code()
    except Exception as e:
        print(f"fault worker: warm-up without the apiserver ({type(e).__name__})", file=sys.stderr, flush=True)
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
