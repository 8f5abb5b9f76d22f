"""A liveness deadline: code that should end quickly fails the test instead of hanging the suite.

This is not a timing assertion (the limit is seconds for work that takes milliseconds): it only
turns "never returns" into a failure. SIGALRM interrupts pure-Python loops such as the line lookup
that once spun forever in model/loading.py; it works in the main thread, where pytest runs tests.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

LIVENESS_SECONDS = 5.0


class Hung(Exception):
    """The block was still running at its deadline."""


@contextmanager
def deadline(what: str, seconds: float = LIVENESS_SECONDS) -> Iterator[None]:
    """Raise Hung inside the block if it has not finished after ``seconds``."""
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("deadline() uses SIGALRM: call it from the main thread")

    def expire(signum: int, frame: FrameType | None) -> None:
        raise Hung(f"{what}: still running after {seconds:.0f}s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
