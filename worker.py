"""The stackhop worker: runs the upgrade workflows and the activities that touch the cloud.

Connection settings come from Temporal's own environment configuration (``TEMPORAL_ADDRESS``,
``TEMPORAL_NAMESPACE``, ``TEMPORAL_PROFILE`` and the TOML profiles of ``temporalio.envconfig``), so
one worker image serves every environment. SIGINT/SIGTERM drain gracefully: running activities get
a grace period, then the worker exits and Temporal hands unfinished work to another worker.

Every worker polls two task queues: the main one (STACKHOP_TASK_QUEUE: workflows and every
activity) and its host queue (``<main>@<STACKHOP_WORKER_HOST>``, activities/locality.py) with the
database activities only, so verify, inspect and restore can be sent to the host that holds a
snapshot file.

Sizing: one setting, STACKHOP_ACTIVITY_SLOTS (default 32), is each worker's
``max_concurrent_activities``, and the thread pool the two share has exactly one thread per slot of
both. A worker never accepts an activity it has no thread for, so no started activity waits in the
executor's queue without heartbeating (and times out while nothing ran). The availability probes are
long activities beside the steps: one per service upgrading at the time, each holding a slot and a
thread for the whole of its service's upgrade (README, "Worker sizing").

What the worker trusts (README, "Security"): it re-validates every plan before any step (activity
``plan.admit``, activities/admission.py) against its own configuration, read from the environment:

* STACKHOP_ALLOWED_COMMANDS — extra commands (fnmatch patterns of a command's first word, ``:``- or
  newline-separated) a plan may name in ``migration.command`` / ``checks[].command``; the recipes'
  tools (keystone-manage, nova-status, ...) are always allowed. Default: none extra.
* STACKHOP_CREDENTIAL_ROOTS — directories a plan's credential files (``database.defaults_file``,
  ``cloud.kubernetes.kubeconfig``) must be under; default: ~/.kube, ~/.config/openstack,
  /etc/openstack, ~/.my.cnf, /etc/mysql, /etc/stackhop and the directories of the worker's own
  KUBECONFIG, OS_CLIENT_CONFIG_FILE and STACKHOP_DB_DEFAULTS_FILE.
* STACKHOP_SNAPSHOT_ROOTS — directories a plan's ``database.snapshot_dir`` must be under; default:
  STACKHOP_SNAPSHOT_DIR and ~/.local/state/stackhop/snapshots.
* STACKHOP_SNAPSHOT_RETENTION — snapshot files kept per service and database on this host (default
  5): after a snapshot, older ones of the same database are deleted (activities/retention.py).

Everything an activity returns or raises passes one redaction filter (activities/boundary.py,
model/redact.py), and so does every log field (model/logs.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import structlog
from temporalio import activity
from temporalio.client import Client
from temporalio.envconfig import ClientConfig
from temporalio.worker import Worker

from activities import locality
from activities.boundary import Redacting
from model.codec import CodecError, data_converter
from workflows.canary import CanaryWorkflow
from workflows.dataplane import DataPlaneBatchWorkflow
from workflows.fleet import FleetWorkflow
from workflows.ledger import LedgerWorkflow
from workflows.service import ServiceUpgradeWorkflow
from workflows.upgrade import UpgradeWorkflow

TASK_QUEUE = locality.main_task_queue()
ACTIVITY_SLOTS_ENV = "STACKHOP_ACTIVITY_SLOTS"
DEFAULT_ACTIVITY_SLOTS = 32
# How far apart an activity's heartbeats reach the server, at most. temporalio sends them every 0.8
# times the activity's heartbeat timeout (30 s without one) unless this is less, and a cancellation
# reaches a running activity only with a heartbeat's answer: with it an operator's abort stops a
# watching rollout within 3 s, not 48, and a heartbeat timeout can keep a wide margin over the
# interval (the probe's 1 s margin under 5 s was lost on a busy CI machine).
HEARTBEAT_THROTTLE = timedelta(seconds=3)
WORKFLOWS = (
    UpgradeWorkflow,
    ServiceUpgradeWorkflow,
    DataPlaneBatchWorkflow,
    CanaryWorkflow,
    LedgerWorkflow,
    FleetWorkflow,
)
log = structlog.get_logger("stackhop.worker")


class Unreachable(Exception):
    """Temporal could not be reached (the CLI exits 3); ``hint``: what in the TLS or API key
    settings to check, when the error says it was them."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message + (f" ({hint})" if hint else ""))
        self.hint = hint


def client_config(profile: str | None = None, address: str | None = None) -> dict[str, Any]:
    """The keyword arguments of ``Client.connect`` from Temporal's environment configuration: the
    profile (TEMPORAL_PROFILE, TEMPORAL_CONFIG_FILE's TOML) and the TEMPORAL_* variables, among them
    TLS (TEMPORAL_TLS, TEMPORAL_TLS_SERVER_NAME, TEMPORAL_TLS_SERVER_CA_CERT_PATH,
    TEMPORAL_TLS_CLIENT_CERT_PATH, TEMPORAL_TLS_CLIENT_KEY_PATH, or the *_DATA forms) and the API
    key (TEMPORAL_API_KEY, which turns TLS on). ``address`` (--address) overrides only the host."""
    config: dict[str, Any] = dict(ClientConfig.load_client_connect_config(profile=profile))
    if address:
        config["target_host"] = address
    config.setdefault("target_host", "localhost:7233")
    return config


AUTH_HINTS = (  # what the core SDK's connection errors mean for the operator's settings
    (
        ("Unauthenticated", "PermissionDenied"),
        "Temporal refused the credentials: check the API key (TEMPORAL_API_KEY or the profile's api_key) "
        "and the client certificate",
    ),
    (
        ("InvalidCertificate", "UnknownIssuer", "NotValidForName", "CertNotValidForName"),
        "the server's certificate is not trusted: check TEMPORAL_TLS_SERVER_CA_CERT_PATH and TEMPORAL_TLS_SERVER_NAME",
    ),
    (
        # a server that refuses the client certificate closes the handshake (an alert, or just EOF);
        # under TLS 1.3 the client has finished first, and may see a reset on its first write instead
        (
            "close_notify",
            "HandshakeFailure",
            "CertificateRequired",
            "broken pipe",
            "tls handshake eof",
            "ConnectionReset",
        ),
        "the server closed the TLS connection: it may require a client certificate "
        "(TEMPORAL_TLS_CLIENT_CERT_PATH/KEY_PATH) or TLS (TEMPORAL_TLS)",
    ),
)


async def connect(profile: str | None = None, address: str | None = None) -> Client:
    """A client for the configured Temporal: the one place the worker, the CLI and the codec server
    connect (TLS and API keys as client_config says), with the converter both sides need: pydantic,
    and the payload encryption of ``model.codec`` (keys from STACKHOP_CODEC_KEYS[_FILE]; CodecError
    if they are malformed)."""
    converter = data_converter()
    config = client_config(profile, address)
    try:
        return await Client.connect(**config, data_converter=converter)
    except RuntimeError as e:  # the core SDK reports connection failures as RuntimeError
        hint = next((h for words, h in AUTH_HINTS if any(w in str(e) for w in words)), "")
        raise Unreachable(f"cannot reach Temporal at {config['target_host']}: {e}", hint) from None


class StackhopWorker:
    """The main worker and the host worker, started and stopped together.

    Used like a temporalio Worker: ``async with``, or ``run()`` / ``is_running`` / ``shutdown()``."""

    def __init__(self, main: Worker, host: Worker | None, host_queue: str):
        self.main = main
        self.host = host
        self.host_queue = host_queue  # "" without database activities
        self.workers = [w for w in (main, host) if w is not None]
        self._stack: contextlib.AsyncExitStack | None = None

    @property
    def is_running(self) -> bool:
        return all(w.is_running for w in self.workers)

    async def __aenter__(self) -> StackhopWorker:
        async with contextlib.AsyncExitStack() as stack:
            for w in self.workers:
                await stack.enter_async_context(w)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.__aexit__(*exc)

    async def run(self) -> None:
        """Run both until shutdown; one failing shuts the other down and raises its error."""
        tasks = [asyncio.create_task(w.run()) for w in self.workers]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w, t in zip(self.workers, tasks, strict=True):
                if not t.done() and w.is_running:
                    await w.shutdown()
            results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def shutdown(self) -> None:
        await asyncio.gather(*(w.shutdown() for w in self.workers if w.is_running))


def activity_slots() -> int:
    """Activity slots of each worker (and threads of the executor, per worker): STACKHOP_ACTIVITY_SLOTS."""
    raw = os.environ.get(ACTIVITY_SLOTS_ENV, "").strip()
    if not raw:
        return DEFAULT_ACTIVITY_SLOTS
    try:
        slots = int(raw)
    except ValueError:
        slots = 0
    if slots < 1:
        raise ValueError(f"{ACTIVITY_SLOTS_ENV}={raw!r}: a whole number of activity slots, at least 1")
    return slots


def build_worker(
    client: Client,
    activities: Sequence[Callable[..., Any]] | None = None,
    task_queue: str = TASK_QUEUE,
    **options: Any,
) -> StackhopWorker:
    """The worker with every workflow and (by default) every activity of ``activities.catalog`` on
    ``task_queue``, plus the database activities among them on this host's queue. The host is
    STACKHOP_WORKER_HOST (default the hostname), read from the environment only: the activities
    record the same value in their snapshots. ``options`` go to both temporalio Workers; their
    ``max_concurrent_activities`` (default: ``activity_slots()``) sizes the executor with it."""
    if activities is None:
        activities = all_activities()
    slots = int(options.pop("max_concurrent_activities", None) or activity_slots())
    on_host = [fn for fn in activities if activity_name(fn) in locality.HOST_ACTIVITY_NAMES]
    # one thread for every slot of the workers that share the executor
    executor = ThreadPoolExecutor(max_workers=slots * (2 if on_host else 1), thread_name_prefix="activity")
    # the redaction filter is the outermost interceptor: it sees what the others return or raise
    interceptors = [Redacting(), *options.pop("interceptors", [])]
    common: dict[str, Any] = {
        "graceful_shutdown_timeout": timedelta(seconds=30),
        "max_heartbeat_throttle_interval": HEARTBEAT_THROTTLE,
        "default_heartbeat_throttle_interval": HEARTBEAT_THROTTLE,
        "max_concurrent_activities": slots,
        "interceptors": interceptors,
        **options,
    }
    main = Worker(
        client,
        task_queue=task_queue,
        workflows=list(WORKFLOWS),
        activities=list(activities),
        activity_executor=executor,
        **common,
    )
    if not on_host:
        return StackhopWorker(main, None, "")
    host_queue = locality.host_task_queue(task_queue, locality.worker_host())
    host_worker = Worker(client, task_queue=host_queue, activities=on_host, activity_executor=executor, **common)
    return StackhopWorker(main, host_worker, host_queue)


def activity_name(fn: Callable[..., Any]) -> str:
    """The name an ``@activity.defn`` function is registered under (temporalio has no public getter)."""
    return activity._Definition.must_from_callable(fn).name or ""  # None: a dynamic activity


def all_activities() -> list[Callable[..., Any]]:
    """``activities.catalog.ACTIVITIES``, imported here: the CLI imports this module to connect, and
    only a worker needs the Kubernetes, MariaDB and OpenStack clients the activities load."""
    from activities.catalog import ACTIVITIES

    return list(ACTIVITIES)


def activity_names(activities: Sequence[Callable[..., Any]]) -> list[str]:
    """Where each registered activity is defined (module.function), for the start-up log."""
    return [f"{fn.__module__}.{fn.__name__}" for fn in activities]


async def run(profile: str | None = None, address: str | None = None, task_queue: str = TASK_QUEUE) -> None:
    client = await connect(profile, address)
    activities = all_activities()
    worker = build_worker(client, activities, task_queue=task_queue)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info(
        "worker started",
        task_queue=task_queue,
        host_queue=worker.host_queue,
        activity_slots=worker.main.config().get("max_concurrent_activities"),
        namespace=client.namespace,
        activities=activity_names(activities),
    )
    async with worker:
        await stop.wait()
        log.info("worker draining")
    log.info("worker stopped")


def main() -> None:
    """``python worker.py`` (exit 3 when Temporal cannot be reached)."""
    from model.logs import configure, exit_process

    configure()
    code = 0
    try:
        asyncio.run(run())
    except Unreachable as e:
        log.error("cannot start", error=str(e))
        code = 3
    except CodecError as e:
        log.error("cannot start: payload encryption keys", error=str(e))
        code = 2
    exit_process(code)


if __name__ == "__main__":
    main()
