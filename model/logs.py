"""structlog set-up shared by the CLI, the worker and the labs: JSON when not on a TTY."""

from __future__ import annotations

import logging
import os
import sys
from typing import TextIO, cast

import structlog

from model.redact import redact_event


class _CurrentStderr:
    """``sys.stderr`` as it is when a line is written, not when logging was configured: a stream
    captured then (a test's, a redirected CLI run's) may be closed by the time a long-lived thread
    (a watch, the labs' controllers) logs, and writing to it would raise in that thread."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure(level: str | None = None) -> None:
    level_name = (level or os.environ.get("STACKHOP_LOG_LEVEL", "INFO")).upper()
    renderer = structlog.dev.ConsoleRenderer() if sys.stderr.isatty() else structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact_event,  # after the traceback is text: it is filtered too
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level_name, logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(file=cast(TextIO, _CurrentStderr())),  # PrintLogger writes, flushes
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)


def exit_process(code: int) -> None:
    """Flush and leave through ``os._exit``: temporalio's core SDK threads can still be finishing a
    call while the interpreter finalizes, which aborts the process (SIGABRT, "PyGILState_Release
    ... finalizing") and would replace the exit code with 134. Used by the CLI and the worker."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
