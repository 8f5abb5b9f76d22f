"""Where a snapshot file lives: the worker host that wrote it, and the task queue only that host polls.

A snapshot written to a worker's own disk can be verified and restored only by that worker. Every
worker therefore polls two task queues: the main one (workflows and every activity) and its host
queue, ``f"{main}@{host}"``, with the database activities only. A snapshot records its host queue;
the workflow pins verify, inspect and restore to it with a schedule-to-start timeout, so a dead host
is reported by name instead of the work going to a worker that does not have the file.

This module is the one place that spells the host queue: worker.py (which picks the main queue)
and the database activities (which record it) both import it. No heavy imports: the CLI loads it.
"""

from __future__ import annotations

import os
import socket

from temporalio import activity

from model.io import DB_INSPECT, DB_RESTORE, DB_SNAPSHOT, DB_VERIFY

DEFAULT_TASK_QUEUE = "stackhop"
HOST_SEPARATOR = "@"
# the activities a host queue serves: those that read or write a snapshot file, or precede a restore
HOST_ACTIVITY_NAMES = frozenset({DB_SNAPSHOT, DB_VERIFY, DB_INSPECT, DB_RESTORE})


def main_task_queue() -> str:
    """The main task queue of this deployment (STACKHOP_TASK_QUEUE, default "stackhop")."""
    return os.environ.get("STACKHOP_TASK_QUEUE") or DEFAULT_TASK_QUEUE


def worker_host() -> str:
    """This worker's host identity (STACKHOP_WORKER_HOST, default the hostname). It must stay the same
    across restarts of a worker that keeps its snapshot directory, or its snapshots are orphaned."""
    return os.environ.get("STACKHOP_WORKER_HOST") or socket.gethostname()


def host_task_queue(main: str, host: str) -> str:
    """The task queue only ``host`` polls, beside the main queue ``main``."""
    return f"{base_task_queue(main)}{HOST_SEPARATOR}{host}"


def base_task_queue(queue: str) -> str:
    """The main queue of a (main or host) task queue."""
    return queue.split(HOST_SEPARATOR, 1)[0]


def current_host_queue() -> tuple[str, str]:
    """(host, host task queue) of the worker running the current activity; outside an activity (the
    lab, a test's ActivityEnvironment) the main queue comes from the environment."""
    try:
        main = activity.info().task_queue
    except RuntimeError:
        main = main_task_queue()
    host = worker_host()
    return host, host_task_queue(main, host)
