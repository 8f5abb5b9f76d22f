"""The stackhop worker: runs the upgrade workflows and the activities that touch the cloud.

Connection settings come from Temporal's own environment configuration (``TEMPORAL_ADDRESS``,
``TEMPORAL_NAMESPACE``, ``TEMPORAL_PROFILE`` and the TOML profiles of ``temporalio.envconfig``), so
one worker image serves every environment. SIGINT/SIGTERM drain gracefully: running activities get
a grace period, then the worker exits and Temporal hands unfinished work to another worker.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import structlog
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.envconfig import ClientConfig
from temporalio.worker import Worker

from workflows.canary import CanaryWorkflow
from workflows.service import ServiceUpgradeWorkflow
from workflows.upgrade import UpgradeWorkflow

TASK_QUEUE = os.environ.get("STACKHOP_TASK_QUEUE", "stackhop")
WORKFLOWS = (UpgradeWorkflow, ServiceUpgradeWorkflow, CanaryWorkflow)
log = structlog.get_logger("stackhop.worker")


class Unreachable(Exception):
    """Temporal could not be reached (the CLI exits 3)."""


async def connect(profile: str | None = None, address: str | None = None) -> Client:
    """A client for the configured Temporal, with the pydantic converter both sides need."""
    config: dict[str, Any] = dict(ClientConfig.load_client_connect_config(profile=profile))
    if address:
        config["target_host"] = address
    config.setdefault("target_host", "localhost:7233")
    try:
        return await Client.connect(**config, data_converter=pydantic_data_converter)
    except RuntimeError as e:  # the core SDK reports connection failures as RuntimeError
        raise Unreachable(f"cannot reach Temporal at {config['target_host']}: {e}") from None


def build_worker(
    client: Client,
    activities: Sequence[Callable[..., Any]] | None = None,
    task_queue: str = TASK_QUEUE,
    **options: Any,
) -> Worker:
    """The worker with every workflow and (by default) every activity of ``activities.catalog``."""
    if activities is None:
        activities = all_activities()
    return Worker(
        client,
        task_queue=task_queue,
        workflows=list(WORKFLOWS),
        activities=list(activities),
        activity_executor=ThreadPoolExecutor(max_workers=16),
        graceful_shutdown_timeout=timedelta(seconds=30),
        **options,
    )


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
    log.info("worker started", task_queue=task_queue, namespace=client.namespace, activities=activity_names(activities))
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
    exit_process(code)


if __name__ == "__main__":
    main()
