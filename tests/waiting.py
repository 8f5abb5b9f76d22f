"""Waiting on conditions: the one way a test waits.

A test never sleeps for a guessed time: it names the condition it waits for and a deadline after
which waiting is a failure (so a hang fails the test, and a fast machine does not wait at all).
``eventually`` is for async tests, ``eventually_sync`` for plain ones; both return the condition's
last truthy value so a test can go on with what it waited for.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar, overload

T = TypeVar("T")

POLL = 0.05  # seconds between two looks; the deadline, not this, bounds the wait


class NotYet(AssertionError):
    """The condition did not hold before the deadline; says what was last seen."""


def _describe(what: str, timeout: float, last: object, error: BaseException | None) -> str:
    seen = f"last error: {error!r}" if error is not None else f"last value: {last!r}"
    return f"{what or 'condition'} did not hold within {timeout:g}s ({seen})"


@overload
async def eventually(
    condition: Callable[[], Awaitable[T | None]],
    *,
    within: float = ...,
    what: str = ...,
    ignore: tuple[type[BaseException], ...] = ...,
    poll: float = ...,
) -> T: ...


@overload
async def eventually(
    condition: Callable[[], T | None],
    *,
    within: float = ...,
    what: str = ...,
    ignore: tuple[type[BaseException], ...] = ...,
    poll: float = ...,
) -> T: ...


async def eventually(
    condition: Callable[[], object],
    *,
    within: float = 30.0,
    what: str = "",
    ignore: tuple[type[BaseException], ...] = (),
    poll: float = POLL,
) -> object:
    """Await until ``condition()`` (sync or async) returns a truthy value, and return it.

    Exceptions of the ``ignore`` types count as "not yet" (e.g. a server still starting); any other
    exception fails at once. ``poll``: seconds between two looks — longer for a look that costs
    someone else work (a workflow query makes the worker answer it: every 50 ms for the length of an
    upgrade is thousands of workflow tasks).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    last: object = None
    error: BaseException | None = None
    while True:
        try:
            value = condition()
            if inspect.isawaitable(value):
                value = await value
            if value:
                return value
            last, error = value, None
        except ignore as e:
            error = e
        if loop.time() >= deadline:
            raise NotYet(_describe(what, within, last, error))
        await asyncio.sleep(poll)


def eventually_sync(
    condition: Callable[[], T],
    *,
    within: float = 30.0,
    what: str = "",
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """``eventually`` for code that is not async (lab fixtures, threads)."""
    deadline = time.monotonic() + within
    last: object = None
    error: BaseException | None = None
    while True:
        try:
            value = condition()
            if value:
                return value
            last, error = value, None
        except ignore as e:
            error = e
        if time.monotonic() >= deadline:
            raise NotYet(_describe(what, within, last, error))
        time.sleep(POLL)
