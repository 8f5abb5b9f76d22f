"""Temporal Cancel means abort: the workflows' run goes on through a cancellation, shielded.

Temporal cancels a workflow by cancelling its main task once (``asyncio.CancelledError`` at the
await it is on); after that the workflow may start activities as usual. Were that await a
compensation, or a wait that a rollback must follow, a plain cancellation would end the service
half-way (or CANCELLED with nothing undone). So the work runs as a task of its own, the main task
awaits it through ``asyncio.shield``, and a cancellation only calls ``on_cancel`` (the abort) — the
work then rolls back as an abort does, and the workflow ends with its report.

The same holds when a parent closes: children are started with ParentClosePolicy.REQUEST_CANCEL,
so terminating an upgrade cancels its services, which compensate and end aborted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


async def through_cancellation(work: Coroutine[Any, Any, T], on_cancel: Callable[[], Awaitable[None]]) -> T:
    """Run ``work`` to its end; each cancellation of the caller runs ``on_cancel`` instead."""
    task = asyncio.create_task(work)
    while True:
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            # Cancelled with the work itself: an eviction from the worker's cache cancels every task
            # (a Temporal Cancel cancels the main task only). Nothing to shield then.
            if task.done() or task.cancelling():
                raise
            await on_cancel()
